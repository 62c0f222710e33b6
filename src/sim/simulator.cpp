#include "sim/simulator.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <memory>
#include <queue>

#include <fmt/format.h>

#include "core/assert.hpp"
#include "core/coordinator.hpp"
#include "sim/simulation.hpp"

namespace chorus::sim {

Status validate(const Options& o) {
    const auto need = [](bool ok, std::string_view flag, std::string_view what) -> Status {
        if (ok) return Ok{};
        return Error{"bad_flag", fmt::format("{}: {}", flag, what)};
    };
    const Status checks[] = {
        need(o.nodes >= 1 && o.nodes <= 100000, "--nodes", "must lie within [1, 100000]"),
        need(o.duration_s > 0 && o.duration_s <= 86400, "--duration", "must lie within (0, 86400]"),
        need(Config::profile(o.profile).ok(), "--profile", "must be lan, wan or local"),
        need(o.loss >= 0 && o.loss < 1, "--loss", "must lie within [0, 1)"),
        need(o.latency_ms >= 0 && o.latency_ms <= 10000, "--latency-ms",
             "must lie within [0, 10000]"),
        need(o.crash + o.slow < o.nodes || (o.crash == 0 && o.slow == 0), "--crash/--slow",
             "crashed plus slow nodes must leave node 0 and one other untouched"),
        need(o.crash_at_s >= 0, "--crash-at", "must not be negative"),
        need(o.crash_every_s >= 0, "--crash-every", "must not be negative"),
        need(!o.restart_after_s || *o.restart_after_s > 0, "--restart-after", "must be positive"),
        need(o.slow_ms >= 0, "--slow-ms", "must not be negative"),
        need(!o.dead_retain_s || *o.dead_retain_s >= 0, "--dead-retain", "must be 0 or more"),
        need(o.partition_at_s.has_value() == o.heal_at_s.has_value(), "--partition-at/--heal-at",
             "give both or neither"),
        need(!o.partition_at_s || *o.heal_at_s > *o.partition_at_s, "--heal-at",
             "must come after --partition-at"),
        need(o.join_window_s > 0, "--join-window", "must be positive"),
        need(o.tasks_per_s >= 0 && o.tasks_per_s <= 100000, "--tasks-per-s",
             "must lie within [0, 100000]"),
        need(o.task_ms > 0 && o.task_ms <= 600000, "--task-ms", "must lie within (0, 600000]"),
        need(o.replicas >= 1 && o.replicas <= 2, "--replicas", "must be 1 or 2"),
        need(o.min_replicas <= o.replicas, "--min-replicas", "must be 0 (replicas) to replicas"),
        need(o.data_loss <= o.crash, "--data-loss", "must be at most --crash"),
        need(o.commit_ms >= 0 && o.commit_ms <= 10000, "--commit-ms", "must lie within [0, 10000]"),
        need(o.tasks_from_s >= 0, "--tasks-from", "must not be negative"),
        need(o.coordinator_share >= 0 && o.singleton_share >= 0 &&
                 o.coordinator_share + o.singleton_share <= 1,
             "--coordinator-share/--singleton-share", "must be 0 or more, and at most 1 together"),
        need(o.crash == 0 || o.crash_at_s + (o.crash - 1) * o.crash_every_s < o.duration_s,
             "--crash-at/--crash-every", "every crash must come before the end"),
    };
    for (const auto& s : checks) {
        if (!s) return s;
    }
    if (o.tasks_per_s == 0) return Ok{};
    const double until = tasks_until(o);
    const uint32_t least = o.min_replicas != 0 ? o.min_replicas : o.replicas;
    const Status task_checks[] = {
        need(until > o.tasks_from_s, "--tasks-until",
             "must come after --tasks-from (default: 60 s before the end)"),
        need(until <= o.duration_s - 55, "--tasks-until",
             "must come at least 55 s before the end: the final checks need the time"),
        need(o.nodes >= least, "--nodes",
             "must be at least the members a task is acknowledged on (--min-replicas, else "
             "--replicas)"),
        need(o.tasks_per_s * (until - o.tasks_from_s) <= 1e7, "--tasks-per-s",
             "at most 10 million submissions a run"),
    };
    for (const auto& s : task_checks) {
        if (!s) return s;
    }
    return Ok{};
}

std::string to_flags(const Options& o) {
    const Options d;
    std::string f =
        fmt::format("--nodes {} --duration {} --seed {}", o.nodes, o.duration_s, o.seed);
    const auto add = [&](bool differs, std::string text) {
        if (differs) f += " " + text;
    };
    add(o.profile != d.profile, fmt::format("--profile {}", o.profile));
    add(o.loss != d.loss, fmt::format("--loss {}", o.loss));
    add(o.latency_ms != d.latency_ms, fmt::format("--latency-ms {}", o.latency_ms));
    add(o.crash > 0, fmt::format("--crash {} --crash-at {}", o.crash, o.crash_at_s));
    add(o.crash_every_s != d.crash_every_s, fmt::format("--crash-every {}", o.crash_every_s));
    add(o.restart_after_s.has_value(),
        fmt::format("--restart-after {}", o.restart_after_s.value_or(0)));
    add(o.data_loss != d.data_loss, fmt::format("--data-loss {}", o.data_loss));
    add(o.slow > 0, fmt::format("--slow {} --slow-ms {}", o.slow, o.slow_ms));
    add(!o.lifeguard, "--no-lifeguard");
    add(o.partition_at_s.has_value(),
        fmt::format("--partition-at {} --heal-at {}", o.partition_at_s.value_or(0),
                    o.heal_at_s.value_or(0)));
    add(o.join_window_s != d.join_window_s, fmt::format("--join-window {}", o.join_window_s));
    add(o.dead_retain_s.has_value(), fmt::format("--dead-retain {}", o.dead_retain_s.value_or(0)));
    if (o.tasks_per_s > 0) {
        f += fmt::format(" --tasks-per-s {} --replicas {}", o.tasks_per_s, o.replicas);
        add(o.task_ms != d.task_ms, fmt::format("--task-ms {}", o.task_ms));
        add(o.min_replicas != d.min_replicas, fmt::format("--min-replicas {}", o.min_replicas));
        add(o.commit_ms != d.commit_ms, fmt::format("--commit-ms {}", o.commit_ms));
        add(o.tasks_from_s != d.tasks_from_s, fmt::format("--tasks-from {}", o.tasks_from_s));
        add(o.tasks_until_s.has_value(), fmt::format("--tasks-until {}", tasks_until(o)));
        add(o.coordinator_share != 0, fmt::format("--coordinator-share {}", o.coordinator_share));
        add(o.singleton_share != 0, fmt::format("--singleton-share {}", o.singleton_share));
    }
    return f;
}

std::string node_name(uint32_t i) {
    return fmt::format("n{}", i);
}

std::optional<uint32_t> node_index(std::string_view name) {
    if (name.size() < 2 || name[0] != 'n') return std::nullopt;
    uint32_t i = 0;
    auto [p, ec] = std::from_chars(name.data() + 1, name.data() + name.size(), i);
    if (ec != std::errc() || p != name.data() + name.size()) return std::nullopt;
    return i;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double peak_rss_mb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

void Simulation::violation(std::string what) {
    if (report_.violations.size() < 100) report_.violations.push_back(std::move(what));
}

bool Simulation::in_partition_window(Time now) const {
    if (!o_.partition_at_s) return false;
    // Suspicions raised just before the heal can still run out just after it.
    const Duration grace = scale(suspicion_min(config_, o_.nodes), config_.suspicion_max_mult) +
                           2 * config_.probe_interval;
    return now >= at(*o_.partition_at_s) && now <= at(*o_.heal_at_s) + grace;
}

void Simulation::set_sees_alive(uint32_t i, uint32_t value) {
    Slot& s = nodes_[i];
    const bool was_full = s.up && s.sees_alive == live_;
    s.sees_alive = value;
    const bool full = s.up && s.sees_alive == live_;
    if (was_full != full) full ? ++full_views_ : --full_views_;
}

// Recomputes the convergence counters from the nodes' tables: needed whenever the set of live
// nodes changes (a crash or restart), which is rare, so O(N²) is fine there.
void Simulation::recount(Time now) {
    live_ = 0;
    for (const Slot& s : nodes_)
        live_ += s.up ? 1 : 0;
    full_views_ = 0;
    for (uint32_t i = 0; i < nodes_.size(); ++i) {
        Slot& s = nodes_[i];
        s.sees_alive = 0;
        if (!s.up) continue;
        s.node->members().for_each([&](const Member& m) {
            const auto j = node_index(m.name.view());
            if (j && nodes_[*j].up && m.state == MemberState::alive) ++s.sees_alive;
        });
        if (s.sees_alive == live_) ++full_views_;
    }
    for (uint32_t c : crashed_) {
        Slot& dead = nodes_[c];
        if (dead.up) continue;
        dead.seen_gone_by = 0;
        for (const Slot& s : nodes_) {
            if (!s.up) continue;
            const Member* m = s.node->members().find(node_name(c));
            if (m == nullptr || is_gone(m->state)) ++dead.seen_gone_by;
        }
        if (!dead.all_seen_gone && dead.seen_gone_by == live_) dead.all_seen_gone = now;
    }
}

// Starts the per-observer detection times of a node that just crashed: every live node that
// holds it alive or suspect will be timed. The others already count as seeing it gone.
void Simulation::watch(uint32_t crashed, Time now) {
    Slot& dead = nodes_[crashed];
    dead.watched_by.assign(nodes_.size(), Slot::Watch{});
    for (uint32_t i = 0; i < nodes_.size(); ++i) {
        if (!nodes_[i].up) continue;
        const Member* m = nodes_[i].node->members().find(node_name(crashed));
        if (m == nullptr || is_gone(m->state)) continue;
        Slot::Watch& w = dead.watched_by[i];
        w.on = true;
        if (m->state != MemberState::alive) w.suspect = now;
    }
}

void Simulation::report_detections() {
    const auto since = [](const std::optional<Time>& t, Time crash) -> std::optional<double> {
        if (!t) return std::nullopt;
        return to_seconds(*t - crash);
    };
    for (uint32_t c : crashed_) {
        const Slot& dead = nodes_[c];
        for (uint32_t i = 0; i < dead.watched_by.size(); ++i) {
            const Slot::Watch& w = dead.watched_by[i];
            if (!w.on) continue;
            report_.detections.push_back(Detection{.crashed_node = c,
                                                   .observer = i,
                                                   .suspect_s = since(w.suspect, dead.crashed_at),
                                                   .dead_s = since(w.gone, dead.crashed_at)});
        }
    }
}

void Simulation::note_convergence(Time now) {
    if (full_views_ != live_) return;
    if (!report_.join_converged_s && live_ == o_.nodes) {
        report_.join_converged_s = to_seconds(now.time_since_epoch());
    }
    if (o_.heal_at_s && !report_.heal_converged_s && now >= at(*o_.heal_at_s)) {
        report_.heal_converged_s = to_seconds(now - at(*o_.heal_at_s));
    }
}

void Simulation::on_member_event(uint32_t observer, const MemberEvent& ev) {
    const auto j = node_index(ev.name.view());
    if (!j || *j >= nodes_.size()) {
        violation(fmt::format("n{} heard of a member '{}' that no node is", observer, ev.name));
        return;
    }
    const Time now = ev.at;
    if (ev.previous && ev.current && ev.incarnation < ev.previous_incarnation) {
        violation(fmt::format("n{}'s view of {} went from incarnation {} to {}", observer, ev.name,
                              ev.previous_incarnation.value, ev.incarnation.value));
    }
    Slot& target = nodes_[*j];
    {
        // Reaped: the observer forgets it, and sees it gone no longer.
        const bool was_gone = ev.previous && is_gone(*ev.previous);
        const bool now_gone = ev.current && is_gone(*ev.current);
        if (!was_gone && now_gone && target.gone_to++ == 0) {
            target.gone_spans.emplace_back(now, Time::max());
        } else if (!was_gone && now_gone) {  // members' times come in no set order
            target.gone_spans.back().first = std::min(target.gone_spans.back().first, now);
        } else if (was_gone && !now_gone && target.gone_to > 0 && --target.gone_to == 0) {
            target.gone_spans.back().second = now;
        }
    }
    const bool was_alive = ev.previous == MemberState::alive;
    const bool is_alive = ev.current == MemberState::alive;
    if (target.up && was_alive != is_alive) {
        set_sees_alive(observer,
                       nodes_[observer].sees_alive + (is_alive ? 1 : 0) - (was_alive ? 1 : 0));
    }
    // Detection of crashed nodes: gone (dead, left or reaped) versus not.
    if (!target.up && target.crashed_ever) {
        const bool was_gone = ev.previous && is_gone(*ev.previous);
        const bool now_gone = !ev.current || is_gone(*ev.current);
        if (was_gone != now_gone && ev.previous) {
            target.seen_gone_by += now_gone ? 1 : static_cast<uint32_t>(-1);
            // Members' times come in no set order here either: the earliest and the latest count.
            if (now_gone) {
                target.first_seen_gone = std::min(target.first_seen_gone.value_or(now), now);
                target.last_seen_gone = std::max(target.last_seen_gone.value_or(now), now);
            }
            if (!target.all_seen_gone && target.seen_gone_by == live_) {
                target.all_seen_gone = target.last_seen_gone.value_or(now);
            }
        }
        if (observer < target.watched_by.size() && target.watched_by[observer].on) {
            Slot::Watch& w = target.watched_by[observer];
            if (ev.previous && ev.current != MemberState::alive)
                w.suspect = std::min(w.suspect.value_or(now), now);
            if (ev.previous && !was_gone && now_gone) w.gone = std::min(w.gone.value_or(now), now);
        }
    }
    // False positives: our own conclusion about a member that never crashed.
    if (ev.origin && target.up && !target.crashed_ever && *j != observer) {
        // Within the partition window (plus a suspicion's grace after the heal) a death is the
        // partition's doing on either side, not a false positive.
        const bool partition_related = in_partition_window(now);
        if (ev.current == MemberState::dead) {
            if (partition_related) {
                ++report_.partition_deaths;
            } else {
                ++report_.false_positives;
                if (!target.slow) ++report_.false_positives_healthy;
            }
        } else if (ev.current == MemberState::suspect && ev.previous == MemberState::alive &&
                   !partition_related) {
            ++report_.false_suspicions;
        }
    }
    note_convergence(now);
}

void Simulation::check_no_live_member_gone() {
    for (uint32_t i = 0; i < nodes_.size(); ++i) {
        if (!nodes_[i].up) continue;
        nodes_[i].node->members().for_each([&](const Member& m) {
            const auto j = node_index(m.name.view());
            if (j && nodes_[*j].up && is_gone(m.state)) {
                violation(
                    fmt::format("n{} still believes live {} is {}", i, m.name, to_string(m.state)));
            }
        });
    }
}

void Simulation::check_self(uint32_t i) {
    const Member& me = nodes_[i].node->self();
    if (me.state != MemberState::alive && !nodes_[i].node->leaving()) {
        violation(fmt::format("n{} believes itself {}", i, to_string(me.state)));
    }
}

void Simulation::drain(uint32_t i, Time now) {
    Slot& s = nodes_[i];
    Outbox& out = s.node->outbox();
    for (OutPacket& p : out.packets) {
        std::vector<uint8_t> bytes = wire::encode(p.packet);
        count_sent(bytes.size(), now);
        // The core packs updates by its size bound; the real encoding must honour it.
        if (bytes.size() > config_.packet_bytes_max) {
            violation(fmt::format("n{} sent a {}-byte datagram, over packet_bytes_max {}", i,
                                  bytes.size(), config_.packet_bytes_max));
        }
        const auto to = node_index(p.to.value.view());
        if (!to || *to >= nodes_.size()) continue;
        if (auto delay = net_.datagram(i, *to)) {
            if (nodes_[*to].slow) *delay += from_seconds(o_.slow_ms / 1000);
            push(Event{now + *delay, 0, Kind::packet, *to, i, 0, std::move(bytes)});
        }
    }
    for (OutPushPull& pp : out.push_pulls) {
        std::vector<uint8_t> bytes = wire::encode(pp.state);
        count_sent(bytes.size(), now);
        const auto to = node_index(pp.to.value.view());
        auto delay = to && *to < nodes_.size() ? net_.stream(i, *to) : std::nullopt;
        if (delay && nodes_[*to].slow) *delay += from_seconds(o_.slow_ms / 1000);
        if (delay) {
            push(Event{now + *delay, 0, Kind::pp_request, *to, i, s.epoch, std::move(bytes)});
        } else {
            // A connection that cannot be made fails after a connect timeout.
            push(Event{now + seconds(1), 0, Kind::pp_failed, i, to.value_or(0), s.epoch, {}});
        }
    }
    for (const MemberEvent& ev : out.events)
        on_member_event(i, ev);
    if (s.tasks) {
        // Moved out first: the task layer's effects may call back into this node.
        std::vector<MemberEvent> events = std::move(out.events);
        out.clear();
        for (const MemberEvent& ev : events)
            task_member_changed(i, ev, now);
    }
    out.clear();
    check_self(i);
    const Time next = s.node->next_deadline();
    if (next < s.wake_at) {
        s.wake_at = next;
        push(Event{next, 0, Kind::wake, i, 0, ++s.wake_token, {}});
    }
}

void Simulation::start_node(uint32_t i, Time now) {
    Slot& s = nodes_[i];
    // As the daemon does, a node starts at the clock's whole seconds: a restart outranks its
    // previous life, and the others see it come back under a new incarnation.
    const auto incarnation = static_cast<uint64_t>(to_seconds(now.time_since_epoch()));
    s.node = std::make_unique<Node>(
        config_, Identity{node_name(i), addr(i), {}, s.tags, Incarnation{incarnation}}, rng_.fork(),
        now);
    s.up = true;
    ++s.epoch;
    s.wake_at = Time::max();
    if (!s.crashed_ever) {
        ++live_;
        // Every existing full view now lacks the newcomer; the newcomer's own view counts
        // itself when its first event comes through drain().
        full_views_ = 0;
        for (Slot& other : nodes_) {
            if (other.up && other.sees_alive == live_) ++full_views_;
        }
    }
    if (i != 0) s.node->join({addr(0)}, now);
    drain(i, now);
    if (tasks_on()) start_tasks(i, now);
    // A restart changes who is live in ways the incremental counters do not follow.
    if (s.crashed_ever) recount(now);
}

void Simulation::crash_node(uint32_t i, Time now) {
    Slot& s = nodes_[i];
    if (!s.up) return;
    s.up = false;
    s.crashed_ever = true;
    ++s.epoch;
    if (s.tasks) crash_tasks(i, now);  // before the Node its TaskNode reads
    // What it saw gone it sees no longer: its view goes with it.
    s.node->members().for_each([&](const Member& m) {
        const auto j = node_index(m.name.view());
        if (!is_gone(m.state) || !j || *j >= nodes_.size()) return;
        Slot& target = nodes_[*j];
        if (target.gone_to > 0 && --target.gone_to == 0) target.gone_spans.back().second = now;
    });
    s.crashes.push_back(now);
    s.node.reset();
    s.crashed_at = now;
    s.first_seen_gone.reset();
    s.last_seen_gone.reset();
    s.all_seen_gone.reset();
    watch(i, now);
    last_fault_ = now;
    recount(now);
}

void Simulation::on_event(const Event& e) {
    const Time now = e.at;
    Slot& s = nodes_[e.node];
    switch (e.kind) {
        case Kind::start:
            start_node(e.node, now);
            break;
        case Kind::crash:
            crash_node(e.node, now);
            break;
        case Kind::restart:
            if (!s.up) {
                start_node(e.node, now);
                last_fault_ = now;
            }
            break;
        case Kind::partition:
            net_.partition(o_.nodes);
            last_fault_ = now;
            break;
        case Kind::heal:
            net_.heal();
            if (tasks_on()) heal_tasks(now);
            last_fault_ = now;
            note_convergence(now);
            break;
        case Kind::wake:
            if (!s.up || e.token != s.wake_token) return;
            s.wake_at = Time::max();
            s.node->tick(now);
            drain(e.node, now);
            break;
        case Kind::packet: {
            if (!s.up) return;
            auto p = wire::decode_packet(e.bytes, limits_);
            if (!p) {
                ++report_.packets_rejected;
                violation(fmt::format("n{} rejected a packet: {}", e.node, p.error().detail));
                return;
            }
            s.node->handle_packet(*p, now);
            drain(e.node, now);
            break;
        }
        case Kind::pp_request: {
            Slot& initiator = nodes_[e.peer];
            if (!s.up) {
                push(Event{now + seconds(1), 0, Kind::pp_failed, e.peer, e.node, e.token, {}});
                return;
            }
            auto req = wire::decode_push_pull(e.bytes, limits_);
            if (!req) {
                ++report_.packets_rejected;
                violation(fmt::format("n{} rejected a push-pull: {}", e.node, req.error().detail));
                return;
            }
            PushPull reply = s.node->handle_push_pull(*req, now);
            drain(e.node, now);
            std::vector<uint8_t> bytes = wire::encode(reply);
            count_sent(bytes.size(), now);
            if (auto delay = net_.stream(e.node, e.peer)) {
                if (initiator.slow) *delay += from_seconds(o_.slow_ms / 1000);
                push(Event{now + *delay, 0, Kind::pp_response, e.peer, e.node, e.token,
                           std::move(bytes)});
            } else {
                push(Event{now + seconds(1), 0, Kind::pp_failed, e.peer, e.node, e.token, {}});
            }
            break;
        }
        case Kind::pp_response: {
            if (!s.up || e.token != s.epoch) return;
            auto resp = wire::decode_push_pull(e.bytes, limits_);
            if (!resp) {
                ++report_.packets_rejected;
                violation(
                    fmt::format("n{} rejected a push-pull reply: {}", e.node, resp.error().detail));
                return;
            }
            s.node->push_pull_done(addr(e.peer), *resp, now);
            drain(e.node, now);
            break;
        }
        case Kind::submit:
        case Kind::task_wake:
        case Kind::task_frame:
        case Kind::link_broken:
        case Kind::committed:
        case Kind::handler_end:
        case Kind::lookups:
            on_task_event(e);
            break;
        case Kind::pp_failed: {
            if (!s.up || e.token != s.epoch) return;
            s.node->push_pull_failed(addr(e.peer), now);
            // The driver owns join retries: a node that has not joined tries its seed again.
            if (!s.node->joined() && e.node != 0) s.node->join({addr(0)}, now);
            drain(e.node, now);
            break;
        }
    }
}

Report Simulation::run() {
    const auto wall_start = std::chrono::steady_clock::now();
    push(Event{Time{}, 0, Kind::start, 0, 0, 0, {}});
    for (uint32_t i = 1; i < o_.nodes; ++i) {
        push(Event{Time{} + Duration(rng_.below(from_seconds(o_.join_window_s).count())),
                   0,
                   Kind::start,
                   i,
                   0,
                   0,
                   {}});
    }
    // Faults pick distinct nodes other than node 0, the join seed.
    std::vector<uint32_t> candidates;
    for (uint32_t i = 1; i < o_.nodes; ++i)
        candidates.push_back(i);
    rng_.shuffle(candidates);
    for (uint32_t k = 0; k < o_.crash; ++k) {
        const uint32_t c = candidates[k];
        crashed_.push_back(c);
        const double when = o_.crash_at_s + k * o_.crash_every_s;
        push(Event{at(when), 0, Kind::crash, c, 0, 0, {}});
        if (o_.restart_after_s) {
            push(Event{at(when + *o_.restart_after_s), 0, Kind::restart, c, 0, 0, {}});
        }
    }
    for (uint32_t k = 0; k < o_.slow; ++k)
        nodes_[candidates[o_.crash + k]].slow = true;
    // With tasks for the coordinator, the first node to crash is the coordinator (the highest
    // priority), so that the crash tests the hand-over to the next.
    if (o_.crash > 0 && o_.coordinator_share + o_.singleton_share > 0)
        nodes_[candidates[0]].tags = {{std::string(kPriorityTag), "1"}};
    if (o_.partition_at_s) {
        push(Event{at(*o_.partition_at_s), 0, Kind::partition, 0, 0, 0, {}});
        push(Event{at(*o_.heal_at_s), 0, Kind::heal, 0, 0, 0, {}});
    }
    if (tasks_on()) schedule_tasks();

    const Time end = at(o_.duration_s);
    steady_from_ = at(o_.duration_s / 2);
    Time next_progress = at(10);
    while (!queue_.empty() && queue_.top().at <= end) {
        Event e = queue_.top();
        queue_.pop();
        if (o_.progress && e.at >= next_progress) {
            fmt::print(stderr,
                       "chorus-sim: t={:.0f}s, {} of {} live nodes see all alive, wall {:.0f}s, "
                       "RSS {:.0f} MB\n",
                       to_seconds(next_progress.time_since_epoch()), full_views_, live_,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start)
                           .count(),
                       peak_rss_mb());
            next_progress += seconds(10);
        }
        now_ = e.at;
        on_event(e);
    }

    // ---- results
    if (tasks_on()) finish_tasks();
    std::vector<double> first, all;
    for (uint32_t c : crashed_) {
        const Slot& s = nodes_[c];
        if (s.first_seen_gone) first.push_back(to_seconds(*s.first_seen_gone - s.crashed_at));
        if (s.all_seen_gone)
            all.push_back(to_seconds(*s.all_seen_gone - s.crashed_at));
        else if (!s.up)
            ++report_.undetected;  // a restarted node is judged by its rejoin
    }
    report_detections();
    if (!first.empty()) report_.detect_first_s = median(first);
    if (!all.empty()) {
        report_.detect_all_s = median(all);
        report_.detect_all_max_s = *std::max_element(all.begin(), all.end());
    }
    report_.converged_at_end = full_views_ == live_ && report_.undetected == 0;
    // Views must have converged if the last fault is long enough ago: enough for suspicion to
    // run its longest course, the news to spread, and a reconnect to heal a partition. Loss and
    // slow nodes never end, so under them suspicions come and go to the last second; under loss
    // we still require that no live node believes another live node gone.
    const Duration settle = scale(suspicion_min(config_, o_.nodes), config_.suspicion_max_mult) +
                            config_.reconnect_interval + seconds(30);
    if (end - last_fault_ >= settle && o_.slow == 0) {
        if (o_.loss == 0 && !report_.converged_at_end) {
            violation(fmt::format(
                "views had not converged {:.0f}s after the last fault ({} of {} live nodes see "
                "all alive, {} crashed nodes undetected)",
                to_seconds(end - last_fault_), full_views_, live_, report_.undetected));
        }
        if (o_.loss > 0) check_no_live_member_gone();
    }
    const double node_seconds = static_cast<double>(o_.nodes) * o_.duration_s;
    report_.msgs_per_node_per_s = static_cast<double>(msgs_) / node_seconds;
    report_.bytes_per_node_per_s = static_cast<double>(bytes_) / node_seconds;
    report_.steady_msgs_per_node_per_s = static_cast<double>(steady_msgs_) / (node_seconds / 2);
    report_.steady_bytes_per_node_per_s = static_cast<double>(steady_bytes_) / (node_seconds / 2);
    for (const Slot& s : nodes_) {
        if (s.up) report_.member_records += s.node->members().size();
    }
    report_.wall_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    report_.peak_rss_mb = peak_rss_mb();
    return report_;
}

Report run(const Options& o) {
    CHORUS_ASSERT(validate(o).ok());
    Simulation sim(o);
    return sim.run();
}

}  // namespace chorus::sim
