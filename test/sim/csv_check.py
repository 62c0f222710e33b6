#!/usr/bin/env python3
"""chorus-sim's CSV tables, which scripts/plot-sim reads: --csv has --json's fields in its
order with the same values, and --csv-detections has a row per observer whose earliest and
latest dead_s are the report's detect_first_s and detect_all_s. Bad flags still exit 2.

    csv_check.py path/to/chorus-sim
"""
import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile

SIM = sys.argv[1]
FLAGS = ["--nodes", "20", "--duration", "40", "--crash", "1", "--crash-at", "10", "--seed", "3"]
NODES = 20
# Measured on the host, not simulated: they differ between two runs of one seed.
WALL_CLOCK = {"wall_s", "peak_rss_mb"}
DETECTION_COLUMNS = ["nodes", "seed", "loss", "crashed_node", "observer", "suspect_s", "dead_s"]


def fail(why):
    sys.exit(f"FAIL: {why}\n  replay: {SIM} {' '.join(FLAGS)} --csv")


def check(cond, why):
    if not cond:
        fail(why)


def sim(*extra):
    out = subprocess.run([SIM, *FLAGS, *extra], capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def agrees(text, value):
    """Whether a CSV field says what the JSON value says."""
    if value is None:
        return text == ""
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, list):
        return text == str(len(value))
    if isinstance(value, (int, float)):
        return float(text) == float(value)
    return text == value


def check_summary(text, report):
    rows = list(csv.reader(io.StringIO(text)))
    check(len(rows) == 2, f"--csv printed {len(rows)} lines, not a header and one row")
    header, row = rows
    check(header == list(report), f"--csv's columns are not --json's fields in order: {header}")
    check(len(row) == len(header), f"--csv's row has {len(row)} fields for {len(header)} columns")
    for key, field in zip(header, row):
        if key in WALL_CLOCK:
            check(float(field) >= 0, f"{key} is {field!r}")
        else:
            check(agrees(field, report[key]), f"{key}: --csv says {field!r}, --json {report[key]!r}")
    return dict(zip(header, row))


def check_detections(path, report):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        check(r.fieldnames == DETECTION_COLUMNS, f"--csv-detections' columns: {r.fieldnames}")
        rows = list(r)
    # Every other node was live at the crash and knew the crashed node: the join is over by 10 s.
    check(len(rows) == NODES - 1, f"{len(rows)} detection rows, not {NODES - 1}")
    crashed = {d["crashed_node"] for d in rows}
    check(len(crashed) == 1 and re.fullmatch(r"n[0-9]+", next(iter(crashed))),
          f"crashed_node: {crashed}")
    observers = [d["observer"] for d in rows]
    check(len(set(observers)) == len(rows) and crashed.isdisjoint(observers),
          "an observer is listed twice or is the crashed node")
    dead = []
    for d in rows:
        check((int(d["nodes"]), int(d["seed"]), float(d["loss"])) == (NODES, 3, 0.0),
              f"a row's run: {d}")
        check(d["dead_s"] != "" and d["suspect_s"] != "", f"{d['observer']} never saw it: {d}")
        check(0 <= float(d["suspect_s"]) <= float(d["dead_s"]), f"suspect after dead: {d}")
        dead.append(float(d["dead_s"]))
    check(min(dead) == report["detect_first_s"],
          f"earliest dead_s {min(dead)}, detect_first_s {report['detect_first_s']}")
    check(max(dead) == report["detect_all_s"],
          f"latest dead_s {max(dead)}, detect_all_s {report['detect_all_s']}")


def main():
    rc, out, err = sim("--json")
    check(rc == 0, f"--json exited {rc}: {err}")
    report = json.loads(out)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "detections.csv")
        rc, out, err = sim("--csv", "--csv-detections", path)
        check(rc == 0, f"--csv exited {rc}: {err}")
        summary = check_summary(out, report)
        check_detections(path, report)
        rc, _, err = sim("--csv", "--json")
        check(rc == 2, f"--csv with --json exited {rc}, not 2")
        rc, _, err = sim("--csv-detections", os.path.join(tmp, "no-such-dir", "x.csv"))
        check(rc == 2 and "--csv-detections" in err, f"an unwritable file: exit {rc}, {err!r}")
    print(f"ok: {len(summary)} columns agree with --json; detect_first_s "
          f"{report['detect_first_s']}, detect_all_s {report['detect_all_s']}")


main()
