#include "net/seal.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace chorus::net {

namespace {

constexpr uint8_t kVersion = 1;
constexpr size_t kSaltBytes = 16;
constexpr size_t kIvBytes = 12;
constexpr std::string_view kSubkeyLabel = "chorus seal 1";

void random_bytes(uint8_t* out, size_t n) {
    if (RAND_bytes(out, static_cast<int>(n)) != 1) {
        // Without randomness there is no safe key or salt: stop rather than seal weakly.
        throw std::runtime_error("OpenSSL's random generator failed");
    }
}

Key derive(const Key& key, std::span<const uint8_t> salt) {
    std::vector<uint8_t> msg(kSubkeyLabel.begin(), kSubkeyLabel.end());
    msg.insert(msg.end(), salt.begin(), salt.end());
    Key out{};
    unsigned len = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), msg.data(), msg.size(),
             out.data(), &len) == nullptr ||
        len != out.size()) {
        // An all-zero subkey would be a key anyone knows: stop rather than seal with it.
        throw std::runtime_error("OpenSSL's HMAC-SHA256 failed");
    }
    return out;
}

// The nonce: four zero bytes, then the counter as it is on the wire.
std::array<uint8_t, kIvBytes> iv_of(const uint8_t* counter) {
    std::array<uint8_t, kIvBytes> iv{};
    std::memcpy(iv.data() + 4, counter, 8);
    return iv;
}

std::vector<uint8_t> aad_of(std::span<const uint8_t> header, std::string_view cluster) {
    std::vector<uint8_t> aad(header.size() + cluster.size());
    std::memcpy(aad.data(), header.data(), header.size());
    if (!cluster.empty()) std::memcpy(aad.data() + header.size(), cluster.data(), cluster.size());
    return aad;
}

bool is_base64_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

}  // namespace

struct Sealer::Subkey {
    Key key;
    EVP_CIPHER_CTX* enc = nullptr;
    EVP_CIPHER_CTX* dec = nullptr;
    explicit Subkey(const Key& k) : key(k) {}
    ~Subkey() {
        EVP_CIPHER_CTX_free(enc);
        EVP_CIPHER_CTX_free(dec);
        OPENSSL_cleanse(key.data(), key.size());
    }
    Subkey(const Subkey&) = delete;
    Subkey& operator=(const Subkey&) = delete;
    // A context with the cipher and key set once; each message then sets only its nonce.
    EVP_CIPHER_CTX* context(bool encrypt) {
        EVP_CIPHER_CTX*& c = encrypt ? enc : dec;
        if (c != nullptr) return c;
        c = EVP_CIPHER_CTX_new();
        const int ok = c != nullptr && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), nullptr, key.data(),
                                                         nullptr, encrypt ? 1 : 0) == 1;
        if (!ok) throw std::runtime_error("OpenSSL could not set up AES-256-GCM");
        return c;
    }
};

Key new_key() {
    Key k{};
    random_bytes(k.data(), k.size());
    return k;
}

uint64_t random_u64() {
    uint64_t v = 0;
    random_bytes(reinterpret_cast<uint8_t*>(&v), sizeof(v));
    return v;
}

Digest sha256(std::string_view bytes) {
    Digest d{};
    unsigned int n = 0;
    // SHA-256 of bytes in memory cannot fail short of a broken library.
    EVP_Digest(bytes.data(), bytes.size(), d.data(), &n, EVP_sha256(), nullptr);
    return d;
}

std::string to_hex(std::span<const uint8_t> bytes) {
    std::string out;
    out.reserve(2 * bytes.size());
    for (uint8_t b : bytes)
        out += fmt::format("{:02x}", b);
    return out;
}

std::string key_fingerprint(const Key& k) {
    const Digest d = sha256(std::string_view(reinterpret_cast<const char*>(k.data()), k.size()));
    return "sha256:" + to_hex(std::span(d).first(4));
}

