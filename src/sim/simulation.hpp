// The simulator's state, shared by simulator.cpp (membership, the network, faults) and tasks.cpp
// (the task workload). Internal to chorus_simlib: sim/simulator.hpp is the interface.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/node.hpp"
#include "core/rng.hpp"
#include "core/task_node.hpp"
#include "sim/network.hpp"
#include "sim/simulator.hpp"
#include "wire/codec.hpp"

namespace chorus::sim {

std::string node_name(uint32_t i);
// When clients stop submitting: --tasks-until, or 60 s before the end.
double tasks_until(const Options& o);
std::optional<uint32_t> node_index(std::string_view name);
double median(std::vector<double> v);
double peak_rss_mb();

// One node's task layer: its TaskNode while it runs, and the disk that outlives it.
struct TaskHost {
    std::unique_ptr<TaskNode> node;
    std::map<std::string, Task> disk;    // committed records: survive a crash, not a lost disk
    std::vector<JournalChange> staged;   // not committed yet: a crash loses them
    uint64_t changes = 0;                // puts and removes staged, in the node's numbering
    std::vector<JournalChange> writing;  // the commit under way
    uint64_t writing_upto = 0;
    bool writing_now = false;
    bool commit_wanted = false;
    uint64_t wake_token = 0;
    Time wake_at = Time::max();
    bool disk_lost = false;  // its last crash took the disk
    struct Run {
        std::string id;
        bool stopped = false;
    };
    uint64_t next_run = 1;
    std::map<uint64_t, Run> runs;  // handlers running
};

class Simulation {
  public:
    explicit Simulation(const Options& o)
        : o_(o),
          rng_(o.seed),
          net_(NetworkOptions{o.loss, from_seconds(o.latency_ms / 1000)}, rng_.fork()),
          nodes_(o.nodes) {
        config_ = Config::profile(o.profile).value();
        config_.lifeguard = o.lifeguard;
        if (o.dead_retain_s) {
            config_.dead_retain = std::chrono::duration_cast<Duration>(
                std::chrono::duration<double>(*o.dead_retain_s));
        }
        limits_ = wire::limits_for(config_);
        report_.options = o;
    }

    Report run();

  private:
    enum class Kind : uint8_t {
        start,
        wake,
        packet,
        pp_request,
        pp_response,
        pp_failed,
        crash,
        restart,
        partition,
        heal,
        // The task workload (tasks.cpp).
        submit,       // a client submits a task, and the next submission is scheduled
        task_wake,    // a TaskNode's deadline
        task_frame,   // a task frame arrives (token: the receiver's epoch when it was sent)
        link_broken,  // the connection from `node` to `peer` broke (token: node's epoch)
        committed,    // a journal commit ends (token: epoch)
        handler_end,  // a task's handler ends (token: epoch; aux: the run)
        lookups,      // the final check: every live node looks up finished tasks
    };
    struct Event {
        Time at;
        uint64_t order;
        Kind kind;
        uint32_t node = 0;
        uint32_t peer = 0;
        uint64_t token = 0;  // wake token, or the epoch of the node that opened a push-pull
        std::vector<uint8_t> bytes;
        uint64_t aux = 0;  // the sender's epoch for a task frame; a run for a handler
        bool operator>(const Event& o) const { return at != o.at ? at > o.at : order > o.order; }
    };
    struct Slot {
        std::unique_ptr<Node> node;
        bool up = false;
        bool slow = false;
        bool crashed_ever = false;
        Tags tags;           // what it announces from its start
        uint64_t epoch = 0;  // bumps on crash and restart; stale push-pull answers are dropped
        uint64_t wake_token = 0;
        Time wake_at = Time::max();
        // For detection: when it crashed, how many live nodes see it gone, when the first did
        // (and the last of those counted so far).
        Time crashed_at{};
        uint32_t seen_gone_by = 0;
        std::optional<Time> first_seen_gone;
        std::optional<Time> last_seen_gone;
        std::optional<Time> all_seen_gone;
        // Per observer (by index; empty until it crashes): what Report::detections is made of.
        struct Watch {
            bool on = false;  // the observer was live at the crash and held it not gone
            std::optional<Time> suspect = {};
            std::optional<Time> gone = {};
        };
        std::vector<Watch> watched_by;
        // For convergence: how many live nodes this node sees alive.
        uint32_t sees_alive = 0;
        // While some member saw it gone (dead or left), crashed or not: what lets a holder run
        // its tasks. Spans by the members' own times; an open one ends at Time::max().
        uint32_t gone_to = 0;  // members that see it gone now
        std::vector<std::pair<Time, Time>> gone_spans;
        std::vector<Time> crashes;
        // With a task workload: its TaskNode, journal and handlers (tasks.cpp).
        std::unique_ptr<TaskHost> tasks;
    };

