// HTTP/1.1 server on the loop, parsing with llhttp (the API in README.md).
//
// Every limit an untrusted client could push is bounded: header bytes (431), body bytes (413,
// answered as soon as the length is known, even while the client is still sending), the bytes
// of bodies arriving at once over all connections (503), connections in all and per client
// address (refused at accept), and time: a request's headers must arrive within
// header_timeout, and so must the next one's on a keep-alive connection. A request's body and
// parsed JSON are released as soon as the handler has run. Malformed requests get 400 with a
// JSON error and the connection closes. A body must be JSON that parses (415 or 400
// otherwise, on a connection that stays open). Each case is counted. When a connection goes,
// on_closed tells the owner, so what waits to answer it (a blocking query, a stream) is let go
// at once.
//
// The handler answers through a Reply it may keep, so a blocking query can answer later. One
// request at a time per connection: a pipelined request waits until the previous one is
// answered. A Reply may instead open a Stream (Server-Sent Events): the head goes out with
// chunked encoding and the handler writes to it until either side closes. A stream's client
// is not under the idle timeout, but one that does not read is dropped once its backlog
// passes stream_backlog_bytes_max.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "net/endpoint.hpp"
#include "net/handle.hpp"
#include "net/tls.hpp"

namespace chorus::http {

struct Limits {
    size_t header_bytes_max = 16 * 1024;
    size_t body_bytes_max = 1 << 20;
    // Bytes of request bodies held at once, over every connection; a body that would pass it
    // gets 503 (retry shortly). 64 clients sending a body of the largest size at once.
    size_t bodies_bytes_max = 64u << 20;
    size_t connections_max = 512;
    // Connections from one client address at once (Consul's http_max_conns_per_client).
    size_t connections_per_client_max = 200;
    // A request's headers must arrive within this, the first on a connection and each next
    // one on a keep-alive connection: an idle connection costs a socket, so it is not kept.
    uint64_t header_timeout_ms = 10'000;
    size_t stream_backlog_bytes_max = 1 << 20;
};

struct Request {
    std::string method;
    std::string target;  // as sent: path and query
    std::string path;
    std::map<std::string, std::string> query;    // decoded
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string peer;                            // the client's address and port
    std::string client_cert;  // over TLS, the verified client certificate's subject
    std::string caller;       // who the gate let in (a token's id), for the audit log
    std::string body;
    // The body parsed, when there is one: the server answers 415 to a body that is not
    // application/json and 400 to one that does not parse, before a handler sees either.
    nlohmann::json json;
};

struct Response {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
    // For the audit log, not sent: what the call acted on (a task's id), and the error's code
    // (error_response sets it).
    std::string subject;
    std::string error;
};

// {"error": {"code": ..., "message": ...}} with the given status (the API in README.md).
Response error_response(int status, std::string_view code, std::string_view message);

class Server;

// The open end of a streamed response. Writing after either side closed is a no-op that
// returns false; the owner drops the stream then.
class Stream {
  public:
    Stream() = default;
    bool write(std::string_view bytes) const;
    bool open() const;
    void close() const;  // ends the response and the connection
    uint64_t connection() const { return conn_; }

  private:
    friend class Reply;
    Stream(std::weak_ptr<Server*> server, uint64_t conn)
        : server_(std::move(server)), conn_(conn) {}
    std::weak_ptr<Server*> server_;
    uint64_t conn_ = 0;
};

// Answers one request, now or later. Answering twice, or after the client has gone, is a no-op.
class Reply {
  public:
    void send(Response r) const;
    // The connection it answers on (what Server::on_closed names when it goes).
    uint64_t connection() const { return conn_; }
    // Sends `first`'s head (status, type, headers; its body is ignored) and keeps the response
    // open. An empty Stream if the request was already answered or its client has gone.
    Stream stream(const Response& first) const;
    bool pending() const;

