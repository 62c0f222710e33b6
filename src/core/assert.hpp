// Always-on assertions for programmer errors (STYLE §6). They stay in release builds: a broken
// invariant in a membership protocol is better stopped loudly than gossiped to the cluster.
// Bad input from the network or a user is never asserted on; it is an error value.
#pragma once

#include <cstdio>
#include <cstdlib>

#define CHORUS_ASSERT(cond)                                                                   \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            std::fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                     \
        }                                                                                     \
    } while (0)
