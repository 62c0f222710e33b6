// `chorus members` and `chorus leave`: clients of a running agent's HTTP API.
#include <uv.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

#include "cli/call.hpp"
#include "cli/commands.hpp"
#include "http/client.hpp"

namespace chorus::cli {

namespace {

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

int watch(const MembersOptions& o, uv_loop_t* loop) {
    http::SseReader reader;
    bool bad = false;
    http::ClientRequest req;
    req.target = "/v1/members/stream";
    req.on_body = [&](std::string_view bytes) {
        auto events = reader.feed(bytes);
        if (!events) {
            bad = true;
            return false;
        }
        for (const auto& e : *events) {
            auto j = nlohmann::json::parse(e.data, nullptr, false);
            if (j.is_discarded() || !j.is_object()) {
                bad = true;
                return false;
            }
            if (e.type == "snapshot") {
                j = filter_members(std::move(j), o.filter).value();  // checked before the call
            } else if (!o.filter.status.empty() &&
                       std::find(o.filter.status.begin(), o.filter.status.end(),
                                 j.value("state", "")) == o.filter.status.end()) {
                continue;  // a change into a state not asked for
            }
            if (o.json) {
                fmt::print("{}\n", nlohmann::json{{"event", e.type}, {"data", j}}.dump());
            } else if (e.type == "snapshot") {
                fmt::print("{}", members_table(j));
            } else {
                fmt::print("{}  {}\n", utc_now(), event_line(j));
            }
            std::fflush(stdout);
        }
        return true;
    };
    if (!call("members", o.agent, loop, std::move(req))) return 1;
    if (bad) {
        fmt::print(stderr, "chorus members: the agent sent a malformed event\n");
        return 1;
    }
    fmt::print(stderr, "chorus members: the agent closed the stream\n");
    return 1;
}

}  // namespace

Result<nlohmann::json> filter_members(nlohmann::json view, const MemberFilter& f) {
    static constexpr std::string_view kStates[] = {"alive", "suspect", "dead", "left"};
    for (const std::string& s : f.status) {
        if (std::find(std::begin(kStates), std::end(kStates), s) == std::end(kStates)) {
            return Error{"bad_filter",
                         fmt::format("--status {}: use alive, suspect, dead or left", s)};
        }
    }
    std::vector<std::pair<std::string, std::string>> tags;
    for (const std::string& kv : f.tags) {
        auto tag = parse_tag(kv);
        if (!tag) return Error{"bad_filter", fmt::format("--tag {}: use key=value", kv)};
        tags.push_back(std::move(*tag));
    }
    const auto matches = [&](const nlohmann::json& m) {
        const std::string state = m.value("state", "");
        if (!f.status.empty() &&
            std::find(f.status.begin(), f.status.end(), state) == f.status.end()) {
            return false;
        }
        const nlohmann::json tag_map = m.value("tags", nlohmann::json::object());
        for (const auto& [k, want] : tags) {
            if (!tag_map.contains(k) || !tag_map[k].is_string()) return false;
            const std::string have = tag_map[k].get<std::string>();
            const bool prefix = want.ends_with('*');
            if (prefix ? !have.starts_with(want.substr(0, want.size() - 1)) : have != want) {
                return false;
            }
        }
        return true;
    };
    if (!f.any() || !view.contains("members") || !view["members"].is_array()) return view;
    nlohmann::json kept = nlohmann::json::array();
    for (auto& m : view["members"]) {
        if (m.is_object() && matches(m)) kept.push_back(std::move(m));
    }
    view["members"] = std::move(kept);
    return view;
}

std::string age(int64_t ms) {
    if (ms < 0) ms = 0;
    if (ms < 10'000) return fmt::format("{:.1f}s", static_cast<double>(ms) / 1000);
    const int64_t s = ms / 1000;
    if (s < 3600) return s < 60 ? fmt::format("{}s", s) : fmt::format("{}m{}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h{}m", s / 3600, s % 3600 / 60);
    return fmt::format("{}d{}h", s / 86400, s % 86400 / 3600);
}

std::string members_table(const nlohmann::json& view) {
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"NAME", "ADDRESS", "STATE", "SINCE", "PHI", "INCARNATION", "TAGS"});
    const nlohmann::json members = view.value("members", nlohmann::json::array());
    for (const auto& m : members) {
        if (!m.is_object()) continue;
        std::string tags;
        const nlohmann::json tag_map = m.value("tags", nlohmann::json::object());
        for (const auto& [k, v] : tag_map.items())
            tags += fmt::format("{}{}={}", tags.empty() ? "" : ",", k,
                                v.is_string() ? v.get<std::string>() : v.dump());
        rows.push_back({m.value("name", "?"), m.value("addr", ""), m.value("state", "?"),
                        age(m.value("state_since_ms", int64_t{0})),
                        m.contains("phi") && m["phi"].is_number()
                            ? fmt::format("{:.2f}", m["phi"].get<double>())
                            : "-",
                        std::to_string(m.value("incarnation", uint64_t{0})), tags});
    }
    std::sort(rows.begin() + 1, rows.end());
    return format_table(rows);
}

