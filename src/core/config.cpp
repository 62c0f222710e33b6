#include "core/config.hpp"

#include <cmath>

#include <fmt/format.h>

namespace chorus {

Config Config::lan() {
    return Config{};
}

Config Config::wan() {
    Config c;
    c.probe_interval = milliseconds(3000);
    c.probe_timeout_initial = milliseconds(1500);
    c.probe_timeout_min = milliseconds(300);
    c.probe_timeout_max = milliseconds(2000);
    c.suspicion_mult = 2.0;
    c.gossip_interval = milliseconds(500);
    c.gossip_nodes = 4;
    c.phi_acceptable_pause = milliseconds(3000);
    c.phi_min_std_dev = milliseconds(500);
    c.push_pull_interval = seconds(60);
    c.push_pull_startup = seconds(10);
    c.reconnect_interval = seconds(15);
    return c;
}

Config Config::local() {
    Config c;
    c.probe_interval = milliseconds(500);
    c.probe_timeout_initial = milliseconds(200);
    c.probe_timeout_min = milliseconds(20);
    c.probe_timeout_max = milliseconds(200);
    c.gossip_interval = milliseconds(50);
    c.phi_acceptable_pause = milliseconds(500);
    c.phi_min_std_dev = milliseconds(100);
    c.push_pull_interval = seconds(15);
    c.push_pull_startup = milliseconds(500);
    c.reconnect_interval = seconds(2);
    return c;
}

Result<Config> Config::profile(std::string_view name) {
    if (name == "lan") return lan();
    if (name == "wan") return wan();
    if (name == "local") return local();
    return Error{"bad_profile", fmt::format("unknown profile '{}': use lan, wan or local", name)};
}

namespace {

Status rule(bool holds, std::string_view field, std::string_view what) {
    if (holds) return Ok{};
    return Error{"bad_config", fmt::format("{}: {}", field, what)};
}

}  // namespace

Status Config::validate() const {
    const Status checks[] = {
        rule(!cluster.empty() && cluster.size() <= name_bytes_max, "cluster",
             "must be 1 to name_bytes_max bytes"),
        rule(probe_interval >= milliseconds(10), "probe_interval", "must be at least 10ms"),
        rule(probe_timeout_min > Duration::zero(), "probe_timeout_min", "must be positive"),
        rule(probe_timeout_min <= probe_timeout_initial &&
                 probe_timeout_initial <= probe_timeout_max,
             "probe_timeout_initial", "must lie within [probe_timeout_min, probe_timeout_max]"),
        rule(probe_timeout_max < probe_interval, "probe_timeout_max",
             "must be below probe_interval, or indirect probes get no time"),
        rule(indirect_checks <= 16, "indirect_checks", "must be at most 16"),
        rule(suspicion_mult >= 0.25 && suspicion_mult <= 100, "suspicion_mult",
             "must lie within [0.25, 100]"),
        rule(suspicion_max_mult >= 1 && suspicion_max_mult <= 100, "suspicion_max_mult",
             "must lie within [1, 100]"),
        rule(suspicion_verifiers <= 64, "suspicion_verifiers", "must be at most 64"),
        rule(awareness_max >= 1 && awareness_max <= 64, "awareness_max", "must lie within [1, 64]"),
        rule(phi_window >= 2 && phi_window <= 1024, "phi_window", "must lie within [2, 1024]"),
        rule(phi_min_std_dev > Duration::zero(), "phi_min_std_dev", "must be positive"),
        rule(phi_acceptable_pause >= Duration::zero(), "phi_acceptable_pause",
             "must not be negative"),
        rule(phi_suspect > 0, "phi_suspect", "must be positive"),
        rule(phi_min_samples >= 1 && phi_min_samples <= phi_window, "phi_min_samples",
             "must lie within [1, phi_window]"),
        rule(gossip_interval >= milliseconds(10), "gossip_interval", "must be at least 10ms"),
        rule(gossip_nodes >= 1 && gossip_nodes <= 32, "gossip_nodes", "must lie within [1, 32]"),
        rule(retransmit_mult >= 1 && retransmit_mult <= 32, "retransmit_mult",
             "must lie within [1, 32]"),
        rule(packet_bytes_max >= 512 && packet_bytes_max <= 65000, "packet_bytes_max",
             "must lie within [512, 65000]"),
        rule(broadcast_queue_max >= 16, "broadcast_queue_max", "must be at least 16"),
        rule(push_pull_interval >= seconds(1), "push_pull_interval", "must be at least 1s"),
        rule(push_pull_startup >= milliseconds(100) && push_pull_startup <= push_pull_interval,
             "push_pull_startup", "must lie within [100ms, push_pull_interval]"),
        rule(push_pull_scale_threshold >= 1, "push_pull_scale_threshold", "must be at least 1"),
        rule(reconnect_interval >= milliseconds(100), "reconnect_interval",
             "must be at least 100ms"),
        rule(dead_retain >= Duration::zero() && left_retain >= Duration::zero(), "dead_retain",
             "retention must not be negative"),
        rule(tombstone_ttl >= Duration::zero(), "tombstone_ttl", "must not be negative"),
        rule(members_max >= 2, "members_max", "must be at least 2"),
        rule(name_bytes_max >= 8 && name_bytes_max <= 1024, "name_bytes_max",
             "must lie within [8, 1024]"),
        rule(tags_max <= 256, "tags_max", "must be at most 256"),
        rule(tag_bytes_max >= 16 && tag_bytes_max <= 65536, "tag_bytes_max",
             "must lie within [16, 65536]"),
    };
    for (const auto& s : checks) {
        if (!s) return s;
    }
    return Ok{};
}

Duration suspicion_min(const Config& c, size_t n) {
    const double factor = std::max(1.0, std::log10(std::max<double>(1.0, static_cast<double>(n))));
    return scale(c.probe_interval, c.suspicion_mult * factor);
}

uint32_t retransmit_limit(uint32_t retransmit_mult, size_t n) {
    const auto scale_by = static_cast<uint32_t>(std::ceil(std::log10(static_cast<double>(n) + 1)));
    return retransmit_mult * std::max<uint32_t>(1, scale_by);
}

Duration push_pull_interval_for(const Config& c, size_t n) {
    if (n <= c.push_pull_scale_threshold) return c.push_pull_interval;
    const double steps = std::ceil(std::log2(static_cast<double>(n)) -
                                   std::log2(static_cast<double>(c.push_pull_scale_threshold)));
    return scale(c.push_pull_interval, 1.0 + steps);
}

}  // namespace chorus
