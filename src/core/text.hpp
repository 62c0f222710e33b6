// Text that arrives from outside: member names, addresses, tags, task keys and ids.
//
// Every such string ends up in JSON (which must be UTF-8), in log lines (where a newline would
// forge a line of its own), in environment variables and in file names. So it must be valid
// UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF) and hold no control
// characters (U+0000-U+001F, U+007F-U+009F). The wire codec, the HTTP API and the config
// loader all check with the one function here, so what one accepts the others do too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chorus {

enum class TextProblem : uint8_t { none, not_utf8, control };

// What is wrong with `s`, if anything (the first problem found).
TextProblem check_text(std::string_view s);
inline bool clean_text(std::string_view s) {
    return check_text(s) == TextProblem::none;
}
// "is not valid UTF-8" / "holds a control character": for error messages.
std::string_view describe(TextProblem p);

// `s` as one token of a text log line (logfmt's quoting): as it is when it has no space, quote,
// equals sign or backslash and is clean; otherwise in double quotes with `"` and `\` escaped,
// control characters as \n, \r, \t or \xNN, and bytes that are not UTF-8 as \xNN. The result
// never holds a line break, so a name cannot forge a log line.
std::string log_quote(std::string_view s);

// Of `known`, the one `typed` most likely misspells: within two edits (insert, delete or change
// a character), or `typed` a prefix of it; the first of the nearest. "" when none is that close.
// For "did you mean" in errors about a command or a config key.
std::string closest(std::string_view typed, const std::vector<std::string>& known);

}  // namespace chorus
