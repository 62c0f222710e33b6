// One member of the cluster: the sans-IO protocol state machine.
//
// Inputs are method calls that each carry `now`: a decoded packet, a push-pull exchange, a
// timer tick, a command (join, leave). Outputs go to an outbox that the driver drains after
// every call: packets to send, push-pull exchanges to open, membership events. Instead of
// arming timers one by one, the driver asks `next_deadline()` and calls `tick(now)` when it is
// due (as quinn-proto's poll_timeout/handle_timeout): one driver timer, no stale handles.
//
// Node owns the units and dispatches between them; each protocol concept lives in its own
// file: MemberTable (records and precedence), Prober (targets and probes in flight),
// Suspicion, Awareness, BroadcastQueue, PhiDetector, RttEstimator.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <queue>
#include <span>
#include <string>
#include <vector>

#include "core/awareness.hpp"
#include "core/broadcast_queue.hpp"
#include "core/config.hpp"
#include "core/member_table.hpp"
#include "core/message.hpp"
#include "core/prober.hpp"
#include "core/result.hpp"
#include "core/rng.hpp"
#include "core/rtt.hpp"
#include "core/time.hpp"

namespace chorus {

// What a node says about itself.
struct Identity {
    Name name;
    Address addr;
    Name http;
    Tags tags;
    // The daemon starts from the wall clock's seconds so that a restart outranks its previous
    // life even before it hears of it; refutation covers the rest (SWIM §4.2).
    Incarnation incarnation;
};

struct MemberEvent {
    Name name;
    std::optional<MemberState> previous;  // nullopt: the member is new to us
    std::optional<MemberState> current;   // nullopt: the member was removed (reaped)
    Incarnation incarnation;
    Incarnation previous_incarnation;  // equal to incarnation for a new member
    Time at;
    // True when this node reached the conclusion itself (its probe failed, its suspicion timer
    // ran out) rather than hearing it from others.
    bool origin = false;
};

// Another process announced itself under this node's name, at another address: the same name
// in use twice (a copied config), or this node restarted elsewhere before its old entry died.
// The node claims its name (it announces itself above that incarnation); a stale entry stays
// where it was, while a live process answers by raising its own: `live` says it did. `newcomer`:
// this node met the other claim when it joined, so it is the later of the two. The driver
// decides who stops (daemon/agent.hpp).
struct NameConflict {
    Address addr;
    Incarnation incarnation;
    bool live = false;
    bool newcomer = false;
};

struct OutPacket {
    Address to;
    Packet packet;
};

struct OutPushPull {
    Address to;
    PushPull state;
};

struct Outbox {
    std::vector<OutPacket> packets;
    std::vector<OutPushPull> push_pulls;
    std::vector<MemberEvent> events;
    std::vector<NameConflict> conflicts;
    // Empties the outbox. Buffers that grew past a few dozen entries (a push-pull merge emits
    // one event per member) are released rather than kept: every node keeps an outbox, and
    // N nodes holding N-entry buffers is N² of idle memory.
    void clear() {
        release_if_large(packets);
        release_if_large(push_pulls);
        release_if_large(events);
        conflicts.clear();
    }
    bool empty() const {
        return packets.empty() && push_pulls.empty() && events.empty() && conflicts.empty();
    }

  private:
    template <typename V>
    static void release_if_large(V& v) {
        if (v.capacity() > 64) {
            V().swap(v);
        } else {
            v.clear();
        }
    }
};

// Counters for metrics and tests; monotonic.
struct NodeStats {
    uint64_t probes = 0;
    uint64_t probes_failed = 0;
    uint64_t probes_early = 0;  // out of turn: phi above phi_suspect, or verifying a suspicion
    uint64_t ping_reqs_sent = 0;
    uint64_t ping_reqs_refused = 0;  // relay table full
    uint64_t acks = 0;
    uint64_t nacks = 0;
    uint64_t suspicions = 0;  // raised by our own failed probes
    uint64_t confirmations = 0;
    uint64_t refutations = 0;
    uint64_t deaths = 0;  // declared by our own suspicion timers
    uint64_t updates_applied = 0;
    uint64_t updates_ignored = 0;
    uint64_t claims_refused = 0;   // incarnations too far ahead to be genuine (member_table.hpp)
    uint64_t members_refused = 0;  // table full
    uint64_t packets_ignored = 0;  // from ourselves, or a ping meant for another member
    uint64_t push_pulls = 0;
    uint64_t push_pulls_failed = 0;
    uint64_t seed_rejoins = 0;    // push-pulls to a seed that was not a live member
    uint64_t load_reports = 0;    // gossip ticks that told members of a changed load
    uint64_t name_conflicts = 0;  // announcements of this node's name from another address
};

class Node {
  public:
    Node(Config config, Identity self, uint64_t seed, Time now);

