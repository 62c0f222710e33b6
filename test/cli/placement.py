#!/usr/bin/env python3
"""Where tasks may run, on real processes (issue 16, points 5, 6 and 8):
  - members advertise their handlers: a task posted to an agent without its handler runs on
    one that has it, and a type no member has is a 422 naming it;
  - `chorus tags --set/--delete` changes a member's tags at run time: kept in its data dir
    (a restart keeps them) and gossiped, so every member's view shows them;
  - a task with "where" runs only on members carrying those tags; none: 503 no_match;
  - `chorus drain` stops new tasks landing on a member (it stays alive), `--off` ends it;
  - `chorus force-leave` makes a dead member left everywhere, and `--prune` forgets it;
  - `chorus monitor --level debug` streams the agent's log as it is written.

  placement.py /path/to/chorus
"""
import http.client as http_client
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, launch, step, stop  # noqa: E402

chorus = os.path.abspath(sys.argv[1])
work = tempfile.mkdtemp(prefix="chorus-placement-")
names = ["plain", "gpu1", "gpu2"]
logs = Logs(work, names)
procs = {}
http = {}

# gpu1 and gpu2 run a "paint" handler as well as the built-in ones; plain does not.
painter = os.path.join(work, "painter.json")
with open(painter, "w") as f:
    json.dump({"handlers": {"paint": {"builtin": "echo"}}}, f)


def start(name, extra):
    procs[name], gossip, http[name] = launch(
        chorus, name, os.path.join(work, f"{name}.log"),
        ["--data-dir", os.path.join(work, name), *extra])
    if http[name] is None:
        logs.fail(f"{name} did not start")
    return gossip


