#include "http/client.hpp"

#include <llhttp.h>
#include <netdb.h>

#include <utility>

#include <fmt/format.h>

#include "net/handle.hpp"
#include "net/write.hpp"

namespace chorus::http {

namespace {

struct Exchange {
    ClientRequest request;
    ClientResponse response;
    net::Handle<uv_tcp_t> tcp;
    net::Handle<uv_timer_t> timer;
    llhttp_t parser{};
    std::string field, value;
    bool in_value = false;
    size_t head_bytes = 0;
    bool head_done = false;
    bool done = false;
    std::optional<Error> error;
    std::string host;
    std::vector<char> buffer = std::vector<char>(64 * 1024);
    std::unique_ptr<net::TlsSession> tls;
    std::string unsent;  // over TLS, the request until the handshake is done

    std::function<void(Result<ClientResponse>)> on_done;

    void fail(std::string code, std::string message) {
        if (done) return;
        error = Error{std::move(code), std::move(message)};
        done = true;
    }
    // Called last in every libuv callback: once the exchange is over, hands the outcome over
    // and frees the exchange (its handles close through RAII).
    static void notify_if_done(Exchange* x) {
        if (!x->done) return;
        auto cb = std::move(x->on_done);
        Result<ClientResponse> r = x->error ? Result<ClientResponse>(*x->error)
                                            : Result<ClientResponse>(std::move(x->response));
        delete x;
        cb(std::move(r));
    }
};

Exchange& of(llhttp_t* p) {
    return *static_cast<Exchange*>(p->data);
}

int count_head(Exchange& x, size_t n) {
    x.head_bytes += n;
    return x.head_bytes > kClientHeadBytesMax ? -1 : 0;
}

void commit_header(Exchange& x) {
    if (x.field.empty()) return;
    for (char& c : x.field)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    x.response.headers[x.field] = x.value;
    x.field.clear();
    x.value.clear();
    x.in_value = false;
}

const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
        llhttp_settings_t st;
        llhttp_settings_init(&st);
        st.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
            Exchange& x = of(p);
            if (x.in_value) commit_header(x);
            x.field.append(at, n);
            return count_head(x, n);
        };
        st.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
            Exchange& x = of(p);
            x.in_value = true;
            x.value.append(at, n);
            return count_head(x, n);
        };
        st.on_headers_complete = [](llhttp_t* p) {
            Exchange& x = of(p);
            commit_header(x);
            x.response.status = p->status_code;
            x.head_done = true;
            // A stream runs as long as it is wanted; the deadline covered getting this far.
            if (x.request.on_body) uv_timer_stop(x.timer.get());
            return 0;
        };
        st.on_body = [](llhttp_t* p, const char* at, size_t n) {
            Exchange& x = of(p);
            if (x.request.on_body) {
                if (!x.request.on_body(std::string_view(at, n))) {
                    x.done = true;
                    return static_cast<int>(HPE_PAUSED);
                }
                return 0;
            }
            if (x.response.body.size() + n > x.request.body_bytes_max) return -1;
            x.response.body.append(at, n);
            return 0;
        };
        st.on_message_complete = [](llhttp_t* p) {
            of(p).done = true;
            return static_cast<int>(HPE_PAUSED);
        };
        return st;
    }();
    return s;
}

void read_into(Exchange* x, ssize_t n, const char* data) {
    if (n == UV_EOF) {
        // A body delimited by the connection's end completes here; anything else is cut short.
        if (llhttp_finish(&x->parser) == HPE_OK && x->head_done && !x->done) {
            x->done = true;
            return;
        }
        x->fail("closed", x->head_done ? "the server closed the connection mid-response"
                                       : "the server closed the connection without answering");
        return;
    }
    if (n < 0) {
        x->fail("io_error",
                fmt::format("reading the response: {}", uv_strerror(static_cast<int>(n))));
        return;
    }
    const llhttp_errno_t err = llhttp_execute(&x->parser, data, static_cast<size_t>(n));
    if (err == HPE_OK || err == HPE_PAUSED) return;
    x->fail("bad_response",
            x->head_bytes > kClientHeadBytesMax
                ? "the response's headers are too large"
                : fmt::format("malformed response: {}", llhttp_get_error_reason(&x->parser)));
}

bool send(Exchange* x, std::string bytes) {
    if (bytes.empty()) return true;
    if (net::write_bytes(reinterpret_cast<uv_stream_t*>(x->tcp.get()), std::move(bytes),
                         [](uv_stream_t*, int) {})) {
        return true;
    }
    x->fail("io_error", "could not send the request");
    return false;
}

// Over TLS: the response's bytes opened, the handshake's answered, and the request sent once
// the handshake is done.
void read_tls(Exchange* x, ssize_t n, const char* data) {
    if (n < 0) return read_into(x, n, data);
    std::string out;
    auto plain = x->tls->decrypt(std::string_view(data, static_cast<size_t>(n)), out);
    send(x, std::move(out));
    if (!plain) return x->fail("tls_failed", plain.error().message);
    if (x->tls->established() && !x->unsent.empty() &&
        !send(x, x->tls->encrypt(std::exchange(x->unsent, std::string())))) {
        return;
    }
    if (!plain->empty()) read_into(x, static_cast<ssize_t>(plain->size()), plain->data());
    if (x->tls->peer_closed() && !x->done) read_into(x, UV_EOF, nullptr);
}

void on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
    auto* x = static_cast<Exchange*>(stream->data);
    if (x == nullptr || x->done) return;
    if (x->tls) {
        read_tls(x, n, buf->base);
    } else {
        read_into(x, n, buf->base);
    }
    Exchange::notify_if_done(x);
}

