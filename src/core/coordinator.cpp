#include "core/coordinator.hpp"

#include <algorithm>
#include <charconv>

namespace chorus {

int64_t priority_of(const Tags& tags) {
    const std::string* text = find_tag(tags, kPriorityTag);
    if (text == nullptr) return 0;
    int64_t p = 0;
    const char* end = text->data() + text->size();
    const auto [at, ec] = std::from_chars(text->data(), end, p);
    return ec == std::errc() && at == end ? p : 0;
}

namespace {

// The best `max` alive members `eligible` accepts, by priority, then the lowest name, kept
// sorted as the members go by: max is a handful, the table may hold thousands.
std::vector<Coordinator> line_of(const MemberTable& members, size_t max,
                                 const std::function<bool(const Member&)>& eligible) {
    std::vector<Coordinator> line;
    if (max == 0) return line;
    const auto before = [](const Coordinator& a, const Coordinator& b) {
        return a.priority != b.priority ? a.priority > b.priority : a.name < b.name;
    };
    members.for_each([&](const Member& m) {
        if (m.state != MemberState::alive || (eligible && !eligible(m))) return;
        Coordinator c{m.name, priority_of(m.tags())};
        if (line.size() == max && !before(c, line.back())) return;
        line.insert(std::upper_bound(line.begin(), line.end(), c, before), std::move(c));
        if (line.size() > max) line.pop_back();
    });
    return line;
}

}  // namespace

std::optional<Coordinator> coordinator_of(const MemberTable& members) {
    auto line = line_of(members, 1, {});
    if (line.empty()) return std::nullopt;
    return std::move(line.front());
}

std::vector<Name> succession(const MemberTable& members, size_t max,
                             const std::function<bool(const Member&)>& eligible) {
    std::vector<Coordinator> line = line_of(members, max, eligible);
    std::vector<Name> names;
    names.reserve(line.size());
    for (Coordinator& c : line)
        names.push_back(std::move(c.name));
    return names;
}

Quorum quorum_of(const MemberTable& members) {
    const size_t alive = members.count(MemberState::alive);
    return Quorum{alive,
                  alive + members.count(MemberState::suspect) + members.count(MemberState::dead)};
}

}  // namespace chorus
