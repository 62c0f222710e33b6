#include "core/node.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "core/assert.hpp"
#include "core/suspicion.hpp"

namespace chorus {

namespace {

// How often dead members are reaped and tombstones expire.
constexpr Duration kReapEvery = seconds(5);
// Members told of their tombstone (see merge) per push-pull merged: each costs a push-pull
// (a small one out, the member's view back).
constexpr size_t kTombstoneNoticesMax = 64;

}  // namespace

Node::Node(Config config, Identity self, uint64_t seed, Time now)
    : config_(std::move(config)),
      name_(self.name),
      rng_(seed),
      members_(config_.members_max),
      prober_(members_, self.name),
      awareness_(config_.awareness_max),
      broadcasts_(config_.broadcast_queue_max) {
    CHORUS_ASSERT(config_.validate().ok());
    CHORUS_ASSERT(!name_.empty());
    Member m;
    m.name = self.name;
    m.addr = std::move(self.addr);
    m.http = std::move(self.http);
    std::sort(self.tags.begin(), self.tags.end());
    m.set_tags(self.tags);
    m.incarnation = self.incarnation;
    m.state_since = now;
    Member* me = members_.add(std::move(m));
    CHORUS_ASSERT(me != nullptr);
    broadcasts_.push(alive_of(*me));
    emit(*me, std::nullopt, me->incarnation, now, true);

    // Spread the periodic work over the first period so that nodes started together do not
    // probe and gossip in lockstep.
    const auto jitter = [&](Duration d) { return now + Duration(rng_.below(d.count() + 1)); };
    schedule(jitter(config_.probe_interval), TimerKind::probe);
    schedule(jitter(config_.gossip_interval), TimerKind::gossip);
    push_pull_next_ = config_.push_pull_startup;
    schedule(jitter(push_pull_next_), TimerKind::push_pull);
    schedule(jitter(config_.reconnect_interval), TimerKind::reconnect);
    schedule(now + kReapEvery, TimerKind::reap);
}

const Member& Node::self() const {
    const Member* m = members_.find(name_);
    CHORUS_ASSERT(m != nullptr);
    return *m;
}

Member& Node::self_mut() {
    Member* m = members_.find(name_);
    CHORUS_ASSERT(m != nullptr);
    return *m;
}

PhiParams Node::phi_params() const {
    return PhiParams{config_.phi_window, config_.phi_min_samples, config_.phi_min_std_dev,
                     config_.phi_acceptable_pause, config_.phi_coalesce};
}

double Node::phi(const Name& name, Time now) const {
    const Member* m = members_.find(name);
    if (m == nullptr) return 0.0;
    return m->phi.phi(now, phi_params());
}

std::optional<Duration> Node::round_trip(const Name& name) const {
    const auto it = member_rtts_.find(name);
    return it == member_rtts_.end() ? std::nullopt : std::optional<Duration>(it->second);
}

Duration Node::probe_timeout() const {
    const Duration base = rtt_.timeout(config_.probe_timeout_initial, config_.probe_timeout_min,
                                       config_.probe_timeout_max);
    return config_.lifeguard ? awareness_.scale(base) : base;
}

AliveUpdate Node::alive_of(const Member& m) const {
    return AliveUpdate{m.name, m.addr, m.http, m.incarnation, m.tags(), m.protocol};
}

// ---------------------------------------------------------------------------------------------
// Timers

void Node::schedule(Time at, TimerKind kind, uint32_t seq, Name member) {
    timers_.push(Timer{at, timer_order_++, kind, seq, std::move(member)});
}

Time Node::next_deadline() const {
    CHORUS_ASSERT(!timers_.empty());  // the periodic timers always rearm themselves
    return timers_.top().at;
}

void Node::tick(Time now) {
    while (!timers_.empty() && timers_.top().at <= now) {
        Timer t = timers_.top();
        timers_.pop();
        on_timer(t, now);
    }
}

void Node::on_timer(const Timer& t, Time now) {
    switch (t.kind) {
        case TimerKind::probe:
            probe_tick(now);
            break;
        case TimerKind::probe_timeout:
            probe_timeout_fired(t.seq, now);
            break;
        case TimerKind::relay_timeout:
            relay_timeout_fired(t.seq);
            break;
        case TimerKind::suspicion:
            suspicion_expired(t.member, now);
            break;
        case TimerKind::last_check:
            last_check_expired(t.seq, now);
            break;
        case TimerKind::gossip:
            gossip_tick(now);
            break;
        case TimerKind::push_pull:
            push_pull_tick(now);
            break;
        case TimerKind::reconnect:
            reconnect_tick(now);
            break;
        case TimerKind::reap:
            reap_tick(now);
            break;
    }
}

// ---------------------------------------------------------------------------------------------
// Probing (SWIM §4.1, Lifeguard §4.1)

void Node::check_phi(Time now) {
    const PhiParams params = phi_params();
    prober_.scan(config_.phi_checks_per_period, [&](const Member& m) {
        if (m.state == MemberState::alive && m.phi.phi(now, params) > config_.phi_suspect) {
            prober_.probe_soon(m.name);
        }
    });
}

void Node::probe_tick(Time now) {
    const Duration interval =
        config_.lifeguard ? awareness_.scale(config_.probe_interval) : config_.probe_interval;
    schedule(now + interval, TimerKind::probe);
    if (auto unanswered = prober_.finish()) finish_failed_probe(*unanswered, now);
    if (leaving_) return;
    check_phi(now);
    // Periods on the shared clock, at the configured interval (not the awareness-scaled one),
    // so that every member agrees which shift of the round robin this is (see Prober).
    const auto period = static_cast<uint64_t>(now.time_since_epoch() / config_.probe_interval);
    const auto target = prober_.next(period);
    if (!target) return;
    const Member* m = members_.find(target->name);
    const uint32_t seq = next_seq_++;
    prober_.start(Prober::Probe{seq, m->name, m->incarnation, now});
    ++stats_.probes;
    if (target->early) ++stats_.probes_early;
    // Buddy system (Lifeguard §4.3): a probe of a suspect carries the suspicion, so the target
    // learns of it from the first member that doubts it and can refute at once.
    if (config_.lifeguard && m->state == MemberState::suspect) {
        const Update s = SuspectUpdate{m->name, m->incarnation, name_};
        send(m->addr, Ping{seq, m->name}, {&s, 1});
    } else {
        send(m->addr, Ping{seq, m->name});
    }
    schedule(now + probe_timeout(), TimerKind::probe_timeout, seq);
}

void Node::probe_timeout_fired(uint32_t seq, Time now) {
    (void)now;
    Prober::Probe* probe = prober_.current(seq);
    if (probe == nullptr) return;  // acked already, or a later probe
    const Member* target = members_.find(probe->target);
    if (target == nullptr) return;
    const auto relays = prober_.pick(config_.indirect_checks, probe->target, rng_);
    for (const Member* relay : relays) {
        send(relay->addr, PingReq{seq, target->name, target->addr});
        ++stats_.ping_reqs_sent;
    }
    if (config_.lifeguard) probe->nacks_expected = static_cast<uint32_t>(relays.size());
}

void Node::finish_failed_probe(const Prober::Probe& p, Time now) {
    ++stats_.probes_failed;
    if (config_.lifeguard) {
        // Lifeguard §4.1: relays that answered with a nack are alive and reachable, so the
        // failure is likely the target's. Relays that stayed silent suggest the problem is
        // ours; with no relays to tell, any failure counts against us.
        const int missed = static_cast<int>(p.nacks_expected) - static_cast<int>(p.nacks);
        awareness_.apply(p.nacks_expected > 0 ? std::max(0, missed) : 1);
    }
    const Member* m = members_.find(p.target);
    if (m == nullptr || is_gone(m->state) || m->incarnation != p.incarnation) return;
    if (m->state == MemberState::alive) ++stats_.suspicions;
    apply_suspect(SuspectUpdate{m->name, m->incarnation, name_}, now, true);
}

void Node::suspicion_expired(const Name& name, Time now) {
    // Stale entries are normal: a confirmation moved the deadline and armed a new one, or the
    // member refuted. Only the live deadline counts.
    Member* m = members_.find(name);
    if (m == nullptr || m->state != MemberState::suspect || !m->suspicion ||
        now < m->suspicion->deadline()) {
        return;
    }
    // Our refinement: a suspicion that ran out without the confirmations Lifeguard expects
    // rests on one or two failed probes. Before acting on it, probe the member once more,
    // directly and through relays, carrying the suspicion: a live member answers and
    // re-announces its incarnation, which repairs the case where the epidemic carrying its
    // refutation missed us. A crash that others saw too is confirmed and skips this.
    // When kChecksMax checks are in flight already, the verdict goes ahead without one.
    const uint32_t seq = next_seq_++;
    if (config_.lifeguard && !m->suspicion->checked() &&
        m->suspicion->confirmations() < m->suspicion->expected() &&
        prober_.add_check(seq, Prober::LastCheck{m->name, m->incarnation})) {
        m->suspicion->mark_checked();
        const Update s = SuspectUpdate{m->name, m->incarnation, name_};
        send(m->addr, Ping{seq, m->name}, {&s, 1});
        for (const Member* relay : prober_.pick(config_.indirect_checks, m->name, rng_)) {
            send(relay->addr, PingReq{seq, m->name, m->addr});
        }
        schedule(now + config_.probe_interval, TimerKind::last_check, seq);
        return;
    }
    ++stats_.deaths;
    apply_dead(DeadUpdate{m->name, m->incarnation, name_, false}, now, true);
}

void Node::last_check_expired(uint32_t seq, Time now) {
    const auto c = prober_.take_check(seq);
    if (!c) return;  // answered
    const Member* m = members_.find(c->name);
    if (m == nullptr || m->state != MemberState::suspect || m->incarnation != c->incarnation) {
        return;
    }
    ++stats_.deaths;
    apply_dead(DeadUpdate{m->name, m->incarnation, name_, false}, now, true);
}

void Node::relay_timeout_fired(uint32_t seq) {
    const auto r = prober_.take_relay(seq);
    if (r && config_.lifeguard) send(r->requester, Nack{r->requester_seq});
}

// ---------------------------------------------------------------------------------------------
// Packets

void Node::send(const Address& to, Body body, std::span<const Update> first) {
    Packet p;
    p.cluster = config_.cluster;
    p.sender = name_;
    const Member& me = self();
    p.sender_addr = me.addr;
    p.sender_load_milli = me.load_milli;
    if (ring_checksum_ &&
        (std::holds_alternative<Ping>(body) || std::holds_alternative<Ack>(body))) {
        // Said on every probe and ack for a round after it changes (each member is probed once
        // a round), then on one in kRingChecksumEvery: a changed view spreads at once, and a
        // steady one costs under a byte a packet.
        const auto c = static_cast<uint32_t>(ring_checksum_());  // 0: none to say
        if (c != ring_checksum_said_) {
            ring_checksum_said_ = c;
            ring_checksum_fresh_ = 2 * members_.live();
        }
        const uint32_t seq =
            std::holds_alternative<Ping>(body) ? std::get<Ping>(body).seq : std::get<Ack>(body).seq;
        if (c != 0 && (ring_checksum_fresh_ > 0 || seq % kRingChecksumEvery == 0)) {
            p.sender_ring_checksum = c;
            if (ring_checksum_fresh_ > 0) --ring_checksum_fresh_;
        }
    }
    p.body = std::move(body);
    size_t budget = config_.packet_bytes_max -
                    std::min<size_t>(config_.packet_bytes_max, encoded_size_bound(p));
    for (const Update& u : first) {
        const size_t b = encoded_size_bound(u);
        if (b <= budget) {
            p.updates.push_back(u);
            budget -= b;
        }
    }
    broadcasts_.take(budget, retransmit_limit(config_.retransmit_mult, members_.live()), p.updates);
    outbox_.packets.push_back(OutPacket{to, std::move(p)});
}

void Node::heard_from(const Name& name, Time now) {
    Member* m = members_.find(name);
    if (m == nullptr || name == name_) return;
    m->phi.heartbeat(now, phi_params());
}

void Node::handle_packet(const Packet& p, Time now) {
    if (p.sender == name_) {
        ++stats_.packets_ignored;
        return;
    }
    if (Member* m = members_.find(p.sender)) {
        m->load_milli = p.sender_load_milli;
        m->load_at = now;
        if (p.sender_ring_checksum != 0) m->ring_checksum = p.sender_ring_checksum;
    }
    heard_from(p.sender, now);
    for (const Update& u : p.updates)
        apply(u, now);

    std::visit([&](const auto& body) { on_body(p, body, now); }, p.body);
}

void Node::on_body(const Packet& p, const Ping& ping, Time now) {
    (void)now;
    if (ping.target != name_) {
        ++stats_.packets_ignored;
        return;
    }
    std::vector<Update> first;
    // If the prober doubts us at an incarnation we already outranked, our answer carries the
    // refutation itself rather than leaving it to the epidemic.
    const bool doubted = std::any_of(p.updates.begin(), p.updates.end(), [&](const Update& u) {
        return update_subject(u) == name_ && !std::holds_alternative<AliveUpdate>(u);
    });
    if (doubted && !leaving_) first.emplace_back(std::in_place_type<AliveUpdate>, alive_of(self()));
    // A member we hold dead or left is probing us, so it runs: our answer tells it what we
    // believe, and it refutes. Gone members are neither probed nor gossiped to, so without
    // this a live member that a forged or stale verdict reached everywhere (a `left` above all)
    // might never hear of it, and stay gone in every view for good. It costs nothing while
    // views agree: only a member we think gone gets it, once per probe it sends us.
    if (const Member* m = members_.find(p.sender); m != nullptr && is_gone(m->state)) {
        DeadUpdate verdict{m->name, m->incarnation, name_, m->state == MemberState::left};
        first.emplace_back(std::in_place_type<DeadUpdate>, std::move(verdict));
    } else if (m != nullptr && m->addr != p.sender_addr) {
        // Its name is alive here at another address: it hears where (NameConflict), even when
        // the gossip of that entry has run its course, since gossip goes to that address.
        first.emplace_back(std::in_place_type<AliveUpdate>, alive_of(*m));
    }
    send(p.sender_addr, Ack{ping.seq}, first);
}

void Node::on_body(const Packet& p, const PingReq& req, Time now) {
    const uint32_t seq = next_seq_++;
    if (req.target == name_ ||
        !prober_.add_relay(seq, Prober::Relay{p.sender_addr, req.seq, req.target})) {
        ++stats_.ping_reqs_refused;
        return;
    }
    send(req.target_addr, Ping{seq, req.target});
    schedule(now + probe_timeout(), TimerKind::relay_timeout, seq);
}

void Node::on_body(const Packet& p, const Ack& ack, Time now) {
    ++stats_.acks;
    if (const Prober::Probe* probe = prober_.current(ack.seq)) {
        // A direct ack measures the round trip; a relayed one only proves life.
        if (p.sender == probe->target) {
            rtt_.sample(now - probe->sent);
            if (config_.member_rtts) member_rtts_[p.sender] = now - probe->sent;
        }
        heard_from(probe->target, now);
        if (config_.lifeguard) awareness_.apply(-1);
        prober_.finish();
    } else if (const auto relay = prober_.take_relay(ack.seq)) {
        send(relay->requester, Ack{relay->requester_seq});
    } else if (const auto check = prober_.take_check(ack.seq)) {
        // The suspect is alive. Its refutation normally rides on this ack; if it did not, the
        // proof of life still buys it a fresh suspicion period.
        heard_from(check->name, now);
        Member* m = members_.find(check->name);
        if (m != nullptr && m->state == MemberState::suspect && m->suspicion &&
            m->incarnation == check->incarnation) {
            m->suspicion->restart(now);
            schedule(m->suspicion->deadline(), TimerKind::suspicion, 0, m->name);
        }
    }
}

void Node::on_body(const Packet& p, const Nack& nack, Time now) {
    (void)p;
    ++stats_.nacks;
    Prober::Probe* probe = prober_.current(nack.seq);
    if (probe == nullptr) return;
    ++probe->nacks;
    // Every relay has tried the target within its own timeout and failed, and our direct
    // probe's timeout has passed too: independent paths all say the target does not answer.
    // SWIM waits out the rest of the period here, but a relay's late ack is never forwarded
    // (its wait is over), so only a very late direct ack could still arrive; the suspicion
    // that follows gives the target its full window to refute anyway. Concluding now saves
    // most of a probe interval on every real failure.
    if (probe->nacks >= probe->nacks_expected) {
        if (auto failed = prober_.finish()) finish_failed_probe(*failed, now);
    }
}

// ---------------------------------------------------------------------------------------------
// Applying updates

void Node::emit(const Member& m, std::optional<MemberState> previous, Incarnation previous_inc,
                Time now, bool origin) {
    outbox_.events.push_back(
        MemberEvent{m.name, previous, m.state, m.incarnation, previous_inc, now, origin});
}

void Node::transition(Member& m, MemberState state, Incarnation incarnation,
                      std::optional<Update> gossip, Time now, bool origin) {
    ++stats_.updates_applied;
    const MemberState previous = m.state;
    const Incarnation previous_inc = m.incarnation;
    m.incarnation = incarnation;
    members_.set_state(m, state, now);
    if (gossip) broadcasts_.push(std::move(*gossip));
    emit(m, previous, previous_inc, now, origin);
}

void Node::apply(const Update& u, Time now, bool origin) {
    std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, AliveUpdate>) apply_alive(x, now);
            if constexpr (std::is_same_v<T, SuspectUpdate>) apply_suspect(x, now, origin);
            if constexpr (std::is_same_v<T, DeadUpdate>) apply_dead(x, now, origin);
        },
        u);
}

