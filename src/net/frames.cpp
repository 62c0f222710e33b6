#include "net/frames.hpp"

#include <fmt/format.h>

#include "net/write.hpp"

namespace chorus::net {

namespace {

constexpr size_t kHeaderBytes = 4;
constexpr size_t kReadChunk = 64 * 1024;

uint32_t read_be32(const uint8_t* p) {
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FrameHub

void FrameHub::Stats::count_close(std::string_view reason) {
    if (reason == "timeout") {
        ++timeouts;
    } else if (reason == "too_large") {
        ++oversize;
    } else if (reason == "slow_peer") {
        ++slow;
    } else if (reason == "bad_frame") {
        ++bad_frames;
    } else if (reason == "inbox_full") {
        ++inbox_full;
    } else if (reason == "unsealed") {
        ++unsealed;
    } else {
        ++io_errors;
    }
}

FrameHub::FrameHub(uv_loop_t* loop, FrameLimits limits, Callbacks callbacks)
    : loop_(loop), limits_(limits), callbacks_(std::move(callbacks)) {
    flush_ = make_check(loop_, this).value();
}

void FrameHub::flush_later(uint64_t id) {
    to_flush_.push_back(id);
    uv_check_start(flush_.get(), [](uv_check_t* c) {
        auto* hub = static_cast<FrameHub*>(c->data);
        if (hub == nullptr) return;
        uv_check_stop(c);
        for (const uint64_t id : std::exchange(hub->to_flush_, {})) {
            if (FrameConn* conn = hub->find(id)) conn->flush();
        }
    });
}

FrameHub::~FrameHub() {
    // Handles close through their deleters; no callback may reach us after this.
    for (auto& [id, c] : conns_)
        c->closing_ = true;
}

Status FrameHub::listen(const Endpoint& at) {
    auto h = make_handle<uv_tcp_t>(
        loop_, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); }, this);
    if (!h) return h.error();
    server_ = std::move(*h);
    if (const int rc = uv_tcp_bind(server_.get(), at.sa(), 0); rc != 0) {
        return uv_error("bind tcp " + at.str(), rc);
    }
    if (const int rc = uv_listen(reinterpret_cast<uv_stream_t*>(server_.get()), 128, on_connection);
        rc != 0) {
        return uv_error("listen on " + at.str(), rc);
    }
    return Ok{};
}

std::optional<Endpoint> FrameHub::listening() const {
    if (!server_) return std::nullopt;
    sockaddr_storage ss{};
    int len = sizeof(ss);
    if (uv_tcp_getsockname(server_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
        return std::nullopt;
    }
    return Endpoint::from(reinterpret_cast<sockaddr*>(&ss));
}

FrameConn* FrameHub::create(bool outbound) {
    const uint64_t id = next_id_++;
    std::unique_ptr<FrameConn> c(new FrameConn(*this, id, outbound));
    auto tcp = make_handle<uv_tcp_t>(
        loop_, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); }, c.get());
    auto timer = make_timer(loop_, c.get());
    if (!tcp || !timer) return nullptr;
    c->tcp_ = std::move(*tcp);
    c->timer_ = std::move(*timer);
    // No Nagle: a frame that expects no answer (a task's outcome to its copy) must not wait
    // for the peer's delayed ACK before the next one goes. Frames of one loop iteration are
    // written together anyway, so this sends no more packets than needed.
    uv_tcp_nodelay(c->tcp_.get(), 1);
    FrameConn* raw = c.get();
    conns_.emplace(id, std::move(c));
    return raw;
}

void FrameHub::on_connection(uv_stream_t* server, int status) {
    auto* hub = static_cast<FrameHub*>(server->data);
    if (hub == nullptr) return;
    if (status < 0) {
        ++hub->stats_.io_errors;
        return;
    }
    FrameConn* c = hub->inbound_ < hub->limits_.inbound_max ? hub->create(false) : nullptr;
    if (c == nullptr) {
        // Accept and close at once, so the peer sees a refusal instead of a hang.
        ++hub->stats_.refused;
        Handle<uv_tcp_t> reject;
        auto h = make_handle<uv_tcp_t>(
            hub->loop_, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); }, nullptr);
        if (h && uv_accept(server, reinterpret_cast<uv_stream_t*>(h->get())) == 0)
            reject = std::move(*h);
        return;  // reject's destructor closes it
    }
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(c->tcp_.get())) != 0) {
        hub->close(c->id_, Error{"io_error", "accept failed"});
        return;
    }
    ++hub->stats_.accepted;
    ++hub->inbound_;
    c->connected_ = true;
    c->start_reading();
}

