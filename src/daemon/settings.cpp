#include "daemon/settings.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/text.hpp"
#include "daemon/json.hpp"
#include "daemon/tags.hpp"
#include "net/srv.hpp"

namespace chorus::daemon {

namespace {

Error bad(std::string_view field, std::string_view what) {
    return Error{"bad_config", fmt::format("{}: {}", field, what)};
}

// The most a duration or a byte count in the config file may say: far beyond any sensible
// setting, and small enough that converting it to microseconds or adding to it cannot overflow.
constexpr uint64_t kMillisecondsMax = 366ull * 24 * 3600 * 1000;  // a year
constexpr uint64_t kBytesMax = 1ull << 40;                        // 1 TiB

// A whole number of `unit` at most `max`, or an error naming the field.
Result<uint64_t> whole(const nlohmann::json& v, std::string_view field, uint64_t max,
                       std::string_view unit) {
    const std::string of = unit.empty() ? "" : fmt::format(" {}", unit);
    if (!v.is_number_unsigned()) return bad(field, fmt::format("must be a whole number{}", of));
    const auto n = v.get<uint64_t>();
    if (n > max) return bad(field, fmt::format("must be at most {}{}", max, of));
    return n;
}

// A pointer to a field nested in Settings: field<&Settings::tasks, &TaskOptions::limits,
// &TaskLimits::capacity> is s.tasks.limits.capacity.
template <auto... Members>
decltype(auto) field(Settings& s) {
    return (s.*....*Members);
}

using namespace setting;
using S = Settings;
using T = TaskOptions;
using L = TaskLimits;

// The table. Help says what a setting means and its unit; README.md says more.
const SettingSpec kSettings[] = {
    {"name", "--name", "unique member name (default: the host name)", Text{&field<&S::name>}},
    {"bind", "--bind", "gossip address, UDP and TCP", Text{&field<&S::bind>}},
    {"advertise", "--advertise",
     "address other members use to reach this one (default: the bind address; with a "
     "wildcard --bind, the host's first private address)",
     Text{&field<&S::advertise>}},
    {"http", "--http", "HTTP API address", Text{&field<&S::http>}},
    {"seeds", "--seed",
     "host:port, ip:port or [ipv6]:port of a member to join through, or dnssrv+NAME for the "
     "members NAME's DNS SRV records list (repeatable; names are resolved again on every "
     "attempt)",
     Texts{&field<&S::seeds>}},
    {"retry_join", "--retry-join",
     "join attempts before giving up, with doubling backoff; 0 = keep trying",
     Whole32{&field<&S::retry_join>}},
    {"profile", "--profile", "timing profile: lan, wan or local", Text{&field<&S::profile>}},
    {"cluster", "--cluster", "cluster name; other clusters' packets are dropped",
     Text{&field<&S::cluster>}},
    {"tags", "--tag", "key=value attached to this member (repeatable)", TagMap{&field<&S::tags>}},
    {"log_level", "--log-level", "debug, info, warn or error", Text{&field<&S::log_level>}},
    {"log_format", "--log-format", "text or json (one object per line)",
     Text{&field<&S::log_format>}},
    {"encrypt", "--encrypt",
     "base64 key (chorus keygen) sealing gossip and task frames with AES-256-GCM; every member "
     "needs it, and one without it cannot join",
     Text{&field<&S::encrypt>}},
    {"encrypt_verify_incoming", "--encrypt-verify-incoming",
     "with --encrypt, refuse what comes in clear; false while a cluster moves to encryption",
     Switch{&field<&S::encrypt_verify_incoming>}},
    {"encrypt_verify_outgoing", "--encrypt-verify-outgoing",
     "with --encrypt, seal what is sent; false (with incoming false too) for the first step of "
     "a move to encryption",
     Switch{&field<&S::encrypt_verify_outgoing>}},
    {"acl_tokens", "--acl-tokens",
     "JSON file of API tokens (chorus tokengen); given, every call but /v1/health needs "
     "Authorization: Bearer with a token of the right scope (read, write, admin)",
     Text{&field<&S::acl_tokens>}},
    {"http_names", "--http-name",
     "a host name clients reach the HTTP API by (repeatable); without tokens, a Host that is "
     "not an IP address, localhost or one of these is refused (DNS rebinding)",
     Texts{&field<&S::http_names>}},
    {"tls_cert", "--tls-cert",
     "PEM certificate (chain) for the HTTP API: it then speaks HTTPS only (with --tls-key)",
     Text{&field<&S::tls_cert>}},
    {"tls_key", "--tls-key", "PEM private key of --tls-cert", Text{&field<&S::tls_key>}},
    {"tls_ca", "--tls-ca",
     "PEM CA file: with --tls-cert, every client must present a certificate it signed",
     Text{&field<&S::tls_ca>}},
    {"audit_log", "--audit-log",
     "file getting one JSON line per mutating API call or refusal (who, from where, what, "
     "outcome; never a secret or a payload)",
     Text{&field<&S::audit_log>}},
    {"audit_log_bytes_max", "", "the audit log's size before it rotates to FILE.1",
     Bytes{&field<&S::audit_log_bytes_max>}},
    {"audit_log_files", "", "rotated audit log files kept (FILE.1 to FILE.N)",
     Count{&field<&S::audit_log_files>}},
    {"leave_timeout_ms", "--leave-timeout-ms", "how long a graceful leave may take, ms",
     Millis{&field<&S::leave_timeout>}},
    {"dead_retain_s", "",
     "seconds a dead member is kept and called back before it is forgotten (a seed that is "
     "not a live member is called back for ever)",
     Millis{&field<&S::dead_retain>, 1000}},
    {"data_dir", "--data-dir",
     "folder for the task journal; without it tasks are kept in memory only",
     Text{&field<&S::tasks, &T::data_dir>, true}},
    {"tasks.capacity", "", "tasks run at once",
     Whole32{&field<&S::tasks, &T::limits, &L::capacity>}},
    {"tasks.queue_max", "", "tasks waiting for a slot; beyond it the node refuses",
     Whole32{&field<&S::tasks, &T::limits, &L::queue_max>}},
    {"tasks.results_max", "", "finished tasks kept for readers",
     Whole32{&field<&S::tasks, &T::limits, &L::results_max>}},
    {"tasks.results_bytes_max", "", "bytes of finished tasks kept for readers",
     Bytes{&field<&S::tasks, &T::limits, &L::results_bytes_max>}},
    {"tasks.results_ttl_s", "", "how long a finished task is kept, s",
     Millis{&field<&S::tasks, &T::limits, &L::results_ttl>, 1000}},
    {"tasks.key_bytes_max", "", "a task's key, at most",
     Bytes{&field<&S::tasks, &T::limits, &L::key_bytes_max>}},
    {"tasks.payload_bytes_max", "", "a task's payload, at most",
     Bytes{&field<&S::tasks, &T::limits, &L::payload_bytes_max>}},
    {"tasks.result_bytes_max", "", "a task's result (a command's stdout, an HTTP body), at most",
     Bytes{&field<&S::tasks, &T::limits, &L::result_bytes_max>}},
    {"tasks.timeout_default_ms", "", "a task's timeout when it names none, ms",
     Millis{&field<&S::tasks, &T::limits, &L::timeout_default>}},
    {"tasks.timeout_max_ms", "", "the longest timeout a task may ask for, ms",
     Millis{&field<&S::tasks, &T::limits, &L::timeout_max>}},
    {"tasks.vnodes", "", "points per member on the hash ring",
     Whole32{&field<&S::tasks, &T::vnodes>}},
    {"tasks.candidates", "", "members of a key's preference list the router chooses among",
     Whole32{&field<&S::tasks, &T::candidates>}},
    {"tasks.replicas", "", "members storing each task before it is acknowledged (1 or 2)",
     Whole32{&field<&S::tasks, &T::task_replicas>}},
    {"tasks.min_replicas", "",
     "the fewest members a task may be acknowledged on (0: replicas; 1 prefers availability)",
     Whole32{&field<&S::tasks, &T::min_replicas>}},
    {"tasks.copy_timeout_ms", "", "how long one member has to store a copy, ms",
     Millis{&field<&S::tasks, &T::copy_timeout>}},
    {"tasks.forward_timeout_ms", "",
     "how long an owner has at most to answer a forwarded task (the measured timeout's "
     "ceiling, and the timeout before any forward was answered), ms",
     Millis{&field<&S::tasks, &T::forward_timeout>}},
    {"tasks.forward_timeout_min_ms", "",
     "the floor of the forward timeout, which follows the owners' measured round trips "
     "(srtt + 4 rttvar); equal to forward_timeout_ms: fixed, ms",
     Millis{&field<&S::tasks, &T::forward_timeout_min>}},
    {"tasks.copy_check_ms", "", "how often a holder asks the owners of its unfinished copies, ms",
     Millis{&field<&S::tasks, &T::copy_check>}},
    {"tasks.copies_max", "", "unfinished copies of other members' tasks held here, at most",
     Count{&field<&S::tasks, &T::copies_max>}},
    {"tasks.copies_bytes_max", "", "bytes of unfinished copies held here, at most",
     Bytes{&field<&S::tasks, &T::copies_bytes_max>}},
    {"tasks.backlog_bytes_max", "", "bytes waiting for one peer's connection, at most",
     Bytes{&field<&S::tasks, &T::backlog_bytes_max>}},
    {"tasks.phi_route", "", "a candidate with φ at or above this is passed over",
     Real{&field<&S::tasks, &T::phi_route>}},
    {"tasks.balance_factor", "", "0: least loaded; >= 1: bounded loads",
     Real{&field<&S::tasks, &T::balance_factor>}},
    {"tasks.placement", "--task-placement",
     "where a task that does not say goes: ring (its key's owners, leaderless) or coordinator "
     "(the member the coordinator assigns it to)",
     Text{&field<&S::task_placement>}},
    {"tasks.load_threshold", "--load-threshold",
     "coordinator placement: a member at or above this load ((running + queued) / capacity) "
     "is not assigned tasks; when all are, tasks are refused (503 overloaded)",
     Real{&field<&S::tasks, &T::load_threshold>}},
    {"tasks.coordinator_quorum", "--coordinator-quorum",
     "a member coordinates (assigns tasks, runs singletons) only while it sees a strict "
     "majority of the members it knows alive: at most one side of a partition does",
     Switch{&field<&S::tasks, &T::coordinator_quorum>}},
};

// The keys of one section ("" or "tasks"), for an error naming an unknown one.
std::vector<std::string> keys_of(std::string_view section) {
    std::vector<std::string> keys;
    for (const SettingSpec& spec : kSettings) {
        const size_t dot = spec.key.find('.');
        const std::string_view in = dot == std::string_view::npos ? "" : spec.key.substr(0, dot);
        if (in == section)
            keys.emplace_back(dot == std::string_view::npos ? spec.key : spec.key.substr(dot + 1));
    }
    if (section.empty()) {
        keys.push_back("tasks");
        keys.push_back("handlers");
    }
    return keys;
}

// "unknown setting (did you mean seeds?; the keys are ...)".
std::string unknown(std::string_view key, std::string_view section) {
    const std::vector<std::string> keys = keys_of(section);
    const std::string near = closest(key, keys);
    return fmt::format("unknown setting ({}the keys{} are {})",
                       near.empty() ? "" : fmt::format("did you mean {}? ", near),
                       section.empty() ? "" : fmt::format(" of {}", section),
                       fmt::join(keys, ", "));
}

// "--retry-join", "retry-join" and "retry_join" alike: "retry_join".
std::string flag_as_key(std::string_view flag) {
    while (flag.starts_with('-'))
        flag.remove_prefix(1);
    std::string out(flag);
    std::replace(out.begin(), out.end(), '-', '_');
    return out;
}

// Applies one JSON value to its setting; `name` is what an error calls it.
Status apply_value(Settings& s, const SettingSpec& spec, const nlohmann::json& v,
                   std::string_view name) {
    const auto all_strings = [](const nlohmann::json& x) {
        return std::all_of(x.begin(), x.end(), [](const auto& e) { return e.is_string(); });
    };
    return std::visit(
        [&](const auto& f) -> Status {
            using F = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<F, Text>) {
                if (!v.is_string() || (f.non_empty && v.get<std::string>().empty())) {
                    return bad(name,
                               f.non_empty ? "must be a non-empty string" : "must be a string");
                }
                f.at(s) = v.get<std::string>();
            } else if constexpr (std::is_same_v<F, Texts>) {
                if (!v.is_array() || !all_strings(v)) {
                    return bad(name, "must be an array of \"host:port\" strings");
                }
                f.at(s) = v.get<std::vector<std::string>>();
            } else if constexpr (std::is_same_v<F, TagMap>) {
                if (!v.is_object() || !all_strings(v)) {
                    return bad(name, "must be an object of string values");
                }
                for (const auto& [k, x] : v.items())
                    f.at(s)[k] = x.template get<std::string>();
            } else if constexpr (std::is_same_v<F, Whole32>) {
                auto n = whole(v, name, UINT32_MAX, "");
                if (!n) return n.error();
                f.at(s) = static_cast<uint32_t>(*n);
            } else if constexpr (std::is_same_v<F, Count>) {
                auto n = whole(v, name, UINT32_MAX, "");
                if (!n) return n.error();
                f.at(s) = *n;
            } else if constexpr (std::is_same_v<F, Bytes>) {
                auto n = whole(v, name, kBytesMax, "bytes");
                if (!n) return n.error();
                f.at(s) = *n;
            } else if constexpr (std::is_same_v<F, Millis>) {
                auto n = whole(v, name, kMillisecondsMax / f.unit_ms,
                               f.unit_ms == 1 ? "milliseconds" : "seconds");
                if (!n) return n.error();
                f.at(s) = milliseconds(*n * f.unit_ms);
            } else if constexpr (std::is_same_v<F, Switch>) {
                if (!v.is_boolean()) return bad(name, "must be true or false");
                f.at(s) = v.get<bool>();
            } else {
                if (!v.is_number() || !(v.get<double>() >= 0)) {
                    return bad(name, "must be a non-negative number");
                }
                f.at(s) = v.get<double>();
            }
            return Ok{};
        },
        spec.field);
}

}  // namespace

