// The CLI's HTTP client against our server and against servers that misbehave, and the
// Server-Sent Events reader.
#include "http/client.hpp"

#include <catch2/catch.hpp>

#include "http/server.hpp"
#include "net/loop.hpp"

using namespace chorus;
using namespace chorus::http;
using chorus::test::TestLoop;

namespace {

// Accepts connections and, to each, writes `reply` (then closes, if asked); reads nothing.
struct ScriptedServer {
    net::Handle<uv_tcp_t> listener;
    std::vector<net::Handle<uv_tcp_t>> conns;
    std::string reply;
    bool close_after = true;

    ScriptedServer(uv_loop_t* loop, std::string r, bool close = true)
        : reply(std::move(r)), close_after(close) {
        listener = net::make_handle<uv_tcp_t>(
                       loop, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); }, this)
                       .value();
        const auto at = net::Endpoint::parse("127.0.0.1:0").value();
        REQUIRE(uv_tcp_bind(listener.get(), at.sa(), 0) == 0);
        REQUIRE(
            uv_listen(reinterpret_cast<uv_stream_t*>(listener.get()), 8, [](uv_stream_t* s, int) {
                auto* self = static_cast<ScriptedServer*>(s->data);
                auto c = net::make_handle<uv_tcp_t>(
                             s->loop, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); },
                             nullptr)
                             .value();
                uv_accept(s, reinterpret_cast<uv_stream_t*>(c.get()));
                if (!self->reply.empty()) {
                    auto* w = new uv_write_t{};
                    uv_buf_t b =
                        uv_buf_init(self->reply.data(), static_cast<unsigned>(self->reply.size()));
                    uv_write(w, reinterpret_cast<uv_stream_t*>(c.get()), &b, 1,
                             [](uv_write_t* r, int) { delete r; });
                }
                if (self->close_after) {
                    c.reset();  // closes after the write is flushed or cancelled
                } else {
                    self->conns.push_back(std::move(c));
                }
            }) == 0);
    }
    net::Endpoint local() const {
        sockaddr_storage ss{};
        int len = sizeof(ss);
        uv_tcp_getsockname(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len);
        return net::Endpoint::from(reinterpret_cast<sockaddr*>(&ss));
    }
};

}  // namespace

TEST_CASE("fetch returns our server's status, headers and body") {
    TestLoop loop;
    std::string seen_method, seen_body;
    auto server = Server::listen(loop.get(), net::Endpoint::parse("127.0.0.1:0").value(), {}, "n1",
                                 [&](const Request& r, Reply reply) {
                                     seen_method = r.method;
                                     seen_body = r.body;
                                     reply.send(error_response(409, "conflict", "no"));
                                 })
                      .value();
    ClientRequest req;
    req.method = "POST";
    req.target = "/x";
    req.body = R"({"a":1})";
    auto r = fetch(loop.get(), server->local(), req);
    REQUIRE(r.ok());
    REQUIRE(r->status == 409);
    REQUIRE(r->headers.at("x-chorus-node") == "n1");
    REQUIRE_THAT(r->body, Catch::Contains("\"conflict\""));
    REQUIRE(seen_method == "POST");
    REQUIRE(seen_body == R"({"a":1})");
}

TEST_CASE("fetch follows a chunked stream until the reader has had enough") {
    TestLoop loop;
    Stream kept;
    auto server = Server::listen(loop.get(), net::Endpoint::parse("127.0.0.1:0").value(), {}, "n1",
                                 [&](const Request&, Reply reply) {
                                     Response head;
                                     head.content_type = "text/event-stream";
                                     kept = reply.stream(head);
                                     kept.write("event: a\ndata: 1\n\n");
                                     kept.write("event: b\ndata: 2\n\n");
                                 })
                      .value();
    SseReader sse;
    std::vector<std::string> types;
    ClientRequest req;
    req.on_body = [&](std::string_view bytes) {
        const auto events = sse.feed(bytes).value();
        for (const auto& e : events)
            types.push_back(e.type);
        return types.size() < 2;
    };
    auto r = fetch(loop.get(), server->local(), req);
    REQUIRE(r.ok());
    REQUIRE(r->status == 200);
    REQUIRE(types == std::vector<std::string>{"a", "b"});
}

TEST_CASE("a server that never answers, or answers garbage, is an error, not a hang") {
    TestLoop loop;
    SECTION("silent: the deadline ends it") {
        ScriptedServer silent(loop.get(), "", false);
        ClientRequest req;
        req.timeout = milliseconds(200);
        auto r = fetch(loop.get(), silent.local(), req);
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "timeout");
    }
    SECTION("garbage") {
        ScriptedServer bad(loop.get(), "SMTP READY\r\n\r\n");
        auto r = fetch(loop.get(), bad.local(), {});
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "bad_response");
    }
    SECTION("cut short") {
        ScriptedServer cut(loop.get(), "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
        auto r = fetch(loop.get(), cut.local(), {});
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "closed");
    }
    SECTION("endless headers") {
        ScriptedServer huge(
            loop.get(),
            "HTTP/1.1 200 OK\r\nX-Big: " + std::string(kClientHeadBytesMax + 10, 'x') + "\r\n\r\n");
        auto r = fetch(loop.get(), huge.local(), {});
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "bad_response");
        REQUIRE_THAT(r.error().message, Catch::Contains("too large"));
    }
    SECTION("nobody listening") {
        net::Endpoint nowhere = ScriptedServer(loop.get(), "").local();  // closed at once
        auto r = fetch(loop.get(), nowhere, {});
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "unreachable");
    }
}

TEST_CASE("the event reader joins split lines, skips comments and keeps multi-line data") {
    SseReader r;
    REQUIRE(r.feed(": heartbeat\n\nevent: snap").value().empty());
    REQUIRE(r.feed("shot\r\nid: 7\ndata: {\"a\":").value().empty());
    auto events = r.feed("1}\ndata: more\n\nevent: member\ndata: x\n\n").value();
    REQUIRE(events.size() == 2);
    REQUIRE(events[0].type == "snapshot");
    REQUIRE(events[0].id == "7");
    REQUIRE(events[0].data == "{\"a\":1}\nmore");
    REQUIRE(events[1].type == "member");
    REQUIRE(events[1].data == "x");
}

TEST_CASE("host names resolve for the CLI's --http") {
    auto e = resolve("localhost:7980");
    REQUIRE(e.ok());
    REQUIRE(e->port() == 7980);
    REQUIRE(resolve("127.0.0.1:80")->str() == "127.0.0.1:80");
    REQUIRE_FALSE(resolve("no-port").ok());
}
