"""Hostile input against a 3-node cluster of real agents on loopback, over HTTP, UDP and TCP.

Each class of input that once stopped or starved a node is sent again, and after each the test
asserts that every node still serves, that every real member is alive in every view, and that
each agent's RSS stays bounded:

  HTTP  numbers out of range, nesting past the limit, bytes that are not UTF-8 in a path,
        control characters in a key, waits of inf and nan; 1,030 blocking queries whose
        clients hang up at once (the places must be free again); 20 keep-alive connections
        each sending a 1 MiB body; 250 connections from one address.
  UDP   garbage, a union type without its value (the fuzzing reproducers), member names that
        are not UTF-8 or hold a newline, a forged Dead(2^32-1, left) about a live member, and a
        flood of 3,000 forged members (the API must answer within 1 s during and after it).
  TCP   garbage frames, the fuzzing reproducers, a frame announcing 2 GiB, 300 connections,
        and many half-sent frames at once.

Forged datagrams are built with flatc (the schema compiler the build uses) from JSON.

    python3 hostile_input.py /path/to/chorus /path/to/schemas/chorus.fbs /path/to/test/fuzz

Prints what it measured. Bounded: each wait has a deadline, the whole run takes about a minute.
Only the processes it started are ended, by PID, however the test ends.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, launch, step, stop  # noqa: E402  (the folder's shared helpers)

CHORUS, SCHEMA, FUZZ = sys.argv[1], sys.argv[2], sys.argv[3]
FORGED_MEMBERS = 3000
RSS_MAX_MIB = 64
API_MAX_S = 1.0
NAMES = ["a", "b", "c"]

work = tempfile.mkdtemp(prefix="chorus-hostile-")
procs = {}
gossip = {}  # name -> "127.0.0.1:port"
http_at = {}
worst_api_s = 0.0
worst_rss_mib = 0.0


logs = Logs(work, NAMES)
fail, until = logs.fail, logs.until


def port(addr):
    return int(addr.rsplit(":", 1)[1])


# ---- views, health, memory

def view(n):
    s, v, _ = call(http_at[n], "GET", "/v1/members", timeout=5)
    if s != 200:
        fail(f"{n}: GET /v1/members answered {s}")
    return {m["name"]: m["state"] for m in v["members"]}


def all_alive():
    try:
        return all(all(view(o).get(m) == "alive" for m in NAMES) for o in NAMES)
    except OSError:
        return False


def sanitized(n):
    with open(f"/proc/{procs[n].pid}/maps") as f:
        return "libasan" in f.read()


def rss_mib(n):
    with open(f"/proc/{procs[n].pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def check(after):
    """Every agent runs and serves, every real member is alive in every view, RSS bounded."""
    global worst_rss_mib
    for n in NAMES:
        if procs[n].poll() is not None:
            fail(f"{n} exited ({procs[n].returncode}) after {after}")
    until(all_alive, 20, f"not every real member was alive in every view after {after}")
    for n in NAMES:
        s, _, _ = call(http_at[n], "GET", "/v1/health")
        if s != 200:
            fail(f"{n}: /v1/health answered {s} after {after}")
        # Under AddressSanitizer memory says nothing (shadow memory, and freed blocks held in
        # quarantine); the pass without it checks the bound.
        if sanitized(n):
            continue
        rss = rss_mib(n)
        worst_rss_mib = max(worst_rss_mib, rss)
        if rss > RSS_MAX_MIB:
            fail(f"{n}: RSS {rss:.1f} MiB after {after}, over {RSS_MAX_MIB} MiB")
    step(f"ok after {after}")


def timed_api(n):
    """GET /v1/members and /v1/health on n, each within API_MAX_S."""
    global worst_api_s
    for path in ("/v1/health", "/v1/members"):
        t0 = time.monotonic()
        s, _, _ = call(http_at[n], "GET", path, timeout=10)
        took = time.monotonic() - t0
        worst_api_s = max(worst_api_s, took)
        if took > API_MAX_S:
            fail(f"{n}: {path} took {took:.2f} s, over {API_MAX_S} s")
        if path == "/v1/health" and s != 200:
            fail(f"{n}: /v1/health answered {s}")


# ---- raw traffic

def udp(to, data):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, ("127.0.0.1", port(to)))


def tcp(to, data, linger=False):
    """Sends DATA on a new connection to TO; returns the socket (closed unless LINGER)."""
    s = socket.create_connection(("127.0.0.1", port(to)), timeout=5)
    if data:
        s.sendall(data)
    if linger:
        return s
    s.close()
    return None


def http_raw(to, data, read=True):
    s = socket.create_connection(("127.0.0.1", port(to)), timeout=10)
    s.sendall(data)
    out = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
    s.close()
    return out


# Stands for a byte that is never UTF-8 in packet(): flatc reads the escape \xff in a JSON
# string as that byte.
BAD_BYTE = "<0xff>"


def packets(docs):
    """Flatbuffers bytes of each JSON packet in DOCS, built by flatc from the schema."""
    d = tempfile.mkdtemp(dir=work)
    files = []
    for i, doc in enumerate(docs):
        path = os.path.join(d, f"p{i:05}.json")
        with open(path, "w") as f:
            f.write(json.dumps(doc).replace(BAD_BYTE, "\\xff"))
        files.append(path)
    subprocess.run(["flatc", "--binary", "--allow-non-utf8", "-o", d, SCHEMA, *files],
                   check=True, capture_output=True)
    return [open(p[:-5] + ".bin", "rb").read() for p in files]


def packet(updates, sender="mallory"):
    return {"version": 1, "cluster": "chorus", "sender": sender, "sender_addr": "127.0.0.1:9",
            "updates_type": [u[0] for u in updates], "updates": [u[1] for u in updates]}


# ---- the classes of input

def hostile_http():
    step("HTTP: hostile JSON, paths, keys and waits")
    for n in NAMES:
        cases = [
            ("POST", "/v1/tasks", b'{"key":"a","type":"echo","payload":1e999}', 400, "bad_json"),
            ("POST", "/v1/tasks", b"[" * 150_000, 400, "too_deep"),
            ("POST", "/v1/tasks", b'{"key":"a\\nb","type":"echo"}', 400, "bad_key"),
            ("POST", "/v1/tasks?wait=nan", b'{"key":"a","type":"echo"}', 400, "bad_wait"),
            ("GET", "/v1/members?index=1&wait=inf", None, 400, "bad_wait"),
        ]
        for method, path, body, want, code in cases:
            s, j, _ = call(http_at[n], method, path, raw_body=body)
            if s != want or (j or {}).get("error", {}).get("code") != code:
                fail(f"{n}: {method} {path[:40]} answered {s} {j}, wanted {want} {code}")
        raw = http_raw(http_at[n], b"GET /v1/x\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 404") or "error" not in json.loads(body):
            fail(f"{n}: a path that is not UTF-8 got {raw[:80]!r}")
    check("hostile HTTP requests")

    step("HTTP: 1,030 blocking queries that hang up at once")
    n = NAMES[0]
    index = view_index(n)
    q = f"GET /v1/members?index={index}&wait=5m HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    socks = []
    for _ in range(1030):
        try:
            socks.append(tcp(http_at[n], q, linger=True))
        except OSError:
            break  # the per-client cap may refuse some: that is a limit working
    for s in socks:
        s.close()
    # Their places are free again: a blocking query is held, not refused with 429.
    def held():
        s, j, h = call(http_at[n], "GET", f"/v1/members?index={view_index(n)}&wait=200ms")
        return s == 200
    until(held, 20, "blocking queries were refused after their clients left")
    check("1,030 abandoned blocking queries")

    step("HTTP: 20 keep-alive connections each sending a 1 MiB body")
    body = b'{"pad":"' + b"x" * ((1 << 20) - 20) + b'"}'
    req = (b"POST /v1/self HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    keep = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port(http_at[n])), timeout=10)
        s.sendall(req)
        s.recv(4096)  # the 405, read; the connection stays open and idle
        keep.append(s)
    check("20 idle keep-alive connections that sent 1 MiB each")
    for s in keep:
        s.close()

    step("HTTP: 250 connections from one address")
    many = []
    for _ in range(250):
        try:
            many.append(socket.create_connection(("127.0.0.1", port(http_at[n])), timeout=5))
        except OSError:
            break
    timed_api(NAMES[1])
    for s in many:
        s.close()
    check("250 connections from one address")


def view_index(n):
    s, v, _ = call(http_at[n], "GET", "/v1/members")
    return v["index"]


def hostile_udp():
    step("UDP: garbage and the fuzzing reproducers")
    for n in NAMES:
        udp(gossip[n], b"this is not a chorus packet")
        udp(gossip[n], os.urandom(3))
        for f in glob.glob(os.path.join(FUZZ, "regressions", "packet", "*")):
            if not f.endswith(".md"):
                udp(gossip[n], open(f, "rb").read())
    check("garbage datagrams")

    step("UDP: names that are not UTF-8 or hold a newline")
    bad = packets([
        packet([("Alive", {"name": "evil" + BAD_BYTE, "addr": "127.0.0.1:9", "incarnation": 1})]),
        packet([("Alive", {"name": "evil\nmember alive name=b", "addr": "127.0.0.1:9",
                           "incarnation": 1})]),
        packet([("Suspect", {"name": "b", "incarnation": 1, "from": "x\x1b[31m"})]),
        {"version": 1, "cluster": "chorus" + BAD_BYTE, "sender": "m", "sender_addr": "127.0.0.1:9"},
    ])
    for n in NAMES:
        for b in bad:
            udp(gossip[n], b)
    check("names that are not clean text")
    for n in NAMES:
        names = set(view(n))
        if names != set(NAMES):
            fail(f"{n} lists members it should have refused: {sorted(names)}")

    step("UDP: a forged Dead(2^32-1, left) about b, sent to a")
    forged = packets([packet([("Dead", {"name": "b", "incarnation": 4294967295,
                                        "incarnation64": 4294967295, "from": "mallory",
                                        "left": True})])])[0]
    udp(gossip["a"], forged)
    until(all_alive, 15, "b did not come back alive in every view after a forged Dead(2^32-1)")
    s, me, _ = call(http_at["b"], "GET", "/v1/self")
    step(f"b refuted at incarnation {me['incarnation']}")
    check("a forged Dead(2^32-1, left)")

    step(f"UDP: a flood of {FORGED_MEMBERS} forged members")
    docs = []
    batch = 12
    for i in range(0, FORGED_MEMBERS, batch):
        docs.append(packet([("Alive", {"name": f"forged-{k:05}", "addr": "127.0.0.1:9",
                                       "incarnation": 1})
                            for k in range(i, min(i + batch, FORGED_MEMBERS))]))
    flood = packets(docs)
    t0 = time.monotonic()
    # Every node gets every datagram, paced so that the kernel's receive buffer (not the
    # agent) is not what drops them; the API is asked between batches.
    for i, b in enumerate(flood):
        for n in NAMES:
            udp(gossip[n], b)
        time.sleep(0.002)
        if i % 25 == 0:
            timed_api(NAMES[(i // 25) % len(NAMES)])
    step(f"sent {len(flood)} datagrams to each node in {time.monotonic() - t0:.1f} s")

    def everyone_knows():
        return all(len(view(n)) >= FORGED_MEMBERS for n in NAMES)
    until(everyone_knows, 60, "the forged members did not reach every node")
    step(f"every node holds {min(len(view(n)) for n in NAMES)} members or more")
    # While the forged members are probed, suspected and declared dead, the API answers and
    # the real members keep seeing each other alive.
    deadline = time.time() + 20
    while time.time() < deadline:
        for n in NAMES:
            timed_api(n)
        time.sleep(0.5)
    check(f"a flood of {FORGED_MEMBERS} forged members")


def hostile_tcp():
    step("TCP: garbage, reproducers, 2 GiB, 300 connections, half-sent frames")
    for n in NAMES:
        tcp(gossip[n], b"\x00\x00\x00\x05hello")
        tcp(gossip[n], b"\x7f\xff\xff\xffxx")
        for f in glob.glob(os.path.join(FUZZ, "regressions", "stream", "*")):
            if not f.endswith(".md"):
                tcp(gossip[n], open(f, "rb").read())
        for f in glob.glob(os.path.join(FUZZ, "regressions", "frame", "*")):
            if not f.endswith(".md"):
                data = open(f, "rb").read()
                tcp(gossip[n], len(data).to_bytes(4, "big") + data)
    held = []
    for _ in range(300):
        try:
            held.append(tcp(gossip["a"], b"", linger=True))
        except OSError:
            break
    half = (60 << 20).to_bytes(4, "big") + b"\x00" * (1 << 20)
    for _ in range(8):
        try:
            held.append(tcp(gossip["b"], half, linger=True))
        except OSError:
            break
    timed_api("a")
    check("hostile frames and 300 held connections")
    for s in held:
        s.close()


def main():
    step("starting a, b, c")
    for i, n in enumerate(NAMES):
        seeds = ["--seed", gossip["a"]] if i > 0 else []
        p, g, h = launch(CHORUS, n, os.path.join(work, f"{n}.log"),
                         ["--profile", "local", "--log-level", "info", *seeds])
        if g is None:
            fail(f"{n} did not start")
        procs[n], gossip[n], http_at[n] = p, g, h
    until(all_alive, 30, "the three agents did not converge")
    check("start")
    hostile_http()
    hostile_udp()
    hostile_tcp()
    limits = 0
    for n in NAMES:
        with open(os.path.join(work, f"{n}.log"), errors="replace") as f:
            limits += sum(" limit reached " in line for line in f)
    rss = (f"worst RSS {worst_rss_mib:.1f} MiB (limit {RSS_MAX_MIB})" if not sanitized("a")
           else "RSS not checked (a sanitizer build)")
    print(f"hostile input: every node alive and serving; worst API answer {worst_api_s:.3f} s "
          f"(limit {API_MAX_S} s); {rss}; "
          f"{FORGED_MEMBERS} forged members; 'limit reached' log lines: {limits}")


def cleanup():
    stop(procs)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    finally:
        cleanup()
