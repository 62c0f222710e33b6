// Agents on loopback in one process and one loop: the real sockets, codec and core together.
// Tests wait on conditions with generous deadlines, never on fixed sleeps.
#include "daemon/agent.hpp"

#include <catch2/catch.hpp>

#include "net/black_hole.hpp"
#include "net/loop.hpp"
#include "net/seal.hpp"

using namespace chorus;
using namespace chorus::daemon;
using chorus::test::TestLoop;

namespace {

// Options for an agent on loopback with the local profile and an ephemeral port.
AgentOptions local(const std::string& name, std::vector<std::string> seeds = {}) {
    AgentOptions o;
    o.config = Config::local();
    o.identity.name = name;
    o.bind = net::Endpoint::parse("127.0.0.1:0").value();
    o.seeds = std::move(seeds);
    o.retry_join_min = milliseconds(100);
    return o;
}

struct Cluster {
    TestLoop loop;
    std::map<std::string, std::unique_ptr<Agent>> agents;
    std::string seed_addr;

    Agent& start(const std::string& name, bool with_seed = true) {
        auto a = Agent::start(loop.get(), local(name, with_seed && !seed_addr.empty()
                                                          ? std::vector<std::string>{seed_addr}
                                                          : std::vector<std::string>{}));
        REQUIRE(a.ok());
        if (seed_addr.empty()) seed_addr = (*a)->node().self().addr.value.str();
        Agent& ref = **a;
        agents[name] = std::move(*a);
        return ref;
    }

    std::optional<MemberState> view(const std::string& observer, const std::string& member) {
        const Member* m = agents.at(observer)->node().members().find(member);
        return m == nullptr ? std::nullopt : std::optional(m->state);
    }
    bool all_see(const std::string& member, MemberState s) {
        for (auto& [name, a] : agents) {
            if (name != member && view(name, member) != s) return false;
        }
        return true;
    }
    bool converged() {
        for (auto& [name, a] : agents) {
            if (!all_see(name, MemberState::alive)) return false;
        }
        return true;
    }
};

}  // namespace