def cli(*args):
    r = subprocess.run([chorus, *args], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def view_tags(of, at="plain"):
    status, body, _ = call(http[at], "GET", "/v1/members")
    if status != 200:
        return None
    for m in body["members"]:
        if m["name"] == of and m["state"] == "alive":
            return m.get("tags", {})
    return None


def run(entry, task):
    status, body, _ = call(http[entry], "POST", "/v1/tasks?wait=10s", task, timeout=30)
    return status, body


try:
    seed = start("plain", [])
    start("gpu1", ["--seed", seed, "--tag", "role=gpu", "--config", painter])
    start("gpu2", ["--seed", seed, "--config", painter])

    def all_alive():
        status, body, _ = call(http["plain"], "GET", "/v1/members")
        return status == 200 and sum(m["state"] == "alive" for m in body["members"]) == 3
    logs.until(all_alive, 30, "the three agents did not converge")
    logs.until(lambda: (view_tags("gpu2") or {}).get("chorus.handlers") == "echo,paint,sleep",
               20, "gpu2's handlers are not in plain's view")

    step("a task posted to an agent without its handler runs where the handler is")
    for i in range(8):
        status, body = run("plain", {"key": f"p{i}", "type": "paint", "payload": i})
        if status != 200 or body["state"] != "succeeded" or body["owner"] not in ("gpu1", "gpu2"):
            logs.fail(f"a paint task posted to plain: {status} {body}")
    status, body = run("plain", {"key": "x", "type": "sculpt"})
    if status != 422 or "no member has a handler named 'sculpt'" not in \
            body["error"]["message"]:
        logs.fail(f"a type no member has: {status} {body}")

    step("chorus tags --set on gpu2: gossiped, and kept in its data dir")
    rc, out, err = cli("tags", "--http", http["gpu2"], "--set", "role=gpu", "--set", "zone=b")
    if rc != 0 or "role" not in out or "zone" not in out:
        logs.fail(f"chorus tags --set: exit {rc}, said {out!r} {err!r}")
    logs.until(lambda: (view_tags("gpu2") or {}).get("role") == "gpu", 20,
               "gpu2's new tag did not reach plain")
    with open(os.path.join(work, "gpu2", "tags.json")) as f:
        if json.load(f) != {"tags": {"role": "gpu", "zone": "b"}}:
            logs.fail("tags.json does not hold what chorus tags set")
    rc, _, err = cli("tags", "--http", http["gpu2"], "--set", "chorus.drain=1")
    if rc == 0 or "the agent's own" not in err:
        logs.fail(f"a tag under the agent's prefix was taken: exit {rc}, {err!r}")

    step("tasks with where run only on members carrying the tags; none gives 503 no_match")
    owners = set()
    for i in range(12):
        status, body = run("plain", {"key": f"g{i}", "type": "echo", "payload": i,
                                     "where": {"role": "gpu"}})
        if status != 200 or body["state"] != "succeeded" or \
                body["where"] != {"role": "gpu"}:
            logs.fail(f"a task for role=gpu: {status} {body}")
        owners.add(body["owner"])
    if not owners <= {"gpu1", "gpu2"}:
        logs.fail(f"tasks for role=gpu ran on {owners}")
    status, body = run("gpu1", {"key": "z", "type": "echo", "where": {"role": "tpu"}})
    if status != 503 or body["error"]["code"] != "no_match" or \
            "role=tpu" not in body["error"]["message"]:
        logs.fail(f"a task no member can take: {status} {body}")
    rc, out, _ = cli("submit", "--http", http["plain"], "--key", "c", "--type", "echo",
                     "--where", "role=gpu", "--wait", "10s")
    if rc != 0 or "role=gpu" not in out or "plain" in out:
        logs.fail(f"chorus submit --where role=gpu: exit {rc}, said {out!r}")

    step("a restart keeps the tags chorus tags set, over the flags")
    procs["gpu2"].terminate()
    procs["gpu2"].wait(timeout=30)
    start("gpu2", ["--seed", seed, "--config", painter])
    logs.until(lambda: (view_tags("gpu2") or {}).get("zone") == "b", 30,
               "gpu2 lost its tags in the restart")
    with open(os.path.join(work, "gpu2.log")) as f:
        if "using the tags kept in" not in f.read():
            logs.fail("the restart does not say its tags came from the data dir")
    rc, _, _ = cli("tags", "--http", http["gpu2"], "--delete", "zone")
    logs.until(lambda: "zone" not in (view_tags("gpu2") or {"zone": 1}), 20,
               "a deleted tag stayed in plain's view")

    step("chorus drain: gpu1 takes no new tasks and stays alive; --off takes them again")
    rc, out, err = cli("drain", "--http", http["gpu1"])
    if rc != 0 or "Draining" not in out:
        logs.fail(f"chorus drain: exit {rc}, said {out!r} {err!r}")
    logs.until(lambda: (view_tags("gpu1") or {}).get("chorus.drain") == "1", 20,
               "gpu1's drain did not reach plain")
    for i in range(20):
        status, body = run("plain", {"key": f"d{i}", "type": "echo"})
        if status != 200 or body["owner"] == "gpu1":
            logs.fail(f"a task while gpu1 drains: {status} {body}")
    status, body, _ = call(http["gpu1"], "GET", "/v1/drain")
    if status != 200 or not body["draining"]:
        logs.fail(f"GET /v1/drain while draining: {status} {body}")
    if view_tags("gpu1") is None:
        logs.fail("a draining member is not alive in the view")
    rc, out, _ = cli("drain", "--http", http["gpu1"], "--off")
    if rc != 0:
        logs.fail(f"chorus drain --off: exit {rc}")
    logs.until(lambda: "chorus.drain" not in (view_tags("gpu1") or {"chorus.drain": 1}), 20,
               "the drain's end did not reach plain")
    owners = set()
    for i in range(30):
        status, body = run("plain", {"key": f"e{i}", "type": "echo"})
        if status != 200:
            logs.fail(f"a task after the drain: {status} {body}")
        owners.add(body["owner"])
    if "gpu1" not in owners:
        logs.fail(f"after drain --off, 30 keys never landed on gpu1: {owners}")
    step("chorus force-leave: a dead member made left everywhere, then forgotten with --prune")
    rc, _, err = cli("force-leave", "--http", http["plain"], "gpu1")
    if rc != 1 or "only a dead or left member" not in err:
        logs.fail(f"force-leave of an alive member: exit {rc}, said {err!r}")
    procs["gpu2"].kill()
    procs["gpu2"].wait()

    def state(of, at):
        status, body, _ = call(http[at], "GET", "/v1/members")
        found = [m["state"] for m in body["members"] if m["name"] == of] if status == 200 else []
        return found[0] if found else None
    logs.until(lambda: state("gpu2", "plain") == "dead" and state("gpu2", "gpu1") == "dead",
               60, "the killed gpu2 was not declared dead")
    # chorus monitor on plain, at debug (the agent itself logs at info): the force-leave's
    # line comes through it as it is written.
    monitor_out = os.path.join(work, "monitor.out")
    with open(monitor_out, "w") as out:
        procs["monitor"] = subprocess.Popen(
            [chorus, "monitor", "--http", http["plain"], "--level", "debug"], stdout=out,
            stderr=subprocess.STDOUT)

    def monitoring():
        c = http_client.HTTPConnection(*http["plain"].rsplit(":", 1), timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        return "chorus_http_log_streams 1" in text
    logs.until(monitoring, 20, "chorus monitor did not open its stream")

    def greeted():  # its first line: the agent's own word that the stream is open
        with open(monitor_out) as f:
            first = f.readline()
        return "log stream opened" in first and "level=debug" in first
    logs.until(greeted, 20, "chorus monitor's first line is not the agent's 'log stream opened'")
    rc, out, err = cli("force-leave", "--http", http["plain"], "gpu2")
    if rc != 0 or "left" not in out:
        logs.fail(f"chorus force-leave gpu2: exit {rc}, said {out!r} {err!r}")

    def monitored():
        with open(monitor_out) as f:
            return "member forced out member=gpu2 was=dead" in f.read()
    logs.until(monitored, 20, "chorus monitor did not show the force-leave's log line")
    procs["monitor"].kill()
    status, body, _ = call(http["plain"], "GET", "/v1/monitor?level=loud")
    if status != 400 or body["error"]["code"] != "bad_level":
        logs.fail(f"GET /v1/monitor?level=loud: {status} {body}")
    logs.until(lambda: state("gpu2", "gpu1") == "left", 20,
               "gpu1 did not hear that gpu2 was forced out")
    rc, out, err = cli("force-leave", "--http", http["gpu1"], "gpu2", "--prune")
    if rc != 0 or "forgets" not in out:
        logs.fail(f"chorus force-leave --prune gpu2: exit {rc}, said {out!r} {err!r}")
    logs.until(lambda: state("gpu2", "plain") is None and state("gpu2", "gpu1") is None, 20,
               "gpu2 is still listed after --prune")
    step("ok")
finally:
    stop(procs)
