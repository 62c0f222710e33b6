#include "http/server.hpp"

#include <llhttp.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "daemon/json.hpp"
#include "net/write.hpp"

namespace chorus::http {

namespace {

std::string_view reason(int status) {
    switch (status) {
        case 200:
            return "OK";
        case 202:
            return "Accepted";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 413:
            return "Payload Too Large";
        case 415:
            return "Unsupported Media Type";
        case 422:
            return "Unprocessable Content";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 503:
            return "Service Unavailable";
        default:
            return "Unknown";
    }
}

int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

void split_target(Request& r) {
    const size_t q = r.target.find('?');
    r.path = r.target.substr(0, q);
    if (q == std::string::npos) return;
    std::string_view rest = std::string_view(r.target).substr(q + 1);
    while (!rest.empty()) {
        const size_t amp = rest.find('&');
        const std::string_view pair = rest.substr(0, amp);
        const size_t eq = pair.find('=');
        if (!pair.empty()) {
            r.query[decode(pair.substr(0, eq))] =
                eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1));
        }
        if (amp == std::string_view::npos) break;
        rest.remove_prefix(amp + 1);
    }
}

// Status line and headers; `framing` says how the body's end is found.
std::string head(const Response& r, std::string_view framing, std::string_view node,
                 bool keep_alive) {
    std::string out = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n{}\r\nX-Chorus-Node: {}\r\nConnection: {}\r\n",
        r.status, reason(r.status), r.content_type, framing, node,
        keep_alive ? "keep-alive" : "close");
    for (const auto& [k, v] : r.headers)
        out += fmt::format("{}: {}\r\n", k, v);
    out += "\r\n";
    return out;
}

}  // namespace

Response error_response(int status, std::string_view code, std::string_view message) {
    Response r;
    r.status = status;
    r.body = daemon::dump_json({{"error", {{"code", code}, {"message", message}}}});
    r.error = code;
    return r;
}

// ---------------------------------------------------------------------------------------------

struct Server::Conn {
    Conn(Server& s, uint64_t i) : server(s), id(i) {}
    Server& server;
    uint64_t id;
    std::string client;  // the peer's address without its port; empty until accepted
    std::string peer;    // and with it
    std::unique_ptr<net::TlsSession> tls;
    net::Handle<uv_tcp_t> tcp;
    net::Handle<uv_timer_t> timer;
    llhttp_t parser{};
    Request req;
    std::string field, value;
    bool in_value = false;
    size_t header_bytes = 0;
    std::optional<Response> refusal;  // set by a callback that hit a limit, or the gate
    bool gated = false;               // the gate's refusal
    uint64_t request_id = 0;
    uint64_t begun = 0;     // requests whose parsing has started (the next may be under way)
    bool awaiting = false;  // the handler has the request
    bool keep_alive = true;
    std::string held;  // bytes that arrived while awaiting
    std::vector<char> buffer = std::vector<char>(16 * 1024);
    size_t writes = 0;
    bool close_when_written = false;
    bool closing_soon = false;  // the timer closes it on the loop's next turn: not re-armed
    bool streaming = false;     // the answer is an open Stream; input is ignored
};

namespace {

Server::Conn& conn_of(llhttp_t* p) {
    return *static_cast<Server::Conn*>(p->data);
}

Response busy(size_t held, const Limits& l) {
    Response r = error_response(
        503, "server_busy",
        fmt::format("{} bytes of request bodies are arriving at once, the most this node holds "
                    "({}); retry shortly",
                    held, l.bodies_bytes_max));
    r.headers.emplace_back("Retry-After", "1");
    return r;
}

int count_header(Server::Conn& c, size_t n, const Limits& l) {
    c.header_bytes += n;
    if (c.header_bytes <= l.header_bytes_max) return 0;
    c.refusal =
        error_response(431, "headers_too_large",
                       fmt::format("request line and headers exceed {} bytes", l.header_bytes_max));
    return -1;
}

void commit_header(Server::Conn& c) {
    if (c.field.empty()) return;
    std::string name = c.field;
    for (char& ch : name)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    c.req.headers[name] = c.value;
    c.field.clear();
    c.value.clear();
    c.in_value = false;
}

}  // namespace

Server::Server(uv_loop_t* loop, Limits limits, std::string node_name, Handler handler)
    : loop_(loop),
      limits_(limits),
      node_name_(std::move(node_name)),
      handler_(std::move(handler)) {}

