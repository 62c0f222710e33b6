// Virtual time for the protocol core.
//
// The core never reads a clock: every input carries `now`. `Clock` is a tag type with no
// `now()`, so code that tries to read it does not compile. The daemon converts libuv's
// monotonic clock into it; the simulator advances it from its event queue.
#pragma once

#include <chrono>
#include <cstdint>

namespace chorus {

struct Clock {
    using duration = std::chrono::microseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<Clock>;
    static constexpr bool is_steady = true;
};

using Duration = Clock::duration;
using Time = Clock::time_point;

using std::chrono::milliseconds;
using std::chrono::seconds;

inline constexpr double to_seconds(Duration d) {
    return std::chrono::duration<double>(d).count();
}

inline constexpr Duration from_seconds(double s) {
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

// Whole milliseconds, and 0 for a negative duration: what libuv's timers take.
inline constexpr uint64_t ms_of(Duration d) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return ms < 0 ? 0 : static_cast<uint64_t>(ms);
}

// Scales a duration by a real factor, rounding to the clock's resolution.
inline constexpr Duration scale(Duration d, double factor) {
    return Duration(static_cast<Duration::rep>(static_cast<double>(d.count()) * factor));
}

}  // namespace chorus
