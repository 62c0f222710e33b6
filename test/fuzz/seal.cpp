// fuzz_seal: bytes as they arrive on the agent's gossip port when encryption is on, through
// net::Sealer::open under a fixed key (the one make_seeds sealed corpus/seal with) and the
// daemon's default cluster. Whatever opens must seal and open again to the same bytes; any
// input sealed as it is must open to itself; and the same sealed bytes with one bit changed
// (where the input's first byte says) must not open.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "check.hpp"
#include "net/seal.hpp"

using namespace chorus;
using chorus::fuzz::check;

namespace {

net::Key fixed_key() {
    net::Key k{};
    for (size_t i = 0; i < k.size(); ++i)
        k[i] = static_cast<uint8_t>(i);
    return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static net::Sealer sealer(net::Keyring::make({fixed_key()}).value());
    const std::span<const uint8_t> in(data, size);

    auto opened = sealer.open("chorus", in);
    check(opened.ok() || size >= net::kSealOverhead || opened.error().code == "bad_seal",
          "a message too short to be sealed is refused as bad_seal");
    if (opened) {
        check(opened->size() + net::kSealOverhead == size, "opening strips exactly the overhead");
        auto again = sealer.open("chorus", sealer.seal("chorus", *opened));
        check(again.ok() && *again == *opened, "what opened seals and opens to the same bytes");
        check(!sealer.open("another", in).ok(), "a sealed message opens for its cluster only");
    }

    auto sealed = sealer.seal("chorus", in);
    auto back = sealer.open("chorus", sealed);
    check(back.ok() && *back == std::vector<uint8_t>(in.begin(), in.end()),
          "any bytes seal and open to themselves");
    if (size > 0) {
        const size_t bit = (size_t{data[0]} * 131 + size) % (sealed.size() * 8);
        sealed[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
        check(!sealer.open("chorus", sealed).ok(), "a sealed message with a bit changed fails");
    }
    return 0;
}
