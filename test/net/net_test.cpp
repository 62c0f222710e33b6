#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include "net/black_hole.hpp"
#include "net/endpoint.hpp"
#include "net/frames.hpp"
#include "net/loop.hpp"
#include "net/seal.hpp"
#include "net/srv.hpp"
#include "net/udp.hpp"

using namespace chorus;
using namespace chorus::net;
using chorus::test::TestLoop;

namespace {
Endpoint loopback(uint16_t port = 0) {
    return Endpoint::parse("127.0.0.1:" + std::to_string(port)).value();
}
std::vector<uint8_t> bytes(size_t n, uint8_t seed = 1) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i)
        v[i] = static_cast<uint8_t>(seed + i * 31);
    return v;
}
}  // namespace

TEST_CASE("endpoints parse ip:port and bracketed ipv6:port and print back the same") {
    for (const char* ok : {"127.0.0.1:7900", "0.0.0.0:0", "[::1]:7980", "[fe80::1]:1"}) {
        auto e = Endpoint::parse(ok);
        INFO(ok);
        REQUIRE(e.ok());
        REQUIRE(e->str() == ok);
    }
    for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:x",
                            "::1:80", "[::1]80", "seed.example:7900", "1.2.3:80"}) {
        auto e = Endpoint::parse(bad);
        INFO(bad);
        REQUIRE_FALSE(e.ok());
        REQUIRE(e.error().code == "bad_address");
    }
}

TEST_CASE("a host without a port takes the default one given, and addresses are told from names") {
    const auto hp = [](std::string_view text) { return split_host_port(text, 80); };
    CHECK(hp("localhost").value().host == "localhost");
    CHECK(hp("localhost").value().port == 80);
    CHECK(hp("[::1]").value().host == "::1");
    CHECK(hp("[::1]:7980").value().port == 7980);
    CHECK(hp("10.0.0.1:8").value().host == "10.0.0.1");
    for (const char* bad : {"", "[]", "[::1", "::1:7980", "[::1]x", "name:", ":80"}) {
        INFO(bad);
        CHECK_FALSE(hp(bad));
    }
    CHECK_FALSE(split_host_port("localhost"));  // without a default, a port is needed
    for (const char* ip : {"127.0.0.1", "::1", "fe80::1", "10.1.2.3"}) {
        INFO(ip);
        CHECK(is_ip_address(ip));
    }
    for (const char* name : {"localhost", "127.0.0.1.nip.io", "[::1]", "1.2.3", ""}) {
        INFO(name);
        CHECK_FALSE(is_ip_address(name));
    }
}

TEST_CASE("with a wildcard bind and no advertise address, the first private one is chosen") {
    const auto pick = [](std::vector<HostAddress> all, bool ipv6 = false) {
        auto p = pick_advertise(all, ipv6);
        return p ? p->interface + " " + p->ip : std::string("none");
    };
    const HostAddress lo{"lo", "127.0.0.1", true};
    const HostAddress lo6{"lo", "::1", true};
    const HostAddress link{"eth0", "169.254.10.1", false};
    const HostAddress link6{"eth0", "fe80::1", false};
    const HostAddress pub{"eth0", "203.0.113.7", false};
    const HostAddress ten{"eth1", "10.4.0.2", false};
    const HostAddress mid{"eth2", "172.20.1.1", false};
    const HostAddress not_mid{"eth2", "172.32.1.1", false};  // just past 172.16/12
    const HostAddress home{"wlan0", "192.168.1.9", false};
    const HostAddress cgnat{"tun0", "100.64.3.3", false};
    const HostAddress global6{"eth0", "2001:db8::7", false};
    const HostAddress ula6{"eth1", "fd00::7", false};

    CHECK(pick({lo, pub, ten}) == "eth1 10.4.0.2");  // private first, whatever the order
    CHECK(pick({lo, pub, mid}) == "eth2 172.20.1.1");
    CHECK(pick({pub, home}) == "wlan0 192.168.1.9");
    CHECK(pick({pub, cgnat}) == "tun0 100.64.3.3");
    CHECK(pick({not_mid, pub}) == "eth2 172.32.1.1");  // no private: the first other one
    CHECK(pick({lo, link, pub}) == "eth0 203.0.113.7");
    CHECK(pick({lo, link, lo6, global6}) == "none");  // IPv4 wildcard: no IPv6 answer
    CHECK(pick({}) == "none");
    // An IPv6 wildcard advertises IPv6: unique local first, never link-local or loopback.
    CHECK(pick({lo6, link6, ten, global6, ula6}, true) == "eth1 fd00::7");
    CHECK(pick({lo6, link6, ten, global6}, true) == "eth0 2001:db8::7");
    CHECK(pick({lo6, link6, ten}, true) == "none");
    // This host's own list has loopback in it, marked internal.
    bool has_loopback = false;
    for (const HostAddress& a : host_addresses())
        has_loopback = has_loopback || (a.internal && a.ip == "127.0.0.1");
    CHECK(has_loopback);
}

