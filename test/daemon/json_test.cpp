#include "daemon/json.hpp"

#include <catch2/catch.hpp>

using namespace chorus;
using namespace chorus::daemon;

TEST_CASE("hostile JSON text is an error value, never an exception") {
    struct Row {
        const char* what;
        std::string text;
        std::string code;
    };
    const std::vector<Row> rows = {
        {"a number past a double's range", R"({"a": 1e999})", "bad_json"},
        {"a negative one", "-1e400", "bad_json"},
        {"truncated", R"({"a": [1, 2)", "bad_json"},
        {"a string that is not UTF-8", "\"\xc0\xaf\"", "bad_json"},
        {"bare bytes", "\xff\xfe", "bad_json"},
        {"150,000 nested arrays", std::string(150'000, '['), "too_deep"},
        {"nested objects", std::string(100, '{'), "too_deep"},
        {"one level past the limit",
         std::string(kJsonDepthMax + 1, '[') + std::string(kJsonDepthMax + 1, ']'), "too_deep"},
    };
    for (const Row& r : rows) {
        INFO(r.what);
        const auto parsed = parse_json(r.text);
        REQUIRE_FALSE(parsed.ok());
        REQUIRE(parsed.error().code == r.code);
        const auto checked = check_json(r.text);
        REQUIRE_FALSE(checked.ok());
        REQUIRE(checked.error().code == r.code);
    }
}

TEST_CASE("brackets inside strings do not count as nesting") {
    const std::string deep_text =
        "[\"" + std::string(500, '[') + "\\\"" + std::string(500, '{') + "\"]";
    REQUIRE(parse_json(deep_text).ok());
    REQUIRE(check_json(deep_text).ok());
    const std::string at_limit = std::string(kJsonDepthMax, '[') + std::string(kJsonDepthMax, ']');
    REQUIRE(parse_json(at_limit).ok());
    REQUIRE(parse_json("[1]", 0).error().code == "too_deep");
}

TEST_CASE("printing never throws: bytes that are not UTF-8 become U+FFFD") {
    nlohmann::json j = {{"name", std::string("a\xff")}, {"ok", "b"}};
    REQUIRE(dump_json(j) == "{\"name\":\"a\xef\xbf\xbd\",\"ok\":\"b\"}");
}

TEST_CASE("stored JSON text is shown as JSON, or as a string when it is not") {
    REQUIRE(json_or_string(R"({"a":[1,2]})") == nlohmann::json{{"a", {1, 2}}});
    // Compared as strings: GCC 12 at -O3 warns (-Warray-bounds) on json == string here.
    const nlohmann::json plain = json_or_string("plain words");
    REQUIRE(plain.is_string());
    REQUIRE(plain.get<std::string>() == "plain words");
    const nlohmann::json deep = json_or_string(std::string(1000, '['));
    REQUIRE(deep.is_string());
    REQUIRE(deep.get<std::string>() == std::string(1000, '['));
}
