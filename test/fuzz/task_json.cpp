// fuzz_task_json: the input as a task, both ways one reaches an agent.
//  1. The body of POST /v1/tasks?wait=1s from an HTTP client (Content-Type: application/json,
//     the right Content-Length): the server's JSON check, the API's reading of the fields, the
//     task service's checks, the echo handler and the answer with the finished task.
//  2. The payload of a TaskSubmit frame from another node, on the agent's stream port: task
//     payloads between nodes are JSON text that no one parses on the way in. The task echoes
//     it, and GET /v1/tasks/{id} shows it and its result.
// See agent_harness.hpp.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent_harness.hpp"
#include "wire/codec.hpp"

using namespace chorus;
using chorus::fuzz::AgentHarness;

namespace {

// An HTTP/1.1 request that closes the connection once answered.
std::string request(std::string_view method, std::string_view target, std::string_view body) {
    std::string r = std::string(method) + " " + std::string(target) +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (!body.empty()) {
        r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n";
    }
    r += "\r\n";
    r += body;
    return r;
}

// A frame as it travels on a stream: a 4-byte big-endian length, then the frame.
std::string framed(const std::vector<uint8_t>& frame) {
    const auto n = static_cast<uint32_t>(frame.size());
    std::string out = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
    out.append(frame.begin(), frame.end());
    return out;
}

// Complete once one whole frame has arrived.
bool has_frame(std::string_view in) {
    if (in.size() < 4) return false;
    const auto* p = reinterpret_cast<const uint8_t*>(in.data());
    const size_t n = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
    return in.size() >= 4 + n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto& agent = AgentHarness::get();
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    // The server answers once the task has finished (or the wait ends) and closes.
    agent.http(request("POST", "/v1/tasks?wait=1s", input), {.half_close = false});

    static uint64_t serial = 0;
    TaskSubmit submit;
    submit.request = ++serial;
    submit.spec.key = "fuzz";
    submit.spec.id = make_task_id(agent.tasks().lookup(submit.spec.key).key_hash, serial);
    submit.spec.type = "echo";
    submit.spec.payload = std::string(input);
    const auto frame = wire::encode(agent.cluster(), Name("peer"), TaskMessage(submit));
    agent.frames(framed(frame), {.half_close = false, .complete = has_frame});
    agent.http(request("GET", "/v1/tasks/" + submit.spec.id + "?wait=1s", ""),
               {.half_close = false});
    return 0;
}
