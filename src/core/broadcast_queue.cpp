#include "core/broadcast_queue.hpp"

#include "core/assert.hpp"

namespace chorus {

const Name& update_subject(const Update& u) {
    return std::visit([](const auto& x) -> const Name& { return x.name; }, u);
}

void BroadcastQueue::erase(uint64_t id) {
    auto it = items_.find(id);
    CHORUS_ASSERT(it != items_.end());
    order_.erase(key_of(id, it->second.transmits));
    by_member_.erase(update_subject(it->second.update));
    items_.erase(it);
}

void BroadcastQueue::forget(const Name& name) {
    if (auto it = by_member_.find(name); it != by_member_.end()) erase(it->second);
}

void BroadcastQueue::push(Update u) {
    forget(update_subject(u));
    if (items_.size() >= max_items_) {
        // The last key in order_ has the most transmits (oldest among equals): it has done
        // the most of its spreading already.
        const Key worst = *order_.rbegin();
        erase(~worst.second);
        ++dropped_;
    }
    const uint64_t id = next_id_++;
    const size_t bytes = encoded_size_bound(u);
    by_member_.emplace(update_subject(u), id);
    order_.insert(key_of(id, 0));
    items_.emplace(id, Item{std::move(u), bytes, 0});
}

size_t BroadcastQueue::take(size_t budget, uint32_t limit, std::vector<Update>& out) {
    // The smallest update we encode is well above this; once less is left, stop scanning.
    constexpr size_t kSmallestUseful = 24;
    // Updates are of similar sizes, so after this many in a row that do not fit, the rest will
    // not either; without the bound a long queue is scanned to its end for every packet.
    constexpr size_t kMissesMax = 8;
    size_t used = 0;
    size_t misses = 0;
    std::vector<uint64_t> taken;
    for (const Key& k : order_) {
        if (budget - used < kSmallestUseful || misses >= kMissesMax) break;
        const uint64_t id = ~k.second;
        const Item& item = items_.at(id);
        if (item.bytes > budget - used) {
            ++misses;
            continue;
        }
        misses = 0;
        used += item.bytes;
        out.push_back(item.update);
        taken.push_back(id);
    }
    for (uint64_t id : taken) {
        Item& item = items_.at(id);
        order_.erase(key_of(id, item.transmits));
        ++item.transmits;
        if (item.transmits >= limit) {
            by_member_.erase(update_subject(item.update));
            items_.erase(id);
        } else {
            order_.insert(key_of(id, item.transmits));
        }
    }
    return used;
}

}  // namespace chorus
