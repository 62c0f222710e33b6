#include "daemon/log.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

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

uint64_t Logger::add_tap(Level min, Tap tap) const {
    const uint64_t id = next_tap_++;
    taps_.emplace(id, std::pair{min, std::move(tap)});
    tap_min_ = std::min(tap_min_, min);
    return id;
}

void Logger::remove_tap(uint64_t id) const {
    taps_.erase(id);
    tap_min_ = static_cast<Level>(4);
    for (const auto& [_, t] : taps_)
        tap_min_ = std::min(tap_min_, t.first);
}

void Logger::log(Level level, std::string_view msg, std::initializer_list<Field> fields) const {
    const bool to_out = level >= min_;
    const bool to_taps = level >= tap_min_ && !tapping_;
    if (!to_out && !to_taps) return;
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
    if (to_out) {
        std::fwrite(line.data(), 1, line.size(), out_);
        std::fflush(out_);
    }
    if (!to_taps) return;
    // A tap may remove itself or another (its client went): each is looked up, and called
    // through a copy, as the list stands at its turn.
    tapping_ = true;
    std::vector<uint64_t> ids;
    for (const auto& [id, t] : taps_)
        if (level >= t.first) ids.push_back(id);
    for (const uint64_t id : ids) {
        auto it = taps_.find(id);
        if (it == taps_.end()) continue;
        const Tap tap = it->second.second;
        tap(line);
    }
    tapping_ = false;
}

}  // namespace chorus::daemon
