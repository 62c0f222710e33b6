#include "daemon/log.hpp"

#include <chrono>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/text.hpp"
#include "daemon/json.hpp"

namespace chorus::daemon {

namespace {
constexpr std::string_view kNames[] = {"debug", "info", "warn", "error"};
}

Level Logger::parse_level(std::string_view s) {
    for (int i = 0; i < 4; ++i) {
        if (kNames[i] == s) return static_cast<Level>(i);
    }
    return Level::info;
}

std::string utc_timestamp() {
    const auto now = std::chrono::system_clock::now();
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z",
                       std::chrono::time_point_cast<std::chrono::seconds>(now), ms);
}

void Logger::log(Level level, std::string_view msg, std::initializer_list<Field> fields) const {
    if (!enabled(level)) return;
    const std::string ts = utc_timestamp();
    const auto name = kNames[static_cast<int>(level)];
    std::string line;
    if (json_) {
        nlohmann::json j{{"ts", ts}, {"level", name}, {"msg", msg}};
        for (const auto& [k, v] : fields)
            std::visit([&, &key = k](const auto& x) { j[std::string(key)] = x; }, v.get());
        line = dump_json(j);
    } else {
        // A value from the network is quoted and escaped, so a name holding a line break
        // cannot forge a line; the message is prose and is escaped only if it needs it.
        line = fmt::format("{} {:5} {}", ts, name,
                           clean_text(msg) ? std::string(msg) : log_quote(msg));
        for (const auto& [k, v] : fields) {
            line += std::visit(
                [&, &key = k](const auto& x) {
                    if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::string>) {
                        return fmt::format(" {}={}", key, log_quote(x));
                    } else {
                        return fmt::format(" {}={}", key, x);
                    }
                },
                v.get());
        }
    }
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fflush(out_);
}

}  // namespace chorus::daemon
