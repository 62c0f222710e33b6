// Encrypted, authenticated datagrams and frames: AES-256-GCM through OpenSSL's EVP, under a
// keyring that one primary key seals with and every installed key opens (memberlist's keyring,
// so a key can be rotated in without downtime: install everywhere, use, remove the old one).
//
// A sealed message is
//
//   version (1) | salt (16) | counter (8, big-endian) | ciphertext | tag (16)
//
// and the cluster name, with the 25-byte header, is the associated data: a message sealed for
// another cluster, or with any byte changed, does not open.
//
// Nonces never repeat under one key. GCM's nonce is 96 bits; random nonces would be safe only
// up to 2^32 messages per key (NIST SP 800-38D), which a busy cluster passes in hours. So each
// Sealer (one per process, made at start) draws a random 128-bit salt and seals under its own
// subkey, HMAC-SHA256(key, "chorus seal 1" | salt), with a 64-bit counter it never repeats as the
// nonce. Two processes share a subkey only if they draw the same salt (odds of 2^-128 a pair),
// and within one subkey the counter is unique. A receiver derives a sender's subkey once and
// keeps it (a bounded cache of subkeys that opened a message: a forger's salts never enter it).
//
// Not here: replay. A recorded message opens again until its key is removed; the protocols above
// tolerate repeats (incarnations order membership updates, task ids make submissions idempotent),
// and keyring ops, which would not, carry their own time and nonce (schemas/chorus.fbs).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace chorus::net {

using Key = std::array<uint8_t, 32>;

// A new random key (OpenSSL's CSPRNG), and keys as operators write them: standard base64 of the
// 32 bytes (44 characters), as `chorus keygen` prints and memberlist/Serf take theirs.
Key new_key();
uint64_t random_u64();  // from the same generator: ids an attacker must not guess
std::string key_to_base64(const Key& k);
Result<Key> key_from_base64(std::string_view text);

using Digest = std::array<uint8_t, 32>;
Digest sha256(std::string_view bytes);
std::string to_hex(std::span<const uint8_t> bytes);
// "sha256:" and the first 8 hex digits of the key's hash: names a key in logs, safely.
std::string key_fingerprint(const Key& k);

inline constexpr size_t kSealHeaderBytes = 1 + 16 + 8;
inline constexpr size_t kSealTagBytes = 16;
// What sealing adds to a message: the packet budget of a datagram shrinks by this much.
inline constexpr size_t kSealOverhead = kSealHeaderBytes + kSealTagBytes;

class Keyring {
  public:
    // The first key is the primary. Errors: `bad_key` (no key, or the same key twice).
    static Result<Keyring> make(std::vector<Key> keys);

    const Key& primary() const { return keys_[primary_]; }
    const std::vector<Key>& keys() const { return keys_; }
    // Adds a key that opens messages (already there: nothing changes).
    void install(const Key& k);
    // Makes an installed key the one that seals. Error: `unknown_key`.
    Status use(const Key& k);
    // Removes a key. Errors: `unknown_key`; `primary_key` (switch to another key first).
    Status remove(const Key& k);

  private:
    Keyring() = default;  // never empty: make() is the way in
    std::vector<Key> keys_;
    size_t primary_ = 0;
};

class Sealer {
  public:
    explicit Sealer(Keyring ring);
    ~Sealer();
    Sealer(const Sealer&) = delete;
    Sealer& operator=(const Sealer&) = delete;

    Keyring& keyring() { return ring_; }
    const Keyring& keyring() const { return ring_; }

    // Seals `plain` for `cluster` under the primary key.
    std::vector<uint8_t> seal(std::string_view cluster, std::span<const uint8_t> plain);
    // Opens a message sealed under any installed key. Errors: `bad_seal` (too short, an unknown
    // version: not a sealed message at all), `unsealed` (no installed key opens it: another
    // key, another cluster, or a changed byte).
    Result<std::vector<uint8_t>> open(std::string_view cluster, std::span<const uint8_t> sealed);

    struct Stats {
        uint64_t sealed = 0;
        uint64_t opened = 0;
        uint64_t refused = 0;  // bad_seal and unsealed
    };
    const Stats& stats() const { return stats_; }
    // Senders' subkeys kept, at most kPeerSubkeysMax (a cluster's live processes, with room).
    static constexpr size_t kPeerSubkeysMax = 1024;
    size_t peer_subkeys() const { return peers_.size(); }

  private:
    struct Subkey;  // a derived key with its cipher context, ready to use
    using PeerId = std::array<uint8_t, 32 + 16>;  // the key, then the sender's salt
    Subkey& own_subkey();
    // try_open(subkey) with key `k` and the sender's `salt`: the subkey kept for them, or one
    // derived and, if it opens the message, kept. (Defined in seal.cpp, its one user.)
    template <typename TryOpen>
    bool open_with(const Key& k, std::span<const uint8_t> salt, const TryOpen& try_open);

    Keyring ring_;
    std::array<uint8_t, 16> salt_{};
    uint64_t counter_ = 0;
    std::unique_ptr<Subkey> own_;  // for the primary key it was made for
    Key own_for_{};
    // Senders' subkeys that opened a message: (key, salt) -> subkey, oldest dropped first.
    std::map<PeerId, std::unique_ptr<Subkey>> peers_;
    std::deque<PeerId> peer_order_;
    Stats stats_;
};

// What a node does with the datagrams and frames it sends and receives once it has keys: it
// seals what it sends while `outgoing` is on, and opens what it receives, taking messages in
// clear as well while `incoming` is off. Both on is the steady state. The two switches are
// memberlist's gossip_verify_outgoing and gossip_verify_incoming, and they let a running cluster
// move to encryption without downtime:
//   1. every agent restarts with the key and both off: it still sends in clear, and opens
//      sealed messages from those that moved on;
//   2. then with outgoing on: every agent seals, and still takes clear messages from the
//      agents not yet restarted;
//   3. then with both on: clear messages are refused.
struct EnvelopeOptions {
    bool incoming = true;
    bool outgoing = true;
};

class Envelope {
  public:
    Envelope(Keyring ring, std::string cluster, EnvelopeOptions o)
        : sealer_(std::move(ring)), cluster_(std::move(cluster)), options_(o) {}

    // Whether what this node sends is sealed (outgoing on); if not, it goes as it is.
    bool seals() const { return options_.outgoing; }
    std::vector<uint8_t> seal(std::span<const uint8_t> plain) {
        return sealer_.seal(cluster_, plain);
    }
    // Opened. A message no installed key opens is refused (`bad_seal`, `unsealed`: see
    // Sealer::open) unless incoming is off; then it is passed on as it came, to be decoded as a
    // message in clear (and rejected there if it is not one).
    Result<std::vector<uint8_t>> unwrap(std::span<const uint8_t> bytes);

    Sealer& sealer() { return sealer_; }
    const Sealer& sealer() const { return sealer_; }
    const EnvelopeOptions& options() const { return options_; }
    uint64_t clear_taken() const { return clear_taken_; }  // in clear, while incoming is off

  private:
    Sealer sealer_;
    std::string cluster_;
    EnvelopeOptions options_;
    uint64_t clear_taken_ = 0;
};

}  // namespace chorus::net
