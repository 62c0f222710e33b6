#include "daemon/tasks.hpp"

#include "core/text.hpp"

#include <unistd.h>

#include <algorithm>
#include <iterator>

#include <fmt/format.h>
#include <fmt/ranges.h>

// xxh3 inlined from the header: nothing to link (static builds included), and the hash of a
// short key compiles down to a few dozen instructions.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace chorus::daemon {

namespace {

uint64_t xxh3(std::string_view s) {
    return XXH3_64bits(s.data(), s.size());
}

// A query waiting on another node is split into slices shorter than this, so no exchange
// outlives the streams' idle timeout and a vanished holder is noticed within a slice.
constexpr Duration kWaitSlice = seconds(5);
// Owners asked about stale copies per check_copies() round.
constexpr size_t kCopyChecksMax = 256;
// What a 503 asks the client to wait before trying again.
constexpr Duration kRetryAfter = seconds(1);
// Queries held waiting for a task to finish, at most; beyond it they answer at once.
constexpr size_t kWaitersMax = 4096;
// Ids of tasks refused at submission remembered (kept in memory only), so that a copy whose
// drop was lost is dropped when its holder asks, not run: a few minutes' worth at full rate.
constexpr size_t kDeclinedMax = 16384;
// The longest an asker may say it waits for a submission's answer (TaskSubmit.budget_ms).
constexpr Duration kBudgetMax = seconds(60);

// Whether a submission repeats the task already under its id (a client's retry).
bool same_task(const TaskSpec& a, const TaskSpec& b) {
    return a.key == b.key && a.type == b.type && a.payload == b.payload;
}

TaskAnswer conflict(const std::string& id) {
    return TaskAnswer::error(
        409, "task_conflict",
        fmt::format("id {} belongs to a task with another key, type or payload; choose another "
                    "id, or resend that task unchanged",
                    id));
}

}  // namespace

Status TaskOptions::validate() const {
    if (auto s = limits.validate(); !s) return s;
    const auto bad = [](std::string what) { return Error{"bad_config", std::move(what)}; };
    if (vnodes == 0 || vnodes > Ring::kVnodesMax) {
        return bad(fmt::format("vnodes: must be 1 to {}", Ring::kVnodesMax));
    }
    if (candidates == 0 || candidates > 16) return bad("candidates: must be 1 to 16");
    if (!(phi_route > 0)) return bad("phi_route: must be above 0");
    if (balance_factor != 0 && !(balance_factor >= 1)) {
        return bad("balance_factor: must be 0 (off) or at least 1");
    }
    if (forward_timeout <= Duration::zero()) return bad("forward_timeout: must be positive");
    if (copy_check <= Duration::zero()) return bad("copy_check: must be positive");
    if (backlog_bytes_max == 0) return bad("backlog_bytes_max: must be at least 1");
    if (copies_max == 0 || copies_bytes_max == 0) {
        return bad("copies_max and copies_bytes_max: must be at least 1");
    }
    // One copy besides the owner's is what this build keeps: with two holders, both would
    // take over a dead owner's task.
    if (task_replicas < 1 || task_replicas > 2) return bad("replicas: must be 1 or 2");
    if (min_replicas > task_replicas) {
        return bad(fmt::format("min_replicas: must be 1 to replicas ({}), or 0 for replicas",
                               task_replicas));
    }
    if (copy_timeout <= Duration::zero()) return bad("copy_timeout: must be positive");
    for (const auto& [name, spec] : handlers) {
        if (auto s = check_handler(name, spec); !s) return s;
    }
    return Ok{};
}

TaskAnswer TaskAnswer::error(int status, std::string code, std::string message) {
    TaskAnswer a;
    a.status = status;
    a.code = std::move(code);
    a.message = std::move(message);
    if (status == 503) a.retry_after = kRetryAfter;
    return a;
}

struct TaskService::Request {
    Name peer;
    uint64_t conn = 0;
    Time deadline{};
    std::function<void(Result<TaskReply>)> done;
};

struct TaskService::Waiter {
    TaskService* self = nullptr;
    uint64_t serial = 0;
    uint64_t client = 0;
    std::string task;
    std::function<void()> woken;
    net::Handle<uv_timer_t> timer;
};

// A client's task being placed from this node.
struct TaskService::Submission {
    explicit Submission(TaskSpec s) : spec(std::move(s)), search(spec.key) {}
    TaskSpec spec;
    uint64_t key_hash = 0;
    Duration wait{};
    Done done;
    uint64_t client = 0;
    Placement search;  // which candidate next, and the answer when none is left
};

struct TaskService::Search {
    std::string id;
    uint64_t key_hash = 0;
    Duration wait{};
    bool cancel = false;
    Done done;
    uint64_t client = 0;
    bool second_round = false;  // the key's candidates did not have it: ask everyone else
    std::set<Name> asked;
    std::vector<std::string> silent;  // asked and did not answer: they may hold the task
    size_t outstanding = 0;
    bool answered = false;
    // A copy's answer, held until the owner's own has had its chance (a copy may lag it).
    std::optional<std::pair<Name, TaskAnswer>> copy;
};

TaskService::TaskService(uv_loop_t* loop, Agent& agent, TaskOptions options, HttpPost http_post)
    : loop_(loop),
      agent_(agent),
      options_(std::move(options)),
      board_(options_.limits),
      runner_(
          loop, options_.handlers,
          // A handler's output is the task's result: one limit for both.
          [this] {
              RunnerLimits r = options_.runner;
              r.output_bytes_max = options_.limits.result_bytes_max;
              return r;
          }(),
          std::move(http_post)),
      rng_(uv_hrtime() ^ (static_cast<uint64_t>(getpid()) << 32)),
      copies_(CopyLimits{options_.copies_max, options_.copies_bytes_max,
                         options_.limits.results_max, options_.limits.results_bytes_max}),
      tracker_(
          CopyTrackerConfig{.replicas = options_.task_replicas,
                            .min_replicas = options_.min_replicas != 0 ? options_.min_replicas
                                                                       : options_.task_replicas,
                            .copy_timeout = options_.copy_timeout,
                            .repair_backoff = CopyTrackerConfig{}.repair_backoff},
          [this](uint64_t key_hash) { return copy_targets(key_hash); }) {
    agent_.attach(this);
    tracker_timer_ = net::make_timer(loop_, this).value();
    commit_timer_ = net::make_timer(loop_, this).value();
    commit_check_ = net::make_check(loop_, this).value();
    copy_check_timer_ = net::make_timer(loop_, this).value();
    journal_retry_timer_ = net::make_timer(loop_, this).value();
    deadline_timer_ = net::make_timer(loop_, this).value();
    const uint64_t every = std::max<uint64_t>(1, ms_of(options_.copy_check));
    uv_timer_start(
        copy_check_timer_.get(),
        [](uv_timer_t* t) {
            if (auto* self = static_cast<TaskService*>(t->data)) self->check_copies();
        },
        every, every);
    if (!options_.data_dir.empty()) {
        auto j = Journal::open(options_.data_dir);
        if (j) {
            journal_ = std::move(*j);
            recover();  // a journal it cannot read is dropped: no writer for it
            if (journal_) {
                writer_ = std::make_unique<JournalWriter>(
                    loop_, journal_,
                    [this](uint64_t upto, const Status& st) { committed(upto, st); });
            }
        } else {
            journal_error_ = j.error();
        }
    }
}

