#include "core/placement.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

namespace {

RouteCandidate alive(const char* name, double load = 0) {
    RouteCandidate c;
    c.name = Name(name);
    c.alive = true;
    c.load = load;
    return c;
}

std::vector<RouteCandidate> abc() {
    return {alive("a"), alive("b"), alive("c")};
}

std::string owner_of(const std::variant<Placement::Try, Placement::GiveUp>& v) {
    REQUIRE(std::holds_alternative<Placement::Try>(v));
    return std::get<Placement::Try>(v).owner.str();
}

}  // namespace

TEST_CASE("each candidate that refuses is passed over for the next, in the router's order") {
    Placement p("k");
    REQUIRE(owner_of(p.next(abc(), 5, 0)) == "a");
    p.refused(Name("a"), "full", "16 running");
    REQUIRE(owner_of(p.next(abc(), 5, 0)) == "b");
    p.refused(Name("b"), "timeout", "no answer in time");
    REQUIRE(owner_of(p.next(abc(), 5, 0)) == "c");
    REQUIRE(p.tried() == 2);
}

TEST_CASE("when every candidate refused, the answer says why") {
    // Each row: the refusal codes of a, b and c; the code of the answer.
    struct Row {
        std::vector<const char*> codes;
        const char* answer;
    };
    const Row rows[] = {
        {{"not_replicated", "not_replicated", "not_replicated"}, "not_replicated"},
        {{"not_replicated", "timeout", "not_replicated"}, "all_refused"},
        {{"full", "full", "full"}, "all_refused"},
    };
    for (const Row& r : rows) {
        Placement p("k");
        const char* names[] = {"a", "b", "c"};
        for (size_t i = 0; i < 3; ++i) {
            REQUIRE(owner_of(p.next(abc(), 5, 0)) == names[i]);
            p.refused(Name(names[i]), r.codes[i], "why");
        }
        const auto end = p.next(abc(), 5, 0);
        REQUIRE(std::holds_alternative<Placement::GiveUp>(end));
        const auto& g = std::get<Placement::GiveUp>(end);
        REQUIRE(g.code == r.answer);
        REQUIRE_THAT(g.message, Catch::Contains("a: why") && Catch::Contains("c: why"));
    }
}

TEST_CASE("with no candidate alive the answer is no_owner, naming them") {
    Placement p("user:1");
    std::vector<RouteCandidate> cs = abc();
    for (auto& c : cs)
        c.alive = false;
    const auto end = p.next(cs, 5, 0);
    REQUIRE(std::holds_alternative<Placement::GiveUp>(end));
    REQUIRE(std::get<Placement::GiveUp>(end).code == "no_owner");
    REQUIRE_THAT(std::get<Placement::GiveUp>(end).message,
                 Catch::Contains("'user:1'") && Catch::Contains("a, b, c"));
}

TEST_CASE("a candidate that joined after a refusal is tried, and one refusal counts once") {
    Placement p("k");
    REQUIRE(owner_of(p.next({alive("a")}, 5, 0)) == "a");
    p.refused(Name("a"), "full", "x");
    p.refused(Name("a"), "full", "x");
    REQUIRE(p.tried() == 1);
    REQUIRE(owner_of(p.next({alive("a"), alive("d")}, 5, 0)) == "d");
}
