#include "daemon/settings.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/text.hpp"
#include "daemon/json.hpp"

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
    if (!v.is_number_unsigned())
        return bad(field, fmt::format("must be a whole number of {}", unit));
    const auto n = v.get<uint64_t>();
    if (n > max) return bad(field, fmt::format("must be at most {} {}", max, unit));
    return n;
}

}  // namespace

Status add_tag(Settings& s, const std::string& kv) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
        return bad("tag", fmt::format("'{}' must look like key=value", kv));
    }
    s.tags[kv.substr(0, eq)] = kv.substr(eq + 1);
    return Ok{};
}

Status apply_config_json(Settings& s, const std::string& text) {
    auto parsed = parse_json(text);
    if (!parsed) {
        return Error{"bad_config", fmt::format("config file: {}", parsed.error().message)};
    }
    const nlohmann::json& j = *parsed;
    if (!j.is_object()) return bad("config file", "must hold a JSON object");
    for (const auto& [key, value] : j.items()) {
        const auto need = [&, &key = key](bool ok, std::string_view type) -> Status {
            if (ok) return Ok{};
            return bad(key, fmt::format("must be {}", type));
        };
        Status st = Ok{};
        if (key == "name" || key == "bind" || key == "advertise" || key == "http" ||
            key == "profile" || key == "cluster" || key == "log_level" || key == "log_format") {
            st = need(value.is_string(), "a string");
            if (!st) return st;
            const auto v = value.get<std::string>();
            if (key == "name") s.name = v;
            if (key == "bind") s.bind = v;
            if (key == "advertise") s.advertise = v;
            if (key == "http") s.http = v;
            if (key == "profile") s.profile = v;
            if (key == "cluster") s.cluster = v;
            if (key == "log_level") s.log_level = v;
            if (key == "log_format") s.log_format = v;
        } else if (key == "seeds") {
            st = need(value.is_array() && std::all_of(value.begin(), value.end(),
                                                      [](const auto& x) { return x.is_string(); }),
                      "an array of \"ip:port\" strings");
            if (!st) return st;
            s.seeds = value.get<std::vector<std::string>>();
        } else if (key == "retry_join") {
            auto n = whole(value, key, UINT32_MAX, "attempts (0 = forever)");
            if (!n) return n.error();
            s.retry_join = static_cast<uint32_t>(*n);
        } else if (key == "leave_timeout_ms") {
            auto n = whole(value, key, kMillisecondsMax, "milliseconds");
            if (!n) return n.error();
            s.leave_timeout = milliseconds(*n);
        } else if (key == "tags") {
            st = need(value.is_object() && std::all_of(value.begin(), value.end(),
                                                       [](const auto& x) { return x.is_string(); }),
                      "an object of string values");
            if (!st) return st;
            for (const auto& [k, v] : value.items())
                s.tags[k] = v.get<std::string>();
        } else if (key == "data_dir") {
            st = need(value.is_string() && !value.get<std::string>().empty(),
                      "a folder path (omit it to keep tasks in memory only)");
            if (!st) return st;
            s.tasks.data_dir = value.get<std::string>();
        } else if (key == "tasks") {
            st = apply_tasks_json(s.tasks, value);
            if (!st) return st;
        } else if (key == "handlers") {
            st = apply_handlers_json(s.tasks, value);
            if (!st) return st;
        } else {
            return bad(key, "unknown setting (see chorus agent --help)");
        }
    }
    return Ok{};
}