TaskService::~TaskService() {
    agent_.attach(nullptr);
}

const Ring& TaskService::ring() {
    if (!ring_) ring_.emplace(std::vector<Name>{}, options_.vnodes, xxh3);
    if (ring_stale_) {
        // Suspect members stay on the ring, as in Ringpop: a suspicion that is refuted moves
        // no keys, and the router passes over a suspect owner meanwhile. The member table and
        // the ring both list names in order, so one walk finds who joined and who went.
        std::vector<Name> live;
        agent_.node().members().for_each([&](const Member& m) {
            if (!is_gone(m.state)) live.push_back(m.name);
        });
        const std::vector<Name>& on_ring = ring_->members();
        std::vector<Name> joined, gone;
        std::set_difference(live.begin(), live.end(), on_ring.begin(), on_ring.end(),
                            std::back_inserter(joined));
        std::set_difference(on_ring.begin(), on_ring.end(), live.begin(), live.end(),
                            std::back_inserter(gone));
        ring_->update(joined, gone);
        ring_stale_ = false;
    }
    return *ring_;
}

// ---------------------------------------------------------------------------------------------
// The owner's side: the board and the runner

std::optional<TaskAnswer> TaskService::validate(TaskSpec& spec) {
    const TaskLimits& l = options_.limits;
    if (spec.key.empty()) {
        return TaskAnswer::error(400, "missing_key", "key: required, a non-empty string");
    }
    if (spec.key.size() > l.key_bytes_max) {
        return TaskAnswer::error(
            400, "key_too_long",
            fmt::format("key: {} bytes, over the limit of {}", spec.key.size(), l.key_bytes_max));
    }
    if (const TextProblem p = check_text(spec.key); p != TextProblem::none) {
        return TaskAnswer::error(400, "bad_key", fmt::format("key: {}", describe(p)));
    }
    if (!runner_.knows(spec.type)) {
        return TaskAnswer::error(422, "unknown_type",
                                 fmt::format("type: no handler named '{}'; this node has {}",
                                             spec.type, fmt::join(runner_.types(), ", ")));
    }
    if (spec.payload.size() > l.payload_bytes_max) {
        return TaskAnswer::error(413, "payload_too_large",
                                 fmt::format("payload: {} bytes, over the limit of {}",
                                             spec.payload.size(), l.payload_bytes_max));
    }
    if (spec.timeout == Duration::zero()) spec.timeout = l.timeout_default;
    if (spec.timeout < Duration::zero() || spec.timeout > l.timeout_max) {
        return TaskAnswer::error(400, "bad_timeout",
                                 fmt::format("timeout_ms: must be 1 to {}", ms_of(l.timeout_max)));
    }
    const uint64_t hash = xxh3(spec.key);
    if (spec.id.empty()) {
        spec.id = make_task_id(hash, rng_.next());
    } else if (valid_task_name(spec.id)) {
        spec.id = make_task_id(hash, spec.id);
    } else {
        return TaskAnswer::error(
            400, "bad_id",
            fmt::format("id: 1 to {} characters of A-Z a-z 0-9 . _ -", kTaskNameMax));
    }
    return std::nullopt;
}

void TaskService::accept(TaskSpec spec, Duration budget, Done done) {
    if (journal_error_) {
        ++stats_.unjournaled;
        done(TaskAnswer::error(503, "journal_unavailable",
                               journal_error_->message + "; this node takes no tasks until then"));
        return;
    }
    if (refusing_tasks()) {
        ++stats_.unjournaled;
        done(TaskAnswer::error(
            503, "journal_unavailable",
            fmt::format("the journal's last commit failed ({}); this node takes no tasks until "
                        "one succeeds, and tries again in {} ms",
                        journal_failing_->error.message,
                        ms_of(journal_failing_->retry_at - agent_.now()))));
        return;
    }
    if (!runner_.knows(spec.type)) {
        done(TaskAnswer::error(422, "unknown_type",
                               fmt::format("type: no handler named '{}' on {}", spec.type,
                                           agent_.node().self().name.str())));
        return;
    }
    // The same id again: a client's retry gets the task it already has, never a second run;
    // the id with another task is a conflict.
    const auto pending = pending_.find(spec.id);
    const Task* existing = pending != pending_.end() ? &pending->second.task : board_.find(spec.id);
    if (existing == nullptr) {
        // A leaving owner hands over a task we hold a copy of: it becomes ours, not a copy
        // (so it is not taken over a second time when the owner is gone).
        if (const Task* r = copies_.find(spec.id); r != nullptr && same_task(r->spec, spec)) {
            copies_.erase(spec.id);
        }
    }
    if (existing != nullptr) {
        if (!same_task(existing->spec, spec)) {
            done(conflict(spec.id));
            return;
        }
        if (pending != pending_.end()) {
            // Not stored yet: the retry hears what the first submission hears, when it does.
            pending->second.retries.push_back(std::move(done));
            return;
        }
        TaskAnswer a;
        a.status = 200;
        a.task = *existing;
        done(std::move(a));
        return;
    }
    const TaskLimits& l = options_.limits;
    if (board_.running() + board_.queued() + pending_.size() >= size_t{l.capacity} + l.queue_max) {
        ++stats_.full;
        done(TaskAnswer::error(
            503, "full",
            fmt::format("{} tasks running and {} queued, the most this node takes",
                        board_.running(), board_.queued() + pending_.size())));
        return;
    }
    // The answer must be out before the asker gives up on us, or it tries the next candidate
    // and one slow copy has the task accepted, and run, by two owners: a quarter of its
    // budget is left for the answer's way back (half of ours when it did not say).
    const Time now = agent_.now();
    // The asker's word is bounded: a peer cannot hold a pending task's place for long.
    budget = std::min(budget, kBudgetMax);
    const Duration ours =
        budget > Duration::zero() ? budget - budget / 4 : options_.forward_timeout / 2;
    const std::string id = spec.id;
    const uint64_t key_hash = xxh3(spec.key);
    Pending& p = pending_[id];
    p.task.spec = std::move(spec);
    p.task.owner = agent_.node().self().name;
    p.task.created = now;
    p.done = std::move(done);
    p.committed = journal_ == nullptr;
    if (journal_) {
        staged_.emplace_back(journal_->put(p.task), id);
        schedule_commit();
    }
    tracker_.add(id, key_hash, now + ours, now);
    pump();
}

void TaskService::schedule_commit(uint64_t delay_ms) {
    // At once: the commit starts when this loop iteration has read everything it polled, so
    // one sync serves every task the iteration took, and no task waits for another iteration.
    if (delay_ms == 0) {
        uv_check_start(commit_check_.get(), [](uv_check_t* c) {
            if (auto* self = static_cast<TaskService*>(c->data)) self->commit();
        });
        return;
    }
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(commit_timer_.get())) != 0) return;
    uv_timer_start(
        commit_timer_.get(),
        [](uv_timer_t* t) {
            if (auto* self = static_cast<TaskService*>(t->data)) self->commit();
        },
        delay_ms, 0);
}

