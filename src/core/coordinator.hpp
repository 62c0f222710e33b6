// The coordinator (issue 17): one member every node names from its own view, with no election
// and no protocol of its own, as Akka Cluster's leader is: the alive member with the highest
// `priority` tag (a whole number; none, or not a number: 0), ties going to the lowest name.
// Views that agree name the same member; while a change spreads, views may briefly name two.
// A suspect member does not coordinate: a dead coordinator is replaced from its first
// suspicion, and a refuted suspicion hands the role back.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "core/member_table.hpp"
#include "core/types.hpp"

namespace chorus {

inline constexpr std::string_view kPriorityTag = "priority";

// A member's priority: its `priority` tag as a whole number, else 0.
int64_t priority_of(const Tags& tags);

struct Coordinator {
    Name name;
    int64_t priority = 0;
    bool operator==(const Coordinator&) const = default;
};

// The coordinator of this view; none when no member is alive.
std::optional<Coordinator> coordinator_of(const MemberTable& members);

// The line of succession: up to `max` alive members that `eligible` accepts (all, when it is
// empty), in the order they would coordinate. The first is coordinator_of(members) when every
// member is eligible; each next one takes over if those before it go. What a singleton task
// follows: its copy goes down this line, so the member holding it is the next coordinator.
std::vector<Name> succession(const MemberTable& members, size_t max,
                             const std::function<bool(const Member&)>& eligible = {});

// Keep-majority (Akka's split-brain rule; tasks.coordinator_quorum): a view holds quorum while
// a strict majority of the members it counts is alive. It counts every member it knows that
// did not leave: alive, suspect, and dead ones until they are reaped (dead_retain) or force-
// left, so the two sides of a partition count the same members and at most one holds it.
// A suspect member is not counted alive: while a partition is being detected, each side
// suspects the other and neither counts it twice.
struct Quorum {
    size_t alive = 0;
    size_t counted = 0;
    bool held() const { return 2 * alive > counted; }
};
Quorum quorum_of(const MemberTable& members);

}  // namespace chorus
