#include "core/router.hpp"

namespace chorus {

std::optional<size_t> choose_owner(std::span<const RouteCandidate> candidates, double phi_route) {
    const auto best_of = [&](bool healthy_only) -> std::optional<size_t> {
        std::optional<size_t> best;
        double best_load = 0;
        for (size_t i = 0; i < candidates.size(); ++i) {
            const RouteCandidate& c = candidates[i];
            if (!c.alive || (healthy_only && !(c.phi < phi_route))) continue;
            const double load = c.load + c.sent;
            // Strictly less: on equal load the earlier one, in ring order, keeps the key.
            if (!best || load < best_load) {
                best = i;
                best_load = load;
            }
        }
        return best;
    };
    if (auto healthy = best_of(true)) return healthy;
    return best_of(false);
}

}  // namespace chorus
