// Log lines to stderr, as text or JSON lines, with a minimum level. One line per call; fields
// are key/value pairs so a JSON line is machine-readable without parsing the message.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace chorus::daemon {

// Now in UTC, to the millisecond: "2026-12-01T04:10:00.123Z".
std::string utc_timestamp();

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

class Logger {
  public:
    using Field = std::pair<std::string_view, std::string>;
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