  private:
    friend class Server;
    Reply(std::weak_ptr<Server*> server, uint64_t conn, uint64_t request)
        : server_(std::move(server)), conn_(conn), request_(request) {}
    std::weak_ptr<Server*> server_;
    uint64_t conn_;
    uint64_t request_;
};

class Server {
  public:
    using Handler = std::function<void(const Request&, Reply)>;
    struct Stats {
        uint64_t connections = 0;
        uint64_t refused = 0;
        uint64_t requests = 0;
        uint64_t bad_requests = 0;        // 400
        uint64_t headers_too_large = 0;   // 431
        uint64_t bodies_too_large = 0;    // 413
        uint64_t refused_per_client = 0;  // connections_per_client_max from one address
        uint64_t busy = 0;                // 503: bodies_bytes_max held at once
        uint64_t bad_json = 0;            // 400 for a body that does not parse
        uint64_t too_deep = 0;            // 400 for a body nested past kJsonDepthMax
        uint64_t unsupported_media = 0;   // 415 for a body that is not JSON
        uint64_t timeouts = 0;
        uint64_t streams = 0;
        uint64_t stream_overflows = 0;  // stream clients dropped for not reading
        uint64_t gated = 0;             // refused by the gate (counted by its owner too)
        uint64_t tls_failures = 0;      // handshakes or records that failed
    };

    // With `tls`, every connection speaks TLS (net/tls.hpp) and plain HTTP gets nothing.
    static Result<std::unique_ptr<Server>> listen(uv_loop_t* loop, const net::Endpoint& at,
                                                  Limits limits, std::string node_name,
                                                  Handler handler,
                                                  std::shared_ptr<net::TlsContext> tls = nullptr);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    net::Endpoint local() const;
    const Stats& stats() const { return stats_; }
    size_t connections() const { return conns_.size(); }
    size_t bodies_bytes() const { return bodies_bytes_; }
    bool open(uint64_t conn) const { return conns_.contains(conn); }
    // Reads null once the server is gone, for whoever may outlive it.
    std::weak_ptr<Server*> handle() const { return self_; }
    // Called with a connection's id when it closes, for whatever waits to answer on it.
    std::function<void(uint64_t conn)> on_closed;
    // Called once a request's headers have arrived, before its body is read: a response
    // refuses the request (answered at once, then the connection closes, the body unread); it
    // may set the request's `caller`.
    std::function<std::optional<Response>(Request& req)> gate;
    // Called with each request and the response it gets, as it is sent (the gate's refusals
    // too; not the 400s and 413s of requests that never reached a handler, nor a stream).
    std::function<void(const Request& req, const Response& r)> on_answered;

    struct Conn;  // one client connection; defined in server.cpp

  private:
    friend class Reply;
    friend class Stream;
    Server(uv_loop_t* loop, Limits limits, std::string node_name, Handler handler);
    static void on_connection(uv_stream_t* server, int status);
    void start_reading(Conn& c);
    void receive(Conn& c, const char* data, size_t n);  // from the socket: TLS, then feed
    void feed(Conn& c, const char* data, size_t n);
    void fail(Conn& c, Response r);
    std::optional<Response> check_body(Request& req);  // 415/400 for a body that is not JSON
    void answer(uint64_t conn, uint64_t request, Response r);
    void write(Conn& c, const Response& r, bool keep_alive);
    void send_bytes(Conn& c, std::string bytes);  // through TLS when there is
    void send_raw(Conn& c, std::string bytes);
    Conn* find(uint64_t conn);
    Conn* awaiting(uint64_t conn, uint64_t request);
    bool stream_write(uint64_t conn, std::string_view bytes);
    void close(uint64_t conn);
    // The connection's one timer: its idle deadline, or its close_soon(), which neither arm()
    // nor disarm() then undoes.
    void arm(Conn& c, uint64_t ms);
    void disarm(Conn& c);
    void close_soon(Conn& c);  // on the loop's next turn, for a caller still holding `c`
    void release(Conn& c);     // the request's body and JSON, once the handler has them

    uv_loop_t* loop_;
    Limits limits_;
    std::string node_name_;
    Handler handler_;
    std::shared_ptr<net::TlsContext> tls_;
    net::Handle<uv_tcp_t> listener_;
    std::map<uint64_t, std::unique_ptr<Conn>> conns_;
    std::map<std::string, size_t> per_client_;  // open connections by client address
    size_t bodies_bytes_ = 0;                   // bytes of bodies held, over all connections
    uint64_t next_id_ = 1;
    Stats stats_;
    std::shared_ptr<Server*> self_ = std::make_shared<Server*>(this);
};

}  // namespace chorus::http
