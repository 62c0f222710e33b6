// TLS for the HTTP API and its clients, through OpenSSL over memory BIOs: the socket stays
// libuv's, and a session only turns the bytes that came in into plaintext (and any handshake
// bytes to send back), and plaintext to send into records.
//
// TLS 1.2 at least. A server context holds the certificate chain and key; given a CA, it asks
// every client for a certificate that CA signed and refuses a handshake without one. A client
// context trusts the given CA (or the system's store) and checks the server's certificate
// against the name or IP address it dialled.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;

namespace chorus::net {

struct TlsFiles {
    std::string cert;  // PEM certificate chain (a client's is optional)
    std::string key;   // PEM private key for it
    std::string ca;    // PEM CA bundle: a server requires client certificates it signed; a
                       // client trusts it instead of the system's store
};

class TlsContext {
  public:
    // Errors (`bad_tls`) name the file and what OpenSSL said of it.
    static Result<std::shared_ptr<TlsContext>> server(const TlsFiles& files);
    static Result<std::shared_ptr<TlsContext>> client(const TlsFiles& files);
    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;
    SSL_CTX* get() const { return ctx_; }

  private:
    explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
    SSL_CTX* ctx_;
};

class TlsSession {
  public:
    static std::unique_ptr<TlsSession> accept(std::shared_ptr<TlsContext> ctx);
    // `host`: the name or IP address the server's certificate must be for.
    static Result<std::unique_ptr<TlsSession>> connect(std::shared_ptr<TlsContext> ctx,
                                                       const std::string& host);
    ~TlsSession();
    TlsSession(const TlsSession&) = delete;
    TlsSession& operator=(const TlsSession&) = delete;

    // Bytes from the peer: the plaintext they completed. What the session must send back
    // (handshake messages, tickets, alerts) is appended to `out`, also on error. Errors
    // (`tls_failed`): a handshake or record that failed, with OpenSSL's reason.
    Result<std::string> decrypt(std::string_view bytes, std::string& out);
    // Plaintext to send, as records; only once established().
    std::string encrypt(std::string_view plain);
    // A client's first flight (empty for a server, which speaks second).
    std::string start();
    // The close_notify alert that ends the conversation cleanly (a truncation otherwise).
    std::string shutdown();
    bool established() const { return established_; }
    // The peer's end of the conversation (close_notify) has arrived.
    bool peer_closed() const { return peer_closed_; }
    // The verified peer certificate's subject ("CN=ops,O=example"), or empty.
    const std::string& peer_subject() const { return peer_subject_; }

  private:
    TlsSession(std::shared_ptr<TlsContext> ctx, SSL* ssl);
    std::string drain();  // what OpenSSL has written for the peer

    std::shared_ptr<TlsContext> ctx_;
    SSL* ssl_;
    bool established_ = false;
    bool peer_closed_ = false;
    std::string peer_subject_;
};

}  // namespace chorus::net
