"""The measuring half of scripts/bench-modes (read its header first): Chorus leaderless and
with coordinator placement, and etcd, in one run. Runs inside the network namespace the script
made, when it could make one (NETNS=1): there it builds a namespace per agent for the failover
rows, with a bridge in its own.
"""
import base64
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import bench_balance
from bench_cluster import Agents, Processes, call, metrics

CHORUS = os.environ["CHORUS_BIN"]
COMMON_SH = os.environ["COMMON_SH"]
LUA = os.environ["TASKS_LUA"]
QUICK = os.environ.get("QUICK") == "1"
DURATION = float(os.environ.get("DURATION", "3" if QUICK else "10"))  # one wrk run, s
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
BALANCE_S = float(os.environ.get("BALANCE_S", "5" if QUICK else "15"))
REPEAT = int(os.environ.get("REPEAT", "1" if QUICK else "5"))
ETCD_SIZES = [int(n) for n in os.environ.get("ETCD_SIZES", "3 5").split()]
# The placements compared: "leaderless" is Chorus's default; "coordinator" sends every task
# with "placement": "coordinator" in its body. A build without coordinator placement refuses
# that field, and its rows are then reported as not available.
PLACEMENTS = os.environ.get("PLACEMENTS", "leaderless coordinator").split()
# What a client waits for one answer before it gives up and retries: etcd's clientv3 reference
# (etcdctl's --command-timeout, and the 5 s most clients put on a request's context).
REQUEST_TIMEOUT = float(os.environ.get("REQUEST_TIMEOUT", "5"))
NETNS = os.environ.get("NETNS") == "1"
NS_PREFIX = os.environ.get("NS_PREFIX", f"chm{os.getpid()}")
NODES = 5
ENTRY = 0  # the agent every chorus client posts to; never a victim
SETTLE_S = 1.0  # a failover trial ends this long after the client's last gap over GAP_QUIET_S
GAP_QUIET_S = 0.2
AFTER_MAX_S = 20.0  # and at the latest this long after the fault
RETRY_PAUSE_S = 0.01  # a failure that came back sooner is retried after this much


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def step(what):
    print(f"== {what}  [{time.strftime('%H:%M:%S')}]", flush=True)


# ---- network namespaces: one per agent, veth pairs to a bridge in this (the bench's) namespace

