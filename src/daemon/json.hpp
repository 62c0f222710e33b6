// JSON at the agent's edges: untrusted text in, text out, and no exception either way.
//
// Every JSON the agent parses (request bodies, task payloads and results, the config file)
// comes from someone who may be hostile, and nlohmann_json reports trouble by throwing: a
// number out of range (1e999) throws out_of_range, and text that is not UTF-8 throws from
// dump(). An exception escaping a libuv callback ends the agent, so these functions are the
// only way the agent's code parses or prints JSON: errors are values, and printing never fails.
//
// Nesting is bounded too. The parser itself is iterative, but copying, printing and comparing
// a document recurse once per level, so 150,000 nested `[` overflow the stack wherever the
// document goes next. Text deeper than the limit is refused before it is parsed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace chorus::daemon {

// The deepest nesting of arrays and objects accepted anywhere. Real payloads and configs are a
// handful of levels deep; 64 leaves them room and keeps every recursion over a document short.
inline constexpr size_t kJsonDepthMax = 64;

// Parses `text`. Errors (Error::code): `too_deep` (nested past `depth_max`), `bad_json` (not
// JSON: a syntax error, bytes that are not UTF-8, a number out of range), with a message that
// says where.
Result<nlohmann::json> parse_json(std::string_view text, size_t depth_max = kJsonDepthMax);

// The same checks without building the document: for JSON text that is passed on as text (a
// task's payload from another node).
Status check_json(std::string_view text, size_t depth_max = kJsonDepthMax);

// Compact JSON text. Strings that are not valid UTF-8 have each bad byte replaced by U+FFFD
// instead of throwing.
std::string dump_json(const nlohmann::json& j, int indent = -1);

// `j[key]` when `j` is an object holding a string there, else "".
std::string string_field(const nlohmann::json& j, const char* key);

// JSON text as a value to embed in a document: the text parsed if it is JSON within the
// limits, else the text itself as a JSON string (what a reader can still make sense of).
nlohmann::json json_or_string(std::string_view text);

}  // namespace chorus::daemon
