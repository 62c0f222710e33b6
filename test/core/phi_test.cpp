#include "core/phi.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

TEST_CASE("phi_value follows the normal tail: -log10 of the chance of being this late") {
    // elapsed = mean + k·sd gives -log10(1 - Φ(k)), which Akka's logistic approximation puts at
    // these values (the exact normal tail differs by under 0.05 up to k = 3).
    struct Row {
        double k;
        double phi;
    };
    const Row rows[] = {{-1.0, 0.075}, {0.0, 0.301}, {1.0, 0.800},
                        {2.0, 1.642},  {3.0, 2.909}, {4.0, 4.737}};
    const Duration mean = milliseconds(1000), sd = milliseconds(100);
    for (const Row& r : rows) {
        const Duration elapsed = mean + scale(sd, r.k);
        INFO("k = " << r.k);
        REQUIRE(phi_value(elapsed, mean, sd) == Approx(r.phi).margin(0.01));
    }
}

TEST_CASE("phi_value grows with the time since the last heartbeat") {
    double last = -1;
    for (int ms = 0; ms <= 3000; ms += 100) {
        const double p = phi_value(milliseconds(ms), milliseconds(1000), milliseconds(200));
        REQUIRE(p >= last);
        last = p;
    }
    REQUIRE(last > 8);
}

namespace {
PhiParams params() {
    PhiParams p;
    p.window = 8;
    p.min_samples = 3;
    p.min_std_dev = milliseconds(100);
    p.acceptable_pause = Duration::zero();
    p.coalesce = milliseconds(50);
    return p;
}
}  // namespace

TEST_CASE("a detector reads 0 until it has enough samples") {
    PhiDetector d;
    const auto p = params();
    Time t{};
    d.heartbeat(t, p);
    d.heartbeat(t += seconds(1), p);
    d.heartbeat(t += seconds(1), p);
    REQUIRE(d.samples() == 2);
    REQUIRE(d.phi(t + seconds(30), p) == 0.0);
    d.heartbeat(t += seconds(1), p);
    REQUIRE(d.phi(t + seconds(30), p) > 8);
}

TEST_CASE("a regular member is trusted on time and suspected when late") {
    PhiDetector d;
    const auto p = params();
    Time t{};
    for (int i = 0; i < 20; ++i)
        d.heartbeat(t += seconds(1), p);
    REQUIRE(d.mean() == seconds(1));
    REQUIRE(d.phi(t + milliseconds(900), p) < 1);
    REQUIRE(d.phi(t + seconds(3), p) > 8);
}

TEST_CASE("the sample window is bounded and forgets old intervals") {
    PhiDetector d;
    const auto p = params();
    Time t{};
    for (int i = 0; i < 20; ++i)
        d.heartbeat(t += seconds(10), p);
    for (int i = 0; i < 8; ++i)
        d.heartbeat(t += seconds(1), p);
    REQUIRE(d.samples() == 8);
    REQUIRE(d.mean() == seconds(1));
}

TEST_CASE("signs of life closer than the coalescing window count once") {
    PhiDetector d;
    const auto p = params();
    Time t{};
    d.heartbeat(t, p);
    d.heartbeat(t + milliseconds(10), p);
    d.heartbeat(t + milliseconds(20), p);
    REQUIRE(d.samples() == 0);
    d.heartbeat(t + seconds(1), p);
    REQUIRE(d.samples() == 1);
}

TEST_CASE("acceptable pause shifts suspicion later") {
    PhiDetector d;
    auto p = params();
    Time t{};
    for (int i = 0; i < 10; ++i)
        d.heartbeat(t += seconds(1), p);
    const double strict = d.phi(t + seconds(2), p);
    p.acceptable_pause = seconds(1);
    REQUIRE(d.phi(t + seconds(2), p) < strict);
}
