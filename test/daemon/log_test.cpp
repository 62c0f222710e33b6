#include "daemon/log.hpp"

#include <cstdio>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace chorus::daemon;

namespace {

// What one log call writes, through a real FILE (as stderr is).
std::string written(bool json, Level min, Level level,
                    std::initializer_list<Logger::Field> fields) {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    Logger(min, json, f).log(level, "member changed", fields);
    std::rewind(f);
    std::string out;
    char buf[512];
    while (const size_t n = std::fread(buf, 1, sizeof(buf), f))
        out.append(buf, n);
    std::fclose(f);
    return out;
}

}  // namespace

TEST_CASE("JSON log lines keep numbers as numbers and text as text") {
    const uint64_t big = UINT64_MAX;
    const std::string line = written(
        true, Level::info, Level::warn,
        {{"name", "n1"}, {"incarnation", big}, {"times", -3}, {"ratio", 0.5}, {"port", "7900"}});
    const auto j = nlohmann::json::parse(line);
    CHECK(j.at("level") == "warn");
    CHECK(j.at("msg") == "member changed");
    CHECK(j.at("name").is_string());
    CHECK(j.at("incarnation").is_number_unsigned());
    CHECK(j.at("incarnation").get<uint64_t>() == big);
    CHECK(j.at("times").get<int64_t>() == -3);
    CHECK(j.at("ratio").get<double>() == 0.5);
    CHECK(j.at("port").is_string());  // text that looks like a number stays text
    CHECK(line.back() == '\n');
}

TEST_CASE("text log lines print numbers bare and quote what the network sent") {
    const std::string line =
        written(false, Level::debug, Level::info, {{"name", "evil\nforged line"}, {"times", 12}});
    CHECK(line.find(" info  member changed") != std::string::npos);
    CHECK(line.find(" times=12") != std::string::npos);
    CHECK(line.find('\n') == line.size() - 1);  // the name's line break is escaped
}

TEST_CASE("lines below the minimum level are not written") {
    CHECK(written(false, Level::warn, Level::info, {{"times", 1}}).empty());
    CHECK_FALSE(written(false, Level::warn, Level::error, {}).empty());
}
