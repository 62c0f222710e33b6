// Access control (tokens, scopes, Host and Origin) and the audit log, without a network.
#include "http/acl.hpp"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "daemon/temp_dir.hpp"
#include "http/audit.hpp"

using namespace chorus;
using namespace chorus::http;

namespace {

struct Tokens {
    std::string read, write, admin;
    AccessPolicy policy;
};

Tokens three_tokens() {
    Tokens t;
    auto r = new_token("reader", Scope::read).value();
    auto w = new_token("writer", Scope::write).value();
    auto a = new_token("ops", Scope::admin).value();
    t.read = r.secret;
    t.write = w.secret;
    t.admin = a.secret;
    const std::string file = R"({"tokens": [)" + r.entry + "," + w.entry + "," + a.entry + "]}";
    t.policy.acl = Acl::parse(file).value();
    return t;
}

Request request(std::string method, std::string path,
                std::map<std::string, std::string> headers = {}) {
    Request r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.target = r.path;
    r.headers = std::move(headers);
    return r;
}

Request with_token(std::string method, std::string path, const std::string& secret) {
    return request(std::move(method), std::move(path), {{"authorization", "Bearer " + secret}});
}

std::string code_of(const Verdict& v) {
    return nlohmann::json::parse(v.response.body)["error"]["code"].get<std::string>();
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

TEST_CASE("each call needs the scope of what it does") {
    CHECK(needed_scope("GET", "/v1/health") == Scope::none);
    CHECK(needed_scope("GET", "/v1/members") == Scope::read);
    CHECK(needed_scope("GET", "/v1/members/stream") == Scope::read);
    CHECK(needed_scope("GET", "/metrics") == Scope::read);
    CHECK(needed_scope("GET", "/v1/tasks/abc") == Scope::read);
    CHECK(needed_scope("POST", "/v1/tasks") == Scope::write);
    CHECK(needed_scope("DELETE", "/v1/tasks/abc") == Scope::write);
    CHECK(needed_scope("POST", "/v1/leave") == Scope::admin);
    CHECK(needed_scope("GET", "/v1/leave") == Scope::admin);
    // The keyring's list holds the keys themselves.
    CHECK(needed_scope("GET", "/v1/keyring") == Scope::admin);
    CHECK(needed_scope("POST", "/v1/keyring") == Scope::admin);
    // What no route knows is still not free: a GET needs read, anything else write.
    CHECK(needed_scope("GET", "/nowhere") == Scope::read);
    CHECK(needed_scope("PUT", "/nowhere") == Scope::write);
}

TEST_CASE("with tokens, every call but /v1/health needs one whose scope covers it") {
    const Tokens t = three_tokens();
    struct Row {
        const char* method;
        const char* path;
        Scope needs;
    };
    const Row rows[] = {
        {"GET", "/v1/members", Scope::read},   {"GET", "/metrics", Scope::read},
        {"POST", "/v1/tasks", Scope::write},   {"DELETE", "/v1/tasks/x", Scope::write},
        {"POST", "/v1/leave", Scope::admin},   {"GET", "/v1/keyring", Scope::admin},
        {"POST", "/v1/keyring", Scope::admin}, {"GET", "/v1/health", Scope::none}};
    for (const Row& row : rows) {
        INFO(row.method << " " << row.path);
        const Verdict none = check_access(t.policy, request(row.method, row.path));
        const Verdict bad = check_access(t.policy, with_token(row.method, row.path, "f00d"));
        if (row.needs == Scope::none) {
            CHECK_FALSE(none.refusal);
            CHECK_FALSE(bad.refusal);
            continue;
        }
        REQUIRE(none.refusal == Refusal::missing_token);
        CHECK(none.response.status == 401);
        CHECK(code_of(none) == "missing_token");
        CHECK(none.response.headers.at(0).first == "WWW-Authenticate");
        REQUIRE(bad.refusal == Refusal::bad_token);
        CHECK(bad.response.status == 401);
        for (const auto& [secret, scope, id] : {std::tuple{t.read, Scope::read, "reader"},
                                                std::tuple{t.write, Scope::write, "writer"},
                                                std::tuple{t.admin, Scope::admin, "ops"}}) {
            const Verdict v = check_access(t.policy, with_token(row.method, row.path, secret));
            CHECK(v.caller == id);
            if (scope >= row.needs) {
                CHECK_FALSE(v.refusal);
            } else {
                REQUIRE(v.refusal == Refusal::scope);
                CHECK(v.response.status == 403);
                CHECK(code_of(v) == "scope");
            }
        }
    }
}

TEST_CASE("the Authorization header must be a bearer token, in any case of the word") {
    const Tokens t = three_tokens();
    CHECK_FALSE(check_access(t.policy,
                             request("GET", "/v1/members", {{"authorization", "bearer " + t.read}}))
                    .refusal);
    CHECK(check_access(t.policy,
                       request("GET", "/v1/members", {{"authorization", "Basic " + t.read}}))
              .refusal == Refusal::bad_token);
    CHECK(check_access(t.policy, request("GET", "/v1/members", {{"authorization", "Bearer "}}))
              .refusal == Refusal::bad_token);
    // The secret's hash is what the file holds: the hash itself is no token.
    const std::string hash =
        nlohmann::json::parse(new_token("x", Scope::admin).value().entry)["sha256"];
    CHECK(check_access(t.policy, with_token("GET", "/v1/members", hash)).refusal ==
          Refusal::bad_token);
}

TEST_CASE("without tokens, a Host that is not an address or a given name is refused") {
    AccessPolicy p;
    p.names = {"chorus.internal"};
    for (const char* host :
         {"127.0.0.1:7980", "127.0.0.1", "[::1]:7980", "localhost:7980", "LOCALHOST", "10.1.2.3:80",
          "chorus.internal:7980", "Chorus.Internal"}) {
        INFO(host);
        CHECK_FALSE(check_access(p, request("POST", "/v1/leave", {{"host", host}})).refusal);
    }
    // A name that resolves to this host through the attacker's DNS (rebinding).
    for (const char* host : {"evil.example:7980", "localhost.evil.example", "127.0.0.1.nip.io",
                             "[::1", "::1:7980", "[::1]x", "chorus.internal.evil"}) {
        INFO(host);
        const Verdict v = check_access(p, request("GET", "/v1/members", {{"host", host}}));
        REQUIRE(v.refusal == Refusal::bad_host);
        CHECK(v.response.status == 403);
    }
    // A probe may ask anything of /v1/health; a client with no Host is no browser.
    CHECK_FALSE(check_access(p, request("GET", "/v1/health", {{"host", "evil.example"}})).refusal);
    CHECK_FALSE(check_access(p, request("POST", "/v1/leave")).refusal);
}

TEST_CASE("without tokens, a mutating call from another site's page is refused") {
    const AccessPolicy p;
    const auto call = [&](const char* method, const char* origin) {
        return check_access(
            p, request(method, "/v1/leave", {{"host", "127.0.0.1:7980"}, {"origin", origin}}));
    };
    CHECK_FALSE(call("POST", "http://127.0.0.1:7980").refusal);
    CHECK_FALSE(call("POST", "https://127.0.0.1:7980").refusal);
    for (const char* origin : {"http://evil.example", "null", "http://127.0.0.1:8000",
                               "file://127.0.0.1:7980", "http://127.0.0.1:7980.evil"}) {
        INFO(origin);
        const Verdict v = call("POST", origin);
        REQUIRE(v.refusal == Refusal::cross_origin);
        CHECK(v.response.status == 403);
        CHECK(call("DELETE", origin).refusal == Refusal::cross_origin);
        // A cross-site GET changes nothing, and the browser keeps its answer from the page.
        CHECK_FALSE(call("GET", origin).refusal);
    }
    // An Origin with no Host to compare it to is refused too.
    CHECK(check_access(p, request("POST", "/v1/tasks", {{"origin", "http://127.0.0.1:7980"}}))
              .refusal == Refusal::cross_origin);
}

TEST_CASE("a token file is checked whole, each error naming its entry") {
    const std::string h(64, 'a');
    const auto entry = [&](std::string id, std::string scope, std::string sha) {
        return nlohmann::json{{"id", id}, {"scope", scope}, {"sha256", sha}}.dump();
    };
    struct Case {
        std::string text;
        const char* says;
    };
    const Case cases[] = {
        {"[]", "must be"},
        {R"({"tokens": [], "more": 1})", "must be"},
        {"{\"tokens\": [" + entry("", "read", h) + "]}", "tokens[0].id"},
        {"{\"tokens\": [" + entry("a b", "read", h) + "]}", "tokens[0].id"},
        {"{\"tokens\": [" + entry("a", "root", h) + "]}", "tokens[0].scope"},
        {"{\"tokens\": [" + entry("a", "read", "abc") + "]}", "tokens[0].sha256"},
        {"{\"tokens\": [" + entry("a", "read", std::string(64, 'g')) + "]}", "tokens[0].sha256"},
        {"{\"tokens\": [" + entry("a", "read", h) + "," +
             entry("a", "write", std::string(64, 'b')) + "]}",
         "given twice"},
        {"{\"tokens\": [" + entry("a", "read", h) + "," + entry("b", "write", h) + "]}",
         "tokens[1].sha256: the same secret"},
        {R"({"tokens": [{"id": "a", "scope": "read", "sha256": ")" + h + R"(", "secret": "x"}]})",
         "tokens[0]: must be"},
        {"{\"tokens\": [", "JSON"},
    };
    for (const Case& c : cases) {
        INFO(c.text);
        auto acl = Acl::parse(c.text);
        REQUIRE_FALSE(acl.ok());
        CHECK(acl.error().code == "bad_acl");
        CHECK_THAT(acl.error().message, Catch::Contains(c.says));
    }
    REQUIRE(Acl::parse("{\"tokens\": [" + entry("a", "read", h) + "]}").ok());
    CHECK_FALSE(Acl::load("/nonexistent/tokens.json").ok());
}

TEST_CASE("tokengen makes distinct secrets whose entries the file takes") {
    auto a = new_token("ci", Scope::write).value();
    auto b = new_token("ci2", Scope::write).value();
    CHECK(a.secret.size() == 64);
    CHECK(a.secret != b.secret);
    CHECK_THAT(a.entry, !Catch::Contains(a.secret));
    auto acl = Acl::parse(R"({"tokens": [)" + a.entry + "," + b.entry + "]}").value();
    REQUIRE(acl.find(a.secret) != nullptr);
    CHECK(acl.find(a.secret)->id == "ci");
    CHECK(acl.find(b.secret)->id == "ci2");
    CHECK(acl.find(a.secret + "0") == nullptr);
    CHECK_FALSE(new_token("no spaces", Scope::read).ok());
    CHECK_FALSE(new_token("x", Scope::none).ok());
}

TEST_CASE("the audit log writes mutating calls and refusals, never secrets, and rotates") {
    test::TempDir dir;
    const std::string path = dir.path + "/audit.log";
    auto log = AuditLog::open({path, 4096, 2}).value();
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    Request submit = request("POST", "/v1/tasks",
                             {{"authorization", "Bearer s3cret-token"}, {"host", "127.0.0.1"}});
    submit.caller = "writer";
    submit.peer = "127.0.0.1:5555";
    submit.body = R"({"key": "k", "type": "echo", "payload": "private payload"})";
    Response accepted;
    accepted.status = 202;
    accepted.subject = "abc-123";
    CHECK(AuditLog::wanted(submit, accepted));
    log->record(submit, accepted);

    Request read = request("GET", "/v1/members");
    Response ok;
    CHECK_FALSE(AuditLog::wanted(read, ok));
    Response refused = error_response(401, "missing_token", "no token");
    CHECK(AuditLog::wanted(read, refused));
    log->record(read, refused);
    CHECK(log->lines() == 2);

    std::stringstream text(read_file(path));
    std::string line;
    std::getline(text, line);
    auto j = nlohmann::json::parse(line);
    CHECK(j["caller"] == "writer");
    CHECK(j["peer"] == "127.0.0.1:5555");
    CHECK(j["method"] == "POST");
    CHECK(j["path"] == "/v1/tasks");
    CHECK(j["status"] == 202);
    CHECK(j["outcome"] == "ok");
    CHECK(j["task"] == "abc-123");
    CHECK(j.contains("time"));
    std::getline(text, line);
    j = nlohmann::json::parse(line);
    CHECK(j["caller"] == "anonymous");
    CHECK(j["outcome"] == "missing_token");
    const std::string all = read_file(path);
    CHECK_THAT(all, !Catch::Contains("s3cret") && !Catch::Contains("private payload"));

    // Past bytes_max the file moves to .1, .1 to .2, and .2 is the last kept.
    for (int i = 0; i < 100; ++i)
        log->record(submit, accepted);
    CHECK(log->rotations() >= 2);
    CHECK(stat((path + ".1").c_str(), &st) == 0);
    CHECK(stat((path + ".2").c_str(), &st) == 0);
    CHECK(stat((path + ".3").c_str(), &st) != 0);
    for (const std::string& f : {path, path + ".1", path + ".2"}) {
        REQUIRE(stat(f.c_str(), &st) == 0);
        CHECK(static_cast<size_t>(st.st_size) <= 4096);
    }
    CHECK(log->failures() == 0);
    CHECK(log->lines() == 102);
}

TEST_CASE("an audit log that cannot be opened is an error that names it") {
    auto log = AuditLog::open({"/nonexistent/dir/audit.log"});
    REQUIRE_FALSE(log.ok());
    CHECK_THAT(log.error().message, Catch::Contains("/nonexistent/dir/audit.log"));
}
