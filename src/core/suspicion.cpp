#include "core/suspicion.hpp"

#include <algorithm>
#include <cmath>

namespace chorus {

Duration suspicion_timeout(Duration min, Duration max, uint32_t confirmations, uint32_t expected) {
    if (expected == 0 || max <= min) return min;
    const double frac = std::log(static_cast<double>(std::min(confirmations, expected)) + 1.0) /
                        std::log(static_cast<double>(expected) + 1.0);
    const Duration t = max - scale(max - min, frac);
    return std::max(t, min);
}

Suspicion::Suspicion(Time start, Incarnation incarnation, Name from, Duration min, Duration max,
                     uint32_t expected)
    : start_(start),
      incarnation_(incarnation),
      accuser_(std::move(from)),
      min_(min),
      max_(std::max(min, max)),
      expected_(expected) {}

bool Suspicion::confirm(const Name& from) {
    if (confirmers_.size() >= expected_ || from == accuser_) return false;
    if (std::find(confirmers_.begin(), confirmers_.end(), from) != confirmers_.end()) return false;
    confirmers_.push_back(from);
    return true;
}

Time Suspicion::deadline() const {
    return start_ + suspicion_timeout(min_, max_, confirmations(), expected_);
}

}  // namespace chorus
