#include "core/copy_tracker.hpp"

#include <catch2/catch.hpp>

using namespace chorus;

namespace {

const Time t0 = Time{} + seconds(100);

// A tracker over a membership the test changes, and what it emitted since the last look.
struct Owner {
    std::vector<Name> alive;  // the key's preference list after this node, alive only
    CopyTracker tracker;

    explicit Owner(CopyTrackerConfig c,
                   std::vector<Name> members = {Name("b"), Name("c"), Name("d")})
        : alive(std::move(members)),
          tracker(c, [this](const std::string&, uint64_t) { return alive; }) {}

    CopyOutbox take() {
        CopyOutbox out = tracker.outbox();
        tracker.outbox().clear();
        return out;
    }
    std::vector<std::string> sent_to() {
        std::vector<std::string> to;
        for (const CopySend& s : take().sends)
            to.push_back(s.to.str());
        return to;
    }
};

CopyTrackerConfig strict() {
    return CopyTrackerConfig{.replicas = 2,
                             .min_replicas = 2,
                             .copy_timeout = milliseconds(500),
                             .repair_backoff = seconds(1)};
}

CopyTrackerConfig lenient() {
    CopyTrackerConfig c = strict();
    c.min_replicas = 1;
    return c;
}

}  // namespace

TEST_CASE("a task is acknowledged once the first member of its key stores the copy") {
    Owner o(strict());
    o.tracker.add("t1", 7, t0 + seconds(1), t0);
    auto out = o.take();
    REQUIRE(out.sends.size() == 1);
    REQUIRE(out.sends[0].to == Name("b"));
    REQUIRE(out.verdicts.empty());  // nothing is acknowledged before the copy is stored

    o.tracker.answered("t1", Name("b"), true, t0 + milliseconds(1));
    out = o.take();
    REQUIRE(out.verdicts.size() == 1);
    REQUIRE(out.verdicts[0].accepted);
    REQUIRE(out.verdicts[0].replicas == 2);
    REQUIRE(*o.tracker.holders("t1") == std::vector<Name>{Name("b")});
    REQUIRE(o.tracker.under_replicated() == 0);
    REQUIRE(o.tracker.next_deadline() == Time::max());  // nothing more to do for it
}

TEST_CASE("a copy goes to the next member of the key after a refusal or a silence") {
    // Each row: how b and c answer; who ends up holding the copy, and when the task is
    // acknowledged (ms after it was added).
    struct Row {
        const char* b;
        const char* c;
        const char* holder;
        int acked_at_ms;
    };
    const Row rows[] = {
        {"stores", "-", "b", 1},
        {"refuses", "stores", "c", 2},
        {"silent", "stores", "c", 501},
        {"silent", "refuses", "d", 502},
    };
    for (const Row& r : rows) {
        CAPTURE(r.b, r.c);
        Owner o(strict());
        o.tracker.add("t1", 7, t0 + seconds(2), t0);
        Time now = t0;
        std::optional<Time> acked;
        std::vector<std::string> dropped;
        for (int step = 0; step < 10 && !acked; ++step) {
            auto out = o.take();
            for (const CopyVerdict& v : out.verdicts) {
                REQUIRE(v.accepted);
                acked = now;
            }
            for (const CopyDrop& d : out.drops)
                dropped.push_back(d.to.str());
            if (out.sends.empty()) {
                now = o.tracker.next_deadline();
                o.tracker.tick(now);
                continue;
            }
            REQUIRE(out.sends.size() == 1);
            const Name to = out.sends[0].to;
            const std::string how = to == Name("b") ? r.b : to == Name("c") ? r.c : "stores";
            if (how == "silent") continue;  // the tracker's own deadline moves it on
            now += milliseconds(1);
            o.tracker.answered("t1", to, how == "stores", now);
        }
        REQUIRE(acked);
        REQUIRE(*acked == t0 + milliseconds(r.acked_at_ms));
        REQUIRE(*o.tracker.holders("t1") == std::vector<Name>{Name(r.holder)});
        // A silent member is told to drop the copy it may store late; one that refused is not.
        const bool b_silent = std::string(r.b) == "silent";
        REQUIRE((std::find(dropped.begin(), dropped.end(), "b") != dropped.end()) == b_silent);
    }
}

