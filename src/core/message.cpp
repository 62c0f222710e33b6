#include "core/message.hpp"

namespace chorus {

// Upper bounds of the flatbuffers encoding (schemas/chorus.fbs). They decide how many updates
// fit in a packet, so they are kept tight, and test/wire/codec_test.cpp checks encoded <= bound
// on random content:
//   - a string costs its length prefix, its bytes, a terminator and up to 3 bytes of padding
//     (the offset that points at it is one of its table's fields);
//   - a table costs its offset to the vtable, its fields' bytes, and padding before and after;
//   - vtables are shared: the builder writes each distinct one once per buffer, so they are
//     charged once per packet, for every shape an update or tag can take, in kVtables;
//   - a union vector entry is a type byte and an offset.
namespace {

constexpr size_t string_bound(size_t len) {
    return 4 + len + 1 + 3;
}
constexpr size_t table_bound(size_t field_bytes) {
    return 4 + field_bytes + 7;
}
constexpr size_t kUnionEntry = 1 + 4;
// Packet (10 fields) and the largest body table (PingReq, 3); Alive (7 fields) in eight shapes
// (with and without tags, http and a 64-bit incarnation), Dead (5) in four (left set or not,
// the same), Suspect (4) in two, Tag (2) in two (empty value or not). A vtable is 4 bytes
// plus 2 per field, padded to 4.
constexpr size_t vtable(size_t fields) {
    return (4 + 2 * fields + 3) / 4 * 4;
}
constexpr size_t kVtables =
    vtable(10) + vtable(3) + 8 * vtable(7) + 4 * vtable(5) + 2 * vtable(4) + 2 * vtable(2);
// A 64-bit field costs its 8 bytes and up to 4 of alignment inside its table.
constexpr size_t kUint64Field = 8 + 4;

size_t tags_bound(const Tags& tags) {
    if (tags.empty()) return 0;
    size_t n = 4 + 3;  // vector length, padding
    for (const auto& [k, v] : tags)
        n += 4 + table_bound(8) + string_bound(k.size()) + string_bound(v.size());
    return n;
}

}  // namespace

size_t encoded_size_bound(const Update& u) {
    return std::visit(
        [](const auto& x) -> size_t {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, AliveUpdate>) {
                return kUnionEntry + table_bound(4 + 4 + 4 + 4 + 4 + 1 + kUint64Field) +
                       string_bound(x.name.size()) + string_bound(x.addr.value.size()) +
                       string_bound(x.http.size()) + tags_bound(x.tags);
            } else if constexpr (std::is_same_v<T, SuspectUpdate>) {
                return kUnionEntry + table_bound(4 + 4 + 4 + kUint64Field) +
                       string_bound(x.name.size()) + string_bound(x.from.size());
            } else {
                return kUnionEntry + table_bound(4 + 4 + 4 + 1 + kUint64Field + 1) +
                       string_bound(x.name.size()) + string_bound(x.from.size());
            }
        },
        u);
}

size_t encoded_size_bound(const Packet& p) {
    // Root offset and alignment; the Packet table (version, cluster, sender, sender_addr, load,
    // body type, body, update types, updates, ring checksum); its strings; both update
    // vectors' headers.
    size_t n = 8 + kVtables + table_bound(1 + 4 + 4 + 4 + 4 + 1 + 4 + 4 + 4 + 4) +
               string_bound(p.cluster.size()) + string_bound(p.sender.size()) +
               string_bound(p.sender_addr.value.size()) + 2 * (4 + 3);
    n += std::visit(
        [](const auto& b) -> size_t {
            using T = std::decay_t<decltype(b)>;
            if constexpr (std::is_same_v<T, std::monostate>) {
                return 0;
            } else if constexpr (std::is_same_v<T, Ping>) {
                return table_bound(4 + 4) + string_bound(b.target.size());
            } else if constexpr (std::is_same_v<T, PingReq>) {
                return table_bound(4 + 4 + 4) + string_bound(b.target.size()) +
                       string_bound(b.target_addr.value.size());
            } else {
                return table_bound(4);
            }
        },
        p.body);
    return n;
}

}  // namespace chorus
