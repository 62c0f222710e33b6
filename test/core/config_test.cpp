#include "core/config.hpp"

#include <functional>

#include <catch2/catch.hpp>

using namespace chorus;

TEST_CASE("every profile is valid") {
    for (const char* name : {"lan", "wan", "local"}) {
        auto c = Config::profile(name);
        REQUIRE(c.ok());
        INFO(name);
        REQUIRE(c->validate().ok());
    }
    REQUIRE_FALSE(Config::profile("moon").ok());
    REQUIRE(Config::profile("moon").error().code == "bad_profile");
}

TEST_CASE("validate names the field whose rule is broken") {
    struct Row {
        const char* field;
        std::function<void(Config&)> breaks;
    };
    const Row rows[] = {
        {"cluster", [](Config& c) { c.cluster = ""; }},
        {"probe_interval", [](Config& c) { c.probe_interval = milliseconds(1); }},
        {"probe_timeout_max", [](Config& c) { c.probe_timeout_max = c.probe_interval; }},
        {"probe_timeout_initial", [](Config& c) { c.probe_timeout_initial = seconds(0); }},
        {"suspicion_mult", [](Config& c) { c.suspicion_mult = 0; }},
        {"phi_min_samples", [](Config& c) { c.phi_min_samples = c.phi_window + 1; }},
        {"gossip_nodes", [](Config& c) { c.gossip_nodes = 0; }},
        {"packet_bytes_max", [](Config& c) { c.packet_bytes_max = 100; }},
        {"members_max", [](Config& c) { c.members_max = 1; }},
    };
    for (const Row& r : rows) {
        Config c = Config::lan();
        r.breaks(c);
        const Status s = c.validate();
        INFO(r.field);
        REQUIRE_FALSE(s.ok());
        REQUIRE(s.error().code == "bad_config");
        REQUIRE_THAT(s.error().message, Catch::StartsWith(r.field));
    }
}

TEST_CASE("the minimum suspicion timeout grows with log10 of the cluster size") {
    Config c = Config::lan();  // probe_interval 1s, suspicion_mult 1
    REQUIRE(suspicion_min(c, 1) == seconds(1));
    REQUIRE(suspicion_min(c, 10) == seconds(1));
    REQUIRE(suspicion_min(c, 100) == seconds(2));
    REQUIRE(suspicion_min(c, 1000) == seconds(3));
}

TEST_CASE("each update is retransmitted mult times ceil(log10(n+1))") {
    REQUIRE(retransmit_limit(4, 0) == 4);
    REQUIRE(retransmit_limit(4, 5) == 4);
    REQUIRE(retransmit_limit(4, 9) == 4);
    REQUIRE(retransmit_limit(4, 10) == 8);
    REQUIRE(retransmit_limit(4, 100) == 12);
    REQUIRE(retransmit_limit(4, 1000) == 16);
}

TEST_CASE("the push-pull interval grows one step per doubling above the threshold") {
    Config c = Config::lan();  // 30s, threshold 32
    REQUIRE(push_pull_interval_for(c, 10) == seconds(30));
    REQUIRE(push_pull_interval_for(c, 32) == seconds(30));
    REQUIRE(push_pull_interval_for(c, 64) == seconds(60));
    REQUIRE(push_pull_interval_for(c, 100) == seconds(90));
    REQUIRE(push_pull_interval_for(c, 10000) == seconds(300));
}
