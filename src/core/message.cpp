#include "core/message.hpp"

namespace chorus {

// Upper bounds of the flatbuffers encoding (schemas/chorus.fbs), deliberately generous:
// a string costs the offset that points at it, its length prefix, its terminator and up to 3
// bytes of padding; a table costs its vtable (4 + 2 per field, padded), its offset to the
// vtable and at most 4 bytes per field (no field is wider, and the generated builders add the
// widest first, so padding stays under one word). test/wire/codec_test.cpp checks
// encoded <= bound on random content.
namespace {

constexpr size_t string_bound(size_t len) {
    return 4 + 4 + len + 1 + 3;
}
constexpr size_t table_bound(size_t fields) {
    return 16 + 6 * fields;
}
constexpr size_t kUnionEntry = 8;  // type byte and offset, with alignment

size_t tags_bound(const Tags& tags) {
    size_t n = 4 + 4 + 4;  // vector length, offset to it, alignment
    for (const auto& [k, v] : tags)
        n += 4 + table_bound(2) + string_bound(k.size()) + string_bound(v.size());
    return n;
}

}  // namespace

size_t encoded_size_bound(const Update& u) {
    return std::visit(
        [](const auto& x) -> size_t {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, AliveUpdate>) {
                return kUnionEntry + table_bound(6) + string_bound(x.name.size()) +
                       string_bound(x.addr.value.size()) + string_bound(x.http.size()) +
                       tags_bound(x.tags);
            } else {
                return kUnionEntry + table_bound(4) + string_bound(x.name.size()) +
                       string_bound(x.from.size());
            }
        },
        u);
}

size_t encoded_size_bound(const Packet& p) {
    size_t n = 8 + table_bound(9) + string_bound(p.cluster.size()) + string_bound(p.sender.size()) +
               string_bound(p.sender_addr.value.size());
    n += 2 * (4 + 4 + 4);  // the update vectors' headers (types and values), with alignment
    n += std::visit(
        [](const auto& b) -> size_t {
            using T = std::decay_t<decltype(b)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
                return 0;
            } else if constexpr (std::is_same_v<T, Ping>) {
                return table_bound(2) + string_bound(b.target.size());
            } else if constexpr (std::is_same_v<T, PingReq>) {
                return table_bound(3) + string_bound(b.target.size()) +
                       string_bound(b.target_addr.value.size());
            } else {
                return table_bound(1);
            }
        },
        p.body);
    return n;
}

}  // namespace chorus
