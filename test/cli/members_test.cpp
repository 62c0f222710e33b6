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
