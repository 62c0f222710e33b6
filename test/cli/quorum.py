#!/usr/bin/env python3
"""Coordinators under a partition, both ways (issue 17, point 4), on hosts in network
namespaces (agents.Lan): two clusters of five side by side, `q` with --coordinator-quorum
true and `n` without, each member with priority i (so q5 and n5 coordinate), then both cut
into {1, 2, 3} and {4, 5} with iptables DROP:
  - quorum: the majority side names q3 and places coordinator tasks and singletons (on q3);
    the minority side names q5 but it sees 2 of 5 alive, not a majority, and refuses both
    with 503 no_quorum: at most one side coordinates;
  - no quorum: each side names its own coordinator and goes on, n3 and n5 both running
    singletons: available, and the trade-off README.md states;
  - healed: every view names q5 again, with quorum, and it runs singletons again.

    quorum.py /path/to/chorus

Needs root, ip and iptables; exits 77 (skipped) otherwise. Bounded: every wait has a deadline;
about 30 s. Only what it started is ended, by PID; the namespaces are removed.
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Lan, Logs, call, launch, step, stop  # noqa: E402

CHORUS = os.path.abspath(sys.argv[1])
CLUSTERS = {"q": ["--coordinator-quorum", "true"], "n": []}
HOSTS = [f"{c}{i}" for c in CLUSTERS for i in range(1, 6)]
if "CHORUS_LAN" not in os.environ:
    sys.exit(Lan.rerun("quorum", HOSTS, [sys.executable, os.path.abspath(__file__), CHORUS]))

lan = Lan()
work = tempfile.mkdtemp(prefix="chorus-quorum-")
logs = Logs(work, HOSTS)
procs, http_at = {}, {}


def coordinator(h):
    s, j, _ = call(http_at[h], "GET", "/v1/coordinator")
    return j if s == 200 else {}


def alive(h):
    s, j, _ = call(http_at[h], "GET", "/v1/members")
    return {m["name"] for m in j["members"] if m["state"] == "alive"} if s == 200 else set()


def post(h, task):
    s, j, _ = call(http_at[h], "POST", "/v1/tasks?wait=10s", task, timeout=15)
    return s, j or {}


def ran(h, task, where):
    """TASK posted to H finished on a member of WHERE."""
    s, j = post(h, task)
    if s != 200 or j.get("state") != "succeeded" or j.get("owner") not in where:
        logs.fail(f"{task} posted to {h}: {s} {j}, expected it to run on one of {where}")
    return j["owner"]


def refused(h, task, why):
    s, j = post(h, task)
    if s != 503 or why not in str(j):
        logs.fail(f"{task} posted to {h}: {s} {j}, expected a 503 saying {why}")


try:
    step("two clusters of five, q with --coordinator-quorum true and n without")
    for c, extra in CLUSTERS.items():
        for i in range(1, 6):
            h = f"{c}{i}"
            procs[h], _, http_at[h] = launch(
                CHORUS, h, f"{work}/{h}.log",
                ["--profile", "local", "--cluster", c, "--tag", f"priority={i}",
                 "--seed", f"{lan.ip(c + '1')}:7900", *extra],
                bind=f"{lan.ip(h)}:7900", http_at=f"{lan.ip(h)}:7980", wrap=lan.wrap(h))
            if http_at[h] is None:
                logs.fail(f"{h} did not start")
    logs.until(lambda: all(len(alive(h)) == 5 and coordinator(h).get("coordinator") == h[0] + "5"
                           for h in HOSTS), 30, "the clusters did not form, naming *5")
    for h in ("q1", "n1"):
        q = coordinator(h)["quorum"]
        if q != {"alive": 5, "counted": 5, "held": True, "required": h == "q1"}:
            logs.fail(f"{h}'s quorum before the cut: {q}")
    ran("q1", {"key": "r", "type": "echo", "singleton": True}, {"q5"})

    step("both cut into {1, 2, 3} and {4, 5}")
    cut = time.time()
    for c in CLUSTERS:
        lan.cut([f"{c}{i}" for i in (1, 2, 3)], [f"{c}{i}" for i in (4, 5)])
    logs.until(lambda: all(coordinator(f"{c}{i}").get("coordinator") == f"{c}{3 if i < 4 else 5}"
                           and len(alive(f"{c}{i}")) == (3 if i < 4 else 2)
                           for c in CLUSTERS for i in range(1, 6)),
               30, "each side did not name its own coordinator")
    print(f"each side named its own coordinator {time.time() - cut:.1f} s after the cut")

    step("with quorum: the majority side coordinates, the minority side refuses")
    q4 = coordinator("q4")["quorum"]
    if q4["held"] or q4["alive"] != 2 or q4["counted"] != 5:
        logs.fail(f"q4 holds quorum with 2 of 5 alive: {q4}")
    if not coordinator("q1")["quorum"]["held"]:
        logs.fail("q1 does not hold quorum with 3 of 5 alive")
    ran("q1", {"key": "a", "type": "echo", "placement": "coordinator"}, {"q1", "q2", "q3"})
    ran("q2", {"key": "s", "type": "echo", "singleton": True}, {"q3"})
    refused("q4", {"key": "a", "type": "echo", "placement": "coordinator"}, "no_quorum")
    refused("q4", {"key": "s", "type": "echo", "singleton": True}, "not a majority")
    ran("q4", {"key": "a", "type": "echo"}, {"q4", "q5"})  # ring placement goes on

    step("without quorum: both sides coordinate, and singletons run on both")
    ran("n4", {"key": "a", "type": "echo", "placement": "coordinator"}, {"n4", "n5"})
    both = {ran("n1", {"key": "s", "type": "echo", "singleton": True}, {"n3"}),
            ran("n4", {"key": "s", "type": "echo", "singleton": True}, {"n5"})}
    print(f"without quorum, a singleton posted on each side ran on {sorted(both)}")

    step("healed: q5 coordinates again, with quorum")
    healed = time.time()
    lan.heal()
    logs.until(lambda: all(len(alive(h)) == 5 and coordinator(h).get("coordinator") == h[0] + "5"
                           for h in HOSTS), 60, "the halves did not merge, naming *5")
    print(f"merged {time.time() - healed:.1f} s after the heal")
    if not coordinator("q4")["quorum"]["held"]:
        logs.fail("q4 does not hold quorum after the heal")
    ran("q1", {"key": "s2", "type": "echo", "singleton": True}, {"q5"})
    ran("q4", {"key": "b", "type": "echo", "placement": "coordinator"}, set(HOSTS[:5]))
    print("PASS")
finally:
    stop(procs)
    shutil.rmtree(work, ignore_errors=True)
