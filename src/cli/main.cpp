// chorus: one binary, subcommands in the Serf/Consul manner (README.md).
//
//   chorus agent [flags]            run a member of the cluster
//   chorus members [--json|--watch] list the members a running agent sees
//   chorus leave                    make a running agent leave gracefully and stop
//   chorus drain [--off]            make it take no new tasks (and hand its queue over)
//   chorus coordinator [--json]     the member its view names coordinator
//   chorus monitor [--level L]      stream its log
//   chorus force-leave NAME [--prune]  a dead member made left (and forgotten everywhere)
//   chorus submit --key K --type T  post a task to any node; it runs on the key's owner
//   chorus task ID                  a task's status and result (--cancel cancels it)
//   chorus ring [--key K]           the ring's shares, or a key's candidates and owner
//   chorus keygen                   a new random key for --encrypt
//   chorus keys [--install|--use|--remove KEY]  the keyring on every member
//   chorus tags [--set K=V] [--delete K]  a member's tags, changed at run time
//   chorus tokengen --id ID --scope S  a new API token and its entry for --acl-tokens
//   chorus --version                the version, as the package and chorus(1) give it
//
// Exit status: 0 on success, 1 on failure (the agent could not start or be reached),
// 2 for bad flags or configuration (nothing was done).
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "core/text.hpp"
#include "daemon/settings.hpp"
#include "net/seal.hpp"

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
    // The project's version (CMakeLists.txt), as packages and help2man's chorus(1) show it.
    app.set_version_flag("--version", CHORUS_VERSION);

    std::string config_file;
    auto* agent = app.add_subcommand("agent", "run a member of the cluster");
    agent->add_option("--config", config_file, "JSON config file; flags given as well win");
    bool check_config = false;
    agent->add_flag("--check-config", check_config,
                    "check the flags and the config file as a start would, print what the agent "
                    "would run with, and exit: 0 if it would start, 2 if not");
    // Every flag comes from the settings table (daemon/settings.hpp), which the config file
    // reads too; a flag's text is applied after the file, as its value there would be.
    std::map<std::string_view, std::vector<std::string>> given;
    for (const SettingSpec& spec : agent_settings()) {
        if (spec.flag.empty()) continue;
        auto* o =
            agent->add_option(std::string(spec.flag), given[spec.flag], std::string(spec.help));
        const bool repeatable = std::holds_alternative<setting::Texts>(spec.field) ||
                                std::holds_alternative<setting::TagMap>(spec.field);
        if (!repeatable) o->expected(1);
        if (const std::string d = default_text(spec); !d.empty() && spec.key != "name") {
            o->default_str(d);
        }
    }

    // Client commands find the agent through --http, else $CHORUS_HTTP_ADDR (as Consul's
    // CONSUL_HTTP_ADDR), else the default, and send --token, else $CHORUS_HTTP_TOKEN.
    const auto env = [](const char* name, std::string fallback) {
        const char* v = std::getenv(name);
        return v != nullptr && *v != '\0' ? std::string(v) : fallback;
    };
    const cli::Target target_default{env("CHORUS_HTTP_ADDR", cli::kDefaultHttp),
                                     env("CHORUS_HTTP_TOKEN", ""), env("CHORUS_CACERT", ""),
                                     env("CHORUS_CLIENT_CERT", ""), env("CHORUS_CLIENT_KEY", "")};
    const auto add_target = [&](CLI::App* command, cli::Target& t) {
        t = target_default;
        command
            ->add_option("--http", t.http,
                         "the agent's HTTP API address (https://host:port when it has TLS)")
            ->capture_default_str();
        command->add_option("--ca", t.ca,
                            "with https://, the CA file that signed the agent's certificate "
                            "(default $CHORUS_CACERT, else the system's)");
        command->add_option("--client-cert", t.client_cert,
                            "with https://, a client certificate for an agent with --tls-ca "
                            "(default $CHORUS_CLIENT_CERT)");
        command->add_option("--client-key", t.client_key,
                            "the client certificate's key (default $CHORUS_CLIENT_KEY)");
        // Never shown as a default: it is a secret.
        command->add_option("--token", t.token,
                            "API token (chorus tokengen), when the agent has --acl-tokens; "
                            "default $CHORUS_HTTP_TOKEN");
    };
    cli::MembersOptions members_options;
    auto* members = app.add_subcommand("members", "list the members a running agent sees");
    add_target(members, members_options.agent);
    members->add_flag("--json", members_options.json, "print the agent's JSON view as it is");
    members->add_option("--status", members_options.filter.status,
                        "only members in this state: alive, suspect, dead or left (repeatable)");
    members->add_option("--tag", members_options.filter.tags,
                        "only members with this tag, key=value (value* for a prefix; "
                        "repeatable, all must match)");
    members->add_flag("--watch", members_options.watch,
                      "print the table, then one line per change as it happens (with --json: "
                      "one JSON event per line)");
    cli::Target leave_target;
    auto* leave = app.add_subcommand("leave", "make a running agent leave gracefully and stop");
    add_target(leave, leave_target);
    cli::Target monitor_target;
    std::string monitor_level = "info";
    auto* monitor = app.add_subcommand(
        "monitor", "stream a running agent's log, from now on, until stopped (Ctrl-C)");
    add_target(monitor, monitor_target);
    monitor
        ->add_option("--level", monitor_level,
                     "the least level shown, whatever the agent logs: debug, info, warn, error")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
    cli::Target force_target;
    std::string force_name;
    bool force_prune = false;
    auto* force = app.add_subcommand(
        "force-leave", "make a dead member left, so nobody calls it back (as Serf's force-leave)");
    add_target(force, force_target);
    force->add_option("name", force_name, "the member's name")->required();
    force->add_flag("--prune", force_prune,
                    "and have every member forget it now, not after left_retain");
    cli::Target drain_target;
    bool drain_off = false;
    auto* drain = app.add_subcommand(
        "drain",
        "make a running agent take no new tasks and hand its queued ones over; it stays a "
        "member and lets running tasks finish");
    add_target(drain, drain_target);
    drain->add_flag("--off", drain_off, "take tasks again");
    cli::Target coordinator_target;
    bool coordinator_json = false;
    auto* coordinator = app.add_subcommand(
        "coordinator",
        "the member a running agent's view names coordinator: the alive member with the highest "
        "priority tag, ties to the lowest name");
    add_target(coordinator, coordinator_target);
    coordinator->add_flag("--json", coordinator_json, "the API's JSON answer");

    cli::SubmitOptions submit_options;
    auto* submit =
        app.add_subcommand("submit", "post a task; it runs on the key's least-loaded owner");
    add_target(submit, submit_options.agent);
    submit->add_option("--key", submit_options.key, "the task's key: it picks the owners")
        ->required();
    submit->add_option("--type", submit_options.type, "the handler: echo, sleep, or one configured")
        ->required();
    auto* payload =
        submit->add_option("--payload", submit_options.payload, "the payload, JSON text");
    submit
        ->add_option("--payload-file", submit_options.payload_file,
                     "read the payload from a file (- for stdin)")
        ->excludes(payload);
    submit->add_option("--id", submit_options.id,
                       "your name for the task (A-Z a-z 0-9 . _ -); the id then ends with it");
    submit->add_option("--timeout-ms", submit_options.timeout_ms,
                       "how long the task may run (default: the agent's)");
    submit->add_option("--wait", submit_options.out.wait,
                       "wait up to this long (10s, 500ms, 2m) for the task to finish");
    submit->add_option("--where", submit_options.where,
                       "name=value: run only on a member with this tag (repeatable)");
    submit
        ->add_option("--placement", submit_options.placement,
                     "ring (the key's owners) or coordinator (where the coordinator assigns "
                     "it); default: the agent's tasks.placement")
        ->check(CLI::IsMember({"ring", "coordinator"}));
    submit->add_flag("--singleton", submit_options.singleton,
                     "run on the coordinator, and on the next one if it dies first");
    submit->add_flag("--json", submit_options.out.json, "print the agent's JSON answer");
    cli::Target task_target;
    std::string task_id;
    cli::TaskOutputOptions task_options;
    auto* task = app.add_subcommand("task", "show a task's status and result, from any node");
    task->add_option("id", task_id, "the task id, as chorus submit printed it")->required();
    add_target(task, task_target);
    task->add_option("--wait", task_options.wait,
                     "wait up to this long (10s, 500ms, 2m) for the task to finish");
    task->add_flag("--cancel", task_options.cancel,
                   "cancel the task (a running command is killed)");
    task->add_flag("--json", task_options.json, "print the agent's JSON answer");
    cli::Target ring_target;
    std::string ring_key;
    bool ring_json = false;
    auto* ring = app.add_subcommand("ring", "show the hash ring, or where a key's tasks go");
    add_target(ring, ring_target);
    ring->add_option("--key", ring_key, "show this key's candidates and the owner picked now");
    ring->add_flag("--json", ring_json, "print the agent's JSON answer");

    auto* keygen = app.add_subcommand(
        "keygen", "print a new random key for --encrypt (AES-256, base64): give every member it");

    cli::KeysOptions keys_options;
    auto* keys = app.add_subcommand(
        "keys",
        "list every member's encryption keys, or install, use or remove one everywhere "
        "(rotate: install the new key, use it, then remove the old one)");
    add_target(keys, keys_options.agent);
    auto* install = keys->add_option("--install", keys_options.install,
                                     "add a key (from chorus keygen) to every member's keyring");
    auto* use = keys->add_option("--use", keys_options.use,
                                 "seal with this installed key from now on, on every member");
    auto* remove = keys->add_option("--remove", keys_options.remove,
                                    "remove a key that is no longer used from every member");
    install->excludes(use)->excludes(remove);
    use->excludes(remove);
    bool keys_list = false;  // the default: the flag is there for those who say it
    keys->add_flag("--list", keys_list,
                   "list every member's keys (what it does without the others)")
        ->excludes(install)
        ->excludes(use)
        ->excludes(remove);
    keys->add_flag("--json", keys_options.json, "print the agent's JSON answer");

    cli::TagsOptions tags_options;
    auto* tags = app.add_subcommand(
        "tags", "show a member's tags, or change them at run time (kept, and gossiped)");
    add_target(tags, tags_options.agent);
    tags->add_option("--set", tags_options.set, "name=value to set (repeatable)");
    tags->add_option("--delete", tags_options.remove, "a tag name to remove (repeatable)");
    tags->add_flag("--json", tags_options.json, "print the agent's JSON answer");

    std::string token_id, token_scope;
    auto* tokengen = app.add_subcommand(
        "tokengen",
        "print a new API token's secret (line 1: give it to its holder) and its entry for the "
        "--acl-tokens file (line 2: the secret's SHA-256, not the secret)");
    tokengen->add_option("--id", token_id, "the token's name, as the audit log shows it")
        ->required();
    tokengen->add_option("--scope", token_scope, "read, write or admin")->required();

    // A word where the command goes that names none: CLI11 alone would say only that a
    // subcommand is required.
    if (argc > 1 && argv[1][0] != '-') {
        std::vector<std::string> commands;
        for (const CLI::App* c : app.get_subcommands([](CLI::App*) { return true; }))
            commands.push_back(c->get_name());
        if (std::find(commands.begin(), commands.end(), argv[1]) == commands.end()) {
            const std::string near = closest(argv[1], commands);
            fmt::print(stderr, "chorus: '{}' is not a command{}; the commands are {}\n", argv[1],
                       near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near),
                       fmt::join(commands, ", "));
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    if (members->parsed()) return cli::run_members(members_options);
    if (leave->parsed()) return cli::run_leave(leave_target);
    if (drain->parsed()) return cli::run_drain(drain_target, drain_off);
    if (coordinator->parsed()) return cli::run_coordinator(coordinator_target, coordinator_json);
    if (monitor->parsed()) return cli::run_monitor(monitor_target, monitor_level);
    if (force->parsed()) return cli::run_force_leave(force_target, force_name, force_prune);
    if (submit->parsed()) return cli::run_submit(submit_options);
    if (task->parsed()) return cli::run_task(task_target, task_id, task_options);
    if (ring->parsed()) return cli::run_ring(ring_target, ring_key, ring_json);
    if (keys->parsed()) return cli::run_keys(keys_options);
    if (tags->parsed()) return cli::run_tags(tags_options);
    if (tokengen->parsed()) return cli::run_tokengen(token_id, token_scope);
    if (keygen->parsed()) {
        fmt::print("{}\n", net::key_to_base64(net::new_key()));
        return 0;
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
        const std::string folder =
            std::filesystem::absolute(config_file).parent_path().lexically_normal().string();
        if (auto st = apply_config_json(s, text.str(), folder); !st) {
            fmt::print(stderr, "chorus agent: {} (in {})\n", st.error().message, config_file);
            return 2;
        }
    }
    for (const SettingSpec& spec : agent_settings()) {
        if (spec.flag.empty()) continue;
        if (auto st = apply_flag(s, spec, given[spec.flag]); !st) {
            fmt::print(stderr, "chorus agent: {}\n", st.error().message);
            return 2;
        }
    }
    return cli::run_agent(s, check_config);
}
