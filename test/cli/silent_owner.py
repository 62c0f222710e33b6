"""An owner that goes silent costs a steadily submitting client well under a second.

5 agents, each in a network namespace of its own on a bridge (in a namespace of its own too, so
the host's network is untouched), with journals and an exec handler that logs every run. A
client in node1's namespace posts tasks one at a time to node1, with keys node1's router gives
to node3. The tasks are unnamed, as the client of the issue's measurement posts them: a named
one is first looked up on every member that may hold its id, and a silent one holds that up
until membership suspects it (README, "Tasks"). Once the client
is going steadily, node3's namespace drops every packet in and out (iptables DROP: a host that
lost power, no RST), and the client goes on for a while. The longest gap between two successive
acknowledgements must be under GAP_MAX_S (the entry waits one measured forward timeout on the
silent owner, not forward_timeout_ms), and every task acknowledged must run, and exactly once on
the live agents. A task node3 ran as it was cut off (its outcome lost on the way to the copy's
holder, which runs it again once node3 is declared dead) is counted apart: at least once allows
that second run (README, "Tasks"), and a host that really lost power would not have run it.

    python3 silent_owner.py /path/to/chorus [--runs N] [--kill]

With --kill the victim is killed (SIGKILL: its kernel answers with RST) instead, for
comparison. Prints the longest gap of each run and their median. Needs root, ip and iptables; exits 77
(skipped) otherwise. Every wait is polled with a deadline; only the processes it started are
ended, by PID; the namespaces it made are removed however it ends.
"""
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

NODES = 5
VICTIM = 3
ENTRY = 1
GAP_MAX_S = 1.0
BEFORE = 100  # acknowledgements before the victim goes silent
AFTER_S = 4.0  # how long the client goes on after that


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def run(*argv, check=True):
    return subprocess.run(argv, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=30)


