// DNS SRV seeds: "dnssrv+_chorus._tcp.example.com" names a service whose SRV records list the
// members to join through (target host and port each), as Kubernetes' headless services and
// Consul's DNS publish them. The agent looks the name up again on every join attempt, then
// resolves each target like any host:port seed.
//
// The query and the parsing of its answer are glibc's resolver (libresolv): res_nquery reads
// /etc/resolv.conf as every other program on the host does, and ns_parserr / dn_expand walk
// the answer's records and compressed names, so what comes off the network is parsed by code
// that has parsed it for decades. res_nquery blocks; the agent calls it on libuv's thread pool.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace chorus::net {

inline constexpr std::string_view kSrvSeedPrefix = "dnssrv+";

// The DNS name in a "dnssrv+NAME" seed, checked (labels of 1 to 63 letters, digits, '-' or
// '_', 253 characters at most; a trailing dot allowed). Not an SRV seed: an empty name.
// Malformed: an error that says what to write.
Result<std::string> srv_seed_name(std::string_view seed);

struct SrvTarget {
    std::string host;  // "chorus-0.chorus.default.svc.cluster.local", no trailing dot
    uint16_t port = 0;
    uint16_t priority = 0;
    uint16_t weight = 0;
};

// The most targets taken from one answer: a seed list, not a directory.
inline constexpr size_t kSrvTargetsMax = 32;

// The SRV records in a DNS answer (a whole message as res_nquery returns it), lowest priority
// first and, within one, heaviest weight first. Records of other types are skipped; a target of
// "." (the service is not offered there) is dropped. A message that does not parse: an error.
Result<std::vector<SrvTarget>> parse_srv_answer(std::span<const unsigned char> message);

// Asks the host's resolver for NAME's SRV records. Blocks (run it off the event loop); safe to
// call from several threads at once. No records: an error saying so ("no SRV records").
Result<std::vector<SrvTarget>> query_srv(const std::string& name);

}  // namespace chorus::net
