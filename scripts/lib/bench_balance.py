"""Owner load under Zipf-skewed keys: plain primary-owner hashing against Chorus's
choice among R candidates. Run by scripts/bench-balance; see its header.

For each R, a fresh 5-agent cluster runs with `candidates` = R (R = 1 is plain hashing: every
key's tasks go to its primary). Clients post `sleep` tasks at a steady rate to random agents,
keys drawn from a Zipf distribution. Per agent it measures the tasks it ran and its load over
time (running + queued, sampled every 100 ms), and reports max/mean of each across agents.
"""
import bisect
import http.client
import json
import os
import random
import tempfile
import threading
import time

from bench_cluster import Agents, metrics

CHORUS = os.environ["CHORUS_BIN"]
NODES = int(os.environ.get("NODES", "5"))
RATE = float(os.environ.get("RATE", "300"))  # tasks per second, all clients together
DURATION = float(os.environ.get("DURATION", "20"))
SLEEP_MS = int(os.environ.get("SLEEP_MS", "50"))
CAPACITY = int(os.environ.get("CAPACITY", "8"))
KEYS = int(os.environ.get("KEYS", "1000"))
ZIPF_S = float(os.environ.get("ZIPF_S", "1.0"))
RS = [int(r) for r in os.environ.get("RS", "1 2 3").split()]
CLIENTS = 8


def zipf_cdf(n, s):
    weights = [1 / (k ** s) for k in range(1, n + 1)]
    total, acc, cdf = sum(weights), 0.0, []
    for w in weights:
        acc += w / total
        cdf.append(acc)
    return cdf


def run(r, base, workdir, placement=None):
    """One cluster with `candidates` = R: (tasks run per agent, mean load per agent, posted,
    refused, errors). PLACEMENT, when given, goes in every task's body ("coordinator": the
    coordinator places each task, and R plays no part)."""
    agents = Agents(CHORUS, workdir, NODES, base,
                    {"tasks": {"candidates": r, "capacity": CAPACITY, "queue_max": 4096}},
                    args=lambda i: ["--profile", "local"], tag=f"r{r}-{placement or 'leaderless'}")
    try:
        agents.start_all()
        apis = [agents.api(i) for i in range(NODES)]
        before = [metrics(a) for a in apis]

        cdf = zipf_cdf(KEYS, ZIPF_S)
        stop = time.time() + DURATION
        sent, refused, errors = [0], [0], [0]
        lock = threading.Lock()

        def client(seed):
            rng = random.Random(seed)
            conns = {}
            interval = CLIENTS / RATE
            next_at = time.time() + rng.random() * interval
            while next_at < stop:
                time.sleep(max(0.0, next_at - time.time()))
                next_at += interval
                key = f"key-{bisect.bisect_left(cdf, rng.random())}"
                api = rng.choice(apis)
                task = {"key": key, "type": "sleep", "payload": {"ms": SLEEP_MS}}
                body = json.dumps({**task, "placement": placement} if placement else task)
                try:
                    host, port = api.rsplit(":", 1)
                    c = conns.get(api) or http.client.HTTPConnection(host, int(port), timeout=10)
                    conns[api] = c
                    c.request("POST", "/v1/tasks", body, {"Content-Type": "application/json"})
                    resp = c.getresponse()
                    resp.read()
                    with lock:
                        sent[0] += 1
                        if resp.status != 202:
                            refused[0] += 1
                except (OSError, http.client.HTTPException):
                    conns.pop(api, None)
                    with lock:
                        errors[0] += 1

        samples = [[] for _ in apis]
        done = threading.Event()

        def sampler():
            while not done.is_set():
                for i, a in enumerate(apis):
                    try:
                        m = metrics(a)
                        samples[i].append(m.get("chorus_tasks_running", 0) + m.get("chorus_tasks_queued", 0))
                    except OSError:
                        pass
                done.wait(0.1)

        threads = [threading.Thread(target=client, args=(r * 1000 + i,)) for i in range(CLIENTS)]
        s = threading.Thread(target=sampler)
        s.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Let the queues drain so every accepted task is counted where it ran.
        drain_until = time.time() + 30
        while time.time() < drain_until:
            ms = [metrics(a) for a in apis]
            if all(m.get("chorus_tasks_running", 0) + m.get("chorus_tasks_queued", 0) == 0 for m in ms):
                break
            time.sleep(0.1)
        done.set()
        s.join()
        after = [metrics(a) for a in apis]
        ran = [a.get('chorus_tasks_total{outcome="succeeded"}', 0) - b.get('chorus_tasks_total{outcome="succeeded"}', 0)
               for a, b in zip(after, before)]
        avg_load = [sum(x) / max(len(x), 1) for x in samples]
        return ran, avg_load, sent[0], refused[0], errors[0]
    finally:
        agents.stop()


def ratio(xs):
    mean = sum(xs) / len(xs)
    return max(xs) / mean if mean > 0 else float("nan")


def main():
    base = 20000 + random.randrange(8000)
    top = 1 / sum(1 / (k ** ZIPF_S) for k in range(1, KEYS + 1))
    print(f"{NODES} agents, capacity {CAPACITY}; {RATE:.0f} sleep tasks/s of {SLEEP_MS} ms for {DURATION:.0f} s "
          f"to random agents; {KEYS} keys, Zipf s={ZIPF_S} (the hottest key is {100 * top:.0f}% of tasks)")
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for r in RS:
            ran, load, sent, refused, errors = run(r, base + 200 * r, workdir)
            results[r] = (ratio(ran), ratio(load))
            label = "plain hashing (primary only)" if r == 1 else f"chorus, R={r}"
            print(f"\n{label}: {sent} posted, {refused} refused, {errors} errors")
            print("  tasks run per agent:   " + " ".join(f"{x:6.0f}" for x in ran) + f"   max/mean {results[r][0]:.2f}")
            print("  mean load per agent:   " + " ".join(f"{x:6.2f}" for x in load) + f"   max/mean {results[r][1]:.2f}")
    print()
    for r in RS:
        print(f"R={r}: max/mean tasks run {results[r][0]:.2f}, max/mean load {results[r][1]:.2f}")
    if 3 in results:
        ok = results[3][0] <= 1.25
        print("target (R=3, max/mean <= 1.25): " + ("met" if ok else "MISSED"))


if __name__ == "__main__":
    main()
