// The simulator's task workload: every node runs the real TaskNode (core/task_node.hpp) over its
// Node, driven as the daemon drives it, with the daemon's I/O replaced by simulated kinds:
//
// - streams: frames go through the wire codec and arrive in order per pair of nodes, after the
//   network's latency. A frame to a node that is down breaks the sender's link to it (the
//   connection is refused), and a crash breaks every link to the crashed node (its sockets
//   answer RST); frames across a partition vanish, and their requests time out.
// - the journal: a commit takes commit_ms and covers what was staged when it began. A crash
//   loses what was not committed; a lost disk loses the rest.
// - handlers: a task runs task_ms (±50%) and succeeds.
//
// Clients submit tasks to random live nodes and remember which were acknowledged. At the end
// every acknowledged task must have finished on a live node (unless as many disks were lost as
// tasks have replicas), copies must be whole again, and every live node must find a sample of
// the tasks through the real lookup.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/assert.hpp"
#include "sim/simulation.hpp"
#include "wire/key_hash.hpp"

namespace chorus::sim {

namespace {

// Acknowledged tasks every live node looks up at the end.
constexpr size_t kLookupSample = 50;
// How long before the end the lookups go out: time for every answer to come back.
constexpr double kLookupsBeforeEnd_s = 10;
// What the checks allow the cluster after the last fault or submission: failure detection,
// take-over, a copy check round (30 s) and repair.
constexpr double kSettle_s = 45;
// Losses further apart than this are one at a time: the copies the first took are made again
// before the next (failure detection takes seconds, a repair round one more).
constexpr double kRepair_s = 30;

uint64_t link_of(uint32_t node, uint64_t epoch) {
    return (static_cast<uint64_t>(node) << 32) | (epoch & 0xffffffffu);
}

}  // namespace

void Simulation::schedule_tasks() {
    task_config_.task_replicas = o_.replicas;
    task_config_.min_replicas = o_.min_replicas;
    const double until = o_.tasks_until_s.value_or(o_.duration_s - 60);
    if (until > o_.tasks_from_s) push(Event{at(o_.tasks_from_s), 0, Kind::submit, 0, 0, 0, {}});
    push(Event{at(o_.duration_s - kLookupsBeforeEnd_s), 0, Kind::lookups, 0, 0, 0, {}});
}

void Simulation::start_tasks(uint32_t i, Time now) {
    Slot& s = nodes_[i];
    if (!s.tasks) s.tasks = std::make_unique<TaskHost>();
    TaskHost& h = *s.tasks;
    h.node = std::make_unique<TaskNode>(task_config_, *s.node, wire::key_hash,
                                        std::set<std::string>{"work"}, true, std::nullopt,
                                        rng_.fork(), now);
    h.staged.clear();
    h.changes = 0;
    h.writing.clear();
    h.writing_now = false;
    h.commit_wanted = false;
    h.wake_at = Time::max();
    h.runs.clear();
    std::vector<Task> kept;
    for (const auto& [id, t] : h.disk)
        kept.push_back(t);
    h.node->restore(std::move(kept), now);
    drain_tasks(i, now);
}

void Simulation::crash_tasks(uint32_t i, Time now) {
    TaskHost& h = *nodes_[i].tasks;
    h.node.reset();
    h.staged.clear();
    h.writing.clear();
    h.writing_now = false;
    h.runs.clear();
    h.wake_at = Time::max();
    const auto lost = std::find(crashed_.begin(), crashed_.begin() + o_.data_loss, i);
    if (lost != crashed_.begin() + o_.data_loss) {
        h.disk.clear();
        ++disks_lost_;
    }
    // Its sockets answer RST: every peer that can reach it sees its connection break.
    for (uint32_t j = 0; j < nodes_.size(); ++j) {
        if (j == i || !nodes_[j].up || !nodes_[j].tasks) continue;
        if (auto delay = net_.stream(i, j))
            push(Event{now + *delay, 0, Kind::link_broken, j, i, nodes_[j].epoch, {}});
    }
}

void Simulation::task_member_changed(uint32_t i, const MemberEvent& ev, Time now) {
    TaskHost& h = *nodes_[i].tasks;
    if (!h.node) return;
    h.node->member_changed(ev, now);
    drain_tasks(i, now);
}

void Simulation::send_frame(uint32_t from, uint32_t to, uint64_t to_epoch, const TaskMessage& m,
                            Time now) {
    std::vector<uint8_t> bytes = wire::encode(config_.cluster, Name(node_name(from)), m);
    ++report_.task_frames;
    report_.task_bytes += bytes.size();
    const Slot& dest = nodes_[to];
    if (!dest.up || dest.epoch != to_epoch) {
        // Refused: the sender's connection to it breaks. A reply to an asker that restarted
        // since has no connection to go on at all.
        const bool reply = std::holds_alternative<TaskReply>(m);
        if (!reply && net_.reachable(from, to)) {
            push(Event{now + 2 * from_seconds(o_.latency_ms / 1000),
                       0,
                       Kind::link_broken,
                       from,
                       to,
                       nodes_[from].epoch,
                       {}});
        }
        return;
    }
    auto delay = net_.stream(from, to);
    if (!delay) return;  // across a partition: lost, and its request times out
    // A stream delivers in order: never before what the same link carried earlier.
    Time& last = last_frame_[{from, to}];
    const Time arrive = std::max(now + *delay, last);
    last = arrive;
    push(Event{arrive, 0, Kind::task_frame, to, from, to_epoch, std::move(bytes),
               nodes_[from].epoch});
}

void Simulation::drain_tasks(uint32_t i, Time now) {
    Slot& s = nodes_[i];
    TaskHost& h = *s.tasks;
    if (!h.node) return;
    TaskNode& t = *h.node;
    while (!t.outbox().empty()) {
        TaskOutbox out = std::move(t.outbox());
        t.outbox() = {};
        for (JournalChange& c : out.journal) {
            if (c.kind == JournalChange::Kind::unstage) {
                std::erase_if(h.staged, [&](const JournalChange& x) { return x.id == c.id; });
                continue;
            }
            ++h.changes;
            h.staged.push_back(std::move(c));
        }
        if (out.commit || out.probe) h.commit_wanted = true;
        for (const std::string& id : out.stops) {
            for (auto& [run, r] : h.runs) {
                if (r.id != id || r.stopped) continue;
                r.stopped = true;  // it ends now, cancelled
                push(Event{now, 0, Kind::handler_end, i, 0, s.epoch, {}, run});
            }
        }
        for (std::string& id : out.starts) {
            const uint64_t run = h.next_run++;
            ++starts_[id];
            h.runs[run] = TaskHost::Run{std::move(id), false};
            const Duration d = scale(from_seconds(o_.task_ms / 1000), 0.5 + rng_.unit());
            push(Event{now + d, 0, Kind::handler_end, i, 0, s.epoch, {}, run});
        }
        for (TaskSend& m : out.sends) {
            const auto to = node_index(m.to.view());
            CHORUS_ASSERT(to && *to < nodes_.size());
            send_frame(i, *to, nodes_[*to].epoch, m.message, now);
        }
        for (TaskReplyOut& r : out.replies) {
            const auto to = static_cast<uint32_t>(r.link >> 32);
            const uint64_t epoch = r.link & 0xffffffffu;
            send_frame(i, to, epoch, r.reply, now);
        }
    }
    commit(i, now);
    const Time next = t.next_deadline();
    if (next < h.wake_at) {
        h.wake_at = next;
        push(Event{next, 0, Kind::task_wake, i, 0, ++h.wake_token, {}});
    }
}

void Simulation::commit(uint32_t i, Time now) {
    Slot& s = nodes_[i];
    TaskHost& h = *s.tasks;
    if (h.writing_now || !h.commit_wanted) return;
    h.commit_wanted = false;
    h.writing = std::exchange(h.staged, {});
    h.writing_upto = h.changes;
    h.writing_now = true;
    push(Event{now + from_seconds(o_.commit_ms / 1000), 0, Kind::committed, i, 0, s.epoch, {}});
}

void Simulation::submit_task(Time now) {
    std::vector<uint32_t> live;
    for (uint32_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i].up && nodes_[i].tasks && nodes_[i].tasks->node) live.push_back(i);
    }
    if (live.empty()) return;
    const uint32_t entry = live[rng_.below(live.size())];
    TaskSpec spec;
    spec.key = fmt::format("k{}", rng_.below(1'000'000));
    spec.type = "work";
    ++report_.tasks_submitted;
    nodes_[entry].tasks->node->submit(
        std::move(spec), {},
        [this, entry, sent = now](TaskAnswer a) {
            if ((a.status == 202 || a.status == 200) && a.task) {
                const Time at = now_;
                acked_.emplace(a.task->spec.id, Acked{at, entry});
                ack_ms_.push_back(to_seconds(at - sent) * 1000);
            } else {
                ++report_.tasks_refused;
            }
        },
        0, now);
    drain_tasks(entry, now);
}

