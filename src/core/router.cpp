#include "core/router.hpp"

namespace chorus {

std::optional<size_t> choose_owner(std::span<const RouteCandidate> candidates, double phi_route,
                                   double balance_factor) {
    const auto healthy = [&](const RouteCandidate& c) {
        return c.alive && c.accepting && !c.quiet && c.phi < phi_route;
    };
    if (balance_factor > 0) {
        double sum = 0;
        size_t n = 0;
        for (const RouteCandidate& c : candidates) {
            if (!healthy(c)) continue;
            sum += c.load + c.sent;
            ++n;
        }
        const double bound = n == 0 ? 0 : balance_factor * sum / static_cast<double>(n);
        for (size_t i = 0; i < candidates.size(); ++i) {
            const RouteCandidate& c = candidates[i];
            if (healthy(c) && c.load + c.sent <= bound) return i;
        }
    }
    const auto best_of = [&](bool healthy_only) -> std::optional<size_t> {
        std::optional<size_t> best;
        double best_load = 0;
        for (size_t i = 0; i < candidates.size(); ++i) {
            const RouteCandidate& c = candidates[i];
            if (!c.alive || (healthy_only && !healthy(c))) continue;
            const double load = c.load + c.sent;
            // Strictly less: on equal load the earlier one, in ring order, keeps the key.
            if (!best || load < best_load) {
                best = i;
                best_load = load;
            }
        }
        return best;
    };
    if (auto best = best_of(true)) return best;
    return best_of(false);
}

}  // namespace chorus
