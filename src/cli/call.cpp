#include "cli/call.hpp"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace chorus::cli {

std::optional<nlohmann::json> parse_object(const char* command, const http::ClientResponse& r) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        fmt::print(stderr, "chorus {}: the agent's answer is not a JSON object\n", command);
        return std::nullopt;
    }
    return j;
}

std::string describe_error(const http::ClientResponse& r) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_object() &&
        j["error"].value("message", "") != "")
        return fmt::format("{} ({})", j["error"]["message"].get<std::string>(), r.status);
    return fmt::format("HTTP status {}", r.status);
}

std::optional<http::ClientResponse> call(const char* command, const Target& agent, uv_loop_t* loop,
                                         http::ClientRequest request, bool any_status) {
    const auto [scheme, http] = net::split_http_url(agent.http);
    const bool https = scheme == "https";
    if (https) {
        auto tls = net::TlsContext::client({agent.client_cert, agent.client_key, agent.ca});
        if (!tls) {
            fmt::print(stderr, "chorus {}: {}\n", command, tls.error().message);
            return std::nullopt;
        }
        auto hp = net::split_host_port(http);
        if (!hp) {
            fmt::print(stderr, "chorus {}: --http {}: {}\n", command, agent.http,
                       hp.error().message);
            return std::nullopt;
        }
        request.tls = std::move(*tls);
        request.server_name = hp->host;
    } else if (!agent.ca.empty() || !agent.client_cert.empty()) {
        fmt::print(stderr, "chorus {}: --ca and --client-cert are for an https:// --http\n",
                   command);
        return std::nullopt;
    }
    request.host = http;
    if (!agent.token.empty()) {
        if (agent.token.find_first_of("\r\n") != std::string::npos) {
            fmt::print(stderr, "chorus {}: --token: a token is one line\n", command);
            return std::nullopt;
        }
        request.headers.emplace_back("Authorization", "Bearer " + agent.token);
    }
    auto to = http::resolve(http);
    if (!to) {
        fmt::print(stderr, "chorus {}: --http {}: {}\n", command, http, to.error().message);
        return std::nullopt;
    }
    auto r = http::fetch(loop, *to, std::move(request));
    if (!r) {
        fmt::print(stderr,
                   "chorus {}: cannot reach the agent at {}: {} (is `chorus agent` running "
                   "there? see --http)\n",
                   command, http, r.error().message);
        return std::nullopt;
    }
    if (r->status == 401 || r->status == 403 ||
        (!any_status && (r->status < 200 || r->status > 299))) {
        fmt::print(stderr, "chorus {}: the agent answered: {}\n", command, describe_error(*r));
        return std::nullopt;
    }
    return std::move(*r);
}

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> width;
    for (const auto& r : rows) {
        width.resize(std::max(width.size(), r.size()));
        for (size_t i = 0; i < r.size(); ++i)
            width[i] = std::max(width[i], r[i].size());
    }
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); ++i)
            line += i + 1 == r.size() ? r[i] : fmt::format("{:<{}}  ", r[i], width[i]);
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line + "\n";
    }
    return out;
}

}  // namespace chorus::cli
