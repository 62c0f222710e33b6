#!/usr/bin/env python3
"""The coordinator on real agents (issue 17, point 1):
  - three agents, a with priority 1, b and c with priority 5: every view names b (the highest
    priority, ties to the lowest name), through GET /v1/coordinator and `chorus coordinator`;
  - b is killed -9: every view names c, and the time from the kill until all agree is printed;
    a's event stream carried a `coordinator` event naming c, and its metric counted changes;
  - coordinator placement (point 2): a runs with --task-placement coordinator, so tasks posted
    to it without a placement ask c, which assigns them (its metric counts them), and they run
    and finish; a task may still ask for "placement": "ring"; a bad placement is a 400;
  - a singleton (point 3) posted to a runs on c, the coordinator, whatever its key.

    coordinator.py /path/to/chorus

Bounded: every wait has a deadline; about 10 s. Only what it started is ended, by PID.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, launch, step, stop  # noqa: E402

chorus = os.path.abspath(sys.argv[1])
work = tempfile.mkdtemp(prefix="chorus-coordinator-")
logs = Logs(work, ["a", "b", "c"])
procs, http_at = {}, {}


def named(n):
    s, j, _ = call(http_at[n], "GET", "/v1/coordinator")
    return j["coordinator"] if s == 200 else None


events = []


def follow(addr):
    """Collects a's stream events (type, data) in the background until the test ends."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request("GET", "/v1/members/stream")
    r = c.getresponse()
    kind = None
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind:
            events.append((kind, json.loads(line[6:])))


try:
    step("a (priority 1), b and c (priority 5): every view names b")
    procs["a"], gossip, http_at["a"] = launch(chorus, "a", f"{work}/a.log",
                                              ["--profile", "local", "--tag", "priority=1",
                                               "--task-placement", "coordinator"])
    for n in ("b", "c"):
        procs[n], _, http_at[n] = launch(chorus, n, f"{work}/{n}.log",
                                         ["--profile", "local", "--tag", "priority=5",
                                          "--seed", gossip])
    logs.until(lambda: all(named(n) == "b" for n in "abc"), 20, "the views did not all name b")
    threading.Thread(target=follow, args=(http_at["a"],), daemon=True).start()
    out = subprocess.run([chorus, "coordinator", "--http", http_at["c"]], capture_output=True,
                         text=True, timeout=10)
    if out.returncode != 0 or not out.stdout.startswith("b (priority 5), view index "):
        logs.fail(f"chorus coordinator: {out.returncode} {out.stdout!r} {out.stderr!r}")
    _, before, _ = call(http_at["a"], "GET", "/v1/coordinator")

    step("b is killed -9: every view names c")
    logs.until(lambda: any(k == "snapshot" for k, _ in events), 10,
               "a's stream sent no snapshot")  # open before the kill
    killed = time.time()
    procs["b"].kill()
    procs["b"].wait()
    logs.until(lambda: named("a") == "c" and named("c") == "c", 30,
               "the views did not all name c after b was killed")
    print(f"all views named c {time.time() - killed:.2f} s after the kill")
    logs.until(lambda: any(k == "coordinator" and d["coordinator"] == "c" for k, d in events), 10,
               "a's stream carried no coordinator event naming c")
    _, after, _ = call(http_at["a"], "GET", "/v1/coordinator")
    if after["changes"] <= before["changes"] or after["index"] <= before["index"]:
        logs.fail(f"changes or index did not move: {before} -> {after}")
    c = http.client.HTTPConnection(*http_at["a"].rsplit(":", 1), timeout=5)
    c.request("GET", "/metrics")
    metrics = c.getresponse().read().decode()
    if f"chorus_coordinator_changes_total {after['changes']}" not in metrics:
        logs.fail("the metric does not count the changes")

    def metric(addr, name):
        c = http.client.HTTPConnection(*addr.rsplit(":", 1), timeout=5)
        c.request("GET", "/metrics")
        for line in c.getresponse().read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    step("tasks posted to a go where c, the coordinator, assigns them")
    logs.until(lambda: call(http_at["a"], "GET", "/v1/members")[1] is not None and
               sum(1 for m in call(http_at["a"], "GET", "/v1/members")[1]["members"]
                   if m["state"] == "alive") == 2, 30, "a does not see b gone")
    assigned = metric(http_at["c"], "chorus_task_assigned_total")
    owners = set()
    for i in range(8):
        status, j, _ = call(http_at["a"], "POST", "/v1/tasks?wait=10s",
                            {"key": f"k{i}", "type": "echo", "payload": i}, timeout=15)
        if status != 200 or j.get("state") != "succeeded" or j.get("result") != i:
            logs.fail(f"a coordinator-placed task: {status} {j}")
        if j.get("placement") != "coordinator":
            logs.fail(f"a's default placement was not applied: {j}")
        owners.add(j["owner"])
    if not owners <= {"a", "c"}:
        logs.fail(f"tasks ran on members not alive: {owners}")
    if metric(http_at["c"], "chorus_task_assigned_total") < assigned + 8:
        logs.fail("c's metric did not count the 8 assignments")
    status, j, _ = call(http_at["a"], "POST", "/v1/tasks",
                        {"key": "k", "type": "echo", "placement": "ring"})
    if status != 202 or j.get("placement") != "ring":
        logs.fail(f"a task asking for ring placement: {status} {j}")
    status, j, _ = call(http_at["a"], "POST", "/v1/tasks",
                        {"key": "k", "type": "echo", "placement": "leader"})
    if status != 400 or j.get("error", {}).get("code", j.get("code")) != "bad_placement":
        logs.fail(f"a bad placement: {status} {j}")

    step("a singleton posted to a runs on c, the coordinator")
    for key in ("report", "compaction", "x"):
        status, j, _ = call(http_at["a"], "POST", "/v1/tasks?wait=10s",
                            {"key": key, "type": "echo", "payload": key, "singleton": True},
                            timeout=15)
        if status != 200 or j.get("owner") != "c" or not j.get("singleton"):
            logs.fail(f"a singleton: {status} {j}")
    print("PASS")
finally:
    stop(procs)
    shutil.rmtree(work, ignore_errors=True)
