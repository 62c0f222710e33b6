#include "daemon/keyring.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/journal.hpp"
#include "daemon/json.hpp"

namespace chorus::daemon {

namespace {

Error io_error(const std::string& what, const std::string& path) {
    return Error{"keyring_unsaved", fmt::format("{} {}: {}", what, path, std::strerror(errno))};
}

}  // namespace

Result<std::optional<net::Keyring>> load_keyring(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        if (errno == ENOENT) return std::optional<net::Keyring>{};
        return Error{"bad_keyring", fmt::format("cannot read {}: {}", path, std::strerror(errno))};
    }
    std::stringstream text;
    text << in.rdbuf();
    const auto bad = [&](std::string_view why) {
        return Error{"bad_keyring",
                     fmt::format("{} is not a keyring ({}): move it away to start from --encrypt "
                                 "alone",
                                 path, why)};
    };
    auto j = parse_json(text.str());
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
    const std::string text = j.dump(2) + "\n";
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    if (auto st = make_data_dir(dir); !st) return Error{"keyring_unsaved", st.error().message};
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return io_error("cannot create", tmp);
    ::fchmod(fd, 0600);  // a leftover temporary file keeps its mode through O_CREAT
    const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    const bool synced = written && ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) {
        const Error e = io_error("cannot write", tmp);
        ::unlink(tmp.c_str());
        return e;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) return io_error("cannot replace", path);
    // The rename itself is kept only once the folder is synced.
    if (const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {
        ::fsync(d);
        ::close(d);
    }
    return Ok{};
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