void Node::refute(Incarnation seen, Time now) {
    Member& me = self_mut();
    const Incarnation before = me.incarnation;
    me.incarnation = std::max(me.incarnation, seen).next();
    ++stats_.refutations;
    // Lifeguard §4.1: being suspected is a hint that we are the slow one.
    if (config_.lifeguard) awareness_.apply(1);
    broadcasts_.push(alive_of(me));
    emit(me, me.state, before, now, true);
}

void Node::set_tags(Tags tags, Time now) {
    std::sort(tags.begin(), tags.end());
    Member& me = self_mut();
    if (tags == me.tags()) return;
    me.set_tags(tags);
    const Incarnation before = me.incarnation;
    me.incarnation = me.incarnation.next();
    broadcasts_.push(alive_of(me));
    emit(me, me.state, before, now, true);
}

bool Node::too_far_ahead(const Name& name, Incarnation incarnation, Time now) {
    uint64_t known = 0;  // a member we have never heard of: anything a restart could claim
    if (const Member* m = members_.find(name)) {
        known = m->incarnation.value;
    } else if (auto tomb = members_.tombstone(name, now)) {
        known = tomb->value;
    }
    const uint64_t limit =
        known > UINT64_MAX - kIncarnationLeadMax ? UINT64_MAX : known + kIncarnationLeadMax;
    if (incarnation.value <= limit) return false;
    ++stats_.claims_refused;
    return true;
}

