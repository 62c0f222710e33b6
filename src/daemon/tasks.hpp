// Task routing and execution on the agent (ARCHITECTURE.md, "Tasks"): the ring over the members,
// the router's choice of owner, the one-hop forward over the agent's TCP streams, and the board and
// runner for the tasks this node owns.
//
// A client's task comes in at any node. That node hashes the key, takes the key's preference
// list from the ring and asks the router for an owner. It runs the task itself or sends it
// over a pooled connection to the owner. The owner queues it or refuses (full). A refusal,
// a timeout or a broken connection moves on to the next candidate. The owner never forwards.
// A task's status comes from whichever node holds it: the id carries the key's hash, so any
// node asks the key's candidates, and then everyone else, since membership may have changed
// since the task was placed.
//
// Everything is bounded: the board (capacity, queue, retention), requests in flight (each
// with a deadline), waiters, and the connection pool (the agent's FrameHub limits).
#pragma once

#include <uv.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/copies.hpp"
#include "core/copy_tracker.hpp"
#include "core/placement.hpp"
#include "core/ring.hpp"
#include "core/rng.hpp"
#include "core/router.hpp"
#include "core/task.hpp"
#include "daemon/agent.hpp"
#include "daemon/journal.hpp"
#include "daemon/runner.hpp"

namespace chorus::daemon {

struct TaskOptions {
    TaskLimits limits;
    // Points per member on the ring. More points spread keys more evenly (the share of the
    // largest member falls roughly as 1/sqrt(vnodes)) at the cost of a bigger ring to build on
    // every membership change.
    uint32_t vnodes = 64;
    // Distinct members in a key's preference list: the owners the router chooses among.
    uint32_t candidates = 3;
    // A candidate with φ at or above this is passed over while a healthier one exists (it is
    // likely gone, or too slow to answer).
    double phi_route = 5.0;
    // 0: the least loaded candidate; > 0: bounded loads (see choose_owner).
    double balance_factor = 0;
    // How long an owner has to answer a forwarded task before the next candidate is tried.
    Duration forward_timeout = seconds(2);
    std::map<std::string, HandlerSpec> handlers = default_handlers();
    RunnerLimits runner;
    // Unfinished copies of other nodes' tasks held here at most (count and bytes); finished
    // ones follow the results limits (results_max, results_bytes_max).
    size_t copies_max = CopyLimits{}.unfinished_max;
    size_t copies_bytes_max = CopyLimits{}.unfinished_bytes_max;
    // Where the journal lives; empty: tasks are kept in memory only.
    std::string data_dir;
    // Frames held for one peer while its connection is being dialled, at most: past it the
    // dial is given up and what waited on it fails over (a peer that never answers a SYN).
    size_t backlog_bytes_max = 16u << 20;
    // Members that store each task before it is acknowledged: the owner, and task_replicas - 1
    // holders of a copy, the next alive members of its key's preference list (see
    // core/copy_tracker.hpp). When the owner dies, the holder of a copy runs the task (at
    // least once). 1 keeps no copy; 2 (one copy elsewhere) is the most this build keeps,
    // since with two holders both would take over a dead owner's task.
    uint32_t task_replicas = 2;
    // The fewest members a task may be stored on when it is acknowledged (0: task_replicas,
    // the default: a task no member could copy in time is refused with 503 not_replicated).
    // 1 prefers availability: the task is acknowledged alone, says so, and is copied later.
    uint32_t min_replicas = 0;
    // How long one member has to store a copy before the next member of the key is tried.
    Duration copy_timeout = milliseconds(500);
    // How often a node asks the owners of the unfinished copies it holds how their tasks
    // stand. A copy can miss its task's outcome (the owner restarted and forgot where the copy
    // was, or crashed before telling it); asked, the owner brings it up to date, and an owner
    // that no longer has the task at all (its journal lost) leaves it to this node to run.
    Duration copy_check = seconds(30);

