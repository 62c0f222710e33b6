// Prometheus text exposition (format 0.0.4) and a fixed-bucket histogram, for GET /metrics.
//
// Each family is written whole: its HELP and TYPE lines, then its samples, so the output passes
// `promtool check metrics`. Names follow Prometheus' conventions: base units (seconds, bytes),
// counters end in _total.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chorus::http {

using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

class Exposition {
  public:
    // Starts a family; `type` is counter, gauge or histogram.
    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, double value, const Labels& labels = {});
    // A family with one unlabelled sample.
    void counter(std::string_view name, std::string_view help, uint64_t value);
    void gauge(std::string_view name, std::string_view help, double value);
    const std::string& text() const { return out_; }

  private:
    std::string out_;
};

// Request latencies: upper bounds from half a millisecond to ten seconds, cumulative on output.
class Histogram {
  public:
    static constexpr std::array<double, 11> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,   0.5,    1.0,   10.0};
    void observe(double seconds);
    // The _bucket, _sum and _count samples (the family is started by the caller).
    void write(Exposition& out, std::string_view name, const Labels& labels) const;
    uint64_t count() const { return count_; }

  private:
    std::array<uint64_t, kBounds.size()> buckets_{};  // not cumulative
    uint64_t count_ = 0;
    double sum_ = 0;
};

}  // namespace chorus::http
