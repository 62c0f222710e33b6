// chorus: one binary, subcommands in the Serf/Consul manner (DESIGN §6).
//
//   chorus agent [flags]     run a member of the cluster
//
// Exit status: 0 after a clean run or graceful leave, 1 when the agent could not start,
// 2 for bad flags or configuration (nothing started).
#include <unistd.h>
#include <uv.h>

#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "daemon/agent.hpp"
#include "daemon/log.hpp"
#include "daemon/settings.hpp"
#include "http/api.hpp"
#include "http/server.hpp"

namespace {

using namespace chorus;
using namespace chorus::daemon;

std::string host_name() {
    char buf[256] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "chorus";
    return buf;
}

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

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"chorus: a leaderless cluster daemon"};
    app.require_subcommand(1);

    Settings flags;
    std::string config_file;
    std::vector<std::string> tags;
    uint64_t leave_timeout_ms = 5000;
    auto* agent = app.add_subcommand("agent", "run a member of the cluster");
    agent->add_option("--config", config_file, "JSON config file; flags given as well win");
    agent->add_option("--name", flags.name, "unique member name (default: the host name)");
    agent->add_option("--bind", flags.bind, "gossip address, UDP and TCP")->capture_default_str();
    agent->add_option(
        "--advertise", flags.advertise,
        "address other members use to reach this one (needed with a wildcard --bind)");
    agent->add_option("--http", flags.http, "HTTP API address")->capture_default_str();
    agent->add_option("--seed", flags.seeds,
                      "host:port, ip:port or [ipv6]:port of a member to join through (repeatable; "
                      "names are resolved again on every attempt)");
    agent
        ->add_option("--retry-join", flags.retry_join,
                     "join attempts before giving up, with doubling backoff; 0 = keep trying")
        ->capture_default_str();
    agent->add_option("--profile", flags.profile, "timing profile: lan, wan or local")
        ->capture_default_str();
    agent->add_option("--tag", tags, "key=value attached to this member (repeatable)");
    agent
        ->add_option("--cluster", flags.cluster,
                     "cluster name; other clusters' packets are dropped")
        ->capture_default_str();
    agent->add_option("--log-level", flags.log_level, "debug, info, warn or error")
        ->capture_default_str();
    agent->add_option("--log-format", flags.log_format, "text or json (one object per line)")
        ->capture_default_str();
    agent->add_option("--leave-timeout-ms", leave_timeout_ms, "how long a graceful leave may take")
        ->capture_default_str();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }

    // Defaults, then the config file, then the flags that were given.
    Settings s;
    s.name = host_name();
    if (!config_file.empty()) {
        std::ifstream in(config_file);
        if (!in) {
            fmt::print(stderr, "chorus agent: config: cannot read {}\n", config_file);
            return 2;
        }
        std::stringstream text;
        text << in.rdbuf();
        if (auto st = apply_config_json(s, text.str()); !st) {
            fmt::print(stderr, "chorus agent: {} (in {})\n", st.error().message, config_file);
            return 2;
        }
    }
    const auto given = [&](const char* flag) { return agent->count(flag) > 0; };
    if (given("--name")) s.name = flags.name;
    if (given("--bind")) s.bind = flags.bind;
    if (given("--advertise")) s.advertise = flags.advertise;
    if (given("--http")) s.http = flags.http;
    if (given("--seed")) s.seeds = flags.seeds;
    if (given("--retry-join")) s.retry_join = flags.retry_join;
    if (given("--profile")) s.profile = flags.profile;
    if (given("--cluster")) s.cluster = flags.cluster;
    if (given("--log-level")) s.log_level = flags.log_level;
    if (given("--log-format")) s.log_format = flags.log_format;
    if (given("--leave-timeout-ms")) s.leave_timeout = milliseconds(leave_timeout_ms);
    for (const auto& t : tags) {
        if (auto st = add_tag(s, t); !st) {
            fmt::print(stderr, "chorus agent: {}\n", st.error().message);
            return 2;
        }
    }
    return run_agent(s);
}
