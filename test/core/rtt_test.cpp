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
