// The task protocol's shell on the agent (ARCHITECTURE.md, "Tasks"): core/task_node.hpp decides
// (placement, the owner's pipeline, copies, take-over, hand-off, lookups); this carries its
// effects out over libuv. It owns the pooled connections to peers (one per peer, dialled on
// demand, with a bounded backlog while the dial is pending), the journal and its writer
// thread, the runner that starts handlers, and the one timer the node's deadlines need.
//
// After every input it drains the node's outbox in order: journal changes and a commit, then
// handlers, then frames and replies, and re-arms the timer for next_deadline().
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/task_node.hpp"
#include "daemon/agent.hpp"
#include "daemon/journal.hpp"
#include "daemon/runner.hpp"

namespace chorus::daemon {

// The node's settings (core/task_node.hpp) and the shell's.
struct TaskOptions : TaskNodeConfig {
    std::map<std::string, HandlerSpec> handlers = default_handlers();
    RunnerLimits runner;
    // Where the journal lives; empty: tasks are kept in memory only.
    std::string data_dir;
    // Frames held for one peer while its connection is being dialled, at most: past it the
    // dial is given up and what waited on it fails over (a peer that never answers a SYN).
    size_t backlog_bytes_max = 16u << 20;

    // `euid`: who the agent runs as (check_handler's rule for exec handlers under root).
    Status validate(uint32_t euid) const;
};

struct TaskServiceStats : TaskNodeStats {
    uint64_t backlog_overflows = 0;  // dials given up with backlog_bytes_max waiting on them
    uint64_t frames_unsent = 0;      // frames of requests that timed out before their dial did
};

class TaskService : public FrameChannel {
  public:
    TaskService(uv_loop_t* loop, Agent& agent, TaskOptions options, HttpPost http_post);
    ~TaskService() override;
    TaskService(const TaskService&) = delete;
    TaskService& operator=(const TaskService&) = delete;

    using Done = TaskNode::Done;
    // See TaskNode::submit, query and client_gone.
    void submit(TaskSpec spec, Duration wait, Done done, uint64_t client = 0);
    void query(const std::string& id, Duration wait, bool cancel, Done done, uint64_t client = 0);
    void client_gone(uint64_t client);
    // Whether a client is still there to answer (set by the API; unset: always).
    void set_client_present(std::function<bool(uint64_t client)> f) {
        node_.client_present = std::move(f);
    }
    // See TaskNode::hand_off.
    void hand_off(Duration drain, std::function<void(size_t handed, size_t kept)> done);
    // `chorus drain`: TaskNode::drain, and the member's drain tag (kDrainTag) so that routers
    // skip it at once.
    void set_draining(bool on, std::function<void(size_t handed, size_t kept)> done);
    bool draining() const { return node_.draining(); }

    using Lookup = TaskNode::Lookup;
    Lookup lookup(std::string_view key) { return node_.lookup(key, agent_.now()); }
    const Ring& ring() { return node_.ring(); }
    void member_changed(const MemberEvent& e);
    void membership_changed() { node_.membership_changed(); }
    // Copies of other nodes' tasks held here.
    const Task* copy(std::string_view id) const { return node_.copies().find(id); }
    const CopyStore& copies() const { return node_.copies(); }
    size_t orphans() const { return node_.orphans(); }
    // Where this node's tasks have their copies, and which lack some.
    const CopyTracker& tracker() const { return node_.tracker(); }
    size_t under_replicated() const { return node_.tracker().under_replicated(); }

    const TaskBoard& board() const { return node_.board(); }
    const TaskNode& node() const { return node_; }
    // The journal, if there is a working one; else why not (nullopt: memory only, by choice).
    const Journal* journal() const { return journal_.get(); }
    Journal* journal() { return journal_.get(); }
    // Something is staged, pending or being written (tests wait for this to clear).
    bool journal_busy() const {
        return (writer_ && writer_->busy()) || node_.storing() ||
               (journal_ && journal_->staged() > 0);
    }
    const std::optional<Error>& journal_error() const { return journal_error_; }
    using JournalTrouble = TaskNode::JournalTrouble;
    const std::optional<JournalTrouble>& journal_failing() const { return node_.journal_failing(); }
    // Called when the journal starts failing (with why) and when it works again (nullopt).
    void set_on_journal_state(std::function<void(const std::optional<Error>&)> f) {
        node_.on_journal_state = std::move(f);
    }
    const TaskOptions& options() const { return options_; }
    TaskServiceStats stats() const;
    // Clients' waits for tasks held on this node now (each bounded by its wait).
    size_t waiting() const { return node_.waiting(); }
    // Called with the round trip of every forwarded task an owner accepted (for metrics).
    void set_on_forwarded(std::function<void(Duration)> f) { node_.on_forwarded = std::move(f); }
    std::vector<std::string> handler_names() const { return runner_.types(); }

    // FrameChannel: task frames and the pooled connections' lives, from the agent.
    void on_task_frame(net::FrameConn& conn, wire::Frame frame) override;
    void on_connected(net::FrameConn& conn) override;
    void on_closed(uint64_t conn) override;

  private:
    // Opens the journal and reads it back; nullopt with a journal, or why there is none.
    static std::optional<Error> open_journal(const TaskOptions& o, std::shared_ptr<Journal>& j,
                                             std::vector<Task>& tasks);
    // Carries out what the node asked for, and re-arms the timer. Every input ends with it.
    void drain();
    void arm();
    void schedule_commit();
    void committed(uint64_t upto, const Status& st);
    // The pooled connection to `peer`, opened if need be, carries `m`; why not, if it cannot.
    Status send_to(const Name& peer, const TaskMessage& m);
    void unqueue(const Name& peer, uint64_t request);  // a timed-out request's frame, unsent

    uv_loop_t* loop_;
    Agent& agent_;
    TaskOptions options_;
    std::shared_ptr<Journal> journal_;  // shared with its writer's thread
    std::vector<Task> recovered_;       // read back at start, handed to the node
    std::optional<Error> journal_error_;
    TaskNode node_;
    Runner runner_;
    std::unique_ptr<JournalWriter> writer_;
    // The journal's change numbers of the node's changes (TaskNode counts its own), oldest
    // first, until a commit covers them.
    std::deque<std::pair<uint64_t, uint64_t>> changes_;  // (journal's, node's)
    uint64_t node_changes_ = 0;
    bool draining_ = false;
    TaskOutbox taken_;               // what drain() is carrying out, swapped with the node's outbox
    net::Handle<uv_timer_t> timer_;  // the node's next deadline
    Time armed_for_ = Time::max();   // what the timer is set for (max: not set)
    net::Handle<uv_check_t> commit_check_;  // wakes the writer at the end of this iteration

    struct Peer {
        uint64_t conn = 0;
        bool connected = false;
        // Frames waiting for the connection, with the request each belongs to (0: a
        // notification), so a request that times out meanwhile takes its frame back.
        struct Waiting {
            uint64_t request = 0;
            std::vector<uint8_t> frame;
        };
        std::vector<Waiting> backlog;
        size_t backlog_bytes = 0;
    };
    std::map<Name, Peer> peers_;
    uint64_t backlog_overflows_ = 0;
    uint64_t frames_unsent_ = 0;
};

}  // namespace chorus::daemon
