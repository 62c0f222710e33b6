// Protocol configuration: every timing knob and limit of the membership core.
//
// Profiles set the timing knobs together, as memberlist does: `lan()` (the default) for one
// data centre, `wan()` for links with 100+ ms round trips and real loss, `local()` for loopback
// and tests. `validate()` names the rule a bad config breaks. Durations are std::chrono types;
// other units are in the field name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/time.hpp"

namespace chorus {

struct Config {
    // Cluster name carried in every packet; packets of another cluster are dropped, so two
    // clusters sharing a network cannot merge by accident.
    std::string cluster = "chorus";

    // ---- failure detection (SWIM §4.1, Lifeguard §4) ----

    // Time between two probes of this node. Smaller detects sooner at the cost of
    // 2 × indirect_checks extra packets per failed probe and 2 packets per period always.
    Duration probe_interval = milliseconds(1000);
    // The direct-ack timeout adapts to the measured round trips (srtt + 4·rttvar, as TCP's
    // RTO) inside [probe_timeout_min, probe_timeout_max]; probe_timeout_initial applies until
    // the first round trip is measured. Must stay below probe_interval so that indirect probes
    // have time to answer within the period.
    Duration probe_timeout_initial = milliseconds(500);
    Duration probe_timeout_min = milliseconds(100);
    Duration probe_timeout_max = milliseconds(500);
    // Members asked to probe a silent target for us (ping-req). More relays mean fewer false
    // suspicions under loss; each costs 4 packets per failed probe. 0 disables indirect probes.
    uint32_t indirect_checks = 3;

    // Suspicion timeout (Lifeguard §4.2): it starts at suspicion_max_mult × the minimum and
    // shrinks toward the minimum as independent confirmations arrive. The minimum is
    // suspicion_mult × max(1, log10(n)) × probe_interval, so it grows slowly with cluster size,
    // as the time for a refutation to spread does.
    double suspicion_mult = 1.0;
    double suspicion_max_mult = 6.0;
    // When a node hears a new suspicion it probes the suspect itself with probability
    // suspicion_verifiers / n, so a real failure collects confirmations within about one probe
    // period instead of waiting for round-robin probes to reach it; a false one is refuted
    // by the target (which those probes also tell, as Lifeguard's buddy system does).
    uint32_t suspicion_verifiers = 3;

    // Local health awareness (Lifeguard §4.1): a node whose probes fail or that had to refute
    // stretches its probe interval and timeout by (1 + score), up to awareness_max.
    uint32_t awareness_max = 8;

    // Turns all of Lifeguard off (awareness, dynamic suspicion, buddy system, nacks) for
    // comparison with plain SWIM; suspicion then lasts the minimum timeout.
    bool lifeguard = true;

    // Keep each member's last direct round trip (Node::round_trip), for operators: the agent
    // shows it (/v1/members, the dashboard). Off in the simulator, whose 10,000 nodes would
    // each keep 10,000.
    bool member_rtts = false;

    // ---- phi accrual (Hayashibara et al.; Akka's normal-distribution form) ----

    // Inter-arrival samples kept per member; older ones are forgotten. Signs of life at scale
    // are irregular and sparse, so recent intervals carry the information; 16 samples cost
    // 32 bytes a member.
    uint32_t phi_window = 16;
    // Floor of the standard deviation, so a very regular peer is not judged on microseconds.
    Duration phi_min_std_dev = milliseconds(200);
    // Extra time tolerated on top of the mean interval before suspicion rises (GC pauses, bursts).
    Duration phi_acceptable_pause = milliseconds(1000);
    // Signs of life closer together than this count as one arrival (an ack and the gossip
    // right behind it say nothing new about the member's rhythm).
    Duration phi_coalesce = milliseconds(100);
    // A member with φ above this is probed at once instead of waiting its round-robin turn.
    double phi_suspect = 8.0;
    // Samples needed before φ is trusted; below it φ reads 0.
    uint32_t phi_min_samples = 3;
    // φ checks per probe period, over a cursor through the members (bounded work at any size).
    uint32_t phi_checks_per_period = 16;

