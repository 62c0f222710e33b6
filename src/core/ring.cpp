#include "core/ring.hpp"

#include <algorithm>
#include <string>

#include "core/assert.hpp"

namespace chorus {

Ring::Ring(std::vector<Name> members, uint32_t vnodes, KeyHash hash)
    : members_(std::move(members)), hash_(hash) {
    CHORUS_ASSERT(vnodes >= 1 && vnodes <= kVnodesMax);
    CHORUS_ASSERT(hash_ != nullptr);
    std::sort(members_.begin(), members_.end());
    members_.erase(std::unique(members_.begin(), members_.end()), members_.end());
    points_.reserve(members_.size() * vnodes);
    std::string label;
    for (uint32_t m = 0; m < members_.size(); ++m) {
        for (uint32_t i = 0; i < vnodes; ++i) {
            label.assign(members_[m].view());
            label += '#';
            label += std::to_string(i);
            points_.push_back(Point{hash_(label), m});
        }
    }
    std::sort(points_.begin(), points_.end(), [](const Point& a, const Point& b) {
        return a.at != b.at ? a.at < b.at : a.member < b.member;
    });
    // The view the ring was built from, in canonical form.
    std::string canonical = std::to_string(vnodes);
    for (const Name& m : members_) {
        canonical += '\n';
        canonical += m.view();
    }
    checksum_ = hash_(canonical);
}

std::vector<Name> Ring::preference(std::string_view key, size_t count) const {
    return preference_at(hash_(key), count);
}

std::vector<Name> Ring::preference_at(uint64_t key_hash, size_t count) const {
    std::vector<Name> out;
    count = std::min(count, members_.size());
    if (count == 0) return out;
    auto it = std::lower_bound(points_.begin(), points_.end(), key_hash,
                               [](const Point& p, uint64_t h) { return p.at < h; });
    std::vector<bool> taken(members_.size(), false);
    for (size_t step = 0; step < points_.size() && out.size() < count; ++step, ++it) {
        if (it == points_.end()) it = points_.begin();  // the circle closes
        if (taken[it->member]) continue;
        taken[it->member] = true;
        out.push_back(members_[it->member]);
    }
    return out;
}

std::vector<std::pair<Name, double>> Ring::shares() const {
    std::vector<std::pair<Name, double>> out;
    out.reserve(members_.size());
    std::vector<double> owned(members_.size(), 0.0);
    // A point owns the arc from its predecessor (exclusive) up to itself: keys hashing there
    // find it first going clockwise. The first point also owns the wrap-around arc.
    constexpr double kCircle = 18446744073709551616.0;  // 2^64
    for (size_t i = 0; i < points_.size(); ++i) {
        const uint64_t from = i == 0 ? points_.back().at : points_[i - 1].at;
        const uint64_t arc = points_[i].at - from;  // wraps correctly for i == 0
        owned[points_[i].member] += static_cast<double>(arc) / kCircle;
    }
    if (points_.size() == 1) owned[points_[0].member] = 1.0;
    for (size_t m = 0; m < members_.size(); ++m)
        out.emplace_back(members_[m], owned[m]);
    return out;
}

}  // namespace chorus
