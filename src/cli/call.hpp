// What every client subcommand shares: a loop for one command, one call to the agent with
// its failures explained on stderr, and aligned tables.
#pragma once

#include <uv.h>

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/client.hpp"

namespace chorus::cli {

// The agent's HTTP address for client commands: --http, else $CHORUS_HTTP_ADDR, else this.
inline constexpr const char* kDefaultHttp = "127.0.0.1:7980";

// The agent a client command calls, and how it proves who it is.
struct Target {
    std::string http = kDefaultHttp;  // host:port, http://host:port or https://host:port
    std::string token;  // --token, else $CHORUS_HTTP_TOKEN: sent as Authorization: Bearer
    // https: the CA that signed the agent's certificate (--ca, else $CHORUS_CACERT; empty: the
    // system's), and a client certificate for an agent that asks for one.
    std::string ca;
    std::string client_cert, client_key;
};

// A loop for one command; its handles' close callbacks run before it goes.
class Loop {
  public:
    Loop() { uv_loop_init(&loop_); }
    ~Loop() {
        uv_run(&loop_, UV_RUN_DEFAULT);
        uv_loop_close(&loop_);
    }
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;
    uv_loop_t* get() { return &loop_; }

  private:
    uv_loop_t loop_;
};

// The answer's error message if it is one of ours ({"error": {...}}), else the status.
std::string describe_error(const http::ClientResponse& r);

// Connects and sends; a 2xx answer is returned. Otherwise prints why to stderr, naming the
// command and the address, and returns nullopt. With `any_status`, an answer with another
// status is returned too (its body may say more than its error), and only a failure to reach
// the agent is printed.
std::optional<http::ClientResponse> call(const char* command, const Target& agent, uv_loop_t* loop,
                                         http::ClientRequest request, bool any_status = false);

// The answer's body as a JSON object; anything else is said on stderr, naming the command, and
// gives nullopt.
std::optional<nlohmann::json> parse_object(const char* command, const http::ClientResponse& r);

// Rows of cells as columns aligned two spaces apart, the first row a header; trailing
// blanks trimmed.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

}  // namespace chorus::cli