Server::~Server() {
    *self_ = nullptr;
}

Result<std::unique_ptr<Server>> Server::listen(uv_loop_t* loop, const net::Endpoint& at,
                                               Limits limits, std::string node_name,
                                               Handler handler,
                                               std::shared_ptr<net::TlsContext> tls) {
    std::unique_ptr<Server> s(new Server(loop, limits, std::move(node_name), std::move(handler)));
    s->tls_ = std::move(tls);
    auto h = net::make_handle<uv_tcp_t>(
        loop, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); }, s.get());
    if (!h) return h.error();
    s->listener_ = std::move(*h);
    if (const int rc = uv_tcp_bind(s->listener_.get(), at.sa(), 0); rc != 0) {
        return net::uv_error("bind http " + at.str(), rc);
    }
    if (const int rc =
            uv_listen(reinterpret_cast<uv_stream_t*>(s->listener_.get()), 128, on_connection);
        rc != 0) {
        return net::uv_error("listen http " + at.str(), rc);
    }
    return s;
}

net::Endpoint Server::local() const {
    sockaddr_storage ss{};
    int len = sizeof(ss);
    uv_tcp_getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    return net::Endpoint::from(reinterpret_cast<sockaddr*>(&ss));
}

void Server::disarm(Conn& c) {
    if (!c.closing_soon) uv_timer_stop(c.timer.get());
}

void Server::arm(Conn& c, uint64_t ms) {
    if (c.closing_soon) return;
    uv_timer_start(
        c.timer.get(),
        [](uv_timer_t* t) {
            auto* conn = static_cast<Conn*>(t->data);
            if (conn == nullptr || conn->awaiting)
                return;  // a slow handler is not the client's fault
            ++conn->server.stats_.timeouts;
            conn->server.close(conn->id);
        },
        ms, 0);
}