std::string key_to_base64(const Key& k) {
    std::array<unsigned char, 4 * ((32 + 2) / 3) + 1> out{};
    const int n = EVP_EncodeBlock(out.data(), k.data(), static_cast<int>(k.size()));
    return std::string(reinterpret_cast<const char*>(out.data()), static_cast<size_t>(n));
}

Result<Key> key_from_base64(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
        text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
        text.remove_suffix(1);
    const auto bad = [&](std::string_view why) {
        return Error{"bad_key", fmt::format("an encryption key is 32 bytes in base64 (44 "
                                            "characters ending in '=', as `chorus keygen` "
                                            "prints); this one {}",
                                            why)};
    };
    if (text.size() != 44) return bad(fmt::format("has {} characters", text.size()));
    if (text[43] != '=' || !std::all_of(text.begin(), text.begin() + 43, is_base64_char)) {
        return bad("is not base64 of 32 bytes");
    }
    std::array<unsigned char, 33> out{};  // 44 characters decode to 33 bytes, the last padding
    if (EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), 44) !=
        33) {
        return bad("is not base64");
    }
    Key k{};
    std::copy_n(out.begin(), k.size(), k.begin());
    return k;
}

// ---------------------------------------------------------------------------------------------
// Keyring

Result<Keyring> Keyring::make(std::vector<Key> keys) {
    if (keys.empty()) return Error{"bad_key", "a keyring needs at least one key"};
    for (size_t i = 0; i < keys.size(); ++i) {
        if (std::find(keys.begin() + static_cast<std::ptrdiff_t>(i) + 1, keys.end(), keys[i]) !=
            keys.end()) {
            return Error{"bad_key", "the same key is given twice"};
        }
    }
    Keyring r;
    r.keys_ = std::move(keys);
    return r;
}

void Keyring::install(const Key& k) {
    if (std::find(keys_.begin(), keys_.end(), k) == keys_.end()) keys_.push_back(k);
}

Status Keyring::use(const Key& k) {
    const auto it = std::find(keys_.begin(), keys_.end(), k);
    if (it == keys_.end()) {
        return Error{"unknown_key", "that key is not installed: install it first"};
    }
    primary_ = static_cast<size_t>(it - keys_.begin());
    return Ok{};
}

Status Keyring::remove(const Key& k) {
    const auto it = std::find(keys_.begin(), keys_.end(), k);
    if (it == keys_.end()) return Error{"unknown_key", "that key is not installed"};
    const auto at = static_cast<size_t>(it - keys_.begin());
    if (at == primary_) {
        return Error{"primary_key",
                     "that key is the one messages are sealed with: use another key first"};
    }
    keys_.erase(it);
    if (at < primary_) --primary_;
    return Ok{};
}

// ---------------------------------------------------------------------------------------------
// Sealer

Sealer::Sealer(Keyring ring) : ring_(std::move(ring)) {
    random_bytes(salt_.data(), salt_.size());
}

Sealer::~Sealer() = default;

Sealer::Subkey& Sealer::own_subkey() {
    if (!own_ || own_for_ != ring_.primary()) {
        own_ = std::make_unique<Subkey>(derive(ring_.primary(), salt_));
        own_for_ = ring_.primary();
    }
    return *own_;
}

