#include "sim/network.hpp"

namespace chorus::sim {

Duration Network::latency() {
    return scale(opts_.latency, 0.5 + rng_.unit());
}

std::optional<Duration> Network::datagram(uint32_t a, uint32_t b) {
    if (!reachable(a, b)) return std::nullopt;
    if (opts_.loss > 0 && rng_.chance(opts_.loss)) return std::nullopt;
    return latency();
}

std::optional<Duration> Network::stream(uint32_t a, uint32_t b) {
    if (!reachable(a, b)) return std::nullopt;
    return latency();
}

}  // namespace chorus::sim