    // ---- inputs ----

    // Opens a join push-pull with each seed. The driver reports each outcome through
    // push_pull_done / push_pull_failed and decides on retries. The seeds are kept: once
    // joined, a seed that is not a live member is called again every reconnect_interval, so
    // the two sides of a partition that outlasted dead_retain (each reaped the other, so
    // nobody calls the other back) still meet again once the network heals.
    void join(const std::vector<Address>& seeds, Time now);
    // New addresses for the seeds (a seed's name resolved again), without calling them now.
    void set_seeds(std::vector<Address> seeds);
    // Announces our departure; the driver keeps the node running until leave_spread() (or its
    // own leave timeout) and then stops.
    void leave(Time now);
    // This node's task load changed ((running + queued) / capacity × 1000); members hear it at
    // the next gossip tick.
    void set_load(uint32_t load_milli);
    // Where this node's ring checksum comes from (the task layer's ring), asked when a probe
    // or an ack goes out; members keep what each other said (Member::ring_checksum, its low 32
    // bits), so that any of them can tell whether the cluster agrees on who is on the ring.
    // Null: not said.
    void set_ring_checksum_source(std::function<uint64_t()> source) {
        ring_checksum_ = std::move(source);
    }
    // This node's tags change (`chorus tags`): it announces itself under the next incarnation,
    // so every member takes the new tags as it would a refutation. Unchanged tags send nothing.
    void set_tags(Tags tags, Time now);
    // An operator removes a failed member (`chorus force-leave`, Serf's force-leave): a dead
    // member becomes left, so nobody calls it back any more, and every member hears it; with
    // `prune` every member forgets it at once (a tombstone keeps it out) instead of after
    // left_retain. Returns the state it was in. Errors: `unknown_member`, `self`, `not_failed`
    // (alive or suspect: a live member leaves by itself).
    Result<MemberState> force_leave(const Name& name, bool prune, Time now);

    void handle_packet(const Packet& p, Time now);
    // We are the receiving side of a push-pull: merge the peer's state, return ours.
    PushPull handle_push_pull(const PushPull& remote, Time now);
    // We opened a push-pull (join, anti-entropy or reconnect) and got the peer's state.
    void push_pull_done(const Address& peer, const PushPull& remote, Time now);
    void push_pull_failed(const Address& peer, Time now);

    void tick(Time now);
    Time next_deadline() const;

    // ---- outputs and views ----

    Outbox& outbox() { return outbox_; }
    const Member& self() const;
    const MemberTable& members() const { return members_; }
    const Config& config() const { return config_; }
    const NodeStats& stats() const { return stats_; }
    double phi(const Name& name, Time now) const;
    // The last direct probe's round trip to `name` (with Config::member_rtts); none yet: null.
    std::optional<Duration> round_trip(const Name& name) const;
    uint32_t health_score() const { return awareness_.score(); }
    Duration probe_timeout() const;
    size_t broadcasts_pending() const { return broadcasts_.size(); }
    bool joined() const { return joined_; }
    bool leaving() const { return leaving_; }
    // True once our `left` update has been sent as many times as any update is (the epidemic's
    // retransmit limit), so the rest of the cluster has heard it with high probability; or at
    // once when no live member is left to tell.
    bool leave_spread() const {
        return leaving_ && (!broadcasts_.contains(name_) || members_.live() == 0);
    }
    // The snapshot this node would send in a push-pull at `now`: every member, and the
    // tombstones in force as dead entries without an address, so that a member restarted after
    // its record was reaped learns which incarnation it must outrank.
    PushPull snapshot(bool join, Time now) const;

  private:
    enum class TimerKind : uint8_t {
        probe,
        probe_timeout,
        relay_timeout,
        suspicion,
        gossip,
        push_pull,
        reconnect,
        reap,
        last_check
    };
    struct Timer {
        Time at;
        uint64_t order;  // insertion order breaks ties, so equal deadlines fire deterministically
        TimerKind kind;
        uint32_t seq = 0;  // probe or relay sequence number it belongs to
        Name member;       // suspect it belongs to
        bool operator>(const Timer& o) const { return at != o.at ? at > o.at : order > o.order; }
    };
    void schedule(Time at, TimerKind kind, uint32_t seq = 0, Name member = {});
    void on_timer(const Timer& t, Time now);

