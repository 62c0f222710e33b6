#!/usr/bin/env python3
"""The coordinator on real agents (issue 17, point 1):
  - three agents, a with priority 1, b and c with priority 5: every view names b (the highest
    priority, ties to the lowest name), through GET /v1/coordinator and `chorus coordinator`;
  - b is killed -9: every view names c, and the time from the kill until all agree is printed;
    a's event stream carried a `coordinator` event naming c, and its metric counted changes.

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
                                              ["--profile", "local", "--tag", "priority=1"])
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
    print("PASS")
finally:
    stop(procs)
    shutil.rmtree(work, ignore_errors=True)
