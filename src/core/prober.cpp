#include "core/prober.hpp"

#include <algorithm>

namespace chorus {

bool Prober::probeable(const Name& name) const {
    const Member* m = table_.find(name);
    return m != nullptr && name != self_ && !is_gone(m->state);
}

void Prober::add(const Name& name, Rng& rng) {
    round_.push_back(name);
    const size_t lo = std::min(index_, round_.size() - 1);
    const size_t j = lo + rng.below(round_.size() - lo);
    std::swap(round_[j], round_.back());
}

void Prober::probe_soon(const Name& name) {
    if (urgent_.size() >= kUrgentMax) return;
    if (std::find(urgent_.begin(), urgent_.end(), name) != urgent_.end()) return;
    urgent_.push_back(name);
}

std::optional<Prober::Target> Prober::next(Rng& rng) {
    while (!urgent_.empty()) {
        Name name = std::move(urgent_.front());
        urgent_.pop_front();
        if (probeable(name)) return Target{std::move(name), true};
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
        while (index_ < round_.size()) {
            const Name& name = round_[index_++];
            if (probeable(name)) return Target{name, false};
        }
        // The round is over: a new one over the members we know now, in a new order.
        round_.clear();
        table_.for_each([&](const Member& m) {
            if (m.name != self_ && !is_gone(m.state)) round_.push_back(m.name);
        });
        rng.shuffle(round_);
        index_ = 0;
        cursor_ = 0;
    }
    return std::nullopt;
}

std::vector<const Member*> Prober::pick(size_t k, const Name& except, Rng& rng) const {
    std::vector<const Member*> out;
    if (round_.empty() || k == 0) return out;
    // Rejection sampling over the round: cheap at any size, and a bounded number of draws
    // keeps a mostly-dead list from looping long.
    for (size_t tries = 0; tries < 4 * k + 8 && out.size() < k; ++tries) {
        const Name& name = round_[rng.below(round_.size())];
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
