// Log lines to stderr, as text or JSON lines, with a minimum level. One line per call; fields
// are key/value pairs so a JSON line is machine-readable without parsing the message.
#pragma once

#include <concepts>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
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
    bool enabled(Level level) const { return level >= min_; }

  private:
    Level min_;
    bool json_;
    std::FILE* out_;
};

}  // namespace chorus::daemon