void Node::about_self(Incarnation accused, Time now) {
    if (leaving_ || too_far_ahead(name_, accused, now)) return;
    if (accused >= self().incarnation) {
        refute(accused, now);
    } else if (!broadcasts_.contains(name_)) {
        // The accuser has not heard our refutation yet; the epidemic that carried it may have
        // missed it. Announce our current incarnation again: the accuser usually probes us
        // (buddy system), so it gets the answer piggybacked on our ack.
        broadcasts_.push(alive_of(self()));
    }
}

void Node::apply_alive(const AliveUpdate& u, Time now, bool gossip) {
    if (too_far_ahead(u.name, u.incarnation, now)) return;
    if (u.name == name_) {
        if (u.addr != self().addr) {
            name_claimed(u, now);
            return;
        }
        // An older life of ours left a higher incarnation behind: outrank it.
        if (!leaving_ && u.incarnation > self().incarnation) refute(u.incarnation, now);
        return;
    }
    Member* m = members_.find(u.name);
    if (m == nullptr) {
        if (auto tomb = members_.tombstone(u.name, now); tomb && u.incarnation <= *tomb) {
            ++stats_.updates_ignored;
            return;
        }
        if (members_.full() && !make_room(now)) {
            ++stats_.members_refused;
            return;
        }
        Member fresh;
        fresh.name = u.name;
        fresh.addr = u.addr;
        fresh.http = u.http;
        fresh.incarnation = u.incarnation;
        fresh.set_tags(u.tags);
        fresh.protocol = u.protocol;
        fresh.state_since = now;
        m = members_.add(std::move(fresh));
        if (m == nullptr) {
            ++stats_.members_refused;
            return;
        }
        ++stats_.updates_applied;
        prober_.add(m->name);
        if (gossip) broadcasts_.push(u);
        emit(*m, std::nullopt, m->incarnation, now, false);
        return;
    }
    if (!alive_overrides(*m, u)) {
        ++stats_.updates_ignored;
        return;
    }
    const bool was_gone = is_gone(m->state);
    m->addr = u.addr;
    m->http = u.http;
    m->set_tags(u.tags);
    m->protocol = u.protocol;
    transition(*m, MemberState::alive, u.incarnation, gossip ? Update(u) : std::optional<Update>{},
               now, false);
    if (was_gone) prober_.add(m->name);
}

