#include "core/name.hpp"

#include <unordered_set>

#include "core/assert.hpp"

namespace chorus {

// The pool owns every Entry; a Name holds a counted reference. An entry is freed when its last
// Name goes, so names of members long gone do not accumulate.
struct NamePool {
    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
        size_t operator()(const Name::Entry* e) const { return (*this)(std::string_view(e->text)); }
    };
    struct Eq {
        using is_transparent = void;
        bool operator()(const Name::Entry* a, const Name::Entry* b) const { return a == b; }
        bool operator()(std::string_view a, const Name::Entry* b) const { return a == b->text; }
        bool operator()(const Name::Entry* a, std::string_view b) const { return a->text == b; }
    };
    std::unordered_set<Name::Entry*, Hash, Eq> entries;

    static NamePool& get() {
        // Never destroyed: Names in static storage may outlive any other static.
        static NamePool* pool = new NamePool();
        return *pool;
    }
};

Name::Name(std::string_view text) {
    if (text.empty()) return;
    auto& entries = NamePool::get().entries;
    auto it = entries.find(text);
    if (it == entries.end()) {
        it = entries.insert(new Entry{std::string(text), 0}).first;
    }
    e_ = *it;
    ++e_->refs;
}

const std::string& Name::str() const {
    static const std::string empty;
    return e_ == nullptr ? empty : e_->text;
}

void Name::release() {
    if (e_ == nullptr) return;
    CHORUS_ASSERT(e_->refs > 0);
    if (--e_->refs == 0) {
        NamePool::get().entries.erase(e_);
        delete e_;
    }
    e_ = nullptr;
}

size_t Name::pool_size() {
    return NamePool::get().entries.size();
}

}  // namespace chorus