TEST_CASE("a late answer from a member given up on does not make it a holder") {
    Owner o(strict());
    o.tracker.add("t1", 7, t0 + seconds(2), t0);
    REQUIRE(o.sent_to() == std::vector<std::string>{"b"});
    o.tracker.tick(t0 + milliseconds(500));
    auto out = o.take();
    REQUIRE(out.drops.size() == 1);
    REQUIRE(out.drops[0].to == Name("b"));
    REQUIRE(out.sends.size() == 1);
    REQUIRE(out.sends[0].to == Name("c"));
    o.tracker.answered("t1", Name("b"), true, t0 + milliseconds(600));  // late
    REQUIRE(o.take().empty());
    REQUIRE(o.tracker.holders("t1")->empty());
    REQUIRE(o.tracker.stats().timeouts == 1);
}

TEST_CASE("without enough copies by the deadline a task is refused and its copies dropped") {
    CopyTrackerConfig c = strict();
    c.replicas = 3;
    c.min_replicas = 3;
    Owner o(c);
    o.tracker.add("t1", 7, t0 + milliseconds(400), t0);
    REQUIRE(o.sent_to() == std::vector<std::string>{"b"});
    o.tracker.answered("t1", Name("b"), true, t0 + milliseconds(1));
    REQUIRE(o.sent_to() == std::vector<std::string>{"c"});
    // c never answers: with 400 ms to go, each member gets half of it at most.
    REQUIRE(o.tracker.next_deadline() == t0 + milliseconds(201));
    o.tracker.tick(t0 + milliseconds(201));
    auto out = o.take();
    REQUIRE(out.drops.size() == 1);
    REQUIRE(out.drops[0].to == Name("c"));
    REQUIRE(out.sends.size() == 1);
    REQUIRE(out.sends[0].to == Name("d"));
    // d has not answered when the deadline comes.
    REQUIRE(o.tracker.next_deadline() == t0 + milliseconds(400));
    o.tracker.tick(t0 + milliseconds(400));
    out = o.take();
    REQUIRE(out.verdicts.size() == 1);
    REQUIRE_FALSE(out.verdicts[0].accepted);
    REQUIRE(out.verdicts[0].replicas == 2);
    REQUIRE(out.verdicts[0].why.find("tried c, d (no answer yet)") != std::string::npos);
    // Nothing runs: b forgets its copy, and so does d should it store one late.
    std::vector<std::string> dropped;
    for (const CopyDrop& d : out.drops)
        dropped.push_back(d.to.str());
    REQUIRE(dropped == std::vector<std::string>{"b", "d"});
    REQUIRE_FALSE(o.tracker.contains("t1"));
    REQUIRE(o.tracker.stats().declined == 1);
}

TEST_CASE("with no other member alive a task is refused at once, or acknowledged alone") {
    SECTION("strict: refused without waiting for the deadline") {
        Owner o(strict(), {});
        o.tracker.add("t1", 7, t0 + seconds(1), t0);
        auto out = o.take();
        REQUIRE(out.verdicts.size() == 1);
        REQUIRE_FALSE(out.verdicts[0].accepted);
        REQUIRE(out.verdicts[0].why.find("no other alive member") != std::string::npos);
    }
    SECTION("min_replicas 1: acknowledged with one, and under-replicated until a member comes") {
        Owner o(lenient(), {});
        o.tracker.add("t1", 7, t0 + seconds(1), t0);
        auto out = o.take();
        REQUIRE(out.verdicts.size() == 1);
        REQUIRE(out.verdicts[0].accepted);
        REQUIRE(out.verdicts[0].replicas == 1);
        REQUIRE(o.tracker.under_replicated() == 1);
        REQUIRE(o.tracker.stats().degraded == 1);
        // The next round waits repair_backoff; then the member that joined meanwhile stores it.
        REQUIRE(o.tracker.next_deadline() == t0 + seconds(1));
        o.alive = {Name("b")};
        o.tracker.tick(t0 + seconds(1));
        REQUIRE(o.sent_to() == std::vector<std::string>{"b"});
        o.tracker.answered("t1", Name("b"), true, t0 + seconds(1) + milliseconds(1));
        REQUIRE(o.tracker.under_replicated() == 0);
        REQUIRE(o.tracker.stats().repaired == 1);
        REQUIRE(o.take().verdicts.empty());  // acknowledged once only
    }
}