void Server::on_connection(uv_stream_t* listener, int status) {
    auto* s = static_cast<Server*>(listener->data);
    if (s == nullptr || status < 0) return;
    auto tcp = net::make_handle<uv_tcp_t>(
        s->loop_, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); }, nullptr);
    if (!tcp || uv_accept(listener, reinterpret_cast<uv_stream_t*>(tcp->get())) != 0) return;
    if (s->conns_.size() >= s->limits_.connections_max) {
        ++s->stats_.refused;
        return;  // closed as `tcp` goes
    }
    std::string client, peer;
    sockaddr_storage addr{};
    int addr_len = sizeof(addr);
    if (uv_tcp_getpeername(tcp->get(), reinterpret_cast<sockaddr*>(&addr), &addr_len) == 0) {
        const std::string at = net::Endpoint::from(reinterpret_cast<sockaddr*>(&addr)).str();
        client = at.substr(0, at.rfind(':'));
        peer = at;
    }
    if (s->per_client_[client] >= s->limits_.connections_per_client_max) {
        ++s->stats_.refused_per_client;
        return;  // closed as `tcp` goes
    }
    auto timer = net::make_timer(s->loop_, nullptr);
    if (!timer) return;
    const uint64_t id = s->next_id_++;
    auto c = std::make_unique<Conn>(*s, id);
    c->client = std::move(client);
    c->peer = std::move(peer);
    if (s->tls_) {
        c->tls = net::TlsSession::accept(s->tls_);
        if (!c->tls) return;  // out of memory: closed as `c` goes
    }
    ++s->per_client_[c->client];
    c->tcp = std::move(*tcp);
    c->timer = std::move(*timer);
    c->tcp->data = c.get();
    c->timer->data = c.get();

    static const llhttp_settings_t settings = [] {
        llhttp_settings_t st;
        llhttp_settings_init(&st);
        st.on_message_begin = [](llhttp_t* p) {
            Conn& cn = conn_of(p);
            cn.server.release(cn);
            ++cn.begun;
            cn.req = Request{};
            cn.req.peer = cn.peer;
            if (cn.tls) cn.req.client_cert = cn.tls->peer_subject();
            cn.header_bytes = 0;
            cn.field.clear();
            cn.value.clear();
            cn.in_value = false;
            return 0;
        };
        st.on_url = [](llhttp_t* p, const char* at, size_t n) {
            Conn& cn = conn_of(p);
            cn.req.target.append(at, n);
            return count_header(cn, n, cn.server.limits_);
        };
        st.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
            Conn& cn = conn_of(p);
            if (cn.in_value) commit_header(cn);
            cn.field.append(at, n);
            return count_header(cn, n, cn.server.limits_);
        };
        st.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
            Conn& cn = conn_of(p);
            cn.in_value = true;
            cn.value.append(at, n);
            return count_header(cn, n, cn.server.limits_);
        };
        st.on_headers_complete = [](llhttp_t* p) {
            Conn& cn = conn_of(p);
            commit_header(cn);
            cn.req.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
            split_target(cn.req);
            if (cn.server.gate) {
                if (auto refused = cn.server.gate(cn.req)) {
                    cn.refusal = std::move(*refused);
                    cn.gated = true;
                    return -1;
                }
            }
            const Limits& l = cn.server.limits_;
            if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > l.body_bytes_max) {
                cn.refusal = error_response(413, "body_too_large",
                                            fmt::format("body of {} bytes exceeds the limit of {}",
                                                        p->content_length, l.body_bytes_max));
                return -1;
            }
            if ((p->flags & F_CONTENT_LENGTH) != 0 &&
                cn.server.bodies_bytes_ + p->content_length > l.bodies_bytes_max) {
                cn.refusal = busy(cn.server.bodies_bytes_, l);
                return -1;
            }
            return 0;
        };
        st.on_body = [](llhttp_t* p, const char* at, size_t n) {
            Conn& cn = conn_of(p);
            Server& s = cn.server;
            const Limits& l = s.limits_;
            if (cn.req.body.size() + n > l.body_bytes_max) {
                cn.refusal = error_response(
                    413, "body_too_large",
                    fmt::format("body exceeds the limit of {} bytes", l.body_bytes_max));
                return -1;
            }
            if (s.bodies_bytes_ + n > l.bodies_bytes_max) {
                cn.refusal = busy(s.bodies_bytes_, l);
                return -1;
            }
            cn.req.body.append(at, n);
            s.bodies_bytes_ += n;
            return 0;
        };
        st.on_message_complete = [](llhttp_t* p) {
            Conn& cn = conn_of(p);
            cn.keep_alive = llhttp_should_keep_alive(p) != 0;
            cn.awaiting = true;
            ++cn.request_id;
            return static_cast<int>(HPE_PAUSED);  // one request at a time
        };
        return st;
    }();
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c.get();
    Conn& ref = *c;
    s->conns_.emplace(id, std::move(c));
    ++s->stats_.connections;
    s->arm(ref, s->limits_.header_timeout_ms);
    s->start_reading(ref);
}

void Server::start_reading(Conn& c) {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(c.tcp.get()),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
            auto* cn = static_cast<Conn*>(h->data);
            *buf = cn == nullptr
                       ? uv_buf_init(nullptr, 0)
                       : uv_buf_init(cn->buffer.data(), static_cast<unsigned>(cn->buffer.size()));
        },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
            auto* cn = static_cast<Conn*>(st->data);
            if (cn == nullptr) return;
            if (n < 0) {
                cn->server.close(cn->id);
                return;
            }
            cn->server.receive(*cn, buf->base, static_cast<size_t>(n));
        });
}

void Server::receive(Conn& c, const char* data, size_t n) {
    if (!c.tls) return feed(c, data, n);
    std::string out;
    auto plain = c.tls->decrypt(std::string_view(data, n), out);
    if (!plain) {
        // A client that does not speak TLS, or that does not trust us (or we it): the alert
        // that says why goes out, then the connection closes.
        ++stats_.tls_failures;
        uv_read_stop(reinterpret_cast<uv_stream_t*>(c.tcp.get()));
        c.close_when_written = true;
        if (out.empty()) {
            close_soon(c);
        } else {
            send_raw(c, std::move(out));
        }
        return;
    }
    if (!out.empty()) send_raw(c, std::move(out));
    const uint64_t id = c.id;
    const bool ended = c.tls->peer_closed();
    if (!plain->empty()) feed(c, plain->data(), plain->size());
    // The peer's close_notify ends its side as a TCP end would: the connection goes.
    if (ended && find(id) != nullptr) close(id);
}

