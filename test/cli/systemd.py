#!/usr/bin/env python3
"""The systemd kit (examples/systemd) and the agent's side of Type=notify:
  - `systemd-analyze verify` finds nothing wrong with the unit (its ExecStart pointed at this
    build), and the unit's command line and config are ones the agent takes;
  - with $NOTIFY_SOCKET set, an agent with no seeds says READY=1 once it listens; one with a
    seed says it only once joined (its /v1/health answers 200 by then), not while its seed is
    down; SIGTERM brings STOPPING=1 before it exits.

  systemd.py /path/to/chorus /path/to/examples
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
from agents import Logs, call, step, stop  # noqa: E402

chorus = os.path.abspath(sys.argv[1])
kit = os.path.join(os.path.abspath(sys.argv[2]), "systemd")
work = tempfile.mkdtemp(prefix="chorus-systemd-")
logs = Logs(work, ["first", "second", "third"])
procs = {}


def agent_with_socket(name, args):
    """Starts an agent with its own $NOTIFY_SOCKET (an abstract one, as systemd may give):
    (process, the socket it notifies)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(f"\0chorus-test-{os.getpid()}-{name}")
    env = dict(os.environ, NOTIFY_SOCKET=f"@chorus-test-{os.getpid()}-{name}")
    with open(os.path.join(work, f"{name}.log"), "w") as log:
        proc = subprocess.Popen([chorus, "agent", "--name", name, *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    return proc, sock


def next_message(sock, seconds):
    sock.settimeout(seconds)
    try:
        return sock.recv(4096).decode()
    except socket.timeout:
        return None


def http_of(name):
    """The API address NAME's agent logged at start."""
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(os.path.join(work, f"{name}.log")) as f:
            for line in f:
                if " agent started " in line:
                    return line.split(" http=", 1)[1].split()[0]
        time.sleep(0.05)
    logs.fail(f"{name} did not start")


try:
    if shutil.which("systemd-analyze"):
        step("systemd-analyze verify examples/systemd/chorus.service")
        with open(os.path.join(kit, "chorus.service")) as f:
            unit = f.read()
        exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
        argv = exec_start.split("=", 1)[1].split()
        if argv[:3] != ["/usr/bin/chorus", "agent", "--config"] or \
                argv[3] != "/etc/chorus/chorus.json":
            logs.fail(f"the unit's ExecStart is not what the package installs: {exec_start}")
        os.makedirs(os.path.join(work, "unit"))
        path = os.path.join(work, "unit", "chorus.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/bin/chorus", chorus))
        r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
            logs.fail(f"systemd-analyze verify: {r.returncode}\n{r.stdout}{r.stderr}")
        step("  clean")
        # The config the package installs, with this test's addresses and data dir.
        with open(os.path.join(kit, "chorus.json")) as f:
            cfg = json.load(f)
        cfg["data_dir"] = os.path.join(work, "data")
        config = os.path.join(work, "chorus.json")
        with open(config, "w") as f:
            json.dump(cfg, f)
    else:
        print("systemd-analyze is not installed: the unit is not verified")
        config = None

    step("no seeds: READY=1 once it listens")
    args = ["--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    procs["first"], first_sock = agent_with_socket(
        "first", args + (["--config", config] if config else []))
    msg = next_message(first_sock, 30)
    if msg is None or "READY=1" not in msg.split("\n"):
        logs.fail(f"an agent with no seeds did not say READY=1: {msg!r}")
    first_http = http_of("first")
    status, me, _ = call(first_http, "GET", "/v1/self")
    first_gossip = me["addr"]

    step("a seed that is down: no READY=1 until it has joined")
    with socket.socket() as s:  # a port nobody listens on, for now
        s.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{s.getsockname()[1]}"
    procs["second"], second_sock = agent_with_socket(
        "second", args + ["--seed", down, "--seed", first_gossip, "--profile", "local"])
    msg = next_message(second_sock, 30)
    if msg is None or "READY=1" not in msg.split("\n"):
        logs.fail(f"an agent that joined did not say READY=1: {msg!r}")
    status, _, _ = call(http_of("second"), "GET", "/v1/health")
    if status != 200:
        logs.fail(f"READY=1 came before /v1/health said so ({status})")

    step("the seed alone, never up: no READY=1")
    procs["third"], third_sock = agent_with_socket("third", args + ["--seed", down])
    third_http = http_of("third")

    def attempts():
        status, me, _ = call(third_http, "GET", "/v1/self")
        return me["join"]["attempts"] if status == 200 else 0
    logs.until(lambda: attempts() >= 2, 30, "the third agent made no second join attempt")
    third_sock.setblocking(False)
    try:
        logs.fail(f"an agent that never joined said {third_sock.recv(4096)!r}")
    except BlockingIOError:
        pass

    step("SIGTERM: STOPPING=1, then it leaves and exits 0")
    procs["second"].terminate()
    msg = next_message(second_sock, 30)
    if msg is None or "STOPPING=1" not in msg.split("\n"):
        logs.fail(f"SIGTERM did not bring STOPPING=1: {msg!r}")
    if procs["second"].wait(timeout=60) != 0:
        logs.fail("the agent did not exit 0 after its leave")
    print("PASS")
finally:
    stop(procs)
    shutil.rmtree(work, ignore_errors=True)
