#include "core/node.hpp"

#include <catch2/catch.hpp>

#include "core/harness.hpp"

using namespace chorus;
using chorus::test::Cluster;

namespace {

Cluster five() {
    Cluster c;
    c.add("a");
    for (const char* n : {"b", "c", "d", "e"})
        c.add(n, {"a"});
    return c;
}

bool everyone_sees_everyone(Cluster& c) {
    for (auto& [name, n] : c.nodes) {
        if (!c.all_see(name, MemberState::alive)) return false;
    }
    return true;
}

// One node that knows `peers` alive, learned through a push-pull, so tests can feed it exact
// packets and read exactly what it sends.
struct Solo {
    Config config;
    Node node;
    Time now{};

    explicit Solo(Config c, std::vector<std::string> peers = {"b", "c", "d", "e", "f"})
        : config(c), node(config, Identity{"a", Address{"a"}, "", {}, Incarnation{0}}, 9, Time{}) {
        PushPull pp;
        pp.cluster = config.cluster;
        pp.sender = peers.front();
        for (auto& p : peers)
            pp.members.push_back(
                MemberSnapshot{p, Address{p}, "", Incarnation{0}, MemberState::alive, {}, 0, 1});
        node.push_pull_done(Address{peers.front()}, pp, now);
        node.outbox().clear();
    }
    Packet from(const std::string& sender, Body body, std::vector<Update> updates = {}) {
        Packet p;
        p.cluster = config.cluster;
        p.sender = sender;
        p.sender_addr = Address{sender};
        p.body = std::move(body);
        p.updates = std::move(updates);
        return p;
    }
    void advance_to(Time t) {
        while (node.next_deadline() <= t) {
            now = node.next_deadline();
            node.tick(now);
        }
        now = t;
    }
    MemberState state(const std::string& name) { return node.members().find(name)->state; }
    // The packets sent since the last call.
    std::vector<OutPacket> sent() {
        auto out = std::move(node.outbox().packets);
        node.outbox().clear();
        return out;
    }
};

bool carries(const Packet& p, const std::string& subject, size_t index_or_any = SIZE_MAX) {
    for (size_t i = 0; i < p.updates.size(); ++i) {
        if (update_subject(p.updates[i]) == subject &&
            (index_or_any == SIZE_MAX || index_or_any == i))
            return true;
    }
    return false;
}

}  // namespace

TEST_CASE("members started from one seed all come to see each other alive") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
}

TEST_CASE("a crashed member is suspected, then declared dead by every other member") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    c.crash("c");
    REQUIRE(c.run_until_true([&] { return c.all_see("c", MemberState::dead); }, seconds(30)));
    bool suspected_first = false;
    for (auto& [observer, e] : c.events)
        suspected_first |= e.name == "c" && e.current == MemberState::suspect;
    REQUIRE(suspected_first);
}

TEST_CASE(
    "with member_rtts a node keeps each member's last direct round trip, until it is reaped") {
    Cluster c;
    c.config.member_rtts = true;
    c.config.dead_retain = seconds(20);
    c.latency = milliseconds(3);  // each way
    c.add("a");
    c.add("b", {"a"});
    c.add("c", {"a"});
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    REQUIRE(c.run_until_true([&] { return c["a"].round_trip("b") && c["a"].round_trip("c"); },
                             seconds(10)));
    REQUIRE(*c["a"].round_trip("b") == milliseconds(6));
    REQUIRE_FALSE(c["a"].round_trip("a"));  // nobody probes itself
    c.crash("c");
    REQUIRE(c.run_until_true([&] { return c["a"].members().find("c") == nullptr; }, seconds(120)));
    REQUIRE_FALSE(c["a"].round_trip("c"));

    Cluster off;  // the simulator's way: no record kept
    off.add("a");
    off.add("b", {"a"});
    REQUIRE(off.run_until_true([&] { return everyone_sees_everyone(off); }, seconds(10)));
    off.run_for(seconds(5));
    REQUIRE_FALSE(off["a"].round_trip("b"));
}

TEST_CASE("a member that leaves is seen as left, not dead") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    c["d"].leave(c.now);
    c.drain("d");
    REQUIRE_FALSE(c["d"].leave_spread());
    REQUIRE(c.run_until_true([&] { return c["d"].leave_spread(); }, seconds(10)));
    REQUIRE(c.all_see("d", MemberState::left));
    c.crash("d");
    c.run_for(seconds(20));
    REQUIRE(c.all_see("d", MemberState::left));
}