void Simulation::sample_under_replicated() {
    uint64_t sum = 0;
    for (const Slot& s : nodes_) {
        if (s.up && s.tasks && s.tasks->node) sum += s.tasks->node->tracker().under_replicated();
    }
    report_.under_replicated_max = std::max(report_.under_replicated_max, sum);
    report_.under_replicated_end = sum;
}

void Simulation::on_task_event(const Event& e) {
    const Time now = e.at;
    Slot& s = nodes_[e.node];
    if (e.kind == Kind::submit) {
        submit_task(now);
        if (now >= next_sample_) {  // once a virtual second: it walks every node's copies
            sample_under_replicated();
            next_sample_ = now + seconds(1);
        }
        const double until = o_.tasks_until_s.value_or(o_.duration_s - 60);
        const Duration gap = scale(from_seconds(1 / o_.tasks_per_s), 0.5 + rng_.unit());
        if (now + gap < at(until)) push(Event{now + gap, 0, Kind::submit, 0, 0, 0, {}});
        return;
    }
    if (e.kind == Kind::lookups) {
        // A sample of the acknowledged tasks, spread over the run, from every live node.
        std::vector<std::string> sample;
        const size_t every = std::max<size_t>(1, acked_.size() / kLookupSample);
        size_t k = 0;
        for (const auto& [id, a] : acked_) {
            if (k++ % every == 0) sample.push_back(id);
        }
        for (uint32_t i = 0; i < nodes_.size(); ++i) {
            if (!nodes_[i].up || !nodes_[i].tasks || !nodes_[i].tasks->node) continue;
            for (const std::string& id : sample) {
                ++report_.lookups;
                nodes_[i].tasks->node->query(
                    id, {}, false,
                    [this, i, id](TaskAnswer a) {
                        if (a.status == 200 && a.task && a.task->state == TaskState::succeeded)
                            return;
                        ++report_.lookups_wrong;
                        if (lookup_errors_.size() < 5) {
                            lookup_errors_.push_back(
                                fmt::format("n{} looked up {}: {} {} {}", i, id, a.status, a.code,
                                            a.task ? to_string(a.task->state) : "no task"));
                        }
                    },
                    0, now);
            }
            drain_tasks(i, now);
        }
        return;
    }
    if (!s.up || !s.tasks || !s.tasks->node) return;
    TaskHost& h = *s.tasks;
    TaskNode& t = *h.node;
    switch (e.kind) {
        case Kind::task_wake:
            if (e.token != h.wake_token) return;
            h.wake_at = Time::max();
            t.tick(now);
            break;
        case Kind::task_frame: {
            if (e.token != s.epoch) return;
            auto f = wire::decode_frame(e.bytes, limits_);
            if (!f) {
                ++report_.packets_rejected;
                violation(fmt::format("n{} rejected a task frame: {}", e.node, f.error().detail));
                return;
            }
            std::visit(
                [&](auto& m) {
                    using M = std::decay_t<decltype(m)>;
                    if constexpr (!std::is_same_v<M, PushPull>) {
                        t.on_message(f->sender, link_of(e.peer, e.aux), std::move(m), now);
                    }
                },
                f->message);
            break;
        }
        case Kind::link_broken:
            if (e.token != s.epoch) return;
            t.link_broken(Name(node_name(e.peer)), now);
            break;
        case Kind::committed: {
            if (e.token != s.epoch || !h.writing_now) return;
            for (JournalChange& c : h.writing) {
                if (c.kind == JournalChange::Kind::put) {
                    h.disk[c.id] = std::move(*c.task);
                } else {
                    h.disk.erase(c.id);
                }
            }
            h.writing.clear();
            h.writing_now = false;
            t.committed(h.writing_upto, Ok{}, now);
            break;
        }
        case Kind::handler_end: {
            if (e.token != s.epoch) return;
            auto run = h.runs.find(e.aux);
            if (run == h.runs.end()) return;
            const TaskHost::Run r = std::move(run->second);
            h.runs.erase(run);
            TaskOutcome o;
            if (r.stopped) {
                o.state = TaskState::cancelled;
            } else {
                o.result = fmt::format(R"({{"by":"{}"}})", node_name(e.node));
            }
            t.finished(r.id, std::move(o), now);
            break;
        }
        default:
            return;
    }
    drain_tasks(e.node, now);
}