TEST_CASE("one copy kept (replicas 1) is acknowledged at once and sends nothing") {
    CopyTrackerConfig c = strict();
    c.replicas = 1;
    c.min_replicas = 1;
    Owner o(c);
    o.tracker.add("t1", 7, t0 + seconds(1), t0);
    auto out = o.take();
    REQUIRE(out.sends.empty());
    REQUIRE(out.verdicts.size() == 1);
    REQUIRE(out.verdicts[0].accepted);
    REQUIRE(o.tracker.under_replicated() == 0);
}

TEST_CASE("when the holder of a copy dies the task is copied again to the next member") {
    Owner o(strict());
    o.tracker.add("t1", 7, t0 + seconds(1), t0);
    o.take();
    o.tracker.answered("t1", Name("b"), true, t0 + milliseconds(1));
    o.take();
    o.alive = {Name("c"), Name("d")};
    o.tracker.member_gone(Name("b"), t0 + seconds(5));
    REQUIRE(o.tracker.under_replicated() == 1);
    REQUIRE(o.tracker.next_deadline() == t0 + seconds(5));
    o.tracker.tick(t0 + seconds(5));
    REQUIRE(o.sent_to() == std::vector<std::string>{"c"});
    o.tracker.answered("t1", Name("c"), true, t0 + seconds(5) + milliseconds(1));
    REQUIRE(o.tracker.under_replicated() == 0);
    REQUIRE(*o.tracker.holders("t1") == std::vector<Name>{Name("c")});
}

TEST_CASE("a member that dies while it is sent a copy is passed over at once") {
    Owner o(strict());
    o.tracker.add("t1", 7, t0 + seconds(1), t0);
    REQUIRE(o.sent_to() == std::vector<std::string>{"b"});
    o.alive = {Name("c"), Name("d")};
    o.tracker.member_gone(Name("b"), t0 + milliseconds(10));
    o.tracker.tick(t0 + milliseconds(10));
    REQUIRE(o.sent_to() == std::vector<std::string>{"c"});
}

TEST_CASE("a task recovered or taken over is copied in the background, rounds apart") {
    Owner o(strict());
    o.tracker.adopt("t1", 7, {}, t0);
    REQUIRE(o.tracker.under_replicated() == 1);
    // Every member refuses (their copies are full): the next round waits repair_backoff.
    for (const char* n : {"b", "c", "d"}) {
        REQUIRE(o.sent_to() == std::vector<std::string>{n});
        o.tracker.answered("t1", Name(n), false, t0);
    }
    auto out = o.take();
    REQUIRE(out.sends.empty());
    REQUIRE(out.verdicts.empty());  // adopted tasks were acknowledged long ago
    REQUIRE(o.tracker.next_deadline() == t0 + seconds(1));
    o.tracker.tick(t0 + seconds(1));
    out = o.take();
    REQUIRE(out.sends.size() == 1);
    REQUIRE(out.sends[0].to == Name("b"));
    REQUIRE(out.sends[0].within == milliseconds(500));  // refusals are quick: no longer wait
    o.tracker.answered("t1", Name("b"), true, t0 + seconds(1));
    REQUIRE(o.tracker.under_replicated() == 0);
}

