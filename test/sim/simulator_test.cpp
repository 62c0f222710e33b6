// Simulations over a fixed list of seeds (STYLE §11). A failing seed is printed with the
// chorus-sim command that replays it.
#include "sim/simulator.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <span>

#include <catch2/catch.hpp>

using namespace chorus::sim;

namespace {

const uint64_t kSeeds[] = {1, 2, 3, 4, 5};

std::string why(const Report& r) {
    std::string s;
    for (const auto& v : r.violations)
        s += v + "; ";
    return s;
}

// Runs `o` over every seed; `check` asserts on each report. A failure names the command that
// replays it.
template <typename Check>
void for_each_seed(Options o, Check check, std::span<const uint64_t> seeds = kSeeds) {
    for (uint64_t seed : seeds) {
        o.seed = seed;
        const Report r = run(o);
        std::string flags =
            fmt::format("--nodes {} --duration {} --seed {}", o.nodes, o.duration_s, seed);
        if (o.loss > 0) flags += fmt::format(" --loss {}", o.loss);
        if (o.crash > 0) flags += fmt::format(" --crash {} --crash-at {}", o.crash, o.crash_at_s);
        if (o.restart_after_s) flags += fmt::format(" --restart-after {}", *o.restart_after_s);
        if (o.partition_at_s)
            flags +=
                fmt::format(" --partition-at {} --heal-at {}", *o.partition_at_s, *o.heal_at_s);
        INFO("replay: chorus-sim " << flags << " :: " << why(r));
        REQUIRE(r.violations.empty());
        REQUIRE(r.packets_rejected == 0);
        check(r);
    }
}

}  // namespace

TEST_CASE("a 30-node cluster joins, detects a crash quickly and keeps every invariant") {
    Options o;
    o.nodes = 30;
    o.duration_s = 90;
    o.crash = 2;
    o.crash_at_s = 30;
    for_each_seed(o, [](const Report& r) {
        REQUIRE(r.join_converged_s.has_value());
        REQUIRE(*r.join_converged_s < 5);
        REQUIRE(r.detect_all_s.has_value());
        REQUIRE(*r.detect_all_max_s < 10);
        REQUIRE(r.undetected == 0);
        REQUIRE(r.false_positives == 0);
    });
}

TEST_CASE("at N=100 a crash is seen dead by every node within 6 s, median over 10 seeds") {
    static const uint64_t ten[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    Options o;
    o.nodes = 100;
    o.duration_s = 80;
    o.crash = 1;
    o.crash_at_s = 40;
    std::vector<double> detect;
    for_each_seed(
        o,
        [&](const Report& r) {
            REQUIRE(r.detect_all_s.has_value());
            detect.push_back(*r.detect_all_s);
        },
        ten);
    std::sort(detect.begin(), detect.end());
    const double median = (detect[4] + detect[5]) / 2;
    INFO("median " << median << "s, worst " << detect.back() << "s");
    REQUIRE(median <= 6);
}

TEST_CASE("10% datagram loss causes suspicions but no false deaths") {
    Options o;
    o.nodes = 40;
    o.duration_s = 120;
    o.loss = 0.1;
    for_each_seed(o, [](const Report& r) {
        REQUIRE(r.false_suspicions > 0);  // the loss is real...
        REQUIRE(r.false_positives == 0);  // ...and refutation keeps it harmless
    });
}

TEST_CASE("the halves of a partition declare each other dead and merge after the heal") {
    Options o;
    o.nodes = 30;
    o.duration_s = 150;
    o.partition_at_s = 20;
    o.heal_at_s = 60;
    for_each_seed(o, [](const Report& r) {
        REQUIRE(r.partition_deaths > 0);
        REQUIRE(r.heal_converged_s.has_value());
        REQUIRE(*r.heal_converged_s < 30);
        REQUIRE(r.converged_at_end);
    });
}

TEST_CASE("crashed nodes that restart rejoin and views converge") {
    Options o;
    o.nodes = 20;
    o.duration_s = 120;
    o.crash = 3;
    o.crash_at_s = 20;
    o.restart_after_s = 20;
    for_each_seed(o, [](const Report& r) { REQUIRE(r.converged_at_end); });
}

TEST_CASE("Lifeguard spares healthy nodes the false deaths that slow nodes cause in plain SWIM") {
    Options o;
    o.nodes = 40;
    o.seed = 1;
    o.duration_s = 120;
    o.slow = 2;
    o.slow_ms = 1500;
    const Report with = run(o);
    o.lifeguard = false;
    const Report without = run(o);
    INFO("lifeguard: " << with.false_positives_healthy
                       << ", plain SWIM: " << without.false_positives_healthy);
    REQUIRE(without.false_positives_healthy >= 10);
    REQUIRE(with.false_positives_healthy * 10 <= without.false_positives_healthy);
}

TEST_CASE("one seed replays the same run") {
    Options o;
    o.nodes = 25;
    o.seed = 9;
    o.duration_s = 60;
    o.loss = 0.05;
    o.crash = 1;
    o.crash_at_s = 20;
    const Report a = run(o), b = run(o);
    REQUIRE(a.join_converged_s == b.join_converged_s);
    REQUIRE(a.detect_all_s == b.detect_all_s);
    REQUIRE(a.false_suspicions == b.false_suspicions);
    REQUIRE(a.msgs_per_node_per_s == b.msgs_per_node_per_s);
    REQUIRE(a.bytes_per_node_per_s == b.bytes_per_node_per_s);
}

TEST_CASE("bad options are refused with the flag named") {
    Options o;
    o.nodes = 0;
    REQUIRE_FALSE(validate(o).ok());
    REQUIRE_THAT(validate(o).error().message, Catch::StartsWith("--nodes"));
    o = Options{};
    o.loss = 1.5;
    REQUIRE_THAT(validate(o).error().message, Catch::StartsWith("--loss"));
    o = Options{};
    o.partition_at_s = 10;
    REQUIRE_THAT(validate(o).error().message, Catch::StartsWith("--partition-at/--heal-at"));
}
