// Interned strings for member names and addresses.
//
// A cluster of N members puts N names into every node's member table, probe list, broadcast
// queue and messages; interning turns each of those copies into a pointer to one shared,
// immutable, reference-counted string. Equality is pointer equality; ordering compares the text,
// so containers ordered by Name iterate the same way on every run and every platform.
//
// The pool is process-wide and not thread-safe: the daemon runs one loop thread and the
// simulator one thread (ARCHITECTURE.md, "Layers"). A Name converts implicitly from text, which
// keeps message construction and tests readable.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace chorus {

class Name {
  public:
    Name() = default;
    Name(std::string_view text);  // NOLINT(google-explicit-constructor): interns
    Name(const std::string& text) : Name(std::string_view(text)) {}  // NOLINT
    Name(const char* text) : Name(std::string_view(text)) {}         // NOLINT
    Name(const Name& o) : e_(o.e_) { retain(); }
    Name(Name&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
    Name& operator=(const Name& o) {
        if (e_ != o.e_) {
            release();
            e_ = o.e_;
            retain();
        }
        return *this;
    }
    Name& operator=(Name&& o) noexcept {
        if (this != &o) {
            release();
            e_ = o.e_;
            o.e_ = nullptr;
        }
        return *this;
    }
    ~Name() { release(); }

    std::string_view view() const { return e_ == nullptr ? std::string_view{} : e_->text; }
    const std::string& str() const;
    bool empty() const { return e_ == nullptr; }
    size_t size() const { return view().size(); }

    friend bool operator==(const Name& a, const Name& b) { return a.e_ == b.e_; }
    friend std::strong_ordering operator<=>(const Name& a, const Name& b) {
        if (a.e_ == b.e_) return std::strong_ordering::equal;
        return a.view().compare(b.view()) <=> 0;
    }
    friend bool operator==(const Name& a, std::string_view b) { return a.view() == b; }
    friend bool operator==(const Name& a, const char* b) { return a.view() == b; }
    friend bool operator==(const Name& a, const std::string& b) { return a.view() == b; }

    // Distinct names alive in this process (for tests and memory accounting).
    static size_t pool_size();

  private:
    struct Entry {
        std::string text;
        uint32_t refs = 0;
    };
    friend struct NamePool;
    void retain() {
        if (e_ != nullptr) ++e_->refs;
    }
    void release();

    Entry* e_ = nullptr;
};

// Heterogeneous ordering, so a std::map<Name, T, NameLess> is searchable by string_view
// without interning the probe.
struct NameLess {
    using is_transparent = void;
    bool operator()(const Name& a, const Name& b) const { return a < b; }
    bool operator()(const Name& a, std::string_view b) const { return a.view() < b; }
    bool operator()(std::string_view a, const Name& b) const { return a < b.view(); }
};

// A hash of text that every node computes the same way, whatever its build or platform
// (std::hash promises neither): FNV-1a over the bytes, then splitmix64's finalizer so that
// names differing only in their last characters spread over the whole range. For orders that
// the whole cluster must agree on, such as the probe schedule; not for untrusted keys in hash
// tables (it is not keyed).
constexpr uint64_t stable_hash(std::string_view text) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : text) {
        h ^= static_cast<uint8_t>(c);
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

}  // namespace chorus

template <>
struct fmt::formatter<chorus::Name> : fmt::formatter<std::string_view> {
    auto format(const chorus::Name& n, format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(n.view(), ctx);
    }
};
