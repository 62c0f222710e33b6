#include "core/prober.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <set>

using namespace chorus;

namespace {

// One view of `n` members, and a prober for each member over it (as if all agreed).
struct Agreed {
    MemberTable table{1024};
    std::vector<std::string> names;
    std::vector<std::unique_ptr<Prober>> probers;

    explicit Agreed(size_t n) {
        for (size_t i = 0; i < n; ++i) {
            names.push_back("node-" + std::to_string(i));
            Member m;
            m.name = names.back();
            m.addr = Address{names.back()};
            table.add(std::move(m));
        }
        for (const auto& name : names)
            probers.push_back(std::make_unique<Prober>(table, name));
    }
};

}  // namespace

TEST_CASE("stable_hash is fixed text to fixed number, on every build") {
    // Pinned values (computed independently from the definition): the whole cluster must agree
    // on the probe order, so these may never change.
    REQUIRE(stable_hash("") == 0xf52a15e9a9b5e89bULL);
    REQUIRE(stable_hash("node-1") == 0x13950d4ef307e655ULL);
    STATIC_REQUIRE(stable_hash("a") == stable_hash("a"));
}

TEST_CASE("while views agree, every member is probed exactly once a period") {
    for (size_t n : {2u, 3u, 5u, 10u, 25u, 64u}) {
        Agreed a(n);
        std::map<std::string, std::set<std::string>> visited;  // prober -> targets
        for (uint64_t period = 1000; period < 1000 + 3 * (n - 1); ++period) {
            std::map<std::string, int> probed;
            for (size_t i = 0; i < n; ++i) {
                auto t = a.probers[i]->next(period);
                REQUIRE(t.has_value());
                REQUIRE_FALSE(t->early);
                REQUIRE(t->name.str() != a.names[i]);
                ++probed[t->name.str()];
                visited[a.names[i]].insert(t->name.str());
            }
            INFO("n=" << n << " period=" << period);
            REQUIRE(probed.size() == n);  // nobody missed, nobody twice
        }
        // And each prober has visited every other member, as a round robin must.
        for (const auto& [prober, targets] : visited)
            REQUIRE(targets.size() == n - 1);
    }
}

TEST_CASE("gone members are skipped and out-of-turn requests come first") {
    Agreed a(6);
    Member* gone = a.table.find(Name("node-3"));
    a.table.set_state(*gone, MemberState::dead, Time{});
    Prober& p = *a.probers[0];
    p.probe_soon(Name("node-4"));
    auto first = p.next(7);
    REQUIRE(first->name.str() == "node-4");
    REQUIRE(first->early);
    for (uint64_t period = 0; period < 20; ++period)
        REQUIRE(p.next(period)->name.str() != "node-3");
}

TEST_CASE("exactly k members verify a suspicion, never the accuser") {
    Agreed a(20);
    for (size_t s = 0; s < a.names.size(); ++s) {
        const Name suspect(a.names[s]);
        const Name accuser(a.names[(s + 7) % a.names.size()]);
        size_t verifiers = 0;
        for (size_t i = 0; i < a.names.size(); ++i) {
            if (i == s) continue;
            // Each prober sorts its order on first use.
            (void)a.probers[i]->next(0);
            const auto v = a.probers[i]->verifies(suspect, accuser, 3);
            REQUIRE(v.has_value());
            if (*v) {
                ++verifiers;
                REQUIRE(a.names[i] != accuser.str());
            }
        }
        REQUIRE(verifiers == 3);
    }
}

TEST_CASE("a member added since the last sort enters the schedule at the next one") {
    Agreed a(4);
    Prober& p = *a.probers[0];
    (void)p.next(0);
    Member m;
    m.name = "late";
    m.addr = Address{"late"};
    a.table.add(std::move(m));
    p.add(Name("late"));
    REQUIRE_FALSE(p.verifies(Name("late"), Name("node-1"), 3).has_value());  // not sorted yet
    std::set<std::string> seen;
    for (uint64_t period = 1; period < 1 + Prober::kResortPeriods + 8; ++period)
        seen.insert(p.next(period)->name.str());
    REQUIRE(seen.count("late") == 1);
    REQUIRE(p.verifies(Name("late"), Name("node-1"), 3).has_value());
}