TEST_CASE("force-leave turns a dead member left everywhere, and with prune forgets it at once") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    // Only a failed member can be forced out.
    REQUIRE(c["a"].force_leave(Name("c"), false, c.now).error().code == "not_failed");
    REQUIRE(c["a"].force_leave(Name("a"), false, c.now).error().code == "self");
    REQUIRE(c["a"].force_leave(Name("zz"), false, c.now).error().code == "unknown_member");
    c.crash("c");
    c.crash("d");
    REQUIRE(c.run_until_true([&] { return c.all_see("c", MemberState::dead); }, seconds(30)));
    REQUIRE(c.run_until_true([&] { return c.all_see("d", MemberState::dead); }, seconds(30)));

    REQUIRE(c["a"].force_leave(Name("c"), false, c.now).value() == MemberState::dead);
    REQUIRE(c.run_until_true([&] { return c.all_see("c", MemberState::left); }, seconds(10)));

    REQUIRE(c["b"].force_leave(Name("d"), true, c.now).value() == MemberState::dead);
    const auto nobody_knows = [&](const char* gone) {
        return [&c, gone] {
            for (const char* n : {"a", "b", "e"}) {
                if (c[n].members().find(Name(gone)) != nullptr) return false;
            }
            return true;
        };
    };
    REQUIRE(c.run_until_true(nobody_knows("d"), seconds(10)));
    // Well before left_retain, and d stays out: its old gossip meets tombstones.
    c.run_for(seconds(30));
    REQUIRE(nobody_knows("d")());
    // A left member may be pruned too.
    REQUIRE(c["e"].force_leave(Name("c"), true, c.now).value() == MemberState::left);
    REQUIRE(c.run_until_true(nobody_knows("c"), seconds(10)));
}

TEST_CASE("a suspected member refutes with a higher incarnation and stays alive") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    Packet p;
    p.cluster = c.config.cluster;
    p.sender = "e";
    p.sender_addr = Address{"e"};
    p.updates.push_back(SuspectUpdate{"b", Incarnation{0}, "e"});
    c["a"].handle_packet(p, c.now);
    c.drain("a");
    REQUIRE(c.view("a", "b") == MemberState::suspect);
    REQUIRE(
        c.run_until_true([&] { return c["b"].self().incarnation == Incarnation{1}; }, seconds(5)));
    REQUIRE(c.run_until_true([&] { return c.all_see("b", MemberState::alive); }, seconds(5)));
    c.run_for(seconds(30));
    for (auto& [observer, e] : c.events)
        REQUIRE_FALSE((e.name == "b" && e.current == MemberState::dead));
}

TEST_CASE("a restarted member rejoins with a higher incarnation than its previous life") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    c.crash("e");
    REQUIRE(c.run_until_true([&] { return c.all_see("e", MemberState::dead); }, seconds(30)));
    c.add("e", {"a"}, 0);
    REQUIRE(c.run_until_true([&] { return c.all_see("e", MemberState::alive); }, seconds(10)));
    REQUIRE(c["e"].self().incarnation > Incarnation{0});
    REQUIRE(c["a"].members().find("e")->incarnation == c["e"].self().incarnation);
}

TEST_CASE("a member whose direct link is cut stays alive through indirect probes") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    c.drop = [](const std::string& from, const std::string& to) {
        return (from == "a" && to == "b") || (from == "b" && to == "a");
    };
    c.run_for(seconds(20));
    REQUIRE(c["a"].stats().ping_reqs_sent > 0);
    REQUIRE(c.view("a", "b") == MemberState::alive);
    for (auto& [observer, e] : c.events)
        REQUIRE_FALSE((e.name == "b" && e.current == MemberState::dead));
}

TEST_CASE("relays that cannot reach a crashed target answer with nacks (Lifeguard §4.3)") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    c.crash("c");
    c.run_for(seconds(5));
    uint64_t nacks = 0;
    for (auto& [name, n] : c.nodes)
        nacks += n->stats().nacks;
    REQUIRE(nacks > 0);
}

namespace {
// Six nodes joined through a, then split into {a, b, c} | {d, e, f}.
void split_six(Cluster& c) {
    c.config.reconnect_interval = seconds(2);
    c.add("a");
    for (const char* n : {"b", "c", "d", "e", "f"})
        c.add(n, {"a"});
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    c.drop = [](const std::string& from, const std::string& to) {
        return (from < "d") != (to < "d");
    };
}
}  // namespace

TEST_CASE("the two halves of a healed partition merge without a restart") {
    Cluster c;
    split_six(c);
    REQUIRE(c.run_until_true(
        [&] {
            return c.view("a", "e") == MemberState::dead && c.view("e", "a") == MemberState::dead;
        },
        seconds(30)));
    c.drop = [](auto&, auto&) { return false; };
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(30)));
}