void TaskService::commit() {
    uv_check_stop(commit_check_.get());
    uv_timer_stop(commit_timer_.get());
    if (writer_) writer_->wake();
}

void TaskService::committed(uint64_t upto, const Status& st) {
    // Everything staged up to `upto` is stored now, or failed together.
    std::vector<std::string> settled;
    while (!staged_.empty() && staged_.front().first <= upto) {
        settled.push_back(std::move(staged_.front().second));
        staged_.pop_front();
    }
    std::vector<std::function<void(const Status&)>> after;
    while (!after_commit_.empty() && after_commit_.front().first <= upto) {
        after.push_back(std::move(after_commit_.front().second));
        after_commit_.pop_front();
    }
    for (auto& a : after)
        a(st);
    // Ids no longer pending were refused meanwhile (too few copies); their removal is staged.
    std::erase_if(settled, [&](const std::string& id) { return !pending_.contains(id); });
    if (!st) {
        journal_failed(st.error());
        // Nothing of this batch is stored: refuse its new tasks (the router tries another
        // owner). Changes to tasks already stored stay staged and are tried again shortly.
        for (const std::string& id : settled)
            journal_->unstage(id);
        for (const std::string& id : settled) {
            Pending p = std::move(pending_.extract(id).mapped());
            ++stats_.unjournaled;
            decline(id);
            // Its copies went out beside the commit: their holders forget them, or would run
            // the refused task if this node died (frames on one link arrive in order, so the
            // drop comes after the copy).
            for (const Name& h : tracker_.forget(id))
                notify(h, TaskCopy{0, p.task, true});
            const auto refusal = TaskAnswer::error(
                503, "journal_unavailable", st.error().message + "; the task was not accepted");
            for (const Done& retry : p.retries)
                retry(refusal);
            p.done(refusal);
        }
        writer_->resume();
        // New tasks wait for the retry (journal_retry), which commits what is staged then.
        if (!staged_.empty()) schedule_commit();
        return;
    }
    if (journal_failing_ && journal_->stats().commits > journal_failing_->commits) {
        journal_recovered();
    }
    for (const std::string& id : settled) {
        pending_.find(id)->second.committed = true;
        admit_if_stored(id);
    }
}

void TaskService::settle(const CopyVerdict& v) {
    auto it = pending_.find(v.id);
    if (it == pending_.end()) return;  // refused by its journal meanwhile
    if (v.accepted) {
        it->second.replicas = v.replicas;
        admit_if_stored(v.id);
        return;
    }
    Pending p = std::move(pending_.extract(it).mapped());
    ++stats_.not_replicated;
    decline(v.id);
    if (journal_) {  // stored, or being stored: it must not come back after a restart
        journal_->remove(v.id);
        schedule_commit();
    }
    const auto refusal = TaskAnswer::error(
        503, "not_replicated",
        fmt::format("task {} was not accepted, and does not run: {}{}", v.id, v.why,
                    options_.task_replicas > 1 && agent_.node().members().size() <= 1
                        ? "; a cluster of one member takes tasks with tasks.replicas 1"
                        : ""));
    for (const Done& retry : p.retries)
        retry(refusal);
    p.done(refusal);
}

void TaskService::admit_if_stored(const std::string& id) {
    auto it = pending_.find(id);
    if (it == pending_.end() || !it->second.committed || !it->second.replicas) return;
    Pending p = std::move(pending_.extract(it).mapped());
    // Its place was held while it was pending: a take-over takes only the room left beside
    // the pending tasks, and admit() does not check the limits again.
    auto t = board_.admit(p.task.spec, p.task.owner, p.task.created);
    CHORUS_ASSERT(t.ok());  // pending ids are unique, and none is on the board yet
    start_ready();
    report_load();
    TaskAnswer a = accepted(id);
    a.replicas = *p.replicas;
    for (const Done& retry : p.retries)
        retry(a);
    p.done(std::move(a));
}

TaskAnswer TaskService::accepted(const std::string& id) const {
    TaskAnswer a;
    a.status = 202;
    if (const Task* t = board_.find(id)) a.task = *t;
    return a;
}

void TaskService::decline(const std::string& id) {
    if (!declined_.insert(id).second) return;
    declined_order_.push_back(id);
    while (declined_order_.size() > kDeclinedMax) {
        declined_.erase(declined_order_.front());
        declined_order_.pop_front();
    }
}

const Task* TaskService::owned(std::string_view id) const {
    if (auto p = pending_.find(id); p != pending_.end()) return &p->second.task;
    return board_.find(id);
}

std::vector<Name> TaskService::copy_targets(uint64_t key_hash) {
    const Node& node = agent_.node();
    const Name& self = node.self().name;
    const Time now = agent_.now();
    // The key's candidates and a few members beyond, so a copy has somewhere to go when
    // candidates are down; healthy members first, so a copy does not wait out copy_timeout
    // on one that has gone quiet before membership says so.
    std::vector<Name> healthy, quiet;
    for (const Name& n :
         ring().preference_at(key_hash, options_.candidates + options_.task_replicas)) {
        if (n == self) continue;
        const Member* m = node.members().find(n);
        if (m == nullptr || m->state != MemberState::alive) continue;
        (node.phi(n, now) < options_.phi_route ? healthy : quiet).push_back(n);
    }
    healthy.insert(healthy.end(), quiet.begin(), quiet.end());
    return healthy;
}

void TaskService::pump() {
    // Moved out first: answers that come at once (a failed send) pump again from within.
    CopyOutbox out = std::move(tracker_.outbox());
    tracker_.outbox().clear();
    for (CopySend& send : out.sends) {
        const Task* t = owned(send.id);
        if (t == nullptr) continue;  // settled by an earlier answer of this batch
        // The tracker keeps the time; the request's own deadline only cleans up after it.
        request(send.to, TaskCopy{0, *t, false}, options_.copy_timeout * 2,
                [this, id = send.id, to = send.to](Result<TaskReply> r) {
                    tracker_.answered(id, to, r && r->status == 200, agent_.now());
                    pump();
                });
    }
    for (const CopyDrop& drop : out.drops) {
        if (const Task* t = owned(drop.id)) notify(drop.to, TaskCopy{0, *t, true});
    }
    for (const CopyVerdict& v : out.verdicts)
        settle(v);
    const Time next = tracker_.next_deadline();
    if (next == Time::max()) {
        uv_timer_stop(tracker_timer_.get());
        return;
    }
    uv_timer_start(
        tracker_timer_.get(),
        [](uv_timer_t* t) {
            auto* self = static_cast<TaskService*>(t->data);
            if (self == nullptr) return;
            self->tracker_.tick(self->agent_.now());
            self->pump();
        },
        ms_of(next - agent_.now()), 0);
}

