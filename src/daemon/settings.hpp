// What an operator configures for `chorus agent`: read from an optional JSON config file, then
// overridden by flags, then checked. A bad value is refused with the field it came from and
// what to do about it; nothing starts.
#pragma once

#include <map>
#include <span>
#include <string_view>
#include <variant>

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
    std::string task_placement = "ring";  // tasks.placement, read into tasks.placement
    std::string cluster = "chorus";
    std::map<std::string, std::string> tags;
    std::string log_level = "info";
    std::string log_format = "text";
    Duration leave_timeout = seconds(5);
    Duration dead_retain = seconds(3600);  // Config's default, for every profile
    // Sealed gossip and frames (net/seal.hpp): a base64 key from `chorus keygen`, and the two
    // switches a running cluster turns on in turn to move to encryption without downtime.
    std::string encrypt;
    bool encrypt_verify_incoming = true;
    bool encrypt_verify_outgoing = true;
    // Who may call the HTTP API (http/acl.hpp): a token file, and the names the API is reached
    // by besides IP addresses and localhost (the Host check without tokens).
    std::string acl_tokens;
    std::vector<std::string> http_names;
    // TLS on the HTTP API (net/tls.hpp): its certificate and key, and a CA whose client
    // certificates it then requires.
    std::string tls_cert, tls_key, tls_ca;
    // One JSON line per mutating call or refusal (http/audit.hpp), rotated past the size.
    std::string audit_log;
    size_t audit_log_bytes_max = 64u << 20;
    size_t audit_log_files = 5;
    // Task routing and execution: the "tasks" and "handlers" objects of the config file.
    TaskOptions tasks;
};

// Every setting of `chorus agent`, declared once: its config-file key ("tasks.capacity" is
// `capacity` in the file's "tasks" object), its flag if it has one, its help, and the field it
// sets, whose initializer in Settings (or TaskOptions, TaskLimits) is its default. The config
// file, the flags, `chorus agent --help` and the errors naming unknown keys all read this one
// table. (The "handlers" object, a map of structured values, is read by apply_handlers_json.)
namespace setting {
// What a field holds, and so how its value is read: `at` finds the field in a Settings.
struct Text {
    std::string& (*at)(Settings&);
    bool non_empty = false;
};
struct Texts {  // a flag given more than once, or a JSON array of strings
    std::vector<std::string>& (*at)(Settings&);
};
struct TagMap {  // key=value flags, or a JSON object of strings
    std::map<std::string, std::string>& (*at)(Settings&);
};
struct Whole32 {
    uint32_t& (*at)(Settings&);
};
struct Count {  // a number of things held, in a size_t
    size_t& (*at)(Settings&);
};
struct Bytes {
    size_t& (*at)(Settings&);
};
struct Millis {  // a duration given in whole milliseconds, or whole seconds (unit_ms 1000)
    Duration& (*at)(Settings&);
    uint64_t unit_ms = 1;
};
struct Real {  // a non-negative number
    double& (*at)(Settings&);
};
struct Switch {  // true or false (a flag's text too)
    bool& (*at)(Settings&);
};
using Field = std::variant<Text, Texts, TagMap, Whole32, Count, Bytes, Millis, Real, Switch>;
}  // namespace setting

struct SettingSpec {
    std::string_view key;
    std::string_view flag;  // empty: config file only
    std::string_view help;
    setting::Field field;
};
std::span<const SettingSpec> agent_settings();
const SettingSpec* find_setting(std::string_view key);

// Applies the keys of a JSON config file's text over `s`. Unknown keys and wrong types are
// errors naming the key. A handler's relative program path or dir ("handlers/resize.sh") is
// taken from `base_dir`, the config file's folder, when one is given (as a unit file's paths
// are from the unit's).
Status apply_config_json(Settings& s, const std::string& json_text,
                         const std::string& base_dir = "");
// Applies a flag's values (one, or each time a repeatable flag was given) over `s`, read as
// the config file's value would be; the error names the flag.
Status apply_flag(Settings& s, const SettingSpec& spec, const std::vector<std::string>& values);
// The setting's default, as a flag would say it ("" when it has none).
std::string default_text(const SettingSpec& spec);

// Parses "k=v" into tags; the error names the flag's value.
Status add_tag(Settings& s, const std::string& kv);

// Applies a config file's "handlers" object: {"name": {"exec": [argv]} | {"http": "url"} |
// {"builtin": "echo"}}; echo and sleep stay unless redefined.
Status apply_handlers_json(TaskOptions& t, const nlohmann::json& j,
                           const std::string& base_dir = "");

// The API's listening address: `http` without the scheme it may be given with
// ("http://127.0.0.1:7980/", as clients take it; to_agent_options checks the scheme).
std::string api_address(const Settings& s);

// Checks every field and builds the agent's options. `euid` is who the agent runs as (unset:
// this process's effective user), for the rule on exec handlers under root.
Result<AgentOptions> to_agent_options(const Settings& s,
                                      std::optional<uint32_t> euid = std::nullopt);

}  // namespace chorus::daemon
