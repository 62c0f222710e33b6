// The membership part of the HTTP API (the API in README.md):
//   GET  /v1/members         the view; with ?index=N&wait=30s a Consul-style blocking query
//                            that answers when the view changes past N or the wait ends
//   GET  /v1/members/stream  Server-Sent Events: a snapshot, then one event per change
//   GET  /v1/self, /v1/health
//   GET  /v1/self/tags       this member's tags; POST {"set": {"k": "v"}, "delete": ["k"]}
//                            changes the operator's, kept in the data dir and gossiped
//   POST /v1/force-leave/NAME  a dead member becomes left everywhere (?prune=true: forgotten
//                            at once); alive ones are refused, 409
//   GET  /v1/monitor[?level=debug]  the agent's log as Server-Sent Events, one line an event
//   GET  /v1/drain           whether this member drains; POST starts (answers once its queue
//                            is handed over), DELETE ends it (`chorus drain [--off]`)
//   POST /v1/leave           graceful leave; answers once the leave has spread, then the agent
//                            stops
//   POST /v1/tasks           submit a task (?wait=10s: answer with the finished task)
//   GET  /v1/tasks/{id}      a task's status and result, from any node; DELETE cancels it
//   GET  /v1/ring            members' shares of the ring and its checksum
//   GET  /v1/ring/lookup?key=K  the key's candidates, their load and φ, and the router's pick
//   GET  /v1/keyring         every member's keys; POST {"op": "install"|"use"|"remove", "key"}
//                            changes them on every member not known to be gone (`chorus keys`)
//   GET  /metrics            Prometheus text format
// Unknown paths get 404 and wrong methods 405, as JSON errors.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/coordinator.hpp"
#include "core/node.hpp"
#include "daemon/agent.hpp"
#include "daemon/log.hpp"
#include "daemon/tasks.hpp"
#include "http/acl.hpp"
#include "http/audit.hpp"
#include "http/metrics.hpp"
#include "http/server.hpp"
#include "net/handle.hpp"

namespace chorus::http {

// "30s", "500ms", "2m", or a bare number of seconds; nullopt if malformed.
std::optional<Duration> parse_wait(std::string_view text);

class Api {
  public:
    // What the API holds for clients at once, and for how long. Defaults are what the agent
    // runs with; tests make them small.
    struct Limits {
        // Blocking queries held at once at most; beyond it a query gets 429 with Retry-After.
        size_t waiters_max = 1024;
        // The longest a blocking query may wait (Consul's cap), and the default.
        Duration wait_max = seconds(600);
        Duration wait_default = seconds(300);
        // Event streams open at once at most (each holds a connection and a send buffer).
        size_t streams_max = 256;
        // A comment line on every stream this often, so proxies keep it open and a client
        // that vanished without a FIN is found by the failed write.
        uint64_t heartbeat_ms = 15'000;
    };
    struct Info {
        std::string profile;
        std::string version;
        // POST /v1/leave: leave gracefully and call `left` once the leave has spread; the
        // caller then stops the agent. Unset: the endpoint answers 503.
        std::function<void(std::function<void()> left)> leave;
        // Task routing and execution; null: the task and ring endpoints answer 503.
        daemon::TaskService* tasks = nullptr;
        // GET and POST /v1/keyring: a keyring op on every member, each member's answer
        // to `done` (daemon::Agent::keyring_everywhere). Unset: the endpoint answers 503.
        std::function<void(wire::KeyringOp,
                           std::function<void(std::vector<daemon::Agent::KeyringAnswer>)> done)>
            keyring = {};
        // POST /v1/self/tags: replaces the operator's tags (daemon::Agent::set_operator_tags).
        // Unset: the endpoint answers 503.
        std::function<Status(Tags)> set_tags = {};
        // Where they are kept ("" when they last only until the agent stops).
        std::string tags_file = {};
        // POST /v1/force-leave/NAME[?prune=true]: daemon::Agent::force_leave. Unset: 503.
        std::function<Result<MemberState>(std::string_view name, bool prune)> force_leave = {};
        // GET /v1/monitor: the agent's log, tapped. Null: the endpoint answers 503.
        const daemon::Logger* log = nullptr;
        Limits limits = {};
        // Who may call (http/acl.hpp): tokens, or without them the Host and Origin checks.
        AccessPolicy access = {};
        // Set: every mutating call and every refusal is written there (http/audit.hpp).
        AuditLog* audit = nullptr;
    };

    Api(uv_loop_t* loop, const daemon::Agent& agent, Info info);
    ~Api();
    Api(const Api&) = delete;
    Api& operator=(const Api&) = delete;

