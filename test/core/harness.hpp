// A few core nodes on virtual time with in-memory delivery: enough to test protocol behaviour
// without the wire codec or the simulator. Push-pulls complete synchronously; packets take
// `latency` and pass through `drop`, a filter tests use to cut links.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/node.hpp"

namespace chorus::test {

struct Cluster {
    Config config = Config::local();
    Time now{};
    Duration latency = milliseconds(1);
    std::function<bool(const std::string& from, const std::string& to)> drop = [](auto&, auto&) {
        return false;
    };
    std::map<std::string, std::unique_ptr<Node>> nodes;
    std::vector<std::pair<std::string, MemberEvent>> events;
    uint64_t seed = 1;

    struct InFlight {
        Time at;
        uint64_t order;
        std::string from;
        std::string to;
        Packet packet;
    };
    std::vector<InFlight> flying;
    uint64_t order = 0;

    Node& add(const std::string& name, std::vector<std::string> seeds = {},
              uint64_t incarnation = 0) {
        auto node = std::make_unique<Node>(
            config, Identity{name, Address{name}, "", {}, Incarnation{incarnation}}, seed++, now);
        Node& n = *node;
        nodes[name] = std::move(node);
        std::vector<Address> addrs;
        for (auto& s : seeds)
            addrs.push_back(Address{s});
        n.join(addrs, now);
        drain(name);
        return n;
    }

    void crash(const std::string& name) { nodes.erase(name); }

    Node& operator[](const std::string& name) { return *nodes.at(name); }

    void drain(const std::string& name) {
        auto it = nodes.find(name);
        if (it == nodes.end()) return;
        Outbox& out = it->second->outbox();
        std::vector<OutPacket> packets = std::move(out.packets);
        std::vector<OutPushPull> pulls = std::move(out.push_pulls);
        for (auto& e : out.events)
            events.emplace_back(name, e);
        out.clear();
        for (auto& p : packets) {
            if (drop(name, p.to.value.str())) continue;
            flying.push_back(
                InFlight{now + latency, order++, name, p.to.value.str(), std::move(p.packet)});
        }
        for (auto& pp : pulls) {
            auto peer = nodes.find(pp.to.value.str());
            if (peer == nodes.end() || drop(name, pp.to.value.str())) {
                it->second->push_pull_failed(pp.to, now);
            } else {
                PushPull reply = peer->second->handle_push_pull(pp.state, now);
                drain(pp.to.value.str());
                it->second->push_pull_done(pp.to, reply, now);
            }
            drain(name);
        }
    }

    // Runs every delivery and timer due up to `until`, in time order.
    void run_until(Time until) {
        for (;;) {
            Time next = Time::max();
            for (auto& f : flying)
                next = std::min(next, f.at);
            for (auto& [name, n] : nodes)
                next = std::min(next, n->next_deadline());
            if (next > until) break;
            now = next;
            std::stable_sort(flying.begin(), flying.end(),
                             [](const InFlight& a, const InFlight& b) {
                                 return a.at != b.at ? a.at < b.at : a.order < b.order;
                             });
            std::vector<InFlight> due;
            while (!flying.empty() && flying.front().at <= now) {
                due.push_back(std::move(flying.front()));
                flying.erase(flying.begin());
            }
            for (auto& f : due) {
                auto it = nodes.find(f.to);
                if (it == nodes.end()) continue;
                it->second->handle_packet(f.packet, now);
                drain(f.to);
            }
            std::vector<std::string> names;
            for (auto& [name, n] : nodes)
                names.push_back(name);
            for (auto& name : names) {
                auto it = nodes.find(name);
                if (it != nodes.end() && it->second->next_deadline() <= now) {
                    it->second->tick(now);
                    drain(name);
                }
            }
        }
        now = until;
    }
    void run_for(Duration d) { run_until(now + d); }

    // The state `observer` holds for `member`, or nullopt if it does not know it.
    std::optional<MemberState> view(const std::string& observer, const std::string& member) {
        const Member* m = nodes.at(observer)->members().find(member);
        if (m == nullptr) return std::nullopt;
        return m->state;
    }
    // True if every running node other than `member` holds it in `state`.
    bool all_see(const std::string& member, MemberState state) {
        for (auto& [name, n] : nodes) {
            if (name != member && view(name, member) != state) return false;
        }
        return true;
    }
    // Runs until `cond` holds or `limit` passes; returns whether it held.
    bool run_until_true(const std::function<bool()>& cond, Duration limit,
                        Duration step = milliseconds(50)) {
        const Time end = now + limit;
        while (now < end) {
            if (cond()) return true;
            run_for(step);
        }
        return cond();
    }
};

}  // namespace chorus::test
