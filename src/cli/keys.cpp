// chorus keys: the cluster's keyring through any agent (GET and POST /v1/keyring), as Serf's
// `serf keys` does it: install a new key everywhere, use it, then remove the old one. And
// chorus tokengen, the API's other secret.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/call.hpp"
#include "cli/commands.hpp"
#include "http/acl.hpp"

namespace chorus::cli {

std::string keyring_table(const nlohmann::json& j) {
    std::vector<std::vector<std::string>> rows = {{"KEY", "MEMBERS", "PRIMARY ON"}};
    const size_t answered = j.at("answered").get<size_t>();
    for (const auto& k : j.at("keys")) {
        rows.push_back({k.at("key").get<std::string>(),
                        fmt::format("{}/{}", k.at("members").get<size_t>(), answered),
                        std::to_string(k.at("primary").get<size_t>())});
    }
    std::string out = format_table(rows);
    for (const auto& e : j.at("errors")) {
        out += fmt::format("{}: {} ({})\n", e.at("member").get<std::string>(),
                           e.at("message").get<std::string>(), e.at("code").get<std::string>());
    }
    return out;
}

int run_keys(const KeysOptions& o) try {
    http::ClientRequest req;
    req.target = "/v1/keyring";
    const std::pair<const char*, const std::string*> ops[] = {
        {"install", &o.install}, {"use", &o.use}, {"remove", &o.remove}};
    for (const auto& [op, key] : ops) {
        if (key->empty()) continue;
        req.method = "POST";
        req.body = nlohmann::json{{"op", op}, {"key", *key}}.dump();
    }
    // Any status: a partial answer's body names the members that missed the op.
    Loop loop;
    auto r = call("keys", o.agent, loop.get(), std::move(req), true);
    if (!r) return 1;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    const bool table = j.is_object() && j.contains("keys") && j.contains("errors");
    if (o.json && j.is_object()) {
        fmt::print("{}\n", j.dump(2));
    } else if (table) {
        fmt::print("{}", keyring_table(j));
    }
    if (r->status < 200 || r->status > 299) {
        fmt::print(stderr, "chorus keys: the agent answered: {}\n", describe_error(*r));
        return 1;
    }
    return 0;
} catch (const nlohmann::json::exception& e) {
    fmt::print(stderr, "chorus keys: unexpected answer from the agent: {}\n", e.what());
    return 1;
}

int run_tokengen(const std::string& id, const std::string& scope_text) {
    const auto scope = http::parse_scope(scope_text);
    if (!scope) {
        fmt::print(stderr, "chorus tokengen: --scope: read, write or admin\n");
        return 2;
    }
    auto t = http::new_token(id, *scope);
    if (!t) {
        fmt::print(stderr, "chorus tokengen: {}\n", t.error().message);
        return 2;
    }
    // The secret alone on the first line, for a script to take; the entry on the second.
    fmt::print("{}\n{}\n", t->secret, t->entry);
    return 0;
}

}  // namespace chorus::cli
