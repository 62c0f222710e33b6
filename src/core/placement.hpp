// The entry node's search for a task's owner (ARCHITECTURE.md, "Tasks"): which candidate to
// try next, and the answer once none is left. Pure: the driver gathers the key's candidates
// as the router sees them now, sends the task to the owner named, and reports a refusal.
//
// A candidate that refused, timed out or could not be reached is not tried again for the same
// task; every other candidate is, in the router's order, so a refusal costs one more round
// trip, not the task. When none is left, the answer says why: no candidate alive at all
// (`no_owner`), every one tried unable to store the task on enough members
// (`not_replicated`: nothing runs, try later), or a mix of refusals (`all_refused`).
#pragma once

#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/name.hpp"
#include "core/router.hpp"

namespace chorus {

class Placement {
  public:
    explicit Placement(std::string key) : key_(std::move(key)) {}

    struct Try {  // send the task to this candidate
        Name owner;
    };
    struct GiveUp {  // no candidate left: answer the client with this (a 503)
        std::string code;
        std::string message;
    };
    // The next candidate to try, or the end of the search. `candidates` are the key's, in
    // ring order, as the router sees them now (membership may have moved since the last try).
    std::variant<Try, GiveUp> next(std::vector<RouteCandidate> candidates, double phi_route,
                                   double balance_factor) const;
    // `owner` did not take the task: `code` is its refusal's code ("timeout", "closed" or
    // "unreachable" when it did not answer), `why` its words.
    void refused(const Name& owner, std::string_view code, std::string_view why);

    size_t tried() const { return tried_.size(); }
    bool tried(const Name& owner) const { return tried_.contains(owner); }
    const std::set<Name>& tried_owners() const { return tried_; }

  private:
    std::string key_;
    std::set<Name> tried_;
    std::vector<std::string> refusals_;  // "name: why", for the answer if every one refuses
    size_t not_replicated_ = 0;          // refusals for want of copies
};

}  // namespace chorus