TEST_CASE("a datagram sent to a bound socket arrives with its sender's address") {
    TestLoop loop;
    std::vector<uint8_t> got;
    std::optional<Endpoint> from;
    auto b =
        UdpSocket::open(loop.get(), loopback(), [&](std::span<const uint8_t> d, const Endpoint& f) {
            got.assign(d.begin(), d.end());
            from = f;
        });
    auto a = UdpSocket::open(loop.get(), loopback(), [](auto, auto&) {});
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    const auto payload = bytes(1400);
    REQUIRE((*a)->send((*b)->local(), payload));
    REQUIRE(loop.run_until([&] { return from.has_value(); }));
    REQUIRE(got == payload);
    REQUIRE(*from == (*a)->local());
    REQUIRE((*b)->stats().received == 1);
    REQUIRE((*a)->stats().sent_bytes == 1400);
}

TEST_CASE("binding a UDP port that is taken fails with a clear error") {
    TestLoop loop;
    auto a = UdpSocket::open(loop.get(), loopback(), [](auto, auto&) {});
    REQUIRE(a.ok());
    auto b = UdpSocket::open(loop.get(), (*a)->local(), [](auto, auto&) {});
    REQUIRE_FALSE(b.ok());
    REQUIRE_THAT(b.error().message, Catch::Contains("bind udp 127.0.0.1:"));
}

namespace {
// A server hub and a client hub on loopback, recording what happens.
struct Pair {
    TestLoop loop;
    std::vector<std::vector<uint8_t>> server_frames, client_frames;
    std::vector<std::optional<Error>> server_closed, client_closed;
    bool connected = false;
    std::function<void(FrameConn&, std::vector<uint8_t>)> server_reply =
        [](FrameConn&, std::vector<uint8_t>) {};
    std::function<void(FrameConn&)> client_on_connect = [](FrameConn&) {};
    FrameHub server;
    FrameHub client;

    explicit Pair(FrameLimits server_limits = {}, FrameLimits client_limits = {})
        : server(loop.get(), server_limits,
                 {[this](FrameConn& c, std::vector<uint8_t> f) {
                      server_frames.push_back(f);
                      server_reply(c, std::move(f));
                  },
                  nullptr,
                  [this](uint64_t, std::optional<Error> e) {
                      server_closed.push_back(std::move(e));
                  }}),
          client(loop.get(), client_limits,
                 {[this](FrameConn&, std::vector<uint8_t> f) {
                      client_frames.push_back(std::move(f));
                  },
                  [this](FrameConn& c) {
                      connected = true;
                      client_on_connect(c);
                  },
                  [this](uint64_t, std::optional<Error> e) {
                      client_closed.push_back(std::move(e));
                  }}) {
        REQUIRE(server.listen(loopback()).ok());
    }
    Endpoint at() { return *server.listening(); }
};
}  // namespace

namespace {
// The client sends `request`; the server answers with it reversed and closes.
void exchange_reversed(Pair& p, const std::vector<uint8_t>& request) {
    p.server_reply = [](FrameConn& c, std::vector<uint8_t> f) {
        std::reverse(f.begin(), f.end());
        c.send(f);
        c.close_after_write();
    };
    p.client_on_connect = [&](FrameConn& c) { REQUIRE(c.send(request)); };
    p.client.connect(p.at());
    REQUIRE(p.loop.run_until([&] { return !p.client_closed.empty() && !p.server_closed.empty(); }));
}
}  // namespace