uint64_t FrameHub::connect(const Endpoint& to) {
    if (outbound() >= limits_.outbound_max) {
        ++stats_.refused;
        return 0;
    }
    FrameConn* c = create(true);
    if (c == nullptr) return 0;
    const uint64_t id = c->id_;
    ++stats_.connects;
    auto* req = new uv_connect_t{};
    req->data = reinterpret_cast<void*>(static_cast<uintptr_t>(id));
    c->arm_timer(limits_.connect_timeout_ms);
    const int rc = uv_tcp_connect(req, c->tcp_.get(), to.sa(), [](uv_connect_t* r, int status) {
        const auto conn_id = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(r->data));
        auto* conn = static_cast<FrameConn*>(r->handle->data);
        delete r;
        if (conn == nullptr || conn->closing_ || conn->id_ != conn_id) return;
        FrameHub& hub = conn->hub_;
        if (status < 0) {
            hub.close(conn_id, uv_error("connect", status));
            return;
        }
        conn->connected_ = true;
        conn->start_reading();
        if (hub.callbacks_.on_connected) hub.callbacks_.on_connected(*conn);
    });
    if (rc != 0) {
        delete req;
        close(id, uv_error("connect to " + to.str(), rc));
    }
    return id;
}

FrameConn* FrameHub::find(uint64_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() || it->second->closing_ ? nullptr : it->second.get();
}

void FrameHub::close(uint64_t id, std::optional<Error> why) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    std::unique_ptr<FrameConn> c = std::move(it->second);
    conns_.erase(it);
    c->closing_ = true;
    if (!c->outbound_ && c->connected_) --inbound_;
    inbox_bytes_ -= c->inbox_.size();
    if (why) stats_.count_close(why->code);
    // c's handles close as it goes out of scope; their memory is freed in the close callbacks.
    if (callbacks_.on_closed) callbacks_.on_closed(id, std::move(why));
}

// ---------------------------------------------------------------------------------------------
// FrameConn

void FrameConn::arm_timer(uint64_t ms) {
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t* t) {
            auto* self = static_cast<FrameConn*>(t->data);
            if (self == nullptr || self->closing_) return;
            const FrameLimits& l = self->hub_.limits_;
            self->hub_.close(
                self->id_,
                Error{"timeout",
                      self->connected_
                          ? fmt::format("no frame within {} ms", l.idle_timeout_ms)
                          : fmt::format("not connected within {} ms", l.connect_timeout_ms)});
        },
        ms, 0);
}

void FrameConn::start_reading() {
    arm_timer(hub_.limits_.idle_timeout_ms);
    read_buffer_.resize(kReadChunk);
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(tcp_.get()),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
            auto* self = static_cast<FrameConn*>(h->data);
            if (self == nullptr) {
                *buf = uv_buf_init(nullptr, 0);
                return;
            }
            *buf = uv_buf_init(self->read_buffer_.data(),
                               static_cast<unsigned>(self->read_buffer_.size()));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
            auto* self = static_cast<FrameConn*>(s->data);
            if (self == nullptr || self->closing_) return;
            if (n == UV_EOF) {
                self->hub_.close(self->id_);
                return;
            }
            if (n < 0) {
                self->hub_.close(self->id_, uv_error("read", static_cast<int>(n)));
                return;
            }
            self->on_bytes(buf->base, static_cast<size_t>(n));
        });
}

