"""Sealed gossip on real agents: only members with the key join, and a cluster in clear moves
to encryption without downtime.

  1. a, b, c share a key (from `chorus keygen`) and form a cluster; a task runs through it.
  2. x, with another key, and y, with none, try to join through a, again and again: neither
     joins, neither is seen by any member, and a counts what it could not open
     (chorus_packets_rejected_total{reason="unsealed"}).
  3. A frame in clear sent straight to a's gossip port is not answered: a closes it.
  4. The keys rotate under steady task traffic: `chorus keys --install` a new key through one
     agent, `--use` it through another, `--remove` the old one through the third. Every
     acknowledged task finishes, nobody is marked dead or suspect, every member holds only the
     new key, and b, restarted with its old --encrypt key, rejoins with the keyring it kept in
     its data dir (and does not take the removed key back).
  5. p, q, r start in clear and move to encryption one agent at a time, in the three steps of
     net/seal.hpp (a key with nothing verified, then sealing what they send, then refusing
     what comes in clear), each agent restarted with its new settings. After every restart all
     three are alive in every view, and nothing was refused on the way.

    python3 encryption.py /path/to/chorus

Bounded: each wait has a deadline; the run takes about a minute. Only the processes it
started are ended, by PID, however the test ends.
"""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, clear_frame_answer, launch, step, stop  # noqa: E402  (the folder's shared helpers)

CHORUS = sys.argv[1]
NAMES = ["a", "b", "c", "x", "y", "p", "q", "r"]

work = tempfile.mkdtemp(prefix="chorus-encryption-")
procs, gossip, http_at = {}, {}, {}
logs = Logs(work, NAMES)
fail, until = logs.fail, logs.until


def keygen():
    key = subprocess.run([CHORUS, "keygen"], check=True, capture_output=True, text=True).stdout
    key = key.strip()
    if len(key) != 44 or not key.endswith("="):
        fail(f"chorus keygen printed {key!r}, not a base64 key of 32 bytes")
    return key


def start(name, args):
    proc, g, h = launch(CHORUS, name, os.path.join(work, f"{name}.log"), args)
    procs[name] = proc
    if g is None:
        fail(f"{name} exited at start ({proc.returncode})")
    gossip[name], http_at[name] = g, h


def stop_gracefully(name):
    procs[name].send_signal(signal.SIGTERM)
    try:
        procs[name].wait(timeout=20)
    except subprocess.TimeoutExpired:
        fail(f"{name} did not stop within 20 s of SIGTERM")


def view(n):
    s, v, _ = call(http_at[n], "GET", "/v1/members")
    if s != 200:
        fail(f"{n}: GET /v1/members answered {s}")
    return {m["name"]: m["state"] for m in v["members"]}


def alive_everywhere(names):
    try:
        return all({m for m, st in view(o).items() if st == "alive"} == set(names) for o in names)
    except OSError:
        return False


def metric(n, sample):
    host, port = http_at[n].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        text = b""
        while chunk := c.recv(65536):
            text += chunk
    for line in text.decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[1])
    fail(f"{n}: no sample {sample} in /metrics")


UNSEALED = 'chorus_packets_rejected_total{reason="unsealed"}'

