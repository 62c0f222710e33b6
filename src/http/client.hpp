// A small HTTP/1.1 client for the CLI and the http task handler: one request per connection on a
// libuv loop, the response parsed by llhttp (the server's parser, in response mode), and a reader
// for Server-Sent Events.
//
// Responses are untrusted like any input: the head and a collected body are bounded, and the
// whole exchange has a deadline, so a stuck or hostile server cannot hang the CLI. A stream
// (on_body set) has no deadline once its head has arrived; it ends when either side closes.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "net/endpoint.hpp"
#include "net/tls.hpp"

namespace chorus::http {

struct ClientRequest {
    std::string method = "GET";
    std::string target = "/";
    std::string body;
    // More header fields, sent as they are (no CR or LF in them: call() checks).
    std::vector<std::pair<std::string, std::string>> headers;
    Duration timeout = seconds(10);  // connect to complete response (to the head for streams)
    // Set for a stream: called with body bytes as they arrive instead of collecting them;
    // returning false ends the exchange.
    std::function<bool(std::string_view)> on_body;
    size_t body_bytes_max = 64u << 20;  // a collected body longer than this is an error
    // The Host header: the name the server was asked for ("name:port"); empty: the address
    // dialled.
    std::string host;
    // Set: the exchange speaks TLS, and the server's certificate must be valid for
    // `server_name` (a host name or an IP address).
    std::shared_ptr<net::TlsContext> tls;
    std::string server_name;
};

struct ClientResponse {
    int status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
};

// Bounds on what a server may send back (the body's is per request).
inline constexpr size_t kClientHeadBytesMax = 64 * 1024;

// Starts one exchange on `loop`; `done` runs once with the response or an error (possibly
// before fetch_async returns, when the connection cannot even be attempted).
void fetch_async(uv_loop_t* loop, const net::Endpoint& to, ClientRequest request,
                 std::function<void(Result<ClientResponse>)> done);

// Runs `loop` until the exchange is over. Errors: could not connect, timed out, a malformed or
// oversized response, or the server closed before answering.
Result<ClientResponse> fetch(uv_loop_t* loop, const net::Endpoint& to, ClientRequest request);

// Percent-encodes everything but RFC 3986's unreserved characters, for a query value.
std::string url_encode(std::string_view s);

// "host:port" to an endpoint; the host may be a name (resolved once, now).
Result<net::Endpoint> resolve(std::string_view host_port);

// Splits a Server-Sent Events byte stream into events. Comments (heartbeats) are skipped.
class SseReader {
  public:
    struct Event {
        std::string type = "message";
        std::string id;
        std::string data;
    };
    // The events completed by `bytes`; a partial one waits for the rest. A line longer than
    // kLineMax is an error (nullopt).
    std::optional<std::vector<Event>> feed(std::string_view bytes);
    static constexpr size_t kLineMax = 16 * 1024 * 1024;

  private:
    std::string line_;
    Event pending_;
    bool has_data_ = false;
};

}  // namespace chorus::http
