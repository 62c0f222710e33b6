// A socket address parsed from "ip:port" or "[ipv6]:port", and printed back the same way.
// Host names are resolved elsewhere (asynchronously, on every retry); this is the numeric form
// every socket call needs.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace chorus::net {

// Splits "host:port" or "[ipv6]:port" without resolving the host (which may be a DNS name).
struct HostPort {
    std::string host;
    uint16_t port = 0;
};
// With `default_port`, a text without one ("name", "ip", "[ipv6]": an HTTP Host header) takes
// it.
Result<HostPort> split_host_port(std::string_view text,
                                 std::optional<uint16_t> default_port = std::nullopt);
// Whether `host` (as split_host_port gives it: no brackets) is an IPv4 or IPv6 address, not a
// name.
bool is_ip_address(std::string_view host);

class Endpoint {
  public:
    static Result<Endpoint> parse(std::string_view host_port);
    static Endpoint from(const sockaddr* sa);

    const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&addr_); }
    uint16_t port() const;
    std::string str() const;
    // 127.0.0.0/8 or ::1: reachable from this host only.
    bool is_loopback() const;
    bool operator==(const Endpoint& o) const { return str() == o.str(); }

  private:
    sockaddr_storage addr_{};
};

}  // namespace chorus::net
