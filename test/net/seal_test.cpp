#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "net/seal.hpp"

using namespace chorus;
using namespace chorus::net;

namespace {

std::vector<uint8_t> text(std::string_view s) {
    return {s.begin(), s.end()};
}

Sealer sealer_with(std::vector<Key> keys) {
    return Sealer(Keyring::make(std::move(keys)).value());
}

}  // namespace

TEST_CASE("a sealed message opens with the key and cluster it was sealed for, and only so") {
    const Key k = new_key();
    Sealer a = sealer_with({k});
    Sealer b = sealer_with({k});
    const auto plain = text("alive b 7 127.0.0.1:7900");
    const auto sealed = a.seal("prod", plain);
    REQUIRE(sealed.size() == plain.size() + kSealOverhead);
    // The plaintext is nowhere in the sealed bytes.
    REQUIRE(std::search(sealed.begin(), sealed.end(), plain.begin(), plain.end()) == sealed.end());

    auto opened = b.open("prod", sealed);
    REQUIRE(opened.ok());
    REQUIRE(*opened == plain);
    REQUIRE(b.open("prod", sealed).ok());  // again, from the cached subkey
    REQUIRE(a.open("prod", sealed).ok());  // and by its own sealer

    SECTION("another cluster's name does not open it") {
        auto r = b.open("staging", sealed);
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "unsealed");
    }
    SECTION("another key does not open it") {
        Sealer c = sealer_with({new_key()});
        auto r = c.open("prod", sealed);
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "unsealed");
        REQUIRE(c.stats().refused == 1);
    }
    SECTION("a change to any one byte, header, body or tag, is caught") {
        for (size_t i = 0; i < sealed.size(); ++i) {
            auto bent = sealed;
            bent[i] ^= 0x01;
            auto r = b.open("prod", bent);
            INFO("byte " << i);
            REQUIRE_FALSE(r.ok());
        }
    }
    SECTION("a cut message is caught") {
        for (size_t n :
             {size_t{0}, size_t{1}, kSealOverhead - 1, kSealOverhead, sealed.size() - 1}) {
            auto r = b.open("prod", std::span(sealed).first(n));
            INFO(n << " bytes");
            REQUIRE_FALSE(r.ok());
        }
        auto r = b.open("prod", std::span(sealed).first(3));
        REQUIRE(r.error().code == "bad_seal");
    }
}

TEST_CASE("an empty message seals and opens") {
    const Key k = new_key();
    Sealer a = sealer_with({k});
    auto r = a.open("c", a.seal("c", {}));
    REQUIRE(r.ok());
    REQUIRE(r->empty());
}

TEST_CASE("nonces never repeat: each sealer has its own salt and counts its messages") {
    const Key k = new_key();
    Sealer a = sealer_with({k});
    Sealer b = sealer_with({k});
    std::set<std::vector<uint8_t>> headers;
    for (int i = 0; i < 1000; ++i) {
        for (Sealer* s : {&a, &b}) {
            const auto m = s->seal("c", text("same bytes"));
            headers.emplace(m.begin(), m.begin() + kSealHeaderBytes);
        }
    }
    REQUIRE(headers.size() == 2000);
    // The same plaintext never seals to the same bytes.
    REQUIRE(a.seal("c", text("x")) != a.seal("c", text("x")));
}

