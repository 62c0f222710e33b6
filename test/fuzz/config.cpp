// fuzz_config: the input as the text of `chorus agent --config FILE`, through
// daemon::apply_config_json and daemon::to_agent_options, as `chorus agent` reads it. A config
// that is accepted must describe a node its peers accept: the packet announcing it (its name,
// cluster, addresses and tags) encodes within the packet size and passes the wire decoder's
// checks with the limits the same config sets (src/core/text.hpp: what one boundary accepts, the
// others do too).
#include <cstddef>
#include <cstdint>
#include <string>

#include "check.hpp"
#include "daemon/settings.hpp"
#include "wire/codec.hpp"

using namespace chorus;
using chorus::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    daemon::Settings s;
    s.name = "fuzz";  // chorus agent's default is the host name
    const auto applied =
        daemon::apply_config_json(s, std::string(reinterpret_cast<const char*>(data), size));
    if (!applied) {
        check(!applied.error().message.empty(), "a refused config says why");
        return 0;
    }
    const auto o = daemon::to_agent_options(s);
    if (!o) {
        check(!o.error().message.empty(), "a refused config says why");
        return 0;
    }

    // The node's own announcement, as the core sends it (an alive update about itself).
    const Address addr = o->identity.addr.empty() ? Address{o->bind.str()} : o->identity.addr;
    Packet p;
    p.cluster = o->config.cluster;
    p.sender = o->identity.name;
    p.sender_addr = addr;
    p.updates.push_back(AliveUpdate{o->identity.name, addr, o->identity.http,
                                    Incarnation{UINT32_MAX}, o->identity.tags, kProtocolVersion});
    const wire::Limits limits = wire::limits_for(o->config, o->task_limits);
    const auto decoded = wire::decode_packet(wire::encode(p), limits);
    if (!decoded) std::fprintf(stderr, "fuzz: peers refuse: %s\n", decoded.error().detail.c_str());
    check(decoded.ok(), "a node the config accepts is a node its peers accept");
    return 0;
}
