#include "http/metrics.hpp"

#include <cmath>

#include <fmt/format.h>

namespace chorus::http {

namespace {

// Label values may hold any text; the format escapes backslash, quote and newline.
std::string escape(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string number(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (std::isnan(v)) return "NaN";
    return fmt::format("{}", v);
}

}  // namespace

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void Exposition::sample(std::string_view name, double value, const Labels& labels) {
    out_ += name;
    if (!labels.empty()) {
        out_ += '{';
        bool first = true;
        for (const auto& [k, v] : labels) {
            out_ += fmt::format("{}{}=\"{}\"", first ? "" : ",", k, escape(v));
            first = false;
        }
        out_ += '}';
    }
    out_ += ' ';
    out_ += number(value);
    out_ += '\n';
}

void Exposition::counter(std::string_view name, std::string_view help, uint64_t value) {
    family(name, "counter", help);
    sample(name, static_cast<double>(value));
}

void Exposition::gauge(std::string_view name, std::string_view help, double value) {
    family(name, "gauge", help);
    sample(name, value);
}

void Histogram::observe(double seconds) {
    ++count_;
    sum_ += seconds;
    for (size_t i = 0; i < kBounds.size(); ++i) {
        if (seconds <= kBounds[i]) {
            ++buckets_[i];
            return;
        }
    }
}

void Histogram::write(Exposition& out, std::string_view name, const Labels& labels) const {
    const std::string bucket = fmt::format("{}_bucket", name);
    Labels with_le = labels;
    with_le.emplace_back("le", "");
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= kBounds.size(); ++i) {
        const bool last = i == kBounds.size();
        if (!last) cumulative += buckets_[i];
        const std::string le = last ? "+Inf" : number(kBounds[i]);
        with_le.back().second = le;
        out.sample(bucket, static_cast<double>(last ? count_ : cumulative), with_le);
    }
    out.sample(fmt::format("{}_sum", name), sum_, labels);
    out.sample(fmt::format("{}_count", name), static_cast<double>(count_), labels);
}

}  // namespace chorus::http
