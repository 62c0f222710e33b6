// chorus-sim: runs a simulated cluster from one seed and reports what happened.
//
//   chorus-sim --nodes 100 --seed 7 --duration 120 --crash 1 --crash-at 60 --json
//
// Exit status: 0 when every invariant held, 1 when one was broken (the violations are printed),
// 2 for bad flags (a --csv-detections file that cannot be written among them).
//
// For spreadsheets and plots (scripts/plot-sim), two CSV tables (RFC 4180: comma-separated,
// a header line, text quoted only when it holds a comma, quote or line break):
//
//   --csv                  the report on stdout: a header line and one row, the same fields in
//                          the same order as --json (a list, invariant_violations, as its
//                          length; null as an empty field; true and false as in JSON)
//   --csv-detections FILE  the detection times behind detect_first_s and detect_all_s: a
//                          header line and a row for each crashed node and each node that held
//                          it alive or suspect at the crash, columns
//                            nodes,seed,loss,crashed_node,observer,suspect_s,dead_s
//                          with suspect_s and dead_s in seconds since the crash, when the
//                          observer first stopped holding it alive and first held it dead
//                          (empty: never, or not before the observer crashed too)
#include <cstdio>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "sim/simulator.hpp"

namespace {

using chorus::sim::Options;
using chorus::sim::Report;

// Ordered: the CSV's columns follow the fields as listed here.
using Json = nlohmann::ordered_json;

Json opt(const std::optional<double>& v) {
    return v ? Json(*v) : Json(nullptr);
}

Json to_json(const Report& r) {
    const Options& o = r.options;
    return {
        {"nodes", o.nodes},
        {"seed", o.seed},
        {"duration_s", o.duration_s},
        {"profile", o.profile},
        {"loss", o.loss},
        {"latency_ms", o.latency_ms},
        {"lifeguard", o.lifeguard},
        {"crashed", o.crash},
        {"slow", o.slow},
        {"join_converged_s", opt(r.join_converged_s)},
        {"false_positives", r.false_positives},
        {"false_positives_healthy", r.false_positives_healthy},
        {"false_suspicions", r.false_suspicions},
        {"partition_deaths", r.partition_deaths},
        {"detect_first_s", opt(r.detect_first_s)},
        {"detect_all_s", opt(r.detect_all_s)},
        {"detect_all_max_s", opt(r.detect_all_max_s)},
        {"undetected", r.undetected},
        {"heal_converged_s", opt(r.heal_converged_s)},
        {"converged_at_end", r.converged_at_end},
        {"msgs_per_node_per_s", r.msgs_per_node_per_s},
        {"bytes_per_node_per_s", r.bytes_per_node_per_s},
        {"steady_msgs_per_node_per_s", r.steady_msgs_per_node_per_s},
        {"steady_bytes_per_node_per_s", r.steady_bytes_per_node_per_s},
        {"packets_rejected", r.packets_rejected},
        {"member_records", r.member_records},
        {"invariant_violations", r.violations},
        {"wall_s", r.wall_s},
        {"peak_rss_mb", r.peak_rss_mb},
        {"tasks_per_s", o.tasks_per_s},
        {"replicas", o.replicas},
        {"data_loss", o.data_loss},
        {"tasks_submitted", r.tasks_submitted},
        {"tasks_acked", r.tasks_acked},
        {"tasks_refused", r.tasks_refused},
        {"tasks_unanswered", r.tasks_unanswered},
        {"tasks_lost", r.tasks_lost},
        {"tasks_unfinished", r.tasks_unfinished},
        {"tasks_short", r.tasks_short},
        {"disks_lost", r.disks_lost},
        {"tasks_ran_twice", r.tasks_ran_twice},
        {"tasks_ran_twice_unexplained", r.tasks_ran_twice_unexplained},
        {"under_replicated_max", r.under_replicated_max},
        {"under_replicated_end", r.under_replicated_end},
        {"lookups", r.lookups},
        {"lookups_unanswered", r.lookups_unanswered},
        {"lookups_wrong", r.lookups_wrong},
        {"task_checks_skipped", r.task_checks_skipped},
        {"replay", chorus::sim::to_flags(o)},
        {"ack_p50_ms", opt(r.ack_p50_ms)},
        {"ack_p99_ms", opt(r.ack_p99_ms)},
        {"ack_max_ms", opt(r.ack_max_ms)},
        {"task_frames", r.task_frames},
        {"task_bytes", r.task_bytes},
    };
}

// One CSV field (RFC 4180): quoted only when it must be.
std::string csv_field(std::string_view text) {
    if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
    std::string quoted = "\"";
    for (char c : text) {
        quoted += c;
        if (c == '"') quoted += '"';
    }
    return quoted + "\"";
}

std::string csv_value(const Json& v) {
    if (v.is_null()) return "";
    if (v.is_array()) return std::to_string(v.size());
    if (v.is_string()) return csv_field(v.get<std::string>());
    return v.dump();
}

// The report as a header line and one row, the fields of to_json in its order.
std::string summary_csv(const Report& r) {
    const Json fields = to_json(r);
    std::string header, row;
    for (const auto& [key, value] : fields.items()) {
        const char* sep = header.empty() ? "" : ",";
        header += sep + csv_field(key);
        row += sep + csv_value(value);
    }
    return header + "\n" + row + "\n";
}

std::string seconds_or_empty(const std::optional<double>& v) {
    return v ? fmt::format("{}", *v) : "";
}

void write_detections_csv(std::ostream& out, const Report& r) {
    const Options& o = r.options;
    out << "nodes,seed,loss,crashed_node,observer,suspect_s,dead_s\n";
    for (const chorus::sim::Detection& d : r.detections) {
        out << fmt::format("{},{},{},n{},n{},{},{}\n", o.nodes, o.seed, o.loss, d.crashed_node,
                           d.observer, seconds_or_empty(d.suspect_s), seconds_or_empty(d.dead_s));
    }
}

std::string seconds_or_none(const std::optional<double>& v) {
    return v ? fmt::format("{:.2f}s", *v) : "n/a";
}

void print_summary(const Report& r) {
    const Options& o = r.options;
    fmt::print("chorus-sim: {} nodes, seed {}, {}s of virtual time, profile {}{}\n", o.nodes,
               o.seed, o.duration_s, o.profile, o.lifeguard ? "" : ", Lifeguard off");
    fmt::print("  network: {:.0f}% loss, {}ms mean latency\n", o.loss * 100, o.latency_ms);
    fmt::print("  join: every node saw every node alive after {}\n",
               seconds_or_none(r.join_converged_s));
    if (o.crash > 0) {
        fmt::print(
            "  crash: {} node(s) at {}s; first node saw it dead after {}, all after {} (worst "
            "{})\n",
            o.crash, o.crash_at_s, seconds_or_none(r.detect_first_s),
            seconds_or_none(r.detect_all_s), seconds_or_none(r.detect_all_max_s));
    }
    if (o.slow > 0)
        fmt::print("  slow: {} node(s) handling every message {}ms late\n", o.slow, o.slow_ms);
    if (o.partition_at_s) {
        fmt::print(
            "  partition: {}s to {}s; views whole again {} after the heal ({} deaths across it)\n",
            *o.partition_at_s, *o.heal_at_s, seconds_or_none(r.heal_converged_s),
            r.partition_deaths);
    }
    fmt::print("  false positives: {} dead ({} about healthy nodes), {} suspicions\n",
               r.false_positives, r.false_positives_healthy, r.false_suspicions);
    fmt::print(
        "  traffic: {:.2f} msgs and {:.0f} bytes per node per second ({:.2f} and {:.0f} in the "
        "second half)\n",
        r.msgs_per_node_per_s, r.bytes_per_node_per_s, r.steady_msgs_per_node_per_s,
        r.steady_bytes_per_node_per_s);
    fmt::print("  views converged at the end: {}\n", r.converged_at_end ? "yes" : "no");
    if (o.tasks_per_s > 0) {
        fmt::print(
            "  tasks: {} submitted at {}/s, {} acknowledged, {} refused, {} unanswered "
            "(replicas {}, {} disk(s) lost)\n",
            r.tasks_submitted, o.tasks_per_s, r.tasks_acked, r.tasks_refused, r.tasks_unanswered,
            o.replicas, r.disks_lost);
        fmt::print(
            "  acknowledged: {} lost, {} unfinished, {} short of copies, {} ran twice ({} "
            "unexplained); under-replicated at most {}, {} at the end\n",
            r.tasks_lost, r.tasks_unfinished, r.tasks_short, r.tasks_ran_twice,
            r.tasks_ran_twice_unexplained, r.under_replicated_max, r.under_replicated_end);
        if (!r.task_checks_skipped.empty())
            fmt::print("  task checks skipped: {}\n", r.task_checks_skipped);
        fmt::print(
            "  acknowledgement: p50 {} ms, p99 {} ms, max {} ms; lookups: {} of {} wrong, {} "
            "unanswered\n",
            r.ack_p50_ms ? fmt::format("{:.1f}", *r.ack_p50_ms) : "n/a",
            r.ack_p99_ms ? fmt::format("{:.1f}", *r.ack_p99_ms) : "n/a",
            r.ack_max_ms ? fmt::format("{:.1f}", *r.ack_max_ms) : "n/a", r.lookups_wrong, r.lookups,
            r.lookups_unanswered);
    }
    fmt::print("  wall time {:.2f}s, peak RSS {:.0f} MiB\n", r.wall_s, r.peak_rss_mb);
    for (const auto& v : r.violations)
        fmt::print("  INVARIANT BROKEN: {}\n", v);
    if (!r.violations.empty()) fmt::print("  replay: chorus-sim {}\n", chorus::sim::to_flags(o));
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    bool json = false;
    bool csv = false;
    std::string detections_path;
    bool no_lifeguard = false;
    double partition_at = -1, heal_at = -1, restart_after = -1, tasks_until = -1, dead_retain = -1;
    CLI::App app{
        "chorus-sim: a deterministic simulation of a Chorus cluster's membership and tasks"};
    app.add_option("--nodes", o.nodes, "number of nodes")->capture_default_str();
    app.add_option("--seed", o.seed, "seed; the same seed replays the same run")
        ->capture_default_str();
    app.add_option("--duration", o.duration_s, "virtual seconds to simulate")
        ->capture_default_str();
    app.add_option("--profile", o.profile, "timing profile: lan, wan or local")
        ->capture_default_str();
    app.add_option("--loss", o.loss, "probability that a datagram is lost")->capture_default_str();
    app.add_option("--latency-ms", o.latency_ms, "mean one-way latency (±50% jitter)")
        ->capture_default_str();
    app.add_option("--crash", o.crash, "nodes to crash (never node 0, the seed)")
        ->capture_default_str();
    app.add_option("--crash-at", o.crash_at_s, "when they crash, in seconds")
        ->capture_default_str();
    app.add_option("--crash-every", o.crash_every_s,
                   "seconds between one crash and the next (0: all at --crash-at)")
        ->capture_default_str();
    app.add_option("--restart-after", restart_after,
                   "restart crashed nodes this many seconds later");
    app.add_option("--slow", o.slow, "nodes that handle every message late")->capture_default_str();
    app.add_option("--slow-ms", o.slow_ms, "how late slow nodes handle messages")
        ->capture_default_str();
    app.add_flag("--no-lifeguard", no_lifeguard,
                 "plain SWIM: no awareness, fixed suspicion, no buddy");
    app.add_option("--partition-at", partition_at, "split the cluster in two halves at this time");
    app.add_option("--heal-at", heal_at, "heal the partition at this time");
    app.add_option("--dead-retain", dead_retain,
                   "seconds dead members are kept and called back (default: the profile's)");
    app.add_option("--join-window", o.join_window_s, "nodes start within this many seconds")
        ->capture_default_str();
    app.add_option("--tasks-per-s", o.tasks_per_s,
                   "task workload: tasks clients submit a second to random live nodes (0: none)")
        ->capture_default_str();
    app.add_option("--task-ms", o.task_ms, "how long each task runs (±50%)")->capture_default_str();
    app.add_option("--replicas", o.replicas, "members storing each task (1 or 2)")
        ->capture_default_str();
    app.add_option("--min-replicas", o.min_replicas,
                   "fewest members a task may be acknowledged on (0: replicas)")
        ->capture_default_str();
    app.add_option("--data-loss", o.data_loss,
                   "of the crashed nodes, how many lose their disks (journal)")
        ->capture_default_str();
    app.add_option("--commit-ms", o.commit_ms, "how long a journal commit takes")
        ->capture_default_str();
    app.add_option("--coordinator-share", o.coordinator_share,
                   "of the tasks, the share placed by the coordinator")
        ->capture_default_str();
    app.add_option("--singleton-share", o.singleton_share,
                   "of the tasks, the share submitted as singletons (run on the coordinator)")
        ->capture_default_str();
    app.add_option("--tasks-from", o.tasks_from_s, "when clients start submitting, in seconds")
        ->capture_default_str();
    app.add_option("--tasks-until", tasks_until,
                   "when clients stop submitting (default: 60 s before the end)");
    auto* json_flag = app.add_flag("--json", json, "print one JSON object instead of a summary");
    app.add_flag("--csv", csv,
                 "print the report as CSV instead: a header line and one row, --json's fields")
        ->excludes(json_flag);
    app.add_option(
           "--csv-detections", detections_path,
           "also write, as CSV, when each node saw each crashed node suspect and dead: "
           "nodes,seed,loss,crashed_node,observer,suspect_s,dead_s (seconds since the crash)")
        ->type_name("FILE");
    app.add_flag("--progress", o.progress, "report progress on stderr every 10 virtual seconds");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    o.lifeguard = !no_lifeguard;
    if (partition_at >= 0) o.partition_at_s = partition_at;
    if (heal_at >= 0) o.heal_at_s = heal_at;
    if (dead_retain >= 0) o.dead_retain_s = dead_retain;
    if (restart_after >= 0) o.restart_after_s = restart_after;
    if (tasks_until >= 0) o.tasks_until_s = tasks_until;
    if (auto s = chorus::sim::validate(o); !s) {
        fmt::print(stderr, "chorus-sim: {}\n", s.error().message);
        return 2;
    }
    // Opened before the run, so that a path that cannot be written costs no simulation.
    std::ofstream detections;
    if (!detections_path.empty()) {
        detections.open(detections_path);
        if (!detections) {
            fmt::print(stderr, "chorus-sim: --csv-detections: cannot write {}\n", detections_path);
            return 2;
        }
    }
    const Report r = chorus::sim::run(o);
    if (detections.is_open()) {
        write_detections_csv(detections, r);
        detections.close();
        if (!detections) {
            fmt::print(stderr, "chorus-sim: --csv-detections: writing {} failed\n",
                       detections_path);
            return 2;
        }
    }
    if (json) {
        std::cout << to_json(r).dump() << "\n";
    } else if (csv) {
        std::cout << summary_csv(r);
    } else {
        print_summary(r);
    }
    return r.violations.empty() ? 0 : 1;
}
