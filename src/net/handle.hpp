// RAII for libuv handles, encoding libuv's one hard rule: a handle's memory may be freed only in
// its close callback, after the loop has let go of it (uv_close's documentation).
//
// Handle<T> owns a heap-allocated uv handle. Destroying it calls uv_close, and the close
// callback deletes the memory; until then the loop may still touch it. Callbacks see their owner
// through handle->data, which the owner clears before it goes, so a callback that libuv runs
// during the close (none should) finds no owner rather than a dangling one.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "core/result.hpp"

namespace chorus::net {

template <typename T>
struct HandleCloser {
    void operator()(T* h) const {
        h->data = nullptr;
        auto* raw = reinterpret_cast<uv_handle_t*>(h);
        if (uv_is_closing(raw) != 0) return;  // someone closed it already; its callback frees it
        uv_close(raw, [](uv_handle_t* closed) { delete reinterpret_cast<T*>(closed); });
    }
};

template <typename T>
using Handle = std::unique_ptr<T, HandleCloser<T>>;

inline Error uv_error(std::string_view what, int rc) {
    return Error{"io_error", std::string(what) + ": " + uv_strerror(rc)};
}

// Allocates a handle and runs its uv_*_init; on failure nothing leaks (an uninitialised handle
// is not known to the loop, so it is deleted at once).
template <typename T, typename Init>
Result<Handle<T>> make_handle(uv_loop_t* loop, Init init, void* owner) {
    auto* h = new T{};
    if (const int rc = init(loop, h); rc != 0) {
        delete h;
        return uv_error("uv init", rc);
    }
    h->data = owner;
    return Handle<T>(h);
}

inline Result<Handle<uv_timer_t>> make_timer(uv_loop_t* loop, void* owner) {
    return make_handle<uv_timer_t>(
        loop, [](uv_loop_t* l, uv_timer_t* t) { return uv_timer_init(l, t); }, owner);
}

// A check handle runs right after the loop's poll phase: once per iteration, after every
// read callback of that iteration.
inline Result<Handle<uv_check_t>> make_check(uv_loop_t* loop, void* owner) {
    return make_handle<uv_check_t>(
        loop, [](uv_loop_t* l, uv_check_t* c) { return uv_check_init(l, c); }, owner);
}

}  // namespace chorus::net
