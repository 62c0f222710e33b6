#include "core/ring.hpp"

#include <xxhash.h>
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>

using namespace chorus;

namespace {

uint64_t xxh3(std::string_view s) {
    return XXH3_64bits(s.data(), s.size());
}

// A hash with chosen values, so the clockwise walk can be checked by hand.
uint64_t fixed(std::string_view s) {
    static const std::map<std::string, uint64_t, std::less<>> table = {
        {"a#0", 100},   {"b#0", 200},   {"c#0", 300}, {"k-150", 150},
        {"k-300", 300}, {"k-350", 350}, {"k-50", 50},
    };
    auto it = table.find(s);
    return it == table.end() ? 7 : it->second;
}

std::vector<Name> names(std::initializer_list<const char*> l) {
    std::vector<Name> out;
    for (const char* s : l)
        out.emplace_back(s);
    return out;
}

}  // namespace

TEST_CASE("a key's preference list walks clockwise from its hash and wraps around") {
    const Ring r(names({"c", "a", "b"}), 1, fixed);
    struct Row {
        const char* key;
        std::vector<Name> want;
    };
    const Row rows[] = {
        {"k-50", names({"a", "b", "c"})},
        {"k-150", names({"b", "c", "a"})},
        {"k-300", names({"c", "a", "b"})},  // a point owns its own position
        {"k-350", names({"a", "b", "c"})},  // past the last point: back to the start
    };
    for (const Row& row : rows) {
        INFO(row.key);
        REQUIRE(r.preference(row.key, 3) == row.want);
        REQUIRE(r.preference(row.key, 1) == std::vector<Name>{row.want[0]});
    }
    REQUIRE(r.preference("k-50", 10).size() == 3);  // never more than the members
}

TEST_CASE("equal views build equal rings, whatever the order") {
    const Ring a(names({"n1", "n2", "n3", "n4"}), 64, xxh3);
    const Ring b(names({"n4", "n2", "n1", "n3", "n2"}), 64, xxh3);
    REQUIRE(a.checksum() == b.checksum());
    for (int k = 0; k < 500; ++k) {
        const std::string key = "key-" + std::to_string(k);
        REQUIRE(a.preference(key, 3) == b.preference(key, 3));
    }
    REQUIRE(Ring(names({"n1", "n2", "n3"}), 64, xxh3).checksum() != a.checksum());
    REQUIRE(Ring(names({"n1", "n2", "n3", "n4"}), 32, xxh3).checksum() != a.checksum());
}

TEST_CASE("removing a member moves only the keys it owned") {
    const Ring before(names({"n1", "n2", "n3", "n4", "n5"}), 64, xxh3);
    const Ring after(names({"n1", "n2", "n4", "n5"}), 64, xxh3);
    int moved = 0;
    for (int k = 0; k < 5000; ++k) {
        const std::string key = "key-" + std::to_string(k);
        const Name was = before.preference(key, 1)[0];
        const Name now = after.preference(key, 1)[0];
        if (was != Name("n3")) {
            REQUIRE(now == was);
        } else {
            ++moved;
            // Its keys go to what was their second choice.
            REQUIRE(now == before.preference(key, 2)[1]);
        }
    }
    REQUIRE(moved > 500);  // about a fifth of the keys were n3's
}

TEST_CASE("with enough points every member owns a near-equal share") {
    for (uint32_t vnodes : {64u, 256u}) {
        std::vector<Name> ms;
        for (int i = 0; i < 10; ++i)
            ms.emplace_back("node-" + std::to_string(i));
        const Ring r(ms, vnodes, xxh3);
        double total = 0, most = 0, least = 1;
        for (const auto& [name, share] : r.shares()) {
            total += share;
            most = std::max(most, share);
            least = std::min(least, share);
        }
        INFO("vnodes " << vnodes);
        REQUIRE(total == Approx(1.0));
        REQUIRE(most < 0.1 * (vnodes >= 256 ? 1.25 : 1.45));
        REQUIRE(least > 0.1 * (vnodes >= 256 ? 0.75 : 0.55));
    }
}

TEST_CASE("a ring of one member owns everything") {
    const Ring r(names({"solo"}), 8, xxh3);
    REQUIRE(r.shares().front().second == Approx(1.0));
    REQUIRE(r.preference("anything", 3) == names({"solo"}));
    const Ring empty({}, 8, xxh3);
    REQUIRE(empty.preference("anything", 3).empty());
}

TEST_CASE("a ring updated in place is the ring built from scratch from the same members") {
    std::vector<Name> pool;
    for (int i = 0; i < 300; ++i)
        pool.emplace_back("node-" + std::to_string(i));
    Ring updated({}, 16, xxh3);
    std::set<Name> current;
    uint64_t state = 7;
    const auto next = [&] {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return state >> 33;
    };
    for (int round = 0; round < 40; ++round) {
        // A batch of joins and leaves at once, some of them repeats, as a flood brings.
        std::vector<Name> joined, gone;
        for (int k = 0; k < 25; ++k) {
            const Name& n = pool[next() % pool.size()];
            if (next() % 3 == 0) {
                gone.push_back(n);
            } else {
                joined.push_back(n);
            }
        }
        updated.update(joined, gone);
        for (const Name& n : gone)
            current.erase(n);
        current.insert(joined.begin(), joined.end());
        const Ring built(std::vector<Name>(current.begin(), current.end()), 16, xxh3);
        INFO("round " << round);
        REQUIRE(updated.members() == built.members());
        REQUIRE(updated.checksum() == built.checksum());
        for (int k = 0; k < 200; ++k) {
            const std::string key = "key-" + std::to_string(k);
            REQUIRE(updated.preference(key, 3) == built.preference(key, 3));
        }
    }
}
