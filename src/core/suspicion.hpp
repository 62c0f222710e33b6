// One suspicion of one member, with Lifeguard's dynamic timeout (Lifeguard §4.2,
// memberlist's suspicion.go).
//
// The timeout starts at `max` and shrinks toward `min` as independent members confirm the
// suspicion: with C of the K expected confirmations it is
//     max - (max - min) · log(C + 1) / log(K + 1),
// never below `min`. A lone accuser (perhaps slow itself) gives the target a long window to
// refute; a crash that several members see is declared quickly.
#pragma once

#include <cstdint>
#include <vector>

#include "core/time.hpp"
#include "core/types.hpp"

namespace chorus {

Duration suspicion_timeout(Duration min, Duration max, uint32_t confirmations, uint32_t expected);

class Suspicion {
  public:
    // `from` raised the suspicion; it is not counted as its own confirmation.
    Suspicion(Time start, Incarnation incarnation, Name from, Duration min, Duration max,
              uint32_t expected);

    // Records a confirmation from `from`; true if it was new and so moved the deadline.
    bool confirm(const Name& from);

    Time deadline() const;
    // A proof of life without a refutation: the suspicion starts over, confirmations kept.
    void restart(Time now) {
        start_ = now;
        checked_ = false;
    }
    // Whether the last-chance probe before the verdict was made (see Node).
    bool checked() const { return checked_; }
    void mark_checked() { checked_ = true; }
    uint32_t expected() const { return expected_; }
    Time start() const { return start_; }
    Incarnation incarnation() const { return incarnation_; }
    uint32_t confirmations() const { return static_cast<uint32_t>(confirmers_.size()); }

  private:
    Time start_;
    Incarnation incarnation_;
    Name accuser_;
    Duration min_;
    Duration max_;
    uint32_t expected_;
    std::vector<Name> confirmers_;  // at most `expected_`: more cannot shorten the timeout
    bool checked_ = false;
};

}  // namespace chorus
