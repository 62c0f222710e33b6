#include "core/text.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

TEST_CASE("text from outside must be UTF-8 without control characters") {
    struct Row {
        const char* what;
        std::string text;
        TextProblem problem;
    };
    const Row rows[] = {
        {"empty", "", TextProblem::none},
        {"ascii with spaces and punctuation", "node-1 role=db:7900", TextProblem::none},
        {"two-byte letters", "n\xc5\x93ud", TextProblem::none},                 // œ
        {"three-byte letters", "\xe8\x8a\x82\xe7\x82\xb9", TextProblem::none},  // 节点
        {"four-byte symbols", "\xf0\x9f\x8e\xb5", TextProblem::none},           // 🎵
        {"the last code point", "\xf4\x8f\xbf\xbf", TextProblem::none},         // U+10FFFF
        {"a lone continuation byte", "a\x80", TextProblem::not_utf8},
        {"a byte that is never UTF-8", "a\xff", TextProblem::not_utf8},
        {"a truncated sequence", "a\xe2\x82", TextProblem::not_utf8},
        {"an overlong slash", "\xc0\xaf", TextProblem::not_utf8},
        {"an overlong three-byte form", "\xe0\x80\xaf", TextProblem::not_utf8},
        {"a surrogate", "\xed\xa0\x80", TextProblem::not_utf8},
        {"past U+10FFFF", "\xf4\x90\x80\x80", TextProblem::not_utf8},
        {"a newline", "a\nb", TextProblem::control},
        {"a NUL", std::string("a\0b", 3), TextProblem::control},
        {"DEL", "a\x7f", TextProblem::control},
        {"a C1 control (NEL)", "a\xc2\x85", TextProblem::control},
    };
    for (const Row& r : rows) {
        INFO(r.what);
        REQUIRE(check_text(r.text) == r.problem);
        REQUIRE(clean_text(r.text) == (r.problem == TextProblem::none));
    }
}

TEST_CASE("a log token is quoted and escaped so that it cannot forge a line") {
    REQUIRE(log_quote("node-1") == "node-1");
    REQUIRE(log_quote("") == "\"\"");
    REQUIRE(log_quote("two words") == "\"two words\"");
    REQUIRE(log_quote("k=v") == "\"k=v\"");
    REQUIRE(log_quote("say \"hi\"") == "\"say \\\"hi\\\"\"");
    REQUIRE(log_quote("evil\n2026-01-01 info member alive") ==
            "\"evil\\n2026-01-01 info member alive\"");
    REQUIRE(log_quote("\xff\r\t\x01") == "\"\\xff\\r\\t\\x01\"");
    REQUIRE(log_quote("n\xc5\x93ud") == "n\xc5\x93ud");  // clean UTF-8 stays readable
    REQUIRE(log_quote("a\xc2\x85") == "\"a\\xc2\\x85\"");
    for (const char* s : {"a\nb", "a\rb", "\xe2\x82", "x y\n"}) {
        REQUIRE(log_quote(s).find_first_of("\r\n") == std::string::npos);
    }
}

TEST_CASE("a mistyped command or key is matched to the one most likely meant") {
    const std::vector<std::string> commands = {"agent", "members", "leave", "submit",
                                               "task",  "ring",    "keys",  "keygen"};
    CHECK(closest("member", commands) == "members");   // a prefix
    CHECK(closest("memebrs", commands) == "members");  // two letters swapped: two edits
    CHECK(closest("sumbit", commands) == "submit");
    CHECK(closest("tsk", commands) == "task");
    CHECK(closest("key", commands) == "keys");   // the first of the nearest
    CHECK(closest("deploy", commands).empty());  // nothing near
    CHECK(closest("", commands).empty());
    CHECK(closest("seed", {"seeds", "bind"}) == "seeds");
    CHECK(closest("members", {}).empty());
}