std::string event_line(const nlohmann::json& e) {
    const std::string name = e.value("name", "?");
    const std::string state = e.value("state", "?");
    const auto& previous = e.contains("previous") ? e["previous"] : nlohmann::json();
    const std::string from = previous.is_string() ? previous.get<std::string>() : "new";
    std::string line = fmt::format("{}  {} -> {}  incarnation {}", name, from, state,
                                   e.value("incarnation", uint64_t{0}));
    if (e.value("origin", false)) line += "  (this node's own finding)";
    return line;
}

int run_members(const MembersOptions& o) try {
    if (auto checked = filter_members(nlohmann::json::object(), o.filter); !checked) {
        fmt::print(stderr, "chorus members: {}\n", checked.error().message);
        return 2;
    }
    Loop loop;
    if (o.watch) return watch(o, loop.get());
    http::ClientRequest req;
    req.target = "/v1/members";
    auto r = call("members", o.agent, loop.get(), std::move(req));
    if (!r) return 1;
    auto view = nlohmann::json::parse(r->body, nullptr, false);
    if (view.is_discarded() || !view.is_object()) {
        fmt::print(stderr, "chorus members: the agent's answer is not JSON\n");
        return 1;
    }
    auto shown = filter_members(std::move(view), o.filter);
    if (!shown) {
        fmt::print(stderr, "chorus members: {}\n", shown.error().message);
        return 2;
    }
    fmt::print("{}", o.json ? shown->dump(2) + "\n" : members_table(*shown));
    return 0;
} catch (const nlohmann::json::exception& e) {
    // A field of the wrong type in the agent's answer (the JSON itself parsed).
    fmt::print(stderr, "chorus members: unexpected answer from the agent: {}\n", e.what());
    return 1;
}

int run_leave(const Target& agent) {
    Loop loop;
    http::ClientRequest req;
    req.method = "POST";
    req.target = "/v1/leave";
    // The answer comes once the leave has spread, which the agent bounds by its leave timeout.
    req.timeout = seconds(60);
    if (!call("leave", agent, loop.get(), std::move(req))) return 1;
    fmt::print("Graceful leave complete\n");
    return 0;
}

int run_monitor(const Target& agent, const std::string& level) {
    Loop loop;
    http::SseReader reader;
    bool bad = false;
    http::ClientRequest req;
    req.target = "/v1/monitor?level=" + http::url_encode(level);
    req.on_body = [&](std::string_view bytes) {
        auto events = reader.feed(bytes);
        if (!events) {
            bad = true;
            return false;
        }
        for (const auto& e : *events)
            fmt::print("{}\n", e.data);
        std::fflush(stdout);
        return true;
    };
    if (!call("monitor", agent, loop.get(), std::move(req))) return 1;
    fmt::print(stderr, "chorus monitor: the agent {}\n",
               bad ? "sent a malformed event" : "closed the stream");
    return 1;
}

int run_force_leave(const Target& agent, const std::string& name, bool prune) {
    Loop loop;
    http::ClientRequest req;
    req.method = "POST";
    req.target = "/v1/force-leave/" + name + (prune ? "?prune=true" : "");
    auto r = call("force-leave", agent, loop.get(), std::move(req));
    if (!r) return 1;
    fmt::print("{} was forced out: {}\n", name,
               prune ? "every member forgets it" : "left, and nobody calls it back");
    return 0;
}

int run_drain(const Target& agent, bool off) {
    Loop loop;
    http::ClientRequest req;
    req.method = off ? "DELETE" : "POST";
    req.target = "/v1/drain";
    // The answer comes once the queue is handed over: a forward timeout per task at most.
    req.timeout = seconds(60);
    auto r = call("drain", agent, loop.get(), std::move(req));
    if (!r) return 1;
    auto parsed = parse_object("drain", *r);
    if (!parsed) return 1;
    const nlohmann::json& j = *parsed;
    if (off) {
        fmt::print("Taking tasks again ({} running, {} queued)\n", j.value("running", 0),
                   j.value("queued", 0));
    } else {
        fmt::print("Draining: no new tasks; {} queued handed over, {} kept; {} still running\n",
                   j.value("handed_over", 0), j.value("kept", 0), j.value("running", 0));
    }
    return 0;
}

int run_coordinator(const Target& agent, bool json) {
    Loop loop;
    http::ClientRequest req;
    req.target = "/v1/coordinator";
    auto r = call("coordinator", agent, loop.get(), std::move(req));
    if (!r) return 1;
    auto parsed = parse_object("coordinator", *r);
    if (!parsed) return 1;
    const nlohmann::json& j = *parsed;
    if (json) {
        fmt::print("{}\n", j.dump());
    } else if (const auto who = j.find("coordinator"); who != j.end() && who->is_string()) {
        fmt::print("{} (priority {}{}), view index {}\n", who->get<std::string>(),
                   j.value("priority", int64_t{0}), j.value("self", false) ? ", this agent" : "",
                   j.value("index", uint64_t{0}));
    } else {
        fmt::print("none: no member is alive in this agent's view (index {})\n",
                   j.value("index", uint64_t{0}));
    }
    return 0;
}

}  // namespace chorus::cli
