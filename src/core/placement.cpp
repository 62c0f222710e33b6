#include "core/placement.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace chorus {

std::variant<Placement::Try, Placement::GiveUp> Placement::next(
    std::vector<RouteCandidate> candidates, double phi_route, double balance_factor) const {
    std::vector<std::string> listed;
    for (RouteCandidate& c : candidates) {
        listed.push_back(c.name.str());
        if (tried_.contains(c.name)) c.alive = false;  // it had its chance
    }
    if (const auto choice = choose_owner(candidates, phi_route, balance_factor)) {
        return Try{candidates[*choice].name};
    }
    if (tried_.empty()) {
        return GiveUp{"no_owner",
                      fmt::format("no alive member owns key '{}' (its candidates: {}); wait for "
                                  "members to join or recover",
                                  key_, fmt::join(listed, ", "))};
    }
    if (not_replicated_ == tried_.size()) {
        return GiveUp{"not_replicated",
                      fmt::format("no candidate owner of key '{}' could store the task on enough "
                                  "members, and it does not run ({}); retry later",
                                  key_, fmt::join(refusals_, "; "))};
    }
    return GiveUp{"all_refused",
                  fmt::format("every candidate owner of key '{}' refused or did not answer ({}); "
                              "retry later",
                              key_, fmt::join(refusals_, "; "))};
}

void Placement::refused(const Name& owner, std::string_view code, std::string_view why) {
    if (!tried_.insert(owner).second) return;  // one refusal per candidate counts
    if (code == "not_replicated") ++not_replicated_;
    refusals_.push_back(fmt::format("{}: {}", owner.str(), why));
}

}  // namespace chorus