std::span<const SettingSpec> agent_settings() {
    return kSettings;
}

const SettingSpec* find_setting(std::string_view key) {
    for (const SettingSpec& spec : kSettings) {
        if (spec.key == key) return &spec;
    }
    return nullptr;
}

Status add_tag(Settings& s, const std::string& kv) {
    auto tag = parse_tag(kv);
    if (!tag) return bad("tag", fmt::format("'{}' must look like key=value", kv));
    s.tags[tag->first] = tag->second;
    return Ok{};
}

Status apply_config_json(Settings& s, const std::string& text, const std::string& base_dir) {
    auto parsed = parse_json(text);
    if (!parsed) {
        return Error{"bad_config", fmt::format("config file: {}", parsed.error().message)};
    }
    const nlohmann::json& j = *parsed;
    if (!j.is_object()) return bad("config file", "must hold a JSON object");
    for (const auto& [key, value] : j.items()) {
        if (key == "handlers") {
            if (auto st = apply_handlers_json(s.tasks, value, base_dir); !st) return st;
            continue;
        }
        if (key == "tasks") {
            if (!value.is_object()) return bad("tasks", "must be an object");
            for (const auto& [k, v] : value.items()) {
                const std::string name = "tasks." + k;
                const SettingSpec* spec = find_setting(name);
                if (spec == nullptr) return bad(name, unknown(k, "tasks"));
                if (auto st = apply_value(s, *spec, v, name); !st) return st;
            }
            continue;
        }
        const SettingSpec* spec = key.find('.') == std::string::npos ? find_setting(key) : nullptr;
        if (spec == nullptr) {  // a key may also be spelled as its flag is ("seed", "retry-join")
            // Init-captured: clang 14 cannot capture a structured binding.
            const auto as_flag =
                std::find_if(std::begin(kSettings), std::end(kSettings),
                             [wanted = flag_as_key(key)](const SettingSpec& k) {
                                 return !k.flag.empty() && flag_as_key(k.flag) == wanted;
                             });
            if (as_flag != std::end(kSettings)) spec = &*as_flag;
        }
        if (spec == nullptr) return bad(key, unknown(key, ""));
        if (auto st = apply_value(s, *spec, value, key); !st) return st;
    }
    return Ok{};
}

