// Local health awareness (Lifeguard §4.1, memberlist's awareness.go).
//
// A node that fails to get acks, misses the nacks its relays owe it, or has to refute a
// suspicion about itself is more likely slow itself than surrounded by dead peers. Its score
// rises, and it stretches its probe interval and timeouts by (1 + score), so it accuses others
// less while it is unwell. Each successful probe lowers the score again.
#pragma once

#include <cstdint>

#include "core/time.hpp"

namespace chorus {

class Awareness {
  public:
    explicit Awareness(uint32_t max) : max_(max) {}

    void apply(int delta);
    uint32_t score() const { return score_; }
    Duration scale(Duration d) const { return d * (score_ + 1); }

  private:
    uint32_t max_;
    uint32_t score_ = 0;
};

}  // namespace chorus