    Status validate() const;
};

// What a request comes to, in HTTP's terms.
struct TaskAnswer {
    int status = 200;  // 200 finished/found, 202 accepted, 4xx, 503
    std::string code;  // an error's code; empty on success
    std::string message;
    std::optional<Task> task;
    bool forwarded = false;  // the task runs on another node
    uint32_t replicas = 0;   // a submission accepted: members storing it (0: not said)
    Duration retry_after{};  // with 503: when to try again
    static TaskAnswer error(int status, std::string code, std::string message);
};

struct TaskServiceStats {
    uint64_t forwarded = 0;    // tasks sent to another owner and accepted there
    uint64_t local = 0;        // tasks accepted here from a client of this node
    uint64_t remote = 0;       // tasks accepted here from another node
    uint64_t full = 0;         // tasks refused here: capacity + queue_max taken (with pending)
    uint64_t retries = 0;      // candidates passed over after a refusal, timeout or broken link
    uint64_t unavailable = 0;  // 503s: no owner alive, or every candidate refused
    uint64_t forward_timeouts = 0;
    uint64_t queries = 0;         // status lookups sent to other nodes
    uint64_t recovered = 0;       // tasks read back from the journal at start
    uint64_t requeued = 0;        // of those, the ones that had not finished and run again
    uint64_t unjournaled = 0;     // tasks refused because the journal could not store them
    uint64_t not_replicated = 0;  // tasks refused: too few members stored a copy in time
    uint64_t promoted = 0;        // copies this node took over and ran when their owner died
    uint64_t dropped = 0;         // copies forgotten here because their owner refused the task
    uint64_t caught_up = 0;       // copies that missed their task's outcome and were told on asking
    uint64_t orphans_placed = 0;  // taken-over tasks this node had no room for, placed elsewhere
    uint64_t copies_refused = 0;  // copies refused: the unfinished copies held hit their limits
    uint64_t backlog_overflows = 0;  // dials given up with backlog_bytes_max waiting on them
    uint64_t frames_unsent = 0;      // frames of requests that timed out before their dial did
};

class TaskService : public FrameChannel {
  public:
    TaskService(uv_loop_t* loop, Agent& agent, TaskOptions options, HttpPost http_post);
    ~TaskService() override;
    TaskService(const TaskService&) = delete;
    TaskService& operator=(const TaskService&) = delete;

    using Done = std::function<void(TaskAnswer)>;
    // `spec` as the client gave it; an empty id gets a fresh one, a given one is the client's
    // name for the task. With `wait`, answers 200 with the finished task if it finishes in time.
    // `client` names who asks (an HTTP connection; 0: no one in particular): when it goes,
    // client_gone() lets go of any wait held for it.
    void submit(TaskSpec spec, Duration wait, Done done, uint64_t client = 0);
    // Status (and with `cancel`, cancellation) of a task placed from any node.
    void query(const std::string& id, Duration wait, bool cancel, Done done, uint64_t client = 0);
    // The client went: its waits for tasks to finish are dropped now, not when they end.
    void client_gone(uint64_t client);
    // Whether a client is still there to answer (set by the API; unset: always).
    std::function<bool(uint64_t client)> client_present;

    // Graceful leave: stops starting queued tasks and hands each to another
    // candidate (the holder of its copy first), then lets the running ones finish for up to
    // `drain`, so their copies learn the outcome instead of running them again. `done` runs
    // then. Tasks no one took stay here, and their copy holders take them over when this node
    // is gone.
    void hand_off(Duration drain, std::function<void(size_t handed, size_t kept)> done);

    // The key's candidates as the router sees them now, and its choice.
    struct Lookup {
        uint64_t key_hash = 0;
        std::vector<RouteCandidate> candidates;
        std::optional<size_t> choice;
    };
    Lookup lookup(std::string_view key);
    const Ring& ring();
    // A membership change: the ring is rebuilt at its next use, and the tasks of a member
    // that died or left are taken over from the copies this node holds.
    void member_changed(const MemberEvent& e);
    void membership_changed() { ring_stale_ = true; }
    // Copies of other nodes' tasks held here.
    const Task* copy(std::string_view id) const { return copies_.find(id); }
    const CopyStore& copies() const { return copies_; }
    size_t orphans() const { return orphans_.size(); }
    // Where this node's tasks have their copies, and which lack some.
    const CopyTracker& tracker() const { return tracker_; }
    size_t under_replicated() const { return tracker_.under_replicated(); }

