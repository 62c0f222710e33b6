#include "daemon/tags.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/text.hpp"
#include "daemon/files.hpp"
#include "daemon/json.hpp"
#include "net/seal.hpp"

namespace chorus::daemon {

namespace {

bool reserved(const Tag& t) {
    return t.first.starts_with(kReservedTagPrefix);
}

}  // namespace

Status check_tags(const Tags& operator_tags, const Tags& reserved_ones, const Config& c) {
    const auto bad = [](std::string message) { return Error{"bad_tag", std::move(message)}; };
    const size_t count = operator_tags.size() + reserved_ones.size();
    if (count > c.tags_max) {
        return bad(fmt::format(
            "{} tags{}, over the limit of {}", count,
            reserved_ones.empty() ? "" : fmt::format(" with the agent's {}", reserved_ones.size()),
            c.tags_max));
    }
    size_t bytes = 0;
    for (const auto& [k, v] : operator_tags) {
        if (k.empty()) return bad("a tag's name must not be empty");
        if (k.starts_with(kReservedTagPrefix)) {
            return bad(fmt::format("{}: names starting with {} are the agent's own", log_quote(k),
                                   kReservedTagPrefix));
        }
        for (const std::string& text : {k, v}) {
            if (const TextProblem p = check_text(text); p != TextProblem::none)
                return bad(fmt::format("{} {}", log_quote(text), describe(p)));
        }
        bytes += k.size() + v.size();
    }
    for (const auto& [k, v] : reserved_ones)
        bytes += k.size() + v.size();
    if (bytes > c.tag_bytes_max) {
        return bad(fmt::format("tags total {} bytes{}, over the limit of {}", bytes,
                               reserved_ones.empty() ? "" : " with the agent's own",
                               c.tag_bytes_max));
    }
    return Ok{};
}

Tags operator_tags(const Tags& all) {
    Tags out;
    std::copy_if(all.begin(), all.end(), std::back_inserter(out),
                 [](const Tag& t) { return !reserved(t); });
    return out;
}

Tags reserved_tags(const Tags& all) {
    Tags out;
    std::copy_if(all.begin(), all.end(), std::back_inserter(out), reserved);
    return out;
}

Status check_announcement(const AliveUpdate& self, const std::string& cluster, bool sealed,
                          const Config& c) {
    Packet p;
    p.cluster = cluster;
    p.sender = self.name;
    p.sender_addr = self.addr;
    p.body = Ack{};
    const size_t needed = encoded_size_bound(p) + encoded_size_bound(Update(self)) +
                          (sealed ? net::kSealOverhead : 0);
    if (needed > c.packet_bytes_max) {
        return Error{"bad_tag",
                     fmt::format("the name, tags and addresses take {} bytes in a packet, over "
                                 "the packet limit of {}: use fewer or shorter tags",
                                 needed, c.packet_bytes_max)};
    }
    return Ok{};
}

std::string tags_text(const Tags& tags) {
    if (tags.empty()) return "none";
    std::string out;
    for (const auto& [k, v] : tags)
        out += fmt::format("{}{}={}", out.empty() ? "" : ", ", k, v);
    return out;
}

Result<std::optional<Tags>> load_tags(const std::string& path) {
    auto text = read_small_file(path);
    if (!text) return Error{"bad_tags", text.error().message};
    if (!*text) return std::optional<Tags>{};
    const auto bad = [&](std::string_view why) {
        return Error{"bad_tags", fmt::format("{} does not hold tags ({}): move it away to start "
                                             "with the configured tags",
                                             path, why)};
    };
    auto j = parse_json(**text);
    if (!j) return bad(j.error().message);
    if (!j->is_object() || j->size() != 1 || !j->contains("tags") || !(*j)["tags"].is_object())
        return bad(R"(it must be {"tags": {"name": "value", ...}})");
    Tags tags;
    for (const auto& [k, v] : (*j)["tags"].items()) {
        if (!v.is_string()) return bad(fmt::format("the value of {} is not a string", k));
        tags.emplace_back(k, v.get<std::string>());
    }
    std::sort(tags.begin(), tags.end());
    return std::optional<Tags>(std::move(tags));
}

Status save_tags(const std::string& path, const Tags& tags) {
    nlohmann::json j = {{"tags", nlohmann::json::object()}};
    for (const auto& [k, v] : tags)
        j["tags"][k] = v;
    return replace_file(path, dump_json(j, 2) + "\n", "tags_unsaved");
}

}  // namespace chorus::daemon
