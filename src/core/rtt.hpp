// Round-trip estimator for the adaptive probe timeout: Jacobson/Karels smoothing as in TCP's
// RTO (RFC 6298 §2), fed by direct probe round trips. The timeout is srtt + 4·rttvar, clamped
// to the configured bounds, so a quiet LAN gets a short timeout (and indirect probes more of
// the period) while a slow link is not suspected for being slow.
#pragma once

#include <optional>

#include "core/time.hpp"

namespace chorus {

class RttEstimator {
  public:
    void sample(Duration rtt);
    // The timeout to use now; `initial` until the first sample.
    Duration timeout(Duration initial, Duration min, Duration max) const;
    std::optional<Duration> srtt() const { return srtt_; }

  private:
    std::optional<Duration> srtt_;
    Duration rttvar_{};
};

}  // namespace chorus
