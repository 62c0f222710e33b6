#include "http/server.hpp"

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "daemon/json.hpp"
#include "http/raw_client.hpp"
#include "net/loop.hpp"

using namespace chorus;
using namespace chorus::http;
using chorus::test::RawClient;
using chorus::test::TestLoop;

namespace {

struct Fixture {
    TestLoop loop;
    std::vector<Request> seen;
    std::function<void(const Request&, Reply)> handler = [this](const Request& r, Reply reply) {
        seen.push_back(r);
        Response res;
        res.body = "{\"path\":\"" + r.path + "\"}";
        reply.send(res);
    };
    std::unique_ptr<Server> server;

    explicit Fixture(Limits limits = {}) {
        auto s = Server::listen(loop.get(), net::Endpoint::parse("127.0.0.1:0").value(), limits,
                                "n1", [this](const Request& r, Reply reply) { handler(r, reply); });
        REQUIRE(s.ok());
        server = std::move(*s);
    }
};

}  // namespace

TEST_CASE("a request reaches the handler with its path, decoded query and headers") {
    Fixture f;
    auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    c->send("GET /v1/members?index=7&wait=two%20words HTTP/1.1\r\nHost: x\r\nX-Thing: Yes\r\n\r\n");
    REQUIRE(f.loop.run_until(
        [&] { return c->count("\r\n\r\n") >= 1 && c->received.find("}") != std::string::npos; }));
    REQUIRE(f.seen.size() == 1);
    REQUIRE(f.seen[0].method == "GET");
    REQUIRE(f.seen[0].path == "/v1/members");
    REQUIRE(f.seen[0].query.at("index") == "7");
    REQUIRE(f.seen[0].query.at("wait") == "two words");
    REQUIRE(f.seen[0].headers.at("x-thing") == "Yes");
    REQUIRE_THAT(c->received, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
    REQUIRE_THAT(c->received, Catch::Contains("X-Chorus-Node: n1\r\n"));
    REQUIRE_THAT(c->received, Catch::Contains("Content-Type: application/json\r\n"));
    REQUIRE_THAT(c->received, Catch::EndsWith("{\"path\":\"/v1/members\"}"));
}

TEST_CASE("pipelined keep-alive requests are answered in order on one connection") {
    Fixture f;
    auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    c->send(
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nPOST /c "
        "HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
        "10\r\n\r\n{\"k\": [1]}");
    REQUIRE(f.loop.run_until([&] {
        return c->count("HTTP/1.1 200") == 3 && c->received.find("/c\"}") != std::string::npos;
    }));
    REQUIRE(c->received.find("/a\"}") < c->received.find("/b\"}"));
    REQUIRE(c->received.find("/b\"}") < c->received.find("/c\"}"));
    REQUIRE(f.seen.at(2).body == R"({"k": [1]})");
    REQUIRE(f.seen.at(2).json["k"][0] == 1);
    REQUIRE(f.server->stats().connections == 1);
}

TEST_CASE("a handler may answer later, as a blocking query does") {
    Fixture f;
    std::optional<Reply> held;
    f.handler = [&](const Request& req, Reply r) {
        if (req.path == "/v1/members") {
            held = r;
        } else {
            r.send(Response{});
        }
    };
    auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    c->send("GET /v1/members?wait=1s HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(f.loop.run_until([&] { return held.has_value(); }));
    REQUIRE(held->pending());
    // Another client's request, sent after the handler held the first, is answered: anything
    // the server had sent the first client by itself would have arrived before that answer.
    auto other = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    other->send("GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(f.loop.run_until(
        [&] { return other->count("HTTP/1.1 200") == 1 && other->count("\r\n\r\n") == 1; }));
    REQUIRE(c->received.empty());
    Response r;
    r.body = "{\"late\":true}";
    held->send(r);
    REQUIRE_FALSE(held->pending());
    REQUIRE(f.loop.run_until([&] { return c->received.find("late") != std::string::npos; }));
}

TEST_CASE("malformed, oversized and slow requests get the right status and are counted") {
    struct Row {
        const char* what;
        std::string bytes;
        std::string status;
        std::function<uint64_t(const Server::Stats&)> counter;
    };
    const std::string huge_header =
        "GET / HTTP/1.1\r\nX-Big: " + std::string(20 * 1024, 'a') + "\r\n\r\n";
    const std::vector<Row> rows = {
        {"a garbage request line", "GARBAGE\r\n\r\n", "HTTP/1.1 400 ",
         [](auto& s) { return s.bad_requests; }},
        {"bad chunking", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
         "HTTP/1.1 400 ", [](auto& s) { return s.bad_requests; }},
        {"20 KiB of headers", huge_header, "HTTP/1.1 431 ",
         [](auto& s) { return s.headers_too_large; }},
        {"a declared 2 MiB body (answered before it is sent)",
         "POST /v1/tasks HTTP/1.1\r\nContent-Length: 2097152\r\n\r\n", "HTTP/1.1 413 ",
         [](auto& s) { return s.bodies_too_large; }},
        {"a chunked body over the limit",
         "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n" +
             std::string(0x100000, 'b') + "\r\n1\r\nb\r\n0\r\n\r\n",
         "HTTP/1.1 413 ", [](auto& s) { return s.bodies_too_large; }},
    };
    for (const Row& r : rows) {
        Fixture f;
        auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
        c->send(r.bytes);
        INFO(r.what);
        REQUIRE(f.loop.run_until([&] { return c->closed; }));
        REQUIRE_THAT(c->received, Catch::StartsWith(r.status));
        REQUIRE_THAT(c->received, Catch::Contains("\"error\":{\"code\":"));
        REQUIRE(r.counter(f.server->stats()) == 1);
        REQUIRE(f.seen.empty());
        REQUIRE(f.server->connections() == 0);
    }
}

TEST_CASE("a body that is not JSON is refused before any handler, and the connection serves on") {
    Fixture f;
    auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    const auto post = [](std::string_view type, std::string_view body) {
        return fmt::format(
            "POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{}", type,
            body.size(), body);
    };
    c->send(post("application/json", "{\"a\": ") + post("text/plain", "hello") +
            "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(f.loop.run_until([&] { return c->received.find("/after") != std::string::npos; }));
    REQUIRE_THAT(c->received, Catch::StartsWith("HTTP/1.1 400 ") && Catch::Contains("bad_json") &&
                                  Catch::Contains("HTTP/1.1 415 ") &&
                                  Catch::Contains("unsupported_media_type"));
    REQUIRE(f.server->stats().bad_json == 1);
    REQUIRE(f.server->stats().unsupported_media == 1);
    REQUIRE(f.seen.size() == 1);  // only GET /after reached the handler
    REQUIRE(f.seen[0].path == "/after");
}

TEST_CASE("a client that stops mid-headers is disconnected after the header timeout") {
    Limits l;
    l.header_timeout_ms = 100;
    Fixture f(l);
    auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    c->send("GET /v1/members HTTP/1.1\r\nHost: x\r\n");  // and never the blank line
    REQUIRE(f.loop.run_until([&] { return c->closed; }));
    REQUIRE(f.server->stats().timeouts == 1);
    REQUIRE(f.seen.empty());
}

TEST_CASE("connections beyond the limit are refused") {
    Limits l;
    l.connections_max = 2;
    Fixture f(l);
    std::vector<std::unique_ptr<RawClient>> cs;
    for (int i = 0; i < 3; ++i)
        cs.push_back(std::make_unique<RawClient>(f.loop.get(), f.server->local()));
    REQUIRE(f.loop.run_until([&] { return f.server->stats().refused == 1; }));
    REQUIRE(f.loop.run_until([&] { return cs[2]->closed; }));
    REQUIRE(f.server->connections() == 2);
}

TEST_CASE("hostile JSON bodies get a 400 naming the problem, and the server serves on") {
    struct Row {
        const char* what;
        std::string body;
        std::string code;
    };
    const std::vector<Row> rows = {
        {"a number too large for a double", R"({"key":"a","payload":1e999})", "bad_json"},
        {"150,000 nested arrays", std::string(150'000, '['), "too_deep"},
        {"one level past the limit",
         std::string(daemon::kJsonDepthMax + 1, '[') + std::string(daemon::kJsonDepthMax + 1, ']'),
         "too_deep"},
        {"a string that is not UTF-8", "{\"key\":\"\xff\xfe\"}", "bad_json"},
    };
    for (const Row& r : rows) {
        INFO(r.what);
        Fixture f;
        auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
        c->send(
            fmt::format("POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: {}\r\n\r\n{}GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
                        r.body.size(), r.body));
        REQUIRE(f.loop.run_until([&] { return c->received.find("/after") != std::string::npos; }));
        REQUIRE_THAT(c->received, Catch::StartsWith("HTTP/1.1 400 ") &&
                                      Catch::Contains(fmt::format("\"code\":\"{}\"", r.code)));
        REQUIRE(f.seen.size() == 1);  // only GET /after reached the handler
        const auto& s = f.server->stats();
        REQUIRE((r.code == "too_deep" ? s.too_deep : s.bad_json) == 1);
    }
    SECTION("the deepest body allowed is parsed") {
        Fixture f;
        auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
        const std::string body =
            std::string(daemon::kJsonDepthMax, '[') + std::string(daemon::kJsonDepthMax, ']');
        c->send(
            fmt::format("POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: {}\r\n\r\n{}",
                        body.size(), body));
        REQUIRE(f.loop.run_until([&] { return f.seen.size() == 1; }));
        REQUIRE(f.seen[0].json.is_array());
    }
}

TEST_CASE("an error about a path that is not UTF-8 is still valid JSON") {
    Fixture f;
    f.handler = [&](const Request& r, Reply reply) {
        f.seen.push_back(r);
        reply.send(error_response(404, "not_found", "no such endpoint: " + r.path));
    };
    auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    c->send("GET /v1/x\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    REQUIRE(f.loop.run_until([&] { return c->closed; }));
    REQUIRE_THAT(c->received, Catch::StartsWith("HTTP/1.1 404 "));
    auto j = daemon::parse_json(chorus::test::last_body(c->received));
    REQUIRE(j.ok());
    // Each byte that is not UTF-8 is shown as U+FFFD.
    REQUIRE((*j)["error"]["message"] == "no such endpoint: /v1/x\xef\xbf\xbd\xef\xbf\xbd");
}

TEST_CASE("a request's body is let go once the handler has it, even while it waits to answer") {
    Fixture f;
    std::vector<Reply> held;
    f.handler = [&](const Request& r, Reply reply) {
        f.seen.push_back(r);
        held.push_back(reply);
    };
    auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    const std::string body = "[\"" + std::string(100'000, 'x') + "\"]";
    c->send(
        fmt::format("POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Content-Length: {}\r\n\r\n{}",
                    body.size(), body));
    REQUIRE(f.loop.run_until([&] { return held.size() == 1; }));
    REQUIRE(f.seen[0].body.size() == body.size());  // the handler saw it whole
    REQUIRE(f.server->bodies_bytes() == 0);         // and the server no longer holds it
    REQUIRE(held[0].pending());
}

TEST_CASE("bodies arriving at once past the budget get 503 with Retry-After") {
    Limits l;
    l.bodies_bytes_max = 150'000;
    Fixture f(l);
    std::vector<Reply> held;
    f.handler = [&](const Request& r, Reply reply) {
        f.seen.push_back(r);
        held.push_back(reply);
    };
    const auto head = [](size_t n) {
        return fmt::format(
            "POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: {}\r\n\r\n",
            n);
    };
    // One client sends most of a 100,000-byte body and stops; a second announces another.
    auto slow = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    slow->send(head(100'000) + std::string(90'000, ' '));
    REQUIRE(f.loop.run_until([&] { return f.server->bodies_bytes() == 90'000; }));
    RawClient second(f.loop.get(), f.server->local());
    second.send(head(100'000));
    REQUIRE(f.loop.run_until([&] { return second.closed; }));
    REQUIRE_THAT(second.received, Catch::StartsWith("HTTP/1.1 503 ") &&
                                      Catch::Contains("Retry-After: 1\r\n") &&
                                      Catch::Contains("server_busy"));
    REQUIRE(f.server->stats().busy == 1);
    // The first goes away: its bytes leave the budget.
    slow.reset();
    REQUIRE(f.loop.run_until([&] { return f.server->bodies_bytes() == 0; }));
    RawClient third(f.loop.get(), f.server->local());
    third.send(head(2) + "[]");
    REQUIRE(f.loop.run_until([&] { return held.size() == 1; }));
}

TEST_CASE("one client address gets at most connections_per_client_max connections") {
    Limits l;
    l.connections_per_client_max = 2;
    Fixture f(l);
    std::vector<std::unique_ptr<RawClient>> cs;
    for (int i = 0; i < 3; ++i)
        cs.push_back(std::make_unique<RawClient>(f.loop.get(), f.server->local()));
    REQUIRE(f.loop.run_until([&] { return f.server->stats().refused_per_client == 1; }));
    REQUIRE(f.loop.run_until([&] { return cs[2]->closed; }));
    REQUIRE(f.server->connections() == 2);
    // One closes: its address may connect again.
    cs[0].reset();
    REQUIRE(f.loop.run_until([&] { return f.server->connections() == 1; }));
    cs.push_back(std::make_unique<RawClient>(f.loop.get(), f.server->local()));
    REQUIRE(f.loop.run_until([&] { return f.server->connections() == 2; }));
    REQUIRE(f.server->stats().refused_per_client == 1);
}

TEST_CASE("a keep-alive connection waits for its next request no longer than the header timeout") {
    Limits l;
    l.header_timeout_ms = 200;
    Fixture f(l);
    auto c = std::make_unique<RawClient>(f.loop.get(), f.server->local());
    c->send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(f.loop.run_until([&] { return f.seen.size() == 1; }));
    REQUIRE(f.loop.run_until([&] { return c->closed; }, 5'000));
    REQUIRE(f.server->stats().timeouts == 1);
}