void TaskService::keep_copy(Task t, std::function<void(bool stored)> stored) {
    const std::string id = t.spec.id;
    if (t.owner == agent_.node().self().name || board_.find(id) != nullptr) {
        stored(true);  // ours already (taken over earlier): the owner's copy adds nothing
        return;
    }
    // A leaving node keeps no new copies (it is about to go), nor one a failing journal
    // cannot store; the owner tries the next member.
    const bool fresh = copies_.find(id) == nullptr;
    if (journal_error_ || refusing_tasks() || (handing_off_ && fresh)) {
        stored(false);
        return;
    }
    auto kept = copies_.put(std::move(t));
    if (!kept) {
        ++stats_.copies_refused;
        stored(false);
        return;
    }
    for (const std::string& old : *kept) {  // finished copies retention let go
        if (journal_) journal_->remove(old);
    }
    if (!journal_) {
        stored(true);
        return;
    }
    after_commit_.emplace_back(journal_->put(*copies_.find(id)),
                               [stored = std::move(stored)](const Status& s) { stored(s.ok()); });
    schedule_commit();
}

void TaskService::member_changed(const MemberEvent& e) {
    ring_stale_ = true;
    if (!e.current) {
        // Reaped: its load and connection state go too, so peers_ is bounded by the member
        // table, not by every name ever seen.
        if (auto p = peers_.find(e.name); p != peers_.end()) {
            if (p->second.conn != 0) agent_.hub().close(p->second.conn);
            peers_.erase(p);
        }
    }
    if (e.current && is_gone(*e.current) && e.name != agent_.node().self().name) {
        promote(e.name);
        tracker_.member_gone(e.name, agent_.now());  // the copies it held are made again
        pump();
    }
}

void TaskService::drop_copy(const Task& t) {
    // Only a copy of that owner's: never a task this node took over, nor another owner's.
    const Task* r = copies_.find(t.spec.id);
    if (r == nullptr || r->owner != t.owner) return;
    copies_.erase(t.spec.id);
    ++stats_.dropped;
    if (journal_) {
        journal_->remove(t.spec.id);
        schedule_commit();
    }
}

void TaskService::promote(const Name& gone) {
    std::vector<std::string> ids;
    copies_.for_each([&](const Task& t) {
        if (t.owner == gone && !is_finished(t.state)) ids.push_back(t.spec.id);
    });
    take_over(ids);
}

bool TaskService::has_room() const {
    const TaskLimits& l = options_.limits;
    return board_.running() + board_.queued() + pending_.size() < size_t{l.capacity} + l.queue_max;
}

void TaskService::take_over(const std::vector<std::string>& ids) {
    std::vector<std::string> taken;
    for (const std::string& id : ids) {
        const Task* r = copies_.find(id);
        if (r == nullptr || is_finished(r->state)) continue;
        if (!has_room()) {
            // Beyond this node's capacity: the copy stays here until room frees up or another
            // candidate of its key takes the task (place_orphans). Never dropped, never run
            // past the limits.
            orphans_.insert(id);
            continue;
        }
        orphans_.erase(id);
        Task t = *copies_.take(id);
        t.owner = agent_.node().self().name;
        // A copy is sent before its task starts and hears of it only when it ends: the dead
        // owner may have run it, and `attempts` counts that run as one.
        t.attempts = std::max<uint32_t>(t.attempts, 1);
        ++stats_.promoted;
        board_.restore(std::move(t), agent_.now());
        record(id);
        taken.push_back(id);
    }
    start_ready();
    report_load();
    for (const std::string& id : taken) {  // new copies elsewhere: its holder was this node
        if (const Task* t = board_.find(id); t != nullptr && !is_finished(t->state))
            tracker_.adopt(id, xxh3(t->spec.key), {}, agent_.now());
    }
    pump();
    place_orphans();
}

void TaskService::place_orphans() {
    // Each orphan goes to this node if it now has room, else to another alive candidate of its
    // key that takes it (one request at a time per orphan); the copy here is dropped once one
    // did. What nobody takes waits for the next try: a task finishing here, or the copy check.
    std::vector<std::string> local;
    const Name& self = agent_.node().self().name;
    for (const std::string& id : orphans_) {
        if (offering_.contains(id)) continue;
        const Task* r = copies_.find(id);
        if (r == nullptr || is_finished(r->state)) {
            local.push_back(id);  // settled meanwhile: take_over skips it and forgets it
            continue;
        }
        if (has_room() && !handing_off_) {
            local.push_back(id);
            continue;
        }
        const Name dead = r->owner;
        std::vector<Name> others;
        for (const Name& n : ring().preference_at(xxh3(r->spec.key), options_.candidates + 1)) {
            const Member* m = agent_.node().members().find(n);
            if (n != self && n != dead && m != nullptr && m->state == MemberState::alive)
                others.push_back(n);
        }
        if (others.empty()) continue;
        offering_.insert(id);
        offer_orphan(id, std::move(others), 0);
    }
    for (const std::string& id : local)
        orphans_.erase(id);
    if (!local.empty()) take_over(local);
}

void TaskService::offer_orphan(const std::string& id, std::vector<Name> to, size_t next) {
    const Task* r = copies_.find(id);
    if (next >= to.size() || r == nullptr || !orphans_.contains(id)) {
        offering_.erase(id);
        return;
    }
    const Name peer = to[next];
    request(peer, TaskSubmit{0, r->spec, options_.forward_timeout}, options_.forward_timeout,
            [this, id, to = std::move(to), next](Result<TaskReply> reply) mutable {
                if (reply && (reply->status == 202 || reply->status == 200)) {
                    offering_.erase(id);
                    orphans_.erase(id);
                    ++stats_.orphans_placed;
                    if (copies_.erase(id) && journal_) {
                        journal_->remove(id);
                        schedule_commit();
                    }
                    return;
                }
                offer_orphan(id, std::move(to), next + 1);
            });
}

void TaskService::check_copies() {
    if (!orphans_.empty()) place_orphans();
    // Each unfinished copy that was unfinished at the last check too is asked about, at most
    // kCopyChecksMax per round (the rest wait for the next), and only while its owner is
    // alive; a suspect one may be back shortly. A dead owner's copies are taken over by
    // member_changed, but a holder that restarted after the owner died (or joined after it
    // was reaped) hears no such event: once this node is in a cluster, a copy whose owner it
    // holds dead, left or not a member at all is taken over here.
    const bool joined = agent_.node().members().count(MemberState::alive) > 1;
    std::set<std::string, std::less<>> unfinished;
    std::vector<std::pair<std::string, Name>> ask;  // asked after the walk, which they may change
    std::vector<std::string> ownerless;
    copies_.for_each([&](const Task& t) {
        const std::string& id = t.spec.id;
        if (is_finished(t.state)) return;
        unfinished.insert(id);
        if (!unfinished_copies_.contains(id) || ask.size() >= kCopyChecksMax) return;
        const Member* m = agent_.node().members().find(t.owner);
        if (m == nullptr || is_gone(m->state)) {
            if (joined) ownerless.push_back(id);
            return;
        }
        if (m->state != MemberState::alive) return;
        ask.emplace_back(id, t.owner);
    });
    if (!ownerless.empty()) take_over(ownerless);
    for (const auto& [id, owner] : ask) {
        request(owner, TaskQuery{0, id, false, {}}, options_.forward_timeout,
                [this, id = id, owner = owner](Result<TaskReply> r) {
                    const Task* copy = copies_.find(id);
                    if (!r || copy == nullptr || copy->owner != owner || is_finished(copy->state)) {
                        return;  // no answer (asked again next round), or settled meanwhile
                    }
                    switch (judge_copy(owner, r->status, r->code, r->task)) {
                        case CopyCheck::update:
                            ++stats_.caught_up;
                            keep_copy(std::move(*r->task), [](bool) {});
                            break;
                        case CopyCheck::take_over:
                            take_over({id});
                            break;
                        case CopyCheck::drop:
                            drop_copy(Task(*copy));  // a copy: drop_copy erases it
                            break;
                        case CopyCheck::wait:
                            break;
                    }
                });
    }
    unfinished_copies_ = std::move(unfinished);
}