Status apply_flag(Settings& s, const SettingSpec& spec, const std::vector<std::string>& values) {
    const std::string_view name = spec.flag;
    if (values.empty()) return Ok{};
    // A flag's text becomes the JSON value the config file would hold, read the same way.
    return std::visit(
        [&](const auto& f) -> Status {
            using F = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<F, TagMap>) {
                for (const std::string& kv : values) {
                    if (auto st = add_tag(s, kv); !st) return st;
                }
                return Ok{};
            } else if constexpr (std::is_same_v<F, Texts>) {
                return apply_value(s, spec, nlohmann::json(values), name);
            } else if constexpr (std::is_same_v<F, Text>) {
                return apply_value(s, spec, nlohmann::json(values.back()), name);
            } else if constexpr (std::is_same_v<F, Switch>) {
                const std::string& t = values.back();
                if (t != "true" && t != "false")
                    return bad(name, fmt::format("'{}' is not true or false", t));
                return apply_value(s, spec, nlohmann::json(t == "true"), name);
            } else {
                // Numbers: the whole text must be one.
                auto v = parse_json(values.back());
                if (!v || !v->is_number())
                    return bad(name, fmt::format("'{}' is not a number", values.back()));
                return apply_value(s, spec, *v, name);
            }
        },
        spec.field);
}