void Simulation::finish_tasks() {
    sample_under_replicated();
    report_.tasks_acked = acked_.size();
    report_.tasks_unanswered =
        report_.tasks_submitted - report_.tasks_acked - report_.tasks_refused;
    for (const auto& [id, a] : acked_) {
        bool held = false, finished = false;
        for (const Slot& s : nodes_) {
            if (!s.up || !s.tasks || !s.tasks->node) continue;
            const TaskNode& t = *s.tasks->node;
            for (const Task* r : {t.board().find(id), t.copies().find(id)}) {
                if (r == nullptr) continue;
                held = true;
                finished = finished || r->state == TaskState::succeeded;
            }
        }
        if (!held) {
            ++report_.tasks_lost;
        } else if (!finished) {
            ++report_.tasks_unfinished;
        }
        if (auto it = starts_.find(id); it != starts_.end() && it->second > 1)
            ++report_.tasks_ran_twice;
    }
    if (!ack_ms_.empty()) {
        std::sort(ack_ms_.begin(), ack_ms_.end());
        const auto pct = [&](double p) {
            return ack_ms_[std::min(ack_ms_.size() - 1,
                                    static_cast<size_t>(p * static_cast<double>(ack_ms_.size())))];
        };
        report_.ack_p50_ms = pct(0.5);
        report_.ack_p99_ms = pct(0.99);
        report_.ack_max_ms = ack_ms_.back();
    }
    // The promise: an acknowledged task survives while fewer than `replicas` members lose
    // their disks at once, that is within kRepair_s of each other (after that its copies have
    // been made again). A node that crashed and never came back lost its disk as far as the
    // cluster can tell.
    std::vector<double> losses;
    for (uint32_t k = 0; k < o_.crash; ++k) {
        if (k < o_.data_loss || !o_.restart_after_s)
            losses.push_back(o_.crash_at_s + k * o_.crash_every_s);
    }
    uint32_t gone = 0;
    for (double t : losses) {
        const auto near = std::count_if(losses.begin(), losses.end(),
                                        [&](double u) { return u >= t && u < t + kRepair_s; });
        gone = std::max(gone, static_cast<uint32_t>(near));
    }
    if (gone >= o_.replicas) return;
    if (report_.tasks_lost > 0) {
        violation(
            fmt::format("{} acknowledged tasks are held by no live node ({} disk(s) lost "
                        "at once)",
                        report_.tasks_lost, gone));
    }
    const double until = o_.tasks_until_s.value_or(o_.duration_s - 60);
    const double quiet_since =
        std::max(until, to_seconds(last_fault_.time_since_epoch()) + o_.task_ms / 1000);
    if (o_.duration_s - kLookupsBeforeEnd_s - quiet_since < kSettle_s) return;
    if (report_.tasks_unfinished > 0) {
        violation(
            fmt::format("{} acknowledged tasks had not finished {:.0f}s after the last "
                        "fault and submission",
                        report_.tasks_unfinished, o_.duration_s - quiet_since));
    }
    if (report_.under_replicated_end > 0) {
        violation(fmt::format("{} tasks were still under-replicated at the end",
                              report_.under_replicated_end));
    }
    if (report_.lookups_wrong > 0) {
        violation(fmt::format("{} of {} lookups of finished tasks did not find them finished: {}",
                              report_.lookups_wrong, report_.lookups,
                              fmt::join(lookup_errors_, "; ")));
    }
}

}  // namespace chorus::sim
