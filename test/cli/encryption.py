"""Sealed gossip on real agents: only members with the key join, and a cluster in clear moves
to encryption without downtime.

  1. a, b, c share a key (from `chorus keygen`) and form a cluster; a task runs through it.
  2. x, with another key, and y, with none, try to join through a, again and again: neither
     joins, neither is seen by any member, and a counts what it could not open
     (chorus_packets_rejected_total{reason="unsealed"}).
  3. A frame in clear sent straight to a's gossip port is not answered: a closes it.
  4. p, q, r start in clear and move to encryption one agent at a time, in the three steps of
     net/seal.hpp (a key with nothing verified, then sealing what they send, then refusing
     what comes in clear), each agent restarted with its new settings. After every restart all
     three are alive in every view, and nothing was refused on the way.

    python3 encryption.py /path/to/chorus

Bounded: each wait has a deadline; the run takes about a minute. Only the processes it
started are ended, by PID, however the test ends.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, launch, step, stop  # noqa: E402  (the folder's shared helpers)

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
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
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
    start("a", ["--encrypt", key])
    start("b", ["--encrypt", key, "--seed", gossip["a"]])
    start("c", ["--encrypt", key, "--seed", gossip["a"]])
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
    host, port = gossip["a"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        body = b"\x00" * 64
        raw.sendall(len(body).to_bytes(4, "big") + body)
        raw.settimeout(5)
        try:
            answer = raw.recv(4096)
        except (ConnectionResetError, socket.timeout):
            answer = b""
        if answer:
            fail(f"a answered a frame in clear: {answer[:40]!r}")
    for n in ("x", "y"):
        stop_gracefully(n)

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
