// The deterministic simulator: N real core nodes on virtual time, talking through a simulated
// network that carries the encoded bytes (so byte counts are real and the codec is exercised).
//
// One seed replays a whole cluster's life, faults included. The simulator measures what the
// issue's targets are stated in (join convergence, detection times, false positives, traffic)
// and checks invariants while it runs: a node's view of a member's incarnation never goes
// down, a live node never believes itself dead or gone, views converge once faults end.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/time.hpp"

namespace chorus::sim {

struct Options {
    uint32_t nodes = 10;
    uint64_t seed = 1;
    double duration_s = 60;
    std::string profile = "lan";
    double loss = 0;
    double latency_ms = 1;
    uint32_t crash = 0;  // nodes crashed at crash_at_s (never node 0, the join seed)
    double crash_at_s = 30;
    double crash_every_s = 0;  // the k-th crash comes at crash_at_s + k * crash_every_s
    std::optional<double> restart_after_s;  // crashed nodes come back this long after
    uint32_t slow = 0;                      // nodes whose inbound messages are all delayed
    double slow_ms = 1500;
    bool lifeguard = true;
    std::optional<double> partition_at_s;
    std::optional<double> heal_at_s;
    std::optional<double> dead_retain_s;  // how long dead members are kept (default: profile's)
    double join_window_s = 1;             // nodes start at random times in [0, join_window_s)
    bool progress = false;                // a line on stderr every 10 virtual seconds

    // The task workload (0: none): clients submit this many tasks a second, each to a random
    // live node, from tasks_from_s until tasks_until_s (default: 60 s before the end, so that
    // the faults' effects settle before the checks).
    double tasks_per_s = 0;
    double task_ms = 200;  // how long a task's handler runs (±50%)
    uint32_t replicas = 2;
    uint32_t min_replicas = 0;  // 0: replicas
    // Of the crashed nodes, this many lose their disks: a restart finds the journal empty.
    uint32_t data_loss = 0;
    double commit_ms = 2;  // how long a journal commit takes
    double tasks_from_s = 5;
    std::optional<double> tasks_until_s;
    // Of the tasks, the shares submitted for coordinator placement and as singletons (issue
    // 17); the rest are placed on their keys' owners. With either, the first node to crash is
    // the coordinator.
    double coordinator_share = 0;
    double singleton_share = 0;
};

// One node's view of a crashed node, from the crash on: when it first stopped holding it alive
// (suspect, or dead at once) and when it first held it dead (or reaped it), in seconds since
// the crash. Empty: not by the end of the run, or not before the observer crashed too.
struct Detection {
    uint32_t crashed_node = 0;  // node indexes: the nodes are named n<index>
    uint32_t observer = 0;
    std::optional<double> suspect_s = {};
    std::optional<double> dead_s = {};
};

struct Report {
    Options options;
    std::optional<double> join_converged_s;
    uint64_t false_positives = 0;          // dead declared about never-crashed nodes
    uint64_t false_positives_healthy = 0;  // ... of those, about nodes that are not slow
    uint64_t false_suspicions = 0;         // suspicions raised about never-crashed nodes
    uint64_t partition_deaths = 0;         // deaths declared across an active partition
    std::optional<double> detect_first_s;  // median over crashed nodes
    std::optional<double> detect_all_s;
    std::optional<double> detect_all_max_s;
    uint32_t undetected = 0;  // crashed nodes some live node still believed in at the end
    // What the detection times above are made of: for each crashed node (in crash order), one
    // entry per node that was live at the crash and held it alive or suspect then, by
    // observer. Unless a view goes back or an observer crashes first, a crashed node's earliest
    // dead_s is its detect_first, its latest its detect_all. At most N entries per crash.
    std::vector<Detection> detections;
    std::optional<double> heal_converged_s;
    bool converged_at_end = false;
    double msgs_per_node_per_s = 0;
    double bytes_per_node_per_s = 0;
    // The same over the second half of the run only: past the join burst, the steady state.
    double steady_msgs_per_node_per_s = 0;
    double steady_bytes_per_node_per_s = 0;
    uint64_t packets_rejected = 0;  // by the decoder: must be 0 in a simulation
    std::vector<std::string> violations;
    double wall_s = 0;
    double peak_rss_mb = 0;
    size_t member_records = 0;  // member records held across all nodes at the end

    // The task workload's outcome (all zero without one).
    uint64_t tasks_submitted = 0;
    uint64_t tasks_acked = 0;       // answered 202 (or 200): the client was told it is kept
    uint64_t tasks_refused = 0;     // answered 503 or another error: the client knows to retry
    uint64_t tasks_unanswered = 0;  // the entry node crashed before it answered
    // Acknowledged tasks no live node holds at the end (lost), and ones held but not finished.
    uint64_t tasks_lost = 0;
    uint64_t tasks_unfinished = 0;
    uint64_t tasks_short = 0;      // held by fewer live members than replicas (or live) at the end
    uint64_t tasks_ran_twice = 0;  // acknowledged tasks whose handler started more than once
    // Of those, the ones no fault explains: no node that owned or ran them crashed after it
    // did, is slow, or was seen gone between the task's creation and its last start, and no
    // partition fell in that time.
    uint64_t tasks_ran_twice_unexplained = 0;
    uint64_t under_replicated_max = 0;  // the sum over live nodes, its highest sample
    uint64_t under_replicated_end = 0;
    // Lookups of finished tasks sent from every live node at the end, and those that did not
    // come back 200 succeeded.
    uint64_t lookups = 0;
    uint64_t lookups_unanswered = 0;
    uint64_t lookups_wrong = 0;  // a live task not found finished (a lost one's is not counted)
    uint64_t disks_lost = 0;     // crashes that took their disk (--data-loss)
    // Why the checks that need the faults' effects to settle were skipped (empty: they ran).
    std::string task_checks_skipped;
    std::optional<double> ack_p50_ms;
    std::optional<double> ack_p99_ms;
    std::optional<double> ack_max_ms;
    uint64_t task_frames = 0;
    uint64_t task_bytes = 0;
};

// Validates options; an error names the flag that is wrong.
Status validate(const Options& o);

// The chorus-sim flags that replay `o` (those that differ from the defaults).
std::string to_flags(const Options& o);

Report run(const Options& o);

}  // namespace chorus::sim
