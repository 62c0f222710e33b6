#include "http/api.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "daemon/json.hpp"
#include "http/dashboard_html.hpp"

namespace chorus::http {

namespace {

int64_t ms(Duration d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// φ grows without bound while a member is silent and reaches infinity in floating point, which
// JSON cannot carry; beyond this it means "certainly gone" either way.
constexpr double kPhiReportedMax = 1000.0;

nlohmann::json member_json(const Member& m, const Node& n, Time now) {
    nlohmann::json tags = nlohmann::json::object();
    for (const auto& [k, v] : m.tags())
        tags[k] = v;
    const std::optional<Duration> rtt = n.round_trip(m.name);
    return {{"name", m.name.str()},
            {"addr", m.addr.value.str()},
            {"http", m.http.str()},
            {"state", to_string(m.state)},
            {"incarnation", m.incarnation.value},
            {"phi", m.name == n.self().name ? 0.0 : std::min(n.phi(m.name, now), kPhiReportedMax)},
            // A member that refuses tasks (its journal fails) says so instead of a load.
            {"load", m.load_milli == kLoadRefusing ? nlohmann::json(nullptr)
                                                   : nlohmann::json(m.load_milli / 1000.0)},
            {"tags", tags},
            // The last direct probe's round trip, in ms (fractional); none yet: null.
            {"rtt_ms", rtt ? nlohmann::json(std::chrono::duration<double, std::milli>(*rtt).count())
                           : nlohmann::json(nullptr)},
            {"state_since_ms", ms(now - m.state_since)}};
}

// One Server-Sent Event; `data` is one line of JSON.
std::string sse(std::string_view event, uint64_t id, std::string_view data) {
    return fmt::format("event: {}\nid: {}\ndata: {}\n\n", event, id, data);
}

}  // namespace

// Held in a std::list, so its address is stable: the timer points at it directly.
struct Api::Waiter {
    Reply reply;
    net::Handle<uv_timer_t> timer;
    Api* api = nullptr;
    std::list<Waiter>::iterator self;
    uint64_t started = 0;
};

nlohmann::json Api::coordinator_json() const {
    const std::optional<Coordinator>& c = coordinator_;
    const Quorum q = quorum_of(agent_.node().members());
    return {{"coordinator", c ? nlohmann::json(c->name.str()) : nlohmann::json(nullptr)},
            {"priority", c ? nlohmann::json(c->priority) : nlohmann::json(nullptr)},
            {"self", c && c->name == agent_.node().self().name},
            {"index", index_},
            {"changes", coordinator_changes_},
            // Keep-majority (tasks.coordinator_quorum): whether this view holds it, and if it
            // is required for this node to coordinate.
            {"quorum",
             {{"alive", q.alive},
              {"counted", q.counted},
              {"held", q.held()},
              {"required", info_.tasks != nullptr && info_.tasks->options().coordinator_quorum}}}};
}

std::optional<Duration> parse_wait(std::string_view text) {
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    // from_chars reads "inf" and "nan" too: a wait must be a finite, non-negative number.
    if (ec != std::errc() || !std::isfinite(value) || value < 0) return std::nullopt;
    const std::string_view unit(end, text.data() + text.size() - end);
    double s = 0;
    if (unit.empty() || unit == "s") {
        s = value;
    } else if (unit == "ms") {
        s = value / 1000;
    } else if (unit == "m") {
        s = value * 60;
    } else {
        return std::nullopt;
    }
    // Callers cap the wait far below this; the bound keeps the conversion from overflowing.
    constexpr double kSecondsMax = 1e9;
    return from_seconds(std::min(s, kSecondsMax));
}

Api::Api(uv_loop_t* loop, const daemon::Agent& agent, Info info)
    : loop_(loop),
      agent_(agent),
      info_(std::move(info)),
      coordinator_(coordinator_of(agent.node().members())) {
    if (info_.tasks != nullptr) {
        info_.tasks->set_on_forwarded(
            [this](Duration d) { forward_latency_.observe(to_seconds(d)); });
    }
}

Api::~Api() {
    if (info_.tasks != nullptr) {
        info_.tasks->set_on_forwarded(nullptr);
        info_.tasks->set_client_present(nullptr);
    }
    *alive_ = nullptr;  // the server may outlive us (or go first): its callback checks this
    for (auto& w : waiters_)
        w.timer->data = nullptr;
    for (const Stream& s : streams_)
        s.close();
    for (const Monitor& m : monitors_) {
        if (info_.log != nullptr) info_.log->remove_tap(m.tap);
        m.stream.close();
    }
}

std::string Api::members_json() const {
    const Node& n = agent_.node();
    const Time now = agent_.now();
    nlohmann::json list = nlohmann::json::array();
    n.members().for_each([&](const Member& m) { list.push_back(member_json(m, n, now)); });
    return daemon::dump_json({{"self", n.self().name.str()}, {"index", index_}, {"members", list}});
}

Response Api::members() const {
    Response r;
    r.body = members_json();
    r.headers.emplace_back("X-Chorus-Index", std::to_string(index_));
    return r;
}

Response Api::self() const {
    const Node& n = agent_.node();
    const Member& me = n.self();
    const Config& c = n.config();
    Response r;
    r.body = daemon::dump_json({{"name", me.name.str()},
                                {"addr", me.addr.value.str()},
                                {"http", me.http.str()},
                                {"state", to_string(me.state)},
                                {"incarnation", me.incarnation.value},
                                {"health_score", n.health_score()},
                                {"version", info_.version},
                                {"join",
                                 {{"joined", n.joined()},
                                  {"attempts", agent_.join_attempts()},
                                  {"trouble", agent_.join_trouble()}}},
                                {"config",
                                 {{"cluster", c.cluster},
                                  {"profile", info_.profile},
                                  {"probe_interval_ms", ms(c.probe_interval)},
                                  {"probe_timeout_ms", ms(n.probe_timeout())},
                                  {"gossip_interval_ms", ms(c.gossip_interval)},
                                  {"lifeguard", c.lifeguard}}},
                                {"tags", tags_json()},
                                {"tasks", tasks_summary()}});
    return r;
}

void Api::force_leave_call(const Request& req, const Reply& reply, uint64_t started) {
    const auto answer = [&](Response r) { finish(force_leave, started, reply, std::move(r)); };
    if (!info_.force_leave) {
        return answer(error_response(503, "not_supported", "this server cannot force members out"));
    }
    const std::string name = req.path.substr(std::string_view("/v1/force-leave/").size());
    const auto p = req.query.find("prune");
    const bool prune = p != req.query.end() && (p->second == "true" || p->second.empty());
    auto r = info_.force_leave(name, prune);
    if (!r) {
        const int status = r.error().code == "unknown_member" ? 404 : 409;
        return answer(error_response(status, r.error().code, r.error().message));
    }
    Response ok;
    ok.body = daemon::dump_json(
        {{"member", name}, {"was", to_string(*r)}, {"now", prune ? "forgotten" : "left"}});
    ok.subject = prune ? name + " pruned" : name;
    answer(std::move(ok));
}

void Api::drain_call(const Request& req, const Reply& reply, uint64_t started) {
    daemon::TaskService* t = info_.tasks;
    if (t == nullptr) {
        finish(drain, started, reply,
               error_response(503, "not_supported", "this server runs no tasks"));
        return;
    }
    const auto answer = [this, t, reply, started](std::optional<std::pair<size_t, size_t>> moved) {
        nlohmann::json j = {{"draining", t->draining()},
                            {"running", t->board().running()},
                            {"queued", t->board().queued()}};
        if (moved) {
            j["handed_over"] = moved->first;
            j["kept"] = moved->second;
        }
        Response r;
        r.body = daemon::dump_json(j);
        finish(drain, started, reply, std::move(r));
    };
    if (req.method == "GET") return answer(std::nullopt);
    // Answered once the queue is handed over: the caller knows what stayed.
    t->set_draining(req.method == "POST",
                    [answer, alive = std::weak_ptr<Api*>(alive_)](size_t handed, size_t kept) {
                        if (alive.lock()) answer(std::pair{handed, kept});
                    });
}

nlohmann::json Api::tags_json() const {
    nlohmann::json own = nlohmann::json::object(), agent = nlohmann::json::object();
    for (const auto& [k, v] : agent_.node().self().tags())
        (k.starts_with(kReservedTagPrefix) ? agent : own)[k] = v;
    return {{"tags", own},
            {"agent", agent},
            {"kept_in",
             info_.tags_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(info_.tags_file)}};
}

void Api::tags_call(const Request& req, const Reply& reply, uint64_t started) {
    const auto answer = [&](Response r) { finish(tags, started, reply, std::move(r)); };
    if (req.method == "GET") {
        Response r;
        r.body = daemon::dump_json(tags_json());
        return answer(std::move(r));
    }
    if (!info_.set_tags) {
        return answer(error_response(503, "not_supported", "this server cannot change tags"));
    }
    const nlohmann::json& j = req.json;
    const auto bad = [&](std::string message) {
        answer(error_response(400, "bad_request", std::move(message)));
    };
    const auto strings = [](const nlohmann::json& x) {  // an object's values, an array's items
        return std::all_of(x.begin(), x.end(),
                           [](const nlohmann::json& v) { return v.is_string(); });
    };
    if (!j.is_object() || j.empty() ||
        std::any_of(j.items().begin(), j.items().end(),
                    [](const auto& kv) { return kv.key() != "set" && kv.key() != "delete"; })) {
        return bad(R"(the body must be {"set": {"name": "value"}, "delete": ["name"]}, )"
                   R"(either or both)");
    }
    if (j.contains("set") && (!j["set"].is_object() || !strings(j["set"])))
        return bad(R"(set: must be an object of string values, such as {"role": "gpu"})");
    if (j.contains("delete") && (!j["delete"].is_array() || !strings(j["delete"])))
        return bad(R"(delete: must be an array of tag names, such as ["role"])");
    Tags next;
    for (const auto& [k, v] : agent_.node().self().tags())
        if (!k.starts_with(kReservedTagPrefix)) next.emplace_back(k, v);
    std::vector<std::string> subject;
    if (j.contains("delete")) {
        for (const auto& k : j["delete"]) {
            const std::string name = k.get<std::string>();
            std::erase_if(next, [&](const Tag& t) { return t.first == name; });
            subject.push_back("-" + name);
        }
    }
    if (j.contains("set")) {
        for (const auto& [k, v] : j["set"].items()) {
            std::erase_if(next, [&name = k](const Tag& t) { return t.first == name; });
            next.emplace_back(k, v.get<std::string>());
            subject.push_back(k);
        }
    }
    if (auto st = info_.set_tags(std::move(next)); !st) {
        const int status = st.error().code == "bad_tag" ? 400 : 500;
        return answer(error_response(status, st.error().code, st.error().message));
    }
    Response r;
    r.body = daemon::dump_json(tags_json());
    r.subject = fmt::format("{}", fmt::join(subject, " "));  // names only: values may be private
    answer(std::move(r));
}

void Api::finish(Route route, uint64_t started, const Reply& reply, Response r) {
    latency_[route].observe(static_cast<double>(uv_hrtime() - started) / 1e9);
    reply.send(std::move(r));
}

void Api::handle(const Request& req, Reply reply) {
    const uint64_t started = uv_hrtime();
    const auto allowed = [&](const char* method) {
        if (req.method == method) return true;
        Response r = error_response(405, "method_not_allowed",
                                    fmt::format("{} supports {} only", req.path, method));
        r.headers.emplace_back("Allow", method);
        finish(other, started, reply, std::move(r));
        return false;
    };
    if (req.path == "/v1/members") {
        if (allowed("GET")) block(req, std::move(reply), started);
    } else if (req.path == "/v1/members/stream") {
        if (allowed("GET")) subscribe(std::move(reply));
    } else if (req.path == "/v1/self") {
        if (allowed("GET")) finish(self_, started, reply, self());
    } else if (req.path == "/v1/health") {
        if (!allowed("GET")) return;
        const daemon::TaskService* t = info_.tasks;
        if (t != nullptr && t->journal_failing()) {
            // Serving, but not taking tasks: what a load balancer or an operator must know.
            Response r = error_response(
                503, "journal_failing",
                fmt::format("the task journal's last commit failed ({}); this node refuses "
                            "tasks until a commit succeeds",
                            t->journal_failing()->error.message));
            r.headers.emplace_back("Retry-After", "1");
            finish(health, started, reply, std::move(r));
        } else if (agent_.ready()) {
            Response r;
            r.body = R"({"status":"ok"})";
            finish(health, started, reply, std::move(r));
        } else {
            const std::string trouble = agent_.join_trouble();
            Response r = error_response(
                503, "not_ready",
                agent_.node().leaving() ? "the agent is leaving"
                : trouble.empty()
                    ? "the agent has not joined the cluster yet"
                    : fmt::format("the agent has not joined the cluster yet: {}", trouble));
            r.headers.emplace_back("Retry-After", "1");
            finish(health, started, reply, std::move(r));
        }
    } else if (req.path == "/v1/leave") {
        if (!allowed("POST")) return;
        if (!info_.leave) {
            finish(leave, started, reply,
                   error_response(503, "not_supported", "this server cannot leave"));
            return;
        }
        info_.leave([this, reply, started] {
            Response r;
            r.body = R"({"status":"left"})";
            finish(leave, started, reply, std::move(r));
        });
    } else if (req.path == "/v1/tasks" || req.path.starts_with("/v1/tasks/")) {
        tasks(req, reply, started);
    } else if (req.path == "/v1/ring" || req.path == "/v1/ring/lookup") {
        if (allowed("GET")) ring_view(req, reply, started);
    } else if (req.path == "/v1/keyring") {
        if (req.method == "GET" || allowed("POST")) keyring_call(req, reply, started);
    } else if (req.path == "/v1/self/tags") {
        if (req.method == "GET" || allowed("POST")) tags_call(req, reply, started);
    } else if (req.path.starts_with("/v1/force-leave/")) {
        if (allowed("POST")) force_leave_call(req, reply, started);
    } else if (req.path == "/v1/monitor") {
        if (allowed("GET")) monitor_call(req, reply, started);
    } else if (req.path == "/v1/drain") {
        if (req.method == "GET" || req.method == "DELETE" || allowed("POST"))
            drain_call(req, reply, started);
    } else if (req.path == "/v1/coordinator") {
        if (allowed("GET")) {
            Response r;
            r.body = daemon::dump_json(coordinator_json());
            r.headers.emplace_back("X-Chorus-Index", std::to_string(index_));
            finish(coordinator, started, reply, std::move(r));
        }
    } else if (req.path == "/metrics") {
        if (allowed("GET")) finish(metrics, started, reply, metrics_text());
    } else if (req.path == "/") {
        if (allowed("GET")) finish(other, started, reply, dashboard());
    } else {
        finish(other, started, reply,
               error_response(
                   404, "not_found",
                   "no such endpoint: " + req.path +
                       " (see / for the dashboard, /v1/members, "
                       "/v1/members/stream, /v1/self, /v1/self/tags, /v1/drain, /v1/monitor, "
                       "/v1/coordinator, "
                       "/v1/health, /v1/leave, /v1/tasks, /v1/ring, /v1/keyring, "
                       "/metrics)"));
    }
}

Response Api::dashboard() {
    Response r;
    r.body = std::string(kDashboardHtml);
    r.content_type = "text/html; charset=utf-8";
    // Its own script and styles only, calls to this agent only, never in another site's frame.
    r.headers.emplace_back("Content-Security-Policy",
                           "default-src 'none'; script-src 'unsafe-inline'; style-src "
                           "'unsafe-inline'; connect-src 'self'; img-src 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
    r.headers.emplace_back("X-Frame-Options", "DENY");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.headers.emplace_back("Cache-Control", "no-cache");
    return r;
}

// ---------------------------------------------------------------------------------------------
// Keyring

void Api::keyring_call(const Request& req, Reply reply, uint64_t started) {
    if (!info_.keyring) {
        finish(keyring, started, reply,
               error_response(503, "not_supported", "this server has no keyring"));
        return;
    }
    wire::KeyringOp op;
    std::string subject;  // for the audit log: the op and the key's fingerprint, never the key
    if (req.method == "POST") {
        const nlohmann::json& j = req.json;
        const auto text = [&](const char* k) { return daemon::string_field(j, k); };
        const std::string kind = text("op");
        if (kind == "install") {
            op.kind = wire::KeyringOp::Kind::install;
        } else if (kind == "use") {
            op.kind = wire::KeyringOp::Kind::use;
        } else if (kind == "remove") {
            op.kind = wire::KeyringOp::Kind::remove;
        } else {
            finish(keyring, started, reply,
                   error_response(400, "bad_op",
                                  R"(the body must be {"op": "install", "use" or "remove", )"
                                  R"("key": "base64 key"})"));
            return;
        }
        auto key = net::key_from_base64(text("key"));
        if (!key) {
            finish(keyring, started, reply, error_response(400, "bad_key", key.error().message));
            return;
        }
        op.key = *key;
        subject = fmt::format("{} {}", kind, net::key_fingerprint(op.key));
    }
    if (op.kind == wire::KeyringOp::Kind::use) {
        // A member made to seal with a key that another lacks is cut off from it: every member
        // must hold the key first, as a list says.
        wire::KeyringOp list;
        info_.keyring(list, [this, reply, started, op,
                             subject](std::vector<daemon::Agent::KeyringAnswer> answers) {
            // Refused here (no key, another op): the use is refused the same way below.
            const bool refused_here = answers[0].reply && !answers[0].reply->code.empty();
            std::vector<std::string> lacking;
            for (size_t i = 0; i < answers.size() && !refused_here; ++i) {
                const auto& a = answers[i];
                const bool holds = a.reply && a.reply->code.empty() &&
                                   std::find(a.reply->keys.begin(), a.reply->keys.end(), op.key) !=
                                       a.reply->keys.end();
                if (!holds) lacking.push_back(a.member.str());
            }
            if (!lacking.empty()) {
                Response r = error_response(
                    409, "not_everywhere",
                    fmt::format("{} of {} members do not hold that key, or did not say "
                                "({}): install it everywhere first, then use it",
                                lacking.size(), answers.size(), fmt::join(lacking, ", ")));
                r.subject = subject;
                finish(keyring, started, reply, std::move(r));
                return;
            }
            keyring_apply(op, subject, reply, started);
        });
        return;
    }
    keyring_apply(op, subject, reply, started);
}

void Api::keyring_apply(const wire::KeyringOp& op, std::string subject, Reply reply,
                        uint64_t started) {
    info_.keyring(op, [this, reply, started, kind = op.kind, subject = std::move(subject)](
                          std::vector<daemon::Agent::KeyringAnswer> answers) {
        // Every key's count of members holding it, and of members sealing with it.
        std::map<std::string, std::pair<size_t, size_t>> keys;
        nlohmann::json errors = nlohmann::json::array();
        size_t answered = 0;
        for (const auto& a : answers) {
            if (!a.reply || !a.reply->code.empty()) {
                errors.push_back({{"member", a.member.str()},
                                  {"code", a.reply ? a.reply->code : "no_answer"},
                                  {"message", a.reply ? a.reply->message : a.error}});
                continue;
            }
            ++answered;
            for (size_t i = 0; i < a.reply->keys.size(); ++i) {
                auto& [holding, sealing] = keys[net::key_to_base64(a.reply->keys[i])];
                ++holding;
                if (i == a.reply->primary) ++sealing;
            }
        }
        nlohmann::json out;
        out["members"] = answers.size();
        out["answered"] = answered;
        out["keys"] = nlohmann::json::array();
        for (const auto& [k, n] : keys)
            out["keys"].push_back({{"key", k}, {"members", n.first}, {"primary", n.second}});
        out["errors"] = errors;
        Response r;
        if (!answers.empty() && answers[0].reply && !answers[0].reply->code.empty()) {
            // Refused here first (no key, not installed, the primary, another op under way):
            // nothing was asked of the others.
            const std::string& code = answers[0].reply->code;
            r = error_response(code == "keyring_unsaved" ? 500
                               : code == "busy"          ? 503
                                                         : 409,
                               code, answers[0].reply->message);
            if (code == "busy") r.headers.emplace_back("Retry-After", "5");
        } else if (!errors.empty() && kind != wire::KeyringOp::Kind::list) {
            r.status = 503;
            out["error"] = {{"code", "partial"},
                            {"message", fmt::format("done on {} of {} members; run it again "
                                                    "once they answer",
                                                    answered, answers.size())}};
            r.body = daemon::dump_json(out);
        } else {
            r.body = daemon::dump_json(out);
        }
        r.subject = subject;
        finish(keyring, started, reply, std::move(r));
    });
}

// ---------------------------------------------------------------------------------------------
// Blocking queries

void Api::block(const Request& req, Reply reply, uint64_t started) {
    uint64_t since = 0;
    if (auto it = req.query.find("index"); it != req.query.end()) {
        auto [end, ec] =
            std::from_chars(it->second.data(), it->second.data() + it->second.size(), since);
        if (ec != std::errc() || end != it->second.data() + it->second.size()) {
            finish(members_now, started, reply,
                   error_response(400, "bad_index",
                                  "index must be a whole number (from X-Chorus-Index)"));
            return;
        }
    }
    Duration wait = info_.limits.wait_default;
    if (auto it = req.query.find("wait"); it != req.query.end()) {
        auto w = parse_wait(it->second);
        if (!w) {
            finish(members_now, started, reply,
                   error_response(400, "bad_wait", "wait must look like 30s, 500ms or 2m"));
            return;
        }
        wait = std::min(*w, info_.limits.wait_max);
    }
    if (since == 0 || since < index_) {
        finish(members_now, started, reply, members());
        return;
    }
    if (waiters_.size() >= info_.limits.waiters_max) {
        ++waiters_refused_;
        Response r = error_response(429, "too_many_waiters",
                                    "too many blocking queries are waiting; retry shortly");
        r.headers.emplace_back("Retry-After", "1");
        finish(members_blocking, started, reply, std::move(r));
        return;
    }
    auto timer = net::make_timer(loop_, nullptr);
    if (!timer) {
        finish(members_now, started, reply, members());
        return;
    }
    waiters_.push_back(Waiter{reply, std::move(*timer), this, {}, started});
    Waiter& w = waiters_.back();
    w.self = std::prev(waiters_.end());
    w.timer->data = &w;
    uv_timer_start(
        w.timer.get(),
        [](uv_timer_t* t) {
            if (auto* waiter = static_cast<Waiter*>(t->data)) waiter->api->wake(waiter->self);
        },
        static_cast<uint64_t>(ms(wait)), 0);
}

std::optional<Response> Api::gate(Request& req) {
    Verdict v = check_access(info_.access, req);
    // Who it is: the token's id; without tokens, the TLS client certificate's subject.
    req.caller =
        !info_.access.acl && !req.client_cert.empty() ? req.client_cert : std::move(v.caller);
    if (!v.refusal) return std::nullopt;
    ++access_refused_[static_cast<size_t>(*v.refusal)];
    return std::move(v.response);
}

void Api::answered(const Request& req, const Response& r) {
    if (info_.audit != nullptr && AuditLog::wanted(req, r)) info_.audit->record(req, r);
}

void Api::attach(Server* server) {
    server_ = server->handle();
    // The server may outlive the API (or go first): each callback checks it is still here.
    server->gate = [alive = std::weak_ptr<Api*>(alive_)](Request& req) -> std::optional<Response> {
        if (auto api = alive.lock(); api && *api != nullptr) return (*api)->gate(req);
        return error_response(503, "stopping", "the agent is stopping");
    };
    if (info_.audit != nullptr) {
        server->on_answered = [alive = std::weak_ptr<Api*>(alive_)](const Request& req,
                                                                    const Response& r) {
            if (auto api = alive.lock(); api && *api != nullptr) (*api)->answered(req, r);
        };
    }
    server->on_closed = [alive = std::weak_ptr<Api*>(alive_)](uint64_t conn) {
        if (auto api = alive.lock(); api && *api != nullptr) (*api)->client_gone(conn);
    };
    if (info_.tasks != nullptr) {
        info_.tasks->set_client_present([this](uint64_t conn) {
            const Server* s = this->server();
            return s != nullptr && s->open(conn);
        });
    }
}

Server* Api::server() const {
    const auto s = server_.lock();
    return s ? *s : nullptr;
}

void Api::client_gone(uint64_t conn) {
    // A blocking query whose client left would hold its place (and a timer) until its wait ran
    // out: 1,024 clients that asked and hung up refused every later query for minutes.
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->reply.connection() == conn) {
            it->timer->data = nullptr;
            it = waiters_.erase(it);
        } else {
            ++it;
        }
    }
    std::erase_if(streams_, [conn](const Stream& s) { return s.connection() == conn; });
    for (const Monitor& m : monitors_) {
        if (m.stream.connection() == conn) {
            end_monitor(m.tap);
            break;
        }
    }
    if (info_.tasks != nullptr) info_.tasks->client_gone(conn);  // its waits for tasks
}

void Api::wake(std::list<Waiter>::iterator it) {
    it->timer->data = nullptr;
    const Reply reply = it->reply;
    const uint64_t started = it->started;
    waiters_.erase(it);  // closes the timer
    finish(members_blocking, started, reply, members());
}

// ---------------------------------------------------------------------------------------------
// Event streams

bool Api::streams_full() {
    std::erase_if(streams_, [](const Stream& s) { return !s.open(); });
    return streams_.size() + monitors_.size() >= info_.limits.streams_max;
}

void Api::subscribe(Reply reply) {
    if (streams_full()) {
        ++streams_refused_;
        Response r = error_response(429, "too_many_streams",
                                    "too many event streams are open; retry shortly");
        r.headers.emplace_back("Retry-After", "1");
        reply.send(std::move(r));
        return;
    }
    Response head;
    head.content_type = "text/event-stream";
    head.headers.emplace_back("X-Chorus-Index", std::to_string(index_));
    Stream s = reply.stream(head);
    if (!s.write(sse("snapshot", index_, members_json()))) return;
    streams_.push_back(std::move(s));
    start_heartbeat();
}

void Api::start_heartbeat() {
    if (!heartbeat_) {
        auto timer = net::make_timer(loop_, this);
        if (!timer) return;
        heartbeat_ = std::move(*timer);
        uv_timer_start(
            heartbeat_.get(),
            [](uv_timer_t* t) {
                if (auto* api = static_cast<Api*>(t->data)) api->heartbeat();
            },
            info_.limits.heartbeat_ms, info_.limits.heartbeat_ms);
    }
}

void Api::broadcast(std::string_view event) {
    std::erase_if(streams_, [&](const Stream& s) { return !s.write(event); });
}

void Api::heartbeat() {
    broadcast(": heartbeat\n\n");
    std::vector<uint64_t> gone;
    for (const Monitor& m : monitors_)
        if (!m.stream.write(": heartbeat\n\n")) gone.push_back(m.tap);
    for (const uint64_t tap : gone)
        end_monitor(tap);
}

void Api::monitor_call(const Request& req, const Reply& reply, uint64_t started) {
    const auto fail = [&](Response r) { finish(monitor, started, reply, std::move(r)); };
    if (info_.log == nullptr) {
        return fail(error_response(503, "not_supported", "this server has no log to show"));
    }
    daemon::Level level = daemon::Level::info;
    std::string_view level_name = "info";
    if (auto it = req.query.find("level"); it != req.query.end()) {
        static constexpr std::pair<std::string_view, daemon::Level> kLevels[] = {
            {"debug", daemon::Level::debug},
            {"info", daemon::Level::info},
            {"warn", daemon::Level::warn},
            {"error", daemon::Level::error}};
        const auto* found = std::find_if(std::begin(kLevels), std::end(kLevels),
                                         [&](const auto& l) { return l.first == it->second; });
        if (found == std::end(kLevels)) {
            return fail(error_response(400, "bad_level", "level: debug, info, warn or error"));
        }
        level = found->second;
        level_name = found->first;
    }
    if (streams_full()) {
        ++streams_refused_;
        Response r = error_response(429, "too_many_streams",
                                    "too many event streams are open; retry shortly");
        r.headers.emplace_back("Retry-After", "1");
        return fail(std::move(r));
    }
    Response head;
    head.content_type = "text/event-stream";
    Stream s = reply.stream(head);
    if (!s.open()) return;
    // Each line an event; a client that stops reading is dropped by the stream's cap.
    const uint64_t tap = info_.log->add_tap(
        level, [this, s, alive = std::weak_ptr<Api*>(alive_)](std::string_view line) {
            if (!alive.lock()) return;
            std::string event = "data: ";
            event.append(line.substr(0, line.size() - (line.ends_with('\n') ? 1 : 0)));
            event += "\n\n";
            if (!s.write(event)) {
                for (const Monitor& m : monitors_) {
                    if (m.stream.connection() == s.connection()) {
                        end_monitor(m.tap);
                        break;
                    }
                }
            }
        });
    monitors_.push_back(Monitor{std::move(s), tap});
    start_heartbeat();
    // Its first line, to every log reader: a stream that says nothing on an idle agent leaves
    // its reader wondering whether it is connected.
    info_.log->log(daemon::Level::info, "log stream opened",
                   {{"peer", req.peer}, {"level", level_name}});
}

void Api::end_monitor(uint64_t tap) {
    if (info_.log != nullptr) info_.log->remove_tap(tap);
    std::erase_if(monitors_, [tap](const Monitor& m) { return m.tap == tap; });
}

void Api::changed(const MemberEvent& e) {
    ++index_;
    // Only an event about the coordinator, or about an alive member that could outrank it, can
    // name another: the view is not walked on every event of a large cluster's churn.
    const Member* m = agent_.node().members().find(e.name);
    const bool may_change = !coordinator_ || e.name == coordinator_->name ||
                            (m != nullptr && m->state == MemberState::alive &&
                             priority_of(m->tags()) >= coordinator_->priority);
    const std::optional<Coordinator> now_coordinator =
        may_change ? coordinator_of(agent_.node().members()) : coordinator_;
    const bool coordinator_changed = now_coordinator != coordinator_;
    if (coordinator_changed) {
        coordinator_ = now_coordinator;
        ++coordinator_changes_;
    }
    while (!waiters_.empty())
        wake(waiters_.begin());
    if (streams_.empty()) return;
    const Node& n = agent_.node();
    nlohmann::json j = {
        {"name", e.name.str()},
        {"previous", e.previous ? nlohmann::json(to_string(*e.previous)) : nlohmann::json()},
        {"state", e.current ? to_string(*e.current) : "removed"},
        {"incarnation", e.incarnation.value},
        {"origin", e.origin}};
    if (const Member* m = n.members().find(e.name); m != nullptr && e.current)
        j["member"] = member_json(*m, n, agent_.now());
    broadcast(sse("member", index_, daemon::dump_json(j)));
    if (coordinator_changed)
        broadcast(sse("coordinator", index_, daemon::dump_json(coordinator_json())));
}

// ---------------------------------------------------------------------------------------------
// Metrics

Response Api::metrics_text() const {
    const Node& n = agent_.node();
    const NodeStats& ns = n.stats();
    Exposition out;

    std::array<uint64_t, 4> by_state{};
    n.members().for_each([&](const Member& m) { ++by_state[static_cast<size_t>(m.state)]; });
    out.family("chorus_members", "gauge", "Members this node knows, by state.");
    for (MemberState s :
         {MemberState::alive, MemberState::suspect, MemberState::dead, MemberState::left})
        out.sample("chorus_members", static_cast<double>(by_state[static_cast<size_t>(s)]),
                   {{"state", to_string(s)}});
    out.gauge("chorus_health_score",
              "Local health (Lifeguard awareness); 0 is healthy, higher slows probing.",
              n.health_score());
    out.gauge("chorus_incarnation", "This node's incarnation number.", n.self().incarnation.value);
    out.counter("chorus_coordinator_changes_total",
                "Times this node's view named another coordinator (or none).",
                coordinator_changes_);
    out.gauge("chorus_broadcast_queue_depth", "Membership updates waiting to be gossiped.",
              static_cast<double>(n.broadcasts_pending()));
    out.gauge("chorus_probe_timeout_seconds", "The adaptive probe timeout now.",
              static_cast<double>(ms(n.probe_timeout())) / 1000);

    struct Counter {
        const char* name;
        const char* help;
        uint64_t value;
    };
    const Counter counters[] = {
        {"probes", "Probes sent in turn or out of turn.", ns.probes},
        {"probes_failed", "Probes that got no ack, direct or relayed.", ns.probes_failed},
        {"probes_early",
         "Probes sent out of turn (phi above phi_suspect, or verifying a suspicion).",
         ns.probes_early},
        {"ping_reqs_sent", "Indirect probe requests sent.", ns.ping_reqs_sent},
        {"ping_reqs_refused", "Indirect probe requests refused because the relay table was full.",
         ns.ping_reqs_refused},
        {"acks", "Acks received.", ns.acks},
        {"nacks", "Nacks received from relays.", ns.nacks},
        {"suspicions", "Suspicions this node raised from its own failed probes.", ns.suspicions},
        {"confirmations", "Independent confirmations of a suspicion received.", ns.confirmations},
        {"refutations", "Times this node refuted a suspicion of itself.", ns.refutations},
        {"deaths_declared", "Members this node declared dead when its suspicion timer ran out.",
         ns.deaths},
        {"updates_applied", "Membership updates that changed this node's view.",
         ns.updates_applied},
        {"updates_ignored", "Membership updates that were stale or already known.",
         ns.updates_ignored},
        {"claims_refused",
         "Membership updates refused because their incarnation was too far ahead of anything "
         "known of the member to be genuine.",
         ns.claims_refused},
        {"members_refused", "Members refused because the member table was full.",
         ns.members_refused},
        {"push_pulls", "Push-pull state exchanges completed.", ns.push_pulls},
        {"push_pulls_failed", "Push-pull state exchanges that failed.", ns.push_pulls_failed},
    };
    for (const Counter& c : counters)
        out.counter(fmt::format("chorus_{}_total", c.name), c.help, c.value);

    const net::UdpSocket::Stats& udp = agent_.udp().stats();
    out.counter("chorus_packets_received_total", "Gossip datagrams received.", udp.received);
    out.counter("chorus_packets_sent_total", "Gossip datagrams sent.", udp.sent);
    out.counter("chorus_received_bytes_total", "Gossip datagram bytes received.",
                udp.received_bytes);
    out.counter("chorus_sent_bytes_total", "Gossip datagram bytes sent.", udp.sent_bytes);
    out.counter("chorus_packets_dropped_total",
                "Datagrams dropped: send queue full, or too large to receive.",
                udp.send_dropped + udp.truncated);
    out.family("chorus_packets_rejected_total", "counter",
               "Datagrams and frames that failed verification, by reason.");
    const wire::DecodeStats& rejected = agent_.stats().rejected;
    for (size_t i = 0; i < wire::kDecodeErrors; ++i) {
        const std::string reason(wire::to_string(static_cast<wire::DecodeError>(i)));
        out.sample("chorus_packets_rejected_total", static_cast<double>(rejected.rejected[i]),
                   {{"reason", reason}});
    }
    const net::FrameHub::Stats& tcp = agent_.streams().stats();
    out.counter("chorus_stream_connections_total", "Gossip TCP connections accepted or dialled.",
                tcp.accepted + tcp.connects);
    out.counter("chorus_stream_connections_refused_total",
                "Gossip TCP connections refused at the inbound or outbound connection limit.",
                tcp.refused);
    out.family("chorus_stream_connections", "gauge", "Open gossip TCP connections, by direction.");
    out.sample("chorus_stream_connections", static_cast<double>(agent_.streams().inbound()),
               {{"direction", "inbound"}});
    out.sample("chorus_stream_connections", static_cast<double>(agent_.streams().outbound()),
               {{"direction", "outbound"}});
    out.gauge("chorus_stream_inbox_bytes",
              "Bytes of gossip frames partly received, over every connection (limit: 256 MiB).",
              static_cast<double>(agent_.streams().inbox_bytes()));
    out.family("chorus_stream_errors_total", "counter",
               "Gossip TCP connections ended by an error, by reason: a timeout, a frame over the "
               "size limit, a peer that read too slowly, a frame this node refused, a frame no "
               "installed key opened, an I/O error.");
    for (const auto& [reason, v] : {std::pair{"timeout", tcp.timeouts},
                                    {"too_large", tcp.oversize},
                                    {"slow_peer", tcp.slow},
                                    {"bad_frame", tcp.bad_frames},
                                    {"inbox_full", tcp.inbox_full},
                                    {"unsealed", tcp.unsealed},
                                    {"io_error", tcp.io_errors}})
        out.sample("chorus_stream_errors_total", static_cast<double>(v), {{"reason", reason}});
    out.counter("chorus_join_attempts_total", "Join attempts through the seeds.",
                agent_.stats().join_attempts);

    if (const Server* server = this->server()) {
        const Server::Stats& hs = server->stats();
        out.gauge("chorus_http_connections", "Open HTTP connections.",
                  static_cast<double>(server->connections()));
        out.gauge("chorus_http_body_bytes", "Bytes of request bodies held, over all connections.",
                  static_cast<double>(server->bodies_bytes()));
        out.counter("chorus_http_requests_total", "HTTP requests received.", hs.requests);
        out.family("chorus_http_rejected_total", "counter",
                   "HTTP requests or connections refused, by reason.");
        for (const auto& [reason, v] : {std::pair{"bad_request", hs.bad_requests},
                                        {"headers_too_large", hs.headers_too_large},
                                        {"body_too_large", hs.bodies_too_large},
                                        {"bad_json", hs.bad_json},
                                        {"too_deep", hs.too_deep},
                                        {"unsupported_media_type", hs.unsupported_media},
                                        {"timeout", hs.timeouts},
                                        {"connection_limit", hs.refused},
                                        {"stream_overflow", hs.stream_overflows},
                                        {"client_connection_limit", hs.refused_per_client},
                                        {"server_busy", hs.busy},
                                        {"too_many_waiters", waiters_refused_},
                                        {"too_many_streams", streams_refused_},
                                        {"tls_handshake", hs.tls_failures}})
            out.sample("chorus_http_rejected_total", static_cast<double>(v), {{"reason", reason}});
        // The access policy's refusals: 401 without a known token, 403 for a token's scope, a
        // Host or an Origin (http/acl.hpp).
        for (size_t i = 0; i < kRefusals; ++i) {
            out.sample("chorus_http_rejected_total", static_cast<double>(access_refused_[i]),
                       {{"reason", std::string(to_string(static_cast<Refusal>(i)))}});
        }
    }
    if (const AuditLog* audit = info_.audit) {
        out.counter("chorus_audit_lines_total", "Lines written to the audit log.", audit->lines());
        out.counter("chorus_audit_failures_total",
                    "Audit log lines that could not be written (the calls went on).",
                    audit->failures());
    }
    out.gauge("chorus_http_streams", "Open membership event streams.",
              static_cast<double>(streams_.size()));
    out.gauge("chorus_http_log_streams", "Open log streams (chorus monitor).",
              static_cast<double>(monitors_.size()));
    out.gauge("chorus_http_blocking_queries", "Blocking queries waiting.",
              static_cast<double>(waiters_.size()));
    out.family("chorus_http_request_duration_seconds", "histogram",
               "Time from a request's arrival to its answer, by endpoint.");
    for (size_t i = 0; i < latency_.size(); ++i)
        latency_[i].write(out, "chorus_http_request_duration_seconds",
                          {{"endpoint", kRouteNames[i]}});
    task_metrics(out);

    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = out.text();
    return r;
}

}  // namespace chorus::http
