"""Chorus agents for the benchmarks in scripts/: start N of them, ask their API, kill one, end
them all. Used by bench_balance.py and bench_modes.py.

An agent runs on a host: the loopback (every agent on 127.0.0.1, each with its own ports), or a
network namespace of its own (bench_modes.py's Netns: the agent's own address, the same
ports). Agent i gossips on port base+i and serves its API on base+100+i, seeds itself from
agents 0 and 1, and writes its log to WORKDIR/nI.log. Every agent started is ended, by PID.
"""
import http.client
import json
import os
import subprocess
import sys
import time

# call(API, method, path, body): one HTTP exchange, as the process tests make them.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../test/cli"))
from agents import call  # noqa: E402,F401


class Loopback:
    """Every agent on 127.0.0.1 of the namespace the caller runs in."""

    def addr(self, i):
        return "127.0.0.1"

    def prefix(self, i):
        return []  # what runs a command on host i: nothing, it is this one


def metrics(api):
    """API's /metrics as {sample name with labels: value}."""
    host, port = api.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class Processes:
    """Servers started by a bench, by member number: `procs` holds each one's Popen."""

    def __init__(self):
        self.procs = {}

    def kill(self, i):
        """kill -9 member i and reap it."""
        p = self.procs.pop(i)
        p.kill()
        p.wait()

    def stop(self):
        """Ends every member still running: SIGTERM, then -9 after 10 s."""
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = {}


class Agents(Processes):
    """N agents named n0..n(N-1), all with CONFIG (a dict, written as their --config file) and
    ARGS(i) more flags each; `data` gives each a --data-dir under WORKDIR."""

    def __init__(self, chorus, workdir, n, base, config, hosts=None, args=lambda i: [], data=False,
                 tag="a"):
        super().__init__()
        self.chorus, self.workdir, self.n, self.base = chorus, workdir, n, base
        self.hosts = hosts or Loopback()
        self.args, self.data, self.tag = args, data, tag
        self.config = os.path.join(workdir, f"{tag}.json")
        with open(self.config, "w") as f:
            json.dump(config, f)

    def name(self, i):
        return f"n{i}"

    def api(self, i):
        return f"{self.hosts.addr(i)}:{self.base + 100 + i}"

    def gossip(self, i):
        return f"{self.hosts.addr(i)}:{self.base + i}"

    def start(self, i):
        """Starts agent i (again, after a kill: same name, ports and data dir)."""
        cmd = [*self.hosts.prefix(i), self.chorus, "agent", "--name", self.name(i),
               "--bind", self.gossip(i), "--http", self.api(i),
               "--seed", self.gossip(0), "--seed", self.gossip(1),
               "--log-level", "warn", "--config", self.config, *self.args(i)]
        if self.data:
            cmd += ["--data-dir", os.path.join(self.workdir, f"{self.tag}-data{i}")]
        log = open(os.path.join(self.workdir, f"{self.tag}-{self.name(i)}.log"), "a")
        # `ip netns exec` (the prefix in a namespace) execs the agent: the PID is the agent's.
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_all(self, seconds=30):
        for i in range(self.n):
            self.start(i)
        if not self.wait_alive(range(self.n), seconds):
            raise SystemExit(f"the {self.n} agents did not converge in {seconds} s;"
                             f" logs: {self.workdir}/{self.tag}-n*.log")

    def view(self, i, timeout=2):
        """{member name: state} as agent i sees it, or None if it does not answer."""
        try:
            status, body, _ = call(self.api(i), "GET", "/v1/members", timeout=timeout)
        except (OSError, http.client.HTTPException):
            return None
        if status != 200 or body is None:
            return None
        return {m["name"]: m["state"] for m in body["members"]}

    def wait_alive(self, among, seconds):
        """Whether every agent in AMONG sees exactly those alive, within SECONDS."""
        names = {self.name(i) for i in among}
        deadline = time.time() + seconds
        while time.time() < deadline:
            views = [self.view(i) for i in among]
            if all(v is not None and {m for m, s in v.items() if s == "alive"} == names
                   for v in views):
                return True
            time.sleep(0.1)
        return False