TEST_CASE("a keyring rotates without a gap: install everywhere, use, then remove the old key") {
    const Key old_key = new_key();
    const Key next = new_key();
    Sealer a = sealer_with({old_key});
    Sealer b = sealer_with({old_key});

    // Installed on both: either still opens what the other seals with the old key.
    a.keyring().install(next);
    b.keyring().install(next);
    REQUIRE(b.open("c", a.seal("c", text("1"))).ok());

    // a moves first; b has the new key installed, so it opens a's messages, and a opens b's.
    REQUIRE(a.keyring().use(next).ok());
    const auto from_a = a.seal("c", text("2"));
    REQUIRE(b.open("c", from_a).ok());
    REQUIRE(a.open("c", b.seal("c", text("3"))).ok());

    // A node that never got the new key cannot read the new messages.
    Sealer left_behind = sealer_with({old_key});
    REQUIRE_FALSE(left_behind.open("c", from_a).ok());

    REQUIRE(b.keyring().use(next).ok());
    SECTION("the primary key cannot be removed; the old one can, and then no longer opens") {
        auto refused = a.keyring().remove(next);
        REQUIRE_FALSE(refused.ok());
        REQUIRE(refused.error().code == "primary_key");
        const auto old_message = left_behind.seal("c", text("4"));
        REQUIRE(a.open("c", old_message).ok());
        REQUIRE(a.keyring().remove(old_key).ok());
        REQUIRE_FALSE(a.open("c", old_message).ok());
        REQUIRE(a.keyring().keys().size() == 1);
        REQUIRE(a.keyring().primary() == next);
    }
    SECTION("keys that are not installed are refused by name") {
        REQUIRE(a.keyring().use(new_key()).error().code == "unknown_key");
        REQUIRE(a.keyring().remove(new_key()).error().code == "unknown_key");
    }
}

TEST_CASE("a keyring needs a key and no key twice") {
    REQUIRE(Keyring::make({}).error().code == "bad_key");
    const Key k = new_key();
    REQUIRE(Keyring::make({k, k}).error().code == "bad_key");
    auto r = Keyring::make({k, new_key()});
    REQUIRE(r.ok());
    REQUIRE(r->primary() == k);
    r->install(k);  // already there
    REQUIRE(r->keys().size() == 2);
}

TEST_CASE("keys are written as base64 of 32 bytes, and anything else is refused with why") {
    const Key k = new_key();
    const std::string b64 = key_to_base64(k);
    REQUIRE(b64.size() == 44);
    REQUIRE(key_from_base64(b64).value() == k);
    REQUIRE(key_from_base64("  " + b64 + "\n").value() == k);  // pasted from a file

    Key zero{};
    REQUIRE(key_to_base64(zero) == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");

    for (const std::string& bad : std::vector<std::string>{
             std::string(), b64.substr(0, 43), b64 + "A", std::string(44, '='),
             b64.substr(0, 42) + "==",  // 31 bytes
             b64.substr(0, 10) + "*" + b64.substr(11), std::string("AAAAAAAAAAAAAAAAAAAAAAAA")}) {
        auto r = key_from_base64(bad);
        INFO(bad);
        REQUIRE_FALSE(r.ok());
        REQUIRE(r.error().code == "bad_key");
        REQUIRE(r.error().message.find("chorus keygen") != std::string::npos);
    }
}

TEST_CASE("senders' subkeys are kept up to the bound, and forged salts are never kept") {
    const Key k = new_key();
    Sealer receiver = sealer_with({k});
    const size_t senders = Sealer::kPeerSubkeysMax + 76;
    std::vector<uint8_t> first;
    for (size_t i = 0; i < senders; ++i) {
        Sealer s = sealer_with({k});  // a new process: a new salt
        const auto m = s.seal("c", text("hello"));
        if (i == 0) first = m;
        REQUIRE(receiver.open("c", m).ok());
    }
    REQUIRE(receiver.peer_subkeys() == Sealer::kPeerSubkeysMax);
    // The oldest was dropped; its sender's message still opens (the subkey is derived again).
    REQUIRE(receiver.open("c", first).ok());
    REQUIRE(receiver.peer_subkeys() == Sealer::kPeerSubkeysMax);

    Sealer fresh = sealer_with({k});
    for (int i = 0; i < 100; ++i) {
        auto forged = fresh.seal("c", text("x"));
        forged[1 + (i % 16)] ^= 0xff;  // another salt: a subkey derived, nothing opened
        REQUIRE_FALSE(fresh.open("c", forged).ok());
    }
    REQUIRE(fresh.peer_subkeys() == 0);
}