std::string default_text(const SettingSpec& spec) {
    Settings s;
    return std::visit(
        [&](const auto& f) -> std::string {
            using F = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<F, Text>) {
                return f.at(s);
            } else if constexpr (std::is_same_v<F, Texts> || std::is_same_v<F, TagMap>) {
                return "";
            } else if constexpr (std::is_same_v<F, Millis>) {
                return std::to_string(ms_of(f.at(s)) / f.unit_ms);
            } else if constexpr (std::is_same_v<F, Real>) {
                return fmt::format("{}", f.at(s));
            } else if constexpr (std::is_same_v<F, Switch>) {
                return f.at(s) ? "true" : "false";
            } else {
                return std::to_string(f.at(s));
            }
        },
        spec.field);
}

namespace {

// An exec handler's least-privilege fields beside "exec": user, group, env, dir, limits.
Status apply_exec_fields(HandlerSpec& h, const std::string& field, const nlohmann::json& value) {
    for (const auto& [key, v] : value.items()) {
        const std::string at = field + "." + key;
        if (key == "exec") continue;
        if (key == "user" || key == "group" || key == "dir") {
            if (!v.is_string() || v.get<std::string>().empty()) {
                return bad(at, "must be a non-empty string");
            }
            const std::string text = v.get<std::string>();
            if (key == "dir") {
                h.dir = text;
            } else if (key == "user") {
                auto uid = resolve_user(text);
                if (!uid) return bad(at, uid.error().message);
                h.user = text;
                h.uid = *uid;
            } else {
                auto gid = resolve_group(text);
                if (!gid) return bad(at, gid.error().message);
                h.group = text;
                h.gid = *gid;
            }
        } else if (key == "env") {
            if (!v.is_array() ||
                !std::all_of(v.begin(), v.end(), [](const auto& x) { return x.is_string(); })) {
                return bad(at, R"(must be an array of variable names, such as ["PATH", "LANG"])");
            }
            h.env = v.get<std::vector<std::string>>();
            for (const std::string& name : h.env) {
                if (name.empty() || name.find('=') != std::string::npos || !clean_text(name)) {
                    return bad(at, fmt::format("{} is not a variable name", log_quote(name)));
                }
            }
        } else if (key == "limits") {
            if (!v.is_object()) return bad(at, "must be an object");
            const std::pair<const char*, uint64_t*> fields[] = {{"cpu_s", &h.limits.cpu_s},
                                                                {"as_bytes", &h.limits.as_bytes},
                                                                {"nofile", &h.limits.nofile},
                                                                {"nproc", &h.limits.nproc}};
            for (const auto& item : v.items()) {
                const std::string name = item.key();
                const nlohmann::json& n = item.value();
                const auto f = std::find_if(std::begin(fields), std::end(fields),
                                            [&](const auto& x) { return name == x.first; });
                if (f == std::end(fields)) {
                    return bad(at + "." + name, "is not a limit (cpu_s, as_bytes, nofile, nproc)");
                }
                if (!n.is_number_unsigned() || n.get<uint64_t>() == 0) {
                    return bad(at + "." + name, "must be a positive whole number");
                }
                *f->second = n.get<uint64_t>();
            }
        } else {
            return bad(at, "is not an exec handler field (exec, user, group, env, dir, limits)");
        }
    }
    if (h.uid && !h.gid) {
        // Without a group of its own the command would keep the agent's (root's, under root).
        h.gid = primary_group(*h.uid);
        if (!h.gid) {
            return bad(
                field + ".user",
                fmt::format("{} has no entry in the user database: give \"group\" too", h.user));
        }
    }
    return Ok{};
}

}  // namespace

