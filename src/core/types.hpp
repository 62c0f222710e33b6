// Strong types shared by every core unit: incarnations, member states, addresses and tags.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/name.hpp"

namespace chorus {

// A member's incarnation number (SWIM §4.2). Only the member itself raises it, to refute a
// suspicion or to announce a restart; everyone else compares it.
//
// 64 bits, so that it never wraps: with 32, one forged claim at 2^32-1 left its member nothing
// higher to refute with, and its own restart (which starts from the wall clock's seconds)
// could not outrank it either. What keeps a forged claim from pushing a member to the top of
// the range is kIncarnationLeadMax (member_table.hpp); next() saturates all the same.
struct Incarnation {
    uint64_t value = 0;
    auto operator<=>(const Incarnation&) const = default;
    Incarnation next() const { return Incarnation{value == UINT64_MAX ? value : value + 1}; }
};

// Where a member listens for gossip. Opaque to the core ("host:port" in the daemon, a node
// name in the simulator): only drivers resolve it.
struct Address {
    Name value;
    auto operator<=>(const Address&) const = default;
    bool empty() const { return value.empty(); }
};

enum class MemberState : uint8_t { alive = 0, suspect = 1, dead = 2, left = 3 };

constexpr std::string_view to_string(MemberState s) {
    switch (s) {
        case MemberState::alive:
            return "alive";
        case MemberState::suspect:
            return "suspect";
        case MemberState::dead:
            return "dead";
        case MemberState::left:
            return "left";
    }
    return "unknown";
}

// A member is gone when it is dead or announced that it left: it is neither probed nor routed to.
constexpr bool is_gone(MemberState s) {
    return s == MemberState::dead || s == MemberState::left;
}

// Small string map an operator attaches to a node (role, zone, ...). Kept sorted by key so that
// equal tag sets encode to equal bytes.
using Tag = std::pair<std::string, std::string>;
using Tags = std::vector<Tag>;

// "key=value" as a tag (the value may be empty, or hold '='); nullopt without a key and '='.
inline std::optional<Tag> parse_tag(std::string_view kv) {
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0) return std::nullopt;
    return Tag{std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1))};
}

// The value of tag `key`, or nullptr. Tags are a handful, so a scan serves.
inline const std::string* find_tag(const Tags& tags, std::string_view key) {
    for (const auto& [k, v] : tags)
        if (k == key) return &v;
    return nullptr;
}

// Tags under this prefix are the agent's own, not an operator's: it sets them, and refuses
// them in --tag and in `chorus tags`.
inline constexpr std::string_view kReservedTagPrefix = "chorus.";
// The task types a member has handlers for, comma-separated and sorted. A member without it
// (an older build) is taken to have them all; its own check still refuses what it lacks.
inline constexpr std::string_view kHandlersTag = "chorus.handlers";
// Present (value "1") while a member is draining: it stays a member but takes no new tasks
// and holds no new copies (`chorus drain`).
inline constexpr std::string_view kDrainTag = "chorus.drain";

// Protocol version this build speaks; carried in every packet.
inline constexpr uint8_t kProtocolVersion = 1;

}  // namespace chorus