def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Netns:
    """A namespace per agent on NET.0/24 (agent i at NET.(i+1)), each with a veth pair to a
    bridge in the namespace this runs in (NET.254), so the bench reaches every agent and nothing
    reaches the host's network. `silence` drops every packet to and from one namespace: a host
    that lost power, which answers nothing, not even a RST."""

    def __init__(self, prefix, n):
        self.prefix_, self.n, self.made = prefix, n, []
        self.net = f"10.{100 + os.getpid() % 100}.{random.randrange(250)}"
        self.bridge = f"{prefix}br"
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            self.made.append(self.bridge)
            sh("ip", "addr", "add", f"{self.net}.254/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for i in range(n):
                ns, veth = self.ns(i), f"{prefix}v{i}"
                sh("ip", "netns", "add", ns)
                self.made.append(ns)
                sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                sh("ip", "link", "set", veth, "master", self.bridge, "up")
                sh(*self.prefix(i), "ip", "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
                sh(*self.prefix(i), "ip", "link", "set", "eth0", "up")
                sh(*self.prefix(i), "ip", "link", "set", "lo", "up")
                sh(*self.prefix(i), "iptables", "-L", "INPUT", "-n")
        except subprocess.CalledProcessError as e:
            self.remove()
            raise OSError(f"{' '.join(e.cmd)}: {e.stderr.decode().strip()}") from None

    def ns(self, i):
        return f"{self.prefix_}a{i}"

    def addr(self, i):
        return f"{self.net}.{i + 1}"

    def prefix(self, i):
        return ["ip", "netns", "exec", self.ns(i)]

    def silence(self, i):
        sh(*self.prefix(i), "iptables", "-A", "INPUT", "-j", "DROP")
        sh(*self.prefix(i), "iptables", "-A", "OUTPUT", "-j", "DROP")

    def heal(self, i):
        sh(*self.prefix(i), "iptables", "-F")

    def remove(self):
        for name in reversed(self.made):
            if name == self.bridge:
                subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL)
            else:
                subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
        self.made = []


# ---- the steady client: one request in flight, back to back

class SteadyClient(threading.Thread):
    """Posts REQUEST() (path, body) to TARGETS (host:port), one request in flight, each sent
    as soon as the previous one was answered, over a kept-alive connection. A 2xx is an
    acknowledgement, and its time is kept. Any failure (no connection, no answer within
    REQUEST_TIMEOUT, a non-2xx) is retried at once with the next request, Retry-After ignored:
    the gap then measures the system, not the client's politeness. A failure that came back in
    under RETRY_PAUSE_S waits out the rest of it first (etcd's clientv3 waits 25 ms between
    retries), so a refusing server is not spun on. A failure to connect or to get an answer
    moves to the next target (clientv3's balancer does likewise); an error answer retries the
    same one."""

    def __init__(self, targets, request):
        super().__init__(daemon=True)
        self.targets, self.request = targets, request
        self.acks, self.failures, self.statuses = [], 0, {}
        self.last = None  # the last acknowledgement's JSON
        self.owners = {}  # acknowledgements by the "owner" they name (chorus's answers)
        self.halt = threading.Event()

    def run(self):
        at, conn = 0, None
        while not self.halt.is_set():
            began = time.monotonic()
            ok = False
            try:
                if conn is None:
                    host, port = self.targets[at].rsplit(":", 1)
                    conn = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT)
                path, body = self.request()
                conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                r = conn.getresponse()
                text = r.read()
                if 200 <= r.status < 300:
                    self.acks.append(time.monotonic())
                    self.last = json.loads(text) if text else None
                    owner = self.last.get("owner") if isinstance(self.last, dict) else None
                    if owner:
                        self.owners[owner] = self.owners.get(owner, 0) + 1
                    ok = True
                else:
                    self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            except (OSError, http.client.HTTPException, ValueError):
                if conn is not None:
                    conn.close()
                conn, at = None, (at + 1) % len(self.targets)
                self.statuses["no answer"] = self.statuses.get("no answer", 0) + 1
            if not ok:
                self.failures += 1
                pause = RETRY_PAUSE_S - (time.monotonic() - began)
                if pause > 0:
                    self.halt.wait(pause)
        if conn is not None:
            conn.close()

    def steady_since(self):
        """When the client's current run of acknowledgements, none further apart than
        GAP_QUIET_S, began (None before any)."""
        acks = self.acks[-int(SETTLE_S * 2000):]  # enough for SETTLE_S at any rate here
        if not acks or time.monotonic() - acks[-1] > GAP_QUIET_S:
            return None
        start = acks[-1]
        for earlier in reversed(acks[:-1]):
            if start - earlier > GAP_QUIET_S:
                break
            start = earlier
        return start

    def finish(self):
        self.halt.set()
        self.join(REQUEST_TIMEOUT + 5)

    def stalls(self, fault_at, over=0.5):
        """How many intervals between acknowledgements after the fault exceed OVER seconds."""
        acks = [t for t in self.acks if t >= fault_at - 1.0]
        return sum(b - a > over for a, b in zip(acks, acks[1:]))

    def gap(self, fault_at):
        """The longest interval between successive acknowledgements from 1 s before the fault
        on; if none came after the fault, the time since the last one (a lower bound)."""
        acks = [t for t in self.acks if t >= fault_at - 1.0]
        if not acks or acks[-1] < fault_at:
            return time.monotonic() - (acks[-1] if acks else fault_at), True
        return max(b - a for a, b in zip(acks, acks[1:])), False


