#include "core/text.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace chorus {

namespace {

// The length of the well-formed UTF-8 sequence starting at s[i], or 0 if it is not one
// (RFC 3629 §4, the table of well-formed byte sequences).
size_t utf8_length(std::string_view s, size_t i) {
    const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
    const uint8_t b0 = byte(i);
    if (b0 < 0x80) return 1;
    const auto cont = [&](size_t k, uint8_t lo = 0x80, uint8_t hi = 0xbf) {
        return k < s.size() && byte(k) >= lo && byte(k) <= hi;
    };
    if (b0 >= 0xc2 && b0 <= 0xdf) return cont(i + 1) ? 2 : 0;
    if (b0 >= 0xe0 && b0 <= 0xef) {
        const uint8_t lo = b0 == 0xe0 ? 0xa0 : 0x80;  // no overlong forms
        const uint8_t hi = b0 == 0xed ? 0x9f : 0xbf;  // no surrogates
        return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
    }
    if (b0 >= 0xf0 && b0 <= 0xf4) {
        const uint8_t lo = b0 == 0xf0 ? 0x90 : 0x80;  // no overlong forms
        const uint8_t hi = b0 == 0xf4 ? 0x8f : 0xbf;  // nothing past U+10FFFF
        return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
    }
    return 0;
}

// C0 controls and DEL in one byte; C1 controls (U+0080-U+009F) are 0xC2 0x80-0x9F.
bool is_control(std::string_view s, size_t i, size_t len) {
    const auto b0 = static_cast<uint8_t>(s[i]);
    if (len == 1) return b0 < 0x20 || b0 == 0x7f;
    return len == 2 && b0 == 0xc2 && static_cast<uint8_t>(s[i + 1]) <= 0x9f;
}

}  // namespace

TextProblem check_text(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const size_t len = utf8_length(s, i);
        if (len == 0) return TextProblem::not_utf8;
        if (is_control(s, i, len)) return TextProblem::control;
        i += len;
    }
    return TextProblem::none;
}

std::string_view describe(TextProblem p) {
    switch (p) {
        case TextProblem::none:
            return "is valid text";
        case TextProblem::not_utf8:
            return "is not valid UTF-8";
        case TextProblem::control:
            return "holds a control character";
    }
    return "is not valid text";
}

std::string log_quote(std::string_view s) {
    const bool plain =
        !s.empty() && clean_text(s) && s.find_first_of(" \"=\\") == std::string_view::npos;
    if (plain) return std::string(s);
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        const size_t len = utf8_length(s, i);
        const auto b0 = static_cast<uint8_t>(s[i]);
        if (len == 0 || is_control(s, i, len)) {
            // Each byte of a bad sequence or a control character is shown, not interpreted.
            const size_t n = len == 0 ? 1 : len;
            for (size_t k = 0; k < n; ++k) {
                const auto b = static_cast<uint8_t>(s[i + k]);
                if (b == '\n') {
                    out += "\\n";
                } else if (b == '\r') {
                    out += "\\r";
                } else if (b == '\t') {
                    out += "\\t";
                } else {
                    out += fmt::format("\\x{:02x}", b);
                }
            }
            i += n;
            continue;
        }
        if (b0 == '"' || b0 == '\\') out += '\\';
        out.append(s.substr(i, len));
        i += len;
    }
    out += '"';
    return out;
}

std::string closest(std::string_view typed, const std::vector<std::string>& known) {
    // Levenshtein distance over one row, stopped early: names here are short.
    const auto distance = [](std::string_view a, std::string_view b) {
        std::vector<size_t> row(b.size() + 1);
        for (size_t j = 0; j <= b.size(); ++j)
            row[j] = j;
        for (size_t i = 1; i <= a.size(); ++i) {
            size_t diagonal = row[0];
            row[0] = i;
            for (size_t j = 1; j <= b.size(); ++j) {
                const size_t up = row[j];
                row[j] = std::min(
                    {row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
                diagonal = up;
            }
        }
        return row[b.size()];
    };
    std::string best;
    size_t best_distance = 3;
    for (const std::string& k : known) {
        const size_t d = !typed.empty() && k.starts_with(typed) ? 1 : distance(typed, k);
        if (d < best_distance) {
            best = k;
            best_distance = d;
        }
    }
    return best;
}

}  // namespace chorus
