"""A real full disk at run time, on a task's owner and on the holder of its copies.

Two agents keep their journals on small tmpfs mounts of their own. The test fills one mount to
the last byte while the agents run:

  - the owner's: its next commit fails. It answers /v1/health with 503 journal_failing, refuses
    tasks, and its keys go to the other candidate: every task the client submits is still
    acknowledged (by the other node). Once the filler file is removed it recovers by itself
    (health 200) and takes its keys again.
  - the copy holder's: it refuses the copies it cannot store and says so in its health; the
    owner goes on acknowledging (min_replicas 1: alone, saying so in the answer's
    `replicas`, under-replicated until the holder has room again); once room is back it
    recovers and the owner's tasks get their copies.

At the end every acknowledged task has succeeded and is readable from both nodes.

    python3 full_disk.py /path/to/chorus

Needs root (it mounts tmpfs); exits 77 (skipped) otherwise. Bounded: every wait has a deadline;
about a minute in all. Only what it started is ended, by PID; the mounts are undone.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, launch, step, stop  # noqa: E402  (the folder's shared helpers)

CHORUS = sys.argv[1]
work = tempfile.mkdtemp(prefix="chorus-disk-")
procs, http_at, mounts = {}, {}, []
acknowledged = []


logs = Logs(work, ("a", "b"))
fail, until = logs.fail, logs.until


def health(n):
    s, j, _ = call(http_at[n], "GET", "/v1/health")
    return s, (j or {}).get("error", {}).get("code")


def owner_of(key):
    _, j, _ = call(http_at["b"], "GET", f"/v1/ring/lookup?key={key}")
    return j["candidates"][0]["name"]


def keys_of(owner, count):
    keys = [f"k{i}" for i in range(400) if owner_of(f"k{i}") == owner][:count]
    if len(keys) < count:
        fail(f"fewer than {count} keys have {owner} first")
    return keys


def fill(n):
    """Writes a file on n's mount until the disk is full."""
    path = os.path.join(work, f"disk-{n}", "filler")
    block = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass
    return path


def submit(at, key, ms=10, expect_owner=None):
    body = {"key": key, "type": "sleep", "payload": {"ms": ms, "pad": "x" * 2000}}
    s, j, _ = call(http_at[at], "POST", "/v1/tasks", body)
    if s not in (200, 202):
        return s, j
    acknowledged.append(j["id"])
    if expect_owner and j["owner"] != expect_owner:
        fail(f"task for {key} ran on {j['owner']}, expected {expect_owner}")
    return s, j


def main():
    if os.geteuid() != 0:
        print("skipped: needs root to mount tmpfs")
        sys.exit(77)
    for n in ("a", "b"):
        d = os.path.join(work, f"disk-{n}")
        os.makedirs(d)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", d]).returncode:
            print("skipped: tmpfs cannot be mounted here")
            sys.exit(77)
        mounts.append(d)
    cfg = os.path.join(work, "agent.json")
    with open(cfg, "w") as f:
        # Two members, one failing: a task can have no copy meanwhile, and min_replicas 1
        # takes it alone (saying so) rather than refusing it.
        json.dump({"tasks": {"candidates": 2, "forward_timeout_ms": 1000, "min_replicas": 1}},
                  f)
    gossip_a = None
    for n in ("a", "b"):
        seeds = ["--seed", gossip_a] if n == "b" else []
        p, g, h = launch(CHORUS, n, os.path.join(work, f"{n}.log"),
                         ["--profile", "local", "--config", cfg, "--data-dir",
                          os.path.join(work, f"disk-{n}", "data"), *seeds])
        if g is None:
            fail(f"{n} did not start")
        procs[n], http_at[n] = p, h
        if n == "a":
            gossip_a = g

    def joined():
        _, j, _ = call(http_at["a"], "GET", "/v1/members")
        return sum(m["state"] == "alive" for m in j["members"]) == 2
    until(joined, 30, "a and b did not converge")
    mine = keys_of("a", 6)

    step("the owner's disk fills")
    filler = fill("a")
    # a's next commit fails: the task goes to b; a says why in its health.
    for key in mine:
        s, j = submit("b", key)
        if s not in (200, 202):
            fail(f"a task for a's key {key} was refused ({s} {j}) while b had room")
    until(lambda: health("a") == (503, "journal_failing"), 20,
          "a's health did not report the failing journal")
    for key in mine:
        submit("b", key, expect_owner="b")
    s, j, _ = call(http_at["a"], "GET", "/v1/self")
    if j["tasks"]["journal"]["state"] != "failing":
        fail(f"a's /v1/self says {j['tasks']['journal']}")
    step(f"a refuses with: {j['tasks']['journal']['error'][:100]}")
    os.remove(filler)
    until(lambda: health("a") == (200, None), 60, "a did not recover once its disk had room")
    until(lambda: submit("b", mine[0])[1].get("owner") == "a", 20,
          "a's keys did not come back to it after it recovered")
    step("a recovered and takes its keys again")

    step("the copy holder's disk fills")
    filler = fill("b")
    for key in mine:
        s, j = submit("a", key, ms=50)
        if s not in (200, 202):
            fail(f"a task was refused ({s} {j}) because its copy holder's disk was full")
    until(lambda: health("b") == (503, "journal_failing"), 20,
          "b's health did not report its failing journal")
    # A long task taken while b cannot store its copy: acknowledged alone, and says so.
    s, j = submit("a", mine[0], ms=20000)
    if s != 202 or j.get("replicas") != 1:
        fail(f"a long task while b's disk is full: {s} {j}")

    def under_replicated(n):
        return call(http_at[n], "GET", "/v1/self")[1]["tasks"]["under_replicated"]
    if under_replicated("a") < 1:
        fail("a does not count its task without a copy as under-replicated")
    os.remove(filler)
    until(lambda: health("b") == (200, None), 60, "b did not recover once its disk had room")
    # The copy is made in the background once b can store it, while the task still runs.
    until(lambda: under_replicated("a") == 0, 15, "a's task never got its copy on b")
    s, j, _ = call(http_at["b"], "GET", f"/v1/tasks/{j['id']}")
    if s != 200 or j["state"] != "running":
        fail(f"b does not hold the running task's copy: {s} {j}")
    step("b recovered, and the task taken without a copy got one")

    def all_done():
        for tid in acknowledged:
            for n in ("a", "b"):
                s, j, _ = call(http_at[n], "GET", f"/v1/tasks/{tid}")
                if s != 200 or j["state"] != "succeeded":
                    return False
        return True
    until(all_done, 60, "an acknowledged task did not succeed")
    print(f"full disk: {len(acknowledged)} tasks acknowledged, all succeeded; the owner and the "
          "copy holder each reported their full disk in /v1/health and recovered by themselves")


def cleanup():
    stop(procs)
    for d in mounts:
        subprocess.run(["umount", d])
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    finally:
        cleanup()
