#include "daemon/keyring.hpp"

#include <sys/stat.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "daemon/temp_dir.hpp"

using namespace chorus;
using namespace chorus::daemon;
using chorus::test::TempDir;

namespace {
wire::KeyringOp op(wire::KeyringOp::Kind kind, const net::Key& k = {}) {
    return wire::KeyringOp{1, kind, k};
}
}  // namespace

TEST_CASE("a keyring op changes the keyring and the file, or neither") {
    TempDir d;
    const std::string path = d.path + "/sub/keyring.json";  // the folder is made too
    const net::Key first = net::new_key(), second = net::new_key();
    net::Keyring ring = net::Keyring::make({first}).value();

    auto r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::install, second));
    REQUIRE(r.code.empty());
    REQUIRE(r.keys.size() == 2);
    REQUIRE(r.keys[r.primary] == first);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    REQUIRE((st.st_mode & 0777) == 0600);

    r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::use, second));
    REQUIRE(r.keys[r.primary] == second);
    r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::remove, first));
    REQUIRE(r.keys == std::vector<wire::KeyBytes>{second});

    // What a restart reads back.
    auto kept = load_keyring(path);
    REQUIRE(kept.ok());
    REQUIRE(kept->has_value());
    REQUIRE((*kept)->keys() == std::vector<net::Key>{second});
    REQUIRE((*kept)->primary() == second);

    SECTION("a refused op changes nothing and says why") {
        r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::remove, second));
        REQUIRE(r.code == "primary_key");
        REQUIRE(r.keys.empty());
        r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::use, first));
        REQUIRE(r.code == "unknown_key");
        REQUIRE(ring.primary() == second);
        REQUIRE(load_keyring(path).value()->keys() == std::vector<net::Key>{second});
    }
    SECTION("a keyring that cannot be saved is not changed") {
        std::filesystem::remove_all(d.path + "/sub");
        std::ofstream(d.path + "/sub") << "a file where the folder was";
        r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::install, first));
        REQUIRE(r.code == "keyring_unsaved");
        REQUIRE(ring.keys().size() == 1);
    }
    SECTION("installing a key that is there, or removing one that is not, changes nothing") {
        r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::remove, first));
        REQUIRE(r.code.empty());  // run again after a partial failure: it still succeeds here
        r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::install, second));
        REQUIRE(r.code.empty());
        REQUIRE(r.keys == std::vector<wire::KeyBytes>{second});
    }
    SECTION("a list changes nothing") {
        r = apply_keyring_op(ring, path, op(wire::KeyringOp::Kind::list));
        REQUIRE(r.code.empty());
        REQUIRE(r.keys == std::vector<wire::KeyBytes>{second});
    }
}

TEST_CASE("a kept keyring that is not one is refused, saying what to do") {
    TempDir d;
    const std::string path = d.path + "/keyring.json";
    REQUIRE(load_keyring(path).value() == std::nullopt);  // none kept yet
    const std::string k = net::key_to_base64(net::new_key());
    std::string too_many = R"({"keys": [)";
    for (size_t i = 0; i <= wire::kKeyringKeysMax; ++i)
        too_many += (i ? ", \"" : "\"") + net::key_to_base64(net::new_key()) + "\"";
    too_many += R"(], "primary": ")" + k + R"("})";
    for (const std::string& bad :
         std::vector<std::string>{"{", "[]", too_many, R"({"keys": ["short"], "primary": "short"})",
                                  R"({"keys": [], "primary": ")" + k + R"("})",
                                  R"({"keys": [")" + k + R"("], "primary": ")" +
                                      net::key_to_base64(net::new_key()) + R"("})"}) {
        std::ofstream(path) << bad;
        auto r = load_keyring(path);
        CAPTURE(bad);
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "bad_keyring");
        REQUIRE_THAT(r.error().message, Catch::Contains("move it away"));
    }
}
