// The simulator's task workload: every node runs the real TaskNode (core/task_node.hpp) over its
// Node, driven as the daemon drives it, with the daemon's I/O replaced by simulated kinds:
//
// - streams: frames go through the wire codec and arrive in order per pair of nodes, after the
//   network's latency (plus slow_ms to a slow node). A frame to a node that is down breaks the
//   sender's link to it (the connection is refused), and a crash breaks every link to the
//   crashed node after what it sent (its sockets answer RST). Frames across a partition wait,
//   as TCP retransmits them, and arrive after the heal (long after their requests gave up),
//   unless an end of their link crashed meanwhile.
// - the journal: a commit takes commit_ms and covers what was staged when it began. A crash
//   loses what was not committed, and a commit under way lands or not (a coin); a lost disk
//   loses the rest.
// - handlers: a task runs task_ms (±50%) and succeeds.
//
// Clients submit tasks to random live nodes and remember what each was told. At the end, every
// acknowledged task must be held by a live node (unless as many disks were lost at once as the
// promise allows), finished, and held by as many live members as replicas asks; every
// submission to a node still up must have had one answer; and every live node must find a
// sample of the acknowledged tasks, finished, through the real lookup.
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

// A link a reply goes back on: the asker and its life (epoch).
uint64_t link_of(uint32_t node, uint64_t epoch) {
    return (static_cast<uint64_t>(node) << 32) | (epoch & 0xffffffffu);
}
std::pair<uint32_t, uint64_t> of_link(uint64_t link) {
    return {static_cast<uint32_t>(link >> 32), link & 0xffffffffu};
}

}  // namespace

double tasks_until(const Options& o) {
    return o.tasks_until_s.value_or(o.duration_s - 60);
}

