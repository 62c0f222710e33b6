// A UDP socket on the loop: datagrams in through a callback, out through send().
//
// Receiving uses one 64 KiB buffer per socket (libuv hands datagrams over one at a time); a
// datagram that did not fit is dropped and counted. Sending tries the kernel at once and, if it
// would block, queues a copy; the queue is bounded, and what does not fit is dropped and
// counted: gossip tolerates loss, a growing backlog would not help it.
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "core/result.hpp"
#include "net/endpoint.hpp"
#include "net/handle.hpp"

namespace chorus::net {

class UdpSocket {
  public:
    using OnDatagram = std::function<void(std::span<const uint8_t> bytes, const Endpoint& from)>;

    struct Stats {
        uint64_t received = 0;
        uint64_t received_bytes = 0;
        uint64_t truncated = 0;  // larger than the receive buffer
        uint64_t receive_errors = 0;
        uint64_t sent = 0;
        uint64_t sent_bytes = 0;
        uint64_t send_dropped = 0;  // queue full or the kernel refused at once
    };

    // Sends queued at once at most; beyond it datagrams are dropped.
    static constexpr size_t kQueuedSendsMax = 1024;

    static Result<std::unique_ptr<UdpSocket>> open(uv_loop_t* loop, const Endpoint& bind,
                                                   OnDatagram on_datagram);
    ~UdpSocket() = default;
    UdpSocket(const UdpSocket&) = delete;
    UdpSocket& operator=(const UdpSocket&) = delete;

    // Sends a datagram; false (and counted) if it was dropped.
    bool send(const Endpoint& to, std::span<const uint8_t> bytes);
    Endpoint local() const;
    const Stats& stats() const { return stats_; }

  private:
    explicit UdpSocket(OnDatagram on) : on_datagram_(std::move(on)) {}
    static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
    static void on_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* from,
                        unsigned flags);

    OnDatagram on_datagram_;
    Handle<uv_udp_t> handle_;
    Stats stats_;
    size_t queued_ = 0;
    std::array<char, 65536> buffer_{};
};

}  // namespace chorus::net
