#include "core/member_table.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

namespace {
Member member(MemberState s, uint32_t inc) {
    Member m;
    m.name = "m";
    m.addr = Address{"m:1"};
    m.state = s;
    m.incarnation = Incarnation{inc};
    return m;
}
}  // namespace

TEST_CASE("SWIM precedence: which update overrides which state (SWIM §4.2)") {
    using S = MemberState;
    struct Row {
        S state;
        uint32_t inc;
        char kind;  // 'a'live, 's'uspect, 'd'ead, 'l'eft
        uint32_t update_inc;
        bool overrides;
    };
    const Row rows[] = {
        // Alive{i} overrides anything with a lower incarnation, nothing with an equal one.
        {S::alive, 3, 'a', 4, true},
        {S::alive, 3, 'a', 3, false},
        {S::suspect, 3, 'a', 4, true},
        {S::suspect, 3, 'a', 3, false},
        {S::dead, 3, 'a', 4, true},
        {S::dead, 3, 'a', 3, false},
        {S::left, 3, 'a', 4, true},
        // Suspect{i} overrides Alive{j<=i} and Suspect{j<i}; gone members stay gone.
        {S::alive, 3, 's', 3, true},
        {S::alive, 3, 's', 2, false},
        {S::suspect, 3, 's', 3, false},
        {S::suspect, 3, 's', 4, true},
        {S::dead, 3, 's', 9, false},
        {S::left, 3, 's', 9, false},
        // Dead{i} overrides Alive/Suspect{j<=i}; left also replaces dead at the same incarnation.
        {S::alive, 3, 'd', 3, true},
        {S::alive, 3, 'd', 2, false},
        {S::suspect, 3, 'd', 3, true},
        {S::dead, 3, 'd', 4, false},
        {S::dead, 3, 'l', 3, true},
        {S::left, 3, 'd', 4, false},
    };
    for (const Row& r : rows) {
        const Member m = member(r.state, r.inc);
        const Incarnation i{r.update_inc};
        bool got = false;
        switch (r.kind) {
            case 'a':
                got = alive_overrides(m, AliveUpdate{"m", Address{"m:1"}, "", i, {}, 1});
                break;
            case 's':
                got = suspect_overrides(m, SuspectUpdate{"m", i, "x"});
                break;
            case 'd':
                got = dead_overrides(m, DeadUpdate{"m", i, "x", false});
                break;
            case 'l':
                got = dead_overrides(m, DeadUpdate{"m", i, "m", true});
                break;
        }
        INFO(to_string(r.state) << "@" << r.inc << " vs " << r.kind << "@" << r.update_inc);
        REQUIRE(got == r.overrides);
    }
}

TEST_CASE("a suspect at the same incarnation confirms a running suspicion") {
    REQUIRE(
        suspect_confirms(member(MemberState::suspect, 3), SuspectUpdate{"m", Incarnation{3}, "x"}));
    REQUIRE_FALSE(
        suspect_confirms(member(MemberState::suspect, 3), SuspectUpdate{"m", Incarnation{2}, "x"}));
    REQUIRE_FALSE(
        suspect_confirms(member(MemberState::alive, 3), SuspectUpdate{"m", Incarnation{3}, "x"}));
}

TEST_CASE("the table counts members by state") {
    MemberTable t(10);
    t.add(member(MemberState::alive, 1));
    Member b = member(MemberState::alive, 1);
    b.name = "b";
    t.add(std::move(b));
    REQUIRE(t.count(MemberState::alive) == 2);
    t.set_state(*t.find("b"), MemberState::dead, Time{});
    REQUIRE(t.count(MemberState::alive) == 1);
    REQUIRE(t.count(MemberState::dead) == 1);
    REQUIRE(t.live() == 1);
}

TEST_CASE("a removed member leaves a tombstone that expires") {
    MemberTable t(10);
    t.add(member(MemberState::dead, 5));
    t.remove("m", Time{} + seconds(60));
    REQUIRE(t.find("m") == nullptr);
    REQUIRE(t.tombstone("m", Time{} + seconds(10)) == Incarnation{5});
    REQUIRE_FALSE(t.tombstone("m", Time{} + seconds(60)).has_value());
    t.expire_tombstones(Time{} + seconds(61));
    REQUIRE(t.tombstones() == 0);
}

TEST_CASE("the table refuses members beyond its limit, tombstones included") {
    MemberTable t(2);
    REQUIRE(t.add(member(MemberState::dead, 1)) != nullptr);
    t.remove("m", Time{} + seconds(60));
    Member b = member(MemberState::alive, 1);
    b.name = "b";
    REQUIRE(t.add(std::move(b)) != nullptr);
    Member c = member(MemberState::alive, 1);
    c.name = "c";
    REQUIRE(t.add(std::move(c)) == nullptr);
}