TEST_CASE("halves that forgot each other meet again through a seed that is no live member") {
    Cluster c;
    c.config.dead_retain = seconds(5);
    split_six(c);
    // Both sides reap the other: no dead row is left to call back.
    REQUIRE(c.run_until_true(
        [&] {
            for (auto& [name, n] : c.nodes) {
                if (n->members().size() != 3) return false;
            }
            return true;
        },
        seconds(60)));
    // Until the heal, the calls to a from d, e and f go unanswered.
    const auto calls = [&] {
        uint64_t n = 0;
        for (const char* name : {"d", "e", "f"})
            n += c.nodes.at(name)->stats().seed_rejoins;
        return n;
    };
    REQUIRE(calls() > 0);
    c.drop = [](auto&, auto&) { return false; };
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(30)));
    // Once a is a live member again, nobody calls it as a seed any more.
    c.run_for(seconds(5));
    const uint64_t settled = calls();
    c.run_for(seconds(20));
    CHECK(calls() == settled);
}

TEST_CASE("a ping meant for another member is not answered") {
    Solo s(Config::local());
    s.node.handle_packet(s.from("b", Ping{7, "zed"}), s.now);
    REQUIRE(s.sent().empty());
    s.node.handle_packet(s.from("b", Ping{8, "a"}), s.now);
    auto out = s.sent();
    REQUIRE(out.size() == 1);
    REQUIRE(std::get<Ack>(out[0].packet.body).seq == 8);
    REQUIRE(out[0].to == Address{"b"});
}

TEST_CASE(
    "a suspicion heard in a push-pull is verified by probing, never counted as a confirmation") {
    Solo s(Config::local());
    s.node.handle_packet(s.from("b", std::monostate{}, {SuspectUpdate{"c", Incarnation{0}, "b"}}),
                         s.now);
    REQUIRE(s.state("c") == MemberState::suspect);
    PushPull hearsay;
    hearsay.cluster = s.config.cluster;
    hearsay.sender = "d";
    hearsay.members.push_back(
        MemberSnapshot{"c", Address{"c"}, "", Incarnation{0}, MemberState::suspect, {}, 0, 1});
    hearsay.members.push_back(
        MemberSnapshot{"e", Address{"e"}, "", Incarnation{0}, MemberState::dead, {}, 0, 1});
    (void)s.node.handle_push_pull(hearsay, s.now);
    REQUIRE(s.node.stats().confirmations == 0);
    REQUIRE(s.state("e") == MemberState::alive);  // hearsay alone changes nothing
    // ...but the next probe goes to a member the hearsay named, out of turn.
    const uint64_t early = s.node.stats().probes_early;
    s.sent();
    s.advance_to(s.now + s.config.probe_interval * 2);
    REQUIRE(s.node.stats().probes_early > early);
}

TEST_CASE("an unconfirmed suspicion gets a last-chance probe before the verdict") {
    Solo s(Config::local());
    s.node.handle_packet(s.from("b", std::monostate{}, {SuspectUpdate{"c", Incarnation{0}, "b"}}),
                         s.now);
    // Steps until the suspicion's deadline passes and the node sends its last check: a ping to
    // c together with ping-reqs of the same sequence number (a regular probe sends its
    // ping-reqs only after the probe timeout).
    const auto await_check = [&]() -> std::optional<Packet> {
        for (int step = 0; step < 10000; ++step) {
            s.advance_to(s.now + milliseconds(10));
            auto out = s.sent();
            for (auto& p : out) {
                const auto* ping = std::get_if<Ping>(&p.packet.body);
                if (ping == nullptr || p.to != Address{"c"}) continue;
                for (auto& q : out) {
                    const auto* req = std::get_if<PingReq>(&q.packet.body);
                    if (req != nullptr && req->seq == ping->seq) return p.packet;
                }
            }
            if (s.state("c") != MemberState::suspect) return std::nullopt;
        }
        return std::nullopt;
    };
    auto check = await_check();
    REQUIRE(check.has_value());
    REQUIRE(s.state("c") == MemberState::suspect);
    REQUIRE(carries(*check, "c", 0));  // the suspicion rides first, so c can refute
    // c answers without a refutation: proof of life restarts the suspicion.
    s.node.handle_packet(s.from("c", Ack{std::get<Ping>(check->body).seq}), s.now);
    s.advance_to(s.now + s.config.probe_interval * 2);
    REQUIRE(s.state("c") == MemberState::suspect);
    // The next expiry checks again; this time c stays silent and is declared dead.
    check = await_check();
    REQUIRE(check.has_value());
    REQUIRE(s.state("c") == MemberState::suspect);
    s.advance_to(s.now + s.config.probe_interval);
    REQUIRE(s.state("c") == MemberState::dead);
}

TEST_CASE("a suspicion confirmed by enough members is declared at the minimum timeout") {
    Solo s(Config::local());
    s.node.handle_packet(s.from("b", std::monostate{}, {SuspectUpdate{"c", Incarnation{0}, "b"}}),
                         s.now);
    for (const char* who : {"d", "e", "f"}) {
        s.node.handle_packet(
            s.from(who, std::monostate{}, {SuspectUpdate{"c", Incarnation{0}, who}}), s.now);
    }
    REQUIRE(s.node.stats().confirmations == 3);
    const Duration min = suspicion_min(s.config, s.node.members().live());
    s.advance_to(s.now + min);
    REQUIRE(s.state("c") == MemberState::dead);
}