void TaskService::tell_copies(const std::string& id) {
    // The copies learn how the task ended, so the result outlives this node too; the task
    // leaves the tracker, as nothing more will change.
    const Task* t = board_.find(id);
    for (const Name& h : tracker_.forget(id)) {
        if (t != nullptr) notify(h, TaskCopy{0, *t, false});
    }
}

void TaskService::record(const std::string& id) {
    if (!journal_) return;
    if (const Task* t = board_.find(id)) journal_->put(*t);
    record_evictions();
    schedule_commit();
}

void TaskService::record_evictions() {
    for (const std::string& id : board_.take_evicted()) {
        if (journal_) journal_->remove(id);
    }
}

void TaskService::recover() {
    auto tasks = journal_->load();
    if (!tasks) {
        journal_error_ = tasks.error();
        journal_.reset();
        return;
    }
    const Name& self = agent_.node().self().name;
    for (Task& t : *tasks) {
        ++stats_.recovered;
        if (t.owner != self) {  // a copy of another node's task
            copies_.restore(std::move(t));
            continue;
        }
        if (!is_finished(t.state)) {
            ++stats_.requeued;
            // Where its copy was is not known after a restart: it is made again (and the
            // holder of the old one takes it as an update).
            tracker_.adopt(t.spec.id, xxh3(t.spec.key), {}, agent_.now());
        }
        board_.restore(std::move(t), agent_.now());
    }
    record_evictions();
    start_ready();
    report_load();
}

void TaskService::hand_off(Duration drain, std::function<void(size_t, size_t)> done) {
    handing_off_ = true;
    place_orphans();  // a dead owner's tasks that waited here for room go to other candidates
    struct Count {
        size_t left = 0, handed = 0, kept = 0;
        std::function<void(size_t, size_t)> done;
    };
    auto count = std::make_shared<Count>();
    // Once the queue is handed over: wait for the running tasks, up to `drain`.
    const Time until = agent_.now() + drain;
    count->done = [this, until, done = std::move(done)](size_t handed, size_t kept) mutable {
        drain_until_ = until;
        drained_ = [done = std::move(done), handed, kept] { done(handed, kept); };
        drain_timer_ = net::make_timer(loop_, this).value();
        uv_timer_start(
            drain_timer_.get(),
            [](uv_timer_t* t) {
                auto* self = static_cast<TaskService*>(t->data);
                if (self == nullptr) return;
                if (self->board_.running() > 0 && self->agent_.now() < self->drain_until_) return;
                uv_timer_stop(t);
                std::exchange(self->drained_, nullptr)();
            },
            0, 20);
    };
    const auto ids = board_.queued_ids();
    count->left = ids.size();
    if (ids.empty()) {
        count->done(0, 0);
        return;
    }
    for (const std::string& id : ids) {
        const Task task = *board_.find(id);
        // The holder of its copy first: it takes the task as its own without another copy.
        std::optional<Name> to;
        if (const auto* holders = tracker_.holders(id)) {
            for (const Name& h : *holders) {
                const Member* m = agent_.node().members().find(h);
                if (m != nullptr && m->state == MemberState::alive) {
                    to = h;
                    break;
                }
            }
        }
        if (!to) {
            if (auto targets = copy_targets(xxh3(task.spec.key)); !targets.empty())
                to = targets.front();
        }
        const auto finish = [this, count, id, task, to](bool taken) {
            if (taken && board_.hand_over(id)) {
                ++count->handed;
                for (const Name& h : tracker_.forget(id)) {
                    if (h != *to) notify(h, TaskCopy{0, task, true});
                }
                if (journal_) {
                    journal_->remove(id);
                    schedule_commit();
                }
            } else {
                ++count->kept;
            }
            if (--count->left == 0) {
                report_load();
                count->done(count->handed, count->kept);
            }
        };
        if (!to) {
            finish(false);
            continue;
        }
        request(
            *to, TaskSubmit{0, task.spec, options_.forward_timeout}, options_.forward_timeout,
            [finish](Result<TaskReply> r) { finish(r && (r->status == 202 || r->status == 200)); });
    }
}

void TaskService::start_ready() {
    if (handing_off_) return;
    for (const std::string& id : board_.start_ready(agent_.now())) {
        record(id);
        runner_.start(board_.find(id)->spec,
                      [this, id](TaskOutcome o) { finished(id, std::move(o)); });
    }
}

void TaskService::finished(const std::string& id, TaskOutcome outcome) {
    board_.finish(id, std::move(outcome), agent_.now());
    record(id);
    tell_copies(id);
    wake(id);
    start_ready();
    report_load();
    if (!orphans_.empty()) place_orphans();  // a slot is free: an orphan may have room now
}

bool TaskService::refusing_tasks() const {
    return journal_failing_ && agent_.now() < journal_failing_->retry_at;
}

uint32_t TaskService::reported_load() const {
    return refusing_tasks() ? kLoadRefusing : board_.load_milli();
}

void TaskService::report_load() {
    agent_.set_load(reported_load());
}

void TaskService::journal_failed(const Error& why) {
    // Until a commit succeeds again this node refuses tasks and copies, and tells its peers
    // so (kLoadRefusing), so the router places work elsewhere instead of being refused here.
    // After a backoff (1 s, doubling to 30 s) it takes what comes again, and the next commit
    // decides: a success ends the trouble, a failure starts a longer wait.
    const Time now = agent_.now();
    const bool first = !journal_failing_;
    if (first) journal_failing_ = JournalTrouble{why, now, now, seconds(1), 0};
    JournalTrouble& t = *journal_failing_;
    if (!first) t.backoff = std::min<Duration>(t.backoff * 2, seconds(30));
    t.error = why;
    t.retry_at = now + t.backoff;
    t.commits = journal_->stats().commits;
    ++t.failures;
    report_load();
    uv_timer_start(
        journal_retry_timer_.get(),
        [](uv_timer_t* h) {
            auto* self = static_cast<TaskService*>(h->data);
            if (self == nullptr) return;
            // Peers may send tasks again; a commit decides, of what is staged or of a probe.
            self->report_load();
            if (self->journal_) {
                if (self->journal_->staged() == 0) self->journal_->probe();
                self->schedule_commit();
            }
        },
        ms_of(t.backoff), 0);
    if (first && on_journal_state) on_journal_state(journal_failing_->error);
}

void TaskService::journal_recovered() {
    journal_failing_.reset();
    uv_timer_stop(journal_retry_timer_.get());
    report_load();
    if (on_journal_state) on_journal_state(std::nullopt);
}