void Node::name_claimed(const AliveUpdate& u, Time now) {
    ++stats_.name_conflicts;
    if (!joined_) claimed_at_join_ = true;
    bool live = false;
    if (auto it = claims_.find(u.addr); it != claims_.end()) {
        live = u.incarnation > it->second;
        it->second = std::max(it->second, u.incarnation);
    } else if (claims_.size() < 16) {  // bounded: names claimed from many addresses are noise
        claims_.emplace(u.addr, u.incarnation);
    }
    outbox_.conflicts.push_back(NameConflict{u.addr, u.incarnation, live, claimed_at_join_});
    // The name is ours: announce it above the other claim. A stale entry (our previous life
    // elsewhere) is then overridden everywhere; a live process answers in kind (`live`).
    if (!leaving_ && u.incarnation >= self().incarnation) refute(u.incarnation, now);
}

void Node::apply_suspect(const SuspectUpdate& u, Time now, bool origin) {
    if (too_far_ahead(u.name, u.incarnation, now)) return;
    if (u.name == name_) {
        about_self(u.incarnation, now);
        return;
    }
    Member* m = members_.find(u.name);
    if (m == nullptr) {
        ++stats_.updates_ignored;
        return;
    }
    if (suspect_confirms(*m, u)) {
        if (config_.lifeguard && m->suspicion && m->suspicion->confirm(u.from)) {
            ++stats_.confirmations;
            schedule(m->suspicion->deadline(), TimerKind::suspicion, 0, m->name);
            // Pass the confirmation on, so others shorten their timers too.
            broadcasts_.push(u);
        } else {
            ++stats_.updates_ignored;
        }
        return;
    }
    if (!suspect_overrides(*m, u)) {
        ++stats_.updates_ignored;
        return;
    }
    transition(*m, MemberState::suspect, u.incarnation, u, now, origin);
    const size_t n = members_.live();
    const Duration min = suspicion_min(config_, n);
    const Duration max = config_.lifeguard ? scale(min, config_.suspicion_max_mult) : min;
    const uint32_t expected = config_.lifeguard
                                  ? static_cast<uint32_t>(std::min<size_t>(
                                        config_.suspicion_verifiers, n > 2 ? n - 2 : 0))
                                  : 0;
    m->suspicion = std::make_unique<Suspicion>(now, u.incarnation, u.from, min, max, expected);
    schedule(m->suspicion->deadline(), TimerKind::suspicion, 0, m->name);
    // About `suspicion_verifiers` members probe the suspect within a period: a crash gathers
    // its confirmations quickly, and a live suspect hears of it through their probes and
    // refutes. Who verifies follows from the shared order (see Prober::verifies); a suspect
    // not in it yet is verified with probability verifiers/n.
    if (!origin && n > 2) {
        const auto chosen = prober_.verifies(m->name, u.from, config_.suspicion_verifiers);
        if (chosen ? *chosen
                   : rng_.chance(static_cast<double>(config_.suspicion_verifiers) /
                                 static_cast<double>(n - 2))) {
            prober_.probe_soon(m->name);
        }
    }
}