TEST_CASE("a repair round nobody answers in time gives each member twice as long the next") {
    // Members that answer late (or an owner that reads their answers late: it is the slow
    // one) would otherwise be given up on in every round, for good.
    Owner o(strict(), {Name("b")});
    o.tracker.adopt("t1", 7, {}, t0);
    Time now = t0;
    Duration expected = milliseconds(500);
    for (int round = 0; round < 7; ++round) {
        CopyOutbox out = o.take();
        REQUIRE(out.sends.size() == 1);
        REQUIRE(out.sends[0].within == expected);
        now += expected;
        o.tracker.tick(now);  // silent: given up, and dropped
        REQUIRE(o.take().drops.size() == 1);
        now = o.tracker.next_deadline();  // the round's backoff
        o.tracker.tick(now);
        expected =
            std::min<Duration>(expected * 2, milliseconds(500) * CopyTracker::kAttemptGrowthMax);
    }
    REQUIRE(expected == seconds(8));  // the growth stopped at its cap
    REQUIRE(o.take().sends.at(0).within == seconds(8));
    // Stored at last: the next repair of this task starts from copy_timeout again.
    o.tracker.answered("t1", Name("b"), true, now + seconds(2));
    REQUIRE(o.tracker.under_replicated() == 0);
    o.tracker.member_gone(Name("b"), now + seconds(3));
    o.alive = {Name("c")};
    o.tracker.tick(now + seconds(3));
    REQUIRE(o.take().sends.at(0).within == milliseconds(500));
}

TEST_CASE("a task adopted with a known holder needs no copy") {
    Owner o(strict());
    o.tracker.adopt("t1", 7, {Name("c")}, t0);
    REQUIRE(o.take().empty());
    REQUIRE(o.tracker.under_replicated() == 0);
}

TEST_CASE("a task that leaves the tracker names its holders and the member it was sent to") {
    CopyTrackerConfig c = strict();
    c.replicas = 3;
    c.min_replicas = 3;
    Owner o(c);
    o.tracker.add("t1", 7, t0 + seconds(1), t0);
    o.take();
    o.tracker.answered("t1", Name("b"), true, t0);
    REQUIRE(o.sent_to() == std::vector<std::string>{"c"});
    REQUIRE(o.tracker.forget("t1") == std::vector<Name>{Name("b"), Name("c")});
    REQUIRE_FALSE(o.tracker.contains("t1"));
    REQUIRE(o.tracker.next_deadline() == Time::max());
    o.tracker.answered("t1", Name("c"), true, t0);  // late: nothing to do
    REQUIRE(o.take().empty());
}

TEST_CASE("ticks visit tasks in deadline order, whatever the hash map's order") {
    Owner o(strict());
    std::vector<std::string> ids;
    for (int i = 0; i < 50; ++i) {
        ids.push_back(fmt::format("t{:02}", 49 - i));
        o.tracker.add(ids.back(), 7, t0 + seconds(10), t0 + milliseconds(i));
    }
    o.take();
    o.tracker.tick(t0 + seconds(1));  // every copy to b timed out: each goes to c now
    const auto out = o.take();
    REQUIRE(out.sends.size() == 50);
    for (size_t i = 0; i < out.sends.size(); ++i)
        REQUIRE(out.sends[i].id == ids[i]);
}

TEST_CASE("the copy settings are checked") {
    CopyTrackerConfig c = strict();
    c.min_replicas = 3;
    REQUIRE_FALSE(c.validate().ok());
    c.min_replicas = 0;
    REQUIRE_FALSE(c.validate().ok());
    c = strict();
    c.copy_timeout = Duration::zero();
    REQUIRE_FALSE(c.validate().ok());
    REQUIRE(strict().validate().ok());
}

TEST_CASE("a task added twice is tracked once, with the copies it has") {
    Owner o(strict());
    o.tracker.add("t1", 7, t0 + seconds(1), t0);
    REQUIRE(o.sent_to() == std::vector<std::string>{"b"});
    o.tracker.add("t1", 7, t0 + seconds(2), t0 + milliseconds(1));
    REQUIRE(o.take().sends.empty());  // the copy to b is still on its way
    REQUIRE(o.tracker.size() == 1);
    o.tracker.answered("t1", Name("b"), true, t0 + milliseconds(2));
    REQUIRE(o.take().verdicts.size() == 1);
}
