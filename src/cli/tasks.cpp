// `chorus submit`, `chorus task` and `chorus ring`: tasks and the ring through a running
// agent's HTTP API.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "cli/call.hpp"
#include "cli/commands.hpp"

namespace chorus::cli {

namespace {

using nlohmann::json;

// A member's load as the ring views show it; null from a member that refuses tasks.
std::string load_text(const json& member) {
    const auto it = member.find("load");
    if (it == member.end() || !it->is_number()) return "refusing";
    return fmt::format("{:.2f}", it->get<double>());
}

// Prints a task answer; the exit status is 1 for a task that ended other than succeeded.
int print_task(const TaskOutputOptions& o, const json& task) {
    fmt::print("{}", o.json ? task.dump(2) + "\n" : task_summary(task));
    const std::string state = task.value("state", "");
    const bool ended_badly =
        state == "failed" || state == "timed_out" || state == "cancelled" || state == "lost";
    return ended_badly && !o.cancel ? 1 : 0;
}

std::string wait_query(const std::string& wait) {
    return wait.empty() ? "" : "?wait=" + wait;
}

}  // namespace

std::string task_summary(const json& t) {
    std::vector<std::vector<std::string>> rows;
    const auto text = [&](const char* field) -> std::string {
        if (!t.contains(field) || t[field].is_null()) return "";
        return t[field].is_string() ? t[field].get<std::string>() : t[field].dump();
    };
    rows.push_back({"id:", text("id")});
    rows.push_back({"key:", text("key")});
    rows.push_back({"type:", text("type")});
    if (t.contains("where") && t["where"].is_object()) {
        std::string where;
        for (const auto& [k, v] : t["where"].items())
            where += fmt::format("{}{}={}", where.empty() ? "" : ", ", k,
                                 v.is_string() ? v.get<std::string>() : v.dump());
        rows.push_back({"where:", where});
    }
    std::string owner = text("owner");
    if (t.value("forwarded", false)) owner += " (forwarded)";
    rows.push_back({"owner:", owner});
    rows.push_back({"state:", text("state")});
    if (t.contains("result")) rows.push_back({"result:", t["result"].dump()});
    if (t.contains("exit_code")) rows.push_back({"exit code:", text("exit_code")});
    if (t.contains("error")) rows.push_back({"error:", text("error")});
    const auto started = t.value("started_ms", json());
    const auto finished = t.value("finished_ms", json());
    if (started.is_number() && finished.is_number()) {
        rows.push_back({"ran:", age(finished.get<int64_t>() - started.get<int64_t>())});
    }
    return format_table(rows);
}

std::string ring_table(const json& ring) {
    std::vector<std::vector<std::string>> rows = {{"NAME", "SHARE", "LOAD"}};
    for (const auto& m : ring.value("members", json::array())) {
        if (!m.is_object()) continue;
        rows.push_back({m.value("name", "?"), fmt::format("{:.1f}%", 100 * m.value("share", 0.0)),
                        load_text(m)});
    }
    return fmt::format("checksum {}, {} points per member, {} candidates per key\n",
                       ring.value("checksum", "?"), ring.value("vnodes", 0),
                       ring.value("candidates", 0)) +
           format_table(rows);
}

std::string lookup_table(const json& l) {
    std::vector<std::vector<std::string>> rows = {{"CANDIDATE", "ALIVE", "PHI", "LOAD", "SENT"}};
    const std::string owner =
        l.value("owner", json()).is_string() ? l["owner"].get<std::string>() : "";
    for (const auto& c : l.value("candidates", json::array())) {
        if (!c.is_object()) continue;
        const std::string name = c.value("name", "?");
        rows.push_back({name + (name == owner ? " *" : ""), c.value("alive", false) ? "yes" : "no",
                        fmt::format("{:.2f}", c.value("phi", 0.0)), load_text(c),
                        fmt::format("{:.2f}", c.value("sent", 0.0))});
    }
    return fmt::format("key {} (hash {}): {}\n", l.value("key", "?"), l.value("hash", "?"),
                       owner.empty() ? "no alive owner" : "the router picks " + owner) +
           format_table(rows);
}

int run_submit(const SubmitOptions& o) try {
    json body = {{"key", o.key}, {"type", o.type}};
    std::string payload_text = o.payload;
    if (!o.payload_file.empty()) {
        std::stringstream text;
        if (o.payload_file == "-") {
            text << std::cin.rdbuf();
        } else {
            std::ifstream in(o.payload_file);
            if (!in) {
                fmt::print(stderr, "chorus submit: --payload-file: cannot read {}\n",
                           o.payload_file);
                return 2;
            }
            text << in.rdbuf();
        }
        payload_text = text.str();
    }
    if (!payload_text.empty()) {
        auto p = json::parse(payload_text, nullptr, false);
        if (p.is_discarded()) {
            fmt::print(stderr, "chorus submit: the payload is not valid JSON\n");
            return 2;
        }
        body["payload"] = std::move(p);
    }
    for (const std::string& kv : o.where) {
        auto tag = parse_tag(kv);
        if (!tag) {
            fmt::print(stderr, "chorus submit: --where {}: use name=value\n", kv);
            return 2;
        }
        body["where"][tag->first] = tag->second;
    }
    if (!o.id.empty()) body["id"] = o.id;
    if (!o.placement.empty()) body["placement"] = o.placement;
    if (o.singleton) body["singleton"] = true;
    if (o.timeout_ms != 0) body["timeout_ms"] = o.timeout_ms;
    Loop loop;
    http::ClientRequest req;
    req.method = "POST";
    req.target = "/v1/tasks" + wait_query(o.out.wait);
    req.body = body.dump();
    req.timeout = seconds(30) + seconds(300);  // the agent bounds ?wait= at 300 s
    auto r = call("submit", o.agent, loop.get(), std::move(req));
    if (!r) return 1;
    auto task = parse_object("submit", *r);
    return task ? print_task(o.out, *task) : 1;
} catch (const json::exception& e) {
    fmt::print(stderr, "chorus submit: unexpected answer from the agent: {}\n", e.what());
    return 1;
}

int run_task(const Target& agent, const std::string& id, const TaskOutputOptions& o) try {
    Loop loop;
    http::ClientRequest req;
    req.method = o.cancel ? "DELETE" : "GET";
    req.target = "/v1/tasks/" + id + wait_query(o.wait);
    req.timeout = seconds(30) + seconds(300);
    auto r = call("task", agent, loop.get(), std::move(req));
    if (!r) return 1;
    auto task = parse_object("task", *r);
    return task ? print_task(o, *task) : 1;
} catch (const json::exception& e) {
    fmt::print(stderr, "chorus task: unexpected answer from the agent: {}\n", e.what());
    return 1;
}

int run_ring(const Target& agent, const std::string& key, bool as_json) try {
    Loop loop;
    http::ClientRequest req;
    req.target = key.empty() ? "/v1/ring" : "/v1/ring/lookup?key=" + http::url_encode(key);
    auto r = call("ring", agent, loop.get(), std::move(req));
    if (!r) return 1;
    auto j = parse_object("ring", *r);
    if (!j) return 1;
    fmt::print("{}", as_json ? j->dump(2) + "\n" : key.empty() ? ring_table(*j) : lookup_table(*j));
    return 0;
} catch (const json::exception& e) {
    fmt::print(stderr, "chorus ring: unexpected answer from the agent: {}\n", e.what());
    return 1;
}

}  // namespace chorus::cli
