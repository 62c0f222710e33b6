#include "core/member_table.hpp"

#include <algorithm>

#include "core/assert.hpp"

namespace chorus {

MemberSnapshot Member::snapshot() const {
    return MemberSnapshot{name, addr, http, incarnation, state, tags(), load_milli, protocol};
}

const Tags& Member::tags() const {
    static const Tags none;
    return tags_ ? *tags_ : none;
}

void Member::set_tags(const Tags& t) {
    if (t.empty()) {
        tags_.reset();
    } else if (tags_) {
        *tags_ = t;
    } else {
        tags_ = std::make_unique<Tags>(t);
    }
}

bool alive_overrides(const Member& m, const AliveUpdate& u) {
    return u.incarnation > m.incarnation;
}

bool suspect_overrides(const Member& m, const SuspectUpdate& u) {
    switch (m.state) {
        case MemberState::alive:
            return u.incarnation >= m.incarnation;
        case MemberState::suspect:
            return u.incarnation > m.incarnation;
        case MemberState::dead:
        case MemberState::left:
            return false;
    }
    return false;
}

bool suspect_confirms(const Member& m, const SuspectUpdate& u) {
    return m.state == MemberState::suspect && u.incarnation == m.incarnation;
}

bool dead_overrides(const Member& m, const DeadUpdate& u) {
    if (u.incarnation < m.incarnation) return false;
    switch (m.state) {
        case MemberState::alive:
        case MemberState::suspect:
            return true;
        case MemberState::dead:
            return u.left;
        case MemberState::left:
            return false;
    }
    return false;
}

Member* MemberTable::find(const Name& name) {
    auto it = members_.find(name);
    return it == members_.end() ? nullptr : &it->second;
}

const Member* MemberTable::find(const Name& name) const {
    auto it = members_.find(name);
    return it == members_.end() ? nullptr : &it->second;
}

Member* MemberTable::add(Member m) {
    CHORUS_ASSERT(!m.name.empty());
    if (members_.size() + tombstones_.size() >= max_) return nullptr;
    tombstones_.erase(m.name);
    ++counts_[static_cast<size_t>(m.state)];
    auto [it, inserted] = members_.emplace(m.name, std::move(m));
    CHORUS_ASSERT(inserted);
    return &it->second;
}

void MemberTable::remove(const Name& name, Time tombstone_until) {
    auto it = members_.find(name);
    CHORUS_ASSERT(it != members_.end() && is_gone(it->second.state));
    --counts_[static_cast<size_t>(it->second.state)];
    tombstones_[name] = Tombstone{it->second.incarnation, tombstone_until};
    members_.erase(it);
}

std::optional<Incarnation> MemberTable::tombstone(const Name& name, Time now) const {
    auto it = tombstones_.find(name);
    if (it == tombstones_.end() || it->second.until <= now) return std::nullopt;
    return it->second.incarnation;
}

bool MemberTable::drop_oldest_tombstone() {
    if (tombstones_.empty()) return false;
    auto oldest = std::min_element(
        tombstones_.begin(), tombstones_.end(),
        [](const auto& a, const auto& b) { return a.second.until < b.second.until; });
    tombstones_.erase(oldest);
    return true;
}

void MemberTable::expire_tombstones(Time now) {
    std::erase_if(tombstones_, [now](const auto& kv) { return kv.second.until <= now; });
}

void MemberTable::set_state(Member& m, MemberState s, Time now) {
    --counts_[static_cast<size_t>(m.state)];
    ++counts_[static_cast<size_t>(s)];
    m.state = s;
    m.state_since = now;
    if (s != MemberState::suspect) m.suspicion.reset();
}

}  // namespace chorus
