// The membership API over a real agent and HTTP server on loopback.
#include "http/api.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon/agent.hpp"
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

    explicit Node1(std::vector<std::string> seeds = {}) {
        daemon::AgentOptions o;
        o.config = Config::local();
        o.identity.name = "a";
        o.bind = net::Endpoint::parse("127.0.0.1:0").value();
        o.seeds = std::move(seeds);
        o.on_event = [this](const MemberEvent&) {
            if (api) api->changed();
        };
        agent = std::move(daemon::Agent::start(loop.get(), std::move(o)).value());
        api = std::make_unique<http::Api>(
            loop.get(), [this]() -> const Node& { return agent->node(); },
            [this] { return agent->now(); }, [this] { return agent->ready(); },
            http::Api::Info{"local", "test"});
        server = std::move(
            http::Server::listen(
                loop.get(), net::Endpoint::parse("127.0.0.1:0").value(), {}, "a",
                [this](const http::Request& r, http::Reply reply) { api->handle(r, reply); })
                .value());
    }
    // GET `target`; returns the raw response once complete (the client asks to close).
    std::string get(const std::string& target, const std::string& method = "GET") {
        RawClient c(loop.get(), server->local());
        c.send(method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
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
               "&wait=200ms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return n.api->waiting() == 1; }));
    REQUIRE(n.loop.run_until([&] { return quiet.closed; }));
    REQUIRE(nlohmann::json::parse(chorus::test::last_body(quiet.received))["index"] == index);
    // A change answers it at once.
    RawClient waiting(n.loop.get(), n.server->local());
    waiting.send("GET /v1/members?index=" + std::to_string(index) +
                 "&wait=60s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    REQUIRE(n.loop.run_until([&] { return n.api->waiting() == 1; }));
    n.api->changed();
    REQUIRE(n.loop.run_until([&] { return waiting.closed; }, 5'000));
    REQUIRE(nlohmann::json::parse(chorus::test::last_body(waiting.received))["index"] == index + 1);
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
