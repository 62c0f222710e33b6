// The core's only source of randomness: a seeded xoshiro256** generator.
//
// We do not use <random>'s distributions because their output differs between standard
// libraries, and one seed must replay the same cluster everywhere. Seeding goes through
// splitmix64 as the xoshiro authors recommend; bounded integers use Lemire's multiply-shift
// with rejection, which is unbiased.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace chorus {

class Rng {
  public:
    explicit Rng(uint64_t seed) {
        for (auto& word : s_)
            word = splitmix64(seed);
    }

    uint64_t next() {
        const uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform integer in [0, bound); bound must be positive.
    uint64_t below(uint64_t bound) {
        __uint128_t m = static_cast<__uint128_t>(next()) * bound;
        auto low = static_cast<uint64_t>(m);
        if (low < bound) {
            const uint64_t threshold = -bound % bound;
            while (low < threshold) {
                m = static_cast<__uint128_t>(next()) * bound;
                low = static_cast<uint64_t>(m);
            }
        }
        return static_cast<uint64_t>(m >> 64);
    }

    // Uniform real in [0, 1) with 53 bits of precision.
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

    bool chance(double p) { return unit() < p; }

    // Fisher-Yates, so the permutation depends only on the seed.
    template <typename T>
    void shuffle(std::vector<T>& items) {
        for (size_t i = items.size(); i > 1; --i) {
            std::swap(items[i - 1], items[below(i)]);
        }
    }

    // A fresh seed for a child generator (one per simulated node, say).
    uint64_t fork() { return next(); }

  private:
    static uint64_t splitmix64(uint64_t& x) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

    uint64_t s_[4];
};

}  // namespace chorus
