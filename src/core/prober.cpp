#include "core/prober.hpp"

#include <algorithm>

namespace chorus {

namespace {

// The shared order: by stable hash, ties (vanishingly rare) by name.
bool hash_order(uint64_t ha, const Name& a, uint64_t hb, const Name& b) {
    return ha != hb ? ha < hb : a.view() < b.view();
}

}  // namespace

bool Prober::probeable(const Name& name) const {
    const Member* m = table_.find(name);
    return m != nullptr && name != self_ && !is_gone(m->state);
}

void Prober::add(const Name& name) {
    // No search for a duplicate (a member back from the dead may still be listed): that would
    // make a mass join O(n^2) per node. A repeat in the tail is harmless (picks are
    // de-duplicated, the scan only reads), and the next re-sort rebuilds from the table.
    order_.push_back(name);
    dirty_ = true;
}

void Prober::probe_soon(const Name& name) {
    if (urgent_.size() >= kUrgentMax) return;
    if (std::find(urgent_.begin(), urgent_.end(), name) != urgent_.end()) return;
    urgent_.push_back(name);
}

void Prober::resort(uint64_t period) {
    std::vector<std::pair<uint64_t, Name>> keyed;
    keyed.reserve(table_.size());
    table_.for_each([&](const Member& m) {
        if (m.name == self_ || !is_gone(m.state))
            keyed.emplace_back(stable_hash(m.name.view()), m.name);
    });
    std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
        return hash_order(a.first, a.second, b.first, b.second);
    });
    order_.clear();
    for (auto& [hash, name] : keyed)
        order_.push_back(std::move(name));
    sorted_ = order_.size();
    rank_ = static_cast<size_t>(std::find(order_.begin(), order_.end(), self_) - order_.begin());
    sorted_at_ = period;
    dirty_ = false;
    cursor_ = 0;
}

std::optional<Prober::Target> Prober::next(uint64_t period) {
    while (!urgent_.empty()) {
        Name name = std::move(urgent_.front());
        urgent_.pop_front();
        if (probeable(name)) return Target{std::move(name), true};
    }
    const bool behind = order_.size() - sorted_ > sorted_ / 8;
    if (sorted_ == 0 || (dirty_ && (behind || period >= sorted_at_ + kResortPeriods))) {
        resort(period);
    }
    const size_t n = sorted_;
    if (n < 2) return std::nullopt;
    // The shift this period, the same at every member; never 0, which would be ourselves.
    const size_t shift = 1 + static_cast<size_t>(period % (n - 1));
    for (size_t i = 0; i < n; ++i) {
        const Name& name = order_[(rank_ + shift + i) % n];
        if (probeable(name)) return Target{name, false};
    }
    return std::nullopt;
}

std::optional<bool> Prober::verifies(const Name& suspect, const Name& accuser, size_t k) const {
    const size_t n = sorted_;
    const uint64_t h = stable_hash(suspect.view());
    const auto at = std::lower_bound(
        order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(n), suspect,
        [h](const Name& a, const Name& b) { return hash_order(stable_hash(a.view()), a, h, b); });
    if (at == order_.begin() + static_cast<std::ptrdiff_t>(n) || *at != suspect)
        return std::nullopt;
    const size_t from = static_cast<size_t>(at - order_.begin());
    size_t chosen = 0;
    for (size_t i = 1; i < n && chosen < k; ++i) {
        const Name& name = order_[(from + i) % n];
        if (name == accuser) continue;
        const Member* m = table_.find(name);
        if (m == nullptr || is_gone(m->state)) continue;
        if (name == self_) return true;
        ++chosen;
    }
    return false;
}

std::vector<const Member*> Prober::pick(size_t k, const Name& except, Rng& rng) const {
    std::vector<const Member*> out;
    if (order_.empty() || k == 0) return out;
    // Rejection sampling over the round: cheap at any size, and a bounded number of draws
    // keeps a mostly-dead list from looping long.
    for (size_t tries = 0; tries < 4 * k + 8 && out.size() < k; ++tries) {
        const Name& name = order_[rng.below(order_.size())];
        if (name == self_ || name == except) continue;
        const Member* m = table_.find(name);
        if (m == nullptr || m->state != MemberState::alive) continue;
        if (std::find(out.begin(), out.end(), m) != out.end()) continue;
        out.push_back(m);
    }
    return out;
}

bool Prober::add_relay(uint32_t seq, Relay r) {
    if (relays_.size() >= kRelaysMax) return false;
    relays_.emplace(seq, std::move(r));
    return true;
}

bool Prober::add_check(uint32_t seq, LastCheck c) {
    if (checks_.size() >= kChecksMax) return false;
    checks_.emplace(seq, std::move(c));
    return true;
}

}  // namespace chorus
