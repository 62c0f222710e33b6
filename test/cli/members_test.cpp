// What `chorus members` prints.
#include <catch2/catch.hpp>

#include "cli/commands.hpp"

using namespace chorus::cli;
using nlohmann::json;

TEST_CASE("the members table is sorted by name with aligned columns") {
    const json view = json::parse(R"({"self":"b","index":3,"members":[
        {"name":"node-b","addr":"10.0.0.2:7900","state":"alive","incarnation":5,"phi":0.25,
         "state_since_ms":125000,"tags":{"role":"web","zone":"a"}},
        {"name":"a","addr":"10.0.0.1:7900","state":"dead","incarnation":12,"phi":1000,
         "state_since_ms":1500,"tags":{}}]})");
    const std::string table = members_table(view);
    REQUIRE(table ==
            "NAME    ADDRESS        STATE  SINCE  PHI      INCARNATION  TAGS\n"
            "a       10.0.0.1:7900  dead   1.5s   1000.00  12\n"
            "node-b  10.0.0.2:7900  alive  2m5s   0.25     5            role=web,zone=a\n");
}

TEST_CASE("a member without phi or with odd fields still gets a row") {
    const json view = json::parse(R"({"members":[{"name":"x","phi":null}]})");
    REQUIRE_THAT(members_table(view), Catch::Contains("\nx   ") && Catch::Contains("  -  "));
}

TEST_CASE("an event line says who changed from what to what") {
    REQUIRE(
        event_line(json::parse(
            R"({"name":"c","previous":"suspect","state":"dead","incarnation":4,"origin":true})")) ==
        "c  suspect -> dead  incarnation 4  (this node's own finding)");
    REQUIRE(
        event_line(json::parse(
            R"({"name":"d","previous":null,"state":"alive","incarnation":1,"origin":false})")) ==
        "d  new -> alive  incarnation 1");
}

TEST_CASE("ages read as a person would say them") {
    REQUIRE(age(0) == "0.0s");
    REQUIRE(age(1500) == "1.5s");
    REQUIRE(age(45'000) == "45s");
    REQUIRE(age(192'000) == "3m12s");
    REQUIRE(age(7'500'000) == "2h5m");
    REQUIRE(age(90'000'000) == "1d1h");
    REQUIRE(age(-5) == "0.0s");
}

TEST_CASE("members are filtered by state and by tags, and a bad filter is named") {
    const auto view = nlohmann::json::parse(R"({"members": [
        {"name": "a", "state": "alive", "tags": {"role": "db", "zone": "eu-1"}},
        {"name": "b", "state": "dead", "tags": {"role": "db", "zone": "us-1"}},
        {"name": "c", "state": "dead", "tags": {"role": "web"}},
        {"name": "d", "state": "left"},
        {"name": "e", "state": "suspect", "tags": {"role": 7}}]})");
    const auto names = [&](MemberFilter f) {
        auto r = filter_members(view, f);
        REQUIRE(r.ok());
        std::string out;
        for (const auto& m : (*r)["members"])
            out += m["name"].get<std::string>();
        return out;
    };
    CHECK(names({}) == "abcde");
    CHECK(names({{"dead"}, {}}) == "bc");
    CHECK(names({{"dead", "left"}, {}}) == "bcd");
    CHECK(names({{}, {"role=db"}}) == "ab");
    CHECK(names({{"dead"}, {"role=db"}}) == "b");
    CHECK(names({{}, {"role=db", "zone=eu*"}}) == "a");
    CHECK(names({{}, {"zone=*"}}) == "ab");
    CHECK(names({{}, {"role=7"}}).empty());  // a tag that is not text matches nothing
    CHECK_FALSE(filter_members(view, {{"gone"}, {}}).ok());
    CHECK_THAT(filter_members(view, {{}, {"role"}}).error().message, Catch::Contains("--tag role"));
}
