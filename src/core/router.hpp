// Which of a key's candidate owners runs a task (ARCHITECTURE.md, "Tasks"). Pure: the caller
// gathers the candidates from the ring's preference list and the member table.
//
// Healthy candidates (alive, φ below phi_route, not quiet) are preferred; φ and a request that
// timed out let the router step around a member that has gone quiet before membership
// declares anything. Of those, the least
// loaded wins, and ties go to ring order, so an idle cluster keeps every key on its primary
// (key affinity). A candidate's load is what it last reported plus what this node has sent
// it since, so a burst from one node spreads instead of herding onto the member that looked
// idlest a moment ago. Only when no candidate is healthy does an alive but high-φ one serve,
// or one that says it is refusing tasks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/name.hpp"

namespace chorus {

// The load a node reports while it takes no tasks (its journal cannot store them): peers pass
// it over as they pass over a high-φ one, and it refuses whatever still reaches it.
inline constexpr uint32_t kLoadRefusing = UINT32_MAX;

struct RouteCandidate {
    Name name;
    bool alive = false;     // alive in our view; suspect, dead and left are not
    bool accepting = true;  // false: it reports kLoadRefusing
    bool quiet = false;     // a request to it timed out, and it has said nothing since
    double phi = 0;
    double load = 0;  // last reported (running + queued) / capacity: 0 idle, 1 full
    double sent = 0;  // load this node added since that report (tasks sent / capacity)
};

// Index of the chosen candidate (`candidates` is in ring order), or nullopt if none is alive.
//
// With balance_factor > 0 the choice keeps more affinity (bounded loads, as HAProxy's
// hash-balance-factor after Mirrokni et al.): the first healthy candidate in ring order whose
// load is at most balance_factor × the healthy candidates' mean load serves, and only when
// every one is above that bound does the least loaded serve. 0 (the default) always takes
// the least loaded.
std::optional<size_t> choose_owner(std::span<const RouteCandidate> candidates, double phi_route,
                                   double balance_factor = 0);

}  // namespace chorus
