#include "core/coordinator.hpp"

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

std::optional<Coordinator> coordinator_of(const MemberTable& members) {
    std::optional<Coordinator> best;
    // for_each walks names in order, so among equal priorities the first seen is the lowest.
    members.for_each([&](const Member& m) {
        if (m.state != MemberState::alive) return;
        const int64_t p = priority_of(m.tags());
        if (!best || p > best->priority) best = Coordinator{m.name, p};
    });
    return best;
}

}  // namespace chorus
