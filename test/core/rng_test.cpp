#include "core/rng.hpp"

#include <algorithm>
#include <numeric>

#include <catch2/catch.hpp>

using chorus::Rng;

TEST_CASE("the same seed replays the same sequence and different seeds differ") {
    Rng a(42), b(42), c(43);
    bool differs = false;
    for (int i = 0; i < 100; ++i) {
        const uint64_t x = a.next();
        REQUIRE(x == b.next());
        differs = differs || x != c.next();
    }
    REQUIRE(differs);
}

TEST_CASE("below stays in range and spreads evenly") {
    Rng r(7);
    std::array<int, 10> counts{};
    for (int i = 0; i < 100000; ++i) {
        const uint64_t v = r.below(10);
        REQUIRE(v < 10);
        ++counts[v];
    }
    for (int c : counts) {
        REQUIRE(c > 9500);
        REQUIRE(c < 10500);
    }
}

TEST_CASE("unit draws lie in 0 to 1, 1 excluded") {
    Rng r(1);
    for (int i = 0; i < 10000; ++i) {
        const double u = r.unit();
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
    }
}

TEST_CASE("shuffle yields a permutation that depends on the seed") {
    std::vector<int> v(50);
    std::iota(v.begin(), v.end(), 0);
    auto a = v, b = v;
    Rng(3).shuffle(a);
    Rng(4).shuffle(b);
    REQUIRE(a != v);
    REQUIRE(a != b);
    std::sort(a.begin(), a.end());
    REQUIRE(a == v);
}