    // The server this API answers on (it is built after the API, which it calls): /metrics
    // reports its counters, and a client that goes lets go of what waited to answer it.
    void attach(Server* server);
    // A client connection closed: its blocking query or stream, if any, is let go.
    void client_gone(uint64_t conn);

    void handle(const Request& req, Reply reply);
    // The server's gate: a request refused by the access policy gets its 401 or 403 here,
    // before its body is read.
    std::optional<Response> gate(Request& req);
    // The server answered `req` with `r` (or refused it): the audit log's line.
    void answered(const Request& req, const Response& r);
    uint64_t access_refused(Refusal why) const { return access_refused_[static_cast<size_t>(why)]; }
    // A membership change: bumps the index, answers the blocking queries, tells the streams.
    void changed(const MemberEvent& e);
    uint64_t index() const { return index_; }
    size_t waiting() const { return waiters_.size(); }
    size_t streaming() const { return streams_.size(); }
    uint64_t waiters_refused() const { return waiters_refused_; }  // 429 at waiters_max
    uint64_t streams_refused() const { return streams_refused_; }  // 429 at streams_max

  private:
    enum Route : uint8_t {
        members_now,
        members_blocking,
        self_,
        health,
        leave,
        metrics,
        task_submit,
        task_get,
        task_cancel,
        ring,
        keyring,
        tags,
        drain,
        force_leave,
        monitor,
        coordinator,
        other
    };
    static constexpr std::array<const char*, 17> kRouteNames = {
        "members",     "members_blocking", "self",        "health",      "leave",   "metrics",
        "task_submit", "task_get",         "task_cancel", "ring",        "keyring", "tags",
        "drain",       "force_leave",      "monitor",     "coordinator", "other"};
    struct Waiter;

    std::string members_json() const;
    // GET /v1/coordinator: this view's coordinator (core/coordinator.hpp), with the view's
    // index; a `coordinator` event goes to the streams when it changes.
    nlohmann::json coordinator_json() const;
    void keyring_call(const Request& req, Reply reply, uint64_t started);
    void tags_call(const Request& req, const Reply& reply, uint64_t started);
    nlohmann::json tags_json() const;
    void drain_call(const Request& req, const Reply& reply, uint64_t started);
    void force_leave_call(const Request& req, const Reply& reply, uint64_t started);
    void monitor_call(const Request& req, const Reply& reply, uint64_t started);
    bool streams_full();  // streams_max open (member streams and log streams): 429 given
    void keyring_apply(const wire::KeyringOp& op, std::string subject, Reply reply,
                       uint64_t started);
    Response members() const;
    Response self() const;
    static Response dashboard();  // GET /: the page, embedded from src/http/dashboard.html
    Response metrics_text() const;
    void block(const Request& req, Reply reply, uint64_t started);
    void subscribe(Reply reply);
    void broadcast(std::string_view event);
    void start_heartbeat();  // once a stream is open
    void heartbeat();        // a comment on every stream
    void wake(std::list<Waiter>::iterator it);
    void finish(Route route, uint64_t started, const Reply& reply, Response r);
    // Tasks and the ring (task_api.cpp).
    void tasks(const Request& req, const Reply& reply, uint64_t started);
    void ring_view(const Request& req, const Reply& reply, uint64_t started);
    void task_metrics(Exposition& out) const;
    nlohmann::json tasks_summary() const;  // for /v1/self
    Server* server() const;                // the attached server, or null

    uv_loop_t* loop_;
    const daemon::Agent& agent_;
    Info info_;
    std::weak_ptr<Server*> server_;  // reads null before attach() and once the server is gone
    std::shared_ptr<Api*> alive_ = std::make_shared<Api*>(this);
    uint64_t index_ = 1;
    std::optional<Coordinator> coordinator_;  // as of the last member event
    uint64_t coordinator_changes_ = 0;
    std::list<Waiter> waiters_;
    uint64_t waiters_refused_ = 0;
    uint64_t streams_refused_ = 0;
    std::array<uint64_t, kRefusals> access_refused_{};
    std::vector<Stream> streams_;
    struct Monitor {
        Stream stream;
        uint64_t tap = 0;  // its tap on the log
    };
    std::vector<Monitor> monitors_;
    void end_monitor(uint64_t tap);  // the client went, or stopped reading
    net::Handle<uv_timer_t> heartbeat_;
    std::array<Histogram, kRouteNames.size()> latency_;
    Histogram forward_latency_;
};

}  // namespace chorus::http
