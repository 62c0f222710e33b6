// Round-trip estimator for adaptive timeouts: Jacobson/Karels smoothing as in TCP's RTO
// (RFC 6298 §2). The timeout is srtt + 4·rttvar, clamped to the caller's bounds, so a quiet LAN
// gets a short timeout while a slow link is not given up on for being slow. Two users: the
// membership probe (direct probe round trips; a quiet LAN leaves indirect probes more of the
// period) and the task entry's forward to an owner (accepted forwards' round trips, per owner,
// in TaskNode).
#pragma once

#include <cstdint>
#include <optional>

#include "core/time.hpp"

namespace chorus {

class RttEstimator {
  public:
    // A measured round trip. It also ends any back-off: the peer answers in time again.
    void sample(Duration rtt);
    // A request timed out: each timeout doubles the next one (RFC 6298 §5.5) until a sample
    // comes. The answer of a request that timed out is never a sample (Karn's rule), so without
    // the doubling a peer slower than the timeout would be timed out for ever.
    void back_off();
    // The timeout to use now; `initial` until the first sample; doubled per back-off since the
    // last sample; within [min, max].
    Duration timeout(Duration initial, Duration min, Duration max) const;
    std::optional<Duration> srtt() const { return srtt_; }
    uint32_t backoffs() const { return backoffs_; }

  private:
    // Doublings past this reach any sane `max` (2^16 × 1 ms is over a minute): the count stops,
    // and the timeout stays at its ceiling.
    static constexpr uint32_t kBackoffsMax = 16;

    std::optional<Duration> srtt_;
    Duration rttvar_{};
    uint32_t backoffs_ = 0;
};

}  // namespace chorus
