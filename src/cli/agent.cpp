// `chorus agent`: the agent process (daemon/process.hpp) with the HTTP API in front of it.
#include <uv.h>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "core/text.hpp"
#include "daemon/process.hpp"
#include "http/acl.hpp"
#include "http/api.hpp"
#include "http/audit.hpp"
#include "http/client.hpp"
#include "http/server.hpp"

namespace chorus::cli {

using namespace chorus::daemon;

namespace {

// The http task handler's transport: the CLI's client, run asynchronously on the agent's loop.
HttpPost http_post(uv_loop_t* loop) {
    return [loop](const std::string& url, std::string body, Duration timeout, size_t body_max,
                  std::function<void(Result<std::pair<int, std::string>>)> done) {
        // check_handler admitted only http://ip:port/path.
        const std::string_view rest = std::string_view(url).substr(7);
        const size_t slash = rest.find('/');
        const auto to = net::Endpoint::parse(rest.substr(0, slash)).value();
        http::ClientRequest req;
        req.method = "POST";
        req.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
        req.body = std::move(body);
        req.timeout = timeout;
        req.body_bytes_max = body_max;
        http::fetch_async(loop, to, std::move(req),
                          [done = std::move(done)](Result<http::ClientResponse> r) {
                              if (!r) return done(r.error());
                              done(std::pair<int, std::string>{r->status, std::move(r->body)});
                          });
    };
}

// The HTTP API over the process's services.
class HttpFront : public FrontEnd {
  public:
    static Result<std::unique_ptr<FrontEnd>> start(Process& p, http::AccessPolicy access,
                                                   std::unique_ptr<http::AuditLog> audit,
                                                   std::shared_ptr<net::TlsContext> tls) {
        auto front = std::unique_ptr<HttpFront>(new HttpFront());
        HttpFront& f = *front;
        f.audit_ = std::move(audit);
        f.api_ = std::make_unique<http::Api>(
            p.loop(), p.agent(),
            http::Api::Info{
                .profile = p.settings().profile,
                .version = "0.1.0",
                .leave =
                    [&p](std::function<void()> left) {
                        p.leave("POST /v1/leave", std::move(left));
                    },
                .tasks = &p.tasks(),
                .keyring =
                    [&p](wire::KeyringOp op, auto done) {
                        p.agent().keyring_everywhere(op, seconds(5), std::move(done));
                    },
                .set_tags = [&p](Tags t) { return p.agent().set_operator_tags(std::move(t)); },
                .tags_file = p.agent().tags_file(),
                .force_leave =
                    [&p](std::string_view name, bool prune) {
                        auto r = p.agent().force_leave(name, prune);
                        if (r) {
                            p.log().log(
                                daemon::Level::info,
                                prune ? "member forced out and forgotten" : "member forced out",
                                {{"member", name}, {"was", to_string(*r)}});
                        }
                        return r;
                    },
                .log = &p.log(),
                .access = std::move(access),
                .audit = f.audit_.get()});
        http::Limits limits;
        // A task's body is its payload plus a few short fields; the payload limit itself is
        // checked once the body is parsed, so both ends give a 413.
        limits.body_bytes_max = p.settings().tasks.limits.payload_bytes_max + (64u << 10);
        auto server = http::Server::listen(
            p.loop(), net::Endpoint::parse(api_address(p.settings())).value(), limits,
            p.settings().name,
            [api = f.api_.get()](const http::Request& req, http::Reply reply) {
                api->handle(req, reply);
            },
            std::move(tls));
        if (!server) return server.error();
        f.server_ = std::move(*server);
        f.api_->attach(f.server_.get());
        return std::unique_ptr<FrontEnd>(std::move(front));
    }
    ~HttpFront() override {
        api_.reset();  // before the server it answers on
        server_.reset();
        audit_.reset();  // after both: the server's last answers are written
    }

