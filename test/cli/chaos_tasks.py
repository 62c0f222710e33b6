"""Chaos test: nothing acknowledged is lost, on real agents on loopback.

5 agents with data dirs. A client submits TASKS sleep-like tasks (20-100 ms, run by an exec
handler that logs every execution) at a steady rate to random agents, each with its own id, so
a retry after an error is idempotent. Every KILL_EVERY seconds a random agent is killed with
SIGKILL and started again on the same data dir. When nine tenths of the tasks are in, one agent
(not a seed) is killed for good and its data dir removed: a host lost with its disk. At the end
every task that got 202 (or 200) must reach `succeeded`, readable from the live agents, and
must have run (the handler logs it under CHORUS_TASK_ID); the test prints accepted, succeeded,
lost (must be 0), never ran (must be 0) and how many tasks ran more than once, and exits 1 if
any was lost or never ran. Then every copy must learn how its task ended (an owner restarted
mid-task cannot tell its copies; they ask it, every copy_check_ms), and no live agent may count
a task short of its copies: both are printed, and must come to 0.

    python3 chaos_tasks.py /path/to/chorus [TASKS] [RATE] [--whole-cluster]

With --whole-cluster, instead of one agent every 5 s, every agent is killed at once halfway
through the submissions and all are started again (a whole-cluster restart): the journals
must bring every accepted task back.

Agents bind ports the kernel picks (127.0.0.1:0) and say which in their `agent started` log
line, so tests run at once never collide; a restarted agent comes back on its old ports, or on
fresh ones if another process took one meanwhile.

Bounded: the submission phase takes TASKS/RATE seconds, the final waits at most 120 s and 60 s.
Only the processes it started are ended, by PID, however the test ends (SIGTERM included).
"""
import http.client
import json
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
WHOLE = "--whole-cluster" in sys.argv
CHORUS = args[0]
TASKS = int(args[1]) if len(args) > 1 else 2000
RATE = float(args[2]) if len(args) > 2 else 100.0
KILL_EVERY = 5.0
NODES = 5

work = tempfile.mkdtemp(prefix="chorus-chaos-")
executions = os.path.join(work, "executions")
procs = {}
addrs = {}  # agent -> (gossip address, HTTP address) it bound, "host:port"
gone = set()  # agents lost for good, with their data dirs


def live():
    return [i for i in range(NODES) if i not in gone]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import started, stop  # noqa: E402  (the folder's shared helpers)