void Node::apply_dead(const DeadUpdate& u, Time now, bool origin) {
    if (too_far_ahead(u.name, u.incarnation, now)) return;
    if (u.name == name_) {
        about_self(u.incarnation, now);
        return;
    }
    Member* m = members_.find(u.name);
    if (m != nullptr && u.prune && m->state == MemberState::left &&
        u.incarnation >= m->incarnation) {
        prune(*m, u, now);
        return;
    }
    if (m == nullptr || !dead_overrides(*m, u)) {
        ++stats_.updates_ignored;
        return;
    }
    const bool was_gone = is_gone(m->state);
    transition(*m, u.left ? MemberState::left : MemberState::dead, u.incarnation, u, now, origin);
    if (!was_gone) gone_.push_back(m->name);
    // Only a member already counted gone here is pruned: a prune of one alive in our view is
    // a leave like any other, which it can refute.
    if (u.prune && was_gone) prune(*m, u, now);
}

void Node::prune(const Member& m, const DeadUpdate& u, Time now) {
    // Forgotten now, not after left_retain; its tombstone keeps old gossip of it out, and the
    // update goes on to the members that have not heard it (those that no longer know the
    // member ignore it, so it dies out).
    ++stats_.updates_applied;
    reap(m, now);
    broadcasts_.push(u);
}

