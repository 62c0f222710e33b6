// The keyring an agent seals with (net/seal.hpp), kept in its data dir so a restart keeps what
// `chorus keys` changed, and the one member's side of a keyring op.
//
// The file, DATA_DIR/keyring.json, is {"keys": ["base64", ...], "primary": "base64"}, mode 0600
// (it holds the cluster's secrets), written to a temporary file, synced and renamed over the
// old one, so a crash leaves either the old keyring or the new one, never half of either.
#pragma once

#include <optional>
#include <string>

#include "core/result.hpp"
#include "net/seal.hpp"
#include "wire/codec.hpp"

namespace chorus::daemon {

// The keyring in `path`, if there is one. Errors: a file that cannot be read or is not a
// keyring, named with what to do.
Result<std::optional<net::Keyring>> load_keyring(const std::string& path);
Status save_keyring(const std::string& path, const net::Keyring& ring);

// Applies `op` to this member's keyring and keeps it (`path` empty: in memory only). The reply
// holds the keyring after the op, or why it was refused: `unknown_key` (use of a key not
// installed), `primary_key` (see net::Keyring), `keyring_full`, `keyring_unsaved` (the file could
// not be written: nothing changed). Installing a key that is there, or removing one that is not,
// changes nothing and succeeds, so an op run again after a partial failure reaches every member.
wire::KeyringReply apply_keyring_op(net::Keyring& ring, const std::string& path,
                                    const wire::KeyringOp& op);

}  // namespace chorus::daemon
