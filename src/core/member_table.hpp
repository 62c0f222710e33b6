// The membership table: one record per known member, tombstones for recently removed ones, and
// SWIM's precedence rules (SWIM §4.2) as pure functions.
//
// The table stores facts; it does not decide what to send. Node applies updates through it and
// turns the outcome into broadcasts, timers and events.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/message.hpp"
#include "core/phi.hpp"
#include "core/suspicion.hpp"
#include "core/time.hpp"
#include "core/types.hpp"

namespace chorus {

struct Member {
    Name name;
    Address addr;
    Name http;
    Incarnation incarnation;
    MemberState state = MemberState::alive;
    uint32_t load_milli = 0;
    // When load_milli was last reported (any packet from the member carries it); the router
    // counts what it sent the member since then on top (ARCHITECTURE.md, "Tasks").
    Time load_at{};
    uint8_t protocol = kProtocolVersion;
    // The member's ring checksum as it last said it (its low 32 bits, Packet): it sits in the
    // padding after `protocol`, so a record costs no more. 0: never said.
    uint32_t ring_checksum = 0;
    Time state_since{};
    std::unique_ptr<Suspicion> suspicion;  // set while suspect
    PhiDetector phi;                       // fed by every direct sign of life

    MemberSnapshot snapshot() const;
    // Tags live behind a pointer that is null when there are none: most members of a large
    // cluster carry few or none, and a node keeps a record of every member.
    const Tags& tags() const;
    void set_tags(const Tags& t);

  private:
    std::unique_ptr<Tags> tags_;
};

// How far ahead of what this node knows of a member a claim about it may be. Only the member
// raises its incarnation: by one per refutation, and on a restart to the wall clock's seconds
// (the daemon starts there), so a genuine claim is at most a restart's worth of seconds, or a
// long partition's worth of refutations, ahead of any view; 2^32 covers a restart after 136
// years of uptime. A claim further ahead cannot be genuine and is refused (counted in
// NodeStats::claims_refused). That is what keeps a forged claim from pushing a member to the
// top of the range, where it could never refute: each accepted claim moves the member at most
// 2^32, so reaching 2^64 would take 2^32 of them, each one answered by a refutation.
inline constexpr uint64_t kIncarnationLeadMax = uint64_t{1} << 32;

// ---- precedence (SWIM §4.2, with memberlist's treatment of left) ----
// Each answers whether the update changes what we believe about an existing member `m`.

// Alive{i} overrides any state with incarnation < i. Equal incarnations never override:
// only the member itself raises its incarnation, and it does so to refute.
bool alive_overrides(const Member& m, const AliveUpdate& u);
// Suspect{i} overrides Alive{j} for i >= j and Suspect{j} for i > j; gone members stay gone.
bool suspect_overrides(const Member& m, const SuspectUpdate& u);
// A suspect at the same incarnation is a confirmation of the running suspicion (Lifeguard §4.2).
bool suspect_confirms(const Member& m, const SuspectUpdate& u);
// Dead{i} overrides Alive/Suspect{j} for i >= j. Left also overrides Dead at the same
// incarnation: the member told us itself, so it need not be re-contacted.
bool dead_overrides(const Member& m, const DeadUpdate& u);

class MemberTable {
  public:
    explicit MemberTable(size_t max_members) : max_(max_members) {}

    Member* find(const Name& name);
    const Member* find(const Name& name) const;

    // Adds a member; returns nullptr if the table is full.
    Member* add(Member m);
    bool full() const { return members_.size() + tombstones_.size() >= max_; }
    // Drops the tombstone that would expire first, to make room; false if there is none.
    bool drop_oldest_tombstone();
    void drop_tombstone(const Name& name) { tombstones_.erase(name); }
    // Removes a gone member and leaves a tombstone until `tombstone_until`.
    void remove(const Name& name, Time tombstone_until);
    // The incarnation a tombstone remembers for `name`, if one is still in force.
    std::optional<Incarnation> tombstone(const Name& name, Time now) const;
    void expire_tombstones(Time now);

    void set_state(Member& m, MemberState s, Time now);

    size_t size() const { return members_.size(); }
    size_t count(MemberState s) const { return counts_[static_cast<size_t>(s)]; }
    // Members not gone (alive or suspect): the "n" of the protocol's formulas.
    size_t live() const { return count(MemberState::alive) + count(MemberState::suspect); }
    size_t tombstones() const { return tombstones_.size(); }

    // Deterministic iteration, in name order.
    template <typename F>
    void for_each(F&& f) const {
        for (const auto& [name, m] : members_)
            f(m);
    }
    template <typename F>
    void for_each(F&& f) {
        for (auto& [name, m] : members_)
            f(m);
    }
    // Tombstones still in force, in name order: f(name, incarnation).
    template <typename F>
    void for_each_tombstone(Time now, F&& f) const {
        for (const auto& [name, t] : tombstones_) {
            if (t.until > now) f(name, t.incarnation);
        }
    }

  private:
    struct Tombstone {
        Incarnation incarnation;
        Time until;
    };
    size_t max_;
    std::map<Name, Member, NameLess> members_;
    std::map<Name, Tombstone, NameLess> tombstones_;
    size_t counts_[4] = {0, 0, 0, 0};
};

}  // namespace chorus