    const TaskBoard& board() const { return board_; }
    // The journal, if there is a working one; else why not (nullopt: memory only, by choice).
    const Journal* journal() const { return journal_.get(); }
    Journal* journal() { return journal_.get(); }
    // Something is staged, pending or being written (tests wait for this to clear).
    bool journal_busy() const {
        return (writer_ && writer_->busy()) || !staged_.empty() || !after_commit_.empty() ||
               (journal_ && journal_->staged() > 0);
    }
    const std::optional<Error>& journal_error() const { return journal_error_; }
    // A journal that failed at run time: its last commit failed, and none has succeeded since.
    // Meanwhile the node refuses tasks and copies until `retry_at`, then takes them again and
    // lets the next commit decide.
    struct JournalTrouble {
        Error error;
        Time since;
        Time retry_at;
        Duration backoff;
        uint64_t commits = 0;   // the journal's successful commits when it last failed
        uint64_t failures = 0;  // commits failed since `since`
    };
    const std::optional<JournalTrouble>& journal_failing() const { return journal_failing_; }
    // Called when the journal starts failing (with why) and when it works again (nullopt).
    std::function<void(const std::optional<Error>&)> on_journal_state;
    const TaskOptions& options() const { return options_; }
    const TaskServiceStats& stats() const { return stats_; }
    // Clients' waits for tasks held on this node now (each bounded by its wait).
    size_t waiting() const { return waiters_.size(); }
    // Called with the round trip of every forwarded task an owner accepted (for metrics).
    std::function<void(Duration)> on_forwarded;
    std::vector<std::string> handler_names() const { return runner_.types(); }

    // FrameChannel: task frames and the pooled connections' lives, from the agent.
    void on_task_frame(net::FrameConn& conn, wire::Frame frame) override;
    void on_connected(net::FrameConn& conn) override;
    void on_closed(uint64_t conn) override;

    struct Request;  // a task frame sent, awaiting its reply
    struct Waiter;   // a query waiting for a task here to finish
    struct Submission;
    struct Search;

  private:
    // Checks a client's task; fills the id and timeout defaults.
    std::optional<TaskAnswer> validate(TaskSpec& spec);
    // Accepts a task on this node's board (for a local client or a peer). The answer waits
    // until the task is stored: in the journal's commit when there is one, and on the members
    // its copies need (the tracker's verdict), whichever comes last; only then does it run.
    // `budget`: how long the asker waits (zero: not said).
    void accept(TaskSpec spec, Duration budget, Done done);
    // The task's commit or its copies' verdict came: admitted and acknowledged once both did.
    void admit_if_stored(const std::string& id);
    void settle(const CopyVerdict& v);
    // Board changes to the journal: a task's record, and the records retention dropped.
    void record(const std::string& id);
    void record_evictions();
    void schedule_commit(uint64_t delay_ms = 0);
    void commit();
    void recover();
    TaskAnswer accepted(const std::string& id) const;  // 202 with the task as it is now
    // Copies. The tracker says where this node's tasks' copies go (CopySend), which to drop
    // and when a task may be acknowledged; pump() carries that out and arms its timer. The
    // holder of a copy keeps it (keep_copy) and runs the task if the owner dies (promote).
    void pump();
    // The alive members that may hold a copy of a key's task, in the key's preference order,
    // healthy ones (φ below phi_route) first; never this node.
    std::vector<Name> copy_targets(uint64_t key_hash);
    const Task* owned(std::string_view id) const;  // on the board, or pending
    void tell_copies(const std::string& id);  // a task of ours ended: its copies hear the outcome
    void keep_copy(Task t, std::function<void(bool stored)> stored);
    void drop_copy(const Task& t);
    void decline(const std::string& id);  // refused at submission: remembered, bounded
    void promote(const Name& gone);
    // Copies this node runs as its own, as far as its capacity allows; the rest become orphans.
    void take_over(const std::vector<std::string>& ids);
    // Orphans: copies of a dead owner's tasks that did not fit here. Each goes to this node once
    // it has room, or to another candidate of its key that takes it.
    void place_orphans();
    void offer_orphan(const std::string& id, std::vector<Name> to, size_t next);
    bool has_room() const;  // running + queued + pending below capacity + queue_max
    void check_copies();
    void start_ready();
    void finished(const std::string& id, TaskOutcome outcome);
    void report_load();
    uint32_t reported_load() const;  // the board's load, or kLoadRefusing
    bool refusing_tasks() const;     // the journal failed and its retry is not due yet
    void journal_failed(const Error& why);
    void journal_recovered();
    TaskAnswer answer_query(const std::string& id, bool cancel);
    void wait_local(const std::string& id, Duration wait, std::function<void()> woken,
                    uint64_t client = 0);
    void wake(const std::string& id);
    std::function<void()> take_waiter(uint64_t serial);

    RouteCandidate candidate(const Name& name);
    void place(std::shared_ptr<Submission> p);
    void search(std::shared_ptr<Search> s);
    // Answers with `current` once its task has finished or `deadline` passed, asking `holder`
    // (this node or another) as the task runs. `submitted`: 202 while unfinished, else 200.
    void follow(const Name& holder, TaskAnswer current, Time deadline, bool submitted, Done done,
                uint64_t client = 0);