TEST_CASE("a frame crosses whole, however the stream splits it, and the reply comes back") {
    Pair p;
    const auto request = bytes(300 * 1024, 7);  // several reads' worth
    exchange_reversed(p, request);
    REQUIRE(p.server_frames.size() == 1);
    REQUIRE(p.server_frames[0] == request);
    REQUIRE(p.client_frames.size() == 1);
    REQUIRE(p.client_frames[0] == std::vector<uint8_t>(request.rbegin(), request.rend()));
    REQUIRE_FALSE(p.client_closed[0].has_value());  // an orderly close
    REQUIRE(p.client.connections() == 0);
    REQUIRE(p.server.connections() == 0);
}

TEST_CASE("frames sent in one iteration arrive whole and in order, the last before a close") {
    Pair p;
    // 500 frames of different sizes, queued in one callback: they leave in one write and
    // arrive in few reads, each frame whole; close_after_write waits for all of them.
    std::vector<std::vector<uint8_t>> sent;
    for (size_t i = 0; i < 500; ++i)
        sent.push_back(bytes(1 + (i * 37) % 900, static_cast<uint8_t>(i)));
    p.client_on_connect = [&](FrameConn& c) {
        for (const auto& f : sent)
            REQUIRE(c.send(f));
        c.close_after_write();
    };
    p.client.connect(p.at());
    REQUIRE(p.loop.run_until([&] { return !p.server_closed.empty(); }));
    REQUIRE(p.server_frames == sent);
    REQUIRE(p.client.stats().frames_out == 500);
    REQUIRE(p.server.stats().frames_in == 500);
    REQUIRE_FALSE(p.server_closed[0].has_value());
}

TEST_CASE("a frame announcing more than the limit closes the connection at its header") {
    FrameLimits small;
    small.frame_bytes_max = 1024;
    Pair p(small);
    p.client_on_connect = [&](FrameConn& c) { REQUIRE(c.send(bytes(4096))); };
    p.client.connect(p.at());
    REQUIRE(p.loop.run_until([&] { return !p.client_closed.empty() && !p.server_closed.empty(); }));
    REQUIRE(p.server.stats().oversize == 1);
    REQUIRE(p.server_frames.empty());
    REQUIRE(p.server_closed[0]->code == "too_large");
}

TEST_CASE("a connection that sends nothing is closed after the idle timeout") {
    FrameLimits quick;
    quick.idle_timeout_ms = 100;
    Pair p(quick);
    p.client.connect(p.at());
    REQUIRE(p.loop.run_until([&] { return !p.server_closed.empty() && !p.client_closed.empty(); }));
    REQUIRE(p.server.stats().timeouts == 1);
    REQUIRE(p.server_closed[0]->code == "timeout");
}

TEST_CASE("connections beyond inbound_max are refused, the rest served") {
    FrameLimits two;
    two.inbound_max = 2;
    Pair p(two);
    for (int i = 0; i < 3; ++i)
        p.client.connect(p.at());
    REQUIRE(p.loop.run_until(
        [&] { return p.server.stats().accepted + p.server.stats().refused == 3; }));
    REQUIRE(p.server.stats().accepted == 2);
    REQUIRE(p.server.stats().refused == 1);
    REQUIRE(p.loop.run_until([&] { return p.client_closed.size() == 1; }));  // the refused one
    REQUIRE(p.client.connections() == 2);
}

TEST_CASE("connecting where nobody listens fails with an error, not a hang") {
    TestLoop loop;
    // A port that was listening a moment ago and no longer is.
    uint16_t port = 0;
    {
        FrameHub gone(loop.get(), {}, {});
        REQUIRE(gone.listen(loopback()).ok());
        port = gone.listening()->port();
    }
    std::vector<std::optional<Error>> closed;
    FrameHub client(loop.get(), {}, {nullptr, nullptr, [&](uint64_t, std::optional<Error> e) {
                                         closed.push_back(std::move(e));
                                     }});
    client.connect(loopback(port));
    REQUIRE(loop.run_until([&] { return !closed.empty(); }));
    REQUIRE(closed[0].has_value());
    REQUIRE_THAT(closed[0]->message, Catch::Contains("connect"));
    REQUIRE(client.connections() == 0);
}

