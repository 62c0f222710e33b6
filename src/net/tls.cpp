#include "net/tls.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include "net/endpoint.hpp"

namespace chorus::net {

namespace {

// OpenSSL's queued errors as one line (and the queue emptied), or `fallback`.
std::string openssl_reason(std::string_view fallback) {
    std::string out;
    while (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? std::string(fallback) : out;
}

Result<SSL_CTX*> make_context(bool server) {
    SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (ctx == nullptr) return Error{"bad_tls", openssl_reason("SSL_CTX_new failed")};
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // TLS 1.3's suites, AES-128-GCM first: as strong as the API needs, and a third cheaper
    // per byte than AES-256 on every request and response.
    SSL_CTX_set_ciphersuites(
        ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    if (server) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    // Records come from a memory BIO holding what the socket read: taking all of it at once
    // saves a BIO read per record (its header, then its body).
    SSL_CTX_set_read_ahead(ctx, 1);
    return ctx;
}

Result<std::shared_ptr<TlsContext>> fail(SSL_CTX* ctx, const std::string& what) {
    SSL_CTX_free(ctx);
    return Error{"bad_tls", fmt::format("{}: {}", what, openssl_reason("rejected"))};
}

Status load_pair(SSL_CTX* ctx, const TlsFiles& f) {
    if (SSL_CTX_use_certificate_chain_file(ctx, f.cert.c_str()) != 1) {
        return Error{"bad_tls",
                     fmt::format("tls_cert {}: {}", f.cert, openssl_reason("unreadable"))};
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, f.key.c_str(), SSL_FILETYPE_PEM) != 1) {
        return Error{"bad_tls", fmt::format("tls_key {}: {}", f.key, openssl_reason("unreadable"))};
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        return Error{"bad_tls", fmt::format("tls_key {} is not the key of {}", f.key, f.cert)};
    }
    return Ok{};
}

}  // namespace

Result<std::shared_ptr<TlsContext>> TlsContext::server(const TlsFiles& files) {
    auto made = make_context(true);
    if (!made) return made.error();
    SSL_CTX* ctx = *made;
    if (files.cert.empty() || files.key.empty()) {
        SSL_CTX_free(ctx);
        return Error{"bad_tls", "TLS needs both tls_cert and tls_key"};
    }
    if (auto st = load_pair(ctx, files); !st) {
        SSL_CTX_free(ctx);
        return st.error();
    }
    if (!files.ca.empty()) {
        if (SSL_CTX_load_verify_locations(ctx, files.ca.c_str(), nullptr) != 1) {
            return fail(ctx, "tls_ca " + files.ca);
        }
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.ca.c_str());
        if (names == nullptr) return fail(ctx, "tls_ca " + files.ca);
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
        // Verified clients resume sessions only within this context; without one OpenSSL
        // fails every resumption attempt (a client with a session cache could not reconnect).
        static constexpr unsigned char kContext[] = "chorus-http";
        SSL_CTX_set_session_id_context(ctx, kContext, sizeof(kContext) - 1);
    }
    return std::shared_ptr<TlsContext>(new TlsContext(ctx));
}

Result<std::shared_ptr<TlsContext>> TlsContext::client(const TlsFiles& files) {
    auto made = make_context(false);
    if (!made) return made.error();
    SSL_CTX* ctx = *made;
    const int loaded = files.ca.empty()
                           ? SSL_CTX_set_default_verify_paths(ctx)
                           : SSL_CTX_load_verify_locations(ctx, files.ca.c_str(), nullptr);
    if (loaded != 1) return fail(ctx, "ca " + (files.ca.empty() ? "(the system's)" : files.ca));
    if (!files.cert.empty() || !files.key.empty()) {
        if (auto st = load_pair(ctx, files); !st) {
            SSL_CTX_free(ctx);
            return st.error();
        }
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    return std::shared_ptr<TlsContext>(new TlsContext(ctx));
}

TlsContext::~TlsContext() {
    SSL_CTX_free(ctx_);
}

TlsSession::TlsSession(std::shared_ptr<TlsContext> ctx, SSL* ssl)
    : ctx_(std::move(ctx)), ssl_(ssl) {
    // Memory BIOs both ways: the socket is libuv's. SSL_free frees them.
    SSL_set_bio(ssl_, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
}

TlsSession::~TlsSession() {
    SSL_free(ssl_);
}

std::unique_ptr<TlsSession> TlsSession::accept(std::shared_ptr<TlsContext> ctx) {
    SSL* ssl = SSL_new(ctx->get());
    if (ssl == nullptr) return nullptr;
    auto s = std::unique_ptr<TlsSession>(new TlsSession(std::move(ctx), ssl));
    SSL_set_accept_state(ssl);
    return s;
}

Result<std::unique_ptr<TlsSession>> TlsSession::connect(std::shared_ptr<TlsContext> ctx,
                                                        const std::string& host) {
    SSL* ssl = SSL_new(ctx->get());
    if (ssl == nullptr) return Error{"tls_failed", openssl_reason("SSL_new failed")};
    auto s = std::unique_ptr<TlsSession>(new TlsSession(std::move(ctx), ssl));
    SSL_set_connect_state(ssl);
    // The certificate must be for what was dialled: an IP address (its SAN) or a name, which
    // also goes out as SNI.
    const int ok = is_ip_address(host)
                       ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str())
                       : SSL_set1_host(ssl, host.c_str()) == 1 &&
                             SSL_set_tlsext_host_name(ssl, host.c_str()) == 1;
    if (ok != 1) return Error{"tls_failed", fmt::format("cannot verify {}", host)};
    return s;
}

std::string TlsSession::drain() {
    BIO* w = SSL_get_wbio(ssl_);
    std::string out(BIO_ctrl_pending(w), '\0');
    if (out.empty()) return out;
    const int n = BIO_read(w, out.data(), static_cast<int>(out.size()));  // all of it
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return out;
}

std::string TlsSession::start() {
    ERR_clear_error();  // SSL_get_error reads the thread's queue: nothing stale may be in it
    SSL_do_handshake(ssl_);
    return drain();
}

Result<std::string> TlsSession::decrypt(std::string_view bytes, std::string& out) {
    ERR_clear_error();
    if (!bytes.empty() &&
        BIO_write(SSL_get_rbio(ssl_), bytes.data(), static_cast<int>(bytes.size())) <= 0) {
        return Error{"tls_failed", "out of memory"};
    }
    const auto failed = [&](std::string_view when) -> Error {
        out += drain();  // the alert that says why, for the peer
        const long verify = SSL_get_verify_result(ssl_);
        std::string reason = openssl_reason(when);
        if (verify != X509_V_OK) {
            reason =
                fmt::format("certificate: {} ({})", X509_verify_cert_error_string(verify), reason);
        }
        return Error{"tls_failed", reason};
    };
    if (!established_) {
        const int rc = SSL_do_handshake(ssl_);
        if (rc != 1) {
            const int e = SSL_get_error(ssl_, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                out += drain();
                return std::string();
            }
            return failed("the handshake failed");
        }
        established_ = true;
        if (X509* cert = SSL_get1_peer_certificate(ssl_)) {
            BIO* b = BIO_new(BIO_s_mem());
            X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
            char* data = nullptr;
            const long n = BIO_get_mem_data(b, &data);
            peer_subject_.assign(data, static_cast<size_t>(n));
            BIO_free(b);
            X509_free(cert);
        }
    }
    std::string plain;
    char buf[16 * 1024];
    for (;;) {
        const int n = SSL_read(ssl_, buf, sizeof(buf));
        if (n > 0) {
            plain.append(buf, static_cast<size_t>(n));
            // Nothing left to open: another SSL_read would only say it wants more.
            if (SSL_has_pending(ssl_) == 0 && BIO_ctrl_pending(SSL_get_rbio(ssl_)) == 0) break;
            continue;
        }
        const int e = SSL_get_error(ssl_, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            peer_closed_ = true;
            break;
        }
        return failed("a record did not open");
    }
    out += drain();
    return plain;
}

std::string TlsSession::shutdown() {
    ERR_clear_error();
    if (established_) SSL_shutdown(ssl_);
    return drain();
}

std::string TlsSession::encrypt(std::string_view plain) {
    if (!established_ || plain.empty()) return drain();
    // Memory BIOs never push back, so one write takes everything, or nothing on a broken
    // session: then nothing is sent, and the peer's timeout or ours ends the connection.
    ERR_clear_error();
    if (SSL_write(ssl_, plain.data(), static_cast<int>(plain.size())) <= 0) ERR_clear_error();
    return drain();
}

}  // namespace chorus::net
