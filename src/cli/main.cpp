// chorus: one binary, subcommands in the Serf/Consul manner (DESIGN §6).
//
//   chorus agent [flags]            run a member of the cluster
//   chorus members [--json|--watch] list the members a running agent sees
//   chorus leave                    make a running agent leave gracefully and stop
//
// Exit status: 0 on success, 1 on failure (the agent could not start or be reached),
// 2 for bad flags or configuration (nothing was done).
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "daemon/settings.hpp"

namespace {

using namespace chorus;
using namespace chorus::daemon;

std::string host_name() {
    char buf[256] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "chorus";
    return buf;
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

    // Client commands find the agent through --http, else $CHORUS_HTTP_ADDR (as Consul's
    // CONSUL_HTTP_ADDR), else the default.
    const char* env_http = std::getenv("CHORUS_HTTP_ADDR");
    const std::string http_default =
        env_http != nullptr && *env_http != '\0' ? env_http : std::string(cli::kDefaultHttp);
    cli::MembersOptions members_options;
    members_options.http = http_default;
    auto* members = app.add_subcommand("members", "list the members a running agent sees");
    members->add_option("--http", members_options.http, "the agent's HTTP API address")
        ->capture_default_str();
    members->add_flag("--json", members_options.json, "print the agent's JSON view as it is");
    members->add_flag("--watch", members_options.watch,
                      "print the table, then one line per change as it happens (with --json: "
                      "one JSON event per line)");
    std::string leave_http = http_default;
    auto* leave = app.add_subcommand("leave", "make a running agent leave gracefully and stop");
    leave->add_option("--http", leave_http, "the agent's HTTP API address")->capture_default_str();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    if (members->parsed()) return cli::run_members(members_options);
    if (leave->parsed()) return cli::run_leave(leave_http);

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
    return cli::run_agent(s);
}
