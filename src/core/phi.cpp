#include "core/phi.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace chorus {

double phi_value(Duration elapsed, Duration mean, Duration std_dev) {
    const double sd = std::max(1.0, static_cast<double>(std_dev.count()));
    const double y =
        (static_cast<double>(elapsed.count()) - static_cast<double>(mean.count())) / sd;
    const double e = std::exp(-y * (1.5976 + 0.070566 * y * y));
    // Both branches compute -log10(P(X > elapsed)); they are split to avoid cancellation.
    if (elapsed > mean) return -std::log10(e / (1.0 + e));
    return -std::log10(1.0 - 1.0 / (1.0 + e));
}

void PhiDetector::heartbeat(Time now, const PhiParams& p) {
    if (last_ && now - *last_ < p.coalesce) return;
    if (last_) {
        const auto us =
            std::clamp<int64_t>((now - *last_).count(), 0, std::numeric_limits<uint32_t>::max());
        const auto sample = static_cast<uint32_t>(us);
        if (intervals_us_.size() < p.window) {
            intervals_us_.push_back(sample);
        } else {
            const double old = intervals_us_[next_];
            sum_ -= old;
            sum_sq_ -= old * old;
            intervals_us_[next_] = sample;
        }
        next_ = (next_ + 1) % p.window;
        count_ = intervals_us_.size();
        sum_ += sample;
        sum_sq_ += static_cast<double>(sample) * sample;
    }
    last_ = now;
}

Duration PhiDetector::mean() const {
    if (count_ == 0) return Duration::zero();
    return Duration(static_cast<Duration::rep>(sum_ / static_cast<double>(count_)));
}

Duration PhiDetector::std_dev() const {
    if (count_ == 0) return Duration::zero();
    const double m = sum_ / static_cast<double>(count_);
    const double var = std::max(0.0, sum_sq_ / static_cast<double>(count_) - m * m);
    return Duration(static_cast<Duration::rep>(std::sqrt(var)));
}

double PhiDetector::phi(Time now, const PhiParams& p) const {
    if (!last_ || count_ < p.min_samples) return 0.0;
    const Duration sd = std::max(std_dev(), p.min_std_dev);
    return phi_value(now - *last_, mean() + p.acceptable_pause, sd);
}

}  // namespace chorus
