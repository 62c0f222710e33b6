// The membership API over a real agent and HTTP server on loopback.
#include "http/api.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "daemon/agent.hpp"
#include "daemon/temp_dir.hpp"
#include "http/raw_client.hpp"
#include "net/loop.hpp"

using namespace chorus;
using chorus::test::RawClient;
using chorus::test::TestLoop;

namespace {

struct Node1 {
    TestLoop loop;
    std::unique_ptr<daemon::Agent> agent;
    std::unique_ptr<http::Api> api;
    std::unique_ptr<http::Server> server;

    explicit Node1(std::vector<std::string> seeds = {},
                   http::Api::Info info = {"local", "test", {}}) {
        daemon::AgentOptions o;
        o.config = Config::local();
        o.identity.name = "a";
        o.bind = net::Endpoint::parse("127.0.0.1:0").value();
        o.seeds = std::move(seeds);
        o.on_event = [this](const MemberEvent& e) {
            if (api) api->changed(e);
        };
        agent = std::move(daemon::Agent::start(loop.get(), std::move(o)).value());
        api = std::make_unique<http::Api>(loop.get(), *agent, std::move(info));
        server = std::move(
            http::Server::listen(
                loop.get(), net::Endpoint::parse("127.0.0.1:0").value(), {}, "a",
                [this](const http::Request& r, http::Reply reply) { api->handle(r, reply); })
                .value());
        api->attach(server.get());
    }
    // Another agent on the same loop that joins this one: a real membership change.
    std::unique_ptr<daemon::Agent> peer(const std::string& name) {
        daemon::AgentOptions o;
        o.config = Config::local();
        o.identity.name = name;
        o.bind = net::Endpoint::parse("127.0.0.1:0").value();
        o.seeds = {agent->bound().str()};
        return std::move(daemon::Agent::start(loop.get(), std::move(o)).value());
    }
    // GET `target`; returns the raw response once complete (the client asks to close).
    std::string get(const std::string& target, const std::string& method = "GET") {
        RawClient c(loop.get(), server->local());
        c.send(method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        REQUIRE(loop.run_until([&] { return c.closed; }));
        return c.received;
    }
};

}  // namespace

TEST_CASE("GET /v1/members returns the node's view with its index") {
    Node1 n;
    const std::string raw = n.get("/v1/members");
    REQUIRE_THAT(raw, Catch::StartsWith("HTTP/1.1 200 OK"));
    REQUIRE_THAT(raw, Catch::Contains("X-Chorus-Index: "));
    auto j = nlohmann::json::parse(chorus::test::last_body(raw));
    REQUIRE(j["self"] == "a");
    REQUIRE(j["members"].size() == 1);
    const auto& m = j["members"][0];
    REQUIRE(m["name"] == "a");
    REQUIRE(m["state"] == "alive");
    for (const char* key :
         {"addr", "http", "incarnation", "phi", "load", "tags", "state_since_ms"}) {
        INFO(key);
        REQUIRE(m.contains(key));
    }
}

TEST_CASE("a blocking query waits for a change past its index, or for its wait to end") {
    Node1 n;
    const auto index = nlohmann::json::parse(chorus::test::last_body(n.get("/v1/members")))["index"]
                           .get<uint64_t>();
    // Nothing changes: the query answers when its wait ends, with the same index.
    RawClient quiet(n.loop.get(), n.server->local());
    quiet.send("GET /v1/members?index=" + std::to_string(index) +
               "&wait=200ms HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return n.api->waiting() == 1; }));
    REQUIRE(n.loop.run_until([&] { return quiet.closed; }));
    REQUIRE(nlohmann::json::parse(chorus::test::last_body(quiet.received))["index"] == index);
    // A change answers it at once.
    RawClient waiting(n.loop.get(), n.server->local());
    waiting.send("GET /v1/members?index=" + std::to_string(index) +
                 "&wait=60s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return n.api->waiting() == 1; }));
    auto b = n.peer("b");
    REQUIRE(n.loop.run_until([&] { return waiting.closed; }, 5'000));
    auto j = nlohmann::json::parse(chorus::test::last_body(waiting.received));
    REQUIRE(j["index"].get<uint64_t>() > index);
    REQUIRE(j["members"].size() == 2);
}

TEST_CASE("an event stream sends a snapshot, then one event per change") {
    Node1 n;
    RawClient stream(n.loop.get(), n.server->local());
    stream.send("GET /v1/members/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return stream.count("event: snapshot") == 1; }));
    REQUIRE_THAT(stream.received, Catch::StartsWith("HTTP/1.1 200 OK") &&
                                      Catch::Contains("Content-Type: text/event-stream") &&
                                      Catch::Contains("Transfer-Encoding: chunked"));
    REQUIRE(n.api->streaming() == 1);
    auto b = n.peer("b");
    REQUIRE(n.loop.run_until([&] { return stream.count("event: member") >= 1; }, 5'000));
    REQUIRE_THAT(stream.received,
                 Catch::Contains(R"("name":"b")") && Catch::Contains(R"("state":"alive")"));
    // b leaves: the stream says so.
    bool left = false;
    b->leave(seconds(2), [&] { left = true; });
    REQUIRE(n.loop.run_until([&] { return stream.count(R"("state":"left")") >= 1; }, 5'000));
    REQUIRE(n.loop.run_until([&] { return left; }, 5'000));
    // The client goes; the next write finds it gone and the stream is dropped.
    stream.tcp = {};
    auto c = n.peer("c");
    REQUIRE(n.loop.run_until([&] { return n.api->streaming() == 0; }, 5'000));
    REQUIRE(n.server->stats().streams == 1);
}

TEST_CASE("a stream whose client does not read is dropped once its backlog is full") {
    // A tiny backlog limit and a client that never reads: the heartbeat-free path is the
    // change events, so a peer's join fills it.
    TestLoop loop;
    http::Limits limits;
    limits.stream_backlog_bytes_max = 64;
    http::Stream kept;
    auto server =
        http::Server::listen(loop.get(), net::Endpoint::parse("127.0.0.1:0").value(), limits, "a",
                             [&](const http::Request&, http::Reply reply) {
                                 http::Response head;
                                 head.content_type = "text/event-stream";
                                 kept = reply.stream(head);
                             })
            .value();
    RawClient c(loop.get(), server->local());
    c.send("GET /s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    REQUIRE(loop.run_until([&] { return kept.open(); }));
    REQUIRE(kept.write("small"));
    // Writes go to the kernel first; only what it will not take counts as backlog, so keep
    // writing until the limit bites.
    const std::string big(64 * 1024, 'x');
    bool dropped = false;
    for (int i = 0; i < 1000 && !dropped; ++i)
        dropped = !kept.write(big);
    REQUIRE(dropped);
    REQUIRE(server->stats().stream_overflows == 1);
    REQUIRE_FALSE(kept.open());
}

TEST_CASE("POST /v1/leave answers once the leave has spread") {
    Node1* self = nullptr;
    int leaves = 0;
    Node1 n({}, http::Api::Info{"local", "test", [&](std::function<void()> left) {
                                    ++leaves;
                                    self->agent->leave(seconds(2), std::move(left));
                                }});
    self = &n;
    auto b = n.peer("b");
    REQUIRE(n.loop.run_until([&] { return b->node().members().live() == 2; }, 5'000));
    REQUIRE_THAT(n.get("/v1/leave"),
                 Catch::StartsWith("HTTP/1.1 405 ") && Catch::Contains("Allow: POST"));
    const std::string raw = n.get("/v1/leave", "POST");
    REQUIRE_THAT(raw, Catch::StartsWith("HTTP/1.1 200 OK") && Catch::Contains(R"("left")"));
    REQUIRE(leaves == 1);
    const Member* a = b->node().members().find(Name("a"));
    REQUIRE(a != nullptr);
    REQUIRE(n.loop.run_until([&] { return a->state == MemberState::left; }, 5'000));
    REQUIRE_THAT(n.get("/v1/health"), Catch::StartsWith("HTTP/1.1 503 "));
}

TEST_CASE("GET /metrics is Prometheus text with the membership and HTTP counters") {
    Node1 n;
    auto b = n.peer("b");
    REQUIRE(n.loop.run_until([&] { return n.agent->udp().stats().received > 0; }, 5'000));
    n.get("/v1/self");
    const std::string raw = n.get("/metrics");
    REQUIRE_THAT(raw, Catch::StartsWith("HTTP/1.1 200 OK") &&
                          Catch::Contains("Content-Type: text/plain; version=0.0.4"));
    const std::string body = chorus::test::last_body(raw);
    REQUIRE_THAT(body, Catch::Contains("# TYPE chorus_members gauge\n"));
    REQUIRE_THAT(body, Catch::Contains("chorus_members{state=\"alive\"} 2\n"));
    REQUIRE_THAT(body, Catch::Contains("chorus_members{state=\"dead\"} 0\n"));
    REQUIRE_THAT(body, Catch::Contains("# TYPE chorus_probes_total counter\n"));
    REQUIRE_THAT(
        body, Catch::Contains("chorus_http_request_duration_seconds_count{endpoint=\"self\"} 1\n"));
    REQUIRE_THAT(
        body,
        Catch::Contains(
            "chorus_http_request_duration_seconds_bucket{endpoint=\"self\",le=\"+Inf\"} 1\n"));
    // Datagrams flowed between a and b, and the counter says so.
    const size_t at = body.find("\nchorus_packets_received_total ");
    REQUIRE(at != std::string::npos);
    REQUIRE(std::stod(body.substr(at + 31)) > 0);
    // Every family is announced once, before its samples.
    size_t helps = 0, types = 0;
    for (size_t p = body.find("# HELP"); p != std::string::npos; p = body.find("# HELP", p + 1))
        ++helps;
    for (size_t p = body.find("# TYPE"); p != std::string::npos; p = body.find("# TYPE", p + 1))
        ++types;
    REQUIRE(helps == types);
    REQUIRE(helps > 20);
}

TEST_CASE("self, health, unknown paths, wrong methods and bad parameters answer as documented") {
    Node1 n;
    auto self = nlohmann::json::parse(chorus::test::last_body(n.get("/v1/self")));
    REQUIRE(self["name"] == "a");
    REQUIRE(self.contains("health_score"));
    REQUIRE(self["config"]["profile"] == "local");
    REQUIRE_THAT(n.get("/v1/health"), Catch::StartsWith("HTTP/1.1 200 OK"));
    REQUIRE_THAT(n.get("/v1/nothing"),
                 Catch::StartsWith("HTTP/1.1 404 ") && Catch::Contains("\"not_found\""));
    const std::string wrong = n.get("/v1/members", "DELETE");
    REQUIRE_THAT(wrong, Catch::StartsWith("HTTP/1.1 405 ") && Catch::Contains("Allow: GET"));
    REQUIRE_THAT(n.get("/v1/members?index=x"),
                 Catch::StartsWith("HTTP/1.1 400 ") && Catch::Contains("bad_index"));
    REQUIRE_THAT(n.get("/v1/members?index=99&wait=soon"),
                 Catch::StartsWith("HTTP/1.1 400 ") && Catch::Contains("bad_wait"));
}

TEST_CASE("health is 503 until the agent has joined") {
    Node1 n({"127.0.0.1:1"});  // a seed that never answers
    const std::string raw = n.get("/v1/health");
    REQUIRE_THAT(raw, Catch::StartsWith("HTTP/1.1 503 ") && Catch::Contains("Retry-After: 1"));
}

TEST_CASE("wait durations parse as Consul writes them") {
    REQUIRE(http::parse_wait("30s") == seconds(30));
    REQUIRE(http::parse_wait("500ms") == milliseconds(500));
    REQUIRE(http::parse_wait("2m") == seconds(120));
    REQUIRE(http::parse_wait("5") == seconds(5));
    REQUIRE_FALSE(http::parse_wait("soon"));
    REQUIRE_FALSE(http::parse_wait("-1s"));
    REQUIRE_FALSE(http::parse_wait("10h"));
}

namespace {

http::Api::Info with_limits(http::Api::Limits l) {
    http::Api::Info info{"local", "test", {}};
    info.limits = l;
    return info;
}

uint64_t index_of(Node1& n) {
    return nlohmann::json::parse(chorus::test::last_body(n.get("/v1/members")))["index"]
        .get<uint64_t>();
}

}  // namespace

TEST_CASE("blocking queries past the limit get 429 with Retry-After, and leaving frees a place") {
    http::Api::Limits l;
    l.waiters_max = 2;
    Node1 n({}, with_limits(l));
    const std::string query = "GET /v1/members?index=" + std::to_string(index_of(n)) +
                              "&wait=5m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    auto first = std::make_unique<RawClient>(n.loop.get(), n.server->local());
    auto second = std::make_unique<RawClient>(n.loop.get(), n.server->local());
    first->send(query);
    second->send(query);
    REQUIRE(n.loop.run_until([&] { return n.api->waiting() == 2; }));
    RawClient third(n.loop.get(), n.server->local());
    third.send(query);
    REQUIRE(
        n.loop.run_until([&] { return third.count("\r\n\r\n") >= 1 && third.count("}") >= 1; }));
    REQUIRE_THAT(third.received, Catch::StartsWith("HTTP/1.1 429 ") &&
                                     Catch::Contains("Retry-After: 1\r\n") &&
                                     Catch::Contains("too_many_waiters"));
    REQUIRE(n.api->waiters_refused() == 1);
    // Both clients hang up: their places are free at once, not when their five minutes end.
    first.reset();
    second.reset();
    REQUIRE(n.loop.run_until([&] { return n.api->waiting() == 0; }));
    RawClient fourth(n.loop.get(), n.server->local());
    fourth.send(query);
    REQUIRE(n.loop.run_until([&] { return n.api->waiting() == 1; }));
}

TEST_CASE("a blocking query waits at most wait_max, whatever it asks") {
    http::Api::Limits l;
    l.wait_max = milliseconds(300);
    Node1 n({}, with_limits(l));
    RawClient c(n.loop.get(), n.server->local());
    c.send("GET /v1/members?index=" + std::to_string(index_of(n)) +
           "&wait=10m HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return n.api->waiting() == 1; }));
    // Ten minutes asked; the cap answers it well within this test's deadline.
    REQUIRE(n.loop.run_until([&] { return c.closed; }, 5'000));
    REQUIRE_THAT(c.received, Catch::StartsWith("HTTP/1.1 200 "));
}

TEST_CASE(
    "streams past the limit get 429, a stream hears heartbeats, a client that goes frees one") {
    http::Api::Limits l;
    l.streams_max = 1;
    l.heartbeat_ms = 50;
    Node1 n({}, with_limits(l));
    auto first = std::make_unique<RawClient>(n.loop.get(), n.server->local());
    first->send("GET /v1/members/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return first->count(": heartbeat") >= 2; }));
    RawClient second(n.loop.get(), n.server->local());
    second.send("GET /v1/members/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return second.closed; }));
    REQUIRE_THAT(second.received, Catch::StartsWith("HTTP/1.1 429 ") &&
                                      Catch::Contains("Retry-After: 1\r\n") &&
                                      Catch::Contains("too_many_streams"));
    REQUIRE(n.api->streams_refused() == 1);
    first.reset();
    REQUIRE(n.loop.run_until([&] { return n.api->streaming() == 0; }));
    RawClient third(n.loop.get(), n.server->local());
    third.send("GET /v1/members/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return third.count("event: snapshot") == 1; }));
}

TEST_CASE("/v1/keyring refuses what it cannot do, with codes") {
    Node1* self = nullptr;
    http::Api::Info info{"local", "test", {}};
    info.keyring = [&](wire::KeyringOp op, auto done) {
        self->agent->keyring_everywhere(op, seconds(2), std::move(done));
    };
    Node1 n({}, std::move(info));
    self = &n;
    const auto post = [&](const std::string& body) {
        RawClient c(n.loop.get(), n.server->local());
        c.send(
            fmt::format("POST /v1/keyring HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                        body.size(), body));
        REQUIRE(n.loop.run_until([&] { return c.closed; }));
        return c.received;
    };
    // This agent has no key: a key sent to it, or through it, would cross the wire in clear.
    REQUIRE_THAT(n.get("/v1/keyring"),
                 Catch::StartsWith("HTTP/1.1 409 ") && Catch::Contains("encryption_off"));
    const std::string key = net::key_to_base64(net::new_key());
    REQUIRE_THAT(post(R"({"op": "install", "key": ")" + key + R"("})"),
                 Catch::StartsWith("HTTP/1.1 409 ") && Catch::Contains("encryption_off"));
    REQUIRE_THAT(post(R"({"op": "rotate", "key": ")" + key + R"("})"),
                 Catch::StartsWith("HTTP/1.1 400 ") && Catch::Contains("bad_op"));
    REQUIRE_THAT(post(R"({"op": "use", "key": "abc"})"),
                 Catch::StartsWith("HTTP/1.1 400 ") && Catch::Contains("bad_key"));
    REQUIRE_THAT(n.get("/v1/keyring", "DELETE"), Catch::StartsWith("HTTP/1.1 405 "));
}

TEST_CASE("with tokens, a call without one gets 401 before its body is read, and is counted") {
    auto admin = http::new_token("ops", http::Scope::admin).value();
    auto reader = http::new_token("dash", http::Scope::read).value();
    http::Api::Info info{"local", "test", {}};
    info.access.acl =
        http::Acl::parse(R"({"tokens": [)" + admin.entry + "," + reader.entry + "]}").value();
    Node1 n({}, std::move(info));
    // Headers announcing a large body, and no body: the answer comes anyway, and the
    // connection closes with the body unread.
    RawClient c(n.loop.get(), n.server->local());
    c.send(
        "POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 500000\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return c.closed; }));
    REQUIRE_THAT(c.received, Catch::StartsWith("HTTP/1.1 401 ") &&
                                 Catch::Contains("missing_token") &&
                                 Catch::Contains("WWW-Authenticate: Bearer"));
    CHECK(n.server->stats().gated == 1);
    CHECK(n.api->access_refused(http::Refusal::missing_token) == 1);

    const auto call = [&](const std::string& method, const std::string& path,
                          const std::string& secret) {
        RawClient k(n.loop.get(), n.server->local());
        k.send(method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
               "Authorization: Bearer " + secret + "\r\n\r\n");
        REQUIRE(n.loop.run_until([&] { return k.closed; }));
        return k.received;
    };
    CHECK_THAT(call("GET", "/v1/members", reader.secret), Catch::StartsWith("HTTP/1.1 200 "));
    CHECK_THAT(call("POST", "/v1/leave", reader.secret),
               Catch::StartsWith("HTTP/1.1 403 ") && Catch::Contains("scope"));
    CHECK_THAT(call("GET", "/v1/members", "wrong"), Catch::StartsWith("HTTP/1.1 401 "));
    // Health answers anyone; metrics count the refusals by reason.
    CHECK_THAT(n.get("/v1/health"), !Catch::StartsWith("HTTP/1.1 401 "));
    const std::string metrics = call("GET", "/metrics", admin.secret);
    CHECK_THAT(metrics,
               Catch::Contains(R"(chorus_http_rejected_total{reason="missing_token"} 1)") &&
                   Catch::Contains(R"(chorus_http_rejected_total{reason="scope"} 1)") &&
                   Catch::Contains(R"(chorus_http_rejected_total{reason="bad_token"} 1)"));
}

TEST_CASE("without tokens, a page on another site cannot make the agent leave") {
    bool leaving = false;
    Node1 n({}, http::Api::Info{"local", "test", [&](std::function<void()>) { leaving = true; }});
    RawClient c(n.loop.get(), n.server->local());
    c.send(
        "POST /v1/leave HTTP/1.1\r\nHost: 127.0.0.1:7980\r\nOrigin: http://evil.example\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return c.closed; }));
    CHECK_THAT(c.received, Catch::StartsWith("HTTP/1.1 403 ") && Catch::Contains("cross_origin"));
    RawClient d(n.loop.get(), n.server->local());
    d.send(
        "POST /v1/leave HTTP/1.1\r\nHost: evil.example:7980\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return d.closed; }));
    CHECK_THAT(d.received, Catch::StartsWith("HTTP/1.1 403 ") && Catch::Contains("bad_host"));
    CHECK_FALSE(leaving);
}

TEST_CASE("a mutating call whose client leaves before the answer is still audited") {
    chorus::test::TempDir dir;
    auto audit = http::AuditLog::open({dir.path + "/audit.log"}).value();
    std::function<void()> finish_leave;
    http::Api::Info info{"local", "test", [&](std::function<void()> left) {
                             finish_leave = std::move(left);  // the leave is under way
                         }};
    info.audit = audit.get();
    Node1 n({}, std::move(info));
    {
        RawClient c(n.loop.get(), n.server->local());
        c.send("POST /v1/leave HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
        REQUIRE(n.loop.run_until([&] { return static_cast<bool>(finish_leave); }));
    }  // the client hangs up before the leave has spread
    REQUIRE(n.loop.run_until([&] { return audit->lines() == 1; }));
    std::ifstream in(dir.path + "/audit.log");
    std::string line;
    std::getline(in, line);
    const auto j = nlohmann::json::parse(line);
    CHECK(j["path"] == "/v1/leave");
    CHECK(j["outcome"] == "client_gone");
    finish_leave();  // answering now writes nothing more: nobody is there
    CHECK(audit->lines() == 1);
}