TEST_CASE("without Lifeguard a suspicion lasts the minimum, confirmed or not") {
    Config c = Config::local();
    c.lifeguard = false;
    Solo s(c);
    s.node.handle_packet(s.from("b", std::monostate{}, {SuspectUpdate{"c", Incarnation{0}, "b"}}),
                         s.now);
    const Duration min = suspicion_min(s.config, s.node.members().live());
    s.advance_to(s.now + min - milliseconds(1));
    REQUIRE(s.state("c") == MemberState::suspect);
    s.advance_to(s.now + milliseconds(1));
    REQUIRE(s.state("c") == MemberState::dead);
}

TEST_CASE("a node told it is suspected refutes, and answers a stale accusation with its alive") {
    Solo s(Config::local());
    s.node.handle_packet(s.from("b", Ping{1, "a"}, {SuspectUpdate{"a", Incarnation{0}, "b"}}),
                         s.now);
    REQUIRE(s.node.self().incarnation == Incarnation{1});
    REQUIRE(s.node.stats().refutations == 1);
    auto out = s.sent();
    REQUIRE(out.size() == 1);
    REQUIRE(carries(out[0].packet, "a", 0));
    // Someone who missed the refutation probes with the old suspicion: no new bump, but the
    // ack carries the current alive first.
    s.node.handle_packet(s.from("d", Ping{2, "a"}, {SuspectUpdate{"a", Incarnation{0}, "d"}}),
                         s.now);
    REQUIRE(s.node.self().incarnation == Incarnation{1});
    out = s.sent();
    REQUIRE(out.size() == 1);
    const auto& first = std::get<AliveUpdate>(out[0].packet.updates.at(0));
    REQUIRE(first.name == "a");
    REQUIRE(first.incarnation == Incarnation{1});
}

TEST_CASE("a probe of a suspect carries the suspicion (buddy system, Lifeguard §4.3)") {
    Solo s(Config::local(), {"b"});
    s.node.handle_packet(s.from("c", std::monostate{}, {SuspectUpdate{"b", Incarnation{0}, "c"}}),
                         s.now);
    s.sent();
    s.advance_to(s.now + s.config.probe_interval * 2);
    bool buddy = false;
    for (auto& p : s.sent()) {
        if (std::holds_alternative<Ping>(p.packet.body) && p.to == Address{"b"})
            buddy |= carries(p.packet, "b", 0);
    }
    REQUIRE(buddy);
}

TEST_CASE("packets stay within packet_bytes_max however much is queued") {
    Solo s(Config::local());
    for (int i = 0; i < 500; ++i) {
        const std::string n = "member-with-a-long-name-" + std::to_string(i);
        s.node.handle_packet(
            s.from("b", std::monostate{},
                   {AliveUpdate{
                       n, Address{n + ":7900"}, "", Incarnation{1}, {{"role", "worker"}}, 1}}),
            s.now);
    }
    s.advance_to(s.now + seconds(2));
    auto out = s.sent();
    REQUIRE_FALSE(out.empty());
    for (auto& p : out) {
        size_t bytes = encoded_size_bound(p.packet);
        for (auto& u : p.packet.updates)
            bytes += encoded_size_bound(u);
        REQUIRE(bytes <= s.config.packet_bytes_max);
    }
}

TEST_CASE("a node leaving stops probing and announces left") {
    Solo s(Config::local());
    s.node.leave(s.now);
    REQUIRE(s.node.self().state == MemberState::left);
    auto out = s.sent();
    REQUIRE_FALSE(out.empty());
    REQUIRE(std::holds_alternative<DeadUpdate>(out[0].packet.updates.at(0)));
    REQUIRE(std::get<DeadUpdate>(out[0].packet.updates.at(0)).left);
    const uint64_t probes = s.node.stats().probes;
    s.advance_to(s.now + seconds(5));
    REQUIRE(s.node.stats().probes == probes);
}

TEST_CASE("a dead member is reaped after dead_retain and its tombstone keeps stale gossip out") {
    Config c = Config::local();
    c.dead_retain = seconds(10);
    c.tombstone_ttl = seconds(60);
    Solo s(c);
    s.node.handle_packet(
        s.from("b", std::monostate{}, {DeadUpdate{"c", Incarnation{2}, "b", false}}), s.now);
    REQUIRE(s.state("c") == MemberState::dead);
    s.advance_to(s.now + seconds(16));
    REQUIRE(s.node.members().find("c") == nullptr);
    REQUIRE(s.node.members().tombstone("c", s.now) == Incarnation{2});
    // An old rumour of c alive at the incarnation it died with does not bring it back...
    s.node.handle_packet(
        s.from("d", std::monostate{}, {AliveUpdate{"c", Address{"c"}, "", Incarnation{2}, {}, 1}}),
        s.now);
    REQUIRE(s.node.members().find("c") == nullptr);
    // ...but c itself, restarted with a higher incarnation, does.
    s.node.handle_packet(
        s.from("c", std::monostate{}, {AliveUpdate{"c", Address{"c"}, "", Incarnation{3}, {}, 1}}),
        s.now);
    REQUIRE(s.state("c") == MemberState::alive);
}