Result<MemberState> Node::force_leave(const Name& name, bool prune, Time now) {
    if (name == name_) {
        return Error{"self", "a member does not force itself out: chorus leave makes it leave"};
    }
    Member* m = members_.find(name);
    if (m == nullptr) return Error{"unknown_member", fmt::format("no member named {}", name)};
    if (!is_gone(m->state)) {
        return Error{"not_failed",
                     fmt::format("{} is {}: only a dead or left member can be forced out (a "
                                 "live one leaves itself with chorus leave)",
                                 name, to_string(m->state))};
    }
    const MemberState was = m->state;
    apply_dead(DeadUpdate{m->name, m->incarnation, name_, true, prune}, now, true);
    return was;
}

// ---------------------------------------------------------------------------------------------
// Dissemination

void Node::gossip_tick(Time now) {
    schedule(now + config_.gossip_interval, TimerKind::gossip);
    if (self().load_milli != load_reported_ && !leaving_) {
        // A changed load reaches the members that route to us within one tick (the router
        // weighs it: ARCHITECTURE.md, "Tasks").
        // Every packet carries it, and pending updates ride along.
        load_reported_ = self().load_milli;
        ++stats_.load_reports;
        for (const Member* m : prober_.pick(config_.load_report_nodes, name_, rng_))
            send(m->addr, std::monostate{});
        return;
    }
    if (broadcasts_.empty()) return;  // an idle cluster sends nothing on this tick
    for (const Member* m : prober_.pick(config_.gossip_nodes, name_, rng_)) {
        if (broadcasts_.empty()) break;
        send(m->addr, std::monostate{});
    }
}

// ---------------------------------------------------------------------------------------------
// Anti-entropy, join, leave, reconnect, reap

PushPull Node::snapshot(bool join, Time now) const {
    PushPull s;
    s.cluster = config_.cluster;
    s.sender = name_;
    s.join = join;
    s.members.reserve(members_.size() + members_.tombstones());
    members_.for_each([&](const Member& m) { s.members.push_back(m.snapshot()); });
    members_.for_each_tombstone(now, [&](const Name& name, Incarnation inc) {
        s.members.push_back(MemberSnapshot{
            name, Address{}, Name{}, inc, MemberState::dead, {}, 0, kProtocolVersion});
    });
    return s;
}

