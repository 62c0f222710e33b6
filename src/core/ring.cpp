#include "core/ring.hpp"

#include <algorithm>
#include <iterator>
#include <string>

#include "core/assert.hpp"

namespace chorus {

Ring::Ring(std::vector<Name> members, uint32_t vnodes, KeyHash hash)
    : vnodes_(vnodes), hash_(hash) {
    CHORUS_ASSERT(vnodes >= 1 && vnodes <= kVnodesMax);
    CHORUS_ASSERT(hash_ != nullptr);
    update(members, {});
}

std::vector<Ring::Point> Ring::points_of(const Name& member) const {
    std::vector<Point> out;
    out.reserve(vnodes_);
    std::string label;
    for (uint32_t i = 0; i < vnodes_; ++i) {
        label.assign(member.view());
        label += '#';
        label += std::to_string(i);
        out.push_back(Point{hash_(label), member});
    }
    std::sort(out.begin(), out.end(), before);
    return out;
}

void Ring::update(std::span<const Name> joined, std::span<const Name> gone) {
    const auto on_ring = [&](const Name& n) {
        return std::binary_search(members_.begin(), members_.end(), n);
    };
    std::vector<Name> joining(joined.begin(), joined.end());
    std::sort(joining.begin(), joining.end());
    joining.erase(std::unique(joining.begin(), joining.end()), joining.end());
    std::vector<Name> leaving;
    for (const Name& n : gone) {
        if (on_ring(n) && !std::binary_search(joining.begin(), joining.end(), n)) {
            leaving.push_back(n);
        }
    }
    std::sort(leaving.begin(), leaving.end());
    leaving.erase(std::unique(leaving.begin(), leaving.end()), leaving.end());
    std::vector<Name> coming;
    for (const Name& n : joining) {
        if (!on_ring(n)) coming.push_back(n);
    }
    if (leaving.empty() && coming.empty()) return;

    // One pass drops the leavers' points; the newcomers' points, sorted among themselves, are
    // merged in with one more.
    if (!leaving.empty()) {
        std::erase_if(points_, [&](const Point& p) {
            return std::binary_search(leaving.begin(), leaving.end(), p.member);
        });
        std::erase_if(members_, [&](const Name& n) {
            return std::binary_search(leaving.begin(), leaving.end(), n);
        });
    }
    if (!coming.empty()) {
        std::vector<Point> fresh;
        fresh.reserve(coming.size() * vnodes_);
        for (const Name& n : coming) {
            auto p = points_of(n);
            fresh.insert(fresh.end(), p.begin(), p.end());
        }
        std::sort(fresh.begin(), fresh.end(), before);
        std::vector<Point> merged;
        merged.reserve(points_.size() + fresh.size());
        std::merge(points_.begin(), points_.end(), fresh.begin(), fresh.end(),
                   std::back_inserter(merged), before);
        points_ = std::move(merged);
        std::vector<Name> all;
        all.reserve(members_.size() + coming.size());
        std::merge(members_.begin(), members_.end(), coming.begin(), coming.end(),
                   std::back_inserter(all));
        members_ = std::move(all);
    }
    rechecksum();
}

void Ring::rechecksum() {
    // The view the ring was built from, in canonical form.
    std::string canonical = std::to_string(vnodes_);
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
    return preference_at(key_hash, count, nullptr);
}

std::vector<Name> Ring::preference_at(uint64_t key_hash, size_t count,
                                      const std::function<bool(const Name&)>& keep) const {
    std::vector<Name> out;
    count = std::min(count, members_.size());
    if (count == 0) return out;
    // Members `keep` turned down: met again at their other points, they are not asked again.
    std::vector<bool> refused(keep ? members_.size() : 0);
    auto it = std::lower_bound(points_.begin(), points_.end(), key_hash,
                               [](const Point& p, uint64_t h) { return p.at < h; });
    for (size_t step = 0; step < points_.size() && out.size() < count; ++step, ++it) {
        if (it == points_.end()) it = points_.begin();  // the circle closes
        // A list is a handful of names (candidates), so a scan beats any set.
        if (std::find(out.begin(), out.end(), it->member) != out.end()) continue;
        if (keep) {
            const auto i = static_cast<size_t>(
                std::lower_bound(members_.begin(), members_.end(), it->member) - members_.begin());
            if (refused[i]) continue;
            if (!keep(it->member)) {
                refused[i] = true;
                continue;
            }
        }
        out.push_back(it->member);
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
    const auto index = [&](const Name& n) {
        return static_cast<size_t>(std::lower_bound(members_.begin(), members_.end(), n) -
                                   members_.begin());
    };
    for (size_t i = 0; i < points_.size(); ++i) {
        const uint64_t from = i == 0 ? points_.back().at : points_[i - 1].at;
        const uint64_t arc = points_[i].at - from;  // wraps correctly for i == 0
        owned[index(points_[i].member)] += static_cast<double>(arc) / kCircle;
    }
    if (points_.size() == 1) owned[0] = 1.0;
    for (size_t m = 0; m < members_.size(); ++m)
        out.emplace_back(members_[m], owned[m]);
    return out;
}

}  // namespace chorus
