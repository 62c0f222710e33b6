#include "core/awareness.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

TEST_CASE("awareness scales timeouts by one plus its score") {
    Awareness a(8);
    REQUIRE(a.scale(milliseconds(500)) == milliseconds(500));
    a.apply(2);
    REQUIRE(a.score() == 2);
    REQUIRE(a.scale(milliseconds(500)) == milliseconds(1500));
}

TEST_CASE("awareness stays within 0 to max - 1") {
    Awareness a(8);
    a.apply(-5);
    REQUIRE(a.score() == 0);
    a.apply(100);
    REQUIRE(a.score() == 7);
    a.apply(-1);
    REQUIRE(a.score() == 6);
}
