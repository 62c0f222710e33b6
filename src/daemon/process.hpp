// The agent process (ARCHITECTURE.md, "Layers"): one libuv loop; the membership agent and the
// task service on it; SIGINT and SIGTERM for a graceful leave (queued tasks handed over first,
// a second signal stops at once); the log lines an operator reads at start and when a limit
// is reached. The HTTP API is a layer above: the caller attaches it as a FrontEnd once the
// services exist, and it reaches them (and the leave) through the Process.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "daemon/agent.hpp"
#include "daemon/log.hpp"
#include "daemon/settings.hpp"
#include "daemon/tasks.hpp"

namespace chorus::daemon {

// A limit a peer or client can run this node into, counted where it is enforced: logged when
// it was hit, at most one line per limit every 10 s (a flood must not become a flood of log
// lines).
struct WatchedLimit {
    const char* name;
    const char* what;  // what was refused, and the setting or constant that bounds it
    std::function<uint64_t()> count;
};

class Process;

// What serves clients (the HTTP API), started once the services exist.
class FrontEnd {
  public:
    virtual ~FrontEnd() = default;
    virtual void member_changed(const MemberEvent& e) = 0;
    virtual std::vector<WatchedLimit> limits() const = 0;
    virtual std::string address() const = 0;  // where it listens, for the start line
};
using MakeFrontEnd = std::function<Result<std::unique_ptr<FrontEnd>>(Process&)>;

class Process {
  public:
    // Runs the agent `settings` describe until it has left (a signal, or leave()) or a second
    // signal stops it. Returns the exit status: 0, 1 if it could not start, 2 for settings
    // that do not check out.
    // `http_post` carries the http task handlers' requests (the HTTP client is a layer above).
    static int run(const Settings& settings, const std::function<HttpPost(uv_loop_t*)>& http_post,
                   const MakeFrontEnd& make_front);

    // Graceful leave: queued tasks go to other candidates, running ones get the leave timeout
    // to finish, then the leave is announced; `left` runs once it has spread, then the loop
    // stops.
    void leave(std::string_view why, std::function<void()> left);

    uv_loop_t* loop() { return loop_; }
    Agent& agent() { return *agent_; }
    TaskService& tasks() { return *tasks_; }
    const Settings& settings() const { return settings_; }
    const Logger& log() const { return log_; }

  private:
    Process(uv_loop_t* loop, const Settings& settings, const Logger& log)
        : loop_(loop), settings_(settings), log_(log) {}
    void on_signal(int signum);
    void log_journal_state() const;
    void log_stopped_tasks() const;  // at the end of a leave: what stops with this process
    std::vector<WatchedLimit> limits() const;  // the agent's and the task service's
    // Tells systemd (Type=notify) what state the agent is in; daemon/notify.hpp.
    void notify(std::string_view state);
    void notify_if_ready();  // READY=1, once: joined, or started with no seeds

    uv_loop_t* loop_;
    const Settings& settings_;
    const Logger& log_;
    std::unique_ptr<Agent> agent_;
    std::unique_ptr<TaskService> tasks_;
    std::unique_ptr<FrontEnd> front_;
    int signals_ = 0;
    bool handed_off_ = false;
    bool ready_sent_ = false;
    bool notify_failed_ = false;  // logged once
};

}  // namespace chorus::daemon