void Server::feed(Conn& c, const char* data, size_t n) {
    if (c.streaming) return;  // a stream's client has nothing more to say; we read to see EOF
    if (c.awaiting) {
        c.held.append(data, n);
        uv_read_stop(reinterpret_cast<uv_stream_t*>(c.tcp.get()));
        return;
    }
    const llhttp_errno_t err = llhttp_execute(&c.parser, data, n);
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED) {
        const char* stop = llhttp_get_error_pos(&c.parser);
        if (stop != nullptr && stop < data + n) c.held.assign(stop, data + n - stop);
        if (!c.held.empty()) uv_read_stop(reinterpret_cast<uv_stream_t*>(c.tcp.get()));
        disarm(c);
        ++stats_.requests;
        const Reply reply(self_, c.id, c.request_id);
        if (auto refused = check_body(c.req)) {
            reply.send(std::move(*refused));
            return;
        }
        const uint64_t id = c.id;
        const uint64_t begun = c.begun;
        handler_(c.req, reply);
        // The handler has copied what it needs: an idle keep-alive connection (or one held by
        // a blocking query) keeps no body nor parsed JSON. It may have closed the connection,
        // or answered at once and let the parser start on the next pipelined request.
        if (Conn* still = find(id); still != nullptr && still->begun == begun) release(*still);
        return;
    }
    if (c.refusal) {
        Response r = std::move(*c.refusal);
        if (c.gated && on_answered) on_answered(c.req, r);
        (c.gated           ? stats_.gated
         : r.status == 431 ? stats_.headers_too_large
         : r.status == 503 ? stats_.busy
                           : stats_.bodies_too_large)++;
        fail(c, std::move(r));
        return;
    }
    ++stats_.bad_requests;
    fail(c, error_response(400, "bad_request",
                           fmt::format("malformed HTTP: {}", llhttp_get_error_reason(&c.parser))));
}

std::optional<Response> Server::check_body(Request& req) {
    if (req.body.empty()) return std::nullopt;
    const auto type = req.headers.find("content-type");
    const std::string_view media =
        type == req.headers.end() ? std::string_view() : std::string_view(type->second);
    if (media.substr(0, media.find(';')) != "application/json") {
        ++stats_.unsupported_media;
        return error_response(
            415, "unsupported_media_type",
            "a request body must be JSON, sent as Content-Type: application/json");
    }
    auto parsed = daemon::parse_json(req.body);
    if (!parsed) {
        ++(parsed.error().code == "too_deep" ? stats_.too_deep : stats_.bad_json);
        return error_response(400, parsed.error().code,
                              fmt::format("the body is {}", parsed.error().message));
    }
    req.json = std::move(*parsed);
    return std::nullopt;
}

void Server::fail(Conn& c, Response r) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(c.tcp.get()));
    write(c, r, false);
}

void Server::write(Conn& c, const Response& r, bool keep_alive) {
    std::string out =
        head(r, fmt::format("Content-Length: {}", r.body.size()), node_name_, keep_alive);
    out += r.body;
    if (!keep_alive) c.close_when_written = true;
    send_bytes(c, std::move(out));
}

void Server::send_bytes(Conn& c, std::string bytes) {
    if (c.tls) {
        // Before the handshake there is no one to answer (a timeout's 408 to a client that
        // never said hello): the connection just closes.
        if (!c.tls->established()) {
            close_soon(c);
            return;
        }
        bytes = c.tls->encrypt(bytes);
        // The last bytes on the connection: the peer learns the end was meant.
        if (c.close_when_written) bytes += c.tls->shutdown();
    }
    send_raw(c, std::move(bytes));
}

void Server::send_raw(Conn& c, std::string bytes) {
    auto written =
        net::write_bytes(reinterpret_cast<uv_stream_t*>(c.tcp.get()), std::move(bytes),
                         [](uv_stream_t* s, int status) {
                             auto* cn = static_cast<Conn*>(s->data);
                             if (cn == nullptr) return;
                             --cn->writes;
                             if (status < 0 || (cn->close_when_written && cn->writes == 0)) {
                                 cn->server.close(cn->id);
                             }
                         });
    if (written && *written == net::Written::queued) {
        ++c.writes;
    } else if (!written || (c.close_when_written && c.writes == 0)) {
        close_soon(c);
    }
}

void Server::close_soon(Conn& c) {
    // From the loop, not here: the caller may still be using the connection.
    c.closing_soon = true;
    uv_timer_start(
        c.timer.get(),
        [](uv_timer_t* t) {
            if (auto* conn = static_cast<Conn*>(t->data)) conn->server.close(conn->id);
        },
        0, 0);
}