def start(i):
    """Starts agent i, seeded with n0 and n1 as they bound, and waits until it listens. A
    restarted agent binds its old addresses again; if another process took one of its ports
    meanwhile, it starts on fresh ones (gossip spreads its new address)."""
    cfg = os.path.join(work, "agent.json")
    path = os.path.join(work, f"n{i}.log")
    seeds = [arg for j in (0, 1) if j != i and j in addrs for arg in ("--seed", addrs[j][0])]
    for bind, http_at in ([addrs[i]] if i in addrs else []) + [("127.0.0.1:0", "127.0.0.1:0")]:
        offset = os.path.getsize(path) if os.path.exists(path) else 0
        with open(path, "a") as log:
            procs[i] = subprocess.Popen(
                [CHORUS, "agent", "--name", f"n{i}", "--bind", bind, "--http", http_at,
                 "--profile", "local", *seeds, "--data-dir", os.path.join(work, f"d{i}"),
                 "--config", cfg, "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT)
        bound = started(path, offset, procs[i])
        if bound:
            addrs[i] = bound
            return
        procs[i].wait()
    sys.exit(f"n{i} could not start; see {path}")


def http_port(i):
    return int(addrs[i][1].rsplit(":", 1)[1])


def call(i, method, path, body=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", http_port(i), timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def alive(i):
    try:
        s, v = call(i, "GET", "/v1/members", timeout=2)
        return s == 200 and sum(m["state"] == "alive" for m in v["members"]) == len(live())
    except (OSError, ValueError, http.client.HTTPException):
        return False


def due_at(n, t0):
    return t0 + n / RATE


def main():
    with open(os.path.join(work, "agent.json"), "w") as f:
        # The handler logs each execution (one short line, appended atomically), then sleeps
        # the payload's ms.
        script = ('read -r p; echo "$CHORUS_TASK_ID" >> ' + executions +
                  '; ms=${p//[!0-9]/}; sleep "0.$(printf %03d "$ms")"')
        json.dump({"tasks": {"capacity": 8, "queue_max": 4096, "copy_check_ms": 1000},
                   "handlers": {"work": {"exec": ["/bin/bash", "-c", script],
                                         "user": pwd.getpwuid(os.geteuid()).pw_name}}}, f)
    for i in range(NODES):
        start(i)
    deadline = time.time() + 60
    while not all(alive(i) for i in range(NODES)):
        if time.time() > deadline:
            sys.exit("the cluster did not converge")
        time.sleep(0.2)

    accepted, refused = {}, 0
    rng = random.Random(int(os.environ.get("SEED", "1")))
    t0 = time.time()
    next_kill = t0 + KILL_EVERY
    kills = 0
    for n in range(TASKS):
        delay = due_at(n, t0) - time.time()
        if delay > 0:
            time.sleep(delay)
        if WHOLE and n == TASKS // 2:
            for i in range(NODES):
                procs[i].send_signal(signal.SIGKILL)
            for i in range(NODES):
                procs[i].wait()
            for i in range(NODES):
                start(i)
            kills += NODES
            converge = time.time() + 60
            while not all(alive(i) for i in range(NODES)) and time.time() < converge:
                time.sleep(0.2)
            t0 += time.time() - due_at(n, t0)  # the pause does not count against the rate
        elif not WHOLE and n == TASKS * 9 // 10:
            # A host lost with its disk: its acknowledged tasks live on in their copies only.
            victim = rng.choice([i for i in live() if i >= 2])  # n0 and n1 seed restarts
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            del procs[victim]
            shutil.rmtree(os.path.join(work, f"d{victim}"))
            gone.add(victim)
            kills += 1
        elif not WHOLE and time.time() >= next_kill:
            victim = rng.choice(live())
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            start(victim)
            kills += 1
            next_kill += KILL_EVERY
        key = f"key-{rng.randrange(500)}"
        body = {"key": key, "type": "work", "payload": {"ms": rng.randrange(20, 101)}, "id": f"t{n}"}
        # Retry through other agents until accepted, for at most 20 s: the same id makes a
        # retry of an accepted task return it rather than run it again.
        give_up = time.time() + 20
        while time.time() < give_up:
            try:
                status, v = call(rng.choice(live()), "POST", "/v1/tasks", body)
            except (OSError, ValueError, http.client.HTTPException):
                continue
            if status in (200, 202):
                accepted[v["id"]] = key
                break
            refused += 1
            time.sleep(0.05)
    submit_s = time.time() - t0

    # Every accepted task must finish; ask any agent that answers.
    pending = set(accepted)
    states = {}
    deadline = time.time() + 120
    while pending and time.time() < deadline:
        for tid in list(pending):
            try:
                status, v = call(rng.choice(live()), "GET", f"/v1/tasks/{tid}", timeout=5)
            except (OSError, ValueError, http.client.HTTPException):
                continue
            if status == 200:
                states[tid] = v["state"]
                if v["state"] == "succeeded":
                    pending.discard(tid)
        if pending:
            time.sleep(0.5)
    runs = {}
    if os.path.exists(executions):
        with open(executions) as f:
            for line in f:
                runs[line.strip()] = runs.get(line.strip(), 0) + 1
    # A gauge summed over the live agents: copies that have not heard how their task ended,
    # or tasks short of their copies.
    def total(metric):
        n = 0
        for i in live():
            c = http.client.HTTPConnection("127.0.0.1", http_port(i), timeout=5)
            try:
                c.request("GET", "/metrics")
                for line in c.getresponse().read().decode().splitlines():
                    if line.startswith(metric + " "):
                        n += int(float(line.split()[1]))
            except (OSError, ValueError, http.client.HTTPException):
                return None
            finally:
                c.close()
        return n
    deadline = time.time() + 60
    while True:
        stale_copies = total("chorus_task_copies_unfinished")
        under = total("chorus_tasks_under_replicated")
        if (stale_copies == 0 and under == 0) or time.time() >= deadline:
            break
        time.sleep(0.5)
    more_than_once = sum(1 for tid in accepted if runs.get(tid, 0) > 1)
    never_ran = sum(1 for tid in accepted if runs.get(tid, 0) == 0)
    lost = len(pending)
    what = "whole-cluster restart" if WHOLE else "chaos"
    print(f"{what}: {TASKS} submitted in {submit_s:.0f} s with {kills} kill -9 "
          f"({len(gone)} for good, data dir removed); "
          f"accepted {len(accepted)}, succeeded {len(accepted) - lost}, lost {lost}, "
          f"ran more than once {more_than_once}, never ran {never_ran}, "
          f"refusals retried {refused}, copies still unfinished {stale_copies}, "
          f"tasks under-replicated {under}")
    if lost:
        sample = sorted(pending)[:10]
        print("not succeeded:", [(t, states.get(t, "unknown")) for t in sample])
    if never_ran:
        sample = sorted(tid for tid in accepted if runs.get(tid, 0) == 0)[:10]
        print("never ran:", [(t, states.get(t, "unknown")) for t in sample])
    return 1 if (lost or never_ran or len(accepted) < TASKS or stale_copies != 0
                 or under != 0) else 0


# SIGTERM (a test runner's timeout, say) ends the test through the finally below, so the agents
# go too; by default Python would die at once and leave them running.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
signal.signal(signal.SIGHUP, lambda signum, frame: sys.exit(128 + signum))
rc = 1
try:
    rc = main()
finally:
    stop(procs)
    if os.environ.get("KEEP") is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("kept", work)
sys.exit(rc)
