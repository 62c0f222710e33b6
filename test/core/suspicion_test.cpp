#include "core/suspicion.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

TEST_CASE("suspicion timeout shrinks from max to min as confirmations arrive (Lifeguard §4.2)") {
    const Duration min = seconds(2), max = seconds(12);
    struct Row {
        uint32_t confirmations;
        uint32_t expected;
        double seconds;
    };
    // max - (max - min) * log(c + 1) / log(k + 1)
    const Row rows[] = {
        {0, 3, 12.0}, {1, 3, 7.0}, {2, 3, 4.075}, {3, 3, 2.0}, {5, 3, 2.0}, {0, 0, 2.0},
    };
    for (const Row& r : rows) {
        INFO("c = " << r.confirmations << ", k = " << r.expected);
        REQUIRE(to_seconds(suspicion_timeout(min, max, r.confirmations, r.expected)) ==
                Approx(r.seconds).margin(0.01));
    }
}

TEST_CASE("the accuser is not its own confirmation, and nobody counts twice") {
    Suspicion s(Time{}, Incarnation{1}, "a", seconds(2), seconds(12), 3);
    REQUIRE_FALSE(s.confirm("a"));
    REQUIRE(s.confirm("b"));
    REQUIRE_FALSE(s.confirm("b"));
    REQUIRE(s.confirmations() == 1);
}

TEST_CASE("confirmations beyond the expected number are not kept") {
    Suspicion s(Time{}, Incarnation{1}, "a", seconds(2), seconds(12), 2);
    REQUIRE(s.confirm("b"));
    REQUIRE(s.confirm("c"));
    REQUIRE_FALSE(s.confirm("d"));
    REQUIRE(s.deadline() == Time{} + seconds(2));
}

TEST_CASE("each confirmation brings the deadline closer") {
    Suspicion s(Time{} + seconds(10), Incarnation{1}, "a", seconds(2), seconds(12), 3);
    Time last = s.deadline();
    REQUIRE(last == Time{} + seconds(22));
    for (const char* who : {"b", "c", "d"}) {
        s.confirm(who);
        REQUIRE(s.deadline() < last);
        last = s.deadline();
    }
    REQUIRE(last == Time{} + seconds(12));
}

TEST_CASE("a restarted suspicion runs again from the restart and may be checked again") {
    Suspicion s(Time{}, Incarnation{1}, "a", seconds(2), seconds(12), 3);
    s.mark_checked();
    s.restart(Time{} + seconds(12));
    REQUIRE_FALSE(s.checked());
    REQUIRE(s.deadline() == Time{} + seconds(24));
}
