// Writing bytes to a libuv stream, without a write request when the socket takes them at once.
//
// uv_write allocates a request, runs its callback a loop iteration later and, once the stream's
// queue drains, stops polling the socket for writability: an epoll_ctl per write. Under load a
// task costs a write to its client and frames to its owner and holder, so these came to a third
// of an agent's syscalls. Most writes fit the socket's buffer, and uv_try_write sends those with
// one syscall and nothing else; only the bytes it does not take are queued with uv_write.
// uv_try_write refuses while a write is queued, so bytes never overtake earlier ones.
#pragma once

#include <uv.h>

#include <utility>

#include "core/result.hpp"
#include "net/handle.hpp"

namespace chorus::net {

// Runs when a queued write has completed or failed (status < 0), with the stream it was on.
using WriteDone = void (*)(uv_stream_t* stream, int status);

enum class Written : uint8_t {
    now,     // every byte is in the socket; `done` will not run
    queued,  // the rest waits in libuv's queue; `done` runs once it is written or failed
};

// Writes `bytes` (a std::string or std::vector<uint8_t>) to `stream`. An error from the socket
// (a reset peer) is not reported here: the bytes are queued, and `done` gets the error, as it
// did from uv_write before, so a caller never loses its connection in the middle of a call. An
// error is returned only when libuv cannot queue the write at all; then `done` will not run.
template <typename Bytes>
Result<Written> write_bytes(uv_stream_t* stream, Bytes bytes, WriteDone done) {
    struct Queued {
        uv_write_t req;
        Bytes bytes;  // alive until the write completes
        WriteDone done;
    };
    uv_buf_t all =
        uv_buf_init(reinterpret_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
    const int n = uv_try_write(stream, &all, 1);
    if (n >= 0 && static_cast<size_t>(n) == bytes.size()) return Written::now;
    const size_t sent = n > 0 ? static_cast<size_t>(n) : 0;
    auto* w = new Queued{{}, std::move(bytes), done};
    w->req.data = w;
    uv_buf_t rest = uv_buf_init(reinterpret_cast<char*>(w->bytes.data()) + sent,
                                static_cast<unsigned>(w->bytes.size() - sent));
    const int rc = uv_write(&w->req, stream, &rest, 1, [](uv_write_t* r, int status) {
        auto* q = static_cast<Queued*>(r->data);
        uv_stream_t* s = r->handle;
        const WriteDone d = q->done;
        delete q;
        d(s, status);
    });
    if (rc != 0) {
        delete w;
        return uv_error("write", rc);
    }
    return Written::queued;
}

}  // namespace chorus::net
