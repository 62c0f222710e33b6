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
#include <vector>

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

// An HTTP address given as a URL or bare: "https://host:port/", "http://host:port" or
// "host:port". The scheme ("" when none) and the address, a trailing slash dropped.
struct HttpAddress {
    std::string scheme;
    std::string address;
};
HttpAddress split_http_url(std::string_view text);

// One of the host's own addresses, as its network interfaces list them.
struct HostAddress {
    std::string interface;  // "eth0"
    std::string ip;         // "10.0.0.5", "fd00::5" (no brackets)
    bool internal = false;  // loopback
};
std::vector<HostAddress> host_addresses();
// What an agent bound to a wildcard address advertises when it is given nothing: the first
// private IPv4 (10/8, 172.16/12, 192.168/16, 100.64/10), else the first other IPv4 that is
// neither loopback nor link-local; for an IPv6 wildcard, the first such IPv6 instead.
// Memberlist and Serf choose the same way. None: the host has no address others could reach.
std::optional<HostAddress> pick_advertise(const std::vector<HostAddress>& addresses, bool ipv6);

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