std::vector<uint8_t> Sealer::seal(std::string_view cluster, std::span<const uint8_t> plain) {
    std::vector<uint8_t> out(kSealHeaderBytes + plain.size() + kSealTagBytes);
    out[0] = kVersion;
    std::copy(salt_.begin(), salt_.end(), out.begin() + 1);
    const uint64_t n = counter_++;
    for (int i = 0; i < 8; ++i)
        out[1 + kSaltBytes + static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (56 - 8 * i));
    const auto iv = iv_of(out.data() + 1 + kSaltBytes);
    const auto aad = aad_of({out.data(), kSealHeaderBytes}, cluster);
    EVP_CIPHER_CTX* c = own_subkey().context(true);
    int len = 0;
    const bool ok =
        EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, iv.data()) == 1 &&
        EVP_EncryptUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1 &&
        EVP_EncryptUpdate(c, out.data() + kSealHeaderBytes, &len, plain.data(),
                          static_cast<int>(plain.size())) == 1 &&
        EVP_EncryptFinal_ex(c, out.data() + kSealHeaderBytes + len, &len) == 1 &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kSealTagBytes),
                            out.data() + out.size() - kSealTagBytes) == 1;
    if (!ok) throw std::runtime_error("OpenSSL failed to seal a message");
    ++stats_.sealed;
    return out;
}

template <typename TryOpen>
bool Sealer::open_with(const Key& k, std::span<const uint8_t> salt, const TryOpen& try_open) {
    PeerId id{};
    std::copy(k.begin(), k.end(), id.begin());
    std::copy(salt.begin(), salt.end(), id.begin() + k.size());
    if (auto it = peers_.find(id); it != peers_.end()) return try_open(*it->second);
    auto s = std::make_unique<Subkey>(derive(k, salt));
    if (!try_open(*s)) return false;  // a forger's salt is never kept
    if (peers_.size() >= kPeerSubkeysMax) {
        peers_.erase(peer_order_.front());
        peer_order_.pop_front();
    }
    peer_order_.push_back(id);
    peers_.emplace(id, std::move(s));
    return true;
}

Result<std::vector<uint8_t>> Sealer::open(std::string_view cluster,
                                          std::span<const uint8_t> sealed) {
    if (sealed.size() < kSealOverhead || sealed[0] != kVersion) {
        ++stats_.refused;
        return Error{"bad_seal",
                     sealed.size() < kSealOverhead
                         ? fmt::format("{} bytes is too short for a sealed message", sealed.size())
                         : fmt::format("unknown seal version {}", sealed[0])};
    }
    const auto salt = sealed.subspan(1, kSaltBytes);
    const auto iv = iv_of(sealed.data() + 1 + kSaltBytes);
    const auto aad = aad_of(sealed.first(kSealHeaderBytes), cluster);
    const auto body = sealed.subspan(kSealHeaderBytes, sealed.size() - kSealOverhead);
    std::array<uint8_t, kSealTagBytes> tag{};
    std::copy_n(sealed.end() - kSealTagBytes, kSealTagBytes, tag.begin());
    std::vector<uint8_t> plain(body.size());
    const auto try_open = [&](Subkey& s) {
        EVP_CIPHER_CTX* c = s.context(false);
        int len = 0;
        return EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, iv.data()) == 1 &&
               EVP_DecryptUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size())) == 1 &&
               EVP_DecryptUpdate(c, plain.data(), &len, body.data(),
                                 static_cast<int>(body.size())) == 1 &&
               EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, static_cast<int>(tag.size()),
                                   tag.data()) == 1 &&
               EVP_DecryptFinal_ex(c, plain.data() + len, &len) == 1;
    };
    // The primary first: most messages are sealed with the key most of the cluster uses.
    bool opened = open_with(ring_.primary(), salt, try_open);
    for (size_t i = 0; !opened && i < ring_.keys().size(); ++i) {
        const Key& k = ring_.keys()[i];
        if (&k != &ring_.primary()) opened = open_with(k, salt, try_open);
    }
    if (opened) {
        ++stats_.opened;
        return plain;
    }
    ++stats_.refused;
    return Error{"unsealed", "no installed key opens it (another key or cluster, or altered)"};
}

// ---------------------------------------------------------------------------------------------
// Envelope

Result<std::vector<uint8_t>> Envelope::unwrap(std::span<const uint8_t> bytes) {
    auto opened = sealer_.open(cluster_, bytes);
    if (opened || options_.incoming) return opened;
    ++clear_taken_;
    return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

}  // namespace chorus::net