TEST_CASE("a member whose phi crosses phi_suspect is probed out of turn") {
    Config c = Config::local();
    Solo s(c, {"b", "c", "d", "e", "f", "g", "h", "i"});
    // Everyone answers our probes (so our own health stays good), except b once it is down.
    bool b_up = true;
    const auto step = [&](Duration d) {
        s.advance_to(s.now + d);
        for (auto& p : s.sent()) {
            const auto* ping = std::get_if<Ping>(&p.packet.body);
            if (ping != nullptr && (b_up || p.to != Address{"b"})) {
                s.node.handle_packet(s.from(p.to.value.str(), Ack{ping->seq}), s.now);
            }
        }
    };
    // b talks to us every 200 ms: phi learns its rhythm.
    for (int i = 0; i < 30; ++i) {
        s.node.handle_packet(s.from("b", std::monostate{}), s.now);
        step(milliseconds(200));
    }
    REQUIRE(s.state("b") == MemberState::alive);
    REQUIRE(s.node.phi("b", s.now) < 1);
    REQUIRE(s.node.health_score() == 0);
    const uint64_t early = s.node.stats().probes_early;
    // Then it falls silent: phi rises within about a second, well before b's next turn in a
    // round of eight, and b is probed out of turn.
    b_up = false;
    for (int i = 0; i < 10; ++i)
        step(milliseconds(200));
    REQUIRE(s.node.phi("b", s.now) > c.phi_suspect);
    REQUIRE(s.node.stats().probes_early > early);
}

TEST_CASE("a member's tags are kept, replaced by newer ones and carried in push-pull") {
    Solo s(Config::local());
    const Tags tags{{"role", "db"}, {"zone", "b"}};
    s.node.handle_packet(s.from("x", std::monostate{},
                                {AliveUpdate{"x", Address{"x"}, "", Incarnation{1}, tags, 1}}),
                         s.now);
    REQUIRE(s.node.members().find("x")->tags() == tags);
    bool carried = false;
    for (const auto& m : s.node.snapshot(false, s.now).members)
        carried |= m.name == "x" && m.tags == tags;
    REQUIRE(carried);
    s.node.handle_packet(
        s.from("x", std::monostate{}, {AliveUpdate{"x", Address{"x"}, "", Incarnation{2}, {}, 1}}),
        s.now);
    REQUIRE(s.node.members().find("x")->tags().empty());
}

TEST_CASE("a push-pull carries tombstones, so a member restarted after reaping can outrank them") {
    Config c = Config::local();
    c.dead_retain = seconds(5);
    c.tombstone_ttl = seconds(600);
    Solo s(c);
    s.node.handle_packet(
        s.from("b", std::monostate{}, {DeadUpdate{"c", Incarnation{5}, "b", false}}), s.now);
    s.advance_to(s.now + seconds(12));
    REQUIRE(s.node.members().find("c") == nullptr);
    // c restarts at incarnation 0 and joins through us: our answer tells it it died at 5.
    PushPull join;
    join.cluster = c.cluster;
    join.sender = "c";
    join.join = true;
    join.members.push_back(
        MemberSnapshot{"c", Address{"c"}, "", Incarnation{0}, MemberState::alive, {}, 0, 1});
    const PushPull reply = s.node.handle_push_pull(join, s.now);
    REQUIRE(s.node.members().find("c") == nullptr);  // its alive at 0 does not beat the tombstone
    bool told = false;
    for (const auto& m : reply.members)
        told |= m.name == "c" && m.state == MemberState::dead && m.incarnation == Incarnation{5};
    REQUIRE(told);
    // A node reading that reply about itself refutes above it.
    Node restarted(c, Identity{"c", Address{"c"}, "", {}, Incarnation{0}}, 3, s.now);
    restarted.push_pull_done(Address{"a"}, reply, s.now);
    REQUIRE(restarted.self().incarnation == Incarnation{6});
}

TEST_CASE("a node leaving with nobody left to tell has spread its leave at once") {
    Config c = Config::local();
    Node alone(c, Identity{"a", Address{"a"}, "", {}, Incarnation{0}}, 1, Time{});
    alone.leave(Time{});
    REQUIRE(alone.leave_spread());
}

