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
    std::optional<double> restart_after_s;  // crashed nodes come back this long after
    uint32_t slow = 0;                      // nodes whose inbound messages are all delayed
    double slow_ms = 1500;
    bool lifeguard = true;
    std::optional<double> partition_at_s;
    std::optional<double> heal_at_s;
    double join_window_s = 1;  // nodes start at random times in [0, join_window_s)
    bool progress = false;     // a line on stderr every 10 virtual seconds
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
};

// Validates options; an error names the flag that is wrong.
Status validate(const Options& o);

Report run(const Options& o);

}  // namespace chorus::sim
