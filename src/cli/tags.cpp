// chorus tags: a member's tags, read or changed at run time through its agent (GET and POST
// /v1/self/tags), as `serf tags -set/-delete` does: the change is kept in the agent's data dir
// and gossiped, so routers see it within a gossip round or two.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/call.hpp"
#include "cli/commands.hpp"

namespace chorus::cli {

std::string tags_listing(const nlohmann::json& j) {
    std::vector<std::vector<std::string>> rows = {{"TAG", "VALUE"}};
    for (const char* part : {"tags", "agent"}) {
        if (!j.contains(part) || !j[part].is_object()) continue;
        for (const auto& [k, v] : j[part].items()) {
            rows.push_back({std::string(part) == "agent" ? k + " (the agent's)" : k,
                            v.is_string() ? v.get<std::string>() : v.dump()});
        }
    }
    return format_table(rows);
}

int run_tags(const TagsOptions& o) try {
    http::ClientRequest req;
    req.target = "/v1/self/tags";
    if (!o.set.empty() || !o.remove.empty()) {
        nlohmann::json set = nlohmann::json::object();
        for (const std::string& kv : o.set) {
            auto tag = parse_tag(kv);
            if (!tag) {
                fmt::print(stderr, "chorus tags: --set {}: use name=value\n", kv);
                return 2;
            }
            set[tag->first] = tag->second;
        }
        req.method = "POST";
        req.body = nlohmann::json{{"set", set}, {"delete", o.remove}}.dump();
    }
    Loop loop;
    auto r = call("tags", o.agent, loop.get(), std::move(req));
    if (!r) return 1;
    auto parsed = parse_object("tags", *r);
    if (!parsed) return 1;
    const nlohmann::json& j = *parsed;
    if (o.json) {
        fmt::print("{}\n", j.dump(2));
    } else {
        fmt::print("{}", tags_listing(j));
        if (req.method == "POST" && j.value("kept_in", nlohmann::json()).is_null()) {
            fmt::print(stderr,
                       "chorus tags: the agent has no data dir: the change lasts until it "
                       "stops\n");
        }
    }
    return 0;
} catch (const nlohmann::json::exception& e) {
    fmt::print(stderr, "chorus tags: unexpected answer from the agent: {}\n", e.what());
    return 1;
}

}  // namespace chorus::cli