try:
    key, other_key = keygen(), keygen()
    if key == other_key:
        fail("chorus keygen printed the same key twice")

    step("a, b, c with one key")
    data = {n: os.path.join(work, f"data-{n}") for n in ("a", "b", "c")}
    start("a", ["--encrypt", key, "--data-dir", data["a"]])
    start("b", ["--encrypt", key, "--seed", gossip["a"], "--data-dir", data["b"]])
    start("c", ["--encrypt", key, "--seed", gossip["a"], "--data-dir", data["c"]])
    until(lambda: alive_everywhere(["a", "b", "c"]), 30, "a, b, c did not all see each other")
    s, t, _ = call(http_at["b"], "POST", "/v1/tasks?wait=10s",
                   {"key": "k1", "type": "echo", "payload": {"n": 1}}, timeout=15)
    if s not in (200, 201, 202) or t.get("state") != "succeeded" or t.get("result") != {"n": 1}:
        fail(f"a task through the sealed cluster: {s} {t}")

    step("x with another key and y with none try to join through a")
    before = metric("a", UNSEALED)
    start("x", ["--encrypt", other_key, "--seed", gossip["a"]])
    start("y", ["--seed", gossip["a"]])
    # Each retries its join with backoff; wait for a second attempt from both.
    until(lambda: metric("x", "chorus_join_attempts_total") >= 2
          and metric("y", "chorus_join_attempts_total") >= 2, 30,
          "x and y did not try to join twice")
    until(lambda: metric("a", UNSEALED) >= before + 4, 20,
          "a did not count the join attempts it could not open")
    if not alive_everywhere(["a", "b", "c"]):
        fail(f"the sealed cluster's views changed: {[view(n) for n in ('a', 'b', 'c')]}")
    for outsider in ("x", "y"):
        if set(view(outsider)) != {outsider}:
            fail(f"{outsider} sees members it has no key for: {view(outsider)}")
    with open(os.path.join(work, "a.log")) as f:
        if "every member needs the same --encrypt key" not in f.read():
            fail("a logged nothing an operator could act on about the refused joins")

    step("a frame in clear straight to a's gossip port gets no answer")
    before = metric("a", UNSEALED)
    answer = clear_frame_answer(*gossip["a"].rsplit(":", 1))
    if answer:
        fail(f"a answered a frame in clear: {answer[:40]!r}")
    until(lambda: metric("a", UNSEALED) > before, 10, "a did not count the frame in clear")
    for n in ("x", "y"):
        stop_gracefully(n)

    step("rotate the keys under steady task traffic")
    abc = ["a", "b", "c"]
    log_sizes = {n: os.path.getsize(os.path.join(work, f"{n}.log")) for n in abc}
    acked, refused, stop_traffic = [], [], threading.Event()

    def traffic():
        i = 0
        while not stop_traffic.is_set() and i < 2000:  # about 40/s, bounded
            i += 1
            try:
                s, t, _ = call(http_at[random.choice(abc)], "POST", "/v1/tasks",
                               {"key": f"r{i}", "type": "echo", "payload": i})
                (acked if s in (200, 201, 202) else refused).append(t["id"] if t else s)
            except OSError as e:
                refused.append(str(e))
            time.sleep(0.025)

    poster = threading.Thread(target=traffic)
    poster.start()
    new_key = keygen()

    def keys(via, *args):
        r = subprocess.run([CHORUS, "keys", "--http", http_at[via], "--json", *args],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            fail(f"chorus keys {' '.join(args)} through {via}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def more_acked(n):  # traffic flowing: n more tasks acknowledged than now
        target = len(acked) + n
        until(lambda: len(acked) >= target or not poster.is_alive(), 30,
              f"fewer than {n} tasks were acknowledged in 30 s")

    try:
        more_acked(20)
        early = subprocess.run([CHORUS, "keys", "--http", http_at["a"], "--use", new_key],
                               capture_output=True, text=True, timeout=30)
        if early.returncode == 0 or "not_everywhere" not in early.stderr + early.stdout \
                and "install it everywhere first" not in early.stderr:
            fail(f"--use of a key no member holds was not refused: {early.stderr.strip()}")
        keys("a", "--install", new_key)
        more_acked(10)
        keys("b", "--use", new_key)
        more_acked(10)
        keys("c", "--remove", key)
        more_acked(20)
    finally:
        stop_traffic.set()
        poster.join()
    listed = keys("a", "--list")
    if [(k["key"], k["members"], k["primary"]) for k in listed["keys"]] != [(new_key, 3, 3)] \
            or listed["errors"]:
        fail(f"after the rotation the keyring is not the new key alone everywhere: {listed}")
    if refused or len(acked) < 20:
        fail(f"{len(refused)} posts refused during the rotation ({refused[:3]}), "
             f"{len(acked)} acknowledged")

    def finished(task_id):
        s, t, _ = call(http_at[random.choice(abc)], "GET", f"/v1/tasks/{task_id}?wait=5s",
                       timeout=10)
        return s == 200 and t["state"] == "succeeded"

    lost = [t for t in acked if not finished(t)]
    if lost:
        fail(f"{len(lost)} of {len(acked)} acknowledged tasks did not succeed: {lost[:5]}")
    for n in abc:
        with open(os.path.join(work, f"{n}.log")) as f:
            f.seek(log_sizes[n])
            changes = [ln for ln in f if " member dead" in ln or " member suspect" in ln]
        if changes:
            fail(f"{n} saw members fail during the rotation: {changes[:3]}")
    step(f"rotated: {len(acked)} tasks acknowledged and finished, nobody suspected")

    stop_gracefully("b")
    start("b", ["--encrypt", key, "--seed", gossip["a"], "--data-dir", data["b"]])
    until(lambda: alive_everywhere(abc), 30, "b did not rejoin with the keyring it kept")
    listed = keys("c", "--list")
    if [(k["key"], k["members"]) for k in listed["keys"]] != [(new_key, 3)]:
        fail(f"b took the removed key back at its restart: {listed}")
    with open(os.path.join(data["b"], "keyring.json")) as f:
        if key in f.read():
            fail("b's kept keyring still holds the removed key")
    if os.stat(os.path.join(data["b"], "keyring.json")).st_mode & 0o077:
        fail("the kept keyring is readable by others than the agent's user")

    step("p, q, r move from clear to sealed, one agent and one step at a time")
    start("p", [])
    start("q", ["--seed", gossip["p"]])
    start("r", ["--seed", gossip["p"]])
    three = ["p", "q", "r"]
    until(lambda: alive_everywhere(three), 30, "p, q, r did not all see each other")
    steps = [
        ("a key, nothing verified", ["--encrypt-verify-incoming", "false",
                                     "--encrypt-verify-outgoing", "false"]),
        ("sealing what it sends", ["--encrypt-verify-incoming", "false"]),
        ("refusing what comes in clear", []),
    ]
    for what, flags in steps:
        for n in three:
            stop_gracefully(n)
            seed = gossip[next(o for o in three if o != n)]
            start(n, ["--encrypt", key, *flags, "--seed", seed])
            until(lambda: alive_everywhere(three), 30,
                  f"after {n} restarted ({what}), p, q, r were not all alive in every view")
        step(f"all three: {what}")
    refused = sum(metric(n, UNSEALED) for n in three)
    if refused:
        fail(f"{refused:.0f} messages were refused on the way to encryption")
    step("ok")
finally:
    stop(procs)
    if os.environ.get("KEEP") is None:  # KEEP=1 keeps the agents' logs and data dirs
        shutil.rmtree(work, ignore_errors=True)