    // Sends `m` to `peer` and calls `done` with its reply, or an error on timeout or a broken
    // connection.
    void request(const Name& peer, wire::TaskMessage m, Duration timeout,
                 std::function<void(Result<TaskReply>)> done);
    // Sends `m` to `peer` and expects no answer (its request number is 0).
    void notify(const Name& peer, wire::TaskMessage m);
    // The pooled connection to `peer`, opened if need be, carries `m` (for `request`, 0 for a
    // notification); its id, or why not.
    Result<uint64_t> send_to(const Name& peer, const wire::TaskMessage& m, uint64_t request = 0);
    void unqueue(const Name& peer, uint64_t request);  // a timed-out request's frame, unsent
    void reply(uint64_t conn, TaskReply r);
    std::unique_ptr<Request> take_request(uint64_t id);  // answered or failed: no longer due
    void fail_request(uint64_t id, Error why);
    void arm_deadlines();

    uv_loop_t* loop_;
    Agent& agent_;
    TaskOptions options_;
    TaskBoard board_;
    Runner runner_;
    Rng rng_;
    std::optional<Ring> ring_;
    bool ring_stale_ = true;  // membership changed since the ring was last brought up to date
    TaskServiceStats stats_;
    std::shared_ptr<Journal> journal_;  // shared with its writer's thread
    std::unique_ptr<JournalWriter> writer_;
    bool handing_off_ = false;  // leaving: queued tasks are handed over, not started
    net::Handle<uv_timer_t> drain_timer_;
    Time drain_until_{};
    std::function<void()> drained_;  // what waits for the running tasks to end
    void committed(uint64_t upto, const Status& st);
    std::optional<Error> journal_error_;
    std::optional<JournalTrouble> journal_failing_;
    net::Handle<uv_timer_t> journal_retry_timer_;
    net::Handle<uv_timer_t> commit_timer_;  // a retry after a failed commit
    net::Handle<uv_check_t> commit_check_;  // wakes the writer at the end of this iteration
    // Tasks accepted here and not stored yet: they hold a place on the board's budget but
    // run only once stored, in the journal and on their copies' members (which overlap: an
    // acknowledgement waits for the slower, not the sum).
    struct Pending {
        Task task;
        Done done;
        std::vector<Done> retries;         // the same task submitted again meanwhile
        bool committed = false;            // in the journal (or there is none)
        std::optional<uint32_t> replicas;  // the copies' verdict: accepted, on this many members
    };
    TaskIdMap<Pending> pending_;
    // Journal changes of pending tasks, in change order: what each commit settles.
    std::deque<std::pair<uint64_t, std::string>> staged_;
    // What waits for a change to be stored (a copy kept for another node), in change order.
    std::deque<std::pair<uint64_t, std::function<void(const Status&)>>> after_commit_;
    CopyStore copies_;     // other nodes' tasks; owner = theirs
    CopyTracker tracker_;  // our unfinished tasks' copies
    // Tasks refused at submission (not stored on enough members, or by the journal), newest
    // last: a holder asking about one drops its copy (judge_copy).
    std::set<std::string, std::less<>> declined_;
    std::deque<std::string> declined_order_;
    net::Handle<uv_timer_t> tracker_timer_;
    // Copies that were unfinished at the last check_copies(): asked about at the next one, so
    // only copies at least one interval old are, and a task that ends meanwhile costs nothing.
    std::set<std::string, std::less<>> unfinished_copies_;
    std::set<std::string, std::less<>> orphans_;   // ids in copies_, waiting for an owner
    std::set<std::string, std::less<>> offering_;  // orphans offered to another candidate now
    net::Handle<uv_timer_t> copy_check_timer_;

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
        // Load as last heard in a reply, and the tasks sent since the newest report.
        uint32_t reply_load_milli = 0;
        Time reply_at{};
        uint32_t capacity = 0;  // 0: not heard yet; assume ours
        uint32_t sent = 0;
        Time sent_since{};
    };
    std::map<Name, Peer> peers_;
    std::map<uint64_t, std::unique_ptr<Request>> requests_;
    std::set<std::pair<Time, uint64_t>> deadlines_;  // requests_ by deadline
    net::Handle<uv_timer_t> deadline_timer_;         // set for the earliest
    uint64_t next_request_ = 1;
    std::map<uint64_t, std::unique_ptr<Waiter>> waiters_;
    std::multimap<std::string, uint64_t, std::less<>> waiting_on_;  // task id to waiter serials
    uint64_t next_waiter_ = 1;
};

}  // namespace chorus::daemon