def client(victim, count, out_path):
    """The client, in the entry's namespace: keys the entry gives to VICTIM, then COUNT tasks
    posted one at a time (a refusal is posted again: unnamed, it was not accepted), each
    acknowledgement a line `time id` in OUT_PATH; stops early when OUT_PATH.stop appears."""
    api = "http://127.0.0.1:7980"

    def call(method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(api + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None

    keys = []
    for i in range(2000):
        status, v = call("GET", f"/v1/ring/lookup?key=s{i}")
        if status == 200 and v["owner"] == victim:
            keys.append(f"s{i}")
        if len(keys) == 20:
            break
    if not keys:
        sys.exit(f"no key of {victim} found")
    with open(out_path, "a") as out:
        for n in range(count):
            if os.path.exists(out_path + ".stop"):
                return
            body = {"key": keys[n % len(keys)], "type": "work", "payload": n}
            give_up = time.time() + 30
            while time.time() < give_up:
                try:
                    status, v = call("POST", "/v1/tasks", body)
                except OSError:
                    status = 0
                if status in (200, 202):
                    out.write(f"{time.time():.6f} {v['id']}\n")
                    out.flush()
                    break
                time.sleep(0.01)
            else:
                sys.exit(f"task {n} was refused for 30 s")


def one_run(chorus, work, kill):
    tag = f"so{os.getpid() % 10000}"
    prefix = f"10.{100 + os.getpid() % 100}.{int(time.time()) % 250}"
    made, procs = [], {}
    executions = os.path.join(work, "executions")
    acks = os.path.join(work, "acks")
    for p in (executions, acks, acks + ".stop",
              *(os.path.join(work, f"node{i}.log") for i in range(1, NODES + 1))):
        if os.path.exists(p):
            os.remove(p)

    def ns(i):
        return f"{tag}n{i}"

    def in_ns(i, *argv, check=True):
        return run("ip", "netns", "exec", ns(i), *argv, check=check)

    def wait_for(cond, seconds, why):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise RuntimeError(why)

    try:
        run("ip", "netns", "add", f"{tag}br")
        made.append(f"{tag}br")
        run("ip", "netns", "exec", f"{tag}br", "ip", "link", "add", "br0", "type", "bridge")
        run("ip", "netns", "exec", f"{tag}br", "ip", "link", "set", "br0", "up")
        for i in range(1, NODES + 1):
            run("ip", "netns", "add", ns(i))
            made.append(ns(i))
            run("ip", "link", "add", f"{tag}v{i}", "type", "veth", "peer", "name", "eth0",
                "netns", ns(i))
            run("ip", "link", "set", f"{tag}v{i}", "netns", f"{tag}br")
            run("ip", "netns", "exec", f"{tag}br", "ip", "link", "set", f"{tag}v{i}", "master",
                "br0", "up")
            in_ns(i, "ip", "addr", "add", f"{prefix}.{i}/24", "dev", "eth0")
            in_ns(i, "ip", "link", "set", "eth0", "up")
            in_ns(i, "ip", "link", "set", "lo", "up")
        for i in range(1, NODES + 1):
            # Each run logs the task and the member that ran it.
            config = os.path.join(work, f"agent{i}.json")
            with open(config, "w") as f:
                script = f'echo "$CHORUS_TASK_ID node{i}" >> {executions}'
                json.dump({"tasks": {"capacity": 8, "queue_max": 4096},
                           "handlers": {"work": {"exec": ["/bin/sh", "-c", script],
                                                 "user": pwd.getpwuid(os.geteuid()).pw_name}}},
                          f)
            data = os.path.join(work, f"d{i}")
            shutil.rmtree(data, ignore_errors=True)
            log = open(os.path.join(work, f"node{i}.log"), "a")
            procs[i] = subprocess.Popen(
                ["ip", "netns", "exec", ns(i), chorus, "agent", "--name", f"node{i}",
                 "--seed", f"{prefix}.1:7900", "--seed", f"{prefix}.2:7900",
                 "--data-dir", data, "--config", config], stdout=log, stderr=subprocess.STDOUT)
            log.close()

        def converged():
            r = in_ns(ENTRY, chorus, "members", check=False)
            return r.returncode == 0 and r.stdout.count(" alive") >= NODES
        wait_for(converged, 60, "the cluster did not converge")
        # Every member's view too, so that tags and loads have spread.
        wait_for(lambda: all(in_ns(i, chorus, "members", check=False).stdout.count(" alive")
                             >= NODES for i in range(1, NODES + 1)), 60, "views differ")

        procs["client"] = subprocess.Popen(
            ["ip", "netns", "exec", ns(ENTRY), sys.executable, os.path.abspath(__file__),
             "--client", f"node{VICTIM}", "100000", acks])

        def acked():
            if not os.path.exists(acks):
                return []
            with open(acks) as f:
                return [line.split() for line in f if line.endswith("\n")]
        wait_for(lambda: len(acked()) >= BEFORE, 60, "the client did not get going")
        if kill:
            procs[VICTIM].send_signal(signal.SIGKILL)
        else:
            in_ns(VICTIM, "iptables", "-A", "INPUT", "-j", "DROP")
            in_ns(VICTIM, "iptables", "-A", "OUTPUT", "-j", "DROP")
        cut = time.time()
        wait_for(lambda: time.time() - cut >= AFTER_S or procs["client"].poll() is not None,
                 AFTER_S + 5, "the client did not go on")
        open(acks + ".stop", "w").close()
        procs["client"].wait(timeout=30)
        done = acked()
        times = [float(t) for t, _ in done]
        gaps = [b - a for a, b in zip(times, times[1:])]
        after = [b - a for a, b in zip(times, times[1:]) if b > cut]
        longest = max(after) if after else float("inf")
        print(f"  {len(done)} acknowledged, {len(after)} after the cut; longest gap after "
              f"it {longest * 1000:.0f} ms (before it {max(gaps[:BEFORE]) * 1000:.0f} ms)")
        if not after or longest >= GAP_MAX_S:
            raise RuntimeError(f"longest gap {longest * 1000:.0f} ms, over {GAP_MAX_S * 1000:.0f}")

        # Every task acknowledged runs, and exactly once on the live agents.
        ids = [i for _, i in done]

        def ran(live_only=False):
            if not os.path.exists(executions):
                return {}
            counts = {}
            with open(executions) as f:
                for line in f:
                    if line.endswith("\n"):
                        task, member = line.split()
                        if live_only and member == f"node{VICTIM}":
                            continue
                        counts[task] = counts.get(task, 0) + 1
            return counts
        wait_for(lambda: all(ran().get(i, 0) >= 1 for i in ids), 30, "an acknowledged task "
                 "never ran: " + ", ".join(i for i in ids if ran().get(i, 0) == 0)[:400])
        twice = [i for i, c in ran(live_only=True).items() if c > 1]
        again = sum(1 for i, c in ran().items() if c > 1) - len(twice)
        if again:
            print(f"  {again} task(s) node{VICTIM} ran as it was cut off ran again on the holder "
                  "of their copy (at least once)")
        if twice:
            with open(executions) as f:
                where = [line.strip() for line in f if line.split()[0] in twice]
            raise RuntimeError(f"ran more than once: {where[:20]}")
        return longest
    finally:
        for k, p in procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        for n in made:
            subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL)


def main():
    if "--client" in sys.argv:
        a = sys.argv[sys.argv.index("--client") + 1:]
        client(a[0], int(a[1]), a[2])
        return
    chorus = os.path.realpath(sys.argv[1])
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 1
    if os.geteuid() != 0:
        skip("network namespaces need root")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            skip(f"{tool} is not installed")
    if subprocess.run(["ip", "netns", "add", f"so-probe-{os.getpid()}"],
                      stderr=subprocess.DEVNULL).returncode != 0:
        skip("cannot make a network namespace")
    subprocess.run(["ip", "netns", "del", f"so-probe-{os.getpid()}"])
    work = tempfile.mkdtemp(prefix="chorus-silent-")
    gaps = []
    try:
        for r in range(runs):
            print(f"run {r + 1} of {runs}", flush=True)
            gaps.append(one_run(chorus, work, "--kill" in sys.argv))
    except RuntimeError as e:
        print(f"FAIL: {e}")
        for i in range(1, NODES + 1):
            path = os.path.join(work, f"node{i}.log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    print(f"== node{i}.log (tail)\n" + "".join(f.readlines()[-15:]))
        sys.exit(1)
    print(f"longest gap after an owner was {'killed' if '--kill' in sys.argv else 'cut off'}: median {statistics.median(gaps) * 1000:.0f} "
          f"ms over {runs} run(s): {', '.join(f'{g * 1000:.0f}' for g in gaps)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
