// The Prometheus text writer: families, label escaping, cumulative histogram buckets.
#include "http/metrics.hpp"

#include <catch2/catch.hpp>

using namespace chorus::http;

TEST_CASE("a family is announced once, then its samples, with labels escaped") {
    Exposition out;
    out.family("chorus_things_total", "counter", "Things seen.");
    out.sample("chorus_things_total", 3, {{"kind", "a\"b\\c\nd"}});
    out.gauge("chorus_level", "A level.", 0.5);
    REQUIRE(out.text() ==
            "# HELP chorus_things_total Things seen.\n"
            "# TYPE chorus_things_total counter\n"
            "chorus_things_total{kind=\"a\\\"b\\\\c\\nd\"} 3\n"
            "# HELP chorus_level A level.\n"
            "# TYPE chorus_level gauge\n"
            "chorus_level 0.5\n");
}

TEST_CASE("histogram buckets are cumulative and end in +Inf with the count") {
    Histogram h;
    // Powers of two, so the sum is exact.
    h.observe(0.000244140625);  // first bucket
    h.observe(0.00390625);      // le 0.005
    h.observe(0.00390625);
    h.observe(64);  // beyond every bound
    Exposition out;
    h.write(out, "lat_seconds", {{"endpoint", "x"}});
    const std::string& t = out.text();
    REQUIRE_THAT(t, Catch::Contains("lat_seconds_bucket{endpoint=\"x\",le=\"0.0005\"} 1\n"));
    REQUIRE_THAT(t, Catch::Contains("lat_seconds_bucket{endpoint=\"x\",le=\"0.0025\"} 1\n"));
    REQUIRE_THAT(t, Catch::Contains("lat_seconds_bucket{endpoint=\"x\",le=\"0.005\"} 3\n"));
    REQUIRE_THAT(t, Catch::Contains("lat_seconds_bucket{endpoint=\"x\",le=\"10\"} 3\n"));
    REQUIRE_THAT(t, Catch::Contains("lat_seconds_bucket{endpoint=\"x\",le=\"+Inf\"} 4\n"));
    REQUIRE_THAT(t, Catch::Contains("lat_seconds_count{endpoint=\"x\"} 4\n"));
    REQUIRE_THAT(t, Catch::Contains("lat_seconds_sum{endpoint=\"x\"} 64.008056640625\n"));
    REQUIRE(h.count() == 4);
}
