// fuzz_stream: the input as the bytes a peer sends the agent's stream port on one connection,
// which it then half-closes: length-prefixed frames (src/net/frames.cpp) carrying push-pulls and
// task messages (src/daemon/agent.cpp, tasks.cpp). See agent_harness.hpp.
//
// A push-pull adds its members to the agent's view, and the agent then probes them over UDP
// and may forward tasks to them over TCP, at whatever addresses the input names. So this target
// runs only where nothing but loopback is reachable: scripts/fuzz runs it in a network namespace
// of its own. CHORUS_FUZZ_ANY_NETWORK=1 runs it anyway.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "agent_harness.hpp"

namespace {

// True if a datagram to a documentation address (TEST-NET-1, RFC 5737) has a route: some
// network besides loopback is reachable.
bool routes_beyond_loopback() {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return true;
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    to.sin_addr.s_addr = htonl(0xC0000201);  // 192.0.2.1
    const bool routed = ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0;
    ::close(fd);
    return routed;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    const char* any = std::getenv("CHORUS_FUZZ_ANY_NETWORK");
    if (routes_beyond_loopback() && (any == nullptr || std::string_view(any) != "1")) {
        std::fprintf(stderr,
                     "fuzz_stream: a network besides loopback is reachable, and the agent would "
                     "send to whatever addresses the input names; run it through scripts/fuzz "
                     "(a network namespace of its own) or set CHORUS_FUZZ_ANY_NETWORK=1\n");
        std::exit(2);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto& agent = chorus::fuzz::AgentHarness::get();
    agent.frames(std::string_view(reinterpret_cast<const char*>(data), size), {});
    return 0;
}
