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
        INFO("replay: chorus-sim " << to_flags(o) << " :: " << why(r));
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

TEST_CASE("per-observer detection times start at detect_first and end at detect_all") {
    Options o;
    o.nodes = 20;
    o.duration_s = 40;
    o.crash = 1;
    o.crash_at_s = 10;
    for_each_seed(o, [&](const Report& r) {
        REQUIRE(r.detections.size() == o.nodes - 1);
        std::vector<double> dead;
        for (const Detection& d : r.detections) {
            INFO("n" << d.observer << " about n" << d.crashed_node);
            REQUIRE(d.crashed_node == r.detections.front().crashed_node);
            REQUIRE(d.observer != d.crashed_node);
            REQUIRE(d.dead_s.has_value());
            REQUIRE(d.suspect_s.has_value());
            REQUIRE(*d.suspect_s <= *d.dead_s);
            dead.push_back(*d.dead_s);
        }
        REQUIRE(r.detect_first_s == *std::min_element(dead.begin(), dead.end()));
        REQUIRE(r.detect_all_s == *std::max_element(dead.begin(), dead.end()));
    });
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

namespace {
// The halves declare each other dead across the partition and are whole again within
// `within_s` of the heal, on every seed.
void partition_heals(Options o, double within_s) {
    for_each_seed(o, [within_s](const Report& r) {
        REQUIRE(r.partition_deaths > 0);
        REQUIRE(r.heal_converged_s.has_value());
        REQUIRE(*r.heal_converged_s < within_s);
        REQUIRE(r.converged_at_end);
    });
}
}  // namespace

TEST_CASE("the halves of a partition declare each other dead and merge after the heal") {
    Options o;
    o.nodes = 30;
    o.duration_s = 150;
    o.partition_at_s = 20;
    o.heal_at_s = 60;
    partition_heals(o, 30);
}

TEST_CASE("halves apart for longer than dead members are kept still merge, through the seeds") {
    // Each half reaps the other after 30 s and then calls none of it back; the half without
    // node 0 (every node's seed) finds it again by calling its seed, which is no live member,
    // and members told of their tombstones outrank them.
    Options o;
    o.nodes = 20;
    o.duration_s = 200;
    o.partition_at_s = 20;
    o.heal_at_s = 100;
    o.dead_retain_s = 30;
    partition_heals(o, 40);
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
    {
        Options t;
        t.tasks_per_s = 10;
        t.duration_s = 60;  // no time for the checks after the default --tasks-until
        REQUIRE_THAT(validate(t).error().message, Catch::StartsWith("--tasks-until"));
        t.duration_s = 120;
        t.nodes = 1;  // replicas 2 on one member: every task would be refused
        REQUIRE_THAT(validate(t).error().message, Catch::StartsWith("--nodes"));
    }
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

// ---- the task workload: the real TaskNode on every node

namespace {

// Three seeds a case: each run checks every acknowledged task, and scripts/sim-seeds runs
// the same mixes over as many seeds as wanted.
const uint64_t kTaskSeeds[] = {1, 2, 3};

Options tasks(uint32_t nodes, double duration_s) {
    Options o;
    o.nodes = nodes;
    o.duration_s = duration_s;
    o.tasks_per_s = 60;
    o.replicas = 2;
    return o;
}

}  // namespace

// Every task check ran, and held: the run acknowledged tasks and every live node looked some
// up; none lost or unfinished; each held by replicas live members, as its owner counts too.
void require_tasks_kept(const Report& r) {
    INFO("acked " << r.tasks_acked << " of " << r.tasks_submitted << ", ran twice "
                  << r.tasks_ran_twice << "; " << r.task_checks_skipped);
    REQUIRE(r.task_checks_skipped.empty());
    REQUIRE(r.tasks_acked > 0);
    REQUIRE(r.tasks_lost == 0);
    REQUIRE(r.tasks_unfinished == 0);
    REQUIRE(r.tasks_short == 0);
    REQUIRE(r.tasks_ran_twice_unexplained == 0);  // every second run follows a fault
    REQUIRE(r.under_replicated_end == 0);
    REQUIRE(r.lookups > 0);
    REQUIRE(r.lookups_unanswered == 0);
    REQUIRE(r.lookups_wrong == 0);
}

TEST_CASE("acknowledged tasks survive a crash and a lost disk, and every live node finds them") {
    Options o = tasks(12, 120);
    o.crash = 2;
    o.crash_at_s = 25;
    o.restart_after_s = 10;
    o.data_loss = 1;  // one comes back with its journal, the other with an empty disk
    for_each_seed(
        o,
        [](const Report& r) {
            require_tasks_kept(r);
            REQUIRE(r.tasks_acked > r.tasks_submitted * 9 / 10);
            REQUIRE(r.disks_lost == 1);
            REQUIRE(r.under_replicated_max > 0);  // the faults took copies away
        },
        kTaskSeeds);
}

TEST_CASE("hosts lost for good one after another lose no task and no result") {
    Options o = tasks(12, 150);
    o.crash = 2;
    o.crash_at_s = 25;
    o.crash_every_s = 35;  // the copies the first took are remade before the second goes
    for_each_seed(o, require_tasks_kept, kTaskSeeds);
}

TEST_CASE("a host back with an empty disk before anyone noticed it was gone loses nothing") {
    Options o = tasks(12, 150);
    o.crash = 2;
    o.crash_at_s = 25;
    o.crash_every_s = 35;
    o.restart_after_s = 1;  // back before failure detection: never declared dead
    o.data_loss = 2;        // both with empty disks, one after the other
    for_each_seed(
        o,
        [](const Report& r) {
            require_tasks_kept(r);
            REQUIRE(r.disks_lost == 2);
        },
        kTaskSeeds);
}

TEST_CASE("coordinator-placed tasks and singletons survive the coordinator's crash and lost disk") {
    // The first node to crash is the coordinator; it comes back with an empty disk, and the
    // second crash takes whoever coordinates or owns what next.
    Options o = tasks(12, 150);
    o.coordinator_share = 0.4;
    o.singleton_share = 0.2;
    o.crash = 2;
    o.crash_at_s = 25;
    o.crash_every_s = 35;
    o.restart_after_s = 10;
    o.data_loss = 1;
    for_each_seed(
        o,
        [](const Report& r) {
            require_tasks_kept(r);
            REQUIRE(r.tasks_acked > r.tasks_submitted * 8 / 10);
            REQUIRE(r.disks_lost == 1);
        },
        kTaskSeeds);
}

TEST_CASE("a partition refuses or delays tasks, and loses none") {
    Options o = tasks(12, 120);
    o.partition_at_s = 20;
    o.heal_at_s = 35;
    for_each_seed(o, require_tasks_kept, kTaskSeeds);
}

TEST_CASE("a slow node, declared dead and alive again and again, loses no task") {
    // Its copies are taken over while it still runs them, and it reads every answer late:
    // two owners' records of one task meet at a holder, and its repairs need longer waits.
    Options o = tasks(12, 120);
    o.slow = 1;
    o.crash = 1;
    o.crash_at_s = 30;
    o.data_loss = 1;
    for_each_seed(o, require_tasks_kept, kTaskSeeds);
}

TEST_CASE("with one replica a lost disk loses the tasks it held, and the simulator says so") {
    Options o = tasks(12, 100);
    o.seed = 2;
    o.replicas = 1;
    o.crash = 1;
    o.crash_at_s = 25;
    o.data_loss = 1;
    const Report r = run(o);
    REQUIRE(r.tasks_acked > 0);
    REQUIRE(r.tasks_lost > 0);  // the promise is replicas 1: no copy elsewhere
    REQUIRE(r.task_checks_skipped.empty());
    REQUIRE(r.violations.empty());  // and that is within it; the other checks held
}

TEST_CASE("one seed replays the same task run") {
    Options o = tasks(10, 80);
    o.seed = 4;
    o.crash = 1;
    o.crash_at_s = 20;
    o.restart_after_s = 5;
    const Report a = run(o), b = run(o);
    REQUIRE(a.tasks_acked == b.tasks_acked);
    REQUIRE(a.tasks_ran_twice == b.tasks_ran_twice);
    REQUIRE(a.ack_p99_ms == b.ack_p99_ms);
    REQUIRE(a.task_bytes == b.task_bytes);
}
