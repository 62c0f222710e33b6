// Property checks inside fuzz targets. A broken property is a bug as much as a crash is: it
// prints what broke and aborts, which libFuzzer reports as a crash and saves the input for.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace chorus::fuzz {

inline void check(bool holds, const char* property) {
    if (holds) return;
    std::fprintf(stderr, "fuzz: property broken: %s\n", property);
    std::abort();
}

}  // namespace chorus::fuzz
