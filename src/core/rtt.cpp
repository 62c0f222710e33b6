#include "core/rtt.hpp"

#include <algorithm>

namespace chorus {

void RttEstimator::sample(Duration rtt) {
    if (rtt < Duration::zero()) return;
    if (!srtt_) {
        srtt_ = rtt;
        rttvar_ = rtt / 2;
        return;
    }
    const Duration err = rtt > *srtt_ ? rtt - *srtt_ : *srtt_ - rtt;
    rttvar_ = (rttvar_ * 3 + err) / 4;
    srtt_ = (*srtt_ * 7 + rtt) / 8;
}

Duration RttEstimator::timeout(Duration initial, Duration min, Duration max) const {
    if (!srtt_) return initial;
    return std::clamp(*srtt_ + 4 * rttvar_, min, max);
}

}  // namespace chorus
