#include "wire/key_hash.hpp"

// xxh3 inlined from the header: nothing to link (static builds included), and the hash of a
// short key compiles down to a few dozen instructions.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace chorus::wire {

uint64_t key_hash(std::string_view key) {
    return XXH3_64bits(key.data(), key.size());
}

}  // namespace chorus::wire
