#include "http/acl.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/task.hpp"
#include "daemon/json.hpp"
#include "net/endpoint.hpp"
#include "net/seal.hpp"

namespace chorus::http {

namespace {

constexpr std::array<std::string_view, 4> kScopeNames = {"none", "read", "write", "admin"};
constexpr std::array<std::string_view, kRefusals> kRefusalNames = {
    "missing_token", "bad_token", "scope", "bad_host", "cross_origin"};

std::optional<net::Digest> from_hex(std::string_view text) {
    if (text.size() != 64) return std::nullopt;
    net::Digest d{};
    for (size_t i = 0; i < d.size(); ++i) {
        uint8_t byte = 0;
        for (char c : text.substr(2 * i, 2)) {
            const int v = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                 : -1;
            if (v < 0) return std::nullopt;
            byte = static_cast<uint8_t>(byte * 16 + v);
        }
        d[i] = byte;
    }
    return d;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view header(const Request& req, const std::string& name) {
    const auto it = req.headers.find(name);
    return it == req.headers.end() ? std::string_view() : std::string_view(it->second);
}

Verdict refuse(Refusal why, int status, std::string message) {
    Verdict v;
    v.refusal = why;
    v.response = error_response(status, to_string(why), message);
    if (status == 401)
        v.response.headers.emplace_back("WWW-Authenticate", R"(Bearer realm="chorus")");
    return v;
}

}  // namespace

bool mutating(std::string_view method) {
    return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

std::string_view to_string(Scope s) {
    return kScopeNames[static_cast<size_t>(s)];
}

std::optional<Scope> parse_scope(std::string_view text) {
    for (size_t i = 1; i < kScopeNames.size(); ++i)
        if (kScopeNames[i] == text) return static_cast<Scope>(i);
    return std::nullopt;
}

std::string_view to_string(Refusal r) {
    return kRefusalNames[static_cast<size_t>(r)];
}

Scope needed_scope(std::string_view method, std::string_view path) {
    // Probes, and the dashboard's page (it holds no data; it asks for a token to read any).
    if (path == "/v1/health" || (path == "/" && !mutating(method))) return Scope::none;
    if (path == "/v1/leave" || path == "/v1/keyring" || path.starts_with("/v1/force-leave/"))
        return Scope::admin;
    // A member's tags steer where tasks run: changing them is the operator's.
    if ((path == "/v1/self/tags" || path == "/v1/drain") && mutating(method)) return Scope::admin;
    return mutating(method) ? Scope::write : Scope::read;
}

Result<Acl> Acl::parse(std::string_view json_text) {
    const auto bad = [](std::string message) { return Error{"bad_acl", std::move(message)}; };
    auto parsed = daemon::parse_json(json_text);
    if (!parsed) return bad(parsed.error().message);
    const nlohmann::json& j = *parsed;
    if (!j.is_object() || !j.contains("tokens") || !j["tokens"].is_array() || j.size() != 1) {
        return bad(R"(the file must be {"tokens": [{"id": ..., "scope": ..., "sha256": ...}]})");
    }
    if (j["tokens"].size() > kTokensMax)
        return bad(fmt::format("{} tokens, over the limit of {}", j["tokens"].size(), kTokensMax));
    Acl acl;
    std::set<std::string> ids;
    std::set<net::Digest> hashes;
    for (size_t i = 0; i < j["tokens"].size(); ++i) {
        const nlohmann::json& e = j["tokens"][i];
        const auto text = [&](const char* k) { return daemon::string_field(e, k); };
        const std::string where = fmt::format("tokens[{}]", i);
        if (!e.is_object() || e.size() != 3) {
            return bad(where + R"(: must be {"id": ..., "scope": ..., "sha256": ...} and no more)");
        }
        Token t;
        t.id = text("id");
        if (!valid_task_name(t.id))
            return bad(where + ".id: 1 to 64 characters of A-Z a-z 0-9 . _ -");
        if (!ids.insert(t.id).second) return bad(where + ".id: '" + t.id + "' is given twice");
        const auto scope = parse_scope(text("scope"));
        if (!scope) return bad(where + ".scope: must be read, write or admin");
        t.scope = *scope;
        const auto hash = from_hex(text("sha256"));
        if (!hash) {
            return bad(where +
                       ".sha256: must be the secret's SHA-256 in 64 hex digits (chorus tokengen)");
        }
        if (!hashes.insert(*hash).second)
            return bad(where + ".sha256: the same secret as another token's");
        t.hash = *hash;
        acl.tokens_.push_back(std::move(t));
    }
    return acl;
}

Result<Acl> Acl::load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Error{"bad_acl", fmt::format("cannot read {}", path)};
    std::string text(kFileBytesMax + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    text.resize(static_cast<size_t>(in.gcount()));
    if (text.size() > kFileBytesMax)
        return Error{"bad_acl", fmt::format("{}: over {} bytes", path, kFileBytesMax)};
    auto acl = parse(text);
    if (!acl) return Error{"bad_acl", fmt::format("{}: {}", path, acl.error().message)};
    return acl;
}

const Token* Acl::find(std::string_view secret) const {
    const net::Digest d = net::sha256(secret);
    const Token* found = nullptr;
    // Every entry is compared, in constant time, whatever matched.
    for (const Token& t : tokens_) {
        if (CRYPTO_memcmp(t.hash.data(), d.data(), d.size()) == 0) found = &t;
    }
    return found;
}

Result<NewToken> new_token(std::string_view id, Scope scope) {
    if (!valid_task_name(id))
        return Error{"bad_id", "--id: 1 to 64 characters of A-Z a-z 0-9 . _ -"};
    if (scope == Scope::none) return Error{"bad_scope", "--scope: read, write or admin"};
    NewToken t;
    t.secret = net::to_hex(net::new_key());
    t.entry = daemon::dump_json(
        {{"id", id}, {"scope", to_string(scope)}, {"sha256", net::to_hex(net::sha256(t.secret))}});
    return t;
}

Verdict check_access(const AccessPolicy& policy, const Request& req) {
    const Scope needed = needed_scope(req.method, req.path);
    if (policy.acl) {
        if (needed == Scope::none) return Verdict{"anonymous", std::nullopt, {}};
        const std::string_view auth = header(req, "authorization");
        constexpr std::string_view kBearer = "bearer ";
        if (auth.empty()) {
            return refuse(Refusal::missing_token, 401,
                          "this agent needs a token: send Authorization: Bearer <secret> (the "
                          "CLI's --token or $CHORUS_HTTP_TOKEN)");
        }
        if (auth.size() <= kBearer.size() || !iequals(auth.substr(0, kBearer.size()), kBearer)) {
            return refuse(Refusal::bad_token, 401,
                          "the Authorization header must be Bearer <secret>");
        }
        const Token* t = policy.acl->find(auth.substr(kBearer.size()));
        if (t == nullptr) {
            return refuse(Refusal::bad_token, 401, "the token is not one this agent knows");
        }
        if (t->scope < needed) {
            Verdict v =
                refuse(Refusal::scope, 403,
                       fmt::format("token '{}' has scope {}; {} {} needs {}", t->id,
                                   to_string(t->scope), req.method, req.path, to_string(needed)));
            v.caller = t->id;
            return v;
        }
        return Verdict{t->id, std::nullopt, {}};
    }
    // No tokens: keep browsers out. A client without a Host header is no browser.
    if (needed == Scope::none) return Verdict{"anonymous", std::nullopt, {}};
    const std::string_view host_header = header(req, "host");
    if (!host_header.empty()) {
        const auto hp = net::split_host_port(host_header, 80);
        const bool named =
            hp && (net::is_ip_address(hp->host) || iequals(hp->host, "localhost") ||
                   std::any_of(policy.names.begin(), policy.names.end(),
                               [&](const std::string& n) { return iequals(hp->host, n); }));
        if (!named) {
            return refuse(Refusal::bad_host, 403,
                          fmt::format("Host '{}' is not this agent's address, localhost or a "
                                      "name it was given (--http-name)",
                                      host_header));
        }
    }
    const auto origin = req.headers.find("origin");
    if (mutating(req.method) && origin != req.headers.end()) {
        const std::string_view o = origin->second;
        const size_t scheme = o.find("://");
        const bool same = !host_header.empty() && scheme != std::string_view::npos &&
                          (o.substr(0, scheme) == "http" || o.substr(0, scheme) == "https") &&
                          iequals(o.substr(scheme + 3), host_header);
        if (!same) {
            return refuse(
                Refusal::cross_origin, 403,
                fmt::format("a {} from another site's page (Origin {}) is refused", req.method, o));
        }
    }
    return Verdict{"anonymous", std::nullopt, {}};
}

}  // namespace chorus::http
