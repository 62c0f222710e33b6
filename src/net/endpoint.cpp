#include "net/endpoint.hpp"

#include <uv.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace chorus::net {

Result<HostPort> split_host_port(std::string_view text, std::optional<uint16_t> default_port) {
    const auto bad = [&](std::string_view why) {
        return Error{"bad_address", fmt::format("'{}' is not an address: {} (use host:port, "
                                                "ip:port or [ipv6]:port)",
                                                text, why)};
    };
    std::string_view host, port;
    const bool bracketed = text.starts_with('[');
    if (default_port && (bracketed ? text.ends_with(']') : text.find(':') == text.npos)) {
        host = bracketed ? text.substr(1, text.size() - 2) : text;
        if (host.empty()) return bad("no host");
        return HostPort{std::string(host), *default_port};
    }
    if (bracketed) {
        const size_t close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            return bad("unbalanced brackets or no port");
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        const size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) return bad("no port");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) return bad("IPv6 needs brackets");
    }
    if (host.empty()) return bad("no host");
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p > 65535) {
        return bad("port must be a number from 0 to 65535");
    }
    return HostPort{std::string(host), static_cast<uint16_t>(p)};
}

bool is_ip_address(std::string_view host) {
    const std::string h(host);
    unsigned char buf[sizeof(in6_addr)];
    return uv_inet_pton(AF_INET, h.c_str(), buf) == 0 ||
           uv_inet_pton(AF_INET6, h.c_str(), buf) == 0;
}

HttpAddress split_http_url(std::string_view text) {
    HttpAddress out;
    for (std::string_view scheme : {"https", "http"}) {
        if (text.starts_with(scheme) && text.substr(scheme.size()).starts_with("://")) {
            out.scheme = scheme;
            text.remove_prefix(scheme.size() + 3);
            break;
        }
    }
    while (text.ends_with('/'))
        text.remove_suffix(1);
    out.address = text;
    return out;
}

std::vector<HostAddress> host_addresses() {
    std::vector<HostAddress> out;
    uv_interface_address_t* list = nullptr;
    int n = 0;
    if (uv_interface_addresses(&list, &n) != 0) return out;
    for (int i = 0; i < n; ++i) {
        char ip[INET6_ADDRSTRLEN] = {};
        const auto& a = list[i];
        if (a.address.address4.sin_family == AF_INET) {
            uv_ip4_name(&a.address.address4, ip, sizeof(ip));
        } else if (a.address.address6.sin6_family == AF_INET6) {
            uv_ip6_name(&a.address.address6, ip, sizeof(ip));
        } else {
            continue;
        }
        out.push_back(HostAddress{a.name, ip, a.is_internal != 0});
    }
    uv_free_interface_addresses(list, n);
    return out;
}

std::optional<HostAddress> pick_advertise(const std::vector<HostAddress>& addresses, bool ipv6) {
    // 0: private, 1: other usable, 2: not to be advertised (loopback, link-local, other family)
    const auto rank = [ipv6](const HostAddress& a) {
        if (a.internal) return 2;
        if (ipv6) {
            in6_addr v6{};
            if (uv_inet_pton(AF_INET6, a.ip.c_str(), &v6) != 0) return 2;
            if (IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_LINKLOCAL(&v6) ||
                IN6_IS_ADDR_V4MAPPED(&v6)) {
                return 2;
            }
            return (v6.s6_addr[0] & 0xfe) == 0xfc ? 0 : 1;  // fc00::/7: unique local
        }
        in_addr v4{};
        if (uv_inet_pton(AF_INET, a.ip.c_str(), &v4) != 0) return 2;
        const uint32_t ip = ntohl(v4.s_addr);
        const auto in = [ip](uint32_t net, int bits) {
            return (ip >> (32 - bits)) == (net >> (32 - bits));
        };
        if (in(0x7f000000, 8) || in(0xa9fe0000, 16) || in(0, 8)) return 2;  // loopback, link-local
        return in(0x0a000000, 8) || in(0xac100000, 12) || in(0xc0a80000, 16) || in(0x64400000, 10)
                   ? 0
                   : 1;
    };
    for (int want : {0, 1}) {
        for (const HostAddress& a : addresses) {
            if (rank(a) == want) return a;
        }
    }
    return std::nullopt;
}

Result<Endpoint> Endpoint::parse(std::string_view text) {
    auto hp = split_host_port(text);
    if (!hp) return hp.error();
    Endpoint e;
    const std::string& h = hp->host;
    if (h.find(':') == std::string::npos &&
        uv_ip4_addr(h.c_str(), hp->port, reinterpret_cast<sockaddr_in*>(&e.addr_)) == 0 &&
        std::count(h.begin(), h.end(), '.') == 3) {
        return e;
    }
    if (h.find(':') != std::string::npos &&
        uv_ip6_addr(h.c_str(), hp->port, reinterpret_cast<sockaddr_in6*>(&e.addr_)) == 0) {
        return e;
    }
    return Error{"bad_address",
                 fmt::format("'{}' is not a numeric address: the host must be an IPv4 or IPv6 "
                             "address here",
                             text)};
}

bool Endpoint::is_loopback() const {
    if (addr_.ss_family == AF_INET6) {
        const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&addr_);
        return IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    }
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(&addr_);
    return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
}

Endpoint Endpoint::from(const sockaddr* sa) {
    Endpoint e;
    const size_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    std::memcpy(&e.addr_, sa, len);
    return e;
}

uint16_t Endpoint::port() const {
    if (addr_.ss_family == AF_INET6) {
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr_)->sin6_port);
    }
    return ntohs(reinterpret_cast<const sockaddr_in*>(&addr_)->sin_port);
}

std::string Endpoint::str() const {
    char ip[64] = {0};
    uv_ip_name(sa(), ip, sizeof(ip));
    if (addr_.ss_family == AF_INET6) return fmt::format("[{}]:{}", ip, port());
    return fmt::format("{}:{}", ip, port());
}

}  // namespace chorus::net