void send_request(Exchange* x, int status);

void on_connect(uv_connect_t* req, int status) {
    auto* x = static_cast<Exchange*>(req->handle->data);
    delete req;
    if (x == nullptr) return;
    send_request(x, status);
    Exchange::notify_if_done(x);
}

void send_request(Exchange* x, int status) {
    if (status < 0) {
        x->fail("unreachable", uv_strerror(status));
        return;
    }
    std::string out = fmt::format(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chorus-cli\r\n"
        "Accept: */*\r\nConnection: close\r\n",
        x->request.method, x->request.target, x->request.host.empty() ? x->host : x->request.host);
    for (const auto& [name, value] : x->request.headers)
        out += fmt::format("{}: {}\r\n", name, value);
    if (!x->request.body.empty() || x->request.method == "POST")
        out += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n",
                           x->request.body.size());
    out += "\r\n";
    out += x->request.body;
    auto* stream = reinterpret_cast<uv_stream_t*>(x->tcp.get());
    if (x->request.tls) {
        auto session = net::TlsSession::connect(x->request.tls, x->request.server_name);
        if (!session) return x->fail(session.error().code, session.error().message);
        x->tls = std::move(*session);
        x->unsent = std::move(out);
        out = x->tls->start();
    }
    if (!send(x, std::move(out))) return;
    uv_read_start(
        stream,
        [](uv_handle_t* h, size_t, uv_buf_t* out_buf) {
            auto* ex = static_cast<Exchange*>(h->data);
            *out_buf = ex == nullptr ? uv_buf_init(nullptr, 0)
                                     : uv_buf_init(ex->buffer.data(),
                                                   static_cast<unsigned>(ex->buffer.size()));
        },
        on_read);
}

}  // namespace

void fetch_async(uv_loop_t* loop, const net::Endpoint& to, ClientRequest request,
                 std::function<void(Result<ClientResponse>)> done) {
    auto* x = new Exchange;
    x->request = std::move(request);
    x->on_done = std::move(done);
    x->host = to.str();
    const auto fail_now = [&](Error e) {
        x->fail(e.code, e.message);
        Exchange::notify_if_done(x);
    };
    auto tcp = net::make_handle<uv_tcp_t>(
        loop, [](uv_loop_t* l, uv_tcp_t* t) { return uv_tcp_init(l, t); }, x);
    if (!tcp) return fail_now(tcp.error());
    x->tcp = std::move(*tcp);
    auto timer = net::make_timer(loop, x);
    if (!timer) return fail_now(timer.error());
    x->timer = std::move(*timer);
    llhttp_init(&x->parser, HTTP_RESPONSE, &settings());
    x->parser.data = x;

    auto* req = new uv_connect_t{};
    if (const int rc = uv_tcp_connect(req, x->tcp.get(), to.sa(), on_connect); rc != 0) {
        delete req;
        return fail_now(Error{"unreachable", uv_strerror(rc)});
    }
    uv_timer_start(
        x->timer.get(),
        [](uv_timer_t* t) {
            if (auto* ex = static_cast<Exchange*>(t->data)) {
                ex->fail("timeout", "no answer in time");
                Exchange::notify_if_done(ex);
            }
        },
        static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(x->request.timeout).count()),
        0);
}

Result<ClientResponse> fetch(uv_loop_t* loop, const net::Endpoint& to, ClientRequest request) {
    std::optional<Result<ClientResponse>> out;
    fetch_async(loop, to, std::move(request),
                [&out](Result<ClientResponse> r) { out = std::move(r); });
    while (!out)
        uv_run(loop, UV_RUN_ONCE);
    // The exchange's handles are closing; the loop's owner runs their close callbacks.
    return std::move(*out);
}

std::string url_encode(std::string_view s) {
    std::string out;
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
            out += c;
        } else {
            out += fmt::format("%{:02X}", u);
        }
    }
    return out;
}

Result<net::Endpoint> resolve(std::string_view host_port) {
    if (auto e = net::Endpoint::parse(host_port)) return *e;
    auto hp = net::split_host_port(host_port);
    if (!hp) return hp.error();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(hp->port);
    if (const int rc = getaddrinfo(hp->host.c_str(), port.c_str(), &hints, &found); rc != 0)
        return Error{"unresolved", fmt::format("{}: {}", hp->host, gai_strerror(rc))};
    net::Endpoint e = net::Endpoint::from(found->ai_addr);
    freeaddrinfo(found);
    return e;
}

std::optional<std::vector<SseReader::Event>> SseReader::feed(std::string_view bytes) {
    std::vector<Event> out;
    for (char c : bytes) {
        if (c != '\n') {
            if (line_.size() >= kLineMax) return std::nullopt;
            line_ += c;
            continue;
        }
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        if (line_.empty()) {  // a blank line ends an event
            if (has_data_) out.push_back(std::move(pending_));
            pending_ = Event{};
            has_data_ = false;
        } else if (line_[0] != ':') {
            const size_t colon = line_.find(':');
            const std::string field = line_.substr(0, colon);
            std::string value = colon == std::string::npos ? "" : line_.substr(colon + 1);
            if (!value.empty() && value[0] == ' ') value.erase(0, 1);
            if (field == "event") {
                pending_.type = value;
            } else if (field == "id") {
                pending_.id = value;
            } else if (field == "data") {
                if (has_data_) pending_.data += '\n';
                pending_.data += value;
                has_data_ = true;
            }
        }
        line_.clear();
    }
    return out;
}

}  // namespace chorus::http