    // Probing (SWIM §4.1).
    void probe_tick(Time now);
    void finish_failed_probe(const Prober::Probe& p, Time now);
    void probe_timeout_fired(uint32_t seq, Time now);
    void relay_timeout_fired(uint32_t seq);
    void suspicion_expired(const Name& name, Time now);
    void last_check_expired(uint32_t seq, Time now);
    void check_phi(Time now);

    // Packet bodies; the piggybacked updates are applied before.
    void on_body(const Packet&, std::monostate, Time) {}
    void on_body(const Packet& p, const Ping& ping, Time now);
    void on_body(const Packet& p, const PingReq& req, Time now);
    void on_body(const Packet& p, const Ack& ack, Time now);
    void on_body(const Packet& p, const Nack& nack, Time now);

    // Dissemination.
    void gossip_tick(Time now);
    // `first` go into the packet before the broadcast queue's updates, if they fit.
    void send(const Address& to, Body body, std::span<const Update> first = {});

    // Anti-entropy and lifecycle.
    void push_pull_tick(Time now);
    void reconnect_tick(Time now);
    bool seed_lost(const Address& seed) const;  // not known as a live member at that address
    void reap_tick(Time now);
    // The table is full and a new member announced itself: drop the tombstone that would
    // expire first, else reap the member gone longest. False if every place holds a live one.
    bool make_room(Time now);
    void reap(const Member& m, Time now);
    void prune(const Member& m, const DeadUpdate& u, Time now);  // force-leave --prune
    void merge(const PushPull& remote, Time now);

    // Applying updates (SWIM §4.2 precedence lives in member_table).
    void apply(const Update& u, Time now, bool origin = false);
    // `gossip`: pass the news on. False for what a push-pull taught us: that is old news the
    // sender's side already has, and re-gossiping a whole table at every join floods the
    // cluster (N members × N updates) while anti-entropy is what carries it anyway.
    void apply_alive(const AliveUpdate& u, Time now, bool gossip = true);
    void name_claimed(const AliveUpdate& u, Time now);  // our name, from another address
    void apply_suspect(const SuspectUpdate& u, Time now, bool origin);
    void apply_dead(const DeadUpdate& u, Time now, bool origin);
    // Moves a known member to `state` at `incarnation`, gossips `gossip` if given, and tells
    // subscribers: the common tail of every accepted update.
    void transition(Member& m, MemberState state, Incarnation incarnation,
                    std::optional<Update> gossip, Time now, bool origin);
    void refute(Incarnation seen, Time now);
    // A claim about `name` at `incarnation` further ahead of what we know of it than
    // kIncarnationLeadMax: counted, and the caller drops it.
    bool too_far_ahead(const Name& name, Incarnation incarnation, Time now);
    // Someone suspects us or declared us dead at `accused`.
    void about_self(Incarnation accused, Time now);
    void heard_from(const Name& name, Time now);
    void emit(const Member& m, std::optional<MemberState> previous, Incarnation previous_inc,
              Time now, bool origin);
    AliveUpdate alive_of(const Member& m) const;
    Member& self_mut();
    PhiParams phi_params() const;

    Config config_;
    Name name_;
    Rng rng_;
    MemberTable members_;
    Prober prober_;
    Awareness awareness_;
    RttEstimator rtt_;
    std::map<Name, Duration> member_rtts_;  // with config_.member_rtts; members in the table
    BroadcastQueue broadcasts_;
    Outbox outbox_;
    NodeStats stats_;

    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
    uint64_t timer_order_ = 0;

    uint32_t next_seq_ = 1;
    std::vector<Name> gone_;  // dead and left members, for reconnects and reaping
    // The highest incarnation heard for our name from each other address (NameConflict), and
    // whether one came before we had joined.
    std::map<Address, Incarnation> claims_;
    bool claimed_at_join_ = false;
    std::vector<Address> seeds_;          // as join() or set_seeds() gave them
    std::map<Address, Name> seed_names_;  // who answered at a seed's address
    size_t seed_turn_ = 0;                // the next seed to look at

    Duration push_pull_next_;            // the fast start's current interval (see push_pull_tick)
    uint64_t applied_at_push_pull_ = 0;  // stats_.updates_applied at the last push-pull tick
    uint32_t load_reported_ = 0;         // the load members were last told of
    std::function<uint64_t()> ring_checksum_;
    static constexpr uint32_t kRingChecksumEvery = 8;
    uint32_t ring_checksum_said_ = 0;  // its low 32 bits, the last time a packet said it
    size_t ring_checksum_fresh_ = 0;   // probes and acks left that say it whatever their seq
    bool joined_ = false;
    bool leaving_ = false;
};

}  // namespace chorus
