// Who to probe next, and the probes in flight (SWIM §4.1, §4.3).
//
// Targets come from a shuffled round robin over the live members, so each is probed once per
// round, which bounds the time to first detection (SWIM §4.3); out-of-turn requests go first:
// members whose φ crossed phi_suspect, and suspicions to verify. The prober also holds what is in
// flight: our own probe, the probes we relay for others (ping-req), and last-chance checks of
// unconfirmed suspicions. It decides nothing about time or packets; Node does that.
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

    // A member new to us (or back from the dead) joins the current round at a random place
    // among those not yet probed, as memberlist does: probed within one round, no reshuffle.
    void add(const Name& name, Rng& rng);
    // Probe `name` before the round robin resumes (bounded; duplicates ignored).
    void probe_soon(const Name& name);
    // The next member to probe: out-of-turn requests first, then the round robin, which starts
    // a new shuffled round over the live members when one ends. Skips gone members and us.
    std::optional<Target> next(Rng& rng);
    // Up to k distinct random alive members other than us and `except`.
    std::vector<const Member*> pick(size_t k, const Name& except, Rng& rng) const;
    // Visits up to `count` members from a cursor that walks the round, so periodic checks
    // (φ) cover everyone at a bounded cost per call.
    template <typename F>
    void scan(size_t count, F&& f) {
        for (size_t i = 0; i < count && i < round_.size(); ++i) {
            cursor_ = (cursor_ + 1) % round_.size();
            if (const Member* m = table_.find(round_[cursor_])) f(*m);
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

    const MemberTable& table_;
    Name self_;
    std::vector<Name> round_;  // shuffled; also the pool for random picks
    size_t index_ = 0;
    size_t cursor_ = 0;
    std::deque<Name> urgent_;
    std::optional<Probe> probe_;
    std::map<uint32_t, Relay> relays_;
    std::map<uint32_t, LastCheck> checks_;
};

}  // namespace chorus
