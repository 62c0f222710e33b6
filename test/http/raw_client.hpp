// A bare TCP client for HTTP tests: writes raw bytes and collects everything the server sends
// until it closes, so tests can send what no well-behaved client would.
#pragma once

#include <uv.h>

#include <string>
#include <string_view>
#include <vector>

#include "net/endpoint.hpp"
#include "net/handle.hpp"

namespace chorus::test {

struct RawClient {
    net::Handle<uv_tcp_t> tcp;
    std::string received;
    bool closed = false;
    std::vector<char> buf = std::vector<char>(64 * 1024);

    RawClient(uv_loop_t* loop, const net::Endpoint& to) {
        tcp = net::make_handle<uv_tcp_t>(
                  loop, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); }, this)
                  .value();
        auto* req = new uv_connect_t{};
        uv_tcp_connect(req, tcp.get(), to.sa(), [](uv_connect_t* r, int status) {
            uv_stream_t* stream = r->handle;
            auto* self = static_cast<RawClient*>(stream->data);
            delete r;
            if (self == nullptr) return;
            if (status < 0) {
                self->closed = true;
                return;
            }
            uv_read_start(
                stream,
                [](uv_handle_t* h, size_t, uv_buf_t* b) {
                    auto* c = static_cast<RawClient*>(h->data);
                    *b = uv_buf_init(c->buf.data(), static_cast<unsigned>(c->buf.size()));
                },
                [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
                    auto* c = static_cast<RawClient*>(s->data);
                    if (c == nullptr) return;
                    if (n < 0) {
                        c->closed = true;
                        uv_read_stop(s);
                        return;
                    }
                    c->received.append(b->base, static_cast<size_t>(n));
                });
        });
    }
    void send(std::string bytes) {
        struct W {
            uv_write_t req;
            std::string bytes;
        };
        auto* w = new W{{}, std::move(bytes)};
        w->req.data = w;
        uv_buf_t b = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
        uv_write(&w->req, reinterpret_cast<uv_stream_t*>(tcp.get()), &b, 1,
                 [](uv_write_t* r, int) { delete static_cast<W*>(r->data); });
    }
    size_t count(std::string_view what) const {
        size_t n = 0;
        for (size_t at = received.find(what); at != std::string::npos;
             at = received.find(what, at + 1))
            ++n;
        return n;
    }
};

// The body of the last response in `raw` (after the last blank line).
inline std::string last_body(const std::string& raw) {
    const size_t at = raw.rfind("\r\n\r\n");
    return at == std::string::npos ? std::string() : raw.substr(at + 4);
}

}  // namespace chorus::test
