// The consistent-hash ring the router places tasks on (ARCHITECTURE.md, "Tasks").
//
// Each member owns `vnodes` points on a 64-bit circle, at hash("name#i"); a key's preference
// list is the first distinct members met clockwise from hash(key). Points come from the
// member names alone, so members with equal views build equal rings, and the checksum lets
// them compare views cheaply. Adding or removing a member moves only the keys whose lists
// it enters or leaves.
//
// The hash is passed in: the daemon and the simulator use xxh3-64 (Debian's libxxhash), and
// the core stays standard library only (ARCHITECTURE.md, "Layers").
//
// Membership changes update the ring in place (update()): the points of members that went are
// filtered out and those of new members merged in, one pass over the points whatever the
// number of changes, instead of hashing and sorting every point again. A flood of thousands of
// members coming and going (forged, or a real mass join) then costs a pass per use of the
// ring, not a sort of every member's points per use.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "core/name.hpp"

namespace chorus {

using KeyHash = uint64_t (*)(std::string_view);

class Ring {
  public:
    // A member with more points than this gains little balance and costs memory per node.
    static constexpr uint32_t kVnodesMax = 1024;

    // `members` in any order (duplicates ignored); 1 <= vnodes <= kVnodesMax.
    Ring(std::vector<Name> members, uint32_t vnodes, KeyHash hash);

    // Removes `gone` and adds `joined` (a name in both stays; names not on the ring and names
    // already on it are ignored): the ring is then what the constructor builds from the new
    // member list.
    void update(std::span<const Name> joined, std::span<const Name> gone);

    // Up to `count` distinct members clockwise from the key's hash, the primary first.
    std::vector<Name> preference(std::string_view key, size_t count) const;
    std::vector<Name> preference_at(uint64_t key_hash, size_t count) const;
    // The same walk, keeping only members `keep` accepts (a task's constraints): the list a
    // task with placement constraints has, which holds up to `count` of them however far
    // round the circle they are.
    std::vector<Name> preference_at(uint64_t key_hash, size_t count,
                                    const std::function<bool(const Name&)>& keep) const;
    // Equal for rings built from the same members and vnodes.
    uint64_t checksum() const { return checksum_; }
    const std::vector<Name>& members() const { return members_; }  // sorted by name
    // The fraction of the circle each member owns as primary, by member (sorted by name).
    std::vector<std::pair<Name, double>> shares() const;

  private:
    struct Point {
        uint64_t at;
        Name member;
    };
    static bool before(const Point& a, const Point& b) {
        return a.at != b.at ? a.at < b.at : a.member < b.member;
    }
    std::vector<Point> points_of(const Name& member) const;  // sorted
    void rechecksum();

    std::vector<Name> members_;  // sorted
    std::vector<Point> points_;  // by position; ties (vanishingly rare) by member name
    uint32_t vnodes_;
    KeyHash hash_;
    uint64_t checksum_ = 0;
};

}  // namespace chorus