def until(cond, seconds, pause=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(pause)
    return False


def failover(client, what, arm):
    """Runs CLIENT until it has 20 acknowledgements; then ARM() gives (watch, fault): FAULT()
    strikes, WATCH begins, and the client goes on until it has settled. Returns (gap, whether
    the gap is a lower bound, intervals over 0.5 s after the fault, watch)."""
    client.start()
    try:
        if not until(lambda: len(client.acks) >= 20, 10):
            raise SystemExit(f"{what}: the steady client got {len(client.acks)} acks in 10 s;"
                             f" answers: {client.statuses}")
        watch, fault = arm()
        fault_at = time.monotonic()
        fault()
        watch.begin(fault_at)
        settle(client, fault_at, lambda: not watch.is_alive())
    finally:
        client.finish()
    watch.join()
    return (*client.gap(fault_at), client.stalls(fault_at), watch)


def settle(client, fault_at, observed):
    """Waits until OBSERVED() is true and the client has been steady for SETTLE_S, or
    AFTER_MAX_S after the fault."""
    def done():
        since = client.steady_since()
        return (observed() and since is not None
                and time.monotonic() - max(since, fault_at) >= SETTLE_S)
    until(done, AFTER_MAX_S - (time.monotonic() - fault_at), 0.02)


class Watch(threading.Thread):
    """Polls ASK(i) for each of MEMBERS, from `begin(t)` on, until it returns something ACCEPT
    takes: when each first did, since t (monotonic), for at most AFTER_MAX_S."""

    def __init__(self, members, ask, accept):
        super().__init__(daemon=True)
        self.members, self.ask, self.accept = members, ask, accept
        self.start_at, self.deadline, self.seen, self.values = 0.0, 0.0, {}, {}

    def begin(self, t):
        self.start_at, self.deadline = t, t + AFTER_MAX_S
        self.start()

    def run(self):
        while time.monotonic() < self.deadline and len(self.seen) < len(self.members):
            for i in self.members:
                if i in self.seen:
                    continue
                v = self.ask(i)
                if v is not None and self.accept(v):
                    self.seen[i], self.values[i] = time.monotonic() - self.start_at, v
            time.sleep(0.01)

    def first(self):
        return min(self.seen.values()) if self.seen else None

    def all(self):
        return max(self.seen.values()) if len(self.seen) == len(self.members) else None


# ---- chorus

def coordinator_of(agents, i):
    try:
        s, body, _ = call(agents.api(i), "GET", "/v1/coordinator", timeout=1)
        return body["coordinator"] if s == 200 else None
    except (OSError, http.client.HTTPException, KeyError, TypeError):
        return None


def placement_available(agents):
    """Whether this build takes "placement": "coordinator" in a task's body."""
    s, body, _ = call(agents.api(ENTRY), "POST", "/v1/tasks",
                      {"key": "probe", "type": "echo", "payload": {}, "placement": "coordinator"})
    if s == 400 and "placement" in json.dumps(body):
        return False
    return True


def steady_key(agents):
    """A key none of whose candidates is the entry agent: its tasks always go to another agent
    (the least loaded of its candidates), which a trial kills."""
    for k in range(200):
        s, body, _ = call(agents.api(ENTRY), "GET", f"/v1/ring/lookup?key=steady-{k}")
        if s == 200 and agents.name(ENTRY) not in [c["name"] for c in body["candidates"]]:
            return f"steady-{k}"
    raise SystemExit("each of 200 keys has the entry agent among its candidates")


def chorus_trial(agents, hosts, placement, fault, key):
    """One failover: the steady client posts echo tasks for KEY to the entry agent; then the
    victim (leaderless: the owner of the last acknowledged task; coordinator: the coordinator)
    is killed -9 or silenced. Returns {gap, bound, agree, failures, victim}: agree is when every
    survivor saw the victim dead (leaderless) or named one new coordinator."""
    seq = [0]

    def request():
        seq[0] += 1
        task = {"key": key, "type": "echo", "payload": {"n": seq[0]}}
        if placement != "leaderless":
            task["placement"] = placement
        return "/v1/tasks", task

    client = SteadyClient([agents.api(ENTRY)], request)
    struck = {}

    def arm():
        struck["owners"] = dict(client.owners)
        if placement == "leaderless":
            name = client.last["owner"]
        else:
            name = coordinator_of(agents, ENTRY)
        victim = next(i for i in range(agents.n) if agents.name(i) == name)
        if victim == ENTRY:
            raise SystemExit(f"{placement}: the victim would be the entry agent {name}")
        struck.update(name=name, victim=victim)
        survivors = [i for i in range(agents.n) if i != victim]
        if placement == "leaderless":
            watch = Watch(survivors, lambda i: (agents.view(i, timeout=1) or {}).get(name),
                          lambda state: state == "dead")
        else:
            watch = Watch(survivors, lambda i: coordinator_of(agents, i), lambda n: n != name)
        if fault == "kill":
            return watch, lambda: agents.kill(victim)
        return watch, lambda: hosts.silence(victim)

    gap, bound, stalls, watch = failover(client, f"chorus {placement}", arm)
    victim, victim_name = struck["victim"], struck["name"]
    agree = watch.all()
    if placement != "leaderless" and agree is not None and len(set(watch.values.values())) != 1:
        agree = None  # they named different coordinators
    # Back to five: a silenced victim is killed, its namespace opened, and it starts again.
    if fault == "silent":
        agents.kill(victim)
        hosts.heal(victim)
    agents.start(victim)
    if not agents.wait_alive(range(agents.n), 60):
        raise SystemExit(f"{victim_name} did not rejoin after the trial; logs in {agents.workdir}")
    if placement != "leaderless" and not until(
            lambda: all(coordinator_of(agents, i) == victim_name for i in range(agents.n)), 30):
        raise SystemExit(f"the agents do not agree on {victim_name} as coordinator again")
    return {"gap": gap, "bound": bound, "agree": agree, "failures": client.failures,
            "statuses": client.statuses, "victim": victim_name, "owners": struck["owners"],
            "stalls": stalls}


def chorus_failover(workdir, base, placements):
    """Every failover row: {(placement, fault): [trial, ...]}."""
    hosts, faults = None, ["kill"]
    if NETNS:
        try:
            hosts = Netns(NS_PREFIX, NODES)
            faults.append("silent")
        except OSError as e:
            print(f"note: no namespace per agent ({e}); the silent rows are skipped")
    else:
        print("note: not root or no network namespaces: the silent rows are skipped")
    # The durable defaults (a journal and two copies) with the default LAN profile, as a
    # production cluster runs; priority tags make n4 the coordinator, then n3.
    agents = Agents(CHORUS, workdir, NODES, base, {}, hosts=hosts, data=True,
                    args=lambda i: ["--tag", f"priority={i}"], tag="failover")
    out = {}
    try:
        agents.start_all()
        key = steady_key(agents)
        for placement in placements:
            for fault in faults:
                step(f"chorus {placement}, {'kill -9' if fault == 'kill' else 'silent'}"
                     f" {'owner' if placement == 'leaderless' else 'coordinator'}, {REPEAT}x")
                out[(placement, fault)] = []
                for _ in range(REPEAT):
                    t = chorus_trial(agents, hosts, placement, fault, key)
                    out[(placement, fault)].append(t)
                    agree = "-" if t["agree"] is None else f"{t['agree']:.2f} s"
                    owners = ", ".join(f"{n} {c}" for n, c in sorted(t["owners"].items()))
                    least = " (at least)" if t["bound"] else ""
                    print(f"   {t['victim']} (tasks ran on {owners}): gap {t['gap']:.3f} s{least}"
                          f" ({t['stalls']} over 0.5 s),"
                          f" all survivors agreed {agree},"
                          f" {t['failures']} failed requests {t['statuses']}")
    finally:
        agents.stop()
        if hosts:
            hosts.remove()
    return out


def overloaded(agents):
    """503 overloaded answers the agents have given (coordinator placement), all together."""
    return sum(metrics(agents.api(i)).get("chorus_task_overloaded_total", 0)
               for i in range(agents.n))


def throughput(workdir, base, placements):
    """wrk through agent n0 of 5 on loopback, one copy in memory (bench-tasks' first row):
    {placement: (accepted tasks/s, p50 ms, p99 ms, non-2xx, of those 503 overloaded)}."""
    agents = Agents(CHORUS, workdir, NODES, base, {"tasks": {"replicas": 1}},
                    args=lambda i: ["--tag", f"priority={i}"], tag="throughput")
    out = {}
    try:
        agents.start_all()
        for placement in placements:
            if placement != "leaderless" and not placement_available(agents):
                print(f"note: this build refuses \"placement\": \"{placement}\";"
                      f" its rows are not measured")
                continue
            step(f"chorus {placement}: wrk -t2 -c{CONNECTIONS} -d{DURATION:.0f}s to n0")
            env = dict(os.environ, BENCH_PLACEMENT="" if placement == "leaderless" else placement)
            before = overloaded(agents)
            line = subprocess.run(
                ["bash", "-c", 'source "$1"; shift; wrk_row "$@"', "-", COMMON_SH, workdir,
                 str(int(DURATION)), str(CONNECTIONS), f"http://{agents.api(ENTRY)}", LUA],
                env=env, capture_output=True, text=True, check=True).stdout.split()
            rps, p50, p99, bad, n = map(float, line[:5])
            # Only 2xx count: a refusal is cheap, and wrk's rate counts it as a request.
            accepted = rps * (n - bad) / max(n, 1)
            over = int(overloaded(agents) - before)
            out[placement] = (accepted, p50, p99, int(bad), over)
            print(f"   {rps:.0f} req/s, {accepted:.0f} accepted/s; p50 {p50:.2f} ms,"
                  f" p99 {p99:.2f} ms; {bad:.0f} non-2xx, {over} of them 503 overloaded")
    finally:
        agents.stop()
    return out


def balance(workdir, base, placements):
    """bench_balance's run at R = 3, with each placement: {placement: (tasks-run max/mean,
    load max/mean, refused, errors)}."""
    bench_balance.DURATION = BALANCE_S
    out = {}
    for n, placement in enumerate(placements):
        step(f"chorus {placement}: Zipf sleep tasks,"
             f" {bench_balance.RATE:.0f}/s for {BALANCE_S:.0f} s")
        ran, load, sent, refused, errors = bench_balance.run(
            3, base + 200 * n, workdir, None if placement == "leaderless" else placement)
        out[placement] = (bench_balance.ratio(ran), bench_balance.ratio(load), refused, errors)
        print("   tasks run per agent " + " ".join(f"{x:.0f}" for x in ran)
              + f": max/mean {out[placement][0]:.2f}; load max/mean {out[placement][1]:.2f};"
              f" {sent} posted, {refused} refused, {errors} errors")
    return out


# ---- etcd

def b64(s):
    return base64.b64encode(s.encode()).decode()


class Etcd(Processes):
    """N etcd members on loopback, default settings but names and ports (client base+i, peer
    base+50+i), data under WORKDIR."""

    def __init__(self, workdir, n, base):
        super().__init__()
        self.workdir, self.n, self.base = workdir, n, base
        self.peers = ",".join(f"e{i}=http://127.0.0.1:{base + 50 + i}" for i in range(n))

    def api(self, i):
        return f"127.0.0.1:{self.base + i}"

    def start(self, i):
        url, peer = f"http://{self.api(i)}", f"http://127.0.0.1:{self.base + 50 + i}"
        log = open(os.path.join(self.workdir, f"etcd{self.n}-e{i}.log"), "a")
        self.procs[i] = subprocess.Popen(
            ["etcd", "--name", f"e{i}",
             "--data-dir", os.path.join(self.workdir, f"etcd{self.n}-e{i}"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", self.peers, "--initial-cluster-state", "new",
             "--initial-cluster-token", f"bench-modes-{self.base}"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def status(self, i):
        """(leader id, raft term) as member i reports them, or None."""
        try:
            s, body, _ = call(self.api(i), "POST", "/v3/maintenance/status", {}, timeout=1)
            if s != 200:
                return None
            return int(body.get("leader", 0)), int(body["header"].get("raft_term", 0))
        except (OSError, http.client.HTTPException, KeyError, TypeError, ValueError):
            return None

    def member_id(self, i):
        s, body, _ = call(self.api(i), "POST", "/v3/maintenance/status", {}, timeout=2)
        return int(body["header"]["member_id"])

    def agreed_leader(self):
        """The leader every member names, once they all name the same one, or None."""
        leaders = {(self.status(i) or (0, 0))[0] for i in range(self.n)}
        return leaders.pop() if len(leaders) == 1 and 0 not in leaders else None

    def wait_ready(self, seconds=60):
        """Waits until every member names the same leader, and returns its id."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            leader = self.agreed_leader()
            if leader is not None:
                return leader
            time.sleep(0.1)
        raise SystemExit(f"etcd, {self.n} members: no agreed leader in {seconds} s;"
                         f" logs in {self.workdir}/etcd{self.n}-e*.log")

def etcd_trial(etcd, ids):
    """One leader kill -9 under a steady writer that starts on a follower: {first, all, gap,
    bound, failures}; first and all are when the first and the last survivor named a new
    leader (they must agree)."""
    leader_id = etcd.wait_ready()
    leader = ids.index(leader_id)
    follower = next(i for i in range(etcd.n) if i != leader)
    order = [(follower + k) % etcd.n for k in range(etcd.n)]
    seq = [0]

    def request():
        seq[0] += 1
        return "/v3/kv/put", {"key": b64("bench-modes"), "value": b64(str(seq[0]))}

    client = SteadyClient([etcd.api(i) for i in order], request)
    survivors = [i for i in range(etcd.n) if i != leader]

    def arm():
        watch = Watch(survivors, etcd.status, lambda st: st[0] not in (0, leader_id))
        return watch, lambda: etcd.kill(leader)

    gap, bound, stalls, watch = failover(client, f"etcd {etcd.n}", arm)
    agreed = watch.all() if len({v[0] for v in watch.values.values()}) == 1 else None
    etcd.start(leader)
    etcd.wait_ready()
    return {"first": watch.first(), "all": agreed, "gap": gap, "bound": bound,
            "failures": client.failures, "statuses": client.statuses, "stalls": stalls}


def etcd_failover(workdir, base):
    """{members: [trial, ...]} for each cluster size."""
    out = {}
    for k, n in enumerate(ETCD_SIZES):
        step(f"etcd, {n} members: kill -9 the leader under a steady writer, {REPEAT}x")
        etcd = Etcd(workdir, n, base + 100 * k)
        out[n] = []
        try:
            for i in range(n):
                etcd.start(i)
            etcd.wait_ready()
            ids = [etcd.member_id(i) for i in range(n)]
            for _ in range(REPEAT):
                t = etcd_trial(etcd, ids)
                out[n].append(t)
                first = "-" if t["first"] is None else f"{t['first']:.2f}"
                agreed = "-" if t["all"] is None else f"{t['all']:.2f}"
                print(f"   new leader at the first survivor {first} s, at all {agreed} s;"
                      f" writer's gap {t['gap']:.3f} s{' (at least)' if t['bound'] else ''}"
                      f" ({t['stalls']} over 0.5 s),"
                      f" {t['failures']} failed requests {t['statuses']}")
        finally:
            etcd.stop()
    return out


# ---- the table

def fmt_s(x, bound=False):
    if x is None or x != x:
        return "-"
    return f"{'>=' if bound else ''}{x:.3f} s" if x < 1 else f"{'>=' if bound else ''}{x:.2f} s"


def report(tput, bal, chorus, etcd, placements, missing):
    rows = []

    def gaps(trials):
        return median([t["gap"] for t in trials]), any(t["bound"] for t in trials)

    def agrees(trials, key="agree"):
        xs = [t[key] for t in trials]
        return None if any(x is None for x in xs) else median(xs)

    def spread(xs, bound=False):  # "median (min-max)" of a row's trials
        if any(x is None for x in xs):
            return "-"
        if len(xs) == 1:
            return fmt_s(xs[0], bound)
        return f"{fmt_s(median(xs), bound)} ({min(xs):.2f}-{max(xs):.2f})"

    for p in ("leaderless", "coordinator"):
        if p not in placements and p not in missing:
            continue
        victim = "owner" if p == "leaderless" else "coordinator"
        agreed = "survivors see it dead" if p == "leaderless" else "all agree on a new coordinator"
        labels = ["tasks accepted through n0 /s (p99)", "Zipf max/mean tasks run (load)"]
        for label in ("kill -9", "silent"):
            labels += [f"client gap, {victim} {label}", f"{agreed}, {victim} {label}"]
        if p in missing:
            rows += [(f"chorus {p}: {label}", "TBD (not in this build)") for label in labels]
            continue
        rps, _, p99, bad, over = tput[p]
        ran, load, refused, _ = bal[p]
        refusals = f", {bad} non-2xx ({over} overloaded)" if bad else ""
        figures = [f"{rps:,.0f} ({p99:.2f} ms){refusals}",
                   f"{ran:.2f} ({load:.2f}){f', {refused} refused' if refused else ''}"]
        for fault in ("kill", "silent"):
            trials = chorus.get((p, fault))
            if trials is None:
                figures += ["skipped (no namespaces)"] * 2
                continue
            figures += [spread([t["gap"] for t in trials], gaps(trials)[1]),
                        spread([t["agree"] for t in trials])]
        rows += [(f"chorus {p}: {label}", fig) for label, fig in zip(labels, figures)]
    for n, trials in etcd.items():
        rows.append((f"etcd {n}: new leader at first survivor",
                     spread([t["first"] for t in trials])))
        rows.append((f"etcd {n}: new leader at all survivors", spread([t["all"] for t in trials])))
        waited = sum(t["gap"] >= REQUEST_TIMEOUT for t in trials)
        rows.append((f"etcd {n}: client gap, leader kill -9",
                     spread([t["gap"] for t in trials], gaps(trials)[1])
                     + (f", {waited} of {len(trials)} at the client's timeout" if waited else "")))
    print(f"\nFailover rows: the median of {REPEAT} trials (lowest-highest).\n")
    print("| row | figure |\n|---|---|")
    for name, fig in rows:
        print(f"| {name} | {fig} |")

    print()
    # etcd's gap with as many members as the chorus cluster (5) is the reference; the other
    # sizes' ratios are shown beside it.
    ref_n = NODES if NODES in etcd else (max(etcd) if etcd else None)
    etcd_gap = gaps(etcd[ref_n])[0] if ref_n else None

    def verdict(target, ok):
        print(f"{target}: {'met' if ok else 'MISSED'}")

    def against(g):  # the ratio to each etcd size's gap, the reference first
        return ", ".join(f"{g / gaps(etcd[n])[0]:.3f}x etcd {n}'s"
                         for n in sorted(etcd, key=lambda n: n != ref_n))

    if "coordinator" in tput and "leaderless" in tput:
        c, l = tput["coordinator"], tput["leaderless"]
        print(f"coordinator / leaderless through n0: tasks accepted {c[0] / l[0]:.2f}x,"
              f" p99 {c[2] / l[2]:.2f}x (no target)")
    if etcd_gap:
        for fault, label in (("kill", "owner kill -9"), ("silent", "owner silent")):
            trials = chorus.get(("leaderless", fault))
            if trials is None or "leaderless" not in placements:
                print(f"target leaderless gap, {label} <= 0.1x etcd's: not measured")
                continue
            g, bound = gaps(trials)
            verdict(f"target leaderless gap, {label} <= 0.1x etcd's ({g:.3f} s: {against(g)})",
                    g <= 0.1 * etcd_gap and not bound)
    if "coordinator" in missing:
        print("targets for coordinator placement: TBD"
              " (this build refuses \"placement\": \"coordinator\")")
    elif "coordinator" in placements:
        kill = chorus.get(("coordinator", "kill"), [])
        a = agrees(kill)
        verdict(f"target coordinator mode, all agents agree on the new coordinator < 3 s"
                f" ({fmt_s(a)})",
                a is not None and a < 3)
        if etcd_gap:
            g, bound = gaps(kill)
            verdict(f"target coordinator mode, client gap <= etcd's ({g:.3f} s: {against(g)})",
                    g <= etcd_gap and not bound)
        if "leaderless" in bal:
            c, l = bal["coordinator"][0], bal["leaderless"][0]
            verdict(f"target coordinator max/mean under Zipf <= leaderless R=3's"
                    f" ({c:.2f} vs {l:.2f})",
                    c <= l)

def main():
    base = 20000 + random.randrange(7000)
    print(f"{NODES} chorus agents; etcd {' and '.join(map(str, ETCD_SIZES))} members; "
          f"REPEAT={REPEAT}, DURATION={DURATION:.0f} s, BALANCE_S={BALANCE_S:.0f} s, "
          f"request timeout {REQUEST_TIMEOUT:.0f} s")
    placements = [p for p in PLACEMENTS if p in ("leaderless", "coordinator")]
    with tempfile.TemporaryDirectory(prefix="bench-modes-") as workdir:
        tput = throughput(workdir, base, placements) if placements else {}
        # The throughput cluster found out whether this build has coordinator placement.
        missing = {p for p in placements if p not in tput}
        placements = [p for p in placements if p in tput]
        bal = balance(workdir, base + 1000, placements)
        chorus = chorus_failover(workdir, base + 2000, placements)
        etcd = etcd_failover(workdir, base + 3000)
        report(tput, bal, chorus, etcd, placements, missing)


if __name__ == "__main__":
    sys.exit(main())
