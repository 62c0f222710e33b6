#include "http/api.hpp"

#include <charconv>

#include <nlohmann/json.hpp>

namespace chorus::http {

// Held in a std::list, so its address is stable: the timer points at it directly.
struct Api::Waiter {
    Reply reply;
    net::Handle<uv_timer_t> timer;
    Api* api = nullptr;
    std::list<Waiter>::iterator self;
};

std::optional<Duration> parse_wait(std::string_view text) {
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || value < 0) return std::nullopt;
    const std::string_view unit(end, text.data() + text.size() - end);
    if (unit.empty() || unit == "s") return from_seconds(value);
    if (unit == "ms") return from_seconds(value / 1000);
    if (unit == "m") return from_seconds(value * 60);
    return std::nullopt;
}

Api::Api(uv_loop_t* loop, std::function<const Node&()> node, std::function<Time()> now,
         std::function<bool()> ready, Info info)
    : loop_(loop),
      node_(std::move(node)),
      now_(std::move(now)),
      ready_(std::move(ready)),
      info_(std::move(info)) {}

Api::~Api() {
    for (auto& w : waiters_)
        w.timer->data = nullptr;
}

Response Api::members() const {
    const Node& n = node_();
    const Time now = now_();
    nlohmann::json list = nlohmann::json::array();
    n.members().for_each([&](const Member& m) {
        nlohmann::json tags = nlohmann::json::object();
        for (const auto& [k, v] : m.tags())
            tags[k] = v;
        list.push_back(
            {{"name", m.name.str()},
             {"addr", m.addr.value.str()},
             {"http", m.http.str()},
             {"state", to_string(m.state)},
             {"incarnation", m.incarnation.value},
             {"phi", m.name == n.self().name ? 0.0 : n.phi(m.name, now)},
             {"load", m.load_milli / 1000.0},
             {"tags", tags},
             {"state_since_ms",
              std::chrono::duration_cast<std::chrono::milliseconds>(now - m.state_since).count()}});
    });
    Response r;
    r.body =
        nlohmann::json{{"self", n.self().name.str()}, {"index", index_}, {"members", list}}.dump();
    r.headers.emplace_back("X-Chorus-Index", std::to_string(index_));
    return r;
}

Response Api::self() const {
    const Node& n = node_();
    const Member& me = n.self();
    const Config& c = n.config();
    const auto ms = [](Duration d) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    };
    Response r;
    r.body = nlohmann::json{{"name", me.name.str()},
                            {"addr", me.addr.value.str()},
                            {"http", me.http.str()},
                            {"state", to_string(me.state)},
                            {"incarnation", me.incarnation.value},
                            {"health_score", n.health_score()},
                            {"version", info_.version},
                            {"config",
                             {{"cluster", c.cluster},
                              {"profile", info_.profile},
                              {"probe_interval_ms", ms(c.probe_interval)},
                              {"probe_timeout_ms", ms(n.probe_timeout())},
                              {"gossip_interval_ms", ms(c.gossip_interval)},
                              {"lifeguard", c.lifeguard}}}}
                 .dump();
    return r;
}

void Api::handle(const Request& req, Reply reply) {
    const auto only_get = [&]() {
        if (req.method == "GET") return true;
        Response r = error_response(405, "method_not_allowed", req.path + " supports GET only");
        r.headers.emplace_back("Allow", "GET");
        reply.send(std::move(r));
        return false;
    };
    if (req.path == "/v1/members") {
        if (!only_get()) return;
        uint64_t since = 0;
        if (auto it = req.query.find("index"); it != req.query.end()) {
            auto [end, ec] =
                std::from_chars(it->second.data(), it->second.data() + it->second.size(), since);
            if (ec != std::errc() || end != it->second.data() + it->second.size()) {
                reply.send(error_response(400, "bad_index",
                                          "index must be a whole number (from X-Chorus-Index)"));
                return;
            }
        }
        if (since == 0 || since < index_) {
            reply.send(members());
            return;
        }
        Duration wait = kWaitDefault;
        if (auto it = req.query.find("wait"); it != req.query.end()) {
            auto w = parse_wait(it->second);
            if (!w) {
                reply.send(error_response(400, "bad_wait", "wait must look like 30s, 500ms or 2m"));
                return;
            }
            wait = std::min(*w, kWaitMax);
        }
        if (waiters_.size() >= kWaitersMax) {
            Response r = error_response(429, "too_many_waiters",
                                        "too many blocking queries are waiting; retry shortly");
            r.headers.emplace_back("Retry-After", "1");
            reply.send(std::move(r));
            return;
        }
        auto timer = net::make_handle<uv_timer_t>(
            loop_, [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); }, nullptr);
        if (!timer) {
            reply.send(members());
            return;
        }
        waiters_.push_back(Waiter{reply, std::move(*timer), this, {}});
        Waiter& w = waiters_.back();
        w.self = std::prev(waiters_.end());
        w.timer->data = &w;
        uv_timer_start(
            w.timer.get(),
            [](uv_timer_t* t) {
                if (auto* waiter = static_cast<Waiter*>(t->data)) waiter->api->wake(waiter->self);
            },
            static_cast<uint64_t>(
                std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()),
            0);
        return;
    }
    if (req.path == "/v1/self") {
        if (only_get()) reply.send(self());
        return;
    }
    if (req.path == "/v1/health") {
        if (!only_get()) return;
        if (ready_()) {
            Response r;
            r.body = R"({"status":"ok"})";
            reply.send(std::move(r));
        } else {
            Response r = error_response(503, "not_ready",
                                        "the agent has not joined the cluster yet, or is leaving");
            r.headers.emplace_back("Retry-After", "1");
            reply.send(std::move(r));
        }
        return;
    }
    reply.send(error_response(
        404, "not_found",
        "no such endpoint: " + req.path + " (see /v1/members, /v1/self, /v1/health)"));
}

void Api::wake(std::list<Waiter>::iterator it) {
    it->timer->data = nullptr;
    const Reply reply = it->reply;
    waiters_.erase(it);  // closes the timer
    reply.send(members());
}

void Api::changed() {
    ++index_;
    while (!waiters_.empty())
        wake(waiters_.begin());
}

}  // namespace chorus::http
