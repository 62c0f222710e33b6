#include "net/udp.hpp"

#include <cstring>
#include <vector>

namespace chorus::net {

namespace {

// A queued send owns its copy of the bytes until libuv calls back.
struct SendRequest {
    uv_udp_send_t req;
    std::vector<uint8_t> bytes;
};

}  // namespace

Result<std::unique_ptr<UdpSocket>> UdpSocket::open(uv_loop_t* loop, const Endpoint& bind,
                                                   OnDatagram on_datagram) {
    std::unique_ptr<UdpSocket> s(new UdpSocket(std::move(on_datagram)));
    auto h = make_handle<uv_udp_t>(
        loop, [](uv_loop_t* l, uv_udp_t* u) { return uv_udp_init(l, u); }, s.get());
    if (!h) return h.error();
    s->handle_ = std::move(*h);
    if (const int rc = uv_udp_bind(s->handle_.get(), bind.sa(), 0); rc != 0) {
        return uv_error("bind udp " + bind.str(), rc);
    }
    if (const int rc = uv_udp_recv_start(s->handle_.get(), on_alloc, on_recv); rc != 0) {
        return uv_error("receive on udp " + bind.str(), rc);
    }
    return s;
}

void UdpSocket::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* self = static_cast<UdpSocket*>(h->data);
    if (self == nullptr) {
        *buf = uv_buf_init(nullptr, 0);
        return;
    }
    *buf = uv_buf_init(self->buffer_.data(), static_cast<unsigned>(self->buffer_.size()));
}

void UdpSocket::on_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* from,
                        unsigned flags) {
    auto* self = static_cast<UdpSocket*>(h->data);
    if (self == nullptr) return;
    if (n < 0) {
        ++self->stats_.receive_errors;
        return;
    }
    if (n == 0 || from == nullptr) return;  // nothing more to read right now
    if ((flags & UV_UDP_PARTIAL) != 0) {
        ++self->stats_.truncated;
        return;
    }
    ++self->stats_.received;
    self->stats_.received_bytes += static_cast<uint64_t>(n);
    self->on_datagram_(
        std::span(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(n)),
        Endpoint::from(from));
}

bool UdpSocket::send(const Endpoint& to, std::span<const uint8_t> bytes) {
    uv_buf_t buf = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(bytes.data())),
                               static_cast<unsigned>(bytes.size()));
    const int rc = uv_udp_try_send(handle_.get(), &buf, 1, to.sa());
    if (rc >= 0) {
        ++stats_.sent;
        stats_.sent_bytes += bytes.size();
        return true;
    }
    if (rc != UV_EAGAIN || queued_ >= kQueuedSendsMax) {
        ++stats_.send_dropped;
        return false;
    }
    auto* r = new SendRequest{{}, std::vector<uint8_t>(bytes.begin(), bytes.end())};
    r->req.data = r;
    uv_buf_t copy = uv_buf_init(reinterpret_cast<char*>(r->bytes.data()),
                                static_cast<unsigned>(r->bytes.size()));
    const int sent =
        uv_udp_send(&r->req, handle_.get(), &copy, 1, to.sa(), [](uv_udp_send_t* req, int) {
            auto* done = static_cast<SendRequest*>(req->data);
            auto* socket = static_cast<UdpSocket*>(req->handle->data);
            if (socket != nullptr) --socket->queued_;
            delete done;
        });
    if (sent != 0) {
        delete r;
        ++stats_.send_dropped;
        return false;
    }
    ++queued_;
    ++stats_.sent;
    stats_.sent_bytes += bytes.size();
    return true;
}

Endpoint UdpSocket::local() const {
    sockaddr_storage ss{};
    int len = sizeof(ss);
    uv_udp_getsockname(handle_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    return Endpoint::from(reinterpret_cast<sockaddr*>(&ss));
}

}  // namespace chorus::net