void Simulation::schedule_tasks() {
    task_config_.task_replicas = o_.replicas;
    task_config_.min_replicas = o_.min_replicas;
    push(Event{at(o_.tasks_from_s), 0, Kind::submit, 0, 0, 0, {}});
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
    // The commit under way may have reached the disk before the crash, or not.
    if (h.writing_now && rng_.chance(0.5)) {
        for (JournalChange& c : h.writing) {
            if (c.kind == JournalChange::Kind::put) {
                h.disk[c.id] = std::move(*c.task);
            } else {
                h.disk.erase(c.id);
            }
        }
    }
    h.staged.clear();
    h.writing.clear();
    h.writing_now = false;
    h.runs.clear();
    h.wake_at = Time::max();
    ++h.wake_token;  // a wake scheduled for the old life is not for the next one
    const auto lost = std::find(crashed_.begin(), crashed_.begin() + o_.data_loss, i);
    h.disk_lost = lost != crashed_.begin() + o_.data_loss;
    if (h.disk_lost) {
        h.disk.clear();
        disk_losses_s_.push_back(to_seconds(now.time_since_epoch()));
    }
    // Its sockets answer RST: every peer that can reach it sees its connection break, after
    // whatever it had sent on that connection.
    for (uint32_t j = 0; j < nodes_.size(); ++j) {
        if (j == i || !nodes_[j].up || !nodes_[j].tasks) continue;
        if (auto delay = net_.stream(i, j)) {
            const Time at = std::max(now + *delay, last_frame_[{i, j}]);
            push(Event{at, 0, Kind::link_broken, j, i, nodes_[j].epoch, {}});
        }
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
    Event frame{now, 0, Kind::task_frame, to, from, to_epoch, std::move(bytes), nodes_[from].epoch};
    if (!net_.reachable(from, to)) {
        held_[{from, to}].push_back(std::move(frame));  // retransmitted until the heal
        return;
    }
    const Slot& dest = nodes_[to];
    if (!dest.up || dest.epoch != to_epoch) {
        // Refused: the sender's connection to it breaks. A reply to an asker that restarted
        // since has no connection to go on at all.
        if (!std::holds_alternative<TaskReply>(m)) {
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
    deliver(std::move(frame), now);
}

void Simulation::deliver(Event frame, Time now) {
    const uint32_t from = frame.peer, to = frame.node;
    Duration delay = *net_.stream(from, to);
    if (nodes_[to].slow) delay += from_seconds(o_.slow_ms / 1000);
    // A stream delivers in order: never before what the same link carried earlier.
    Time& last = last_frame_[{from, to}];
    frame.at = std::max(now + delay, last);
    last = frame.at;
    push(std::move(frame));
}

void Simulation::heal_tasks(Time now) {
    // What waited on a link across the partition goes now, unless an end crashed meanwhile:
    // a crashed sender's socket is gone with what it held; a crashed receiver answers RST.
    for (auto& [link, frames] : held_) {
        const auto [from, to] = link;
        bool broken = false;
        for (Event& f : frames) {
            if (!nodes_[from].up || nodes_[from].epoch != f.aux) break;
            if (!nodes_[to].up || nodes_[to].epoch != f.token) {
                broken = true;
                continue;
            }
            deliver(std::move(f), now);
        }
        if (broken && nodes_[from].up) {
            push(Event{now + 2 * from_seconds(o_.latency_ms / 1000),
                       0,
                       Kind::link_broken,
                       from,
                       to,
                       nodes_[from].epoch,
                       {}});
        }
    }
    held_.clear();
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
            Starts& st = starts_[id];
            if (st.runs.empty() && st.owners.empty()) {
                const Task* t = h.node->board().find(id);
                st.created = t != nullptr ? t->created : now;
            }
            st.runs.push_back({i, s.epoch, now});
            h.runs[run] = TaskHost::Run{std::move(id), false};
            const Duration d = scale(from_seconds(o_.task_ms / 1000), 0.5 + rng_.unit());
            push(Event{now + d, 0, Kind::handler_end, i, 0, s.epoch, {}, run});
        }
        for (TaskSend& m : out.sends) {
            if (const auto* c = std::get_if<TaskCopy>(&m.message); c != nullptr && !c->drop) {
                // This node owns the task, if only for now: its failure may explain a rerun.
                Starts& st = starts_[c->task.spec.id];
                if (st.runs.empty() && st.owners.empty()) st.created = c->task.created;
                if (std::none_of(st.owners.begin(), st.owners.end(),
                                 [&](const Starts::Run& o) { return o.node == i; }))
                    st.owners.push_back({i, s.epoch, now});
            }
            const auto to = node_index(m.to.view());
            CHORUS_ASSERT(to && *to < nodes_.size());
            send_frame(i, *to, nodes_[*to].epoch, m.message, now);
        }
        for (TaskReplyOut& r : out.replies) {
            const auto [to, epoch] = of_link(r.link);
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
    if (o_.coordinator_share + o_.singleton_share > 0) {  // else no draw: seeds replay as before
        const double which = rng_.unit();
        spec.singleton = which < o_.singleton_share;
        if (!spec.singleton && which < o_.singleton_share + o_.coordinator_share)
            spec.placement = TaskPlacement::coordinator;
    }
    ++report_.tasks_submitted;
    const size_t serial = asked_.size();
    asked_.push_back(Asked{entry, nodes_[entry].epoch, false});
    nodes_[entry].tasks->node->submit(
        std::move(spec), {},
        [this, serial, sent = now](TaskAnswer a) {
            Asked& asked = asked_[serial];
            if (asked.answered) {
                violation(
                    fmt::format("submission {} to n{} was answered twice, the second time "
                                "{} {}",
                                serial, asked.entry, a.status, a.code));
                return;
            }
            asked.answered = true;
            if ((a.status == 202 || a.status == 200) && a.task) {
                acked_.push_back(a.task->spec.id);
                ack_ms_.push_back(to_seconds(now_ - sent) * 1000);
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
        const Duration gap = scale(from_seconds(1 / o_.tasks_per_s), 0.5 + rng_.unit());
        if (now + gap < at(tasks_until(o_))) push(Event{now + gap, 0, Kind::submit, 0, 0, 0, {}});
        return;
    }
    if (e.kind == Kind::lookups) {
        // A sample of the acknowledged tasks, spread over the run, from every live node.
        std::vector<std::string> sample;
        const size_t every = std::max<size_t>(1, acked_.size() / kLookupSample);
        for (size_t k = 0; k < acked_.size(); k += every)
            sample.push_back(acked_[k]);
        for (uint32_t i = 0; i < nodes_.size(); ++i) {
            if (!nodes_[i].up || !nodes_[i].tasks || !nodes_[i].tasks->node) continue;
            for (const std::string& id : sample) {
                const size_t n = lookups_.size();
                lookups_.push_back(Lookup{id, i, false, {}});
                nodes_[i].tasks->node->query(
                    id, {}, false,
                    [this, n](TaskAnswer a) {
                        Lookup& l = lookups_[n];
                        l.answered = true;
                        if (a.status == 200 && a.task && a.task->state == TaskState::succeeded)
                            return;
                        l.wrong = fmt::format("{} {} {}", a.status, a.code,
                                              a.task ? to_string(a.task->state) : "no task");
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
                    if constexpr (kIsTaskMessage<M>) {
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

uint32_t Simulation::disks_lost_at_once() const {
    // A node still down at the end lost its disk as far as the cluster can tell.
    std::vector<double> losses = disk_losses_s_;
    for (const Slot& s : nodes_) {
        if (!s.up && s.crashed_ever && s.tasks && !s.tasks->disk_lost)
            losses.push_back(to_seconds(s.crashed_at.time_since_epoch()));
    }
    // Losses further apart than failure detection, a repair round and some slack are one at
    // a time: the copies the first took are made again before the next.
    const double window =
        to_seconds(scale(suspicion_min(config_, o_.nodes), config_.suspicion_max_mult) +
                   task_config_.copy_timeout) +
        10;
    uint32_t most = 0;
    for (double t : losses) {
        const auto near = std::count_if(losses.begin(), losses.end(),
                                        [&](double u) { return u >= t && u < t + window; });
        most = std::max(most, static_cast<uint32_t>(near));
    }
    return most;
}

bool Simulation::rerun_explained(const Starts& s) const {
    // A task runs again only when a node that owned or ran it crashed, restarted, is slow, or
    // was seen gone by some member during the task's life, or a partition cut the cluster
    // meanwhile: whoever then ran it had a reason.
    const Time last = s.runs.back().at;
    // A partition during its life: an entry cut off from the owner's answer tries another.
    if (o_.partition_at_s && at(*o_.partition_at_s) <= last &&
        (!o_.heal_at_s || at(*o_.heal_at_s) >= s.created)) {
        return true;
    }
    std::vector<Starts::Run> involved = s.runs;
    involved.insert(involved.end(), s.owners.begin(), s.owners.end());
    for (const Starts::Run& r : involved) {
        const Slot& n = nodes_[r.node];
        for (const Time c : n.crashes) {  // it crashed between its part and the last run
            if (c >= r.at && c <= last) return true;
        }
        if (n.slow) return true;  // its answers came late: the node it asked tried another
        for (const auto& [from, to] : n.gone_spans) {
            if (from <= last && to >= s.created) return true;
        }
    }
    return false;
}

void Simulation::finish_tasks() {
    sample_under_replicated();
    report_.tasks_acked = acked_.size();
    uint32_t live = 0;
    for (const Slot& s : nodes_)
        live += s.up && s.tasks && s.tasks->node ? 1 : 0;
    // Every acknowledged task, counted by the members that hold it (its owner, or a copy).
    const uint32_t wanted = std::min(o_.replicas, live);
    std::set<std::string, std::less<>> lost;
    for (const std::string& id : acked_) {
        uint32_t holders = 0;
        bool finished = false;
        for (const Slot& s : nodes_) {
            if (!s.up || !s.tasks || !s.tasks->node) continue;
            const TaskNode& t = *s.tasks->node;
            const Task* kept[] = {t.board().find(id), t.copies().find(id)};
            if (kept[0] != nullptr || kept[1] != nullptr) ++holders;
            for (const Task* r : kept)
                finished = finished || (r != nullptr && r->state == TaskState::succeeded);
        }
        if (holders == 0) {
            ++report_.tasks_lost;
            lost.insert(id);
        } else {
            if (!finished) ++report_.tasks_unfinished;
            if (holders < wanted) ++report_.tasks_short;
        }
        if (auto it = starts_.find(id); it != starts_.end() && it->second.runs.size() > 1) {
            ++report_.tasks_ran_twice;
            if (!rerun_explained(it->second)) ++report_.tasks_ran_twice_unexplained;
        }
    }
    uint64_t unanswered_live = 0;  // asked of a node that is still up, in the same life
    for (const Asked& a : asked_) {
        if (a.answered) continue;
        ++report_.tasks_unanswered;
        if (nodes_[a.entry].up && nodes_[a.entry].epoch == a.epoch) ++unanswered_live;
    }
    std::vector<std::string> wrong;
    for (const Lookup& l : lookups_) {
        ++report_.lookups;
        if (!l.answered) {
            ++report_.lookups_unanswered;
        } else if (!l.wrong.empty() && !lost.contains(l.id)) {  // a lost task's is expected
            ++report_.lookups_wrong;
            if (wrong.size() < 5) wrong.push_back(fmt::format("n{} {}: {}", l.from, l.id, l.wrong));
        }
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
    report_.disks_lost = disk_losses_s_.size();

    // The promise: an acknowledged task survives while fewer members than it was acknowledged
    // on (min_replicas, or replicas) lose their disks at once.
    const uint32_t gone = disks_lost_at_once();
    const uint32_t least = o_.min_replicas != 0 ? o_.min_replicas : o_.replicas;
    if (gone < least && report_.tasks_lost > 0) {
        violation(
            fmt::format("{} acknowledged tasks are held by no live node ({} disk(s) lost "
                        "at once)",
                        report_.tasks_lost, gone));
    }
    if (report_.tasks_ran_twice_unexplained > 0) {
        violation(
            fmt::format("{} acknowledged tasks ran more than once, and no node that ran them "
                        "crashed or was declared gone meanwhile",
                        report_.tasks_ran_twice_unexplained));
    }
    // The rest holds whatever was lost, once the faults are over: failure detection, a copy
    // check round and repair.
    const double settle = to_seconds(task_config_.copy_check) + 15;
    const double quiet_since =
        std::max(tasks_until(o_), to_seconds(last_fault_.time_since_epoch()) + o_.task_ms / 1000);
    const double quiet = o_.duration_s - kLookupsBeforeEnd_s - quiet_since;
    if (quiet < settle) {
        report_.task_checks_skipped = fmt::format(
            "only {:.0f}s passed between the last fault or submission and the final "
            "lookups, {:.0f}s are needed: finishing, copies and lookups not checked",
            quiet, settle);
        return;
    }
    if (report_.tasks_unfinished > 0) {
        violation(
            fmt::format("{} acknowledged tasks had not finished {:.0f}s after the last "
                        "fault and submission",
                        report_.tasks_unfinished, quiet));
    }
    if (report_.tasks_short > 0 || report_.under_replicated_end > 0) {
        violation(
            fmt::format("{} acknowledged tasks are held by fewer than {} live members, and "
                        "the owners count {} under-replicated",
                        report_.tasks_short, wanted, report_.under_replicated_end));
    }
    if (unanswered_live > 0) {
        violation(fmt::format("{} submissions to nodes that stayed up were never answered",
                              unanswered_live));
    }
    if (report_.lookups_unanswered > 0 || report_.lookups_wrong > 0) {
        violation(
            fmt::format("of {} lookups of acknowledged tasks, {} went unanswered and {} did "
                        "not find them finished: {}",
                        report_.lookups, report_.lookups_unanswered, report_.lookups_wrong,
                        fmt::join(wrong, "; ")));
    }
}

}  // namespace chorus::sim
