#include "daemon/json.hpp"

#include <optional>

#include <fmt/format.h>

namespace chorus::daemon {

namespace {

// The byte at which `text` first nests deeper than `depth_max`, if it does. Exact for valid
// JSON; for anything else the parser that follows reports the real error.
std::optional<size_t> too_deep_at(std::string_view text, size_t depth_max) {
    size_t depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > depth_max) return i;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return std::nullopt;
}

Error deep(size_t at, size_t depth_max) {
    return Error{"too_deep",
                 fmt::format("JSON nested deeper than {} levels (at byte {})", depth_max, at)};
}

}  // namespace

Result<nlohmann::json> parse_json(std::string_view text, size_t depth_max) {
    if (auto at = too_deep_at(text, depth_max)) return deep(*at, depth_max);
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        return Error{"bad_json", fmt::format("not valid JSON (at byte {})", e.byte)};
    } catch (const nlohmann::json::exception& e) {
        // out_of_range.406: a number too large for a double, such as 1e999.
        return Error{"bad_json", fmt::format("not valid JSON: {}", e.what())};
    }
}

Status check_json(std::string_view text, size_t depth_max) {
    if (auto at = too_deep_at(text, depth_max)) return deep(*at, depth_max);
    // accept() reports every error, an out-of-range number included, as false.
    if (!nlohmann::json::accept(text)) return Error{"bad_json", "not valid JSON"};
    return Ok{};
}

std::string dump_json(const nlohmann::json& j, int indent) {
    return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json json_or_string(std::string_view text) {
    if (auto j = parse_json(text)) return std::move(*j);
    return std::string(text);
}

std::string string_field(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return "";
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace chorus::daemon
