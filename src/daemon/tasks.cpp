#include "daemon/tasks.hpp"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "wire/key_hash.hpp"

namespace chorus::daemon {

namespace {

std::set<std::string> names_of(const std::map<std::string, HandlerSpec>& handlers) {
    std::set<std::string> names;
    for (const auto& [name, spec] : handlers)
        names.insert(name);
    return names;
}

}  // namespace

Status TaskOptions::validate(uint32_t euid) const {
    if (auto s = TaskNodeConfig::validate(); !s) return s;
    if (backlog_bytes_max == 0) {
        return Error{"bad_config", "backlog_bytes_max: must be at least 1"};
    }
    for (const auto& [name, spec] : handlers) {
        if (auto s = check_handler(name, spec); !s) return s;
        if (auto s = check_exec_user(name, spec, euid); !s) return s;
    }
    return Ok{};
}

std::optional<Error> TaskService::open_journal(const TaskOptions& o, std::shared_ptr<Journal>& j,
                                               std::vector<Task>& tasks) {
    if (o.data_dir.empty()) return std::nullopt;
    auto opened = Journal::open(o.data_dir);
    if (!opened) return opened.error();
    auto loaded = (*opened)->load();
    if (!loaded) return loaded.error();  // a journal it cannot read is not used
    j = std::move(*opened);
    tasks = std::move(*loaded);
    return std::nullopt;
}

TaskService::TaskService(uv_loop_t* loop, Agent& agent, TaskOptions options, HttpPost http_post)
    : loop_(loop),
      agent_(agent),
      options_(std::move(options)),
      journal_error_(open_journal(options_, journal_, recovered_)),
      node_(options_, agent_.node(), wire::key_hash, names_of(options_.handlers),
            journal_ != nullptr, journal_error_,
            uv_hrtime() ^ (static_cast<uint64_t>(getpid()) << 32), agent_.now()),
      runner_(
          loop, options_.handlers,
          // A handler's output is the task's result: one limit for both.
          [this] {
              RunnerLimits r = options_.runner;
              r.output_bytes_max = options_.limits.result_bytes_max;
              return r;
          }(),
          std::move(http_post)) {
    agent_.attach(this);
    timer_ = net::make_timer(loop_, this).value();
    commit_check_ = net::make_check(loop_, this).value();
    if (journal_) {
        writer_ = std::make_unique<JournalWriter>(
            loop_, journal_, [this](uint64_t upto, const Status& st) { committed(upto, st); });
    }
    node_.restore(std::exchange(recovered_, {}), agent_.now());
    drain();
}

TaskService::~TaskService() {
    agent_.attach(nullptr);
}

TaskServiceStats TaskService::stats() const {
    TaskServiceStats s;
    static_cast<TaskNodeStats&>(s) = node_.stats();
    s.backlog_overflows = backlog_overflows_;
    s.frames_unsent = frames_unsent_;
    return s;
}

// ---------------------------------------------------------------------------------------------
// Inputs

void TaskService::submit(TaskSpec spec, Duration wait, Done done, uint64_t client) {
    node_.submit(std::move(spec), wait, std::move(done), client, agent_.now());
    drain();
}

void TaskService::query(const std::string& id, Duration wait, bool cancel, Done done,
                        uint64_t client) {
    node_.query(id, wait, cancel, std::move(done), client, agent_.now());
    drain();
}

void TaskService::client_gone(uint64_t client) {
    node_.client_gone(client);
    drain();
}

void TaskService::hand_off(Duration drain_for, std::function<void(size_t, size_t)> done) {
    node_.hand_off(drain_for, std::move(done), agent_.now());
    drain();
}

void TaskService::set_draining(bool on, std::function<void(size_t, size_t)> done) {
    // The tag first: routers stop sending while the queue is handed over.
    agent_.set_reserved_tag(kDrainTag, on ? std::optional<std::string>("1") : std::nullopt);
    node_.drain(on, std::move(done), agent_.now());
    drain();
}

void TaskService::member_changed(const MemberEvent& e) {
    if (!e.current) {
        // Reaped: its connection goes too, so peers_ is bounded by the member table, not by
        // every name ever seen.
        if (auto p = peers_.find(e.name); p != peers_.end()) {
            if (p->second.conn != 0) agent_.hub().close(p->second.conn);
            peers_.erase(p);
        }
    }
    node_.member_changed(e, agent_.now());
    drain();
}

void TaskService::committed(uint64_t upto, const Status& st) {
    // The journal's numbers to the node's: the newest of the node's changes it covers.
    while (!changes_.empty() && changes_.front().first <= upto)
        changes_.pop_front();
    const uint64_t covered = changes_.empty() ? node_changes_ : changes_.front().second - 1;
    node_.committed(covered, st, agent_.now());
    if (!st) writer_->resume();  // what stays staged is tried again when the node asks
    drain();
}

void TaskService::on_task_frame(net::FrameConn& conn, wire::Frame frame) {
    if (std::holds_alternative<TaskReply>(frame.message)) {
        // A reply counts only on the connection its request went out on.
        auto p = peers_.find(frame.sender);
        if (p == peers_.end() || p->second.conn != conn.id()) return;
    }
    std::visit(
        [&](auto& m) {
            using M = std::decay_t<decltype(m)>;
            if constexpr (kIsTaskMessage<M>) {
                node_.on_message(frame.sender, conn.id(), std::move(m), agent_.now());
            }
        },
        frame.message);
    drain();
}

void TaskService::on_connected(net::FrameConn& conn) {
    for (auto& [name, p] : peers_) {
        if (p.conn != conn.id()) continue;
        p.connected = true;
        for (auto& w : p.backlog)
            conn.send(w.frame);
        p.backlog.clear();
        p.backlog_bytes = 0;
    }
}

void TaskService::on_closed(uint64_t conn) {
    std::vector<Name> broken;
    for (auto& [name, p] : peers_) {
        if (p.conn != conn) continue;
        p.conn = 0;
        p.connected = false;
        p.backlog.clear();
        p.backlog_bytes = 0;
        broken.push_back(name);
    }
    for (const Name& n : broken)
        node_.link_broken(n, agent_.now());
    drain();
}

// ---------------------------------------------------------------------------------------------
// Effects

void TaskService::drain() {
    // An effect may come back as an input at once (a frame that cannot go out, a handler that
    // fails to start): that input's own drain() leaves the work to the loop below.
    if (draining_) return;
    draining_ = true;
    while (!node_.outbox().empty()) {
        std::swap(taken_, node_.outbox());
        TaskOutbox& out = taken_;
        for (JournalChange& c : out.journal) {
            switch (c.kind) {
                case JournalChange::Kind::put:
                    changes_.emplace_back(journal_->put(*c.task), ++node_changes_);
                    break;
                case JournalChange::Kind::remove:
                    changes_.emplace_back(journal_->remove(c.id), ++node_changes_);
                    break;
                case JournalChange::Kind::unstage:
                    journal_->unstage(c.id);
                    break;
            }
        }
        if (out.probe && journal_ && journal_->staged() == 0) journal_->probe();
        if (out.commit || out.probe) schedule_commit();
        const Time now = agent_.now();
        for (const std::string& id : out.stops)
            runner_.stop(id);
        for (const std::string& id : out.starts) {
            const Task* t = node_.board().find(id);
            if (t == nullptr) continue;
            runner_.start(t->spec, [this, id](TaskOutcome o) {
                node_.finished(id, std::move(o), agent_.now());
                drain();
            });
        }
        for (const auto& [peer, request] : out.abandoned)
            unqueue(peer, request);
        for (TaskSend& s : out.sends) {
            const uint64_t request = std::visit([](const auto& m) { return m.request; }, s.message);
            auto sent = send_to(s.to, s.message);
            if (!sent && request != 0) node_.send_failed(request, sent.error(), now);
        }
        for (TaskReplyOut& r : out.replies) {
            net::FrameConn* c = agent_.hub().find(r.link);
            if (c == nullptr) continue;  // the asker hung up; nobody to tell
            c->send(
                wire::encode(agent_.node().config().cluster, agent_.node().self().name, r.reply));
        }
        out.clear();
    }
    draining_ = false;
    arm();
}

void TaskService::arm() {
    // Most inputs leave the earliest deadline where it was: the timer is set only when it moves.
    const Time next = node_.next_deadline();
    if (next == armed_for_) return;
    armed_for_ = next;
    if (next == Time::max()) {
        uv_timer_stop(timer_.get());
        return;
    }
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t* t) {
            auto* self = static_cast<TaskService*>(t->data);
            if (self == nullptr) return;
            self->armed_for_ = Time::max();  // fired: a one-shot timer is no longer set
            self->node_.tick(self->agent_.now());
            self->drain();
        },
        ms_of(next - agent_.now()) + 1, 0);
}