void Node::join(const std::vector<Address>& seeds, Time now) {
    set_seeds(seeds);
    for (const Address& seed : seeds_)
        outbox_.push_pulls.push_back(OutPushPull{seed, snapshot(true, now)});
}

void Node::set_seeds(std::vector<Address> seeds) {
    std::erase(seeds, self().addr);
    seeds_ = std::move(seeds);
    std::erase_if(seed_names_, [&](const auto& kv) {
        return std::find(seeds_.begin(), seeds_.end(), kv.first) == seeds_.end();
    });
}

bool Node::seed_lost(const Address& seed) const {
    const auto it = seed_names_.find(seed);
    if (it == seed_names_.end()) return true;  // never answered
    const Member* m = members_.find(it->second);
    return m == nullptr || m->addr != seed || is_gone(m->state);
}

void Node::merge(const PushPull& remote, Time now) {
    ++stats_.push_pulls;
    heard_from(remote.sender, now);
    size_t notices = 0;
    for (const MemberSnapshot& s : remote.members) {
        switch (s.state) {
            case MemberState::alive:
                // The sender's word about itself is first-hand news (a joiner announcing
                // itself to its seed): pass it on. The rest of its table is not.
                apply_alive(AliveUpdate{s.name, s.addr, s.http, s.incarnation, s.tags, s.protocol},
                            now, s.name == remote.sender);
                break;
            // A peer's suspicion or verdict is hearsay: its view may be stale or from the
            // other side of a partition, and it is not independent evidence. Counting it as a
            // confirmation (as memberlist's mergeState effectively does) lets one lossy probe
            // collect "confirmations" from every push-pull and shrink the suspicion timeout to
            // its minimum. So we verify it ourselves with an out-of-turn probe instead. The
            // accused, if it is us, refutes: that is how both halves of a healed partition and
            // a restarted node learn to outrank what the others believe.
            case MemberState::suspect:
            case MemberState::dead:
                if (s.name == name_) {
                    about_self(s.incarnation, now);
                } else if (const Member* m = members_.find(s.name);
                           m != nullptr && m->state == MemberState::alive &&
                           s.incarnation >= m->incarnation) {
                    prober_.probe_soon(s.name);
                    // No address: the sender reaped it, and its tombstone will refuse the
                    // member's alive gossip at this incarnation. Only the member can outrank
                    // that, so it is told: a push-pull carrying the tombstone makes it refute.
                    // (After a partition that outlasted dead_retain, this is how the members
                    // that did not make the call across learn that the other side forgot them.)
                    if (s.addr.empty() && notices < kTombstoneNoticesMax) {
                        ++notices;
                        // Just this node and the tombstone: the member answers with its
                        // whole view, as to any push-pull.
                        PushPull notice;
                        notice.cluster = config_.cluster;
                        notice.sender = name_;
                        notice.members = {self().snapshot(), s};
                        outbox_.push_pulls.push_back(OutPushPull{m->addr, std::move(notice)});
                    }
                }
                break;
            case MemberState::left:
                apply_dead(DeadUpdate{s.name, s.incarnation, s.name, true}, now, false);
                break;
        }
    }
}

PushPull Node::handle_push_pull(const PushPull& remote, Time now) {
    // What we held of the sender's name before its word replaced it: if that was another
    // address, the sender must hear of it (a joiner meeting its name alive elsewhere is the
    // newcomer: NameConflict), so the answer carries it instead of the sender's own entry.
    std::optional<MemberSnapshot> before;
    if (const Member* m = members_.find(remote.sender)) before = m->snapshot();
    merge(remote, now);
    PushPull reply = snapshot(false, now);
    if (before && before->state == MemberState::alive) {
        for (MemberSnapshot& s : reply.members) {
            if (s.name == remote.sender && s.addr != before->addr) s = *before;
        }
    }
    return reply;
}

void Node::push_pull_done(const Address& peer, const PushPull& remote, Time now) {
    if (std::find(seeds_.begin(), seeds_.end(), peer) != seeds_.end()) {
        seed_names_[peer] = remote.sender;
    }
    merge(remote, now);
    joined_ = true;
}

void Node::push_pull_failed(const Address& peer, Time now) {
    (void)peer;
    (void)now;
    ++stats_.push_pulls_failed;
}

