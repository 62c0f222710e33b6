// fuzz_packet: a datagram as it arrives on the gossip port, through wire::decode_packet with the
// limits the daemon uses (cluster "chorus", as the seeds). What decodes must round-trip: encoded
// again it decodes, and encodes to the same bytes; and the core's size bound holds for it, since
// the core fills packets to packet_bytes_max by that bound (src/core/message.hpp).
#include <cstddef>
#include <cstdint>

#include "check.hpp"
#include "core/config.hpp"
#include "wire/codec.hpp"

using namespace chorus;
using chorus::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const wire::Limits limits = wire::limits_for(Config::lan());
    // A re-encoded packet may be longer than its source: the flatbuffers a peer sends may share
    // one string between fields, the encoder writes each. Only the size limit is relaxed.
    static const wire::Limits relaxed = [] {
        wire::Limits l = limits;
        l.packet_bytes_max = SIZE_MAX;
        return l;
    }();

    auto first = wire::decode_packet({data, size}, limits);
    if (!first) {
        check(!first.error().detail.empty(), "a rejection says what was wrong");
        return 0;
    }
    const std::vector<uint8_t> bytes = wire::encode(*first);
    size_t bound = encoded_size_bound(*first);
    for (const Update& u : first->updates)
        bound += encoded_size_bound(u);
    check(bytes.size() <= bound, "a decoded packet encodes within the core's size bound");

    auto second = wire::decode_packet(bytes, relaxed);
    check(second.ok(), "a decoded packet, encoded again, decodes");
    check(second->updates.size() == first->updates.size(), "the round trip keeps every update");
    check(wire::encode(*second) == bytes, "the round trip is stable: the same bytes again");
    return 0;
}