    void push(Event e) {
        e.order = order_++;
        queue_.push(std::move(e));
    }
    Time at(double s) const { return Time{} + from_seconds(s); }
    Address addr(uint32_t i) const { return Address{node_name(i)}; }

    void start_node(uint32_t i, Time now);
    void crash_node(uint32_t i, Time now);
    void drain(uint32_t i, Time now);
    void on_event(const Event& e);
    void on_member_event(uint32_t observer, const MemberEvent& ev);
    void check_self(uint32_t i);
    void recount(Time now);
    void watch(uint32_t crashed, Time now);
    void report_detections();
    void set_sees_alive(uint32_t i, uint32_t value);
    bool in_partition_window(Time now) const;
    void note_convergence(Time now);
    void violation(std::string what);
    void check_no_live_member_gone();

    // The task workload (tasks.cpp). Each live node runs a TaskNode over its Node; frames go
    // through the wire codec on reliable, ordered streams; a journal commit takes commit_ms and
    // a crash loses what it had not committed; a lost disk loses the rest.
    bool tasks_on() const { return o_.tasks_per_s > 0; }
    void start_tasks(uint32_t i, Time now);
    void task_member_changed(uint32_t i, const MemberEvent& ev, Time now);
    void crash_tasks(uint32_t i, Time now);
    void drain_tasks(uint32_t i, Time now);
    void on_task_event(const Event& e);
    void schedule_tasks();
    void submit_task(Time now);
    void send_frame(uint32_t from, uint32_t to, uint64_t to_epoch, const TaskMessage& m, Time now);
    void deliver(Event frame, Time now);  // a task frame on its link, in order
    void commit(uint32_t i, Time now);
    void sample_under_replicated();
    void heal_tasks(Time now);
    void finish_tasks();
    // The most disks lost within a repair window of each other, as it happened.
    uint32_t disks_lost_at_once() const;

    Options o_;
    Config config_;
    wire::Limits limits_;
    Rng rng_;
    Network net_;
    std::vector<Slot> nodes_;
    std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
    uint64_t order_ = 0;
    Report report_;

    uint32_t live_ = 0;
    uint32_t full_views_ = 0;  // live nodes that see every live node alive
    uint64_t msgs_ = 0;
    uint64_t bytes_ = 0;
    uint64_t steady_msgs_ = 0;
    uint64_t steady_bytes_ = 0;
    Time steady_from_{};
    void count_sent(size_t bytes, Time now) {
        ++msgs_;
        bytes_ += bytes;
        if (now >= steady_from_) {
            ++steady_msgs_;
            steady_bytes_ += bytes;
        }
    }
    std::vector<uint32_t> crashed_;
    Time last_fault_{};

    // The task workload's clients and what they were told.
    TaskNodeConfig task_config_;
    struct Asked {  // a submission
        uint32_t entry = 0;
        uint64_t epoch = 0;  // the entry node's, when it was asked
        bool answered = false;
    };
    std::vector<Asked> asked_;
    std::vector<std::string> acked_;  // ids acknowledged, in that order
    struct Starts {                   // a task's handler starts, and where
        struct Run {
            uint32_t node = 0;
            uint64_t epoch = 0;  // the node's, when it started the task
            Time at{};
        };
        Time created{};
        std::vector<Run> runs;
        std::vector<Run> owners;  // the nodes that sent its copy as its owner, first time each
    };
    std::unordered_map<std::string, Starts> starts_;
    // Whether a task that ran more than once has a fault to explain it (finish_tasks).
    bool rerun_explained(const Starts& s) const;
    std::vector<double> ack_ms_;
    std::vector<double> disk_losses_s_;  // when a crash took a disk with it
    struct Lookup {                      // a lookup of an acknowledged task at the end
        std::string id;
        uint32_t from = 0;
        bool answered = false;
        std::string wrong;  // what was wrong with the answer; empty if it was right
    };
    std::vector<Lookup> lookups_;
    using Link = std::pair<uint32_t, uint32_t>;  // (from, to)
    std::map<Link, Time> last_frame_;            // per link: streams keep order
    std::map<Link, std::vector<Event>> held_;    // frames sent across a partition
    Time now_{};          // the event being handled: when the answers it brings come
    Time next_sample_{};  // of under-replicated tasks
};

}  // namespace chorus::sim
