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
    if (last_ != Time::min()) {
        if (now - last_ < p.coalesce) return;
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_).count();
        if (!ms_) ms_ = std::make_unique<uint16_t[]>(p.window);
        ms_[next_] = static_cast<uint16_t>(std::clamp<int64_t>(ms, 0, 65535));
        next_ = static_cast<uint16_t>((next_ + 1) % p.window);
        if (count_ < p.window) ++count_;
    }
    last_ = now;
}

Duration PhiDetector::mean() const {
    if (count_ == 0) return Duration::zero();
    double sum = 0;
    for (uint16_t i = 0; i < count_; ++i)
        sum += ms_[i];
    return from_seconds(sum / count_ / 1000.0);
}

Duration PhiDetector::std_dev() const {
    if (count_ == 0) return Duration::zero();
    double sum = 0, sum_sq = 0;
    for (uint16_t i = 0; i < count_; ++i) {
        sum += ms_[i];
        sum_sq += static_cast<double>(ms_[i]) * ms_[i];
    }
    const double m = sum / count_;
    return from_seconds(std::sqrt(std::max(0.0, sum_sq / count_ - m * m)) / 1000.0);
}

double PhiDetector::phi(Time now, const PhiParams& p) const {
    if (last_ == Time::min() || count_ < p.min_samples) return 0.0;
    const Duration sd = std::max(std_dev(), p.min_std_dev);
    return phi_value(now - last_, mean() + p.acceptable_pause, sd);
}

}  // namespace chorus