Status apply_handlers_json(TaskOptions& t, const nlohmann::json& j, const std::string& base_dir) {
    if (!j.is_object()) return bad("handlers", "must be an object of handler names");
    for (const auto& [name, value] : j.items()) {
        const std::string field = "handlers." + name;
        const bool exec = value.is_object() && value.contains("exec");
        if (!value.is_object() || (!exec && value.size() != 1)) {
            return bad(field, R"(must be {"exec": ["/path/to/program", "arg"]}, )"
                              R"({"http": "http://127.0.0.1:8080/path"} or {"builtin": "echo"})");
        }
        HandlerSpec h;
        const std::string kind = exec ? "exec" : value.begin().key();
        const nlohmann::json& arg = value[kind];
        if (kind == "exec") {
            if (!arg.is_array() || arg.empty() ||
                !std::all_of(arg.begin(), arg.end(), [](const auto& x) { return x.is_string(); })) {
                return bad(field + ".exec", "must be a non-empty array of strings (argv)");
            }
            h.kind = HandlerSpec::Kind::exec;
            h.argv = arg.get<std::vector<std::string>>();
            if (auto st = apply_exec_fields(h, field, value); !st) return st;
            // Relative paths are the config file's neighbours; a bare program name is looked up
            // on PATH, as a shell would.
            const auto from_base = [&base_dir](std::string& path) {
                if (!base_dir.empty() && !path.empty() && !path.starts_with('/')) {
                    path = (std::filesystem::path(base_dir) / path).lexically_normal().string();
                }
            };
            if (h.argv[0].find('/') != std::string::npos) from_base(h.argv[0]);
            from_base(h.dir);
        } else if (kind == "http" || kind == "builtin") {
            if (!arg.is_string()) return bad(field + "." + kind, "must be a string");
            h.kind = kind == "http" ? HandlerSpec::Kind::http : HandlerSpec::Kind::builtin;
            (kind == "http" ? h.url : h.builtin) = arg.get<std::string>();
        } else {
            return bad(field,
                       fmt::format("'{}' is not a handler kind (exec, http, builtin)", kind));
        }
        if (auto st = check_handler(name, h); !st) return st;
        t.handlers[name] = std::move(h);
    }
    return Ok{};
}

std::string api_address(const Settings& s) {
    return net::split_http_url(s.http).address;
}

Result<AgentOptions> to_agent_options(const Settings& s, std::optional<uint32_t> euid) {
    AgentOptions o;
    auto profile = Config::profile(s.profile);
    if (!profile) return bad("profile", "must be lan, wan or local");
    o.config = *profile;
    o.config.cluster = s.cluster;
    o.config.dead_retain = s.dead_retain;
    o.config.member_rtts = true;  // shown in /v1/members and the dashboard
    if (auto v = o.config.validate(); !v) return v.error();
    if (s.name.empty()) return bad("name", "must not be empty");
    if (s.name.size() > o.config.name_bytes_max) {
        return bad("name", fmt::format("is {} bytes, over the limit of {}", s.name.size(),
                                       o.config.name_bytes_max));
    }
    // Names, the cluster and tags travel in every packet; peers refuse what is not clean text.
    for (const auto& [field, text] :
         {std::pair<std::string_view, std::string_view>{"name", s.name}, {"cluster", s.cluster}}) {
        if (const TextProblem p = check_text(text); p != TextProblem::none) {
            return bad(field, describe(p));
        }
    }
    auto bind = net::Endpoint::parse(s.bind);
    if (!bind) return bad("bind", bind.error().message);
    o.bind = *bind;
    if (!s.advertise.empty()) {
        auto adv = net::Endpoint::parse(s.advertise);
        if (!adv) return bad("advertise", adv.error().message);
        o.identity.addr = Address{adv->str()};
    }
    const net::HttpAddress api = net::split_http_url(s.http);
    if (api.scheme == "https" && s.tls_cert.empty()) {
        return bad("http", "https:// needs tls_cert and tls_key (--tls-cert, --tls-key)");
    }
    if (api.scheme == "http" && !s.tls_cert.empty()) {
        return bad("http",
                   "http:// with tls_cert: the API speaks HTTPS; give https:// or no scheme");
    }
    auto http = net::Endpoint::parse(api.address);
    if (!http) return bad("http", http.error().message);
    for (const auto& seed : s.seeds) {
        // Names stay names: the agent resolves them again on every join attempt.
        auto srv = net::srv_seed_name(seed);
        if (!srv) return bad("seed", srv.error().message);
        if (!srv->empty()) {
            o.seeds.push_back(seed);
            continue;
        }
        auto hp = net::split_host_port(seed);
        if (!hp) return bad("seed", hp.error().message);
        auto e = net::Endpoint::parse(seed);
        o.seeds.push_back(e ? e->str() : seed);
    }
    // The operator's tags, and the agent's own: the task types it has handlers for, so that
    // routers place a task only where it can run.
    Tags given(s.tags.begin(), s.tags.end());
    std::vector<std::string> handler_names;
    for (const auto& [name, h] : s.tasks.handlers)
        handler_names.push_back(name);
    const Tags own = {
        {std::string(kHandlersTag), fmt::format("{}", fmt::join(handler_names, ","))}};
    if (auto st = check_tags(given, own, o.config); !st) return bad("tag", st.error().message);
    o.identity.tags = given;
    o.identity.tags.insert(o.identity.tags.end(), own.begin(), own.end());
    {
        // Its address is not known before the bind, so the longest one it could have is
        // assumed.
        const std::string longest_addr(
            std::string_view("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535").size(), 'a');
        const AliveUpdate self{
            Name(s.name),      Address{Name(s.advertise.empty() ? longest_addr : s.advertise)},
            Name(http->str()), Incarnation{UINT64_MAX},
            o.identity.tags,   kProtocolVersion};
        if (auto st = check_announcement(self, s.cluster, !s.encrypt.empty(), o.config); !st)
            return bad("tag", st.error().message);
    }
    if (s.log_level != "debug" && s.log_level != "info" && s.log_level != "warn" &&
        s.log_level != "error") {
        return bad("log_level", "must be debug, info, warn or error");
    }
    if (s.log_format != "text" && s.log_format != "json") {
        return bad("log_format", "must be text or json");
    }
    if (!s.encrypt.empty()) {
        auto key = net::key_from_base64(s.encrypt);
        if (!key) return bad("encrypt", key.error().message);
        o.keyring = net::Keyring::make({*key}).value();
        o.envelope = {s.encrypt_verify_incoming, s.encrypt_verify_outgoing};
        if (!s.tasks.data_dir.empty()) o.keyring_file = s.tasks.data_dir + "/keyring.json";
        if (s.encrypt_verify_incoming && !s.encrypt_verify_outgoing) {
            return bad("encrypt_verify_incoming",
                       "true with encrypt_verify_outgoing false: this member would refuse what "
                       "comes in clear while sending in clear itself. The steps are both false, "
                       "then outgoing true, then both true");
        }
    } else if (!s.encrypt_verify_incoming || !s.encrypt_verify_outgoing) {
        return bad(
            s.encrypt_verify_incoming ? "encrypt_verify_outgoing" : "encrypt_verify_incoming",
            "false has no meaning without encrypt: give the key too (the switches are "
            "for moving a running cluster to encryption)");
    }
    o.identity.name = Name(s.name);
    o.identity.http = Name(http->str());
    if (!s.tasks.data_dir.empty()) o.tags_file = s.tasks.data_dir + "/tags.json";
    o.retry_join_attempts = s.retry_join;
    if (auto st = s.tasks.validate(euid.value_or(geteuid())); !st) {
        // The task layer names its own fields ("capacity: ..."); the file and the flags know
        // them as tasks.capacity. Handlers already say "handlers.NAME".
        Error e = st.error();
        if (!e.message.starts_with("handlers")) e.message = "tasks." + e.message;
        return e;
    }
    if (!placement_from(s.task_placement)) {
        return bad("tasks.placement",
                   fmt::format("'{}' is not ring or coordinator", s.task_placement));
    }
    o.task_limits = s.tasks.limits;
    // A dial to a peer that never answers is given up as a forwarded task would be, so
    // forwarding, copies and joins fail over within forward_timeout.
    o.frame_limits.connect_timeout_ms = std::max<uint64_t>(1, ms_of(s.tasks.forward_timeout));
    return o;
}

}  // namespace chorus::daemon
