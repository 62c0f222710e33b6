#!/usr/bin/env python3
"""What a newcomer trips on, on real processes (issue 16's list):
  - a join that cannot succeed says why: in the log, in /v1/self and in /v1/health's 503; and
    with --retry-join the agent gives up and exits 1 (as Serf's does);
  - a mistyped command is named, with the one meant;
  - --http takes a URL, as the client commands do;
  - a config file may spell keys as the flags are, and its handlers' relative paths are its
    neighbours (examples/agent.json's checksum handler runs from any working directory);
  - JSON log lines keep numbers as numbers;
  - a leave that stops a running task names it and says what becomes of it;
  - a name already alive at another address: the newer process stops, the older says so, and
    the same member restarted at a new address is taken there.

  newcomer.py /path/to/chorus /path/to/examples
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, launch, step, stop  # noqa: E402

chorus = os.path.abspath(sys.argv[1])
examples = os.path.abspath(sys.argv[2])
work = tempfile.mkdtemp(prefix="chorus-newcomer-")
logs = Logs(work, ["lonely", "gives-up", "json", "example", "leaver", "seed", "dup"])
procs = {}


def free_port():
    """A loopback TCP port nobody listens on (bound, then let go): dials to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


try:
    step("a seed that refuses: the reason is logged, and shown by /v1/self and /v1/health")
    refused = f"127.0.0.1:{free_port()}"
    lonely_log = os.path.join(work, "lonely.log")
    procs["lonely"], _, http = launch(chorus, "lonely", lonely_log,
                                      ["--seed", refused, "--seed", "no-such-host.invalid:7900"])
    if http is None:
        logs.fail("an agent whose seeds do not answer did not start")

    def trouble():
        status, body, _ = call(http, "GET", "/v1/health")
        if status != 503:
            return None
        return body["error"]["message"]
    logs.until(lambda: trouble() and "cannot resolve it" in trouble() and
               f"{refused}: connect" in trouble(), 20,
               "/v1/health does not say why the join fails")
    status, me, _ = call(http, "GET", "/v1/self")
    if status != 200 or me["join"]["joined"] or me["join"]["attempts"] < 1 or \
            refused not in me["join"]["trouble"]:
        logs.fail(f"/v1/self does not show the join's trouble: {me}")
    with open(lonely_log) as f:
        text = f.read()
    if "could not join the cluster yet" not in text or refused not in text:
        logs.fail("the log does not say why the join fails")
    stop({"lonely": procs.pop("lonely")})

    step("--retry-join 2: the agent gives up, says why, and exits 1")
    gives_up_log = os.path.join(work, "gives-up.log")
    with open(gives_up_log, "w") as log:
        t0 = time.time()
        r = subprocess.run([chorus, "agent", "--name", "gives-up", "--bind", "127.0.0.1:0",
                            "--http", "127.0.0.1:0", "--seed", refused, "--retry-join", "2"],
                           stdout=log, stderr=subprocess.STDOUT, timeout=60)
    with open(gives_up_log) as f:
        text = f.read()
    if r.returncode != 1 or "giving up" not in text or refused not in text:
        logs.fail(f"--retry-join 2 exhausted: exit {r.returncode}, expected 1 with the reason")
    step(f"  exited 1 after {time.time() - t0:.1f} s")

    step("a mistyped command is named, with the one meant")
    r = subprocess.run([chorus, "member"], capture_output=True, text=True, timeout=30)
    if r.returncode != 2 or "'member' is not a command (did you mean 'members'?)" not in r.stderr:
        logs.fail(f"chorus member: exit {r.returncode}, said {r.stderr!r}")

    step("--http as a URL, keys spelled as flags, JSON logs with numbers")
    config = os.path.join(work, "flags.json")
    with open(config, "w") as f:
        json.dump({"retry-join": 3, "seed": [refused], "log-format": "json"}, f)
    json_log = os.path.join(work, "json.log")
    with open(json_log, "w") as log:
        procs["json"] = subprocess.Popen(
            [chorus, "agent", "--name", "json", "--bind", "127.0.0.1:0",
             "--http", f"http://127.0.0.1:{free_port()}/", "--config", config],
            stdout=log, stderr=subprocess.STDOUT)
    started = None

    def lines():
        with open(json_log) as f:
            return [json.loads(line) for line in f if line.strip()]
    logs.until(lambda: any(e["msg"] == "could not join the cluster yet; trying again"
                           for e in lines()), 20, "no JSON line about the join")
    for e in lines():
        if e["msg"] == "agent started":
            started = e
        if e["msg"] == "could not join the cluster yet; trying again":
            if not isinstance(e["attempt"], int) or e["attempts_max"] != 3:
                logs.fail(f"numbers are not numbers in a JSON log line: {e}")
    if started is None or not started["http"].startswith("127.0.0.1:"):
        logs.fail(f"--http http://127.0.0.1:PORT/ was not taken: {started}")
    stop({"json": procs.pop("json")})

    step("examples/agent.json from another working directory: its handler path is its own")
    example = os.path.join(examples, "agent.json")
    if os.geteuid() != 0:  # only root may run a handler as nobody: a copy without the user
        with open(example) as f:
            cfg = json.load(f)
        for h in cfg["handlers"].values():
            h.pop("user", None)
            h.pop("group", None)
        example = os.path.join(work, "agent.json")
        shutil.copytree(os.path.join(examples, "handlers"), os.path.join(work, "handlers"))
        with open(example, "w") as f:
            json.dump(cfg, f)
    os.chdir("/")
    # Two agents: a task keeps a copy on a second member by default.
    procs["example"], gossip, http = launch(chorus, "example", os.path.join(work, "example.log"),
                                            ["--config", example])
    if http is None:
        logs.fail(f"chorus agent --config {example} did not start")
    procs["example2"], _, http2 = launch(chorus, "example2", os.path.join(work, "example.log"),
                                         ["--config", example, "--seed", gossip])
    if http2 is None:
        logs.fail("a second agent with the example's config did not start")

    def both_alive():
        status, body, _ = call(http, "GET", "/v1/members")
        return status == 200 and sum(m["state"] == "alive" for m in body["members"]) == 2
    logs.until(both_alive, 20, "the two agents with the example's config did not converge")
    status, body, _ = call(http2, "POST", "/v1/tasks?wait=10s",
                           {"key": "k1", "type": "checksum", "payload": {"text": "hello"}},
                           timeout=15)
    if status != 200 or body.get("state") != "succeeded" or \
            len(body.get("result", {}).get("sha256", "")) != 64:
        logs.fail(f"the example's checksum handler did not run: {status} {body}")
    stop({"example": procs.pop("example"), "example2": procs.pop("example2")})

    step("a leave that stops a running task says which, and what becomes of it")
    alone = os.path.join(work, "alone.json")
    with open(alone, "w") as f:
        json.dump({"tasks": {"replicas": 1}, "leave_timeout_ms": 500}, f)
    leaver_log = os.path.join(work, "leaver.log")
    procs["leaver"], _, http = launch(chorus, "leaver", leaver_log, ["--config", alone])
    if http is None:
        logs.fail("an agent of its own did not start")
    status, body, _ = call(http, "POST", "/v1/tasks",
                           {"key": "slow", "type": "sleep", "payload": {"ms": 60000}})
    if status != 202:
        logs.fail(f"a sleep task was not taken: {status} {body}")
    task = body["id"]
    logs.until(lambda: call(http, "GET", f"/v1/tasks/{task}")[1].get("state") == "running", 20,
               "the sleep task did not start")
    procs["leaver"].terminate()
    if procs.pop("leaver").wait(timeout=30) != 0:
        logs.fail("the agent did not exit 0 after SIGTERM")
    with open(leaver_log) as f:
        text = f.read()
    if "stopping tasks still running: with one copy in memory they are lost" not in text or \
            task not in text:
        logs.fail("the leave did not say which running task it stopped")

    step("a handler whose program is not there is refused at start, naming it")
    missing = os.path.join(work, "missing.json")
    with open(missing, "w") as f:
        json.dump({"handlers": {"resize": {"exec": ["handlers/resize.sh"]}}}, f)
    r = subprocess.run([chorus, "agent", "--name", "typo", "--bind", "127.0.0.1:0",
                        "--http", "127.0.0.1:0", "--config", missing],
                       capture_output=True, text=True, timeout=30)
    expected = f"handlers.resize: exec: {work}/handlers/resize.sh does not exist"
    if r.returncode != 2 or expected not in r.stderr:
        logs.fail(f"a missing handler program: exit {r.returncode}, said {r.stderr!r}")
    step("a name already alive at another address: the newer process stops, the older says so")
    dup_log = os.path.join(work, "dup.log")
    procs["seed"], seed, seed_http = launch(chorus, "seed", os.path.join(work, "seed.log"))
    procs["dup1"], first, _ = launch(chorus, "dup", dup_log, ["--seed", seed])

    def dup_at(addr):
        status, body, _ = call(seed_http, "GET", "/v1/members")
        return status == 200 and any(m["name"] == "dup" and m["addr"] == addr and
                                     m["state"] == "alive" for m in body["members"])
    logs.until(lambda: dup_at(first), 20, "the first dup did not join")
    procs["dup2"], second, _ = launch(chorus, "dup", dup_log, ["--seed", seed])
    try:
        code = procs["dup2"].wait(timeout=30)
    except subprocess.TimeoutExpired:
        logs.fail("a second process with a name in use kept running")
    with open(dup_log) as f:
        text = f.read()
    if code != 1 or "the name is in use by a live member at another address; stopping" not in \
            text or f"other={first}" not in text:
        logs.fail(f"the second dup exited {code} without naming the first")
    logs.until(lambda: "another process announced itself under this member's name" in
               open(dup_log).read(), 20, "the first dup did not say another claimed its name")
    logs.until(lambda: dup_at(first), 20, "the seed's view did not go back to the first dup")
    if procs["dup1"].poll() is not None:
        logs.fail("the first dup stopped")
    step("  the same member restarted at another address is not a conflict")
    procs["dup1"].kill()
    procs["dup1"].wait()
    procs["dup3"], third, _ = launch(chorus, "dup", dup_log, ["--seed", seed])
    logs.until(lambda: dup_at(third), 30, "the restarted dup was not taken at its new address")
    if procs["dup3"].poll() is not None:
        logs.fail("the restarted dup stopped")
    print("PASS")
finally:
    stop(procs)
    shutil.rmtree(work, ignore_errors=True)
