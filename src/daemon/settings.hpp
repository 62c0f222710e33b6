// What an operator configures for `chorus agent`: read from an optional JSON config file, then
// overridden by flags, then checked. A bad value is refused with the field it came from and
// what to do about it; nothing starts.
#pragma once

#include <map>

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "daemon/agent.hpp"
#include "daemon/tasks.hpp"

namespace chorus::daemon {

struct Settings {
    std::string name;  // default: the host name
    std::string bind = "0.0.0.0:7900";
    std::string advertise;  // required with a wildcard bind
    std::string http = "127.0.0.1:7980";
    std::vector<std::string> seeds;
    uint32_t retry_join = 0;  // join attempts before giving up; 0 = keep trying
    std::string profile = "lan";
    std::string cluster = "chorus";
    std::map<std::string, std::string> tags;
    std::string log_level = "info";
    std::string log_format = "text";
    Duration leave_timeout = seconds(5);
    // Task routing and execution: the "tasks" and "handlers" objects of the config file.
    TaskOptions tasks;
};

// Applies the keys of a JSON config file's text over `s`. Unknown keys and wrong types are
// errors naming the key.
Status apply_config_json(Settings& s, const std::string& json_text);

// Parses "k=v" into tags; the error names the flag's value.
Status add_tag(Settings& s, const std::string& kv);

// Applies a config file's "tasks" object (limits and routing knobs) over `t`.
Status apply_tasks_json(TaskOptions& t, const nlohmann::json& j);
// Applies a config file's "handlers" object: {"name": {"exec": [argv]} | {"http": "url"} |
// {"builtin": "echo"}}; echo and sleep stay unless redefined.
Status apply_handlers_json(TaskOptions& t, const nlohmann::json& j);

// Checks every field and builds the agent's options.
Result<AgentOptions> to_agent_options(const Settings& s);

}  // namespace chorus::daemon
