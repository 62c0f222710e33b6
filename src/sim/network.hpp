// The simulated network: decides whether and when a message between two simulated nodes
// arrives. Datagrams may be lost; streams (push-pull) are reliable like TCP but cannot cross a
// partition. Latency is the mean with ±50% uniform jitter. Every draw comes from the seeded
// generator, so one seed replays the same deliveries.
#pragma once

#include <cstdint>
#include <optional>

#include "core/rng.hpp"
#include "core/time.hpp"

namespace chorus::sim {

struct NetworkOptions {
    double loss = 0.0;                   // probability a datagram is dropped
    Duration latency = milliseconds(1);  // mean one-way latency
};

class Network {
  public:
    Network(NetworkOptions opts, uint64_t seed) : opts_(opts), rng_(seed) {}

    // Splits the nodes [0, n) into [0, n/2) and [n/2, n) until heal().
    void partition(uint32_t n) { split_at_ = n / 2; }
    void heal() { split_at_.reset(); }
    bool partitioned() const { return split_at_.has_value(); }
    bool reachable(uint32_t a, uint32_t b) const {
        return !split_at_ || ((a < *split_at_) == (b < *split_at_));
    }

    // Delay of a datagram from a to b, or nullopt if it is lost.
    std::optional<Duration> datagram(uint32_t a, uint32_t b);
    // Delay of one stream message from a to b, or nullopt if b cannot be reached.
    std::optional<Duration> stream(uint32_t a, uint32_t b);

  private:
    Duration latency();

    NetworkOptions opts_;
    Rng rng_;
    std::optional<uint32_t> split_at_;
};

}  // namespace chorus::sim
