// The subcommands of `chorus` (README.md). Each returns the process's exit status:
// 0 success, 1 failure (could not start, could not reach the agent, an error answer),
// 2 bad flags or configuration (nothing was done).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/call.hpp"
#include "daemon/settings.hpp"

namespace chorus::cli {

// `check_only` (--check-config): checks the settings as a start would, prints what the agent
// would run with, and exits 0, or 2 naming what is wrong; nothing is bound or written.
int run_agent(const daemon::Settings& settings, bool check_only = false);

// `chorus members --status dead --tag role=db`: members in one of the states (none given: any)
// with every tag given (key=value); the value may end with * for any suffix.
struct MemberFilter {
    std::vector<std::string> status;
    std::vector<std::string> tags;
    bool any() const { return !status.empty() || !tags.empty(); }
};
struct MembersOptions {
    Target agent;
    bool json = false;
    bool watch = false;
    MemberFilter filter;
};
// The view (an /v1/members answer) with only the members the filter lets through; an error
// names a filter that cannot be read.
Result<nlohmann::json> filter_members(nlohmann::json view, const MemberFilter& f);
int run_members(const MembersOptions& options);
int run_leave(const Target& agent);
// chorus monitor [--level debug]: the agent's log lines as they are written, until stopped.
int run_monitor(const Target& agent, const std::string& level);
// chorus force-leave NAME [--prune]: a dead member is made left (and with --prune forgotten).
int run_force_leave(const Target& agent, const std::string& name, bool prune);
// chorus drain: the member takes no new tasks and hands its queue over (--off: takes them again).
int run_drain(const Target& agent, bool off);
// chorus coordinator [--json]: the member this agent's view names coordinator, and the view's
// index.
int run_coordinator(const Target& agent, bool json);

struct TaskOutputOptions {
    std::string wait;  // "10s": wait up to that long for the task to finish
    bool json = false;
    bool cancel = false;
};
struct SubmitOptions {
    Target agent;
    std::string key;
    std::string type;
    std::string payload;       // JSON text
    std::string payload_file;  // or read it from a file; "-" is stdin
    std::string id;
    uint64_t timeout_ms = 0;
    std::vector<std::string> where;  // name=value: run only on members with these tags
    std::string placement;           // ring or coordinator; empty: the agent's default
    bool singleton = false;          // run on the coordinator, and the next if it dies
    TaskOutputOptions out;
};
int run_submit(const SubmitOptions& options);
int run_task(const Target& agent, const std::string& id, const TaskOutputOptions& options);
int run_ring(const Target& agent, const std::string& key, bool json);

// chorus keys: list the keyring of every member (the default), or install, use or remove one key
// on every alive member.
struct KeysOptions {
    Target agent;
    std::string install, use, remove;  // at most one is set
    bool json = false;
};
int run_keys(const KeysOptions& options);
// GET /v1/keyring as a table: each key, how many members hold it, how many seal with it; then
// each member that did not answer, or refused.
std::string keyring_table(const nlohmann::json& keyring);

// chorus tags: the member's tags (the default), or --set name=value and --delete name on it.
struct TagsOptions {
    Target agent;
    std::vector<std::string> set;     // name=value
    std::vector<std::string> remove;  // names
    bool json = false;
};
int run_tags(const TagsOptions& options);
// GET /v1/self/tags as a table: the operator's tags, then the agent's own.
std::string tags_listing(const nlohmann::json& tags);

// A task as `chorus submit` and `chorus task` print it: one field a line.
std::string task_summary(const nlohmann::json& task);
// chorus tokengen: a new API token's secret and its entry for the token file.
int run_tokengen(const std::string& id, const std::string& scope);

// GET /v1/ring as a table of members' shares and loads.
std::string ring_table(const nlohmann::json& ring);
// GET /v1/ring/lookup as the key's candidates, the router's pick starred.
std::string lookup_table(const nlohmann::json& lookup);

// `chorus members`' table: one row per member, columns aligned, sorted by name.
std::string members_table(const nlohmann::json& view);
// One line for a change from the event stream.
std::string event_line(const nlohmann::json& event);
// 1500 ms as "1.5s", 192000 as "3m12s", 7500000 as "2h5m".
std::string age(int64_t ms);

}  // namespace chorus::cli