void TaskService::schedule_commit() {
    if (!writer_) return;
    // The commit starts when this loop iteration has read everything it polled, so one sync
    // serves every task the iteration took, and no task waits for another iteration.
    uv_check_start(commit_check_.get(), [](uv_check_t* c) {
        auto* self = static_cast<TaskService*>(c->data);
        if (self == nullptr) return;
        uv_check_stop(c);
        self->writer_->wake();
    });
}

// ---------------------------------------------------------------------------------------------
// Connections

Status TaskService::send_to(const Name& peer, const TaskMessage& m) {
    const uint64_t request = std::visit([](const auto& x) { return x.request; }, m);
    net::FrameHub& hub = agent_.hub();
    auto known = peers_.find(peer);
    if (known == peers_.end() || known->second.conn == 0 ||
        hub.find(known->second.conn) == nullptr) {
        // A peer gets an entry once it has an address: a name that is not a member leaves none.
        const Member* member = agent_.node().members().find(peer);
        auto to = member ? net::Endpoint::parse(member->addr.value.view())
                         : Result<net::Endpoint>(Error{"unknown", ""});
        if (!to) return Error{"unreachable", fmt::format("{} has no usable address", peer.str())};
        if (known == peers_.end()) known = peers_.emplace(peer, Peer{}).first;
        Peer& p = known->second;
        p.conn = hub.connect(*to);
        p.connected = false;
        p.backlog.clear();
        p.backlog_bytes = 0;
        if (p.conn == 0 || hub.find(p.conn) == nullptr) {
            p.conn = 0;
            return Error{"unreachable", fmt::format("could not connect to {}", peer.str())};
        }
    }
    Peer& p = known->second;
    auto bytes = wire::encode(agent_.node().config().cluster, agent_.node().self().name, m);
    if (p.connected) {
        hub.find(p.conn)->send(bytes);
        return Ok{};
    }
    if (p.backlog_bytes + bytes.size() > options_.backlog_bytes_max) {
        // The dial has been pending long enough for this much to pile up: give it up, and
        // let everything that waited on it fail over now.
        ++backlog_overflows_;
        const size_t waiting = p.backlog_bytes;
        hub.close(p.conn, Error{"slow_peer", fmt::format("{} bytes waited for the connection to "
                                                         "{}, over the limit of {}",
                                                         waiting + bytes.size(), peer.str(),
                                                         options_.backlog_bytes_max)});
        return Error{"unreachable", fmt::format("{} is not connected yet and {} bytes wait for it",
                                                peer.str(), waiting)};
    }
    p.backlog_bytes += bytes.size();
    p.backlog.push_back(Peer::Waiting{request, std::move(bytes)});
    return Ok{};
}

void TaskService::unqueue(const Name& peer, uint64_t request) {
    auto it = peers_.find(peer);
    if (it == peers_.end() || it->second.connected) return;
    Peer& p = it->second;
    const auto w = std::find_if(p.backlog.begin(), p.backlog.end(),
                                [&](const Peer::Waiting& x) { return x.request == request; });
    if (w == p.backlog.end()) return;
    p.backlog_bytes -= w->frame.size();
    p.backlog.erase(w);
    ++frames_unsent_;
}

}  // namespace chorus::daemon