Status apply_tasks_json(TaskOptions& t, const nlohmann::json& j) {
    if (!j.is_object()) return bad("tasks", "must be an object");
    TaskLimits& l = t.limits;
    for (const auto& [key, value] : j.items()) {
        const std::string field = "tasks." + key;
        if (key == "phi_route" || key == "balance_factor") {
            if (!value.is_number() || value.get<double>() < 0) {
                return bad(field, "must be a non-negative number");
            }
            (key == "phi_route" ? t.phi_route : t.balance_factor) = value.get<double>();
            continue;
        }
        if (!value.is_number_unsigned()) return bad(field, "must be a whole number");
        const auto n = value.get<uint64_t>();
        const auto u32 = [&](uint32_t& to) -> Status {
            if (n > UINT32_MAX) return bad(field, "is too large");
            to = static_cast<uint32_t>(n);
            return Ok{};
        };
        const auto bytes = [&, &value = value](size_t& to) -> Status {
            auto b = whole(value, field, kBytesMax, "bytes");
            if (b) to = *b;
            return b ? Status{Ok{}} : Status{b.error()};
        };
        const auto ms = [&, &value = value](Duration& to, uint64_t unit_ms = 1) -> Status {
            auto m = whole(value, field, kMillisecondsMax / unit_ms,
                           unit_ms == 1 ? "milliseconds" : "seconds");
            if (m) to = milliseconds(*m * unit_ms);
            return m ? Status{Ok{}} : Status{m.error()};
        };
        Status st = Ok{};
        if (key == "capacity") {
            st = u32(l.capacity);
        } else if (key == "queue_max") {
            st = u32(l.queue_max);
        } else if (key == "results_max") {
            st = u32(l.results_max);
        } else if (key == "results_bytes_max") {
            st = bytes(l.results_bytes_max);
        } else if (key == "results_ttl_s") {
            st = ms(l.results_ttl, 1000);
        } else if (key == "key_bytes_max") {
            st = bytes(l.key_bytes_max);
        } else if (key == "payload_bytes_max") {
            st = bytes(l.payload_bytes_max);
        } else if (key == "result_bytes_max") {
            st = bytes(l.result_bytes_max);
            t.runner.output_bytes_max = l.result_bytes_max;
        } else if (key == "timeout_default_ms") {
            st = ms(l.timeout_default);
        } else if (key == "timeout_max_ms") {
            st = ms(l.timeout_max);
        } else if (key == "vnodes") {
            st = u32(t.vnodes);
        } else if (key == "candidates") {
            st = u32(t.candidates);
        } else if (key == "replicas") {
            st = u32(t.task_replicas);
        } else if (key == "min_replicas") {
            st = u32(t.min_replicas);
        } else if (key == "copy_timeout_ms") {
            st = ms(t.copy_timeout);
        } else if (key == "forward_timeout_ms") {
            st = ms(t.forward_timeout);
        } else if (key == "copies_max") {
            uint32_t copies = 0;
            st = u32(copies);
            t.copies_max = copies;
        } else if (key == "backlog_bytes_max") {
            st = bytes(t.backlog_bytes_max);
        } else if (key == "copies_bytes_max") {
            st = bytes(t.copies_bytes_max);
        } else if (key == "copy_check_ms") {
            st = ms(t.copy_check);
        } else {
            return bad(
                field,
                "unknown setting (capacity, queue_max, results_max, results_bytes_max, "
                "results_ttl_s, key_bytes_max, payload_bytes_max, result_bytes_max, "
                "timeout_default_ms, timeout_max_ms, vnodes, candidates, replicas, min_replicas, "
                "copy_timeout_ms, phi_route, balance_factor, forward_timeout_ms, copy_check_ms, "
                "copies_max, "
                "copies_bytes_max, backlog_bytes_max)");
        }
        if (!st) return st;
    }
    return Ok{};
}

