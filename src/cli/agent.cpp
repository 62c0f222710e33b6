// `chorus agent`: runs one member until a signal or POST /v1/leave, leaving gracefully.
#include <uv.h>

#include <csignal>
#include <ctime>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "daemon/agent.hpp"
#include "daemon/log.hpp"
#include "http/api.hpp"
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

    // Graceful leave, from a signal or POST /v1/leave: `left` runs once the leave has spread
    // (or timed out), then the loop stops.
    void leave(std::string_view why, std::function<void()> left) {
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

}  // namespace

int run_agent(const Settings& settings) {
    auto options = to_agent_options(settings);
    if (!options) {
        fmt::print(stderr, "chorus agent: {}\n", options.error().message);
        return 2;
    }
    const Logger log(Logger::parse_level(settings.log_level), settings.log_format == "json");
    // DESIGN §2: a restarted node should outrank its previous life before it hears of it, so
    // incarnations start from the wall clock's seconds; refutation covers the rest.
    options->identity.incarnation = Incarnation{static_cast<uint32_t>(std::time(nullptr))};
    std::unique_ptr<http::Api> api;
    options->on_event = [&log, &api](const MemberEvent& e) {
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
            api = std::make_unique<http::Api>(
                &loop, **agent,
                http::Api::Info{settings.profile, "0.1.0", [&r](std::function<void()> left) {
                                    r.leave("POST /v1/leave", std::move(left));
                                }});
            server = http::Server::listen(
                &loop, http_at, {}, settings.name,
                [&api](const http::Request& req, http::Reply reply) { api->handle(req, reply); });
            if (!server) {
                log.log(Level::error, "could not start the HTTP API",
                        {{"error", server.error().message}});
                rc = 1;
            } else {
                api->serve_metrics_of(server->get());
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
    }
    // Let every handle's close callback run before the loop goes.
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}

}  // namespace chorus::cli
