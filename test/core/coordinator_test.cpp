#include "core/coordinator.hpp"

#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace chorus;
using chorus::test::Cluster;

namespace {
// Every node's coordinator, by node.
std::map<std::string, std::string> named(Cluster& c) {
    std::map<std::string, std::string> out;
    for (auto& [n, node] : c.nodes) {
        const auto who = coordinator_of(node->members());
        out[n] = who ? who->name.str() : "";
    }
    return out;
}
bool all_name(Cluster& c, const std::string& who) {
    for (const auto& [n, w] : named(c))
        if (w != who) return false;
    return true;
}
}  // namespace

TEST_CASE("a member's priority is its priority tag as a whole number, else 0") {
    CHECK(priority_of({}) == 0);
    CHECK(priority_of({{"priority", "7"}}) == 7);
    CHECK(priority_of({{"priority", "-3"}}) == -3);
    for (const char* bad : {"", "high", "7x", "1.5", " 7", "99999999999999999999"}) {
        INFO(bad);
        CHECK(priority_of({{"priority", bad}}) == 0);
    }
}

TEST_CASE("every view names the same coordinator: highest priority, ties to the lowest name") {
    Cluster c;
    c.add("a");
    for (const char* n : {"d", "b", "c"})
        c.add(n, {"a"});
    REQUIRE(c.run_until_true([&] { return all_name(c, "a"); }, seconds(10)));  // all 0: by name

    c["c"].set_tags({{"priority", "5"}}, c.now);
    c["d"].set_tags({{"priority", "5"}}, c.now);
    REQUIRE(c.run_until_true([&] { return all_name(c, "c"); }, seconds(10)));

    SECTION("a crashed coordinator is replaced once it is suspected, in every view") {
        c.crash("c");
        REQUIRE(c.run_until_true([&] { return all_name(c, "d"); }, seconds(30)));
        // d took over while c was only suspect somewhere, or dead: never alive again.
        for (auto& [n, node] : c.nodes)
            REQUIRE(node->members().find("c")->state != MemberState::alive);
    }
    SECTION("a member that stops saying a priority stops coordinating") {
        c["c"].set_tags({}, c.now);
        REQUIRE(c.run_until_true([&] { return all_name(c, "d"); }, seconds(10)));
    }
}

TEST_CASE("no alive member, no coordinator, and a suspect one does not coordinate") {
    MemberTable t(16);
    CHECK_FALSE(coordinator_of(t));
    Member m;
    m.name = "a";
    m.addr = Address{"a:1"};
    m.state = MemberState::suspect;
    REQUIRE(t.add(std::move(m)) != nullptr);
    CHECK_FALSE(coordinator_of(t));
}