Status apply_handlers_json(TaskOptions& t, const nlohmann::json& j) {
    if (!j.is_object()) return bad("handlers", "must be an object of handler names");
    for (const auto& [name, value] : j.items()) {
        const std::string field = "handlers." + name;
        if (!value.is_object() || value.size() != 1) {
            return bad(field, R"(must be {"exec": ["/path/to/program", "arg"]}, )"
                              R"({"http": "http://127.0.0.1:8080/path"} or {"builtin": "echo"})");
        }
        HandlerSpec h;
        const std::string kind = value.begin().key();
        const nlohmann::json& arg = value.begin().value();
        if (kind == "exec") {
            if (!arg.is_array() || arg.empty() ||
                !std::all_of(arg.begin(), arg.end(), [](const auto& x) { return x.is_string(); })) {
                return bad(field + ".exec", "must be a non-empty array of strings (argv)");
            }
            h.kind = HandlerSpec::Kind::exec;
            h.argv = arg.get<std::vector<std::string>>();
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

Result<AgentOptions> to_agent_options(const Settings& s) {
    AgentOptions o;
    auto profile = Config::profile(s.profile);
    if (!profile) return bad("profile", "must be lan, wan or local");
    o.config = *profile;
    o.config.cluster = s.cluster;
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
    auto http = net::Endpoint::parse(s.http);
    if (!http) return bad("http", http.error().message);
    for (const auto& seed : s.seeds) {
        // Names stay names: the agent resolves them again on every join attempt.
        auto hp = net::split_host_port(seed);
        if (!hp) return bad("seed", hp.error().message);
        auto e = net::Endpoint::parse(seed);
        o.seeds.push_back(e ? e->str() : seed);
    }
    if (s.tags.size() > o.config.tags_max) {
        return bad("tag",
                   fmt::format("{} tags, over the limit of {}", s.tags.size(), o.config.tags_max));
    }
    size_t tag_bytes = 0;
    for (const auto& [k, v] : s.tags) {
        if (k.empty()) return bad("tag", "a tag's key must not be empty");
        for (const std::string& text : {k, v}) {
            if (const TextProblem p = check_text(text); p != TextProblem::none) {
                return bad("tag", fmt::format("{} {}", log_quote(text), describe(p)));
            }
        }
        tag_bytes += k.size() + v.size();
        o.identity.tags.emplace_back(k, v);
    }
    if (tag_bytes > o.config.tag_bytes_max) {
        return bad("tag", fmt::format("tags total {} bytes, over the limit of {}", tag_bytes,
                                      o.config.tag_bytes_max));
    }
    // The node announces itself (and refutes suspicions) in one update that must fit in a
    // packet beside an ack; one that does not is never gossiped, and the node could refute
    // only through push-pull, long after its peers declared it dead. Its address is not known
    // before the bind, so the longest one it could have is assumed.
    {
        const std::string longest_addr(
            std::string_view("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535").size(), 'a');
        Packet p;
        p.cluster = s.cluster;
        p.sender = Name(s.name);
        p.sender_addr = Address{Name(s.advertise.empty() ? longest_addr : s.advertise)};
        p.body = Ack{};
        const AliveUpdate self{p.sender,          p.sender_addr,
                               Name(http->str()), Incarnation{UINT64_MAX},
                               o.identity.tags,   kProtocolVersion};
        const size_t needed = encoded_size_bound(p) + encoded_size_bound(Update(self));
        if (needed > o.config.packet_bytes_max) {
            return bad("tag", fmt::format("the name, tags and addresses take {} bytes in a packet, "
                                          "over the packet limit of {}: use fewer or shorter tags",
                                          needed, o.config.packet_bytes_max));
        }
    }
    if (s.log_level != "debug" && s.log_level != "info" && s.log_level != "warn" &&
        s.log_level != "error") {
        return bad("log_level", "must be debug, info, warn or error");
    }
    if (s.log_format != "text" && s.log_format != "json") {
        return bad("log_format", "must be text or json");
    }
    o.identity.name = Name(s.name);
    o.identity.http = Name(http->str());
    o.retry_join_attempts = s.retry_join;
    if (auto st = s.tasks.validate(); !st) return st.error();
    o.task_limits = s.tasks.limits;
    // A dial to a peer that never answers is given up as a forwarded task would be, so
    // forwarding, copies and joins fail over within forward_timeout.
    o.frame_limits.connect_timeout_ms = std::max<uint64_t>(1, ms_of(s.tasks.forward_timeout));
    return o;
}

}  // namespace chorus::daemon
