// Log lines to stderr, as text or JSON lines, with a minimum level. One line per call; fields
// are key/value pairs so a JSON line is machine-readable without parsing the message.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace chorus::daemon {

// Now in UTC, to the millisecond: "2026-12-01T04:10:00.123Z".
std::string utc_timestamp();

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

// A field's value: text, or a number, which a JSON line keeps a number.
class LogValue {
  public:
    LogValue(std::string s) : v_(std::move(s)) {}         // NOLINT(google-explicit-constructor)
    LogValue(std::string_view s) : v_(std::string(s)) {}  // NOLINT
    LogValue(const char* s) : v_(std::string(s)) {}       // NOLINT
    template <std::signed_integral I>
    LogValue(I n) : v_(static_cast<int64_t>(n)) {}  // NOLINT
    template <std::unsigned_integral I>
    requires(!std::same_as<I, bool>) LogValue(I n) : v_(static_cast<uint64_t>(n)) {}  // NOLINT
    LogValue(double d) : v_(d) {}                                                     // NOLINT

    const std::variant<std::string, int64_t, uint64_t, double>& get() const { return v_; }

  private:
    std::variant<std::string, int64_t, uint64_t, double> v_;
};

class Logger {
  public:
    using Field = std::pair<std::string_view, LogValue>;
    Logger(Level min, bool json, std::FILE* out = stderr) : min_(min), json_(json), out_(out) {}
    static Level parse_level(std::string_view s);

    void log(Level level, std::string_view msg, std::initializer_list<Field> fields = {}) const;
    // Whether a line at `level` goes anywhere: the log, or a tap.
    bool enabled(Level level) const { return level >= min_ || level >= tap_min_; }

    // Another reader of the log (`chorus monitor`, GET /v1/monitor): each line at `min` or
    // above, as the log writes it (text or JSON, with its newline), even below the log's own
    // level. Called on the logging thread, the loop's; a line logged from within a tap goes
    // to the log only, so a tap that logs cannot feed itself. Watching does not change what
    // the log writes, hence const.
    using Tap = std::function<void(std::string_view line)>;
    uint64_t add_tap(Level min, Tap tap) const;
    void remove_tap(uint64_t id) const;
    size_t taps() const { return taps_.size(); }

  private:
    Level min_;
    bool json_;
    std::FILE* out_;
    mutable std::map<uint64_t, std::pair<Level, Tap>> taps_;
    mutable Level tap_min_ = static_cast<Level>(4);  // above error: no tap
    mutable uint64_t next_tap_ = 1;
    mutable bool tapping_ = false;
};

}  // namespace chorus::daemon
