// A member's tags as the agent handles them: the operator's (--tag, `chorus tags`), checked the
// same way wherever they come from and kept in the data dir, and the agent's own under
// kReservedTagPrefix (its handlers, whether it drains), which it sets itself.
//
// DATA_DIR/tags.json holds the operator's tags as `chorus tags` last left them:
// {"tags": {"role": "gpu", ...}}. Found at start, it wins over --tag (as the kept keyring wins
// over --encrypt), and the agent's notes say so.
#pragma once

#include <optional>
#include <string>

#include "core/config.hpp"
#include "core/message.hpp"
#include "core/result.hpp"
#include "core/types.hpp"

namespace chorus::daemon {

// Checks the operator's tags: non-empty names outside the reserved prefix, clean text, and
// with the agent's own tags (`reserved`) within the count and size a packet's reader allows
// (Config::tags_max, tag_bytes_max). Errors: `bad_tag`, naming the tag.
Status check_tags(const Tags& operator_tags, const Tags& reserved, const Config& c);

// The operator's part of a member's tags, and the agent's own.
Tags operator_tags(const Tags& all);
Tags reserved_tags(const Tags& all);

// Whether a member's announcement of itself fits in a packet beside an ack: one that does not
// is never gossiped, and the member could refute a suspicion only through push-pull, long after
// its peers declared it dead. `sealed`: the packet carries the seal's overhead too.
Status check_announcement(const AliveUpdate& self, const std::string& cluster, bool sealed,
                          const Config& c);

// "role=gpu, zone=b", or "none".
std::string tags_text(const Tags& tags);

// The tags kept in `path`, if there is a file. Errors name the file and what to do.
Result<std::optional<Tags>> load_tags(const std::string& path);
Status save_tags(const std::string& path, const Tags& tags);

}  // namespace chorus::daemon
