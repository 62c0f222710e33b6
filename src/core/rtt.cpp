#include "core/rtt.hpp"

#include <algorithm>

namespace chorus {

void RttEstimator::sample(Duration rtt) {
    if (rtt < Duration::zero()) return;
    backoffs_ = 0;
    if (!srtt_) {
        srtt_ = rtt;
        rttvar_ = rtt / 2;
        return;
    }
    const Duration err = rtt > *srtt_ ? rtt - *srtt_ : *srtt_ - rtt;
    rttvar_ = (rttvar_ * 3 + err) / 4;
    srtt_ = (*srtt_ * 7 + rtt) / 8;
}

void RttEstimator::back_off() {
    backoffs_ = std::min(backoffs_ + 1, kBackoffsMax);
}

Duration RttEstimator::timeout(Duration initial, Duration min, Duration max) const {
    // The bounded timeout is what doubles, as TCP's RTO does with its floor.
    Duration t = std::clamp(srtt_ ? *srtt_ + 4 * rttvar_ : initial, min, max);
    for (uint32_t i = 0; i < backoffs_ && t < max; ++i)
        t *= 2;
    return std::min(t, max);
}

}  // namespace chorus
