// Phi-accrual failure detector (Hayashibara et al., "The φ Accrual Failure Detector", 2004),
// in Akka's form: inter-arrival times of signs of life are modelled as a normal distribution
// and φ = -log10(P(the next sign arrives later than now)). φ = 1 means a 10% chance that the
// member is still fine and merely late, φ = 8 one in 10^8.
//
// One detector per member, fed by every direct sign of life from it (acks, its own packets,
// push-pull). It holds a bounded window of samples, allocated only once the member is heard.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "core/time.hpp"

namespace chorus {

struct PhiParams {
    uint32_t window = 32;  // at most 65535
    uint32_t min_samples = 3;
    Duration min_std_dev = milliseconds(200);
    Duration acceptable_pause = milliseconds(1000);
    // Signs of life closer than this to the previous one are one arrival, not two: an ack and
    // the gossip that follows it a millisecond later say nothing new about the member's rhythm.
    Duration coalesce = milliseconds(100);
};

// φ for `elapsed` time since the last arrival, given the distribution's mean and standard
// deviation. Uses Akka's logistic approximation of the normal CDF, which is accurate to about
// 1e-4 and never takes the log of zero.
double phi_value(Duration elapsed, Duration mean, Duration std_dev);

// 24 bytes inline per member, plus window × 2 bytes once the member has been heard twice:
// a node keeps one per member, and clusters have thousands. Samples are whole milliseconds
// (intervals over 65 s are clamped, and are outliers anyway); the mean and deviation are
// computed when φ is read, which is rare next to heartbeats.
class PhiDetector {
  public:
    void heartbeat(Time now, const PhiParams& p);
    double phi(Time now, const PhiParams& p) const;

    size_t samples() const { return count_; }
    std::optional<Time> last_heard() const {
        return last_ == Time::min() ? std::nullopt : std::optional<Time>(last_);
    }
    Duration mean() const;
    Duration std_dev() const;

  private:
    Time last_ = Time::min();
    std::unique_ptr<uint16_t[]> ms_;  // ring buffer of `window` samples
    uint16_t next_ = 0;
    uint16_t count_ = 0;
};

}  // namespace chorus
