// Who may call the HTTP API (README.md, "Access control").
//
// With a token file (`--acl-tokens`), every call but /v1/health needs `Authorization: Bearer
// <secret>` naming a token whose scope covers it; anything else is refused (default deny):
//
//   read   every GET: members, the event stream, self, tasks, the ring, metrics
//   write  read, and submitting and cancelling tasks
//   admin  write, and leave and the keyring (whose list holds the keys themselves)
//
// The file holds each secret's SHA-256, never the secret, so reading it gives no token away:
//
//   {"tokens": [{"id": "ops", "scope": "admin", "sha256": "<64 hex digits>"}]}
//
// `chorus tokengen` makes a secret and its entry. Secrets are 256 random bits, so an unsalted
// hash is as strong as the secret; each presented secret is hashed and compared with every
// entry in constant time.
//
// Without a token file (the default, for an API on loopback) any local process may call the
// API, but a web page may not make a browser do it: a Host that is neither an IP address,
// localhost nor a configured name is refused (DNS rebinding: a name the attacker controls
// resolving to 127.0.0.1), and so is a mutating call whose Origin is not the agent's own
// (cross-site request forgery; /v1/leave needs no body, so a form could post it).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "http/server.hpp"
#include "net/seal.hpp"

namespace chorus::http {

enum class Scope : uint8_t { none, read, write, admin };
std::string_view to_string(Scope s);
std::optional<Scope> parse_scope(std::string_view text);
// Whether a call may change something: any method but GET, HEAD and OPTIONS.
bool mutating(std::string_view method);
// What a call needs: none for /v1/health, admin for /v1/leave and /v1/keyring, read for any
// other GET or HEAD, write for the rest.
Scope needed_scope(std::string_view method, std::string_view path);

struct Token {
    std::string id;  // named in the audit log and in errors; never the secret
    Scope scope = Scope::read;
    net::Digest hash{};
};

class Acl {
  public:
    // The token file's text. Errors (`bad_acl`) name the entry and field at fault.
    static Result<Acl> parse(std::string_view json_text);
    static Result<Acl> load(const std::string& path);
    // The token whose secret this is, or null.
    const Token* find(std::string_view secret) const;
    const std::vector<Token>& tokens() const { return tokens_; }

    static constexpr size_t kTokensMax = 4096;
    static constexpr size_t kFileBytesMax = 1 << 20;

  private:
    std::vector<Token> tokens_;
};

// A new token: the secret for its holder, and the token file's entry for it.
struct NewToken {
    std::string secret;  // 64 hex digits
    std::string entry;   // {"id": ..., "scope": ..., "sha256": ...}
};
Result<NewToken> new_token(std::string_view id, Scope scope);

struct AccessPolicy {
    std::optional<Acl> acl;          // set: every call but /v1/health needs a token
    std::vector<std::string> names;  // Host names allowed besides IP addresses and localhost
};

enum class Refusal : uint8_t { missing_token, bad_token, scope, bad_host, cross_origin };
inline constexpr size_t kRefusals = 5;
std::string_view to_string(Refusal r);

struct Verdict {
    std::string caller;  // the token's id; "anonymous" without a token file
    std::optional<Refusal> refusal;
    Response response;  // the 401 or 403 when refused
};
Verdict check_access(const AccessPolicy& policy, const Request& req);

}  // namespace chorus::http