TaskAnswer TaskService::answer_query(const std::string& id, bool cancel) {
    board_.expire(agent_.now());
    record_evictions();
    if (board_.find(id) == nullptr) {
        if (const Task* r = copies_.find(id); r != nullptr && !cancel) {
            TaskAnswer a;  // a copy: as fresh as the owner's last word
            a.task = *r;
            return a;
        }
        if (declined_.contains(id)) {
            return TaskAnswer::error(
                410, "task_declined",
                fmt::format("task {} was refused when it was submitted, and never ran", id));
        }
        return TaskAnswer::error(404, "unknown_task", fmt::format("no task {} here", id));
    }
    if (cancel && board_.cancel(id, agent_.now()) != TaskBoard::Cancel::already_finished) {
        record(id);
        tell_copies(id);   // or a copy would run the cancelled task if this node died
        runner_.stop(id);  // a no-op unless it was running
        wake(id);
        report_load();
    }
    TaskAnswer a;
    a.task = *board_.find(id);
    return a;
}

void TaskService::client_gone(uint64_t client) {
    std::vector<uint64_t> serials;
    for (const auto& [serial, w] : waiters_) {
        if (w->client == client) serials.push_back(serial);
    }
    for (const uint64_t s : serials)
        take_waiter(s);  // dropped, not called: nobody is there to hear
}

void TaskService::wait_local(const std::string& id, Duration wait, std::function<void()> woken,
                             uint64_t client) {
    const Task* t = board_.find(id);
    if (t == nullptr || is_finished(t->state) || wait <= Duration::zero() ||
        waiters_.size() >= kWaitersMax) {
        woken();
        return;
    }
    auto w = std::make_unique<Waiter>();
    auto timer = net::make_timer(loop_, w.get());
    if (!timer) {
        woken();
        return;
    }
    w->self = this;
    w->serial = next_waiter_++;
    w->client = client;
    w->task = id;
    w->woken = std::move(woken);
    w->timer = std::move(*timer);
    uv_timer_start(
        w->timer.get(),
        [](uv_timer_t* tm) {
            auto* waiter = static_cast<Waiter*>(tm->data);
            if (waiter == nullptr) return;
            auto woken = waiter->self->take_waiter(waiter->serial);
            woken();
        },
        ms_of(wait), 0);
    waiting_on_.emplace(id, w->serial);
    waiters_.emplace(w->serial, std::move(w));
}

std::function<void()> TaskService::take_waiter(uint64_t serial) {
    auto it = waiters_.find(serial);
    CHORUS_ASSERT(it != waiters_.end());
    auto [from, to] = waiting_on_.equal_range(it->second->task);
    for (auto i = from; i != to; ++i) {
        if (i->second == serial) {
            waiting_on_.erase(i);
            break;
        }
    }
    auto woken = std::move(it->second->woken);
    waiters_.erase(it);  // its timer closes with it
    return woken;
}

void TaskService::wake(const std::string& id) {
    std::vector<uint64_t> serials;
    auto [from, to] = waiting_on_.equal_range(id);
    for (auto i = from; i != to; ++i)
        serials.push_back(i->second);
    for (const uint64_t s : serials)
        take_waiter(s)();
}

// ---------------------------------------------------------------------------------------------
// The entry node's side: placing a task, finding one

RouteCandidate TaskService::candidate(const Name& name) {
    RouteCandidate c;
    c.name = name;
    const Node& node = agent_.node();
    if (name == node.self().name) {
        c.alive = !node.leaving();
        c.accepting = !refusing_tasks();
        c.load = board_.load_milli() / 1000.0;
        return c;
    }
    const Member* m = node.members().find(name);
    if (m == nullptr) return c;
    c.alive = m->state == MemberState::alive;
    c.phi = node.phi(name, agent_.now());
    Peer& p = peers_[name];
    // The newer of the last gossiped load and the last reply's; what we sent before that
    // report is in it, what we sent since is not (ARCHITECTURE.md, "Tasks").
    const bool reply_newer = p.reply_at > m->load_at;
    const Time report = reply_newer ? p.reply_at : m->load_at;
    if (report > p.sent_since) {
        p.sent = 0;
        p.sent_since = report;
    }
    const uint32_t load = reply_newer ? p.reply_load_milli : m->load_milli;
    c.accepting = load != kLoadRefusing;
    c.load = c.accepting ? load / 1000.0 : 0.0;
    const uint32_t capacity = p.capacity != 0 ? p.capacity : options_.limits.capacity;
    c.sent = static_cast<double>(p.sent) / capacity;
    return c;
}

TaskService::Lookup TaskService::lookup(std::string_view key) {
    Lookup l;
    l.key_hash = xxh3(key);
    for (const Name& n : ring().preference_at(l.key_hash, options_.candidates))
        l.candidates.push_back(candidate(n));
    l.choice = choose_owner(l.candidates, options_.phi_route, options_.balance_factor);
    return l;
}

void TaskService::submit(TaskSpec spec, Duration wait, Done done, uint64_t client) {
    const bool named = !spec.id.empty();
    if (auto bad = validate(spec)) {
        done(std::move(*bad));
        return;
    }
    const uint64_t key_hash = xxh3(spec.key);
    auto p = std::make_shared<Submission>(std::move(spec));
    p->key_hash = key_hash;
    p->wait = wait;
    p->done = std::move(done);
    p->client = client;
    if (!named) {
        place(std::move(p));
        return;
    }
    // A client that names its task may be retrying: if any member holds the id, answer with
    // that task (or a conflict) instead of placing a second one, which the router might put
    // on another candidate.
    const std::string id = p->spec.id;
    query(id, {}, false, [this, p](TaskAnswer found) mutable {
        if (found.status != 200 || !found.task) {
            place(std::move(p));
            return;
        }
        if (!same_task(found.task->spec, p->spec)) {
            p->done(conflict(p->spec.id));
            return;
        }
        const Name holder = found.task->owner;
        follow(holder, std::move(found), agent_.now() + p->wait, true, std::move(p->done),
               p->client);
    });
}

