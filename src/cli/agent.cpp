// `chorus agent`: runs one member until a signal or POST /v1/leave, leaving gracefully.
#include <uv.h>

#include <csignal>
#include <ctime>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "daemon/agent.hpp"
#include "daemon/log.hpp"
#include "daemon/tasks.hpp"
#include "http/api.hpp"
#include "http/client.hpp"
#include "http/server.hpp"

namespace chorus::cli {

using namespace chorus::daemon;

namespace {

struct Running {
    uv_loop_t* loop;
    Agent* agent;
    const Logger* log;
    Duration leave_timeout;
    int signals = 0;
    TaskService* tasks = nullptr;  // set once the task service exists
    bool handed_off = false;

    // Graceful leave, from a signal or POST /v1/leave: `left` runs once the leave has spread
    // (or timed out), then the loop stops.
    void leave(std::string_view why, std::function<void()> left) {
        if (tasks != nullptr && !handed_off) {
            log->log(Level::info, "handing queued tasks over before leaving",
                     {{"reason", std::string(why)}});
            handed_off = true;
            // Queued tasks go to other candidates first, while this node is still a member
            // they can answer.
            tasks->hand_off(leave_timeout, [this, why = std::string(why), left = std::move(left)](
                                               size_t handed, size_t kept) mutable {
                log->log(Level::info, "queued tasks handed over",
                         {{"handed", std::to_string(handed)}, {"kept", std::to_string(kept)}});
                leave(why, std::move(left));
            });
            return;
        }
        log->log(Level::info, "leaving the cluster", {{"reason", std::string(why)}});
        agent->leave(leave_timeout, [this, left = std::move(left)] {
            if (left) left();
            log->log(Level::info, "left; stopping");
            uv_stop(loop);
        });
    }
};

void on_signal(uv_signal_t* h, int signum) {
    auto* r = static_cast<Running*>(h->data);
    if (++r->signals > 1) {
        r->log->log(Level::warn, "second signal: stopping without waiting for the leave");
        uv_stop(r->loop);
        return;
    }
    r->leave(signum == SIGINT ? "SIGINT" : "SIGTERM", nullptr);
}

// Every limit a peer or client can run this node into is counted where it is enforced; this
// logs the ones that were hit, at most one line per limit every kEvery, with how many times
// (a flood must not become a flood of log lines). The counters are in /metrics too.
class LimitWatch {
  public:
    static constexpr uint64_t kEveryMs = 10'000;
    struct Limit {
        const char* name;
        const char* what;  // what was refused, and the setting or constant that bounds it
        std::function<uint64_t()> count;
        uint64_t seen = 0;
    };
    LimitWatch(uv_loop_t* loop, const Logger& log, std::vector<Limit> limits)
        : log_(log), limits_(std::move(limits)) {
        for (Limit& l : limits_)
            l.seen = l.count();
        timer_ = net::make_timer(loop, this).value();
        uv_timer_start(
            timer_.get(),
            [](uv_timer_t* t) {
                if (auto* self = static_cast<LimitWatch*>(t->data)) self->check();
            },
            kEveryMs, kEveryMs);
    }