Server::Conn* Server::find(uint64_t conn) {
    auto it = conns_.find(conn);
    return it == conns_.end() ? nullptr : it->second.get();
}

Server::Conn* Server::awaiting(uint64_t conn, uint64_t request) {
    Conn* c = find(conn);
    return c != nullptr && c->awaiting && !c->streaming && c->request_id == request ? c : nullptr;
}

bool Server::stream_write(uint64_t conn, std::string_view bytes) {
    Conn* c = find(conn);
    if (c == nullptr || !c->streaming || c->close_when_written) return false;
    const size_t backlog =
        uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(c->tcp.get()));
    if (backlog + bytes.size() > limits_.stream_backlog_bytes_max) {
        ++stats_.stream_overflows;
        close(conn);
        return false;
    }
    send_bytes(*c, fmt::format("{:x}\r\n{}\r\n", bytes.size(), bytes));
    return true;
}

void Server::answer(uint64_t conn, uint64_t request, Response r) {
    Conn* found = awaiting(conn, request);
    if (found == nullptr) return;
    Conn& c = *found;
    c.awaiting = false;
    if (on_answered) on_answered(c.req, r);
    write(c, r, c.keep_alive);
    if (!c.keep_alive) return;
    // Ready for the next request: the idle clock runs, and whatever arrived meanwhile is parsed.
    llhttp_resume(&c.parser);
    arm(c, limits_.header_timeout_ms);
    std::string held = std::move(c.held);
    c.held.clear();
    start_reading(c);
    if (!held.empty()) feed(c, held.data(), held.size());
}

void Server::release(Conn& c) {
    bodies_bytes_ -= c.req.body.size();
    std::string().swap(c.req.body);
    c.req.json = nullptr;
}

void Server::close(uint64_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    std::unique_ptr<Conn> c = std::move(it->second);
    conns_.erase(it);
    c->tcp->data = nullptr;
    c->timer->data = nullptr;
    // A call its client left before the answer still happened (or will): it gets its line.
    if (c->awaiting && on_answered) {
        on_answered(c->req, error_response(499, "client_gone",
                                           "the client closed the connection before the answer"));
    }
    release(*c);
    if (auto n = per_client_.find(c->client); n != per_client_.end() && --n->second == 0) {
        per_client_.erase(n);
    }
    // The handles close as `c` goes; their memory is freed in the close callbacks.
    if (on_closed) on_closed(conn);
}

void Reply::send(Response r) const {
    auto owner = server_.lock();
    if (!owner || *owner == nullptr) return;
    (*owner)->answer(conn_, request_, std::move(r));
}

bool Reply::pending() const {
    auto owner = server_.lock();
    return owner && *owner != nullptr && (*owner)->awaiting(conn_, request_) != nullptr;
}

Stream Reply::stream(const Response& first) const {
    auto owner = server_.lock();
    if (!owner || *owner == nullptr) return {};
    Server& s = **owner;
    Server::Conn* c = s.awaiting(conn_, request_);
    if (c == nullptr) return {};
    c->streaming = true;
    c->held.clear();
    ++s.stats_.streams;
    s.send_bytes(*c, head(first, "Transfer-Encoding: chunked\r\nCache-Control: no-cache",
                          s.node_name_, false));
    // Reading goes on only to notice the client leaving; the timer stays off.
    s.disarm(*c);
    s.start_reading(*c);
    return Stream(server_, conn_);
}

bool Stream::write(std::string_view bytes) const {
    auto owner = server_.lock();
    return owner && *owner != nullptr && !bytes.empty() && (*owner)->stream_write(conn_, bytes);
}

bool Stream::open() const {
    auto owner = server_.lock();
    if (!owner || *owner == nullptr) return false;
    const Server::Conn* c = (*owner)->find(conn_);
    return c != nullptr && c->streaming && !c->close_when_written;
}

void Stream::close() const {
    auto owner = server_.lock();
    if (!owner || *owner == nullptr) return;
    Server::Conn* c = (*owner)->find(conn_);
    if (c == nullptr || !c->streaming || c->close_when_written) return;
    c->close_when_written = true;
    (*owner)->send_bytes(*c, "0\r\n\r\n");
}

}  // namespace chorus::http
