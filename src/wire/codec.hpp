// The wire codec: core messages <-> flatbuffers bytes (schemas/chorus.fbs).
//
// Decoding is the boundary where untrusted bytes become trusted values. Every buffer passes the
// flatbuffers Verifier, then our own checks: size, protocol version, cluster name, and a limit
// on every string, vector and count. What fails is rejected with a reason the caller counts;
// nothing half-decoded ever reaches the core.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/message.hpp"
#include "core/result.hpp"
#include "core/task.hpp"

namespace chorus::wire {

// Oldest protocol version we still understand; packets outside [kMinVersion, kProtocolVersion]
// are rejected.
inline constexpr uint8_t kMinVersion = 1;

enum class DecodeError : uint8_t {
    too_large,      // longer than the configured maximum
    malformed,      // failed the flatbuffers Verifier (truncated, garbage, bad offsets)
    wrong_version,  // a protocol version we do not speak
    wrong_cluster,  // another cluster's traffic
    bad_field,      // verified, but a field breaks our bounds (empty name, too many tags, ...)
    // A name, address, tag, task key, id, type or owner that is not valid UTF-8 or holds a
    // control character (core/text.hpp): it could not be shown as JSON or logged safely.
    bad_encoding,
    // Sealed under a key this node does not have, or changed on the way, or in clear where
    // only sealed messages are taken (net/seal.hpp). Counted here, though the wire codec never
    // sees it, so every rejected datagram is counted in one place.
    unsealed,
};
inline constexpr size_t kDecodeErrors = 7;
std::string_view to_string(DecodeError e);

struct DecodeFailure {
    DecodeError reason;
    std::string detail;
};

template <typename T>
using Decoded = Result<T, DecodeFailure>;

struct Limits {
    std::string cluster;
    size_t packet_bytes_max = 1400;
    // A push-pull frame carries the whole member table; 64 MiB holds far more than members_max
    // members with their tags at the default limits.
    size_t frame_bytes_max = 64u << 20;
    uint32_t name_bytes_max = 128;
    uint32_t addr_bytes_max = 256;
    uint32_t tags_max = 32;
    uint32_t tag_bytes_max = 512;
    uint32_t updates_max = 256;
    uint32_t members_max = 65536;
    // Task frames (TaskLimits sets these in the daemon).
    size_t task_id_bytes_max = 17 + kTaskNameMax;
    size_t task_key_bytes_max = 512;
    size_t task_type_bytes_max = 128;
    size_t task_payload_bytes_max = 1u << 20;
    size_t task_result_bytes_max = 1u << 20;
    size_t task_text_bytes_max = 64u << 10;  // error messages
};
Limits limits_for(const Config& c, const TaskLimits& t = {});

std::vector<uint8_t> encode(const Packet& p);
Decoded<Packet> decode_packet(std::span<const uint8_t> bytes, const Limits& limits);

std::vector<uint8_t> encode(const PushPull& p);
Decoded<PushPull> decode_push_pull(std::span<const uint8_t> bytes, const Limits& limits);

// Task frames (core/task.hpp's TaskMessage) travel on the same streams as push-pulls.
std::vector<uint8_t> encode(std::string_view cluster, const Name& sender, const TaskMessage& m);

// Keyring frames (net/seal.hpp's keyring, changed cluster-wide by `chorus keys`). A key is 32
// bytes; a reply with a `code` is a refusal, and then its keys are empty.
using KeyBytes = std::array<uint8_t, 32>;
struct KeyringOp {
    enum class Kind : uint8_t { list, install, use, remove };
    uint64_t request = 0;
    Kind kind = Kind::list;
    KeyBytes key{};  // unused for a list
    uint64_t issued_ms = 0;
    uint64_t nonce = 0;
};
struct KeyringReply {
    uint64_t request = 0;
    std::string code, message;
    std::vector<KeyBytes> keys;
    uint32_t primary = 0;
};
using KeyringMessage = std::variant<KeyringOp, KeyringReply>;
std::vector<uint8_t> encode(std::string_view cluster, const Name& sender, const KeyringMessage& m);
inline constexpr size_t kKeyringKeysMax = 64;  // keys a reply may carry

// Any stream frame: a push-pull, a task message or a keyring message, from `sender`.
struct Frame {
    Name sender;
    std::variant<PushPull, TaskSubmit, TaskQuery, TaskReply, TaskCopy, KeyringOp, KeyringReply>
        message;
};
Decoded<Frame> decode_frame(std::span<const uint8_t> bytes, const Limits& limits);

// Counts of rejected inputs by reason, for metrics.
struct DecodeStats {
    std::array<uint64_t, kDecodeErrors> rejected{};
    void count(DecodeError e) { ++rejected[static_cast<size_t>(e)]; }
    uint64_t total() const;
};

}  // namespace chorus::wire
