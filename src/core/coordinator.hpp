// The coordinator (issue 17): one member every node names from its own view, with no election
// and no protocol of its own, as Akka Cluster's leader is: the alive member with the highest
// `priority` tag (a whole number; none, or not a number: 0), ties going to the lowest name.
// Views that agree name the same member; while a change spreads, views may briefly name two.
// A suspect member does not coordinate: a dead coordinator is replaced from its first
// suspicion, and a refuted suspicion hands the role back.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

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

}  // namespace chorus
