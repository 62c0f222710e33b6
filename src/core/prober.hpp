// Who to probe next, and the probes in flight (SWIM §4.1, §4.3).
//
// In-turn targets follow a round robin that every member runs in step. SWIM's shuffled
// round robin bounds how long one prober takes to reach a member, but each member runs its own
// order, so how soon *anyone* probes a crashed member is a race among independent schedules:
// about one probe a period on average, with an exponential tail (at N=25, no probe of the
// crashed member for over 3 s in one run in twenty). Here every member orders the cluster the
// same way, by a stable hash of the names, and in probe period p the member at rank r probes
// rank r + 1 + (p mod (n-1)): the same shift for everyone, so while views agree every member
// is probed exactly once a period, and each prober still visits every member once every
// n-1 periods. Periods are counted on the shared clock (the daemon anchors its time to the
// wall clock; the simulator's is shared by construction).
//
// Out-of-turn requests go first: members whose φ crossed phi_suspect, and suspicions to
// verify. The prober also holds what is in flight: our own probe, the probes we relay for
// others (ping-req), and last-chance checks of unconfirmed suspicions. It decides nothing about
// time or packets; Node does that.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "core/member_table.hpp"
#include "core/name.hpp"
#include "core/rng.hpp"
#include "core/time.hpp"
#include "core/types.hpp"

namespace chorus {

class Prober {
  public:
    struct Probe {
        uint32_t seq;
        Name target;
        Incarnation incarnation;  // of the target when probed: a refutation since voids it
        Time sent;
        uint32_t nacks_expected = 0;
        uint32_t nacks = 0;
    };
    struct Relay {
        Address requester;
        uint32_t requester_seq;
        Name target;
    };
    struct LastCheck {
        Name name;
        Incarnation incarnation;
    };
    struct Target {
        Name name;
        bool early;  // out of turn
    };

    // Relayed probes we run for others at once; more ping-reqs are refused, so a flood of
    // requests cannot make us a traffic amplifier without limit.
    static constexpr size_t kRelaysMax = 256;
    // Members waiting for an out-of-turn probe.
    static constexpr size_t kUrgentMax = 64;
    // Last-chance checks in flight at once.
    static constexpr size_t kChecksMax = 64;

    Prober(const MemberTable& table, Name self) : table_(table), self_(std::move(self)) {}

    // ---- choosing targets

    // Re-sorting the order costs O(n log n); after a change it waits up to this many periods,
    // so a mass join does not re-sort on every probe. A member added meanwhile is picked
    // for gossip and relays at once and enters the in-turn schedule at the re-sort.
    static constexpr uint64_t kResortPeriods = 8;

    // A member new to us (or back from the dead); O(1).
    void add(const Name& name);
    // Probe `name` before the round robin resumes (bounded; duplicates ignored).
    void probe_soon(const Name& name);
    // The member to probe in `period`: out-of-turn requests first, then the shared round
    // robin. Skips gone members and us.
    std::optional<Target> next(uint64_t period);
    // Whether we are one of the `k` members that verify a suspicion of `suspect` raised by
    // `accuser`: the first k live members after the suspect in the shared order, skipping the
    // accuser. Every member computes the same set, so about k members verify each suspicion,
    // not a binomial number of them (which left a quarter of suspicions at N=10 with too few
    // confirmations, and so with a timeout several times the minimum). nullopt when the
    // suspect is not in the sorted order yet; the caller then draws at random.
    std::optional<bool> verifies(const Name& suspect, const Name& accuser, size_t k) const;
    // Up to k distinct random alive members other than us and `except`.
    std::vector<const Member*> pick(size_t k, const Name& except, Rng& rng) const;
    // Visits up to `count` members from a cursor that walks the round, so periodic checks
    // (φ) cover everyone at a bounded cost per call.
    template <typename F>
    void scan(size_t count, F&& f) {
        for (size_t i = 0; i < count && i < order_.size(); ++i) {
            cursor_ = (cursor_ + 1) % order_.size();
            if (order_[cursor_] == self_) continue;
            if (const Member* m = table_.find(order_[cursor_])) f(*m);
        }
    }

    // ---- in flight

    void start(Probe p) { probe_ = std::move(p); }
    // Our probe if `seq` is its sequence number.
    Probe* current(uint32_t seq) { return probe_ && probe_->seq == seq ? &*probe_ : nullptr; }
    // Ends our probe (acked or failed) and returns it.
    std::optional<Probe> finish() { return std::exchange(probe_, std::nullopt); }

    bool add_relay(uint32_t seq, Relay r);  // false when kRelaysMax are in flight
    std::optional<Relay> take_relay(uint32_t seq) { return take(relays_, seq); }

    bool add_check(uint32_t seq, LastCheck c);  // false when kChecksMax are in flight
    std::optional<LastCheck> take_check(uint32_t seq) { return take(checks_, seq); }

  private:
    template <typename T>
    static std::optional<T> take(std::map<uint32_t, T>& m, uint32_t seq) {
        auto it = m.find(seq);
        if (it == m.end()) return std::nullopt;
        T v = std::move(it->second);
        m.erase(it);
        return v;
    }
    bool probeable(const Name& name) const;
    void resort(uint64_t period);

    const MemberTable& table_;
    Name self_;
    // Live members and us: the first `sorted_` by stable hash, then those added since. Also
    // the pool for random picks and the φ scan.
    std::vector<Name> order_;
    size_t sorted_ = 0;
    size_t rank_ = 0;  // ours among the sorted
    bool dirty_ = true;
    uint64_t sorted_at_ = 0;  // the period of the last sort
    size_t cursor_ = 0;
    std::deque<Name> urgent_;
    std::optional<Probe> probe_;
    std::map<uint32_t, Relay> relays_;
    std::map<uint32_t, LastCheck> checks_;
};

}  // namespace chorus
