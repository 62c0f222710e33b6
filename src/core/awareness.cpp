#include "core/awareness.hpp"

#include <algorithm>

namespace chorus {

void Awareness::apply(int delta) {
    const int64_t next = static_cast<int64_t>(score_) + delta;
    score_ = static_cast<uint32_t>(std::clamp<int64_t>(next, 0, max_ - 1));
}

}  // namespace chorus
