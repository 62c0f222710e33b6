#include "net/srv.hpp"

#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <memory>

#include <fmt/format.h>

namespace chorus::net {

namespace {

constexpr size_t kNameMax = 253;
constexpr size_t kLabelMax = 63;

bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

}  // namespace

Result<std::string> srv_seed_name(std::string_view seed) {
    if (!seed.starts_with(kSrvSeedPrefix)) return std::string();
    std::string_view name = seed.substr(kSrvSeedPrefix.size());
    const auto bad = [&](std::string_view why) {
        return Error{"bad_address",
                     fmt::format("'{}' is not an SRV seed: {} (use dnssrv+_service._tcp.domain, "
                                 "a DNS name with SRV records)",
                                 seed, why)};
    };
    if (name.ends_with('.')) name.remove_suffix(1);
    if (name.empty()) return bad("no name after dnssrv+");
    if (name.size() > kNameMax) return bad(fmt::format("longer than {} characters", kNameMax));
    size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) return bad("an empty label");
            label = 0;
        } else if (!name_char(c)) {
            return bad(fmt::format("'{}' cannot be in a DNS name", c));
        } else if (++label > kLabelMax) {
            return bad(fmt::format("a label longer than {} characters", kLabelMax));
        }
    }
    if (label == 0) return bad("an empty label");
    return std::string(name);
}

Result<std::vector<SrvTarget>> parse_srv_answer(std::span<const unsigned char> message) {
    const auto bad = [](std::string_view why) {
        return Error{"bad_dns_answer", fmt::format("the DNS answer does not parse: {}", why)};
    };
    ns_msg msg;
    if (message.size() > NS_MAXMSG ||
        ns_initparse(message.data(), static_cast<int>(message.size()), &msg) < 0) {
        return bad("malformed message");
    }
    std::vector<SrvTarget> out;
    const int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; ++i) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) return bad(fmt::format("record {}", i));
        if (ns_rr_type(rr) != ns_t_srv || ns_rr_class(rr) != ns_c_in) continue;
        // priority, weight, port (16 bits each), then the target, a possibly compressed name
        // that must end inside the record.
        const unsigned char* rdata = ns_rr_rdata(rr);
        const size_t rdlen = ns_rr_rdlen(rr);
        if (rdlen < 7) return bad(fmt::format("record {}: {} bytes of data", i, rdlen));
        char host[NS_MAXDNAME];
        const int used = dn_expand(ns_msg_base(msg), ns_msg_end(msg), rdata + 6, host, sizeof host);
        if (used < 0 || static_cast<size_t>(used) > rdlen - 6) {
            return bad(fmt::format("record {}: its target's name", i));
        }
        std::string target(host);
        if (target.empty() || target == ".") continue;  // "not offered here" (RFC 2782)
        if (target.ends_with('.')) target.pop_back();
        out.push_back(SrvTarget{.host = std::move(target),
                                .port = static_cast<uint16_t>(ns_get16(rdata + 4)),
                                .priority = static_cast<uint16_t>(ns_get16(rdata)),
                                .weight = static_cast<uint16_t>(ns_get16(rdata + 2))});
    }
    std::stable_sort(out.begin(), out.end(), [](const SrvTarget& a, const SrvTarget& b) {
        return a.priority != b.priority ? a.priority < b.priority : a.weight > b.weight;
    });
    if (out.size() > kSrvTargetsMax) out.resize(kSrvTargetsMax);
    return out;
}

Result<std::vector<SrvTarget>> query_srv(const std::string& name) {
    // A resolver state of our own: res_nquery on it is safe beside other threads' lookups.
    struct __res_state state {};
    if (res_ninit(&state) != 0) {
        return Error{"dns_failed", "cannot read the resolver's configuration (/etc/resolv.conf)"};
    }
    auto buffer = std::make_unique<unsigned char[]>(NS_MAXMSG);
    const int n = res_nquery(&state, name.c_str(), ns_c_in, ns_t_srv, buffer.get(), NS_MAXMSG);
    const int h_error = state.res_h_errno;
    res_nclose(&state);
    if (n < 0) {
        switch (h_error) {
            case HOST_NOT_FOUND:
                return Error{"dns_failed", "no such name (NXDOMAIN)"};
            case NO_DATA:
                return Error{"dns_failed", "no SRV records"};
            case TRY_AGAIN:
                return Error{"dns_failed", "no answer from the DNS server (timeout or SERVFAIL)"};
            default:
                return Error{"dns_failed", "the DNS server refused the query"};
        }
    }
    auto targets =
        parse_srv_answer(std::span<const unsigned char>(buffer.get(), static_cast<size_t>(n)));
    if (targets && targets->empty()) return Error{"dns_failed", "no SRV records"};
    return targets;
}

}  // namespace chorus::net