void TaskService::place(std::shared_ptr<Submission> p) {
    std::vector<RouteCandidate> cs;
    for (const Name& n : ring().preference_at(p->key_hash, options_.candidates))
        cs.push_back(candidate(n));
    auto next = p->search.next(std::move(cs), options_.phi_route, options_.balance_factor);
    if (auto* end = std::get_if<Placement::GiveUp>(&next)) {
        ++stats_.unavailable;
        p->done(TaskAnswer::error(503, std::move(end->code), std::move(end->message)));
        return;
    }
    const Name owner = std::get<Placement::Try>(next).owner;
    if (owner == agent_.node().self().name) {
        accept(p->spec, options_.forward_timeout, [this, p, owner](TaskAnswer a) mutable {
            if (a.status == 503) {
                p->search.refused(owner, a.code, a.message);
                ++stats_.retries;
                place(std::move(p));
                return;
            }
            if (a.status == 202) ++stats_.local;
            follow(owner, std::move(a), agent_.now() + p->wait, true, std::move(p->done),
                   p->client);
        });
        return;
    }
    ++peers_[owner].sent;
    const Time sent_at = agent_.now();
    request(owner, TaskSubmit{0, p->spec, options_.forward_timeout}, options_.forward_timeout,
            [this, p, owner, sent_at](Result<TaskReply> r) mutable {
                if (!r || r->status == 503) {
                    if (!r && r.error().code == "timeout") ++stats_.forward_timeouts;
                    p->search.refused(owner, r ? r->code : r.error().code,
                                      r ? r->message : r.error().message);
                    ++stats_.retries;
                    place(std::move(p));
                    return;
                }
                TaskAnswer a;
                a.status = r->status;
                a.code = std::move(r->code);
                a.message = std::move(r->message);
                a.task = std::move(r->task);
                a.forwarded = true;
                a.replicas = r->replicas;
                if (a.status == 202) {
                    ++stats_.forwarded;
                    if (on_forwarded) on_forwarded(agent_.now() - sent_at);
                }
                follow(owner, std::move(a), agent_.now() + p->wait, true, std::move(p->done),
                       p->client);
            });
}

void TaskService::follow(const Name& holder, TaskAnswer current, Time deadline, bool submitted,
                         Done done, uint64_t client) {
    if (client != 0 && client_present && !client_present(client)) return;  // nobody to tell
    const bool ok = current.status == 200 || current.status == 202;
    const bool over = !current.task || is_finished(current.task->state) || agent_.now() >= deadline;
    if (!ok || over) {
        // A submission answers 202 until its task has finished; a query always 200.
        if (ok)
            current.status =
                !submitted || (current.task && is_finished(current.task->state)) ? 200 : 202;
        done(std::move(current));
        return;
    }
    const std::string id = current.task->spec.id;
    const Duration left = deadline - agent_.now();
    if (holder == agent_.node().self().name) {
        wait_local(
            id, left,
            [this, holder, current, deadline, submitted, id, done, client]() mutable {
                if (const Task* t = board_.find(id)) current.task = *t;
                // Finished or out of time: either way follow answers now.
                follow(holder, std::move(current), std::min(deadline, agent_.now()), submitted,
                       std::move(done), client);
            },
            client);
        return;
    }
    const Duration slice = std::min(left, kWaitSlice);
    request(
        holder, TaskQuery{0, id, false, slice}, slice + options_.forward_timeout,
        [this, holder, current, deadline, submitted, done, client](Result<TaskReply> r) mutable {
            if (r && r->status == 200 && r->task) {
                current.task = std::move(r->task);
            } else {
                deadline = agent_.now();  // the holder is gone or lost the task: say so now
            }
            follow(holder, std::move(current), deadline, submitted, std::move(done), client);
        });
}

void TaskService::query(const std::string& id, Duration wait, bool cancel, Done done,
                        uint64_t client) {
    const auto hash = task_key_hash(id);
    if (!hash) {
        done(TaskAnswer::error(404, "unknown_task",
                               fmt::format("no task has id '{}': ids look like "
                                           "<16 hex digits>-<name>, as POST /v1/tasks returned",
                                           id)));
        return;
    }
    auto s = std::make_shared<Search>();
    s->id = id;
    s->key_hash = *hash;
    s->wait = wait;
    s->cancel = cancel;
    s->done = std::move(done);
    s->client = client;
    search(std::move(s));
}

void TaskService::search(std::shared_ptr<Search> s) {
    std::vector<Name> targets;
    if (!s->second_round) {
        targets = ring().preference_at(s->key_hash, options_.candidates);
    } else {
        agent_.node().members().for_each([&](const Member& m) {
            if (!is_gone(m.state) && !s->asked.contains(m.name)) targets.push_back(m.name);
        });
    }
    if (targets.empty()) {
        if (!s->second_round) {
            s->second_round = true;
            search(std::move(s));
            return;
        }
        if (!s->silent.empty()) {
            // Not found among those that answered; those that did not may hold it.
            s->done(TaskAnswer::error(
                503, "unavailable",
                fmt::format("task {} was not found on the members that answered, and {} did "
                            "not answer; it may be on them",
                            s->id, fmt::join(s->silent, ", "))));
            return;
        }
        s->done(TaskAnswer::error(
            404, "unknown_task",
            fmt::format("no member holds task {}: every member asked, its key's candidates "
                        "among them, said so. It was never accepted, the retention limits "
                        "dropped it, or every node that held it is gone",
                        s->id)));
        return;
    }
    s->outstanding = targets.size();
    const auto found = [this, s](const Name& holder, std::optional<TaskAnswer> a) {
        --s->outstanding;
        if (s->answered) return;
        if (a && a->task && a->task->owner != holder) {
            if (!s->copy) s->copy.emplace(holder, std::move(*a));
            a.reset();
        }
        Name from = holder;
        if (!a && s->outstanding == 0 && s->copy) {
            from = s->copy->first;
            a = std::move(s->copy->second);
        }
        if (a) {
            s->answered = true;
            follow(from, std::move(*a), agent_.now() + s->wait, false, s->done, s->client);
            return;
        }
        if (s->outstanding == 0) {
            s->second_round = true;
            search(s);
        }
    };
    for (const Name& t : targets) {
        s->asked.insert(t);
        if (t == agent_.node().self().name) {
            TaskAnswer a = answer_query(s->id, s->cancel);
            found(t, a.status == 200 ? std::optional<TaskAnswer>(std::move(a)) : std::nullopt);
            continue;
        }
        ++stats_.queries;
        request(t, TaskQuery{0, s->id, s->cancel, {}}, options_.forward_timeout,
                [found, t, s](Result<TaskReply> r) {
                    if (!r || r->status != 200 || !r->task) {
                        // A 404 is an answer; no answer, or a refusal, leaves the question open.
                        if (!r || (r->status != 404 && r->status != 410))
                            s->silent.push_back(t.str());
                        found(t, std::nullopt);
                        return;
                    }
                    TaskAnswer a;
                    a.task = std::move(r->task);
                    a.forwarded = true;
                    found(t, std::move(a));
                });
        if (s->answered) return;
    }
}

// ---------------------------------------------------------------------------------------------
// Frames

Result<uint64_t> TaskService::send_to(const Name& peer, const wire::TaskMessage& m,
                                      uint64_t request) {
    Peer& p = peers_[peer];
    net::FrameHub& hub = agent_.hub();
    if (p.conn == 0 || hub.find(p.conn) == nullptr) {
        const Member* member = agent_.node().members().find(peer);
        auto to = member ? net::Endpoint::parse(member->addr.value.view())
                         : Result<net::Endpoint>(Error{"unknown", ""});
        if (!to) return Error{"unreachable", fmt::format("{} has no usable address", peer.str())};
        p.conn = hub.connect(*to);
        p.connected = false;
        p.backlog.clear();
        p.backlog_bytes = 0;
        if (p.conn == 0 || hub.find(p.conn) == nullptr) {
            p.conn = 0;
            return Error{"unreachable", fmt::format("could not connect to {}", peer.str())};
        }
    }
    auto bytes = wire::encode(agent_.node().config().cluster, agent_.node().self().name, m);
    if (p.connected) {
        hub.find(p.conn)->send(bytes);
        return p.conn;
    }
    if (p.backlog_bytes + bytes.size() > options_.backlog_bytes_max) {
        // The dial has been pending long enough for this much to pile up: give it up, and
        // let everything that waited on it fail over now.
        ++stats_.backlog_overflows;
        const uint64_t conn = p.conn;
        hub.close(conn, Error{"slow_peer", fmt::format("{} bytes waited for the connection to "
                                                       "{}, over the limit of {}",
                                                       p.backlog_bytes + bytes.size(), peer.str(),
                                                       options_.backlog_bytes_max)});
        return Error{"unreachable", fmt::format("{} is not connected yet and {} bytes wait for it",
                                                peer.str(), p.backlog_bytes)};
    }
    p.backlog_bytes += bytes.size();
    p.backlog.push_back(Peer::Waiting{request, std::move(bytes)});
    return p.conn;
}