  private:
    void check() {
        for (Limit& l : limits_) {
            const uint64_t now = l.count();
            if (now == l.seen) continue;
            log_.log(
                Level::warn, "limit reached",
                {{"limit", l.name}, {"times", std::to_string(now - l.seen)}, {"what", l.what}});
            l.seen = now;
        }
    }
    const Logger& log_;
    std::vector<Limit> limits_;
    net::Handle<uv_timer_t> timer_;
};

// The http task handler's transport: the CLI's client, run asynchronously on the agent's loop.
HttpPost http_post(uv_loop_t* loop) {
    return [loop](const std::string& url, std::string body, Duration timeout, size_t body_max,
                  std::function<void(Result<std::pair<int, std::string>>)> done) {
        // check_handler admitted only http://ip:port/path.
        const std::string_view rest = std::string_view(url).substr(7);
        const size_t slash = rest.find('/');
        const auto to = net::Endpoint::parse(rest.substr(0, slash)).value();
        http::ClientRequest req;
        req.method = "POST";
        req.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
        req.body = std::move(body);
        req.timeout = timeout;
        req.body_bytes_max = body_max;
        http::fetch_async(loop, to, std::move(req),
                          [done = std::move(done)](Result<http::ClientResponse> r) {
                              if (!r) return done(r.error());
                              done(std::pair<int, std::string>{r->status, std::move(r->body)});
                          });
    };
}

}  // namespace

int run_agent(const Settings& settings) {
    auto options = to_agent_options(settings);
    if (!options) {
        fmt::print(stderr, "chorus agent: {}\n", options.error().message);
        return 2;
    }
    const Logger log(Logger::parse_level(settings.log_level), settings.log_format == "json");
    // A restarted node should outrank its previous life before it hears of it, so incarnations
    // start from the wall clock's seconds; refutation covers the rest (SWIM §4.2).
    options->identity.incarnation = Incarnation{static_cast<uint64_t>(std::time(nullptr))};
    std::unique_ptr<http::Api> api;
    std::unique_ptr<TaskService> tasks;
    options->on_event = [&log, &api, &tasks](const MemberEvent& e) {
        if (tasks) tasks->member_changed(e);
        if (api) api->changed(e);
        const std::string state = e.current ? std::string(to_string(*e.current)) : "removed";
        log.log(e.current == MemberState::alive || !e.current ? Level::info : Level::warn,
                fmt::format("member {}", state),
                {{"name", e.name.str()}, {"incarnation", std::to_string(e.incarnation.value)}});
    };
    options->on_rejected = [&log](const wire::DecodeFailure& f, uint64_t suppressed) {
        log.log(Level::warn, "dropped a bad packet",
                {{"reason", std::string(wire::to_string(f.reason))},
                 {"detail", f.detail},
                 {"suppressed", std::to_string(suppressed)}});
    };
    const net::Endpoint http_at = net::Endpoint::parse(settings.http).value();

    // A task's command that exits without reading its stdin, or a client that hangs up, must
    // cost a write error, not the agent.
    std::signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc = 0;
    {
        auto agent = Agent::start(&loop, std::move(*options));
        if (!agent) {
            log.log(Level::error, "could not start", {{"error", agent.error().message}});
            rc = 1;
        }
        Result<std::unique_ptr<http::Server>> server = Error{"not_started", ""};
        Running r{&loop, agent ? agent->get() : nullptr, &log, settings.leave_timeout};
        if (agent) {
            tasks = std::make_unique<TaskService>(&loop, **agent, settings.tasks, http_post(&loop));
            tasks->on_journal_state = [&log](const std::optional<Error>& failing) {
                if (failing) {
                    log.log(Level::error,
                            "the task journal cannot commit; refusing tasks until it can",
                            {{"error", failing->message}});
                } else {
                    log.log(Level::info, "the task journal commits again; taking tasks");
                }
            };
            r.tasks = tasks.get();
            api = std::make_unique<http::Api>(&loop, **agent,
                                              http::Api::Info{settings.profile, "0.1.0",
                                                              [&r](std::function<void()> left) {
                                                                  r.leave("POST /v1/leave",
                                                                          std::move(left));
                                                              },
                                                              tasks.get()});
            http::Limits http_limits;
            // A task's body is its payload plus a few short fields; the payload limit itself
            // is checked once the body is parsed, so both ends give a 413.
            http_limits.body_bytes_max = settings.tasks.limits.payload_bytes_max + (64u << 10);
            server = http::Server::listen(
                &loop, http_at, http_limits, settings.name,
                [&api](const http::Request& req, http::Reply reply) { api->handle(req, reply); });
            if (!server) {
                log.log(Level::error, "could not start the HTTP API",
                        {{"error", server.error().message}});
                rc = 1;
            } else {
                api->attach(server->get());
            }
        }
        if (rc == 0) {
            uv_signal_t sigint, sigterm;
            for (const auto& [h, sig] :
                 {std::pair{&sigint, SIGINT}, std::pair{&sigterm, SIGTERM}}) {
                uv_signal_init(&loop, h);
                h->data = &r;
                uv_signal_start(h, on_signal, sig);
            }
            if (const auto& e = tasks->journal_error()) {
                log.log(Level::error, "the task journal cannot be used; refusing tasks (503)",
                        {{"error", e->message}});
            } else if (const Journal* j = tasks->journal()) {
                log.log(Level::info, "task journal open",
                        {{"path", j->path()},
                         {"recovered", std::to_string(tasks->stats().recovered)},
                         {"queued_again", std::to_string(tasks->stats().requeued)}});
            } else {
                log.log(Level::warn,
                        "tasks are kept in memory only and are lost if this agent stops; give "
                        "--data-dir to keep them");
            }
            const Agent& a = **agent;
            const http::Server& s = **server;
            const TaskService& t = *tasks;
            const http::Api& ap = *api;
            LimitWatch watch(
                &loop, log,
                {{"http_connections", "HTTP connections refused: connections_max open",
                  [&s] { return s.stats().refused; }},
                 {"http_connections_per_client",
                  "HTTP connections refused: connections_per_client_max from one address",
                  [&s] { return s.stats().refused_per_client; }},
                 {"http_bodies", "HTTP requests refused (503): bodies_bytes_max arriving at once",
                  [&s] { return s.stats().busy; }},
                 {"http_waiters", "blocking queries refused (429): waiters_max waiting",
                  [&ap] { return ap.waiters_refused(); }},
                 {"http_streams", "event streams refused (429): streams_max open",
                  [&ap] { return ap.streams_refused(); }},
                 {"http_stream_backlog", "event streams dropped: their client did not read",
                  [&s] { return s.stats().stream_overflows; }},
                 {"stream_connections",
                  "gossip TCP connections refused: inbound_max or outbound_max open",
                  [&a] { return a.streams().stats().refused; }},
                 {"stream_inbox", "gossip TCP connections closed: inbox_bytes_max arriving",
                  [&a] { return a.streams().stats().inbox_full; }},
                 {"stream_write_queue", "gossip TCP peers cut off: write_queue_bytes_max queued",
                  [&a] { return a.streams().stats().slow; }},
                 {"members", "members refused: the member table holds members_max",
                  [&a] { return a.node().stats().members_refused; }},
                 {"incarnation_lead", "membership claims refused: incarnation too far ahead",
                  [&a] { return a.node().stats().claims_refused; }},
                 {"udp_send_queue", "gossip datagrams dropped: the send queue was full",
                  [&a] { return a.udp().stats().send_dropped; }},
                 {"task_queue", "tasks refused (503): capacity + queue_max taken",
                  [&t] { return t.stats().full; }},
                 {"task_copies", "copies refused (503): copies_max or copies_bytes_max held",
                  [&t] { return t.stats().copies_refused; }},
                 {"task_dial_backlog", "dials given up: backlog_bytes_max waited on them",
                  [&t] { return t.stats().backlog_overflows; }}});
            log.log(Level::info, "agent started",
                    {{"name", settings.name},
                     {"bind", (*agent)->bound().str()},
                     {"advertise", (*agent)->node().self().addr.value.str()},
                     {"http", (*server)->local().str()},
                     {"cluster", settings.cluster},
                     {"profile", settings.profile}});
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
            uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
        }
        api.reset();
        tasks.reset();
    }
    // Let every handle's close callback run before the loop goes.
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}

}  // namespace chorus::cli