TEST_CASE("a dial to a peer that never answers its SYN is given up at the connect timeout") {
    chorus::test::BlackHole hole;
    REQUIRE(hole.ok());
    TestLoop loop;
    FrameLimits l;
    l.connect_timeout_ms = 300;
    l.idle_timeout_ms = 60'000;  // not what ends it
    std::vector<std::optional<Error>> closed;
    bool connected = false;
    FrameHub client(loop.get(), l,
                    {nullptr, [&](FrameConn&) { connected = true; },
                     [&](uint64_t, std::optional<Error> e) { closed.push_back(std::move(e)); }});
    const uint64_t started = uv_hrtime();
    client.connect(loopback(hole.port()));
    // Without the connect timeout the kernel retries the SYN for about two minutes.
    REQUIRE(loop.run_until([&] { return !closed.empty(); }, 5'000));
    const uint64_t took_ms = (uv_hrtime() - started) / 1'000'000;
    REQUIRE(took_ms >= 250);  // not refused outright: it hung until the timeout
    REQUIRE_FALSE(connected);
    REQUIRE(closed[0]->code == "timeout");
    REQUIRE_THAT(closed[0]->message, Catch::Contains("not connected within 300 ms"));
    REQUIRE(client.stats().timeouts == 1);
    REQUIRE(client.connections() == 0);
}

TEST_CASE("dials are capped apart from accepted connections, so a flood cannot stop them") {
    TestLoop loop;
    FrameLimits one;
    one.inbound_max = 1;
    one.outbound_max = 1;
    FrameHub server(loop.get(), {}, {});
    REQUIRE(server.listen(loopback()).ok());
    FrameHub hub(loop.get(), one, {});
    REQUIRE(hub.listen(loopback()).ok());
    // Strangers take every inbound place.
    FrameHub strangers(loop.get(), {}, {});
    strangers.connect(*hub.listening());
    strangers.connect(*hub.listening());
    REQUIRE(loop.run_until([&] { return hub.stats().accepted + hub.stats().refused == 2; }));
    REQUIRE(hub.inbound() == 1);
    // The hub still dials, once, up to its own cap.
    REQUIRE(hub.connect(*server.listening()) != 0);
    REQUIRE(hub.connect(*server.listening()) == 0);
    REQUIRE(hub.outbound() == 1);
    REQUIRE(hub.stats().refused == 2);  // one stranger, one dial
}

TEST_CASE("frames arriving on many connections share one byte budget") {
    FrameLimits l;
    l.inbox_bytes_max = 100'000;
    Pair p(l);
    // Raw sockets, so a frame can be left half sent: each announces 80,000 bytes and sends
    // 60,000 of them.
    const auto open_half = [&] {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(p.at().port());
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
        std::vector<uint8_t> half = {0x00, 0x01, 0x38, 0x80};  // 80,000
        const auto body = bytes(60'000);
        half.insert(half.end(), body.begin(), body.end());
        REQUIRE(::write(fd, half.data(), half.size()) == static_cast<ssize_t>(half.size()));
        return fd;
    };
    const int first = open_half();
    REQUIRE(p.loop.run_until([&] { return p.server.inbox_bytes() == 60'004; }));
    const int second = open_half();  // 120,008 together: over the budget
    REQUIRE(p.loop.run_until([&] { return p.server.stats().inbox_full == 1; }));
    REQUIRE(p.server.inbox_bytes() == 60'004);  // the first is still held, whole so far
    // The first completes and is delivered; the budget is free again.
    const auto rest = bytes(20'000);
    REQUIRE(::write(first, rest.data(), rest.size()) == 20'000);
    REQUIRE(p.loop.run_until([&] { return p.server_frames.size() == 1; }));
    REQUIRE(p.server_frames[0].size() == 80'000);
    REQUIRE(p.server.inbox_bytes() == 0);
    ::close(first);
    ::close(second);
}

TEST_CASE("a peer that does not read is cut off once the queue for it reaches the limit") {
    // A listener whose connections are never accepted nor read: the kernel's buffers fill,
    // then frames queue in the hub, which gives up at the limit instead of holding them all.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 1) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);

    TestLoop loop;
    FrameLimits small;
    small.write_queue_bytes_max = 1u << 20;
    std::vector<std::optional<Error>> closed;
    uint64_t conn = 0;
    FrameHub client(loop.get(), small,
                    {nullptr, [&](FrameConn& c) { conn = c.id(); },
                     [&](uint64_t, std::optional<Error> e) { closed.push_back(std::move(e)); }});
    REQUIRE(client.connect(loopback(ntohs(addr.sin_port))) != 0);
    const auto frame = bytes(256 * 1024);
    size_t sent = 0;  // at most 400 frames (100 MiB): far beyond any loopback socket's buffers
    REQUIRE(loop.run_until([&] {
        if (FrameConn* c = conn != 0 ? client.find(conn) : nullptr; c != nullptr && sent < 400) {
            REQUIRE(c->send(frame));
            ++sent;
        }
        return !closed.empty();
    }));
    ::close(fd);
    REQUIRE(closed[0].has_value());
    REQUIRE(closed[0]->code == "slow_peer");
    REQUIRE(client.stats().slow == 1);
    REQUIRE(client.connections() == 0);
}

namespace {
Envelope envelope_for(const Key& k, EnvelopeOptions o = {}) {
    return Envelope(Keyring::make({k}).value(), "c", o);
}
}  // namespace

TEST_CASE("sealed frames cross between hubs that share a key") {
    const Key k = new_key();
    Pair p;
    Envelope server_env = envelope_for(k);
    Envelope client_env = envelope_for(k);
    p.server.set_envelope(&server_env);
    p.client.set_envelope(&client_env);
    const auto request = bytes(100 * 1024, 3);
    exchange_reversed(p, request);
    REQUIRE(p.server_frames == std::vector<std::vector<uint8_t>>{request});
    REQUIRE(p.client_frames.size() == 1);
    REQUIRE(p.client_frames[0] == std::vector<uint8_t>(request.rbegin(), request.rend()));
    REQUIRE(server_env.sealer().stats().opened == 1);
    REQUIRE(client_env.sealer().stats().opened == 1);
    REQUIRE_FALSE(p.server_closed[0].has_value());
}

TEST_CASE("a frame from a hub with another key, or none, closes its connection as unsealed") {
    Pair p;
    Envelope server_env = envelope_for(new_key());
    p.server.set_envelope(&server_env);
    std::optional<Envelope> client_env;
    SECTION("another key") {
        client_env.emplace(Keyring::make({new_key()}).value(), "c", EnvelopeOptions{});
    }
    SECTION("no key") {}
    if (client_env) p.client.set_envelope(&*client_env);
    p.client_on_connect = [&](FrameConn& c) { REQUIRE(c.send(bytes(64))); };
    p.client.connect(p.at());
    REQUIRE(p.loop.run_until([&] { return !p.server_closed.empty() && !p.client_closed.empty(); }));
    REQUIRE(p.server_frames.empty());
    REQUIRE(p.server_closed[0]->code == "unsealed");
    REQUIRE(p.server.stats().unsealed == 1);
    REQUIRE(server_env.sealer().stats().refused == 1);
}

TEST_CASE(
    "while a cluster moves to encryption, clear frames are taken until incoming is verified") {
    const Key k = new_key();
    Pair p;
    // Step 1 on the server (a key, nothing verified); the client has not moved yet.
    Envelope server_env = envelope_for(k, {false, false});
    p.server.set_envelope(&server_env);
    p.server_reply = [](FrameConn& c, std::vector<uint8_t> f) { c.send(f); };
    const auto clear = bytes(200, 9);
    p.client_on_connect = [&](FrameConn& c) { REQUIRE(c.send(clear)); };
    p.client.connect(p.at());
    REQUIRE(p.loop.run_until([&] { return p.client_frames.size() == 1; }));
    REQUIRE(p.server_frames == std::vector<std::vector<uint8_t>>{clear});
    REQUIRE(p.client_frames[0] == clear);  // the answer went in clear: outgoing is off
    REQUIRE(server_env.clear_taken() == 1);
    REQUIRE(p.server_closed.empty());
}

TEST_CASE("a sealed frame shows nothing of its bytes on the wire") {
    TestLoop loop;
    // A plain socket listens and reads what a sealing hub sends it.
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(::listen(listener, 1) == 0);
    socklen_t len = sizeof(a);
    REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    const auto to = loopback(ntohs(a.sin_port));

    Envelope env = envelope_for(new_key());
    FrameHub hub(loop.get(), {},
                 {nullptr, [](FrameConn& c) { c.send(std::vector<uint8_t>(512, 'Q')); }, nullptr});
    hub.set_envelope(&env);
    hub.connect(to);
    REQUIRE(loop.run_until([&] { return hub.stats().frames_out == 1; }));
    const int peer = ::accept(listener, nullptr, nullptr);
    REQUIRE(peer >= 0);
    std::vector<uint8_t> wire;
    const size_t expected = 4 + 512 + kSealOverhead;
    REQUIRE(loop.run_until([&] {
        uint8_t buf[4096];
        const ssize_t n = ::recv(peer, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) wire.insert(wire.end(), buf, buf + n);
        return wire.size() >= expected;
    }));
    REQUIRE(wire.size() == expected);
    const std::string run(8, 'Q');  // any 8 bytes of the frame in clear
    REQUIRE(std::search(wire.begin(), wire.end(), run.begin(), run.end()) == wire.end());
    ::close(peer);
    ::close(listener);
}

// ---------------------------------------------------------------------------------------------
// DNS SRV seeds: the name in the seed, and the records in an answer

namespace {
// A DNS answer as a server sends it, built by hand: the header, one question, then the records.
struct DnsMessage {
    std::vector<unsigned char> b;
    void u16(unsigned v) {
        b.push_back(static_cast<unsigned char>(v >> 8));
        b.push_back(static_cast<unsigned char>(v));
    }
    void name(std::string_view n) {  // uncompressed, from dotted text
        size_t start = 0;
        while (start < n.size()) {
            const size_t dot = std::min(n.find('.', start), n.size());
            b.push_back(static_cast<unsigned char>(dot - start));
            b.insert(b.end(), n.begin() + static_cast<ptrdiff_t>(start),
                     n.begin() + static_cast<ptrdiff_t>(dot));
            start = dot + 1;
        }
        b.push_back(0);
    }
    explicit DnsMessage(unsigned answers) {
        u16(0x1234);  // id
        u16(0x8180);  // a response, recursion desired and available, no error
        u16(1);       // questions
        u16(answers);
        u16(0);
        u16(0);
        name("_chorus._tcp.example");  // at offset 12: answers point back to it
        u16(33);                       // SRV
        u16(1);                        // IN
    }
    // One record for the question's name (a pointer to offset 12); `target` written out, or as
    // a pointer when it starts with '@' ("@12" points at the question's name).
    void srv(unsigned priority, unsigned weight, unsigned port, std::string_view target,
             unsigned type = 33) {
        u16(0xC00C);
        u16(type);
        u16(1);
        u16(0);
        u16(60);  // TTL
        DnsMessage data(0);
        data.b.clear();
        data.u16(priority);
        data.u16(weight);
        data.u16(port);
        if (target.starts_with('@')) {
            data.u16(0xC000 | static_cast<unsigned>(std::stoi(std::string(target.substr(1)))));
        } else {
            data.name(target);
        }
        u16(static_cast<unsigned>(data.b.size()));
        b.insert(b.end(), data.b.begin(), data.b.end());
    }
};
}  // namespace

TEST_CASE("an SRV seed's name is checked and other seeds are left alone") {
    CHECK(srv_seed_name("dnssrv+_chorus._tcp.example.com").value() == "_chorus._tcp.example.com");
    CHECK(srv_seed_name("dnssrv+_chorus._tcp.example.com.").value() == "_chorus._tcp.example.com");
    CHECK(srv_seed_name("chorus-0.example:7900").value().empty());  // not an SRV seed
    for (const char* bad : {"dnssrv+", "dnssrv+.", "dnssrv+a..b", "dnssrv+a b", "dnssrv+a/b"}) {
        INFO(bad);
        auto r = srv_seed_name(bad);
        REQUIRE_FALSE(r);
        CHECK(r.error().message.find(std::string("'") + bad + "' is not an SRV seed") == 0);
    }
    CHECK_FALSE(srv_seed_name("dnssrv+" + std::string(64, 'a') + ".example"));
    CHECK(srv_seed_name("dnssrv+" + std::string(63, 'a') + ".example"));
    std::string long_name = "dnssrv+";
    for (int i = 0; i < 64; ++i)
        long_name += "abc.";
    CHECK_FALSE(srv_seed_name(long_name + "x"));  // 257 characters
}

TEST_CASE("an SRV answer gives its targets, lowest priority then heaviest weight first") {
    DnsMessage m(5);
    m.srv(20, 0, 7903, "c.example");
    m.srv(10, 5, 7901, "a.example");
    m.srv(10, 50, 7902, "b.example.");
    m.srv(0, 0, 0, ".");                        // the service is not offered there
    m.srv(0, 0, 0, "x.example", /*type A=*/1);  // not an SRV record: skipped
    auto r = parse_srv_answer(m.b);
    REQUIRE(r);
    REQUIRE(r->size() == 3);
    CHECK((*r)[0].host == "b.example");
    CHECK((*r)[0].port == 7902);
    CHECK((*r)[0].weight == 50);
    CHECK((*r)[1].host == "a.example");
    CHECK((*r)[2].host == "c.example");
    CHECK((*r)[2].priority == 20);

    SECTION("a target given as a pointer to a name earlier in the message") {
        DnsMessage p(1);
        p.srv(0, 0, 7900, "@12");
        auto q = parse_srv_answer(p.b);
        REQUIRE(q);
        REQUIRE(q->size() == 1);
        CHECK((*q)[0].host == "_chorus._tcp.example");
    }
    SECTION("at most kSrvTargetsMax targets are taken") {
        DnsMessage big(100);
        for (unsigned i = 0; i < 100; ++i)
            big.srv(i, 0, 7000 + i, fmt::format("n{}.example", i));
        auto q = parse_srv_answer(big.b);
        REQUIRE(q);
        CHECK(q->size() == kSrvTargetsMax);
        CHECK(q->front().host == "n0.example");
    }
}

TEST_CASE("an SRV answer that does not parse is refused, never read past its end") {
    DnsMessage m(1);
    m.srv(10, 5, 7901, "a.example");
    SECTION("cut short anywhere") {
        for (size_t n = 0; n < m.b.size(); ++n) {
            INFO(n);
            CHECK_FALSE(parse_srv_answer(std::span(m.b.data(), n)));
        }
    }
    SECTION("a record too short for an SRV record") {
        DnsMessage s(1);
        s.u16(0xC00C);
        s.u16(33);
        s.u16(1);
        s.u16(0);
        s.u16(60);
        s.u16(4);
        s.u16(1);
        s.u16(2);
        CHECK_FALSE(parse_srv_answer(s.b));
    }
    SECTION("a target name that runs past its record") {
        DnsMessage s(2);
        s.srv(1, 1, 7901, "a.example");
        // The first record's data length says 7: its name goes on into the next record.
        const size_t rdlength_at = 12 + 26 + 10;  // header, question, name to TTL
        s.b[rdlength_at] = 0;
        s.b[rdlength_at + 1] = 7;
        s.srv(1, 1, 7902, "b.example");
        CHECK_FALSE(parse_srv_answer(s.b));
    }
    SECTION("a target that points at itself") {
        DnsMessage s(1);
        s.srv(1, 1, 7901, "@56");  // header, question, 10 bytes to TTL, length, 6 bytes
        CHECK_FALSE(parse_srv_answer(s.b));
    }
}
