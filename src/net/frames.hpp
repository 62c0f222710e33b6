// Length-prefixed frames over TCP: a 4-byte big-endian length, then that many bytes. Push-pull
// runs over them now, task forwarding later.
//
// A FrameHub owns every connection, accepted or dialled, and enforces the limits an untrusted
// peer must not escape: a frame larger than frame_bytes_max closes the connection at its
// header, before the body is read; a connection that completes no frame (or no connect) within
// idle_timeout is closed; beyond inbound_max, new connections are refused at accept, and
// beyond outbound_max dials are refused (two caps, so a flood of strangers' connections cannot
// keep this node from dialling its peers); the bytes of frames still arriving are held within
// one budget for all connections (inbox_bytes_max). Each limit hit is counted.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "net/endpoint.hpp"
#include "net/handle.hpp"
#include "net/seal.hpp"

namespace chorus::net {

struct FrameLimits {
    size_t frame_bytes_max = 64u << 20;
    uint64_t idle_timeout_ms = 10'000;
    // A dial that has not connected by then is abandoned: a peer whose SYNs are dropped would
    // otherwise hold it (and whatever waits on it) for the kernel's two minutes of retries.
    // The agent sets it to the task forward timeout, so work fails over as a timeout would.
    uint64_t connect_timeout_ms = 2'000;
    size_t inbound_max = 256;   // accepted connections
    size_t outbound_max = 256;  // dialled connections
    // Bytes of partly received frames held at once, over every connection: 256 connections
    // could each announce a frame of frame_bytes_max. A connection whose bytes would pass it
    // is closed (inbox_full) and its peer tries again later, as after any broken stream.
    size_t inbox_bytes_max = 256u << 20;
    // Bytes queued for a peer that reads too slowly (or not at all), at most: beyond it the
    // connection is closed ("slow_peer") rather than held in memory, and whatever waited on it
    // fails over. Room for two frames of the largest size.
    size_t write_queue_bytes_max = 128u << 20;
};

class FrameHub;

// One connection. Owned by its hub; refer to it by id across callbacks.
class FrameConn {
  public:
    uint64_t id() const { return id_; }
    bool outbound() const { return outbound_; }
    // Queues a frame. Returns false if the connection is closing. Frames queued during one
    // loop iteration go out together in one write when the iteration has polled everything:
    // under load, one syscall and one wakeup on the other side for many frames.
    bool send(std::span<const uint8_t> frame);
    // Closes once every queued frame has been written (for request/reply exchanges).
    void close_after_write();

  private:
    friend class FrameHub;
    FrameConn(FrameHub& hub, uint64_t id, bool outbound)
        : hub_(hub), id_(id), outbound_(outbound) {}
    void start_reading();
    void arm_timer(uint64_t ms);  // the idle (or connect) deadline, from now
    void on_bytes(const char* data, size_t n);
    void flush();
    void close_if_written();  // after close_after_write(), once nothing waits to go out

    FrameHub& hub_;
    uint64_t id_;
    bool outbound_;
    bool connected_ = false;
    bool closing_ = false;
    bool close_when_written_ = false;
    size_t writes_pending_ = 0;
    std::vector<uint8_t> outbox_;  // frames queued this iteration, length-prefixed
    Handle<uv_tcp_t> tcp_;
    Handle<uv_timer_t> timer_;
    std::vector<uint8_t> inbox_;  // bytes of the frame being read (counted in the hub's budget)
    std::vector<char> read_buffer_;
};

class FrameHub {
  public:
    struct Callbacks {
        // A complete frame arrived on `conn`.
        std::function<void(FrameConn& conn, std::vector<uint8_t> frame)> on_frame;
        // A dialled connection is up and may send.
        std::function<void(FrameConn& conn)> on_connected;
        // The connection is gone: nullopt for an orderly close, else what went wrong.
        std::function<void(uint64_t id, std::optional<Error> why)> on_closed;
    };
    struct Stats {
        uint64_t accepted = 0;
        uint64_t refused = 0;  // inbound_max reached (accepting) or outbound_max (dialling)
        uint64_t connects = 0;
        uint64_t frames_in = 0;
        uint64_t frames_out = 0;
        // Connections closed on an error, each counted once, by its reason (the code of the
        // Error they were closed with).
        uint64_t oversize = 0;    // too_large: a frame over frame_bytes_max
        uint64_t timeouts = 0;    // timeout: no frame (or no connect) within idle_timeout
        uint64_t slow = 0;        // slow_peer: write_queue_bytes_max queued for the peer
        uint64_t bad_frames = 0;  // bad_frame: the owner refused what the peer sent
        uint64_t inbox_full = 0;  // inbox_full: inbox_bytes_max held over all connections
        uint64_t unsealed = 0;    // unsealed: a frame no installed key opens (seal.hpp)
        uint64_t io_errors = 0;   // anything else: accept, connect, read or write failed
        void count_close(std::string_view reason);
    };

    FrameHub(uv_loop_t* loop, FrameLimits limits, Callbacks callbacks);
    ~FrameHub();
    FrameHub(const FrameHub&) = delete;
    FrameHub& operator=(const FrameHub&) = delete;

    Status listen(const Endpoint& at);
    // Frames are sealed and opened through `e` from now on (null: sent and taken in clear).
    // It must outlive the hub, or be reset first.
    void set_envelope(Envelope* e) { envelope_ = e; }
    std::optional<Endpoint> listening() const;
    // Dials `to`; the outcome arrives through on_connected or on_closed. Returns the id, or 0
    // (counted as refused) when outbound_max are open already.
    uint64_t connect(const Endpoint& to);
    FrameConn* find(uint64_t id);
    // Closes a connection now, dropping unsent frames.
    void close(uint64_t id, std::optional<Error> why = std::nullopt);

    size_t connections() const { return conns_.size(); }
    size_t inbound() const { return inbound_; }
    size_t outbound() const { return conns_.size() - inbound_; }
    size_t inbox_bytes() const { return inbox_bytes_; }
    const Stats& stats() const { return stats_; }
    const FrameLimits& limits() const { return limits_; }

  private:
    friend class FrameConn;
    FrameConn* create(bool outbound);
    static void on_connection(uv_stream_t* server, int status);
    void flush_later(uint64_t id);

    uv_loop_t* loop_;
    FrameLimits limits_;
    Callbacks callbacks_;
    Envelope* envelope_ = nullptr;
    Handle<uv_tcp_t> server_;
    std::map<uint64_t, std::unique_ptr<FrameConn>> conns_;
    Handle<uv_check_t> flush_;        // runs once per iteration while frames wait
    std::vector<uint64_t> to_flush_;  // connections with an outbox
    uint64_t next_id_ = 1;
    size_t inbound_ = 0;      // of conns_, the accepted ones
    size_t inbox_bytes_ = 0;  // over every connection's inbox_
    Stats stats_;
};

}  // namespace chorus::net
