// Transmit-limited queue of membership updates waiting to be piggybacked (SWIM §4.4,
// memberlist's queue.go).
//
// Each update is sent at most `limit` times (retransmit_mult × ceil(log10(n+1)), enough for an
// epidemic to reach every member with high probability) and then dropped. Updates sent the
// fewest times go first, newest first among equals, so fresh news spreads before old news is
// repeated. A newer update about a member replaces the queued one: only the latest fact about a
// member is worth bandwidth. The queue is bounded; when full, the most-sent update is dropped.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/message.hpp"

namespace chorus {

class BroadcastQueue {
  public:
    explicit BroadcastQueue(size_t max_items) : max_items_(max_items) {}

    // Queues `u`, replacing any queued update about the same member.
    void push(Update u);

    // Appends updates to `out` whose encoded bounds fit in `budget` bytes, counting a transmit
    // for each and dropping those that reached `limit`. Returns the bytes used.
    size_t take(size_t budget, uint32_t limit, std::vector<Update>& out);

    // Drops the queued update about `name`, if any.
    void forget(const Name& name);

    bool contains(const Name& name) const { return by_member_.contains(name); }
    size_t size() const { return items_.size(); }
    bool empty() const { return items_.empty(); }
    uint64_t dropped() const { return dropped_; }

  private:
    struct Item {
        Update update;
        size_t bytes;
        uint32_t transmits;
    };
    // Order of service: fewest transmits, then newest (higher id).
    using Key = std::pair<uint32_t, uint64_t>;  // (transmits, ~id)
    static Key key_of(uint64_t id, uint32_t transmits) { return {transmits, ~id}; }

    void erase(uint64_t id);

    size_t max_items_;
    uint64_t next_id_ = 0;
    uint64_t dropped_ = 0;
    std::map<uint64_t, Item> items_;
    std::set<Key> order_;
    std::map<Name, uint64_t, NameLess> by_member_;
};

}  // namespace chorus