TEST_CASE("agents on loopback join through a seed and see each other alive") {
    Cluster c;
    c.start("a");
    c.start("b");
    c.start("c");
    REQUIRE(c.loop.run_until([&] { return c.converged(); }, 10'000));
    // Probes and acks flow over UDP once joined (the join itself is a TCP push-pull).
    REQUIRE(c.loop.run_until(
        [&] {
            for (auto& [name, a] : c.agents) {
                if (a->udp().stats().received == 0 || a->node().stats().acks == 0) return false;
            }
            return true;
        },
        10'000));
    for (auto& [name, a] : c.agents)
        REQUIRE(a->stats().rejected.total() == 0);
}

TEST_CASE("a crashed agent is declared dead by the others") {
    Cluster c;
    c.start("a");
    c.start("b");
    c.start("c");
    c.start("d");
    REQUIRE(c.loop.run_until([&] { return c.converged(); }, 10'000));
    c.agents.erase("c");  // gone without a word, as with kill -9
    REQUIRE(c.loop.run_until([&] { return c.all_see("c", MemberState::dead); }, 20'000));
}

TEST_CASE("an agent that leaves is seen as left, and its leave completes") {
    Cluster c;
    c.start("a");
    c.start("b");
    c.start("c");
    REQUIRE(c.loop.run_until([&] { return c.converged(); }, 10'000));
    bool done = false;
    c.agents.at("b")->leave(seconds(5), [&] { done = true; });
    REQUIRE(c.loop.run_until([&] { return done; }, 10'000));
    REQUIRE(c.loop.run_until([&] { return c.all_see("b", MemberState::left); }, 5'000));
}

TEST_CASE("an agent whose seed is not up yet keeps retrying and joins when it comes") {
    Cluster c;
    // The seed's address, held by a host that does not answer yet: the port stays taken (no
    // other test's agent can bind it and be joined by mistake) until the seed starts on it.
    auto down = std::make_unique<test::BlackHole>();
    REQUIRE(down->ok());
    const std::string seed = down->addr();
    c.seed_addr = seed;
    c.start("b");
    REQUIRE(c.loop.run_until([&] { return c.agents.at("b")->stats().join_attempts >= 2; }, 10'000));
    REQUIRE_FALSE(c.agents.at("b")->node().joined());
    // The seed comes up on that address.
    down.reset();
    AgentOptions o = local("a");
    o.bind = net::Endpoint::parse(seed).value();
    auto a = Agent::start(c.loop.get(), std::move(o));
    REQUIRE(a.ok());
    c.agents["a"] = std::move(*a);
    REQUIRE(c.loop.run_until([&] { return c.converged(); }, 15'000));
}

TEST_CASE("garbage datagrams are counted, reported at a rate limit, and change nothing") {
    Cluster c;
    AgentOptions o = local("a");
    int reports = 0;
    uint64_t suppressed = 0;
    o.on_rejected = [&](const wire::DecodeFailure& f, uint64_t s) {
        REQUIRE(f.reason == wire::DecodeError::malformed);
        ++reports;
        suppressed += s;
    };
    auto started = Agent::start(c.loop.get(), std::move(o));
    REQUIRE(started.ok());
    Agent& a = **started;
    c.agents["a"] = std::move(*started);
    auto junk = net::UdpSocket::open(c.loop.get(), net::Endpoint::parse("127.0.0.1:0").value(),
                                     [](auto, auto&) {});
    REQUIRE(junk.ok());
    const std::vector<uint8_t> garbage(200, 0xAB);
    for (int i = 0; i < 10; ++i)
        (*junk)->send(a.bound(), garbage);
    REQUIRE(c.loop.run_until([&] { return a.stats().rejected.total() == 10; }, 5'000));
    // Ten arrive within milliseconds: reported once, not ten times (the rest are counted into
    // the next report). The bound is loose so a stalled machine cannot fail it.
    REQUIRE(reports >= 1);
    REQUIRE(reports < 10);
    REQUIRE(a.node().members().size() == 1);
    REQUIRE(a.node().self().state == MemberState::alive);
}

TEST_CASE("binding a wildcard address without --advertise advertises the host's own, and says so") {
    TestLoop loop;
    AgentOptions o = local("a");
    o.bind = net::Endpoint::parse("0.0.0.0:0").value();
    auto a = Agent::start(loop.get(), std::move(o));
    // What it picks depends on this host's interfaces; that it picks what pick_advertise
    // says (tested on its own in test_net) does not.
    const auto pick = net::pick_advertise(net::host_addresses(), false);
    if (!pick) {
        REQUIRE_FALSE(a.ok());
        REQUIRE_THAT(a.error().message, Catch::StartsWith("advertise: none given"));
        return;
    }
    REQUIRE(a.ok());
    const std::string addr = fmt::format("{}:{}", pick->ip, (*a)->bound().port());
    CHECK((*a)->node().self().addr.value == addr);
    REQUIRE((*a)->notes().size() == 1);
    CHECK_THAT((*a)->notes()[0], Catch::Contains("advertising " + addr));
}

TEST_CASE("a join that fails says why, seed by seed, and the last attempt gives up") {
    Cluster c;
    AgentOptions other = local("x");
    other.config.cluster = "another";
    auto x = Agent::start(c.loop.get(), std::move(other));
    REQUIRE(x.ok());
    // Port 1 on loopback: nobody listens, the dial is refused at once.
    AgentOptions o = local("b", {(*x)->bound().str(), "no-such-host.invalid:7900", "127.0.0.1:1"});
    o.retry_join_attempts = 2;
    o.retry_join_min = seconds(1);  // time enough for each seed to fail outright
    std::vector<std::pair<std::string, bool>> failed;
    o.on_join_failed = [&](uint32_t attempt, const std::string& why, bool last) {
        REQUIRE(attempt == failed.size() + 1);
        failed.emplace_back(why, last);
    };
    auto b = Agent::start(c.loop.get(), std::move(o));
    REQUIRE(b.ok());
    REQUIRE(c.loop.run_until([&] { return failed.size() == 2; }, 10'000));
    CHECK_FALSE(failed[0].second);
    CHECK(failed[1].second);
    for (const auto& [why, last] : failed) {
        INFO(why);
        CHECK_THAT(why, Catch::Contains((*x)->bound().str() +
                                        ": it closed the connection without answering (another "
                                        "--cluster"));
        CHECK_THAT(why, Catch::Contains("no-such-host.invalid:7900: cannot resolve it"));
        CHECK_THAT(why, Catch::Contains("127.0.0.1:1: connect"));
    }
    CHECK((*b)->join_trouble() == failed[1].first);
    CHECK((*b)->join_attempts() == 2);
    CHECK_FALSE((*b)->node().joined());
    // The other cluster's agent dropped the push-pulls and counted them.
    CHECK((*x)->stats().rejected.rejected[static_cast<size_t>(wire::DecodeError::wrong_cluster)] >=
          2);
}

TEST_CASE("an agent whose only seed is itself starts the cluster: nothing failed") {
    Cluster c;
    // A free port, learnt from an agent that then stops; the port is bound again once its
    // socket has closed.
    auto probe = Agent::start(c.loop.get(), local("p"));
    REQUIRE(probe.ok());
    const std::string me = (*probe)->bound().str();
    probe->reset();
    AgentOptions o = local("a", {me});
    o.bind = net::Endpoint::parse(me).value();
    o.retry_join_attempts = 2;
    o.retry_join_min = milliseconds(50);
    int failures = 0;
    o.on_join_failed = [&](uint32_t, const std::string&, bool) { ++failures; };
    std::unique_ptr<Agent> a;
    REQUIRE(c.loop.run_until(
        [&] {
            if (auto started = Agent::start(c.loop.get(), o)) a = std::move(*started);
            return a != nullptr;
        },
        5'000));
    REQUIRE(c.loop.run_until([&] { return a->join_attempts() >= 4; }, 10'000));
    CHECK(failures == 0);  // and it did not give up after two attempts
    CHECK(a->join_trouble().empty());
}

TEST_CASE("a seed given by host name is resolved and joined through") {
    Cluster c;
    c.start("a");
    const auto port = net::Endpoint::parse(c.seed_addr)->port();
    auto b = Agent::start(c.loop.get(), local("b", {"localhost:" + std::to_string(port)}));
    REQUIRE(b.ok());
    c.agents["b"] = std::move(*b);
    REQUIRE(c.loop.run_until([&] { return c.converged(); }, 10'000));
}

TEST_CASE("a seed name that does not resolve is counted and retried") {
    TestLoop loop;
    AgentOptions o = local("b", {"no-such-host.invalid:7900"});
    o.retry_join_min = milliseconds(50);
    auto b = Agent::start(loop.get(), std::move(o));
    REQUIRE(b.ok());
    REQUIRE(loop.run_until([&] { return (*b)->stats().resolve_failures >= 2; }, 20'000));
    REQUIRE((*b)->stats().join_attempts >= 2);
    REQUIRE_FALSE((*b)->node().joined());
}

TEST_CASE("a seed that never answers a SYN costs a join attempt the connect timeout, no more") {
    chorus::test::BlackHole hole;
    REQUIRE(hole.ok());
    Cluster c;
    c.start("a");
    AgentOptions o = local("b", {hole.addr()});
    o.frame_limits.connect_timeout_ms = 300;
    o.retry_join_min = seconds(60);  // one attempt in this test
    auto b = Agent::start(c.loop.get(), std::move(o));
    REQUIRE(b.ok());
    // The dial to the black hole is given up and the push-pull counted as failed, instead of
    // hanging in SYN_SENT for minutes.
    REQUIRE(c.loop.run_until([&] { return (*b)->node().stats().push_pulls_failed >= 1; }, 5'000));
    REQUIRE((*b)->streams().stats().timeouts == 1);
    REQUIRE_FALSE((*b)->node().joined());
    // With a live seed beside it, the join goes through that one.
    AgentOptions o2 = local("c", {hole.addr(), c.seed_addr});
    o2.frame_limits.connect_timeout_ms = 300;
    auto d = Agent::start(c.loop.get(), std::move(o2));
    REQUIRE(d.ok());
    REQUIRE(c.loop.run_until([&] { return (*d)->node().joined(); }, 5'000));
}

namespace {
// A sealed connection to `agent`, as another member would open: sends `op` and returns the reply.
std::optional<wire::KeyringReply> ask(TestLoop& loop, Agent& agent, const net::Key& key,
                                      const wire::KeyringOp& op) {
    net::Envelope env(net::Keyring::make({key}).value(), "chorus", {});
    std::optional<wire::KeyringReply> reply;
    bool closed = false;
    const auto limits = wire::limits_for(Config::local());
    net::FrameHub hub(loop.get(), {},
                      {[&](net::FrameConn&, std::vector<uint8_t> f) {
                           auto d = wire::decode_frame(f, limits);
                           REQUIRE(d.ok());
                           reply = std::get<wire::KeyringReply>(d->message);
                       },
                       [&](net::FrameConn& c) {
                           c.send(wire::encode("chorus", Name("x"), wire::KeyringMessage(op)));
                       },
                       [&](uint64_t, std::optional<Error>) { closed = true; }});
    hub.set_envelope(&env);
    hub.connect(agent.bound());
    REQUIRE(loop.run_until([&] { return closed; }));
    return reply;
}
uint64_t wall_ms_now() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}
}  // namespace

TEST_CASE("a keyring op is done once, fresh, and never on an agent that takes clear messages") {
    TestLoop loop;
    const net::Key key = net::new_key(), added = net::new_key();
    AgentOptions o = local("a");
    o.keyring = net::Keyring::make({key}).value();
    auto a = Agent::start(loop.get(), std::move(o));
    REQUIRE(a.ok());

    wire::KeyringOp op{7, wire::KeyringOp::Kind::install, added, wall_ms_now(), 42};
    auto r = ask(loop, **a, key, op);
    REQUIRE(r.has_value());
    REQUIRE(r->code.empty());
    REQUIRE(r->request == 7);
    REQUIRE(r->keys.size() == 2);
    REQUIRE((*a)->envelope()->sealer().keyring().keys().size() == 2);

    // The same op played back (a recorded frame) is refused, and so is one issued long ago.
    r = ask(loop, **a, key, op);
    REQUIRE(r->code == "replayed_op");
    op.nonce = 43;
    op.issued_ms = wall_ms_now() - 60'000;
    op.kind = wire::KeyringOp::Kind::use;
    r = ask(loop, **a, key, op);
    REQUIRE(r->code == "stale_op");
    op.issued_ms = UINT64_MAX;  // far ahead: no sum with it may wrap into "fresh"
    op.nonce = 45;
    r = ask(loop, **a, key, op);
    REQUIRE(r->code == "stale_op");
    REQUIRE((*a)->envelope()->sealer().keyring().primary() == key);

    SECTION("one op at a time on the agent asked to run it") {
        AgentOptions t = local("b", {(*a)->bound().str()});
        t.keyring = net::Keyring::make({key}).value();
        auto b = Agent::start(loop.get(), std::move(t));
        REQUIRE(b.ok());
        REQUIRE(loop.run_until([&] {
            const Member* m = (*a)->node().members().find(Name("b"));
            return m != nullptr && m->state == MemberState::alive;
        }));
        std::optional<std::vector<Agent::KeyringAnswer>> first, second;
        (*a)->keyring_everywhere({}, seconds(5), [&](auto answers) { first = answers; });
        (*a)->keyring_everywhere({}, seconds(5), [&](auto answers) { second = answers; });
        REQUIRE(second.has_value());  // refused at once, nobody asked
        REQUIRE(second->size() == 1);
        REQUIRE(second->at(0).reply->code == "busy");
        REQUIRE(loop.run_until([&] { return first.has_value(); }));
        REQUIRE(first->size() == 2);
        for (const auto& answer : *first)
            REQUIRE(answer.reply->code.empty());
    }

    SECTION("an agent that still takes clear messages refuses every op") {
        AgentOptions t = local("t");
        t.keyring = net::Keyring::make({key}).value();
        t.envelope = {false, true};
        auto b = Agent::start(loop.get(), std::move(t));
        REQUIRE(b.ok());
        op.issued_ms = wall_ms_now();
        op.nonce = 44;
        op.kind = wire::KeyringOp::Kind::install;
        r = ask(loop, **b, key, op);
        REQUIRE(r->code == "encryption_unverified");
        REQUIRE((*b)->envelope()->sealer().keyring().keys().size() == 1);
    }
}
