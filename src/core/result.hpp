// Errors at the core's boundaries are values, not exceptions (STYLE §6).
//
// `Result<T>` holds either a value or an `Error` (or another error type E) whose code is a stable
// snake_case word (the API uses it verbatim) and whose message says what was wrong and how to fix
// it.
#pragma once

#include <string>
#include <utility>
#include <variant>
#include "core/assert.hpp"

namespace chorus {

struct Error {
    std::string code;
    std::string message;
};

template <typename T, typename E = Error>
class [[nodiscard]] Result {
  public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(E error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & {
        CHORUS_ASSERT(ok());
        return std::get<0>(v_);
    }
    const T& value() const& {
        CHORUS_ASSERT(ok());
        return std::get<0>(v_);
    }
    T&& value() && {
        CHORUS_ASSERT(ok());
        return std::get<0>(std::move(v_));
    }
    T value_or(T fallback) const& { return ok() ? std::get<0>(v_) : std::move(fallback); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    const E& error() const {
        CHORUS_ASSERT(!ok());
        return std::get<1>(v_);
    }

  private:
    std::variant<T, E> v_;
};

// For operations that return nothing but may fail.
struct Ok {};
using Status = Result<Ok>;

}  // namespace chorus
