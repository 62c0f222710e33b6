// fuzz_http: the input as the bytes a client sends the agent's HTTP API on one connection,
// which it then half-closes (src/http/server.cpp: llhttp, the limits, the JSON body check; and
// src/http/api.cpp, task_api.cpp and metrics.cpp behind it). See agent_harness.hpp.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent_harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto& agent = chorus::fuzz::AgentHarness::get();
    agent.http(std::string_view(reinterpret_cast<const char*>(data), size), {});
    return 0;
}