TEST_CASE(
    "a probe whose relays all answer with nacks is concluded at once, not at the period's end") {
    Solo s(Config::lan());
    // Step to the first probe and on past its timeout, when the ping-reqs go out.
    std::optional<Ping> ping;
    std::vector<OutPacket> reqs;
    for (int step = 0; step < 1000 && reqs.empty(); ++step) {
        s.advance_to(s.now + milliseconds(10));
        for (auto& p : s.sent()) {
            if (const auto* pg = std::get_if<Ping>(&p.packet.body)) ping = *pg;
            if (std::holds_alternative<PingReq>(p.packet.body)) reqs.push_back(p);
        }
    }
    REQUIRE(ping.has_value());
    REQUIRE(reqs.size() == s.config.indirect_checks);
    const std::string target = ping->target.str();
    const Time asked = s.now;
    // All but one relay nack: still waiting.
    for (size_t i = 0; i + 1 < reqs.size(); ++i)
        s.node.handle_packet(s.from(reqs[i].to.value.str(), Nack{ping->seq}), s.now);
    REQUIRE(s.state(target) == MemberState::alive);
    // The last nack: every path has failed, and the target is suspected now, well before the
    // probe interval would have ended.
    s.node.handle_packet(s.from(reqs.back().to.value.str(), Nack{ping->seq}), s.now);
    REQUIRE(s.state(target) == MemberState::suspect);
    REQUIRE(s.now - asked < s.config.probe_interval / 2);
    REQUIRE(s.node.stats().suspicions == 1);
}

TEST_CASE(
    "a changed load reaches every member within one gossip interval, an unchanged one costs "
    "nothing") {
    Cluster c = five();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    c.run_for(seconds(2));  // let the join's gossip settle
    const uint64_t reports = c["a"].stats().load_reports;
    c["a"].set_load(750);
    const Time changed = c.now;
    const auto all_know = [&] {
        for (auto& [name, n] : c.nodes) {
            if (name == "a") continue;
            const Member* m = n->members().find("a");
            if (m == nullptr || m->load_milli != 750 || m->load_at < changed) return false;
        }
        return true;
    };
    REQUIRE(c.run_until_true(all_know, c.config.gossip_interval + c.latency, milliseconds(1)));
    REQUIRE(c["a"].stats().load_reports == reports + 1);
    c.run_for(seconds(1));
    REQUIRE(c["a"].stats().load_reports == reports + 1);  // no change, no report
}

namespace {

// A datagram from a stranger, carrying `updates`, handed to `to` as if it came off the wire.
void forge(Cluster& c, const std::string& to, std::vector<Update> updates) {
    Packet p;
    p.cluster = c.config.cluster;
    p.sender = "mallory";
    p.sender_addr = Address{"mallory"};
    p.updates = std::move(updates);
    c[to].handle_packet(p, c.now);
    c.drain(to);
}

// Five members whose incarnations start from the wall clock's seconds, as the daemon's do.
Cluster five_daemons() {
    Cluster c;
    const uint64_t started = 1'790'000'000;
    c.add("a", {}, started);
    uint64_t i = 1;
    for (const char* n : {"b", "c", "d", "e"})
        c.add(n, {"a"}, started + i++);
    return c;
}

}  // namespace

TEST_CASE("incarnations never wrap: the next of the largest is itself") {
    REQUIRE(Incarnation{41}.next() == Incarnation{42});
    REQUIRE(Incarnation{uint64_t{UINT32_MAX}}.next() == Incarnation{uint64_t{1} << 32});
    REQUIRE(Incarnation{UINT64_MAX}.next() == Incarnation{UINT64_MAX});
}

TEST_CASE("a forged Dead(2^32-1, left) about a live member is outranked: alive in every view") {
    Cluster c = five_daemons();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    const Incarnation forged{UINT32_MAX};
    forge(c, "b", {DeadUpdate{"c", forged, "mallory", true}});
    REQUIRE(c.view("b", "c") == MemberState::left);
    // c hears of it (gossip, or the verdict in an ack) and refutes above 2^32-1: with 32-bit
    // incarnations that number wrapped to 0 and c stayed left for good.
    REQUIRE(
        c.run_until_true([&] { return everyone_sees_everyone(c); }, c.config.probe_interval * 5));
    REQUIRE(c["c"].self().incarnation > forged);
    for (auto& [name, n] : c.nodes)
        REQUIRE(n->members().find("c")->incarnation == c["c"].self().incarnation);
}

