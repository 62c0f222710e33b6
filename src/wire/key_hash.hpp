// The hash of a task's key, which every member must compute alike: it places the key on the
// ring, and task ids carry it (core/task.hpp), so any member finds a task's candidates from its
// id alone. xxh3-64 (Debian's libxxhash); the core takes it as a KeyHash and stays standard
// library only.
#pragma once

#include <cstdint>
#include <string_view>

namespace chorus::wire {

uint64_t key_hash(std::string_view key);

}  // namespace chorus::wire
