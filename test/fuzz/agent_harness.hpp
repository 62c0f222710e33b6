// The agent the network fuzz targets talk to: a real daemon::Agent (no seeds, bound to
// 127.0.0.1:0, profile local) with its TaskService in memory, http::Api and http::Server on
// 127.0.0.1:0, wired as `chorus agent` wires them (src/cli/agent.cpp). An input goes to it the
// way a client's bytes do: over a fresh TCP connection, then the loop runs until the agent closes
// the connection, the answer is complete, or a short deadline passes.
//
// Built once and kept for the process, for speed (an exchange costs a connect and a few turns of
// the loop). What one input leaves behind must not change what the next sees, beyond tasks
// running or kept: when an exchange ends with the server still holding a connection (a request
// its handler has not answered, with the client's further bytes unread) or blocking queries
// piling up, the server, API and task service are built again. Nothing an HTTP client sends can
// change the agent's view (it never joins or leaves); a push-pull on the stream port can, and
// once it holds more than a few peers the agent starts again too.
//
// CHORUS_FUZZ_SHOW=1 prints every exchange: what was sent and what came back.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "check.hpp"
#include "daemon/agent.hpp"
#include "daemon/tasks.hpp"
#include "http/api.hpp"
#include "http/server.hpp"
#include "net/handle.hpp"

namespace chorus::fuzz {

class AgentHarness {
  public:
    // The longest an exchange waits for the agent. Every request the agent can answer at once
    // is answered, and closed on the client's EOF, within a few turns of the loop; this bounds
    // the rest (a blocking query with more requests pipelined behind it, a task still running).
    static constexpr uint64_t kDeadlineMs = 25;
    // An event stream never ends by itself; past this many bytes the client stops reading.
    static constexpr size_t kReceivedBytesMax = 256 << 10;
    // Blocking queries outlive their client's connection until their wait ends (up to 10
    // minutes); past this many the API is built again rather than let them reach
    // Api::kWaitersMax, beyond which every blocking query is refused.
    static constexpr size_t kWaitersKept = 64;
    // Peers a push-pull on the stream port added (fuzz_stream); past this many the agent starts
    // again, so its view (and every answer that lists it) stays small.
    static constexpr size_t kMembersKept = 16;

    struct Exchange {
        std::string received;  // at most kReceivedBytesMax bytes
        bool closed = false;   // by the agent
    };
    struct Options {
        // Shut down the write side once everything is sent, as a client with nothing more to
        // say does: the agent answers what it has read, then sees the end.
        bool half_close = true;
        // Ends the exchange early, given what has arrived (a complete reply).
        std::function<bool(std::string_view received)> complete;
    };

    // Never destroyed: libFuzzer exits from inside a run, and the loop torn down then would only
    // add noise to a report.
    static AgentHarness& get() {
        static AgentHarness* h = new AgentHarness();
        return *h;
    }

    Exchange http(std::string_view bytes, const Options& o) {
        return settled(exchange(server_->local(), bytes, o));
    }
    // The agent's stream port: length-prefixed frames (push-pull, task forwarding).
    Exchange frames(std::string_view bytes, const Options& o) {
        return settled(exchange(agent_->bound(), bytes, o));
    }
    daemon::TaskService& tasks() { return *tasks_; }
    daemon::Agent& agent() { return *agent_; }
    std::string cluster() const { return agent_->node().config().cluster; }

  private:
    AgentHarness() {
        const char* show = std::getenv("CHORUS_FUZZ_SHOW");
        show_ = show != nullptr && std::string_view(show) == "1";
        // The agent ignores SIGPIPE (a client that hangs up costs a write error); so do we.
        std::signal(SIGPIPE, SIG_IGN);
        uv_loop_init(&loop_);
        deadline_ = net::make_timer(&loop_, nullptr).value();
        start_agent();
    }

    void start_agent() {
        daemon::AgentOptions o;
        o.config = Config::local();
        o.identity.name = "fuzz";
        o.identity.http = "127.0.0.1:7980";
        o.bind = net::Endpoint::parse("127.0.0.1:0").value();
        o.rng_seed = 1;
        o.task_limits = task_options().limits;
        o.on_event = [this](const MemberEvent& e) {
            if (tasks_) tasks_->member_changed(e);
            if (api_) api_->changed(e);
        };
        agent_ = daemon::Agent::start(&loop_, std::move(o)).value();
        start_services();
        // Whatever the agent does as it starts (its own alive event) happens before any input.
        uv_run(&loop_, UV_RUN_NOWAIT);
    }

    // The daemon's task settings, with timeouts short enough that a sleeping task from one
    // input frees its slot within a few exchanges, and a queue and retention that stay small.
    static daemon::TaskOptions task_options() {
        daemon::TaskOptions t;
        t.limits.timeout_default = milliseconds(10);
        t.limits.timeout_max = milliseconds(kDeadlineMs);
        t.limits.queue_max = 64;
        t.limits.results_max = 256;
        return t;
    }

    void start_services() {
        tasks_ = std::make_unique<daemon::TaskService>(
            &loop_, *agent_, task_options(),
            [](const std::string&, std::string, Duration, size_t, auto done) {
                done(Error{"unreachable", "the fuzz harness has no http handlers"});
            });
        api_ = std::make_unique<http::Api>(&loop_, *agent_,
                                           http::Api::Info{"local", "fuzz", {}, tasks_.get()});
        http::Limits limits;
        // As chorus agent sets it: a task's payload and a few short fields.
        limits.body_bytes_max = task_options().limits.payload_bytes_max + (64u << 10);
        server_ =
            http::Server::listen(
                &loop_, net::Endpoint::parse("127.0.0.1:0").value(), limits, "fuzz",
                [this](const http::Request& req, http::Reply reply) { api_->handle(req, reply); })
                .value();
        api_->attach(server_.get());
    }

