// fuzz_srv: the input as a DNS server's answer to the SRV query of a "dnssrv+NAME" seed, through
// net::parse_srv_answer, as the agent reads it. Whatever comes back: no more targets than the
// cap, each with a name, in the order the agent tries them (lowest priority, then heaviest
// weight, first).
#include <cstddef>
#include <cstdint>
#include <span>

#include "check.hpp"
#include "net/srv.hpp"

using namespace chorus;
using chorus::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto targets = net::parse_srv_answer(std::span<const unsigned char>(data, size));
    if (!targets) {
        check(!targets.error().message.empty(), "a refused answer says why");
        return 0;
    }
    check(targets->size() <= net::kSrvTargetsMax, "at most kSrvTargetsMax targets");
    for (size_t i = 0; i < targets->size(); ++i) {
        const net::SrvTarget& t = (*targets)[i];
        check(!t.host.empty() && t.host != "." && !t.host.ends_with('.'),
              "a target names a host, without the root's dot");
        if (i > 0) {
            const net::SrvTarget& p = (*targets)[i - 1];
            check(p.priority < t.priority || (p.priority == t.priority && p.weight >= t.weight),
                  "targets in the order they are tried");
        }
    }
    return 0;
}
