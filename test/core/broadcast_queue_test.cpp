#include "core/broadcast_queue.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

namespace {
Update alive(const std::string& name, uint32_t inc) {
    return AliveUpdate{name, Address{name + ":7900"}, "", Incarnation{inc}, {}, 1};
}
std::vector<std::string> names(const std::vector<Update>& us) {
    std::vector<std::string> out;
    for (const auto& u : us)
        out.push_back(update_subject(u).str());
    return out;
}
}  // namespace

TEST_CASE("a newer update about a member replaces the queued one") {
    BroadcastQueue q(16);
    q.push(alive("a", 1));
    q.push(SuspectUpdate{"a", Incarnation{1}, "b"});
    REQUIRE(q.size() == 1);
    std::vector<Update> out;
    q.take(1400, 10, out);
    REQUIRE(out.size() == 1);
    REQUIRE(std::holds_alternative<SuspectUpdate>(out[0]));
}

TEST_CASE("updates sent the fewest times go first, newest first among equals") {
    BroadcastQueue q(16);
    q.push(alive("a", 1));
    q.push(alive("b", 1));
    std::vector<Update> out;
    q.take(1400, 10, out);
    REQUIRE(names(out) == std::vector<std::string>{"b", "a"});
    q.push(alive("c", 1));
    out.clear();
    q.take(1400, 10, out);
    REQUIRE(names(out) == std::vector<std::string>{"c", "b", "a"});
}

TEST_CASE("an update is dropped after its transmit limit") {
    BroadcastQueue q(16);
    q.push(alive("a", 1));
    for (int i = 0; i < 3; ++i) {
        std::vector<Update> out;
        q.take(1400, 3, out);
        REQUIRE(out.size() == 1);
    }
    REQUIRE(q.empty());
}

TEST_CASE("take never exceeds the byte budget") {
    BroadcastQueue q(1024);
    for (int i = 0; i < 200; ++i)
        q.push(alive("member-" + std::to_string(i), 1));
    std::vector<Update> out;
    const size_t used = q.take(600, 10, out);
    REQUIRE(used <= 600);
    size_t sum = 0;
    for (const auto& u : out)
        sum += encoded_size_bound(u);
    REQUIRE(sum == used);
    REQUIRE(!out.empty());
    REQUIRE(out.size() < 200);
}

TEST_CASE("a full queue drops its most-sent update to make room") {
    BroadcastQueue q(2);
    q.push(alive("a", 1));
    std::vector<Update> out;
    q.take(1400, 10, out);  // a has been sent once
    q.push(alive("b", 1));
    q.push(alive("c", 1));  // full: a goes
    REQUIRE(q.size() == 2);
    REQUIRE(q.dropped() == 1);
    REQUIRE_FALSE(q.contains("a"));
    REQUIRE(q.contains("b"));
    REQUIRE(q.contains("c"));
}