TEST_CASE("a claim far ahead of anything known of a member is refused and counted") {
    Cluster c = five_daemons();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    const auto far = [&](const char* member) {
        return Incarnation{c["b"].members().find(member)->incarnation.value + kIncarnationLeadMax +
                           1};
    };
    const uint64_t refused = c["b"].stats().claims_refused;
    forge(c, "b",
          {DeadUpdate{"c", far("c"), "mallory", true}, SuspectUpdate{"d", far("d"), "mallory"},
           AliveUpdate{"e", Address{"e"}, "", Incarnation{UINT64_MAX}, {}, 1},
           DeadUpdate{"b", Incarnation{UINT64_MAX}, "mallory", false}});
    REQUIRE(c["b"].stats().claims_refused == refused + 4);
    REQUIRE(c.view("b", "c") == MemberState::alive);
    REQUIRE(c.view("b", "d") == MemberState::alive);
    REQUIRE(c["b"].members().find("e")->incarnation < Incarnation{UINT64_MAX});
    // b did not refute a claim about itself that no genuine member could make.
    REQUIRE(c["b"].self().incarnation.value < 1ull << 32);
    // A member never heard of may start anywhere a restart could take it, and no further.
    forge(c, "b",
          {AliveUpdate{"z", Address{"z"}, "", Incarnation{kIncarnationLeadMax}, {}, 1},
           AliveUpdate{"y", Address{"y"}, "", Incarnation{kIncarnationLeadMax + 1}, {}, 1}});
    REQUIRE(c.view("b", "z") == MemberState::alive);
    REQUIRE_FALSE(c.view("b", "y").has_value());
}

TEST_CASE("a member every view holds left by a forged verdict learns of it and refutes") {
    Cluster c = five_daemons();
    REQUIRE(c.run_until_true([&] { return everyone_sees_everyone(c); }, seconds(10)));
    // The verdict at c's own incarnation reaches everyone while c is cut off. Left members are
    // neither probed nor gossiped to, so once the gossip has run its course only what c itself
    // sends can bring it the news.
    const Incarnation now = c["c"].self().incarnation;
    c.drop = [](const std::string& from, const std::string& to) {
        return from == "c" || to == "c";
    };
    for (const char* n : {"a", "b", "d", "e"})
        forge(c, n, {DeadUpdate{"c", now, "mallory", true}});
    REQUIRE(c.run_until_true([&] { return c.all_see("c", MemberState::left); }, seconds(1)));
    c.run_for(seconds(2));  // the gossip of the verdict has run its course meanwhile
    REQUIRE(c.all_see("c", MemberState::left));
    c.drop = [](const std::string&, const std::string&) { return false; };
    REQUIRE(
        c.run_until_true([&] { return everyone_sees_everyone(c); }, c.config.probe_interval * 4));
    REQUIRE(c["c"].self().incarnation > now);
}

TEST_CASE("a probe from a member held gone is answered with the verdict, so it can refute") {
    Solo s(Config::local());
    s.node.handle_packet(
        s.from("c", std::monostate{}, {DeadUpdate{"b", Incarnation{0}, "b", true}}), s.now);
    REQUIRE(s.state("b") == MemberState::left);
    s.sent();
    s.node.handle_packet(s.from("b", Ping{5, "a"}), s.now);
    auto out = s.sent();
    REQUIRE(out.size() == 1);
    REQUIRE(std::holds_alternative<Ack>(out[0].packet.body));
    REQUIRE(carries(out[0].packet, "b", 0));
    const auto& verdict = std::get<DeadUpdate>(out[0].packet.updates[0]);
    REQUIRE(verdict.left);
    REQUIRE(verdict.from == "a");
    // A member held alive gets a plain ack.
    s.node.handle_packet(s.from("c", Ping{6, "a"}), s.now);
    out = s.sent();
    REQUIRE(out.size() == 1);
    REQUIRE_FALSE(carries(out[0].packet, "c"));
}

TEST_CASE("a full member table makes way for a new member with what is gone, never what lives") {
    Config c = Config::local();
    c.members_max = 4;  // a, and three more
    Solo s(c, {"b", "c", "d"});
    REQUIRE(s.node.members().size() == 4);
    // Full of live members: a fifth is refused and counted.
    const auto alive = [](const char* n) {
        return AliveUpdate{n, Address{n}, "", Incarnation{1}, {}, 1};
    };
    s.node.handle_packet(s.from("b", std::monostate{}, {alive("x")}), s.now);
    REQUIRE(s.node.members().find("x") == nullptr);
    REQUIRE(s.node.stats().members_refused == 1);
    // c dies: the next newcomer takes its place, and c is reaped (its event says removed).
    s.node.handle_packet(s.from("b", std::monostate{}, {DeadUpdate{"c", Incarnation{0}, "b"}}),
                         s.now);
    REQUIRE(s.state("c") == MemberState::dead);
    s.node.outbox().clear();
    s.node.handle_packet(s.from("b", std::monostate{}, {alive("x")}), s.now);
    REQUIRE(s.node.members().find("x") != nullptr);
    REQUIRE(s.node.members().find("c") == nullptr);
    REQUIRE(s.node.members().size() == 4);
    bool reaped = false;
    for (const auto& e : s.node.outbox().events)
        reaped |= e.name == "c" && !e.current.has_value();
    REQUIRE(reaped);
    REQUIRE(s.state("b") == MemberState::alive);
    REQUIRE(s.state("d") == MemberState::alive);
}