    // As src/cli/agent.cpp stops them: the server's connections go first, then the API, then the
    // task service.
    void restart_services() {
        server_.reset();
        api_.reset();
        tasks_.reset();
        uv_run(&loop_, UV_RUN_NOWAIT);
        start_services();
    }

    // The harness's own system calls: a failure is the harness's, not the agent's.
    static void require(bool ok, const char* call) {
        if (ok) return;
        std::fprintf(stderr, "fuzz harness: %s: %s\n", call, std::strerror(errno));
        std::abort();
    }

    Exchange settled(Exchange e) {
        if (agent_->node().members().size() > kMembersKept) {
            server_.reset();
            api_.reset();
            tasks_.reset();
            agent_.reset();
            uv_run(&loop_, UV_RUN_NOWAIT);
            start_agent();
        } else if (server_->connections() > 0 || api_->waiting() >= kWaitersKept) {
            restart_services();
        }
        return e;
    }

    // Connects the non-blocking socket `fd`. On loopback the kernel completes the handshake
    // into the listener's backlog, without the loop. libFuzzer's timer signal may interrupt
    // the wait (its handler does not restart calls), so it is a poll that resumes.
    static void connect(int fd, const net::Endpoint& to) {
        if (::connect(fd, to.sa(), sizeof(sockaddr_in)) == 0) return;
        require(errno == EINPROGRESS || errno == EINTR, "connect");
        pollfd p{fd, POLLOUT, 0};
        int ready = 0;
        while ((ready = ::poll(&p, 1, 10'000)) < 0 && errno == EINTR) {
        }
        require(ready == 1, "poll for connect");
        int error = 0;
        socklen_t len = sizeof(error);
        require(::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0, "getsockopt");
        errno = error;
        require(error == 0, "connect");
    }

    Exchange exchange(const net::Endpoint& to, std::string_view out, const Options& o) {
        Exchange ex;
        const uint64_t began_ns = uv_hrtime();
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        require(fd >= 0, "socket");
        // A run makes hundreds of thousands of connections, each leaving a minute of TIME_WAIT
        // behind: from one source address they would use up the ephemeral ports. All of
        // 127.0.0.0/8 is loopback, so each connection comes from the next address in it.
        sockaddr_in from{};
        from.sin_family = AF_INET;
        from.sin_addr.s_addr =
            htonl(0x7F000000u | static_cast<uint32_t>(1 + connections_++ % 0xFFFFFE));
        require(::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) == 0, "bind");
        require(::fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "fcntl");
        connect(fd, to);

        uv_update_time(&loop_);
        const uint64_t deadline = uv_now(&loop_) + kDeadlineMs;
        // Wakes the loop at the deadline even if nothing else would.
        uv_timer_start(
            deadline_.get(), [](uv_timer_t*) {}, kDeadlineMs, 0);
        size_t sent = 0;
        bool shut = false;
        for (;;) {
            while (sent < out.size()) {
                const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
                if (n > 0) {
                    sent += static_cast<size_t>(n);
                    continue;
                }
                if (n < 0 && errno == EINTR) continue;
                // Unless the agent is only slow to read, it closed its side: nothing more goes.
                if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) sent = out.size();
                break;
            }
            if (o.half_close && !shut && sent == out.size()) {
                ::shutdown(fd, SHUT_WR);
                shut = true;
            }
            for (;;) {
                const ssize_t n = ::recv(fd, buffer_, sizeof(buffer_), 0);
                if (n > 0) {
                    const size_t room = kReceivedBytesMax - ex.received.size();
                    ex.received.append(buffer_, std::min(room, static_cast<size_t>(n)));
                    if (ex.received.size() >= kReceivedBytesMax) break;
                    continue;
                }
                if (n < 0 && errno == EINTR) continue;
                if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) ex.closed = true;
                break;
            }
            if (ex.closed || ex.received.size() >= kReceivedBytesMax) break;
            if (o.complete && o.complete(ex.received)) break;
            if (uv_now(&loop_) >= deadline) break;
            uv_run(&loop_, UV_RUN_ONCE);
        }
        uv_timer_stop(deadline_.get());
        ::close(fd);
        if (show_) {
            std::fprintf(stderr,
                         "--> %zu of %zu bytes sent to %s\n<-- %zu bytes in %.3f ms, %s:\n%s\n",
                         sent, out.size(), to.str().c_str(), ex.received.size(),
                         static_cast<double>(uv_hrtime() - began_ns) / 1e6,
                         ex.closed ? "then closed" : "connection still open", ex.received.c_str());
        }
        // The agent sees the client go, unless it stopped reading (a request awaits its answer).
        uv_run(&loop_, UV_RUN_NOWAIT);
        return ex;
    }

    uv_loop_t loop_{};
    net::Handle<uv_timer_t> deadline_;
    std::unique_ptr<daemon::Agent> agent_;
    std::unique_ptr<daemon::TaskService> tasks_;
    std::unique_ptr<http::Api> api_;
    std::unique_ptr<http::Server> server_;
    uint64_t connections_ = 0;
    bool show_ = false;  // CHORUS_FUZZ_SHOW=1: print every exchange (to read a reproducer)
    char buffer_[64 << 10];
};

}  // namespace chorus::fuzz
