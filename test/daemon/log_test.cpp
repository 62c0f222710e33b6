#include "daemon/log.hpp"

#include <cstdio>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace chorus::daemon;

namespace {

// Everything written to `f`, which is then closed.
std::string read_and_close(std::FILE* f) {
    std::rewind(f);
    std::string out;
    char buf[512];
    while (const size_t n = std::fread(buf, 1, sizeof(buf), f))
        out.append(buf, n);
    std::fclose(f);
    return out;
}

// What one log call writes, through a real FILE (as stderr is).
std::string written(bool json, Level min, Level level,
                    std::initializer_list<Logger::Field> fields) {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    Logger(min, json, f).log(level, "member changed", fields);
    return read_and_close(f);
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

TEST_CASE("a tap gets the lines at its own level, the log keeps its own, and a tap may go") {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    const Logger log(Level::info, false, f);
    REQUIRE_FALSE(log.enabled(Level::debug));
    std::vector<std::string> seen;
    const uint64_t tap = log.add_tap(Level::debug, [&](std::string_view line) {
        seen.emplace_back(line);
        log.log(Level::error, "from within a tap");  // to the log only: no loop
    });
    REQUIRE(log.enabled(Level::debug));
    log.log(Level::debug, "probe sent", {{"to", "n2"}});
    log.log(Level::warn, "member suspect");
    REQUIRE(seen.size() == 2);
    REQUIRE(seen[0].find("debug probe sent to=n2\n") != std::string::npos);
    log.remove_tap(tap);
    REQUIRE_FALSE(log.enabled(Level::debug));
    log.log(Level::warn, "member dead");
    REQUIRE(seen.size() == 2);

    const std::string out = read_and_close(f);
    CHECK(out.find("probe sent") == std::string::npos);  // below the log's level
    CHECK(out.find("member suspect") != std::string::npos);
    CHECK(out.find("from within a tap") != std::string::npos);
    CHECK(out.find("member dead") != std::string::npos);
}
