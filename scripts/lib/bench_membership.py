# The measuring half of scripts/bench-membership (read its header first). Runs inside the
# network namespace the script made, when it could make one.
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CHORUS = os.environ["CHORUS_BIN"]
SIZES = [int(s) for s in os.environ.get("SIZES", "5 10 25").split()]
IDLE_S = float(os.environ.get("IDLE_S", "20"))
COUNT_PACKETS = os.environ.get("COUNT_PACKETS") == "1"
# SEALED=1: each size also runs both systems with their gossip encryption on (one shared
# 32-byte key: chorus --encrypt, serf -encrypt), and compares idle cost sealed and in clear.
SEALED = os.environ.get("SEALED") == "1"
SETTLE_S = 10  # after convergence, before the idle window: join traffic dies down
CLK_TCK = os.sysconf("SC_CLK_TCK")


def run(cmd, timeout=10):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


class Chorus:
    name = "chorus"
    dead, left = "dead", "left"

    def __init__(self, base, key=None):
        self.base = base
        self.key = key

    def gossip_port(self, i):
        return self.base + i

    def api(self, i):
        return f"127.0.0.1:{self.base + 1000 + i}"  # gossip and API ranges never overlap

    def command(self, i, seed):
        cmd = [CHORUS, "agent", "--name", f"n{i}", "--bind", f"127.0.0.1:{self.gossip_port(i)}",
               "--http", self.api(i), "--log-level", "warn"]
        cmd += ["--encrypt", self.key] if self.key else []
        return cmd + (["--seed", f"127.0.0.1:{seed}"] if seed else [])

    def view(self, i):
        r = run([CHORUS, "members", "--json", "--http", self.api(i)], timeout=5)
        if r is None or r.returncode != 0:
            return None
        return {m["name"]: m["state"] for m in json.loads(r.stdout)["members"]}

    def leave(self, i):
        return [CHORUS, "leave", "--http", self.api(i)]


class Serf:
    name = "serf"
    dead, left = "failed", "left"

    def __init__(self, base, key=None):
        self.base = base
        self.key = key

    def gossip_port(self, i):
        return self.base + i

    def rpc(self, i):
        return f"127.0.0.1:{self.base + 1000 + i}"

    def command(self, i, seed):
        cmd = ["serf", "agent", "-node", f"n{i}", "-bind", f"127.0.0.1:{self.gossip_port(i)}",
               "-rpc-addr", self.rpc(i), "-log-level", "warn"]
        cmd += ["-encrypt", self.key] if self.key else []
        return cmd + (["-join", f"127.0.0.1:{seed}"] if seed else [])

    def view(self, i):
        r = run(["serf", "members", "-rpc-addr", self.rpc(i), "-format", "json"], timeout=5)
        if r is None or r.returncode != 0:
            return None
        return {m["name"]: m["status"] for m in json.loads(r.stdout)["members"]}

    def leave(self, i):
        return ["serf", "leave", "-rpc-addr", self.rpc(i)]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def iptables(*args):
    subprocess.run(["iptables", *args], check=True, capture_output=True)


def packet_counters():
    out = subprocess.run(["iptables", "-L", "OUTPUT", "-v", "-x", "-n"], check=True,
                         capture_output=True, text=True).stdout.splitlines()[2:]
    packets = sum(int(l.split()[0]) for l in out if l.strip())
    octets = sum(int(l.split()[1]) for l in out if l.strip())
    return packets, octets


def until_all_see(system, observers, condition, limit_s, t0):
    """Seconds from t0 until each observer's view satisfied `condition`; None if any never did."""
    pending, seen = set(observers), {}
    deadline = time.monotonic() + limit_s
    while pending and time.monotonic() < deadline:
        for i in sorted(pending):
            v = system.view(i)
            if v is not None and condition(v):
                seen[i] = time.monotonic() - t0
                pending.discard(i)
    return None if pending else seen


