// fuzz_frame: a stream frame's body as it arrives on the agent's TCP port, through
// wire::decode_frame with the limits the daemon uses (cluster "chorus", as the seeds), and
// wire::decode_push_pull, which must agree with it. What decodes must round-trip through its
// encoder (encode(PushPull), encode(cluster, sender, TaskMessage)): it decodes again, to a
// value that encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <variant>

#include "check.hpp"
#include "core/config.hpp"
#include "wire/codec.hpp"

using namespace chorus;
using chorus::fuzz::check;

namespace {

std::vector<uint8_t> encode(const wire::Limits& l, const wire::Frame& f) {
    return std::visit(
        [&](const auto& m) -> std::vector<uint8_t> {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, PushPull>) {
                return wire::encode(m);
            } else if constexpr (kIsTaskMessage<T>) {
                return wire::encode(l.cluster, f.sender, TaskMessage(m));
            } else {
                return wire::encode(l.cluster, f.sender, wire::KeyringMessage(m));
            }
        },
        f.message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const wire::Limits limits = wire::limits_for(Config::lan());

    auto first = wire::decode_frame({data, size}, limits);
    auto pp = wire::decode_push_pull({data, size}, limits);
    check(pp.ok() == (first.ok() && std::holds_alternative<PushPull>(first->message)),
          "decode_push_pull accepts exactly the frames decode_frame reads as push-pulls");
    if (!first) {
        check(!first.error().detail.empty(), "a rejection says what was wrong");
        return 0;
    }
    if (const auto* p = std::get_if<PushPull>(&first->message)) {
        check(p->sender == first->sender, "a push-pull's sender is the frame's");
        check(p->members.size() == pp->members.size(), "both decoders read the same members");
    }

    const std::vector<uint8_t> bytes = encode(limits, *first);
    auto second = wire::decode_frame(bytes, limits);
    check(second.ok(), "a decoded frame, encoded again, decodes");
    check(second->message.index() == first->message.index(), "the round trip keeps the kind");
    check(second->sender == first->sender, "the round trip keeps the sender");
    check(encode(limits, *second) == bytes, "the round trip is stable: the same bytes again");
    return 0;
}
