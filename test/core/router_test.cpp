#include "core/router.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace chorus;

namespace {
constexpr double kPhiRoute = 5.0;
RouteCandidate c(const char* name, bool alive, double phi, double load, double sent = 0) {
    return RouteCandidate{.name = name, .alive = alive, .phi = phi, .load = load, .sent = sent};
}
}  // namespace

TEST_CASE("the router picks the least loaded healthy candidate, ties to ring order") {
    struct Row {
        const char* what;
        std::vector<RouteCandidate> candidates;
        std::optional<size_t> want;
    };
    const std::vector<Row> rows = {
        {"all idle: the primary keeps its keys",
         {c("a", true, 0.1, 0), c("b", true, 0.1, 0), c("c", true, 0.1, 0)},
         0},
        {"the least loaded wins",
         {c("a", true, 0.1, 0.8), c("b", true, 0.1, 0.3), c("c", true, 0.1, 0.5)},
         1},
        {"equal loads after the primary: the earlier in ring order",
         {c("a", true, 0.1, 0.9), c("b", true, 0.1, 0.4), c("c", true, 0.1, 0.4)},
         1},
        {"what we sent since the last report counts",
         {c("a", true, 0.1, 0.2, 0.5), c("b", true, 0.1, 0.3), c("c", true, 0.1, 0.6)},
         1},
        {"a high-phi candidate is passed over while a healthy one exists",
         {c("a", true, 9.0, 0.0), c("b", true, 0.1, 0.7)},
         1},
        {"phi exactly at the threshold is not healthy",
         {c("a", true, kPhiRoute, 0.0), c("b", true, 0.1, 0.7)},
         1},
        {"suspect, dead or left candidates never run tasks",
         {c("a", false, 0.1, 0.0), c("b", false, 0.1, 0.0), c("c", true, 0.1, 0.9)},
         2},
        {"no healthy candidate: an alive high-phi one serves rather than nobody",
         {c("a", true, 12.0, 0.5), c("b", false, 0.1, 0.0), c("c", true, 9.0, 0.2)},
         2},
        {"nobody alive: no owner",
         {c("a", false, 0.1, 0.0), c("b", false, 0.1, 0.0)},
         std::nullopt},
        {"no candidates at all", {}, std::nullopt},
    };
    for (const Row& r : rows) {
        INFO(r.what);
        REQUIRE(choose_owner(r.candidates, kPhiRoute) == r.want);
    }
}

TEST_CASE("with a balance factor the router keeps affinity until a candidate is over the bound") {
    struct Row {
        const char* what;
        std::vector<RouteCandidate> candidates;
        std::optional<size_t> want;
    };
    constexpr double kFactor = 1.25;
    const std::vector<Row> rows = {
        {"all idle: the primary",
         {c("a", true, 0.1, 0), c("b", true, 0.1, 0), c("c", true, 0.1, 0)},
         0},
        {"the primary within 1.25 × the mean keeps the key though another is idler",
         {c("a", true, 0.1, 0.5), c("b", true, 0.1, 0.3), c("c", true, 0.1, 0.4)},
         0},
        {"the primary over the bound: the next in ring order within it",
         {c("a", true, 0.1, 0.9), c("b", true, 0.1, 0.3), c("c", true, 0.1, 0.2)},
         1},
        {"what we sent counts toward the bound",
         {c("a", true, 0.1, 0.3, 0.6), c("b", true, 0.1, 0.3), c("c", true, 0.1, 0.3)},
         1},
        {"an unhealthy candidate neither serves nor counts in the mean",
         {c("a", true, 9.0, 0.0), c("b", true, 0.1, 0.5), c("c", true, 0.1, 0.5)},
         1},
        {"nobody healthy: an alive high-phi one serves",
         {c("a", false, 0.1, 0.0), c("b", true, 9.0, 0.4)},
         1},
    };
    for (const Row& r : rows) {
        INFO(r.what);
        REQUIRE(choose_owner(r.candidates, kPhiRoute, kFactor) == r.want);
    }
    // Without the factor the same loads go to the least loaded.
    REQUIRE(choose_owner(rows[1].candidates, kPhiRoute) == 1u);
}

TEST_CASE("a candidate that refuses tasks is passed over while another can serve") {
    std::vector<RouteCandidate> cs = {c("a", true, 0, 0), c("b", true, 0, 0.9)};
    cs[0].accepting = false;
    REQUIRE(choose_owner(cs, 5) == 1u);
    REQUIRE(choose_owner(cs, 5, 1.25) == 1u);
    cs[1].alive = false;
    REQUIRE(choose_owner(cs, 5) == 0u);  // the last one alive is still asked; it answers 503
}
