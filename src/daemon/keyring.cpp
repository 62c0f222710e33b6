#include "daemon/keyring.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/files.hpp"
#include "daemon/json.hpp"

namespace chorus::daemon {

Result<std::optional<net::Keyring>> load_keyring(const std::string& path) {
    auto text = read_small_file(path);
    if (!text) return Error{"bad_keyring", text.error().message};
    if (!*text) return std::optional<net::Keyring>{};
    const auto bad = [&](std::string_view why) {
        return Error{"bad_keyring",
                     fmt::format("{} is not a keyring ({}): move it away to start from --encrypt "
                                 "alone",
                                 path, why)};
    };
    auto j = parse_json(**text);
    if (!j) return bad(j.error().message);
    if (!j->is_object() || !(*j)["keys"].is_array() || !(*j)["primary"].is_string()) {
        return bad(R"(it must hold {"keys": [...], "primary": "..."})");
    }
    if ((*j)["keys"].size() > wire::kKeyringKeysMax) {
        // More than a reply can carry: every member's list of this one would be refused.
        return bad(fmt::format("{} keys, over the {} a keyring holds", (*j)["keys"].size(),
                               wire::kKeyringKeysMax));
    }
    std::vector<net::Key> keys;
    for (const auto& k : (*j)["keys"]) {
        if (!k.is_string()) return bad("a key that is not a string");
        auto key = net::key_from_base64(k.get<std::string>());
        if (!key) return bad(key.error().message);
        keys.push_back(*key);
    }
    auto primary = net::key_from_base64((*j)["primary"].get<std::string>());
    if (!primary) return bad(primary.error().message);
    auto ring = net::Keyring::make(std::move(keys));
    if (!ring) return bad(ring.error().message);
    if (!ring->use(*primary)) return bad("its primary key is not one of its keys");
    return std::optional<net::Keyring>(std::move(*ring));
}

Status save_keyring(const std::string& path, const net::Keyring& ring) {
    nlohmann::json j;
    j["keys"] = nlohmann::json::array();
    for (const net::Key& k : ring.keys())
        j["keys"].push_back(net::key_to_base64(k));
    j["primary"] = net::key_to_base64(ring.primary());
    return replace_file(path, j.dump(2) + "\n", "keyring_unsaved");
}

wire::KeyringReply apply_keyring_op(net::Keyring& ring, const std::string& path,
                                    const wire::KeyringOp& op) {
    wire::KeyringReply reply;
    net::Keyring changed = ring;
    Status st = Ok{};
    switch (op.kind) {
        case wire::KeyringOp::Kind::list:
            break;
        case wire::KeyringOp::Kind::install:
            if (changed.keys().size() >= wire::kKeyringKeysMax) {
                st = Error{"keyring_full", fmt::format("{} keys are installed, the most a keyring "
                                                       "holds: remove one first",
                                                       changed.keys().size())};
            } else {
                changed.install(op.key);
            }
            break;
        case wire::KeyringOp::Kind::use:
            st = changed.use(op.key);
            break;
        case wire::KeyringOp::Kind::remove:
            // A key already gone is removed: a remove run again after some members missed it
            // must still reach them.
            if (std::find(changed.keys().begin(), changed.keys().end(), op.key) !=
                changed.keys().end()) {
                st = changed.remove(op.key);
            }
            break;
    }
    if (st && !path.empty() &&
        (changed.keys() != ring.keys() || changed.primary() != ring.primary())) {
        st = save_keyring(path, changed);
    }
    if (!st) {
        reply.code = st.error().code;
        reply.message = st.error().message;
        return reply;
    }
    ring = std::move(changed);
    reply.keys.assign(ring.keys().begin(), ring.keys().end());
    for (uint32_t i = 0; i < reply.keys.size(); ++i) {
        if (reply.keys[i] == ring.primary()) reply.primary = i;
    }
    return reply;
}

}  // namespace chorus::daemon