    // ---- dissemination (SWIM §4.4) ----

    // Gossip tick: every gossip_interval send pending updates to gossip_nodes random members.
    // An idle cluster sends nothing on this tick, so a short interval costs only while news is
    // spreading; half memberlist's 200 ms halves the time a join or a death takes to reach
    // everyone (at N=100 in the simulator, 1.4 s instead of 3.0 s to a converged join).
    Duration gossip_interval = milliseconds(100);
    uint32_t gossip_nodes = 3;
    // Members told at the next gossip tick when this node's task load changed (ARCHITECTURE.md,
    // "Tasks"). Routers need it fresh: up to this many, every member hears each change; beyond it,
    // a random subset each tick, so the cost per tick stays bounded at any cluster size.
    uint32_t load_report_nodes = 64;
    // Each update is sent retransmit_mult × ceil(log10(n + 1)) times before it is dropped.
    uint32_t retransmit_mult = 4;
    // Largest datagram we send: 1400 stays under a 1500-byte Ethernet MTU with IP/UDP headers.
    uint32_t packet_bytes_max = 1400;
    // Pending updates kept at most; when full, the most-sent one goes first. At ~200 bytes an
    // update, 1024 bounds the queue at ~200 KB a node; during a mass join, what it drops
    // reaches members through push-pull instead.
    uint32_t broadcast_queue_max = 1024;

    // ---- anti-entropy and lifecycle ----

    // Full-state push-pull with one random member. Above push_pull_scale_threshold members the
    // interval grows by one step per doubling, so per-node bandwidth stays flat.
    Duration push_pull_interval = seconds(30);
    // After start, push-pulls come at this interval, doubling until they reach the regular one
    // or until an interval passes that taught the node nothing, so that the partial views of
    // members that joined together merge in a few rounds. Gossip with bounded retransmits
    // leaves a tail (a member or two that missed one update); the first push-pull closes it:
    // at N=25 a converged join took 0.2-2.1 s with 2 s here, and 0.2-0.6 s with 500 ms.
    Duration push_pull_startup = milliseconds(500);
    uint32_t push_pull_scale_threshold = 32;
    // Dead (not left) members are re-contacted by push-pull every reconnect_interval, so the
    // two halves of a healed partition merge by themselves.
    Duration reconnect_interval = seconds(5);
    // How long dead and left members stay in the table (and dead ones are re-contacted).
    Duration dead_retain = seconds(3600);
    Duration left_retain = seconds(300);
    // After a member is removed, a tombstone keeps stale gossip from reviving it this long.
    Duration tombstone_ttl = seconds(600);
    // Members (and tombstones) kept at most. Bounds what a flood of invented names costs: each
    // member costs its record (about 300 bytes with its detector and probe list) and, on a
    // node that routes tasks, its points on the ring (64 × 16 bytes), so 16,384 hold about
    // 22 MB. When it is full, tombstones and then the members gone longest make way for a
    // member that announces itself; beyond that, new members are refused and counted.
    uint32_t members_max = 16384;
    // Limits on names, addresses and tags a member may announce; the wire enforces them too.
    uint32_t name_bytes_max = 128;
    uint32_t tags_max = 32;
    uint32_t tag_bytes_max = 512;

    static Config lan();
    static Config wan();
    static Config local();
    // The profile named `lan`, `wan` or `local`.
    static Result<Config> profile(std::string_view name);

    Status validate() const;
};

// Lifeguard §4.2's minimum suspicion timeout for a cluster of n members.
Duration suspicion_min(const Config& c, size_t n);

// Times each update is sent before the broadcast queue drops it (memberlist's retransmitLimit).
uint32_t retransmit_limit(uint32_t retransmit_mult, size_t n);

// The push-pull interval for a cluster of n members (memberlist's pushPullScale).
Duration push_pull_interval_for(const Config& c, size_t n);

}  // namespace chorus
