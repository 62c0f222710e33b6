#include "core/rtt.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

TEST_CASE("the probe timeout is the initial value until a round trip is measured") {
    RttEstimator r;
    REQUIRE(r.timeout(milliseconds(500), milliseconds(100), milliseconds(900)) ==
            milliseconds(500));
}

TEST_CASE("the first sample sets srtt and half of it as variance") {
    RttEstimator r;
    r.sample(milliseconds(40));
    REQUIRE(r.srtt() == milliseconds(40));
    // srtt + 4 * rttvar = 40 + 4 * 20
    REQUIRE(r.timeout(milliseconds(500), milliseconds(1), milliseconds(900)) == milliseconds(120));
}

TEST_CASE("steady round trips shrink the timeout to the floor") {
    RttEstimator r;
    for (int i = 0; i < 100; ++i)
        r.sample(milliseconds(2));
    REQUIRE(r.timeout(milliseconds(500), milliseconds(100), milliseconds(500)) ==
            milliseconds(100));
}

TEST_CASE("slow round trips raise the timeout to the ceiling and no further") {
    RttEstimator r;
    for (int i = 0; i < 100; ++i)
        r.sample(milliseconds(i % 2 == 0 ? 300 : 900));
    REQUIRE(r.timeout(milliseconds(500), milliseconds(100), milliseconds(800)) ==
            milliseconds(800));
}

TEST_CASE("each timeout doubles the next, up to the ceiling, until a round trip comes back") {
    RttEstimator r;
    for (int i = 0; i < 100; ++i)
        r.sample(milliseconds(10));
    const auto timeout = [&] {
        return r.timeout(milliseconds(2000), milliseconds(250), milliseconds(2000));
    };
    struct Step {
        int backoffs;
        Duration timeout;
    };
    // From the floor: 250, 500, 1000, 2000, and the ceiling holds however many come.
    for (const Step s :
         {Step{0, milliseconds(250)}, Step{1, milliseconds(500)}, Step{2, milliseconds(1000)},
          Step{3, milliseconds(2000)}, Step{40, milliseconds(2000)}}) {
        RttEstimator b = r;
        for (int i = 0; i < s.backoffs; ++i)
            b.back_off();
        REQUIRE(b.timeout(milliseconds(2000), milliseconds(250), milliseconds(2000)) == s.timeout);
    }
    r.back_off();
    r.back_off();
    REQUIRE(timeout() == milliseconds(1000));
    r.sample(milliseconds(10));  // an answer in time: the back-off ends
    REQUIRE(r.backoffs() == 0);
    REQUIRE(timeout() == milliseconds(250));
}

TEST_CASE("before any round trip, a timeout backs off from the initial value") {
    RttEstimator r;
    r.back_off();
    REQUIRE(r.timeout(milliseconds(300), milliseconds(100), milliseconds(2000)) ==
            milliseconds(600));
}