void FrameConn::on_bytes(const char* data, size_t n) {
    if (hub_.inbox_bytes_ + n > hub_.limits_.inbox_bytes_max) {
        hub_.close(id_, Error{"inbox_full",
                              fmt::format("{} bytes of frames are arriving at once, the most "
                                          "this node holds",
                                          hub_.inbox_bytes_)});
        return;
    }
    inbox_.insert(inbox_.end(), data, data + n);
    hub_.inbox_bytes_ += n;
    // Deliver every complete frame. The hub may close us from inside on_frame, which deletes
    // this object: keep the hub and id on the stack and stop as soon as we are gone.
    FrameHub& hub = hub_;
    const uint64_t id = id_;
    size_t at = 0;  // the delivered frames go from the inbox once, not one erase per frame
    while (inbox_.size() - at >= kHeaderBytes) {
        const size_t len = read_be32(inbox_.data() + at);
        if (len > hub.limits_.frame_bytes_max) {
            hub.close(id, Error{"too_large", fmt::format("frame of {} bytes, over the limit of {}",
                                                         len, hub.limits_.frame_bytes_max)});
            return;
        }
        if (inbox_.size() - at < kHeaderBytes + len) break;
        const std::span<const uint8_t> body(inbox_.data() + at + kHeaderBytes, len);
        at += kHeaderBytes + len;
        ++hub.stats_.frames_in;
        std::vector<uint8_t> frame;
        if (hub.envelope_ == nullptr) {
            frame.assign(body.begin(), body.end());
        } else {
            // Opened straight from the inbox: the plaintext is the one copy made.
            auto opened = hub.envelope_->unwrap(body);
            if (!opened) {
                // A peer without our key, or bytes changed on the way: nothing it sends here
                // can be trusted, so the connection goes.
                hub.close(id, Error{"unsealed", "a frame: " + opened.error().message});
                return;
            }
            frame = std::move(*opened);
        }
        arm_timer(hub.limits_.idle_timeout_ms);
        if (hub.callbacks_.on_frame) hub.callbacks_.on_frame(*this, std::move(frame));
        if (hub.find(id) != this) return;  // closed (and deleted) by the callback
    }
    inbox_.erase(inbox_.begin(), inbox_.begin() + at);
    hub.inbox_bytes_ -= at;
    // A large frame's buffer is not kept while the connection idles.
    if (inbox_.capacity() > kReadChunk * 4 && inbox_.size() < kReadChunk) {
        inbox_.shrink_to_fit();
    }
}

bool FrameConn::send(std::span<const uint8_t> frame) {
    if (closing_ || !connected_) return false;
    std::vector<uint8_t> sealed;
    if (hub_.envelope_ != nullptr && hub_.envelope_->seals()) {
        sealed = hub_.envelope_->seal(frame);
        frame = sealed;
    }
    if (frame.size() > hub_.limits_.frame_bytes_max) return false;
    if (outbox_.empty()) hub_.flush_later(id_);
    const auto len = static_cast<uint32_t>(frame.size());
    const uint8_t header[kHeaderBytes] = {
        static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16),
        static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)};
    outbox_.insert(outbox_.end(), header, header + kHeaderBytes);
    outbox_.insert(outbox_.end(), frame.begin(), frame.end());
    ++hub_.stats_.frames_out;
    return true;
}

void FrameConn::flush() {
    if (closing_ || outbox_.empty()) return;
    const size_t queued =
        uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(tcp_.get())) + outbox_.size();
    if (queued > hub_.limits_.write_queue_bytes_max) {
        hub_.close(id_, Error{"slow_peer",
                              fmt::format("{} bytes wait to be written, over the limit of {}: the "
                                          "peer reads too slowly",
                                          queued, hub_.limits_.write_queue_bytes_max)});
        return;
    }
    auto written = write_bytes(reinterpret_cast<uv_stream_t*>(tcp_.get()),
                               std::exchange(outbox_, {}), [](uv_stream_t* s, int status) {
                                   auto* self = static_cast<FrameConn*>(s->data);
                                   if (self == nullptr || self->closing_) return;
                                   --self->writes_pending_;
                                   if (status < 0) {
                                       self->hub_.close(self->id_, uv_error("write", status));
                                   } else {
                                       self->close_if_written();
                                   }
                               });
    if (!written) {
        hub_.close(id_, written.error());
        return;
    }
    if (*written == Written::queued) {
        ++writes_pending_;
    } else {
        close_if_written();
    }
}

void FrameConn::close_if_written() {
    if (close_when_written_ && writes_pending_ == 0 && outbox_.empty()) hub_.close(id_);
}

void FrameConn::close_after_write() {
    if (writes_pending_ == 0 && outbox_.empty()) {
        hub_.close(id_);
    } else {
        close_when_written_ = true;
    }
}

}  // namespace chorus::net