    void member_changed(const MemberEvent& e) override { api_->changed(e); }
    std::string address() const override { return server_->local().str(); }
    std::vector<WatchedLimit> limits() const override {
        const http::Server& s = *server_;
        const http::Api& a = *api_;
        return {
            {"http_connections", "HTTP connections refused: connections_max open",
             [&s] { return s.stats().refused; }},
            {"http_connections_per_client",
             "HTTP connections refused: connections_per_client_max from one address",
             [&s] { return s.stats().refused_per_client; }},
            {"http_bodies", "HTTP requests refused (503): bodies_bytes_max arriving at once",
             [&s] { return s.stats().busy; }},
            {"http_waiters", "blocking queries refused (429): waiters_max waiting",
             [&a] { return a.waiters_refused(); }},
            {"http_streams", "event streams refused (429): streams_max open",
             [&a] { return a.streams_refused(); }},
            {"http_stream_backlog", "event streams dropped: their client did not read",
             [&s] { return s.stats().stream_overflows; }},
            {"http_access",
             "HTTP requests refused (401, 403): no token, a bad one, or a scope, "
             "Host or Origin the access policy refuses",
             [&s] { return s.stats().gated; }},
        };
    }

  private:
    HttpFront() = default;
    std::unique_ptr<http::AuditLog> audit_;
    std::unique_ptr<http::Server> server_;
    std::unique_ptr<http::Api> api_;
};

}  // namespace

int run_agent(const Settings& settings, bool check_only) {
    // The API's access policy and audit log are read before anything starts: a token file that
    // does not parse stops the agent with exit status 2, as any bad setting does.
    http::AccessPolicy access;
    if (!settings.acl_tokens.empty()) {
        auto acl = http::Acl::load(settings.acl_tokens);
        if (!acl) {
            fmt::print(stderr, "chorus agent: acl_tokens: {}\n", acl.error().message);
            return 2;
        }
        access.acl = std::move(*acl);
    }
    for (const std::string& name : settings.http_names) {
        if (name.empty() || !clean_text(name) || name.find_first_of(":/[] ") != std::string::npos) {
            fmt::print(stderr, "chorus agent: http_names: {} is not a host name\n",
                       log_quote(name));
            return 2;
        }
    }
    access.names = settings.http_names;
    std::shared_ptr<net::TlsContext> tls;
    if (!settings.tls_cert.empty() || !settings.tls_key.empty() || !settings.tls_ca.empty()) {
        auto made = net::TlsContext::server({settings.tls_cert, settings.tls_key, settings.tls_ca});
        if (!made) {
            fmt::print(stderr, "chorus agent: {}\n", made.error().message);
            return 2;
        }
        tls = std::move(*made);
    }
    if (check_only) {
        // Everything the agent would refuse at start, short of binding its ports and opening
        // its files (the journal, the audit log): a deploy kit's flags checked where it is made.
        auto o = daemon::to_agent_options(settings);
        if (!o) {
            fmt::print(stderr, "chorus agent: {}\n", o.error().message);
            return 2;
        }
        fmt::print(
            "config ok: name {}, cluster {}, bind {}, http {}, {} seed(s), data dir {}\n",
            o->identity.name, o->config.cluster, o->bind.str(), settings.http, o->seeds.size(),
            settings.tasks.data_dir.empty() ? "none (memory only)" : settings.tasks.data_dir);
        return 0;
    }
    std::unique_ptr<http::AuditLog> audit;
    if (!settings.audit_log.empty()) {
        auto opened = http::AuditLog::open(
            {settings.audit_log, settings.audit_log_bytes_max, settings.audit_log_files});
        if (!opened) {
            fmt::print(stderr, "chorus agent: {}\n", opened.error().message);
            return 2;
        }
        audit = std::move(*opened);
    }
    return Process::run(settings, http_post, [&](Process& p) {
        return HttpFront::start(p, std::move(access), std::move(audit), std::move(tls));
    });
}

}  // namespace chorus::cli