def measure(system, n):
    procs = {}
    result = {}
    logs = tempfile.mkdtemp(prefix=f"bench-{system.name}-")

    def launch(i, seed):
        with open(os.path.join(logs, f"n{i}.log"), "w") as log:
            return subprocess.Popen(system.command(i, seed), stdout=log, stderr=subprocess.STDOUT)

    lo, hi = system.gossip_port(0), system.gossip_port(n - 1)
    if COUNT_PACKETS:
        iptables("-F", "OUTPUT")
        for proto in ("udp", "tcp"):
            iptables("-A", "OUTPUT", "-o", "lo", "-p", proto, "-m", "multiport", "--ports",
                     f"{lo}:{hi}")
    try:
        procs[0] = launch(0, None)
        if until_all_see(system, [0], lambda v: True, 20, time.monotonic()) is None:
            with open(os.path.join(logs, "n0.log")) as f:
                sys.exit(f"{system.name}: the seed agent did not answer in 20 s:\n{f.read()}")
        t0 = time.monotonic()
        for i in range(1, n):
            procs[i] = launch(i, lo)
        alive_all = lambda v: sum(s == "alive" for s in v.values()) == n
        seen = until_all_see(system, range(n), alive_all, 120, t0)
        result["join_s"] = max(seen.values()) if seen else None
        if seen is None:
            # Say why, so a run that did not converge can be understood.
            for i, p in procs.items():
                if p.poll() is not None:
                    with open(os.path.join(logs, f"n{i}.log")) as f:
                        print(f"  {system.name} n{i} exited ({p.returncode}): {f.read()[-400:]}")
                else:
                    v = system.view(i)
                    alive = sum(s == "alive" for s in v.values()) if v else None
                    print(f"  {system.name} n{i} sees {alive} alive of {n}")

        # Idle: nothing polls during the window.
        time.sleep(SETTLE_S)
        ticks0 = {i: cpu_ticks(p.pid) for i, p in procs.items()}
        if COUNT_PACKETS:
            iptables("-Z", "OUTPUT")
        w0 = time.monotonic()
        time.sleep(IDLE_S)
        window = time.monotonic() - w0
        ticks1 = {i: cpu_ticks(p.pid) for i, p in procs.items()}
        result["cpu_pct"] = statistics.mean(
            (ticks1[i] - ticks0[i]) / CLK_TCK / window * 100 for i in procs)
        result["rss_mib"] = statistics.mean(rss_kib(p.pid) for p in procs.values()) / 1024
        if COUNT_PACKETS:
            packets, octets = packet_counters()
            result["pkts_per_agent_s"] = packets / n / window
            result["bytes_per_agent_s"] = octets / n / window

        # Crash the last agent.
        victim = n - 1
        procs[victim].kill()
        t0 = time.monotonic()
        procs[victim].wait()
        del procs[victim]
        name = f"n{victim}"
        seen = until_all_see(system, range(n - 1), lambda v: v.get(name) == system.dead, 60, t0)
        if seen:
            result["dead_all_s"] = max(seen.values())
            result["dead_first_s"] = min(seen.values())
        else:
            result["dead_all_s"] = result["dead_first_s"] = None

        # A graceful leave of the next-to-last.
        leaver = n - 2
        name = f"n{leaver}"
        t0 = time.monotonic()
        leaving = subprocess.Popen(system.leave(leaver), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        seen = until_all_see(system, range(n - 2), lambda v: v.get(name) == system.left, 60, t0)
        result["leave_s"] = max(seen.values()) if seen else None
        try:
            leaving.wait(timeout=30)
        except subprocess.TimeoutExpired:
            leaving.kill()
            leaving.wait()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        if COUNT_PACKETS:
            iptables("-F", "OUTPUT")
    result["logs"] = logs  # main() removes them unless a target was missed
    return result


ROWS = [  # key, label, target ratio (chorus / serf), format
    ("join_s", "join convergence, s", 1.0, "{:.2f}"),
    ("dead_all_s", "crash-to-dead at every survivor, s", 0.5, "{:.2f}"),
    ("dead_first_s", "crash-to-dead at the first, s", None, "{:.2f}"),
    ("leave_s", "leave propagation, s", 1.0, "{:.2f}"),
    ("cpu_pct", "idle CPU per agent, %", 1.0, "{:.3f}"),
    ("rss_mib", "idle RSS per agent, MiB", 0.25, "{:.1f}"),
    ("pkts_per_agent_s", "idle packets per agent per s", 1.5, "{:.2f}"),
    ("bytes_per_agent_s", "idle bytes per agent per s", 1.5, "{:.0f}"),
]


def show(n, c, s):
    print(f"\nN={n}  (idle window {IDLE_S:.0f} s)")
    print(f"  {'':38} {'chorus':>10} {'serf':>10} {'ratio':>7}  target")
    misses = []
    for key, label, target, fmt in ROWS:
        cv, sv = c.get(key), s.get(key)
        if cv is None and sv is None and key not in c:
            continue
        ratio = cv / sv if cv is not None and sv else None
        verdict = ""
        if target is not None:
            ok = ratio is not None and ratio <= target
            verdict = f"<= {target:<4} {'ok' if ok else 'MISSED'}"
            if not ok:
                misses.append(f"N={n} {label}")
        fmt_or = lambda v: fmt.format(v) if v is not None else "none"
        rs = f"{ratio:.2f}" if ratio is not None else "-"
        print(f"  {label:38} {fmt_or(cv):>10} {fmt_or(sv):>10} {rs:>7}  {verdict}")
    return misses


SEALED_ROWS = [  # key, label, format
    ("cpu_pct", "idle CPU per agent, %", "{:.3f}"),
    ("bytes_per_agent_s", "idle bytes per agent per s", "{:.0f}"),
    ("dead_all_s", "crash-to-dead at every survivor, s", "{:.2f}"),
]


def show_sealed(n, c, cs, ss):
    """Chorus in clear, chorus sealed, serf sealed: sealing's cost, and against serf's."""
    print(f"\nN={n} sealed  (chorus --encrypt, serf -encrypt; idle window {IDLE_S:.0f} s)")
    print(f"  {'':38} {'clear':>10} {'sealed':>10} {'serf sld':>10} {'sld/clr':>8} "
          f"{'vs serf':>8}")
    misses = []
    for key, label, fmt in SEALED_ROWS:
        v = [x.get(key) for x in (c, cs, ss)]
        if all(x is None for x in v):
            continue
        cost = v[1] / v[0] if v[0] and v[1] is not None else None
        versus = v[1] / v[2] if v[2] and v[1] is not None else None
        cells = [fmt.format(x) if x is not None else "none" for x in v]
        ratios = [f"{r:.2f}" if r is not None else "-" for r in (cost, versus)]
        print(f"  {label:38} {cells[0]:>10} {cells[1]:>10} {cells[2]:>10} {ratios[0]:>8} "
              f"{ratios[1]:>8}")
        if key == "cpu_pct":
            if cost is None or cost > 1.2:
                misses.append(f"N={n} sealed idle CPU over 1.2x in clear")
            if versus is None or versus > 1.0:
                misses.append(f"N={n} sealed idle CPU over serf's sealed")
    print("  targets: idle CPU sealed <= 1.2x in clear, and <= serf's sealed")
    return misses


def main():
    print(f"chorus: {CHORUS}")
    print(f"serf:   {run(['serf', 'version']).stdout.splitlines()[0]} (Debian package "
          f"{run(['dpkg-query', '-W', '-f=${Version}', 'serf']).stdout})")
    print("both with their default LAN profile; views polled through each one's CLI")
    misses = []
    # Ports stay below Linux's ephemeral range (32768 and up), where an outgoing connection
    # could take one first; each run's gossip and API ports span 2000.
    if any(n < 3 or n > 999 for n in SIZES):
        sys.exit("sizes must lie within 3..999")
    if SEALED and any(n > 400 for n in SIZES):
        sys.exit("with SEALED=1, sizes must lie within 3..400")
    key = run([CHORUS, "keygen"]).stdout.strip()
    for k, n in enumerate(SIZES):
        c = measure(Chorus(10000 + 2000 * k), n)
        s = measure(Serf(20000 + 2000 * k), n)
        missed = show(n, c, s)
        measured = [c, s]
        if SEALED:
            # Their own port ranges: base + 400 leaves the clear runs' (n <= 400) alone.
            cs = measure(Chorus(10400 + 2000 * k, key), n)
            ss = measure(Serf(20400 + 2000 * k, key), n)
            missed += show_sealed(n, c, cs, ss)
            measured += [cs, ss]
        misses += missed
        for logs in (x["logs"] for x in measured):
            if missed:
                print(f"  agents' logs kept (a target was missed): {logs}")
            else:
                shutil.rmtree(logs, ignore_errors=True)
        sys.stdout.flush()
    print()
    print("all targets met" if not misses else "targets missed: " + "; ".join(misses))


main()
