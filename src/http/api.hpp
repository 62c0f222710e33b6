// The membership part of the HTTP API (DESIGN §5): GET /v1/members (with Consul-style blocking
// queries: ?index=N&wait=30s answers when the view changes past N or the wait ends),
// GET /v1/self and GET /v1/health. Unknown paths get 404 and wrong methods 405, as JSON errors.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "core/node.hpp"
#include "http/server.hpp"
#include "net/handle.hpp"

namespace chorus::http {

// "30s", "500ms", "2m", or a bare number of seconds; nullopt if malformed.
std::optional<Duration> parse_wait(std::string_view text);

class Api {
  public:
    struct Info {
        std::string profile;
        std::string version;
    };
    // Blocking queries held at once at most; beyond it a query gets 429.
    static constexpr size_t kWaitersMax = 1024;
    // The longest a blocking query may wait (Consul's cap), and the default.
    static constexpr Duration kWaitMax = seconds(600);
    static constexpr Duration kWaitDefault = seconds(300);

    // `node` and `now` read the agent; `ready` says whether /v1/health is 200.
    Api(uv_loop_t* loop, std::function<const Node&()> node, std::function<Time()> now,
        std::function<bool()> ready, Info info);
    ~Api();

    void handle(const Request& req, Reply reply);
    // The membership view changed: bumps the index and answers the blocking queries.
    void changed();
    uint64_t index() const { return index_; }
    size_t waiting() const { return waiters_.size(); }

  private:
    struct Waiter;
    Response members() const;
    Response self() const;
    void wake(std::list<Waiter>::iterator it);

    uv_loop_t* loop_;
    std::function<const Node&()> node_;
    std::function<Time()> now_;
    std::function<bool()> ready_;
    Info info_;
    uint64_t index_ = 1;
    std::list<Waiter> waiters_;
};

}  // namespace chorus::http
