#include "core/task_node.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/coordinator.hpp"
#include "core/text.hpp"

namespace chorus {

namespace {

// A query waiting on another node is split into slices shorter than this, so no exchange
// outlives the streams' idle timeout and a vanished holder is noticed within a slice.
constexpr Duration kWaitSlice = seconds(5);
// Owners asked about stale copies per check_copies() round.
constexpr size_t kCopyChecksMax = 256;
// Copies verified with an owner that came back under a new incarnation, per round, and how
// soon the next round comes while some are left.
constexpr size_t kVerifyMax = 1024;
constexpr Duration kVerifyEvery = seconds(1);
// An incarnation this far above the last one seen means a restart, not a refutation (which
// adds one; a refutation missed in between makes two, and costs a needless verification).
constexpr uint64_t kRestartJump = 2;
// What a 503 asks the client to wait before trying again.
constexpr Duration kRetryAfter = seconds(1);
// Queries held waiting for a task to finish, at most; beyond it they answer at once.
constexpr size_t kWaitersMax = 4096;
// Ids of tasks refused at submission remembered (kept in memory only), so that a copy whose
// drop was lost is dropped when its holder asks, not run: a few minutes' worth at full rate.
constexpr size_t kDeclinedMax = 16384;
// The longest an asker may say it waits for a submission's answer (TaskSubmit.budget_ms).
constexpr Duration kBudgetMax = seconds(60);
// How long an owner whose forward timed out stays quiet to the router, unless it says
// something first: long enough for φ to rise and a probe round to suspect it (lan: about a
// second each), short enough that an owner back from a pause gets its keys again soon even
// if this entry has no other reason to hear from it.
constexpr Duration kQuietFor = seconds(5);

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

bool taken(const Result<TaskReply>& r) {
    return r && (r->status == 202 || r->status == 200);
}

}  // namespace

Status TaskNodeConfig::validate() const {
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
    if (forward_timeout <= Duration::zero()) return bad("forward_timeout_ms: must be positive");
    if (forward_timeout_min <= Duration::zero()) {
        return bad("forward_timeout_min_ms: must be positive");
    }
    if (copy_check <= Duration::zero()) return bad("copy_check_ms: must be positive");
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
    if (copy_timeout <= Duration::zero()) return bad("copy_timeout_ms: must be positive");
    if (!(load_threshold > 0) || !std::isfinite(load_threshold)) {
        return bad("load_threshold: must be above 0 (1 is a full node)");
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

// A client's task being placed from this node.
struct TaskNode::Submission {
    explicit Submission(TaskSpec s) : spec(std::move(s)), search(spec.key) {}
    TaskSpec spec;
    uint64_t key_hash = 0;
    Duration wait{};
    Done done;
    uint64_t client = 0;
    Placement search;  // which candidate next, and the answer when none is left
    // Coordinator placement: coordinators that did not answer, and assignments asked for.
    std::set<Name> coordinators_tried;
    size_t assignments = 0;
};

// A lookup of a task placed from any node.
struct TaskNode::Search {
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
    // A member that holds the task pending (accepted, not stored yet), and what to do about
    // it instead of answering 503: a named retry joins the first submission there.
    std::optional<Name> pending_at;
    std::function<void(const Name&)> on_pending;
    // For a named submission: the members that may hold the task (its key's candidates and
    // the members after them, where copies go); silence elsewhere does not hold it up.
    std::optional<std::set<Name>> may_hold;
};

TaskNode::TaskNode(TaskNodeConfig config, Node& node, KeyHash hash, std::set<std::string> handlers,
                   bool journaled, std::optional<Error> journal_error, uint64_t seed, Time now)
    : config_(std::move(config)),
      node_(node),
      hash_(hash),
      handlers_(std::move(handlers)),
      journaled_(journaled && !journal_error),
      journal_error_(std::move(journal_error)),
      board_(config_.limits),
      rng_(seed),
      copies_(CopyLimits{config_.copies_max, config_.copies_bytes_max, config_.limits.results_max,
                         config_.limits.results_bytes_max}),
      tracker_(CopyTrackerConfig{.replicas = config_.task_replicas,
                                 .min_replicas = config_.min_replicas != 0 ? config_.min_replicas
                                                                           : config_.task_replicas,
                                 .copy_timeout = config_.copy_timeout,
                                 .repair_backoff = CopyTrackerConfig{}.repair_backoff},
               [this](const std::string& id, uint64_t) {
                   const Task* t = owned(id);
                   return t != nullptr ? copy_targets(t->spec, now_) : std::vector<Name>{};
               }),
      next_check_(now + config_.copy_check) {
    // Either may go first (a test crashes the Node under its TaskNode; a driver may drop the
    // task layer first): the source finds this node through a weak handle, and says nothing
    // (0) once it is gone.
    node_.set_ring_checksum_source([alive = std::weak_ptr<TaskNode*>(alive_)]() -> uint64_t {
        const auto self = alive.lock();
        return self ? (*self)->ring().checksum() : 0;
    });
}

const Name& TaskNode::self() const {
    return node_.self().name;
}

const Ring& TaskNode::ring() {
    if (!ring_) ring_.emplace(std::vector<Name>{}, config_.vnodes, hash_);
    if (ring_stale_) {
        // Suspect members stay on the ring, as in Ringpop: a suspicion that is refuted moves
        // no keys, and the router passes over a suspect owner meanwhile. The member table and
        // the ring both list names in order, so one walk finds who joined and who went.
        std::vector<Name> live;
        node_.members().for_each([&](const Member& m) {
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
// Time

Time TaskNode::next_deadline() const {
    Time t = std::min(next_check_, tracker_.next_deadline());
    if (!deadlines_.empty()) t = std::min(t, deadlines_.begin()->first);
    if (!waiter_deadlines_.empty()) t = std::min(t, waiter_deadlines_.begin()->first);
    t = std::min(t, next_verify_);
    if (journal_failing_ && !journal_failing_->retried) t = std::min(t, journal_failing_->retry_at);
    if (drained_) t = std::min(t, drain_until_);
    return t;
}

void TaskNode::tick(Time now) {
    now_ = now;
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        const uint64_t id = deadlines_.begin()->second;
        auto r = take_request(id);
        if (!r) continue;
        // Still waiting for its connection: it must not go out later.
        outbox_.abandoned.emplace_back(r->peer, id);
        r->done(Error{"timeout", "no answer in time"});
    }
    while (!waiter_deadlines_.empty() && waiter_deadlines_.begin()->first <= now) {
        const uint64_t serial = waiter_deadlines_.begin()->second;
        take_waiter(serial)(now);
    }
    if (tracker_.next_deadline() <= now) {
        tracker_.tick(now);
        pump(now);
    }
    if (journal_failing_ && journal_failing_->retry_at <= now && !journal_failing_->retried) {
        // Peers may send tasks again; a commit decides, of what is staged or of a probe.
        journal_failing_->retried = true;
        report_load(now);
        outbox_.probe = true;
    }
    if (next_check_ <= now) {
        next_check_ = now + config_.copy_check;
        check_copies(now);
    }
    if (next_verify_ <= now) verify_copies(now);
    check_drained(now);
}

// ---------------------------------------------------------------------------------------------
// The owner's side: the board and the handlers

std::optional<TaskAnswer> TaskNode::validate(TaskSpec& spec) {
    const TaskLimits& l = config_.limits;
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
    if (auto bad = check_where(spec.where)) return bad;
    if (spec.singleton) spec.placement = TaskPlacement::coordinator;  // it follows the coordinator
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
    const uint64_t hash = hash_(spec.key);
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

void TaskNode::accept(TaskSpec spec, Duration budget, Done done, Time now) {
    if (journal_error_) {
        ++stats_.unjournaled;
        done(TaskAnswer::error(503, "journal_unavailable",
                               journal_error_->message + "; this node takes no tasks until then"));
        return;
    }
    if (refusing_tasks(now)) {
        ++stats_.unjournaled;
        done(TaskAnswer::error(
            503, "journal_unavailable",
            fmt::format("the journal's last commit failed ({}); this node takes no tasks until "
                        "one succeeds, and tries again in {} ms",
                        journal_failing_->error.message, ms_of(journal_failing_->retry_at - now))));
        return;
    }
    if (!handlers_.contains(spec.type)) {
        done(TaskAnswer::error(
            422, "unknown_type",
            fmt::format("type: no handler named '{}' on {}", spec.type, self().str())));
        return;
    }
    if (spec.singleton) {
        if (auto no = lacks_quorum()) {
            done(std::move(*no));
            return;
        }
    }
    if (!fits(node_.self().tags(), spec)) {
        // The sender's view of our tags is behind (changed, or draining): it tries another.
        done(TaskAnswer::error(
            503, "no_match",
            fmt::format("{} is draining or does not carry the tags the task asks for", self())));
        return;
    }
    // The same id again: a client's retry gets the task it already has, never a second run;
    // the id with another task is a conflict.
    const auto pending = pending_.find(spec.id);
    const Task* existing = pending != pending_.end() ? &pending->second.task : board_.find(spec.id);
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
    if (!has_room()) {
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
    // The asker's word is bounded: a peer cannot hold a pending task's place for long.
    budget = std::min(budget, kBudgetMax);
    const Duration ours =
        budget > Duration::zero() ? budget - budget / 4 : config_.forward_timeout / 2;
    const std::string id = spec.id;
    const uint64_t key_hash = hash_(spec.key);
    Pending& p = pending_[id];
    p.task.spec = std::move(spec);
    p.task.owner = self();
    p.task.created = now;
    p.done = std::move(done);
    p.committed = !journaled_;
    p.ack_by = now + ours;
    if (journaled_) {
        p.change = stage({JournalChange::Kind::put, id, p.task});
        staged_.emplace_back(p.change, id);
        outbox_.commit = true;
    }
    tracker_.add(id, key_hash, now + ours, now);
    pump(now);
}

uint64_t TaskNode::stage(JournalChange c) {
    if (c.kind != JournalChange::Kind::unstage) ++changes_;
    outbox_.journal.push_back(std::move(c));
    return changes_;
}

void TaskNode::committed(uint64_t upto, const Status& st, Time now) {
    now_ = now;
    // Everything staged up to `upto` is stored now, or failed together.
    std::vector<std::string> settled;
    while (!staged_.empty() && staged_.front().first <= upto) {
        auto [change, id] = std::move(staged_.front());
        staged_.pop_front();
        auto p = pending_.find(id);
        if (p != pending_.end() && p->second.change == change) settled.push_back(std::move(id));
    }
    std::vector<std::function<void(const Status&)>> after;
    while (!after_commit_.empty() && after_commit_.front().first <= upto) {
        after.push_back(std::move(after_commit_.front().second));
        after_commit_.pop_front();
    }
    for (auto& a : after)
        a(st);
    // Only a pending task's own change settles it: an id refused meanwhile (too few copies;
    // its removal is staged) and submitted again has a later change of its own.
    if (!st) {
        journal_failed(st.error(), now);
        // Nothing of this batch is stored: refuse its new tasks (the router tries another
        // owner). Changes to tasks already stored stay staged and are tried again shortly.
        for (const std::string& id : settled)
            stage({JournalChange::Kind::unstage, id, std::nullopt});
        for (const std::string& id : settled) {
            Pending p = std::move(pending_.extract(id).mapped());
            ++stats_.unjournaled;
            // Its copies went out beside the commit: their holders forget them, or would run
            // the refused task if this node died (frames on one link arrive in order, so the
            // drop comes after the copy).
            for (const Name& h : tracker_.forget(id))
                notify(h, TaskCopy{0, p.task, true});
            refuse(id, std::move(p),
                   TaskAnswer::error(503, "journal_unavailable",
                                     st.error().message + "; the task was not accepted"));
        }
        // New tasks wait for the retry (tick), which commits what is staged then.
        if (!staged_.empty()) outbox_.commit = true;
        return;
    }
    // A commit that stored something after the failure ends it (an empty one proves nothing).
    if (journal_failing_ && (upto > journal_failing_->upto || journal_failing_->retried))
        journal_recovered(now);
    for (const std::string& id : settled) {
        pending_.find(id)->second.committed = true;
        admit_if_stored(id, now);
    }
}

void TaskNode::settle(const CopyVerdict& v, Time now) {
    auto it = pending_.find(v.id);
    if (it == pending_.end()) return;  // refused by its journal meanwhile
    if (v.accepted) {
        it->second.replicas = v.replicas;
        admit_if_stored(v.id, now);
        return;
    }
    Pending p = std::move(pending_.extract(it).mapped());
    ++stats_.not_replicated;
    if (journaled_) {  // stored, or being stored: it must not come back after a restart
        stage({JournalChange::Kind::remove, v.id, std::nullopt});
        outbox_.commit = true;
    }
    refuse(v.id, std::move(p),
           TaskAnswer::error(
               503, "not_replicated",
               fmt::format("task {} was not accepted, and does not run: {}{}", v.id, v.why,
                           config_.task_replicas > 1 && node_.members().size() <= 1
                               ? "; a cluster of one member takes tasks with tasks.replicas 1"
                               : "")));
}

void TaskNode::owned_by_another(const std::string& id, std::string why) {
    // The member asked to hold its copy holds another owner's record of the task, or owns it,
    // and that owner is up: the entry gave up on it too soon (a slow answer, or an owner that
    // went silent after its copy went out). Taken here, the task would run twice.
    Pending p = std::move(pending_.extract(id).mapped());
    ++stats_.held_elsewhere;
    withdraw(id, p.task);
    refuse(id, std::move(p), TaskAnswer::error(503, "held_elsewhere", std::move(why)));
}

void TaskNode::withdraw(const std::string& id, const Task& task) {
    for (const Name& h : tracker_.forget(id))
        notify(h, TaskCopy{0, task, true});
    if (journaled_) {
        stage({JournalChange::Kind::remove, id, std::nullopt});
        outbox_.commit = true;
    }
}

void TaskNode::refuse(const std::string& id, Pending p, const TaskAnswer& refusal) {
    decline(id);
    for (const Done& retry : p.retries)
        retry(refusal);
    p.done(refusal);
}

void TaskNode::admit_if_stored(const std::string& id, Time now) {
    auto it = pending_.find(id);
    if (it == pending_.end() || !it->second.committed || !it->second.replicas) return;
    Pending p = std::move(pending_.extract(it).mapped());
    if (now > p.ack_by) {
        // Stored, but after the time its asker was promised (a journal commit that took its
        // time): the asker may have given up on us and placed the task elsewhere, so it is
        // refused as a copy too late would have it refused. It does not run; its record and
        // copies go.
        ++stats_.late;
        withdraw(id, p.task);
        refuse(id, std::move(p),
               TaskAnswer::error(
                   503, "late",
                   fmt::format("task {} was stored {} ms after its answer was due; it was not "
                               "accepted, and does not run",
                               id, ms_of(now - p.ack_by))));
        return;
    }
    // A leaving owner handed over a task this node holds a copy of: now stored as ours (its
    // journal record, under the same id, replaced the copy's), it is no longer a copy, or it
    // would be taken over a second time when the owner is gone.
    if (const Task* r = copies_.find(id); r != nullptr && same_task(r->spec, p.task.spec))
        copies_.erase(id);
    // Its place was held while it was pending: a take-over takes only the room left beside
    // the pending tasks, and admit() does not check the limits again.
    auto t = board_.admit(p.task.spec, p.task.owner, p.task.created);
    CHORUS_ASSERT(t.ok());  // pending ids are unique, and none is on the board yet
    start_ready(now);
    report_load(now);
    TaskAnswer a = accepted(id);
    a.replicas = *p.replicas;
    for (const Done& retry : p.retries)
        retry(a);
    p.done(std::move(a));
}

TaskAnswer TaskNode::accepted(const std::string& id) const {
    TaskAnswer a;
    a.status = 202;
    if (const Task* t = board_.find(id)) a.task = *t;
    return a;
}

void TaskNode::decline(const std::string& id) {
    if (!declined_.insert(id).second) return;
    declined_order_.push_back(id);
    while (declined_order_.size() > kDeclinedMax) {
        declined_.erase(declined_order_.front());
        declined_order_.pop_front();
    }
}

const Task* TaskNode::owned(std::string_view id) const {
    if (auto p = pending_.find(id); p != pending_.end()) return &p->second.task;
    return board_.find(id);
}

bool TaskNode::can_run(const Name& member, const TaskSpec& spec) const {
    if (member == self()) {
        return handlers_.contains(spec.type) && fits(node_.self().tags(), spec);
    }
    const Member* m = node_.members().find(member);
    return m != nullptr && fits(m->tags(), spec);
}

std::vector<Name> TaskNode::preference(const TaskSpec& spec, size_t count) {
    if (spec.singleton) {  // the coordinator's line, not the key's: see runs_here
        return succession(node_.members(), count,
                          [&](const Member& m) { return can_run(m.name, spec); });
    }
    return ring().preference_at(hash_(spec.key), count,
                                [&](const Name& n) { return can_run(n, spec); });
}

bool TaskNode::runs_here(const TaskSpec& spec) {
    if (!spec.singleton) return true;
    if (config_.coordinator_quorum && !quorum_of(node_.members()).held()) return false;
    const auto first = preference(spec, 1);
    return !first.empty() && first.front() == self();
}

std::optional<TaskAnswer> TaskNode::lacks_quorum() {
    if (!config_.coordinator_quorum) return std::nullopt;
    const Quorum q = quorum_of(node_.members());
    if (q.held()) return std::nullopt;
    ++stats_.no_quorum;  // a refusal: every caller answers with it
    return TaskAnswer::error(
        503, "no_quorum",
        fmt::format("{} sees {} of the {} members it counts alive, not a majority: it does not "
                    "coordinate until it does (tasks.coordinator_quorum)",
                    self(), q.alive, q.counted));
}

std::vector<Name> TaskNode::copy_targets(const TaskSpec& spec, Time now) {
    // The key's candidates and a few members beyond, so a copy has somewhere to go when
    // candidates are down; healthy members first, so a copy does not wait out copy_timeout
    // on one that has gone quiet before membership says so. Only members that could run the
    // task: a copy is the task's next owner should this one die.
    std::vector<Name> healthy, quiet;
    for (const Name& n : preference(spec, config_.candidates + config_.task_replicas)) {
        if (n == self()) continue;
        const Member* m = node_.members().find(n);
        if (m == nullptr || m->state != MemberState::alive) continue;
        // A forward to it timed out lately (candidate(): quiet): last, as a high φ is.
        const auto peer = peers_.find(n);
        const bool silent = peer != peers_.end() && now < peer->second.quiet_until;
        (!silent && node_.phi(n, now) < config_.phi_route ? healthy : quiet).push_back(n);
    }
    healthy.insert(healthy.end(), quiet.begin(), quiet.end());
    return healthy;
}

void TaskNode::pump(Time now) {
    // Moved out first: answers that come at once (a failed send) pump again from within.
    CopyOutbox out = std::move(tracker_.outbox());
    tracker_.outbox().clear();
    for (CopySend& send : out.sends) {
        const Task* t = owned(send.id);
        if (t == nullptr) continue;  // settled by an earlier answer of this batch
        // The tracker keeps the time; the request's own deadline only cleans up after it.
        request(
            send.to, TaskCopy{0, *t, false}, send.within * 2,
            [this, id = send.id, to = send.to](Result<TaskReply> r) {
                if (r && r->code == "held_elsewhere" && pending_.contains(id)) {
                    owned_by_another(id, std::move(r->message));
                } else {
                    tracker_.answered(id, to, r && r->status == 200, now_);
                }
                pump(now_);
            },
            now);
    }
    for (const CopyDrop& drop : out.drops) {
        if (const Task* t = owned(drop.id)) notify(drop.to, TaskCopy{0, *t, true});
    }
    for (const CopyVerdict& v : out.verdicts)
        settle(v, now);
}

namespace {
// Whether `a` is further along than `b`: an outcome over a run over a queue, then more runs.
bool further_along(const Task& a, const Task& b) {
    const auto rank = [](const Task& t) {
        const int stage = is_finished(t.state) ? 2 : t.state == TaskState::running ? 1 : 0;
        return std::pair{stage, t.attempts};
    };
    return rank(a) > rank(b);
}
}  // namespace

bool TaskNode::owned_elsewhere(const Task& t) const {
    const auto up = [&](const Name& n) {
        const Member* m = node_.members().find(n);
        return m != nullptr && !is_gone(m->state);
    };
    // This node owns the task too, and `t`'s owner is up: an entry gave up on one of us, which
    // took the task all the same, and placed it on the other too. Unless this node is handing
    // its tasks over (leaving, draining): `t`'s owner is the one it handed the task to.
    if (owned(t.spec.id) != nullptr) return !handing_off_ && t.owner != self() && up(t.owner);
    const Task* held = copies_.find(t.spec.id);
    return held != nullptr && held->owner != t.owner && up(held->owner) && !further_along(t, *held);
}

void TaskNode::keep_copy(Task t, std::function<void(bool stored)> stored, Time now) {
    const std::string id = t.spec.id;
    if (t.owner == self()) {
        stored(true);  // ours already (handed back): a copy adds nothing
        return;
    }
    // Two owners' records of one task: a member took it over from an owner it wrongly
    // declared dead, an entry gave up on a slow or silent owner and placed the task on the
    // next candidate, or a slow owner about to refuse it still sends while the next candidate
    // has accepted it. Each owner drops only its own record (drop_copy), so while the first
    // owner is up another's record is refused unless further along (the later owner's): told
    // "stored", the other owner would count this node and both would run the task. Refused
    // (held_elsewhere), a task of its still pending is refused there (pump); one it acknowledged
    // already has its copy stored elsewhere, as it counts only what holds its own record.
    // A gone owner's record gives way: its task has a new owner (an orphan placed, a task taken
    // over, handed over).
    if (owned_elsewhere(t)) {
        ++stats_.copies_stale;
        stored(false);
        return;
    }
    if (owned(id) != nullptr) {
        stored(true);  // ours, taken over or handed over: a copy adds nothing
        return;
    }
    // A finished record says when it finished; one that does not (hostile, or from an older
    // build) is dated now, so retention and the board can order it.
    if (is_finished(t.state) && !t.finished) t.finished = now;
    // A leaving node keeps no new copies (it is about to go), nor one a failing journal
    // cannot store; the owner tries the next member.
    const bool fresh = copies_.find(id) == nullptr;
    if (journal_error_ || refusing_tasks(now) || (handing_off_ && fresh)) {
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
        if (journaled_) stage({JournalChange::Kind::remove, old, std::nullopt});
    }
    if (!journaled_) {
        stored(true);
        return;
    }
    after_commit_.emplace_back(stage({JournalChange::Kind::put, id, *copies_.find(id)}),
                               [stored = std::move(stored)](const Status& s) { stored(s.ok()); });
    outbox_.commit = true;
}

void TaskNode::member_changed(const MemberEvent& e, Time now) {
    now_ = now;
    ring_stale_ = true;
    line_stale_ = true;
    if (!e.current) peers_.erase(e.name);  // reaped: bounded by the member table
    if (e.name == self() || !e.current) return;
    if (is_gone(*e.current)) {
        promote(e.name, now);
        tracker_.member_gone(e.name, now);  // the copies it held are made again
        pump(now);
        return;
    }
    // Alive again under an incarnation well above the last one, without having been declared
    // dead: it restarted before anyone noticed (a member starts at the clock's seconds, while a
    // refuted suspicion adds one), and a restart may have come back with an empty disk. What
    // it held is copied again (to it, if it is still first in line: a copy it has already is
    // an update); a lost disk would otherwise leave those tasks one loss from gone.
    const bool restarted = e.previous && !is_gone(*e.previous) &&
                           *e.current == MemberState::alive &&
                           e.incarnation.value > e.previous_incarnation.value &&
                           e.incarnation.value - e.previous_incarnation.value >= kRestartJump;
    if (!restarted) return;
    tracker_.member_gone(e.name, now);
    pump(now);
    // And if it owns copies held here, it may have lost those tasks and results: each is
    // verified with it (check_copies), and what it no longer has is taken over here.
    copies_.for_each([&](const Task& t) {
        if (t.owner == e.name) verify_later(t.spec.id, now);
    });
}

void TaskNode::drop_copy(const Task& t) {
    // Only a copy of that owner's: never a task this node took over, nor another owner's.
    const Task* r = copies_.find(t.spec.id);
    if (r == nullptr || r->owner != t.owner) return;
    copies_.erase(t.spec.id);
    ++stats_.dropped;
    if (journaled_) {
        stage({JournalChange::Kind::remove, t.spec.id, std::nullopt});
        outbox_.commit = true;
    }
}

void TaskNode::promote(const Name& gone, Time now) {
    std::vector<std::string> ids;
    copies_.for_each([&](const Task& t) {
        if (t.owner == gone) ids.push_back(t.spec.id);
    });
    take_over(ids, now);
}

bool TaskNode::has_room() const {
    const TaskLimits& l = config_.limits;
    return board_.running() + board_.queued() + pending_.size() < size_t{l.capacity} + l.queue_max;
}

void TaskNode::take_over(const std::vector<std::string>& ids, Time now) {
    std::vector<std::string> taken_here;
    for (const std::string& id : ids) {
        const Task* r = copies_.find(id);
        if (r == nullptr) continue;
        if (owned(id) != nullptr) {  // ours already, pending or on the board: not a second one
            copies_.erase(id);
            continue;
        }
        if (is_finished(r->state)) {
            // A result: this node keeps it for readers now, and has it copied again.
            Task t = *copies_.take(id);
            t.owner = self();
            if (!t.finished) t.finished = now;  // as keep_copy does (a copy restored from disk)
            board_.restore(std::move(t), now);
            record(id);
            taken_here.push_back(id);
            continue;
        }
        if (!has_room() || !runs_here(r->spec)) {
            // Beyond this node's capacity: the copy stays here until room frees up or another
            // candidate of its key takes the task (place_orphans). Never dropped, never run
            // past the limits. A singleton goes to the first of its line, when that is not
            // this node (a member with a higher priority joined since its copy came here).
            orphans_.insert(id);
            continue;
        }
        orphans_.erase(id);
        Task t = *copies_.take(id);
        t.owner = self();
        // A copy is sent before its task starts and hears of it only when it ends: the dead
        // owner may have run it, and `attempts` counts that run as one.
        t.attempts = std::max<uint32_t>(t.attempts, 1);
        t.spec.timeout = std::min(t.spec.timeout, config_.limits.timeout_max);
        ++stats_.promoted;
        board_.restore(std::move(t), now);
        record(id);
        taken_here.push_back(id);
    }
    start_ready(now);
    report_load(now);
    for (const std::string& id : taken_here) {  // new copies elsewhere: its holder was this node
        if (const Task* t = board_.find(id)) tracker_.adopt(id, hash_(t->spec.key), {}, now);
    }
    pump(now);
    place_orphans(now);
}

void TaskNode::place_orphans(Time now) {
    // Each orphan goes to this node if it now has room, else to another alive candidate of its
    // key that takes it (one request at a time per orphan); the copy here is dropped once one
    // did. What nobody takes waits for the next try: a task finishing here, or the copy check.
    std::vector<std::string> local;
    for (const std::string& id : orphans_) {
        if (offering_.contains(id)) continue;
        const Task* r = copies_.find(id);
        if (r == nullptr || is_finished(r->state)) {
            local.push_back(id);  // settled meanwhile: take_over skips it and forgets it
            continue;
        }
        if (has_room() && !handing_off_ && runs_here(r->spec)) {
            local.push_back(id);
            continue;
        }
        const Name dead = r->owner;
        std::vector<Name> others;
        for (const Name& n : preference(r->spec, config_.candidates + 1)) {
            const Member* m = node_.members().find(n);
            if (n != self() && n != dead && m != nullptr && m->state == MemberState::alive)
                others.push_back(n);
        }
        if (others.empty()) continue;
        offering_.insert(id);
        offer_orphan(id, std::move(others), 0, now);
    }
    for (const std::string& id : local)
        orphans_.erase(id);
    if (!local.empty()) take_over(local, now);
}

void TaskNode::offer_orphan(const std::string& id, std::vector<Name> to, size_t next, Time now) {
    const Task* r = copies_.find(id);
    if (next >= to.size() || r == nullptr || !orphans_.contains(id)) {
        offering_.erase(id);
        return;
    }
    const Name peer = to[next];
    request(
        peer, TaskSubmit{0, r->spec, config_.forward_timeout}, config_.forward_timeout,
        [this, id, to = std::move(to), next](Result<TaskReply> reply) mutable {
            if (taken(reply)) {
                offering_.erase(id);
                orphans_.erase(id);
                ++stats_.orphans_placed;
                // Unless the copy here is the new owner's own by now.
                const Task* kept = copies_.find(id);
                if (kept != nullptr && kept->owner != to[next] && copies_.erase(id) && journaled_) {
                    stage({JournalChange::Kind::remove, id, std::nullopt});
                    outbox_.commit = true;
                }
                return;
            }
            offer_orphan(id, std::move(to), next + 1, now_);
        },
        now);
}

void TaskNode::check_copies(Time now) {
    if (!orphans_.empty()) place_orphans(now);
    // Each unfinished copy that was unfinished at the last check too is asked about, at most
    // kCopyChecksMax per round (the rest wait for the next), and only while its owner is
    // alive; a suspect one may be back shortly. A dead owner's copies are taken over by
    // member_changed, but a holder that restarted after the owner died (or joined after it
    // was reaped) hears no such event: once this node is in a cluster, a copy whose owner it
    // holds dead, left or not a member at all is taken over here, a result as a task.
    const bool joined = node_.members().count(MemberState::alive) > 1;
    std::set<std::string, std::less<>> unfinished;
    std::vector<std::pair<std::string, Name>> ask;  // asked after the walk, which they may change
    std::vector<std::string> ownerless;
    copies_.for_each([&](const Task& t) {
        const std::string& id = t.spec.id;
        const Member* m = node_.members().find(t.owner);
        const bool owner_gone = m == nullptr || is_gone(m->state);
        if (is_finished(t.state)) {
            if (owner_gone && joined) ownerless.push_back(id);  // a result only this node keeps
            return;
        }
        unfinished.insert(id);
        if (!unfinished_copies_.contains(id) || ask.size() >= kCopyChecksMax) return;
        if (owner_gone) {
            if (joined) ownerless.push_back(id);
            return;
        }
        if (m->state != MemberState::alive || verify_.contains(id)) return;
        ask.emplace_back(id, t.owner);
    });
    if (!ownerless.empty()) take_over(ownerless, now);
    for (const auto& [id, owner] : ask)
        ask_owner(id, owner, false, now);
    unfinished_copies_ = std::move(unfinished);
}

void TaskNode::verify_copies(Time now) {
    // Copies whose owner may have lost them (it came back under a new incarnation, or this
    // node restarted and cannot tell), finished ones too: each is asked about once its owner
    // is alive, kVerifyMax at a time and never twice at once, in turn from where the last
    // round stopped, until every owner has answered. A copy whose owner is gone is left to
    // check_copies, which takes it over.
    const bool joined = node_.members().count(MemberState::alive) > 1;
    size_t asked = 0;
    auto it = verify_.upper_bound(verify_cursor_);
    for (size_t seen = 0, n = verify_.size(); seen < n && asked < kVerifyMax; ++seen) {
        if (verify_.empty()) break;
        if (it == verify_.end()) it = verify_.begin();
        const Task* t = copies_.find(*it);
        const Member* m = t != nullptr ? node_.members().find(t->owner) : nullptr;
        if (t == nullptr || (joined && (m == nullptr || is_gone(m->state)))) {
            it = verify_.erase(it);
            continue;
        }
        const std::string id = *it++;
        if (m == nullptr || m->state != MemberState::alive || !verifying_.insert(id).second)
            continue;
        verify_cursor_ = id;
        ++asked;
        ask_owner(id, t->owner, true, now);
    }
    next_verify_ = verify_.empty() ? Time::max() : now + kVerifyEvery;
}

void TaskNode::ask_owner(const std::string& id, const Name& owner, bool verification, Time now) {
    request(
        owner, TaskQuery{0, id, false, {}}, config_.forward_timeout,
        [this, id, owner, verification](Result<TaskReply> r) {
            if (verification) verifying_.erase(id);
            const Task* copy = copies_.find(id);
            if (copy == nullptr || copy->owner != owner) {
                verify_.erase(id);  // settled meanwhile
                return;
            }
            if (!r) return;  // no answer: asked again next round
            const CopyCheck verdict = judge_copy(owner, r->status, r->code, r->task);
            // The owner has the task (or said what to do with the copy): verified.
            if (r->status == 200 || verdict != CopyCheck::wait) verify_.erase(id);
            if (is_finished(copy->state) && !verification) return;  // told meanwhile
            switch (verdict) {
                case CopyCheck::update:
                    if (r->task->spec.id != id) return;  // not the task asked about
                    ++stats_.caught_up;
                    keep_copy(
                        std::move(*r->task), [](bool) {}, now_);
                    break;
                case CopyCheck::take_over:
                    take_over({id}, now_);
                    break;
                case CopyCheck::drop:
                    drop_copy(Task(*copy));  // a copy: drop_copy erases it
                    break;
                case CopyCheck::wait:
                    break;
            }
        },
        now);
}

void TaskNode::verify_later(const std::string& id, Time now) {
    verify_.insert(id);
    next_verify_ = std::min(next_verify_, now + kVerifyEvery);
}

void TaskNode::tell_copies(const std::string& id) {
    // The copies learn how the task ended, so the result outlives this node too. The task
    // stays tracked while the board keeps it: a holder lost later is replaced for the result.
    const Task* t = board_.find(id);
    if (t == nullptr) return;
    ++telling_;  // held across the loop: an answer that comes at once does not end the drain
    for (const Name& h : tracker_.holding(id)) {
        if (!handing_off_) {
            notify(h, TaskCopy{0, *t, false});
            continue;
        }
        // Leaving: a holder must have the outcome before it hears of the leave (gossip may
        // overtake this frame), or it takes the task over and runs it again. The drain waits
        // for the holders' answers, up to its deadline (check_drained).
        ++telling_;
        request(
            h, TaskCopy{0, *t, false}, config_.copy_timeout * 2,
            [this](const Result<TaskReply>&) {
                --telling_;
                check_drained(now_);
            },
            now_);
    }
    --telling_;
}

void TaskNode::record(const std::string& id) {
    record_evictions();  // journal or not: the tracker lets go of what the board dropped
    if (!journaled_) return;
    if (const Task* t = board_.find(id)) stage({JournalChange::Kind::put, id, *t});
    outbox_.commit = true;
}

void TaskNode::record_evictions() {
    // Results the retention limits dropped: no longer kept, so no longer copied (each holder's
    // own limits let its copy go).
    for (std::string& id : board_.take_evicted()) {
        tracker_.forget(id);
        if (journaled_) stage({JournalChange::Kind::remove, std::move(id), std::nullopt});
    }
}

void TaskNode::restore(std::vector<Task> tasks, Time now) {
    now_ = now;
    for (Task& t : tasks) {
        ++stats_.recovered;
        if (t.owner != self()) {  // a copy of another node's task
            // Its owner may have lost it while this node was down (a disk lost, and back
            // before anyone here saw it gone): asked once the owner is alive.
            verify_later(t.spec.id, now);
            copies_.restore(std::move(t));
            continue;
        }
        if (!is_finished(t.state)) ++stats_.requeued;
        // Where its copy was is not known after a restart: it is made again (and the holder of
        // the old one takes it as an update), for a result as for a task still to run.
        tracker_.adopt(t.spec.id, hash_(t.spec.key), {}, now);
        board_.restore(std::move(t), now);
    }
    record_evictions();
    start_ready(now);
    report_load(now);
    pump(now);  // the copies adopt() asked for go out now, not at the next input
}

void TaskNode::hand_off(Duration drain, std::function<void(size_t, size_t)> done, Time now) {
    leaving_ = true;
    hand_off_queue(drain, std::move(done), now);
}

void TaskNode::hand_off_queue(Duration drain, std::function<void(size_t, size_t)> done, Time now) {
    now_ = now;
    handing_off_ = true;
    place_orphans(now);  // a dead owner's tasks that waited here for room go to other candidates
    struct Count {
        size_t left = 0, handed = 0, kept = 0;
        std::function<void(size_t, size_t)> done;
    };
    auto count = std::make_shared<Count>();
    // Once the queue is handed over: wait for the running tasks, up to `drain`.
    const Time until = now + drain;
    count->done = [this, until, done = std::move(done)](size_t handed, size_t kept) mutable {
        drain_until_ = until;
        drained_ = [done = std::move(done), handed, kept] { done(handed, kept); };
        check_drained(now_);
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
                const Member* m = node_.members().find(h);
                if (m != nullptr && m->state == MemberState::alive) {
                    to = h;
                    break;
                }
            }
        }
        if (!to) {
            if (auto targets = copy_targets(task.spec, now); !targets.empty()) to = targets.front();
        }
        const auto finish = [this, count, id, task, to](bool handed) {
            if (handed && board_.hand_over(id)) {
                ++count->handed;
                for (const Name& h : tracker_.forget(id)) {
                    if (h != *to) notify(h, TaskCopy{0, task, true});
                }
                if (journaled_) {
                    stage({JournalChange::Kind::remove, id, std::nullopt});
                    outbox_.commit = true;
                }
            } else {
                ++count->kept;
            }
            if (--count->left == 0) {
                report_load(now_);
                count->done(count->handed, count->kept);
            }
        };
        if (!to) {
            finish(false);
            continue;
        }
        request(
            *to, TaskSubmit{0, task.spec, config_.forward_timeout}, config_.forward_timeout,
            [finish](Result<TaskReply> r) { finish(taken(r)); }, now);
    }
}

void TaskNode::drain(bool on, std::function<void(size_t, size_t)> done, Time now) {
    now_ = now;
    if (on) {
        draining_ = true;
        if (handing_off_) {
            // A leave, or an earlier drain, hands the queue over already (and a leave's
            // continuation waits on it).
            done(0, 0);
            return;
        }
        hand_off_queue(Duration::zero(), std::move(done), now);
        return;
    }
    if (draining_ && !leaving_) {
        draining_ = false;
        handing_off_ = false;
        start_ready(now);
        place_orphans(now);
        report_load(now);
    }
    done(0, 0);
}

void TaskNode::check_drained(Time now) {
    if (!drained_ || ((board_.running() > 0 || telling_ > 0) && now < drain_until_)) return;
    drain_until_ = Time::max();
    std::exchange(drained_, nullptr)();
}

void TaskNode::start_ready(Time now) {
    if (handing_off_) return;
    for (std::string& id : board_.start_ready(now)) {
        record(id);
        outbox_.starts.push_back(std::move(id));
    }
}

void TaskNode::finished(const std::string& id, TaskOutcome outcome, Time now) {
    now_ = now;
    board_.finish(id, std::move(outcome), now);
    record(id);
    tell_copies(id);
    wake(id, now);
    start_ready(now);
    report_load(now);
    if (!orphans_.empty()) place_orphans(now);  // a slot is free: an orphan may have room now
    check_drained(now);
}

bool TaskNode::refusing_tasks(Time now) const {
    return journal_failing_ && now < journal_failing_->retry_at;
}

uint32_t TaskNode::reported_load(Time now) const {
    return refusing_tasks(now) ? kLoadRefusing : board_.load_milli();
}

void TaskNode::report_load(Time now) {
    node_.set_load(reported_load(now));
}

void TaskNode::journal_failed(const Error& why, Time now) {
    // Until a commit succeeds again this node refuses tasks and copies, and tells its peers
    // so (kLoadRefusing), so the router places work elsewhere instead of being refused here.
    // After a backoff (1 s, doubling to 30 s) it takes what comes again, and the next commit
    // decides: a success ends the trouble, a failure starts a longer wait.
    const bool first = !journal_failing_;
    if (first) journal_failing_ = JournalTrouble{why, now, now, seconds(1), 0, 0, false};
    JournalTrouble& t = *journal_failing_;
    if (!first) t.backoff = std::min<Duration>(t.backoff * 2, seconds(30));
    t.error = why;
    t.retry_at = now + t.backoff;
    t.retried = false;
    t.upto = changes_;
    ++t.failures;
    report_load(now);
    if (first && on_journal_state) on_journal_state(journal_failing_->error);
}

void TaskNode::journal_recovered(Time now) {
    journal_failing_.reset();
    report_load(now);
    if (on_journal_state) on_journal_state(std::nullopt);
}

TaskAnswer TaskNode::answer_query(const std::string& id, bool cancel, Time now) {
    board_.expire(now);
    record_evictions();
    if (board_.find(id) == nullptr) {
        if (const Task* r = copies_.find(id); r != nullptr && !cancel) {
            TaskAnswer a;  // a copy: as fresh as the owner's last word
            a.task = *r;
            return a;
        }
        if (pending_.contains(id)) {
            // Not acknowledged yet, and not unknown either: a named retry that heard 404 here
            // would place the task a second time, perhaps on another candidate.
            return TaskAnswer::error(
                503, "pending",
                fmt::format("task {} is being stored on its copies; ask again shortly", id));
        }
        if (declined_.contains(id)) {
            return TaskAnswer::error(
                410, "task_declined",
                fmt::format("task {} was refused when it was submitted, and never ran", id));
        }
        return TaskAnswer::error(404, "unknown_task", fmt::format("no task {} here", id));
    }
    if (cancel && board_.cancel(id, now) != TaskBoard::Cancel::already_finished) {
        record(id);
        tell_copies(id);              // or a copy would run the cancelled task if this node died
        outbox_.stops.push_back(id);  // a no-op unless it was running
        wake(id, now);
        report_load(now);
    }
    TaskAnswer a;
    a.task = *board_.find(id);
    return a;
}

// ---------------------------------------------------------------------------------------------
// Clients' waits

void TaskNode::client_gone(uint64_t client) {
    std::vector<uint64_t> serials;
    for (const auto& [serial, w] : waiters_) {
        if (w.client == client) serials.push_back(serial);
    }
    for (const uint64_t s : serials)
        take_waiter(s);  // dropped, not called: nobody is there to hear
}

void TaskNode::wait_local(const std::string& id, Duration wait, std::function<void(Time)> woken,
                          uint64_t client, Time now) {
    const Task* t = board_.find(id);
    if (t == nullptr || is_finished(t->state) || wait <= Duration::zero() ||
        waiters_.size() >= kWaitersMax) {
        woken(now);
        return;
    }
    const uint64_t serial = next_waiter_++;
    Waiter& w = waiters_[serial];
    w.client = client;
    w.task = id;
    w.until = now + wait;
    w.woken = std::move(woken);
    waiter_deadlines_.emplace(w.until, serial);
    waiting_on_.emplace(id, serial);
}

std::function<void(Time)> TaskNode::take_waiter(uint64_t serial) {
    auto it = waiters_.find(serial);
    CHORUS_ASSERT(it != waiters_.end());
    auto [from, to] = waiting_on_.equal_range(it->second.task);
    for (auto i = from; i != to; ++i) {
        if (i->second == serial) {
            waiting_on_.erase(i);
            break;
        }
    }
    waiter_deadlines_.erase({it->second.until, serial});
    auto woken = std::move(it->second.woken);
    waiters_.erase(it);
    return woken;
}

void TaskNode::wake(const std::string& id, Time now) {
    std::vector<uint64_t> serials;
    auto [from, to] = waiting_on_.equal_range(id);
    for (auto i = from; i != to; ++i)
        serials.push_back(i->second);
    for (const uint64_t s : serials)
        take_waiter(s)(now);
}

// ---------------------------------------------------------------------------------------------
// The entry node's side: placing a task, finding one

RouteCandidate TaskNode::candidate(const Name& name, Time now) {
    RouteCandidate c;
    c.name = name;
    if (name == self()) {
        c.alive = !node_.leaving();
        c.accepting = !refusing_tasks(now);
        c.load = board_.load_milli() / 1000.0;
        return c;
    }
    const Member* m = node_.members().find(name);
    if (m == nullptr) return c;
    c.alive = m->state == MemberState::alive;
    c.phi = node_.phi(name, now);
    PeerLoad& p = peers_[name];
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
    const uint32_t capacity = p.capacity != 0 ? p.capacity : config_.limits.capacity;
    c.sent = static_cast<double>(p.sent) / capacity;
    c.quiet = now < p.quiet_until;
    return c;
}

Duration TaskNode::forward_timeout(const Name& owner) {
    // An owner not forwarded to yet is timed as the others are: the next candidate after a
    // silent owner is usually one, and the timeout is also its budget, which bounds how long it
    // waits for its own copy on a member that went silent (copy_timeout, or half its budget).
    const Duration floor = std::min(config_.forward_timeout_min, config_.forward_timeout);
    const Duration initial =
        forward_rtt_.timeout(config_.forward_timeout, floor, config_.forward_timeout);
    return peers_[owner].forward_rtt.timeout(initial, floor, config_.forward_timeout);
}

TaskNode::Lookup TaskNode::lookup(std::string_view key, Time now) {
    Lookup l;
    l.key_hash = hash_(key);
    for (const Name& n : ring().preference_at(l.key_hash, config_.candidates))
        l.candidates.push_back(candidate(n, now));
    l.choice = choose_owner(l.candidates, config_.phi_route, config_.balance_factor);
    return l;
}

void TaskNode::submit(TaskSpec spec, Duration wait, Done done, uint64_t client, Time now) {
    now_ = now;
    const bool named = !spec.id.empty();
    if (auto bad = validate(spec)) {
        done(std::move(*bad));
        return;
    }
    if (!ring().members().empty() && preference(spec, 1).empty()) {  // none alive: place() says
        ++stats_.unavailable;
        done(no_candidate(spec));
        return;
    }
    const uint64_t key_hash = hash_(spec.key);
    auto p = std::make_shared<Submission>(std::move(spec));
    p->key_hash = key_hash;
    p->wait = wait;
    p->done = std::move(done);
    p->client = client;
    if (!named) {
        place(std::move(p), now);
        return;
    }
    // A client that names its task may be retrying: if any member holds the id, answer with
    // that task (or a conflict) instead of placing a second one, which the router might put
    // on another candidate.
    auto s = std::make_shared<Search>();
    s->id = p->spec.id;
    s->key_hash = key_hash;
    if (p->spec.placement == TaskPlacement::ring || p->spec.singleton) {
        const auto near = preference(p->spec, config_.candidates + config_.task_replicas);
        s->may_hold.emplace(near.begin(), near.end());
    }  // else the coordinator may have put it on any member
    // Held there, not stored yet: the retry goes to that member and hears what the first
    // submission hears (accept() keeps the two together).
    s->on_pending = [this, p](const Name& at) { try_owner(p, at, now_); };
    s->done = [this, p](TaskAnswer found) mutable {
        const Time at = now_;
        if (found.status == 404 || found.status == 410) {  // nobody has it: place it
            place(std::move(p), at);
            return;
        }
        if (found.status != 200 || !found.task) {
            // Some member did not answer: it may hold the task, and placing it now could make
            // a second one. The client asks again (Retry-After).
            p->done(std::move(found));
            return;
        }
        if (!same_task(found.task->spec, p->spec)) {
            p->done(conflict(p->spec.id));
            return;
        }
        const Name holder = found.task->owner;
        follow(holder, std::move(found), at + p->wait, true, std::move(p->done), p->client, at);
    };
    search(std::move(s), now);
}

std::optional<TaskAnswer> TaskNode::check_where(Tags& where) const {
    const Config& c = node_.config();
    const auto bad = [](std::string message) {
        return TaskAnswer::error(400, "bad_where", std::move(message));
    };
    if (where.size() > c.tags_max) {
        return bad(
            fmt::format("where: {} constraints, over the limit of {}", where.size(), c.tags_max));
    }
    size_t bytes = 0;
    for (const auto& [k, v] : where) {
        if (k.empty()) return bad("where: a tag's name must not be empty");
        for (const std::string& text : {k, v}) {
            if (const TextProblem p = check_text(text); p != TextProblem::none)
                return bad(fmt::format("where.{}: {}", k, describe(p)));
        }
        bytes += k.size() + v.size();
    }
    if (bytes > c.tag_bytes_max) {
        return bad(
            fmt::format("where: {} bytes of tags, over the limit of {}", bytes, c.tag_bytes_max));
    }
    std::sort(where.begin(), where.end());
    for (size_t i = 1; i < where.size(); ++i) {
        if (where[i].first == where[i - 1].first)
            return bad(fmt::format("where.{}: given twice", where[i].first));
    }
    return std::nullopt;
}

TaskAnswer TaskNode::no_candidate(const TaskSpec& spec) {
    // Why no live member may run it, from the most basic want up: a handler anywhere, then
    // the tags asked for, then members that are not draining.
    std::vector<Name> handled, matching;
    TaskSpec bare;  // the type alone: who has the handler
    bare.type = spec.type;
    for (const Name& n : ring().members()) {
        const Member* m = node_.members().find(n);
        if (m == nullptr) continue;
        Tags tags = m->tags();
        std::erase_if(tags, [](const Tag& t) { return t.first == kDrainTag; });
        if (n == self() ? !handlers_.contains(spec.type) : !fits(tags, bare)) continue;
        handled.push_back(n);
        if (fits(tags, spec)) matching.push_back(n);
    }
    if (handled.empty()) {
        return TaskAnswer::error(
            422, "unknown_type",
            fmt::format("type: no member has a handler named '{}' (this node has {})", spec.type,
                        fmt::join(handlers_, ", ")));
    }
    std::vector<std::string> asked;
    for (const auto& [k, v] : spec.where)
        asked.push_back(fmt::format("{}={}", k, v));
    if (matching.empty()) {
        return TaskAnswer::error(
            503, "no_match",
            fmt::format("no live member with a '{}' handler carries the tags {}", spec.type,
                        fmt::join(asked, ", ")));
    }
    return TaskAnswer::error(
        503, "no_match",
        fmt::format("every member that could run it is draining ({})", fmt::join(matching, ", ")));
}

void TaskNode::place(std::shared_ptr<Submission> p, Time now) {
    if (p->spec.placement == TaskPlacement::coordinator && !p->spec.singleton) {
        ask_coordinator(std::move(p), now);
        return;
    }
    std::vector<RouteCandidate> cs;
    for (const Name& n : preference(p->spec, config_.candidates)) {
        cs.push_back(candidate(n, now));
        // A singleton goes down its line in order, whatever the loads (the router's ties go
        // to the first).
        if (p->spec.singleton) cs.back().load = cs.back().sent = 0;
    }
    auto next = p->search.next(std::move(cs), config_.phi_route, config_.balance_factor);
    if (auto* end = std::get_if<Placement::GiveUp>(&next)) {
        ++stats_.unavailable;
        p->done(TaskAnswer::error(503, std::move(end->code), std::move(end->message)));
        return;
    }
    try_owner(std::move(p), std::get<Placement::Try>(next).owner, now);
}

namespace {
std::vector<Name> tried_list(const Placement& search) {
    const auto& tried = search.tried_owners();
    return {tried.begin(), tried.end()};
}
}  // namespace

void TaskNode::ask_coordinator(std::shared_ptr<Submission> p, Time now) {
    // Each owner named and refused counts, as does each coordinator that did not answer: a
    // submission asks at most `candidates` times, as a leaderless one tries that many owners.
    const auto give_up = [this](const std::shared_ptr<Submission>& sub) {
        ++stats_.unavailable;
        if (sub->search.tried() == 0) {
            std::vector<std::string> asked;
            for (const Name& n : sub->coordinators_tried)
                asked.push_back(n.str());
            sub->done(TaskAnswer::error(
                503, "no_coordinator",
                fmt::format(
                    "no coordinator answered (asked: {}); retry later",
                    asked.empty() ? "none alive" : fmt::format("{}", fmt::join(asked, ", ")))));
            return;
        }
        auto end = std::get<Placement::GiveUp>(sub->search.next({}, config_.phi_route, 0));
        sub->done(TaskAnswer::error(503, std::move(end.code), std::move(end.message)));
    };
    if (p->assignments + p->coordinators_tried.size() >= config_.candidates) return give_up(p);
    // The coordinator of this view, or after one that did not answer, the next in line:
    // the member that takes over when this view learns the first is gone. One that has gone
    // quiet (φ) is passed over at once.
    std::optional<Name> to;
    for (const Name& n : coordinator_line()) {
        if (p->coordinators_tried.contains(n)) continue;
        if (!to) to = n;
        const auto peer = peers_.find(n);
        const bool quiet = peer != peers_.end() && now < peer->second.quiet_until;
        if (n == self() || (!quiet && node_.phi(n, now) < config_.phi_route)) {
            to = n;
            break;
        }
    }
    if (!to) return give_up(p);
    const auto assigned = [this, p, give_up](const Name& owner) {
        ++p->assignments;
        if (p->search.tried(owner)) return give_up(p);  // named again after it refused
        try_owner(p, owner, now_);
    };
    if (*to == self()) {
        auto choice = assign(p->spec, tried_list(p->search), now);
        if (auto* refusal = std::get_if<TaskAnswer>(&choice)) {
            p->done(std::move(*refusal));
            return;
        }
        assigned(std::get<Name>(std::move(choice)));
        return;
    }
    // As long as a forward to it may take (it measures the same link), so a silent
    // coordinator costs what a silent owner does.
    const Duration timeout = forward_timeout(*to);
    TaskSubmit ask{0, p->spec, timeout};
    ask.assign = true;
    ask.avoid = tried_list(p->search);
    request(
        *to, std::move(ask), timeout,
        [this, p, coordinator = *to, assigned](Result<TaskReply> r) mutable {
            if (!r) {  // the task never left this node: asking the next in line runs it once
                if (r.error().code == "timeout") {
                    PeerLoad& peer = peers_[coordinator];
                    peer.forward_rtt.back_off();
                    peer.quiet_until = now_ + kQuietFor;
                }
                p->coordinators_tried.insert(coordinator);
                ++stats_.retries;
                ask_coordinator(std::move(p), now_);
                return;
            }
            if (r->status != 200 || r->assignee.empty()) {
                if (r->status == 200) r->code = "bad_reply";
                p->done(TaskAnswer::error(r->status == 200 ? 503 : r->status, std::move(r->code),
                                          std::move(r->message)));
                return;
            }
            assigned(std::move(r->assignee));
        },
        now);
}

const std::vector<Name>& TaskNode::coordinator_line() {
    // Long enough for a submission that tried `candidates` coordinators already (it asks at
    // most `candidates` times in all); walked once per membership change, not per task.
    if (line_stale_) {
        line_ = succession(node_.members(), 2 * size_t{config_.candidates});
        line_stale_ = false;
    }
    return line_;
}

std::variant<Name, TaskAnswer> TaskNode::assign(const TaskSpec& spec,
                                                const std::vector<Name>& avoid, Time now) {
    if (auto no = lacks_quorum()) return std::move(*no);
    // Every alive member that can run it, as the router sees them: its last load plus what
    // this node assigned it since. The coordinator sees every assignment, so that count is
    // whole, not one entry node's share. A member is passed over when its load as last
    // reported is at the threshold: what was sent since steers the choice, but it may have
    // finished already (short tasks end between two reports), so it refuses nothing.
    //
    // This node's own load it sees at once, its peers' only as often as they report it
    // (every gossip_interval at most) plus what it sent them since: with short tasks it would
    // look idler than they are and take more than its share. So it looks at itself as they
    // do: a snapshot taken as often, plus what it assigned itself since.
    if (now - self_seen_.at >= node_.config().gossip_interval) {
        self_seen_ = {board_.load_milli() / 1000.0, now, 0};
    }
    std::vector<RouteCandidate> cs;
    size_t over = 0;
    node_.members().for_each([&](const Member& m) {
        if (m.state != MemberState::alive || !can_run(m.name, spec)) return;
        if (std::find(avoid.begin(), avoid.end(), m.name) != avoid.end()) return;
        RouteCandidate& c = cs.emplace_back(candidate(m.name, now));
        if (m.name == self() && c.accepting) {
            c.load = self_seen_.load;
            c.sent = static_cast<double>(self_seen_.sent) / config_.limits.capacity;
        }
        if (c.load >= config_.load_threshold) {
            c.alive = false;
            ++over;
        }
    });
    if (cs.empty() && !avoid.empty()) {
        return TaskAnswer::error(503, "all_refused",
                                 "every member that can run the task was tried for it and "
                                 "refused or did not answer; retry later");
    }
    if (cs.empty()) return no_candidate(spec);
    // Ties (an idle cluster) go round the members rather than to the lowest name: the router
    // takes the first of equals, and the list starts one further on each time.
    std::rotate(cs.begin(), cs.begin() + static_cast<ptrdiff_t>(stats_.assigned % cs.size()),
                cs.end());
    const auto choice = choose_owner(cs, config_.phi_route, 0);
    if (!choice) {
        ++stats_.overloaded;
        return TaskAnswer::error(
            503, "overloaded",
            fmt::format("no available node: the {} members that can run it are all at or above "
                        "the load threshold of {} (tasks.load_threshold)",
                        over, config_.load_threshold));
    }
    const Name& owner = cs[*choice].name;
    ++(owner == self() ? self_seen_.sent : peers_[owner].sent);
    ++stats_.assigned;
    return owner;
}

std::optional<TaskAnswer> TaskNode::held_elsewhere(const TaskSpec& spec, const Name& from) {
    // Its copy is here, and its owner is up: the node placing it gave up on that owner too
    // soon (slow, or the answer late) and tries the next candidate, this one. Taken here, the
    // task would have two owners and run twice; nor is it acknowledged because a copy exists
    // (its owner may yet refuse it). The entry answers its client 503. (From the copy's owner
    // itself it is a hand-off, and this node takes the task.)
    const Task* held = copies_.find(spec.id);
    if (held == nullptr || held->owner == from || !same_task(held->spec, spec)) return std::nullopt;
    const Member* owner = node_.members().find(held->owner);
    if (owner == nullptr || is_gone(owner->state)) return std::nullopt;
    ++stats_.held_elsewhere;
    return TaskAnswer::error(
        503, "held_elsewhere",
        fmt::format("task {} is {}'s, and {} holds its copy; ask again shortly", spec.id,
                    held->owner.str(), self().str()));
}

void TaskNode::try_owner(std::shared_ptr<Submission> p, const Name& owner, Time now) {
    if (owner == self()) {
        if (auto elsewhere = held_elsewhere(p->spec, self())) {
            p->done(std::move(*elsewhere));
            return;
        }
        // The budget a forward would have: a task accepted here waits no longer for its copy
        // on a silent member than one accepted elsewhere (half of it, at most).
        accept(
            p->spec, forward_timeout(self()),
            [this, p, owner](TaskAnswer a) mutable {
                const Time at = now_;
                if (a.code == "held_elsewhere") {  // it has an owner: placed no further
                    p->done(std::move(a));
                    return;
                }
                if (a.status == 503) {
                    p->search.refused(owner, a.code, a.message);
                    ++stats_.retries;
                    place(std::move(p), at);
                    return;
                }
                if (a.status == 202) ++stats_.local;
                follow(owner, std::move(a), at + p->wait, true, std::move(p->done), p->client, at);
            },
            now);
        return;
    }
    ++peers_[owner].sent;
    // The owner hears the timeout as its budget: it answers within three quarters of it or
    // refuses the task (accept), so an answer that would come after we gave up never means a
    // task running there while the next candidate runs it too.
    const Duration timeout = forward_timeout(owner);
    request(
        owner, TaskSubmit{0, p->spec, timeout}, timeout,
        [this, p, owner, sent_at = now](Result<TaskReply> r) mutable {
            const Time at = now_;
            if (r && r->code == "held_elsewhere") {  // it has an owner: placed no further
                p->done(TaskAnswer::error(503, std::move(r->code), std::move(r->message)));
                return;
            }
            if (!r || r->status == 503) {
                if (!r && r.error().code == "timeout") {
                    ++stats_.forward_timeouts;
                    PeerLoad& peer = peers_[owner];
                    peer.forward_rtt.back_off();
                    peer.quiet_until = at + kQuietFor;
                } else if (r && (r->code == "not_replicated" || r->code == "late")) {
                    // Refused for want of time, perhaps: the next budget is longer, or an
                    // owner slower than the floor would refuse every task.
                    peers_[owner].forward_rtt.back_off();
                }
                p->search.refused(owner, r ? r->code : r.error().code,
                                  r ? r->message : r.error().message);
                ++stats_.retries;
                place(std::move(p), at);
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
                peers_[owner].forward_rtt.sample(at - sent_at);
                forward_rtt_.sample(at - sent_at);
                if (on_forwarded) on_forwarded(at - sent_at);
            }
            follow(owner, std::move(a), at + p->wait, true, std::move(p->done), p->client, at);
        },
        now);
}

void TaskNode::follow(const Name& holder, TaskAnswer current, Time deadline, bool submitted,
                      Done done, uint64_t client, Time now) {
    if (client != 0 && client_present && !client_present(client)) return;  // nobody to tell
    const bool ok = current.status == 200 || current.status == 202;
    const bool over = !current.task || is_finished(current.task->state) || now >= deadline;
    if (!ok || over) {
        // A submission answers 202 until its task has finished; a query always 200.
        if (ok)
            current.status =
                !submitted || (current.task && is_finished(current.task->state)) ? 200 : 202;
        done(std::move(current));
        return;
    }
    const std::string id = current.task->spec.id;
    const Duration left = deadline - now;
    if (holder == self()) {
        wait_local(
            id, left,
            [this, holder, current, deadline, submitted, id, done, client](Time at) mutable {
                if (const Task* t = board_.find(id)) current.task = *t;
                // Finished or out of time: either way follow answers now.
                follow(holder, std::move(current), std::min(deadline, at), submitted,
                       std::move(done), client, at);
            },
            client, now);
        return;
    }
    const Duration slice = std::min(left, kWaitSlice);
    request(
        holder, TaskQuery{0, id, false, slice}, slice + config_.forward_timeout,
        [this, holder, current, deadline, submitted, done, client](Result<TaskReply> r) mutable {
            const Time at = now_;
            if (r && r->status == 200 && r->task) {
                current.task = std::move(r->task);
            } else {
                deadline = at;  // the holder is gone or lost the task: say so now
            }
            follow(holder, std::move(current), deadline, submitted, std::move(done), client, at);
        },
        now);
}

void TaskNode::query(const std::string& id, Duration wait, bool cancel, Done done, uint64_t client,
                     Time now) {
    now_ = now;
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
    search(std::move(s), now);
}

void TaskNode::search(std::shared_ptr<Search> s, Time now) {
    std::vector<Name> targets;
    if (!s->second_round) {
        targets = ring().preference_at(s->key_hash, config_.candidates);
    } else {
        node_.members().for_each([&](const Member& m) {
            if (!is_gone(m.state) && !s->asked.contains(m.name)) targets.push_back(m.name);
        });
    }
    if (targets.empty()) {
        if (!s->second_round) {
            s->second_round = true;
            search(std::move(s), now);
            return;
        }
        if (s->pending_at) {
            if (s->on_pending) {
                std::exchange(s->on_pending, nullptr)(*s->pending_at);
            } else {  // it answered, and said so: not "did not answer"
                s->done(TaskAnswer::error(
                    503, "pending",
                    fmt::format("task {} is being stored by {}; ask again shortly", s->id,
                                s->pending_at->str())));
            }
            return;
        }
        if (s->may_hold) {
            std::erase_if(s->silent,
                          [&](const std::string& n) { return !s->may_hold->contains(Name(n)); });
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
        const Time at = now_;
        --s->outstanding;
        if (s->answered) return;
        if (a && a->task && a->task->owner != holder) {
            if (!s->copy) s->copy.emplace(holder, std::move(*a));
            a.reset();
        }
        Name from = holder;
        if (!a && s->outstanding == 0 && s->pending_at && s->on_pending) {
            // A member holds it pending: a copy found elsewhere is of a task not acknowledged
            // yet, which its owner may still refuse. The retry joins it there.
            s->answered = true;
            std::exchange(s->on_pending, nullptr)(*s->pending_at);
            return;
        }
        if (!a && s->outstanding == 0 && s->copy) {
            from = s->copy->first;
            a = std::move(s->copy->second);
        }
        if (a) {
            s->answered = true;
            follow(from, std::move(*a), at + s->wait, false, s->done, s->client, at);
            return;
        }
        if (s->outstanding == 0) {
            s->second_round = true;
            search(s, at);
        }
    };
    for (const Name& t : targets) {
        s->asked.insert(t);
        if (t == self()) {
            TaskAnswer a = answer_query(s->id, s->cancel, now);
            if (a.status != 200 && a.status != 404 && a.status != 410) s->silent.push_back(t.str());
            if (a.code == "pending") s->pending_at = t;
            found(t, a.status == 200 ? std::optional<TaskAnswer>(std::move(a)) : std::nullopt);
            continue;
        }
        ++stats_.queries;
        request(
            t, TaskQuery{0, s->id, s->cancel, {}}, config_.forward_timeout,
            [found, t, s](Result<TaskReply> r) {
                if (!r || r->status != 200 || !r->task) {
                    // A 404 is an answer; no answer, or a refusal, leaves the question open.
                    if (!r || (r->status != 404 && r->status != 410)) s->silent.push_back(t.str());
                    if (r && r->code == "pending") s->pending_at = t;
                    found(t, std::nullopt);
                    return;
                }
                TaskAnswer a;
                a.task = std::move(r->task);
                a.forwarded = true;
                found(t, std::move(a));
            },
            now);
        if (s->answered) return;
    }
}

// ---------------------------------------------------------------------------------------------
// Frames

void TaskNode::notify(const Name& peer, TaskMessage m) {
    std::visit([](auto& x) { x.request = 0; }, m);  // 0: no answer wanted
    outbox_.sends.push_back({peer, std::move(m)});
}

void TaskNode::request(const Name& peer, TaskMessage m, Duration timeout,
                       std::function<void(Result<TaskReply>)> done, Time now) {
    const uint64_t id = next_request_++;
    std::visit([id](auto& x) { x.request = id; }, m);
    Request& r = requests_[id];
    r.peer = peer;
    r.deadline = now + timeout;
    r.done = std::move(done);
    deadlines_.emplace(r.deadline, id);
    outbox_.sends.push_back({peer, std::move(m)});
}

std::optional<TaskNode::Request> TaskNode::take_request(uint64_t id) {
    auto it = requests_.find(id);
    if (it == requests_.end()) return std::nullopt;
    Request r = std::move(it->second);
    requests_.erase(it);
    deadlines_.erase({r.deadline, id});
    return r;
}

void TaskNode::send_failed(uint64_t request, Error why, Time now) {
    now_ = now;
    if (auto r = take_request(request)) r->done(std::move(why));
}

void TaskNode::link_broken(const Name& peer, Time now) {
    now_ = now;
    std::vector<uint64_t> broken;
    for (const auto& [id, r] : requests_) {
        if (r.peer == peer) broken.push_back(id);
    }
    for (const uint64_t id : broken) {
        if (auto r = take_request(id))
            r->done(Error{"closed", "the connection closed before the answer"});
    }
}

void TaskNode::reply(uint64_t link, TaskReply r, Time now) {
    r.load_milli = reported_load(now);
    r.capacity = config_.limits.capacity;
    outbox_.replies.push_back({link, std::move(r)});
}

void TaskNode::on_message(const Name& from, uint64_t link, TaskMessage m, Time now) {
    now_ = now;
    // It speaks: not quiet, even if what it says is a reply we gave up on.
    if (auto q = peers_.find(from); q != peers_.end()) q->second.quiet_until = Time{};
    if (auto* r = std::get_if<TaskReply>(&m)) {
        auto it = requests_.find(r->request);
        if (it == requests_.end() || it->second.peer != from) return;  // late: timed out
        auto req = take_request(r->request);
        PeerLoad& p = peers_[req->peer];
        p.reply_load_milli = r->load_milli;
        p.reply_at = now;
        p.capacity = r->capacity;
        req->done(std::move(*r));
        return;
    }
    on_request(from, link, std::move(m), now);
}

void TaskNode::on_request(const Name& from, uint64_t link, TaskMessage m, Time now) {
    if (auto* submit = std::get_if<TaskSubmit>(&m)) {
        const uint64_t request = submit->request;
        const auto answer = [this, link, request](TaskAnswer a) {
            if (a.status == 202) ++stats_.remote;
            reply(link,
                  TaskReply{request, static_cast<uint16_t>(a.status), a.code, a.message, 0, 0,
                            std::move(a.task), a.replicas},
                  now_);
        };
        if (submit->assign) {
            auto choice = assign(submit->spec, submit->avoid, now);
            if (auto* refusal = std::get_if<TaskAnswer>(&choice)) {
                answer(std::move(*refusal));
            } else {
                TaskReply r{request, 200, "", "", 0, 0, {}, 0};
                r.assignee = std::get<Name>(std::move(choice));
                reply(link, std::move(r), now);
            }
        } else if (task_key_hash(submit->spec.id) != hash_(submit->spec.key)) {
            answer(TaskAnswer::error(400, "bad_id", "the task id does not carry its key's hash"));
        } else if (auto elsewhere = held_elsewhere(submit->spec, from)) {
            answer(std::move(*elsewhere));
        } else {
            submit->spec.timeout = std::min(submit->spec.timeout, config_.limits.timeout_max);
            accept(std::move(submit->spec), submit->budget, answer, now);
        }
    } else if (auto* copy = std::get_if<TaskCopy>(&m)) {
        const uint64_t request = copy->request;
        if (copy->task.owner != from) {
            // Only a task's owner sends its copy, its outcome or its drop: another member's
            // word would plant, overwrite or drop copies of tasks that are not its own.
            ++stats_.copies_not_owner;
            if (request != 0) {
                reply(link,
                      TaskReply{request,
                                403,
                                "not_owner",
                                "a copy comes from its task's owner only",
                                0,
                                0,
                                {},
                                0},
                      now);
            }
            return;
        }
        if (copy->drop) {
            drop_copy(copy->task);
            if (request != 0) reply(link, TaskReply{request, 200, "", "", 0, 0, {}, 0}, now);
            return;
        }
        // Decided before keep_copy, which may change what is held.
        const bool elsewhere = request != 0 && owned_elsewhere(copy->task);
        std::string why =
            elsewhere ? fmt::format("task {} has another owner that is up, whose record {} holds",
                                    copy->task.spec.id, self().str())
                      : std::string(
                            "this node cannot store the copy now (its copies are full, "
                            "its journal fails, or it is leaving)");
        keep_copy(
            std::move(copy->task),
            [this, link, request, elsewhere, why = std::move(why)](bool stored) {
                if (request == 0) return;  // an outcome: the owner waits for no answer
                reply(link,
                      stored ? TaskReply{request, 200, "", "", 0, 0, {}, 0}
                             : TaskReply{request,
                                         503,
                                         elsewhere ? "held_elsewhere" : "copy_refused",
                                         why,
                                         0,
                                         0,
                                         {},
                                         0},
                      now_);
            },
            now);
    } else if (auto* q = std::get_if<TaskQuery>(&m)) {
        TaskAnswer a = answer_query(q->id, q->cancel, now);
        const uint64_t request = q->request;
        const auto send = [this, link, request](const TaskAnswer& x, Time at) {
            reply(link,
                  TaskReply{request, static_cast<uint16_t>(x.status), x.code, x.message, 0, 0,
                            x.task, 0},
                  at);
        };
        if (a.status != 200 || q->wait <= Duration::zero()) {
            send(a, now);
            return;
        }
        const std::string id = q->id;
        wait_local(
            id, std::min(q->wait, kWaitSlice),
            [this, id, a, send](Time at) mutable {
                if (const Task* t = board_.find(id)) a.task = *t;
                send(a, at);
            },
            0, now);
    }
}

}  // namespace chorus
