#!/usr/bin/env python3
"""DNS SRV seeds (--seed dnssrv+NAME), through the host's own resolver, against a real DNS
server.

In a network namespace of its own, whose /etc/resolv.conf (`ip netns exec` mounts
/etc/netns/NS/resolv.conf over it) names a dnsmasq on the namespace's loopback:

  - two agents, a and b, start with no seeds; a third, c, with only --seed
    dnssrv+_chorus._tcp.chorus.test, while the name has no records: c stays alone, and its
    /v1/self and /v1/health say why, naming the seed and the DNS answer (NXDOMAIN);
  - the records appear (dnsmasq restarted with SRV records for a's and b's gossip ports, and A
    records for their targets): c looks the name up again on its next attempt and joins; all
    three see each other alive.

Malformed SRV seeds are refused at start with a message naming the seed (no root needed for
that part).

    dns_seeds.py /path/to/chorus

Needs root, `ip` and dnsmasq for the namespace part; exits 77 (skipped) without them. Bounded:
every wait has a deadline; about 15 s. Only what it started is ended, by PID; the namespace and
its folder under /etc/netns are removed.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, launch, refused_at_start, rerun_in_netns, step, stop  # noqa: E402

CHORUS = os.path.abspath(sys.argv[1])
SERVICE = "_chorus._tcp.chorus.test"
INSIDE = len(sys.argv) > 2 and sys.argv[2] == "--inside"
work = sys.argv[3] if len(sys.argv) > 3 else tempfile.mkdtemp(prefix="chorus-dns-")
logs = Logs(work, ("a", "b", "c", "dnsmasq"))
fail, until = logs.fail, logs.until

if not INSIDE:
    step("malformed SRV seeds are refused at start, naming the seed")
    for seed, why in (("dnssrv+", "no name after dnssrv+"),
                      ("dnssrv+_chorus._tcp..example", "an empty label"),
                      ("dnssrv+_chorus._tcp.exa mple", "' ' cannot be in a DNS name"),
                      ("dnssrv+" + "a" * 64 + ".example", "a label longer than 63")):
        code, said = refused_at_start(CHORUS, os.path.join(work, "refused.log"), ["--seed", seed])
        if code == 0 or f"'{seed}' is not an SRV seed: {why}" not in said:
            fail(f"--seed {seed!r}: exit {code}, said: {said.strip()}")

    if shutil.which("dnsmasq") is None:
        print("SKIP: the DNS part needs dnsmasq")
        sys.exit(77)
    # This script again, in a namespace whose resolv.conf names the dnsmasq it starts.
    try:
        sys.exit(rerun_in_netns("chorus-dns", [sys.executable, os.path.abspath(__file__), CHORUS,
                                               "--inside", work],
                                "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n", 240))
    finally:
        shutil.rmtree(work, ignore_errors=True)

procs = {}


def launch_in_ns(name, args=()):
    """An agent on ports the kernel picks: its gossip and HTTP addresses."""
    proc, gossip, http_at = launch(CHORUS, name, os.path.join(work, f"{name}.log"),
                                   ["--data-dir", os.path.join(work, name), *args])
    procs[name] = proc
    if gossip is None:
        fail(f"{name} exited at start")
    return gossip, http_at


def dns(records=()):
    """(Re)starts dnsmasq on the namespace's loopback, answering for chorus.test only: with
    RECORDS, (target, port) pairs, SRV records for SERVICE and A records for the targets."""
    old = procs.pop("dnsmasq", None)
    if old is not None:
        old.kill()
        old.wait()
    argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--port=53",
            "--listen-address=127.0.0.1", "--bind-interfaces", "--local=/chorus.test/",
            "--log-queries", "--log-facility=-", f"--pid-file={work}/dnsmasq.pid",
            "--user=root"]
    for i, (target, port) in enumerate(records):
        argv += [f"--srv-host={SERVICE},{target},{port},0,{i}",
                 f"--host-record={target},127.0.0.1"]
    with open(os.path.join(work, "dnsmasq.log"), "a") as log:
        procs["dnsmasq"] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    # Listening once it answers; until then a lookup gets "connection refused".
    until(lambda: subprocess.run(["getent", "hosts", "probe.chorus.test"],
                                 capture_output=True, timeout=10).returncode == 2,
          10, "dnsmasq did not answer for chorus.test")


def alive_names(http_at):
    s, j, _ = call(http_at, "GET", "/v1/members")
    return sorted(m["name"] for m in (j or {}).get("members", []) if m["state"] == "alive") \
        if s == 200 else []


try:
    step("a name with no records: c stays alone and says why")
    dns()
    a_gossip, a_http = launch_in_ns("a")
    b_gossip, b_http = launch_in_ns("b", ["--seed", a_gossip])
    _, c_http = launch_in_ns("c", ["--seed", "dnssrv+" + SERVICE, "--retry-join", "0"])
    want = f"dnssrv+{SERVICE}: cannot look up its SRV records (no such name (NXDOMAIN))"

    def says_why():
        _, j, _ = call(c_http, "GET", "/v1/self")
        return want in (j or {}).get("join", {}).get("trouble", "")

    until(says_why, 30, f"c's /v1/self never said: {want}")
    status, health, _ = call(c_http, "GET", "/v1/health")
    if status != 503 or want not in health["error"]["message"]:
        fail(f"c's health: {status} {health}")
    if alive_names(c_http) != ["c"]:
        fail(f"c sees members with no seed answering: {alive_names(c_http)}")

    step("the records appear: c looks the name up again and joins through them")
    dns([(f"a.chorus.test", a_gossip.rsplit(":", 1)[1]),
         (f"b.chorus.test", b_gossip.rsplit(":", 1)[1])])
    until(lambda: all(alive_names(h) == ["a", "b", "c"] for h in (a_http, b_http, c_http)), 60,
          "c did not join through the SRV records, or a view lacks a member")
    with open(os.path.join(work, "dnsmasq.log")) as f:
        if f"query[SRV] {SERVICE}" not in f.read():
            fail("dnsmasq logged no SRV query for the seed")
    status, _, _ = call(c_http, "GET", "/v1/health")
    if status != 200:
        fail(f"c joined, yet its health answers {status}")
    print("PASS")
finally:
    stop(procs)
