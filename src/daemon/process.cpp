#include "daemon/process.hpp"

#include <chrono>
#include <map>

#include <csignal>
#include <ctime>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "daemon/notify.hpp"

namespace chorus::daemon {

namespace {

// Logs the limits that were hit since the last look, every kEveryMs.
class LimitWatch {
  public:
    static constexpr uint64_t kEveryMs = 10'000;
    LimitWatch(uv_loop_t* loop, const Logger& log, std::vector<WatchedLimit> limits)
        : log_(log), limits_(std::move(limits)), seen_(limits_.size()) {
        for (size_t i = 0; i < limits_.size(); ++i)
            seen_[i] = limits_[i].count();
        timer_ = net::make_timer(loop, this).value();
        uv_timer_start(
            timer_.get(),
            [](uv_timer_t* t) {
                if (auto* self = static_cast<LimitWatch*>(t->data)) self->check();
            },
            kEveryMs, kEveryMs);
    }

  private:
    void check() {
        for (size_t i = 0; i < limits_.size(); ++i) {
            const uint64_t now = limits_[i].count();
            if (now == seen_[i]) continue;
            log_.log(
                Level::warn, "limit reached",
                {{"limit", limits_[i].name}, {"times", now - seen_[i]}, {"what", limits_[i].what}});
            seen_[i] = now;
        }
    }
    const Logger& log_;
    std::vector<WatchedLimit> limits_;
    std::vector<uint64_t> seen_;
    net::Handle<uv_timer_t> timer_;
};

}  // namespace

void Process::leave(std::string_view why, std::function<void()> left) {
    if (tasks_ && !handed_off_) {
        log_.log(Level::info, "handing queued tasks over before leaving",
                 {{"reason", std::string(why)}});
        handed_off_ = true;
        // Queued tasks go to other candidates first, while this node is still a member they
        // can answer.
        tasks_->hand_off(settings_.leave_timeout, [this, why = std::string(why),
                                                   left = std::move(left)](size_t handed,
                                                                           size_t kept) mutable {
            log_.log(Level::info, "queued tasks handed over", {{"handed", handed}, {"kept", kept}});
            leave(why, std::move(left));
        });
        return;
    }
    log_stopped_tasks();  // the leave timeout is spent on them: they stop with the process
    log_.log(Level::info, "leaving the cluster", {{"reason", std::string(why)}});
    notify("STOPPING=1\nSTATUS=leaving the cluster");
    agent_->leave(settings_.leave_timeout, [this, left = std::move(left)] {
        if (left) left();
        log_.log(Level::info, "left; stopping");
        uv_stop(loop_);
    });
}

void Process::log_stopped_tasks() const {
    if (!tasks_) return;
    std::vector<std::string> ids = tasks_->board().running_ids();
    if (ids.empty()) return;
    const size_t count = ids.size();
    if (ids.size() > 20) ids.resize(20);  // a line, not a page
    const bool copies = settings_.tasks.task_replicas >= 2;
    const bool journal = !settings_.tasks.data_dir.empty();
    log_.log(Level::warn,
             copies    ? "stopping tasks still running: the members holding their copies run "
                         "them again"
             : journal ? "stopping tasks still running: they run again when this agent restarts "
                         "with its data dir"
                       : "stopping tasks still running: with one copy in memory they are lost",
             {{"count", count}, {"tasks", fmt::format("{}", fmt::join(ids, ","))}});
}

void Process::notify(std::string_view state) {
    const Notified n = notify_systemd(state);
    if (!n.error.empty() && !notify_failed_) {
        notify_failed_ = true;
        log_.log(Level::warn, "cannot tell systemd the agent's state", {{"error", n.error}});
    }
}

void Process::notify_if_ready() {
    if (ready_sent_ || !agent_ || !agent_->ready()) return;
    ready_sent_ = true;
    notify(fmt::format("READY=1\nSTATUS={}", settings_.seeds.empty()
                                                 ? "listening (no seeds: the first member)"
                                                 : "joined the cluster"));
}

void Process::on_signal(int signum) {
    if (++signals_ > 1) {
        log_.log(Level::warn, "second signal: stopping without waiting for the leave");
        uv_stop(loop_);
        return;
    }
    leave(signum == SIGINT ? "SIGINT" : "SIGTERM", nullptr);
}

void Process::log_journal_state() const {
    if (const auto& e = tasks_->journal_error()) {
        log_.log(Level::error, "the task journal cannot be used; refusing tasks (503)",
                 {{"error", e->message}});
    } else if (const Journal* j = tasks_->journal()) {
        log_.log(Level::info, "task journal open",
                 {{"path", j->path()},
                  {"recovered", tasks_->stats().recovered},
                  {"queued_again", tasks_->stats().requeued}});
    } else {
        log_.log(Level::warn,
                 "tasks are kept in memory only and are lost if this agent stops; give "
                 "--data-dir to keep them");
    }
}

std::vector<WatchedLimit> Process::limits() const {
    const Agent& a = *agent_;
    const TaskService& t = *tasks_;
    return {
        {"stream_connections", "gossip TCP connections refused: inbound_max or outbound_max open",
         [&a] { return a.streams().stats().refused; }},
        {"stream_inbox", "gossip TCP connections closed: inbox_bytes_max arriving",
         [&a] { return a.streams().stats().inbox_full; }},
        {"stream_write_queue", "gossip TCP peers cut off: write_queue_bytes_max queued",
         [&a] { return a.streams().stats().slow; }},
        {"members", "members refused: the member table holds members_max",
         [&a] { return a.node().stats().members_refused; }},
        {"incarnation_lead", "membership claims refused: incarnation too far ahead",
         [&a] { return a.node().stats().claims_refused; }},
        {"udp_send_queue", "gossip datagrams dropped: the send queue was full",
         [&a] { return a.udp().stats().send_dropped; }},
        {"task_queue", "tasks refused (503): capacity + queue_max taken",
         [&t] { return t.stats().full; }},
        {"task_copies", "copies refused (503): copies_max or copies_bytes_max held",
         [&t] { return t.stats().copies_refused; }},
        {"task_dial_backlog", "dials given up: backlog_bytes_max waited on them",
         [&t] { return t.stats().backlog_overflows; }},
    };
}

int Process::run(const Settings& settings, const std::function<HttpPost(uv_loop_t*)>& http_post,
                 const MakeFrontEnd& make_front) {
    auto options = to_agent_options(settings);
    if (!options) {
        fmt::print(stderr, "chorus agent: {}\n", options.error().message);
        return 2;
    }
    const Logger log(Logger::parse_level(settings.log_level), settings.log_format == "json");
    // A restarted node should outrank its previous life before it hears of it, so incarnations
    // start from the wall clock's seconds; refutation covers the rest (SWIM §4.2).
    options->identity.incarnation = Incarnation{static_cast<uint64_t>(std::time(nullptr))};
    // A task's command that exits without reading its stdin, or a client that hangs up, must
    // cost a write error, not the agent.
    std::signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc = 0;
    {
        Process p(&loop, settings, log);
        options->on_event = [&p](const MemberEvent& e) {
            if (p.tasks_) p.tasks_->member_changed(e);
            if (p.front_) p.front_->member_changed(e);
            p.notify_if_ready();
            const std::string state = e.current ? std::string(to_string(*e.current)) : "removed";
            p.log_.log(e.current == MemberState::alive || !e.current ? Level::info : Level::warn,
                       fmt::format("member {}", state),
                       {{"name", e.name.str()}, {"incarnation", e.incarnation.value}});
        };
        options->on_rejected = [&log](const wire::DecodeFailure& f, uint64_t suppressed) {
            log.log(Level::warn, "dropped a bad packet",
                    {{"reason", std::string(wire::to_string(f.reason))},
                     {"detail", f.detail},
                     {"suppressed", suppressed}});
        };
        options->on_name_conflict =
            [&log, &loop, &rc, name = settings.name,
             last = std::map<std::string, std::chrono::steady_clock::time_point>{}](
                const NameConflict& c, bool stop) mutable {
                if (stop) {
                    log.log(Level::error,
                            "the name is in use by a live member at another address; stopping. "
                            "Give this agent another --name, or stop the other one first",
                            {{"name", name}, {"other", c.addr.value.str()}});
                    rc = 1;
                    uv_stop(&loop);
                    return;
                }
                // Once per address every 10 s: the two refute each other until one stops.
                const auto now = std::chrono::steady_clock::now();
                auto& at = last[c.addr.value.str()];
                if (at != decltype(now){} && now - at < std::chrono::seconds(10)) return;
                at = now;
                log.log(Level::warn,
                        c.newcomer ? "this member's name was last heard at another address (a "
                                     "previous life of this member, or another process with its "
                                     "name); claiming it"
                                   : "another process announced itself under this member's name; "
                                     "this member keeps it. Stop the other, or give it another "
                                     "--name",
                        {{"name", name}, {"other", c.addr.value.str()}});
            };
        const uint32_t attempts_max = options->retry_join_attempts;
        options->on_join_failed = [&log, &loop, &rc, attempts_max](
                                      uint32_t attempt, const std::string& why, bool last) {
            // One line per attempt: the attempts back off (retry_join_min, doubling to
            // retry_join_max), so this is bounded too.
            log.log(last ? Level::error : Level::warn,
                    last ? "could not join the cluster; giving up (--retry-join)"
                         : "could not join the cluster yet; trying again",
                    {{"attempt", attempt}, {"attempts_max", attempts_max}, {"why", why}});
            if (last) {
                rc = 1;
                uv_stop(&loop);
            }
        };
        auto agent = Agent::start(&loop, std::move(*options));
        if (!agent) {
            log.log(Level::error, "could not start", {{"error", agent.error().message}});
            rc = 1;
        } else {
            p.agent_ = std::move(*agent);
            TaskOptions tasks = settings.tasks;
            // Checked by to_agent_options.
            tasks.placement = placement_from(settings.task_placement).value_or(TaskPlacement::ring);
            p.tasks_ =
                std::make_unique<TaskService>(&loop, *p.agent_, std::move(tasks), http_post(&loop));
            p.tasks_->set_on_journal_state([&log](const std::optional<Error>& failing) {
                if (failing) {
                    log.log(Level::error,
                            "the task journal cannot commit; refusing tasks until it can",
                            {{"error", failing->message}});
                } else {
                    log.log(Level::info, "the task journal commits again; taking tasks");
                }
            });
            auto front = make_front(p);
            if (!front) {
                log.log(Level::error, "could not start the HTTP API",
                        {{"error", front.error().message}});
                rc = 1;
            } else {
                p.front_ = std::move(*front);
            }
        }
        if (rc == 0) {
            uv_signal_t sigint, sigterm;
            for (const auto& [h, sig] :
                 {std::pair{&sigint, SIGINT}, std::pair{&sigterm, SIGTERM}}) {
                uv_signal_init(&loop, h);
                h->data = &p;
                uv_signal_start(
                    h,
                    [](uv_signal_t* s, int signum) {
                        static_cast<Process*>(s->data)->on_signal(signum);
                    },
                    sig);
            }
            p.log_journal_state();
            std::vector<WatchedLimit> limits = p.front_->limits();
            for (WatchedLimit& l : p.limits())
                limits.push_back(std::move(l));
            LimitWatch watch(&loop, log, std::move(limits));
            log.log(Level::info, "agent started",
                    {{"name", settings.name},
                     {"bind", p.agent_->bound().str()},
                     {"advertise", p.agent_->node().self().addr.value.str()},
                     {"http", p.front_->address()},
                     {"http_tls", settings.tls_cert.empty() ? "off"
                                  : settings.tls_ca.empty() ? "on"
                                                            : "on, client certificates required"},
                     {"cluster", settings.cluster},
                     {"profile", settings.profile},
                     {"encryption", settings.encrypt.empty()            ? "off"
                                    : !settings.encrypt_verify_outgoing ? "taken, not sent"
                                    : !settings.encrypt_verify_incoming ? "sent, clear taken too"
                                                                        : "on"}});
            for (const std::string& note : p.agent_->notes())
                log.log(Level::info, note);
            if (settings.encrypt.empty() && !p.agent_->bound().is_loopback()) {
                log.log(Level::warn,
                        "gossip is open to the network without encryption: anyone who reaches "
                        "this address can join, forge membership and run tasks; give every "
                        "member --encrypt with a key from `chorus keygen`",
                        {{"bind", p.agent_->bound().str()}});
            }
            if (settings.acl_tokens.empty()) {
                if (auto api = net::Endpoint::parse(api_address(settings));
                    api && !api->is_loopback()) {
                    log.log(Level::warn,
                            "the HTTP API is open to the network without tokens: anyone who "
                            "reaches it can run tasks, read results and make this agent "
                            "leave; give --acl-tokens a token file (chorus tokengen)",
                            {{"http", api_address(settings)}});
                }
            }
            p.notify_if_ready();
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
            uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
        }
        p.front_.reset();
        p.tasks_.reset();
        p.agent_.reset();
    }
    // Let every handle's close callback run before the loop goes.
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}

}  // namespace chorus::daemon