TEST_CASE("another process announcing this node's name at another address is reported") {
    Solo s(Config::local());
    const auto about_me = [&](const char* addr, uint64_t incarnation) {
        s.node.outbox().clear();
        s.node.handle_packet(
            s.from("b", std::monostate{},
                   {AliveUpdate{
                       "a", Address{addr}, "", Incarnation{incarnation}, {}, kProtocolVersion}}),
            s.now);
        return s.node.outbox().conflicts;
    };
    // This node at its own address (an echo of its own gossip): nothing to say.
    REQUIRE(about_me("a", 0).empty());
    // Another address: a previous life, or another process. The name is claimed above it.
    auto c = about_me("elsewhere", 0);
    REQUIRE(c.size() == 1);
    REQUIRE(c[0].addr == Address{"elsewhere"});
    REQUIRE_FALSE(c[0].live);
    REQUIRE_FALSE(c[0].newcomer);  // it joined before it heard of the other
    REQUIRE(s.node.self().incarnation > Incarnation{0});
    // The same incarnation again: a stale entry, gossiped on; not live.
    REQUIRE_FALSE(about_me("elsewhere", 0).at(0).live);
    // Raised there: a live process answering our claim.
    c = about_me("elsewhere", 7);
    REQUIRE(c.size() == 1);
    REQUIRE(c[0].live);
    REQUIRE(s.node.self().incarnation > Incarnation{7});
    REQUIRE(s.node.self().addr == Address{"a"});
    REQUIRE(s.node.stats().name_conflicts == 3);
}

TEST_CASE("a node that meets its name alive elsewhere as it joins is the newcomer") {
    Config config = Config::local();
    Node n(config, Identity{"a", Address{"a2"}, "", {}, Incarnation{5}}, 9, Time{});
    n.join({Address{"b"}}, Time{});
    PushPull pp;
    pp.cluster = config.cluster;
    pp.sender = "b";
    pp.members = {
        MemberSnapshot{"b", Address{"b"}, "", Incarnation{0}, MemberState::alive, {}, 0, 1},
        MemberSnapshot{"a", Address{"a1"}, "", Incarnation{5}, MemberState::alive, {}, 0, 1}};
    n.outbox().clear();
    n.push_pull_done(Address{"b"}, pp, Time{});
    REQUIRE(n.outbox().conflicts.size() == 1);
    REQUIRE(n.outbox().conflicts[0].newcomer);
    REQUIRE(n.self().incarnation > Incarnation{5});  // it claims the name at its own address
}

TEST_CASE("a joiner whose name is alive at another address hears of it, whatever its incarnation") {
    Config config = Config::local();
    Node seed(config, Identity{"b", Address{"b"}, "", {}, Incarnation{1}}, 9, Time{});
    const auto from = [&](const char* addr, uint64_t incarnation) {
        PushPull pp;
        pp.cluster = config.cluster;
        pp.sender = "a";
        pp.members = {MemberSnapshot{
            "a", Address{addr}, "", Incarnation{incarnation}, MemberState::alive, {}, 0, 1}};
        return pp;
    };
    seed.handle_push_pull(from("a1", 5), Time{});  // the first process with the name
    // A second one, started a second later: its word wins at the seed, but its answer says
    // where the name was.
    const PushPull reply = seed.handle_push_pull(from("a2", 6), Time{});
    REQUIRE(seed.members().find(Name("a"))->addr == Address{"a2"});
    Node joiner(config, Identity{"a", Address{"a2"}, "", {}, Incarnation{6}}, 9, Time{});
    joiner.join({Address{"b"}}, Time{});
    joiner.outbox().clear();
    joiner.push_pull_done(Address{"b"}, reply, Time{});
    REQUIRE(joiner.outbox().conflicts.size() == 1);
    REQUIRE(joiner.outbox().conflicts[0].addr == Address{"a1"});
    REQUIRE(joiner.outbox().conflicts[0].newcomer);
    // Its own address again: nothing to report.
    const PushPull again = seed.handle_push_pull(from("a2", 6), Time{});
    joiner.outbox().clear();
    joiner.push_pull_done(Address{"b"}, again, Time{});
    REQUIRE(joiner.outbox().conflicts.empty());
}

TEST_CASE("a probe from a name held alive at another address is answered with that entry") {
    Solo s(Config::local());
    Packet ping = s.from("b", Ping{7, "a"});
    ping.sender_addr = Address{"b-elsewhere"};  // a second process named b
    s.sent();
    s.node.handle_packet(ping, s.now);
    auto out = s.sent();
    REQUIRE(out.size() == 1);
    REQUIRE(out[0].to == Address{"b-elsewhere"});
    REQUIRE(carries(out[0].packet, "b", 0));
    REQUIRE(std::get<AliveUpdate>(out[0].packet.updates[0]).addr == Address{"b"});
}