void TaskService::notify(const Name& peer, wire::TaskMessage m) {
    std::visit([](auto& x) { x.request = 0; }, m);  // 0: no answer wanted
    (void)send_to(peer, m);
}

void TaskService::request(const Name& peer, wire::TaskMessage m, Duration timeout,
                          std::function<void(Result<TaskReply>)> done) {
    const uint64_t id = next_request_++;
    std::visit([id](auto& x) { x.request = id; }, m);
    auto conn = send_to(peer, m, id);
    if (!conn) {
        done(conn.error());
        return;
    }
    auto r = std::make_unique<Request>();
    r->peer = peer;
    r->conn = *conn;
    r->deadline = agent_.now() + timeout;
    r->done = std::move(done);
    // One timer serves every request: it is set for the earliest deadline.
    const bool earliest = deadlines_.empty() || r->deadline < deadlines_.begin()->first;
    deadlines_.emplace(r->deadline, id);
    requests_.emplace(id, std::move(r));
    if (earliest) arm_deadlines();
}

void TaskService::arm_deadlines() {
    if (deadlines_.empty()) {
        uv_timer_stop(deadline_timer_.get());
        return;
    }
    const Duration left = deadlines_.begin()->first - agent_.now();
    uv_timer_start(
        deadline_timer_.get(),
        [](uv_timer_t* t) {
            auto* self = static_cast<TaskService*>(t->data);
            if (self == nullptr) return;
            const Time now = self->agent_.now();
            while (!self->deadlines_.empty() && self->deadlines_.begin()->first <= now) {
                const uint64_t id = self->deadlines_.begin()->second;
                self->deadlines_.erase(self->deadlines_.begin());  // gone, whatever fail does
                self->fail_request(id, Error{"timeout", "no answer in time"});
            }
            self->arm_deadlines();
        },
        ms_of(left) + 1, 0);
}

std::unique_ptr<TaskService::Request> TaskService::take_request(uint64_t id) {
    auto it = requests_.find(id);
    if (it == requests_.end()) return nullptr;
    std::unique_ptr<Request> r = std::move(it->second);
    requests_.erase(it);
    deadlines_.erase({r->deadline, id});
    return r;
}

void TaskService::fail_request(uint64_t id, Error why) {
    auto r = take_request(id);
    if (!r) return;
    // Still waiting for its dial: it must not go out later, or the task could run on this
    // owner after the next candidate took it too.
    unqueue(r->peer, id);
    r->done(std::move(why));
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
    ++stats_.frames_unsent;
}

void TaskService::reply(uint64_t conn, TaskReply r) {
    net::FrameConn* c = agent_.hub().find(conn);
    if (c == nullptr) return;  // the asker hung up; nobody to tell
    r.load_milli = reported_load();
    r.capacity = options_.limits.capacity;
    c->send(wire::encode(agent_.node().config().cluster, agent_.node().self().name, r));
}

void TaskService::on_task_frame(net::FrameConn& conn, wire::Frame frame) {
    const uint64_t conn_id = conn.id();
    if (auto* submit = std::get_if<TaskSubmit>(&frame.message)) {
        const uint64_t request = submit->request;
        const auto answer = [this, conn_id, request](TaskAnswer a) {
            if (a.status == 202) ++stats_.remote;
            reply(conn_id, TaskReply{request, static_cast<uint16_t>(a.status), a.code, a.message, 0,
                                     0, std::move(a.task), a.replicas});
        };
        if (task_key_hash(submit->spec.id) != xxh3(submit->spec.key)) {
            answer(TaskAnswer::error(400, "bad_id", "the task id does not carry its key's hash"));
        } else {
            submit->spec.timeout = std::min(submit->spec.timeout, options_.limits.timeout_max);
            accept(std::move(submit->spec), submit->budget, answer);
        }
    } else if (auto* rep = std::get_if<TaskCopy>(&frame.message)) {
        const uint64_t request = rep->request;
        if (rep->drop) {
            drop_copy(rep->task);
            if (request != 0) reply(conn_id, TaskReply{request, 200, "", "", 0, 0, {}, 0});
            return;
        }
        keep_copy(std::move(rep->task), [this, conn_id, request](bool stored) {
            if (request == 0) return;  // an outcome: the owner waits for no answer
            reply(conn_id, stored ? TaskReply{request, 200, "", "", 0, 0, {}, 0}
                                  : TaskReply{request,
                                              503,
                                              "copy_refused",
                                              "this node cannot store the copy now (its copies "
                                              "are full, its journal fails, or it is leaving)",
                                              0,
                                              0,
                                              {},
                                              0});
        });
    } else if (auto* q = std::get_if<TaskQuery>(&frame.message)) {
        TaskAnswer a = answer_query(q->id, q->cancel);
        const uint64_t request = q->request;
        const auto send = [this, conn_id, request](const TaskAnswer& x) {
            reply(conn_id, TaskReply{request, static_cast<uint16_t>(x.status), x.code, x.message, 0,
                                     0, x.task, 0});
        };
        if (a.status != 200 || q->wait <= Duration::zero()) {
            send(a);
            return;
        }
        const std::string id = q->id;
        wait_local(id, std::min(q->wait, kWaitSlice), [this, id, a, send]() mutable {
            if (const Task* t = board_.find(id)) a.task = *t;
            send(a);
        });
    } else if (auto* r = std::get_if<TaskReply>(&frame.message)) {
        auto it = requests_.find(r->request);
        if (it == requests_.end() || it->second->conn != conn_id) return;  // late: timed out
        std::unique_ptr<Request> req = take_request(r->request);
        Peer& p = peers_[req->peer];
        p.reply_load_milli = r->load_milli;
        p.reply_at = agent_.now();
        p.capacity = r->capacity;
        req->done(std::move(*r));
    }
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
    for (auto& [name, p] : peers_) {
        if (p.conn != conn) continue;
        p.conn = 0;
        p.connected = false;
        p.backlog.clear();
        p.backlog_bytes = 0;
    }
    std::vector<uint64_t> broken;
    for (const auto& [id, r] : requests_) {
        if (r->conn == conn) broken.push_back(id);
    }
    for (const uint64_t id : broken)
        fail_request(id, Error{"closed", "the connection closed before the answer"});
}

}  // namespace chorus::daemon