void Node::push_pull_tick(Time now) {
    // Fast start: a node that just joined knows the part of the cluster its seed knew, and
    // others know little of the members that joined after them. Push-pulls at
    // push_pull_startup, doubling up to the normal interval, union those partial views in a
    // few rounds instead of waiting minutes for the first regular one. It ends once a whole
    // interval has taught us nothing (no update changed our view): the views have met, and
    // an idle cluster should cost what its regular interval costs.
    const Duration regular = push_pull_interval_for(config_, members_.live());
    const bool learned = stats_.updates_applied != applied_at_push_pull_;
    applied_at_push_pull_ = stats_.updates_applied;
    const bool fast = push_pull_next_ < regular && learned;
    const Duration interval = fast ? push_pull_next_ : regular;
    push_pull_next_ = fast ? std::min(push_pull_next_ * 2, regular) : regular;
    schedule(now + interval, TimerKind::push_pull);
    if (leaving_) return;
    const auto peers = prober_.pick(1, name_, rng_);
    if (peers.empty()) return;
    outbox_.push_pulls.push_back(OutPushPull{peers.front()->addr, snapshot(false, now)});
}

void Node::reconnect_tick(Time now) {
    schedule(now + config_.reconnect_interval, TimerKind::reconnect);
    if (leaving_) return;
    // One seed that is not a live member, in turn: it may be the way back to members this
    // node reaped (or never knew), which no dead entry would lead to any more.
    for (size_t k = 0; joined_ && k < seeds_.size(); ++k) {
        const Address& seed = seeds_[seed_turn_++ % seeds_.size()];
        if (!seed_lost(seed)) continue;
        ++stats_.seed_rejoins;
        outbox_.push_pulls.push_back(OutPushPull{seed, snapshot(false, now)});
        break;
    }
    // Try one random dead member; entries that left, came back or were reaped are pruned on
    // the way. Left members said goodbye and are not called back.
    while (!gone_.empty()) {
        const size_t i = rng_.below(gone_.size());
        const Member* m = members_.find(gone_[i]);
        if (m == nullptr || !is_gone(m->state)) {
            std::swap(gone_[i], gone_.back());
            gone_.pop_back();
            continue;
        }
        if (m->state == MemberState::dead) {
            outbox_.push_pulls.push_back(OutPushPull{m->addr, snapshot(false, now)});
        }
        return;
    }
}

void Node::reap_tick(Time now) {
    schedule(now + kReapEvery, TimerKind::reap);
    members_.expire_tombstones(now);
    for (size_t i = 0; i < gone_.size();) {
        const Member* m = members_.find(gone_[i]);
        if (m == nullptr || !is_gone(m->state)) {
            std::swap(gone_[i], gone_.back());
            gone_.pop_back();
            continue;
        }
        const Duration retain =
            m->state == MemberState::left ? config_.left_retain : config_.dead_retain;
        if (now - m->state_since >= retain) {
            reap(*m, now);
            std::swap(gone_[i], gone_.back());
            gone_.pop_back();
            continue;
        }
        ++i;
    }
}

void Node::reap(const Member& m, Time now) {
    MemberEvent e{m.name, m.state, std::nullopt, m.incarnation, m.incarnation, now, true};
    broadcasts_.forget(m.name);
    member_rtts_.erase(m.name);
    members_.remove(m.name, now + config_.tombstone_ttl);
    outbox_.events.push_back(std::move(e));
}

bool Node::make_room(Time now) {
    // members_max bounds what a flood of invented names can cost; when it is reached, what is
    // already gone makes way for a member that announces itself, so real members can still
    // join after a flood: first the tombstones, then the member gone longest. Its tombstone
    // goes too, which lets stale gossip bring it back, the lesser harm under a cap.
    if (members_.drop_oldest_tombstone()) return true;
    size_t oldest = gone_.size();
    for (size_t i = 0; i < gone_.size(); ++i) {
        const Member* m = members_.find(gone_[i]);
        if (m == nullptr || !is_gone(m->state)) continue;
        if (oldest == gone_.size() || m->state_since < members_.find(gone_[oldest])->state_since) {
            oldest = i;
        }
    }
    if (oldest == gone_.size()) return false;
    const Name name = gone_[oldest];
    reap(*members_.find(name), now);
    members_.drop_tombstone(name);
    std::swap(gone_[oldest], gone_.back());
    gone_.pop_back();
    return true;
}

void Node::set_load(uint32_t load_milli) {
    self_mut().load_milli = load_milli;
}

void Node::leave(Time now) {
    if (leaving_) return;
    leaving_ = true;
    Member& me = self_mut();
    const MemberState previous = me.state;
    members_.set_state(me, MemberState::left, now);
    broadcasts_.push(DeadUpdate{name_, me.incarnation, name_, true});
    emit(me, previous, me.incarnation, now, true);
    // Tell a few members at once rather than waiting for the next gossip tick.
    for (const Member* m : prober_.pick(config_.gossip_nodes, name_, rng_)) {
        send(m->addr, std::monostate{});
    }
}

}  // namespace chorus
