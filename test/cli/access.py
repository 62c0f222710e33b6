"""Who may call the HTTP API, on real agents: ACL tokens, the Host and Origin checks, the audit
log.

  1. `chorus tokengen` makes a read, a write and an admin token; agent a starts with the token
     file (--acl-tokens), an audit log that rotates at 16 KiB, and a key (so the keyring answers).
  2. The matrix: every endpoint x {no token, a bad token, read, write, admin} gets 401 without a
     known token, 403 with a scope too small, and the endpoint's own answer otherwise;
     /v1/health answers everyone.
  3. The CLI: --token and $CHORUS_HTTP_TOKEN are sent; without one it fails and says why.
  4. The audit log: one line per mutating call and per refusal, with the caller's token id, the
     peer, the outcome and the task's id; no secret, no payload, no key in it; rotated files
     .1 and .2 and no more.
  5. Agent b, without tokens: a Host that is a name not given (DNS rebinding) and a POST whose
     Origin is another site (CSRF) are refused, and b does not leave; a name given with
     --http-name is let in.
  6. A token file that does not parse stops an agent at start with exit status 2.
  7. POST /v1/leave with the write token is refused; with the admin token a leaves and exits 0.

    python3 access.py /path/to/chorus

Bounded: each wait has a deadline; the run takes a few seconds. Only the processes it started
are ended, by PID, however the test ends.
"""
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, launch, refused_at_start, step, stop  # noqa: E402  (the folder's shared helpers)

CHORUS = sys.argv[1]
work = tempfile.mkdtemp(prefix="chorus-access-")
procs = {}
logs = Logs(work, ["a", "b", "bad"])
fail, until = logs.fail, logs.until


def tokengen(token_id, scope):
    out = subprocess.run([CHORUS, "tokengen", "--id", token_id, "--scope", scope], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    if len(out) != 2 or len(out[0]) != 64 or out[0] in out[1]:
        fail(f"chorus tokengen printed {out!r}: want the secret, then an entry without it")
    entry = json.loads(out[1])
    if entry["id"] != token_id or entry["scope"] != scope:
        fail(f"chorus tokengen's entry is {entry!r}")
    return out[0], entry


def raw_status(http_at, request):
    """The status of the answer to a hand-written request (for headers http.client sets)."""
    host, port = http_at.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0


def run():
    step("1. tokens, and agent a with --acl-tokens and --audit-log")
    secrets, entries = {}, []
    for scope, token_id in (("read", "dashboard"), ("write", "ci"), ("admin", "ops")):
        secrets[scope], entry = tokengen(token_id, scope)
        entries.append(entry)
    tokens_file = os.path.join(work, "tokens.json")
    with open(tokens_file, "w") as f:
        json.dump({"tokens": entries}, f)
    config = os.path.join(work, "a.json")
    with open(config, "w") as f:
        json.dump({"audit_log_bytes_max": 16384, "audit_log_files": 2, "tasks": {"replicas": 1}}, f)
    key = subprocess.run([CHORUS, "keygen"], check=True, capture_output=True,
                         text=True).stdout.strip()
    audit = os.path.join(work, "audit.log")
    proc, _, a = launch(CHORUS, "a", os.path.join(work, "a.log"),
                        ["--config", config, "--acl-tokens", tokens_file, "--audit-log", audit,
                         "--encrypt", key])
    procs["a"] = proc
    if a is None:
        fail("a did not start")

    def as_(scope, method, path, body=None):
        headers = {}
        if scope == "bad":
            headers["Authorization"] = "Bearer " + "0" * 64
        elif scope is not None:
            headers["Authorization"] = "Bearer " + secrets[scope]
        return call(a, method, path, body=body, headers=headers)

    step("2. the matrix: every endpoint x {none, bad, read, write, admin}")
    s, task, _ = as_("write", "POST", "/v1/tasks", {"key": "k1", "type": "echo",
                                                    "payload": {"private": "payload-text"}})
    if s not in (200, 202):
        fail(f"a task submitted with the write token got {s}")
    task_id = task["id"]
    new_key = subprocess.run([CHORUS, "keygen"], check=True, capture_output=True,
                             text=True).stdout.strip()
    task_body = {"key": "k2", "type": "echo", "payload": 1}
    # (method, path, body, scope it needs, the answer with a scope that covers it)
    endpoints = [
        ("GET", "/v1/members", None, "read", {200}),
        ("GET", "/v1/self", None, "read", {200}),
        ("GET", "/metrics", None, "read", {200}),
        ("GET", "/v1/ring", None, "read", {200}),
        ("GET", "/v1/ring/lookup?key=k1", None, "read", {200}),
        ("GET", "/v1/tasks/" + task_id, None, "read", {200}),
        ("GET", "/v1/nowhere", None, "read", {404}),
        ("POST", "/v1/tasks", task_body, "write", {200, 202}),
        ("DELETE", "/v1/tasks/" + task_id, None, "write", {200, 409}),
        ("GET", "/v1/keyring", None, "admin", {200}),
        ("POST", "/v1/keyring", {"op": "install", "key": new_key}, "admin", {200}),
        ("GET", "/v1/tasks", None, "read", {200}),
        ("GET", "/v1/self/tags", None, "read", {200}),
        ("GET", "/v1/coordinator", None, "read", {200}),
        ("POST", "/v1/self/tags", {"set": {"rack": "r1"}}, "admin", {200}),
        ("GET", "/v1/drain", None, "read", {200}),
        ("POST", "/v1/drain", None, "admin", {200}),
        ("DELETE", "/v1/drain", None, "admin", {200}),
        ("POST", "/v1/force-leave/nobody", None, "admin", {404}),
        ("GET", "/v1/monitor?level=loud", None, "read", {400}),
        ("GET", "/v1/health", None, None, {200}),
        ("GET", "/", None, None, {200}),  # the dashboard's page: no data in it
        ("POST", "/", {}, "write", {405}),
    ]
    rank = {None: 0, "read": 1, "write": 2, "admin": 3}
    checked = 0
    for method, path, body, needs, ok in endpoints:
        for who in (None, "bad", "read", "write", "admin"):
            s, _, headers = as_(who, method, path, body)
            if needs is None:
                want = ok
            elif who in (None, "bad"):
                want = {401}
            elif rank[who] < rank[needs]:
                want = {403}
            else:
                want = ok
            if s not in want:
                fail(f"{method} {path} with {who or 'no'} token: {s}, want {sorted(want)}")
            if s == 401 and "Bearer" not in headers.get("WWW-Authenticate", ""):
                fail(f"{method} {path}: a 401 without WWW-Authenticate: Bearer")
            checked += 1
    # The event stream's head, with and without a token.
    for who, want in ((None, 401), ("read", 200)):
        auth = f"Authorization: Bearer {secrets[who]}\r\n" if who else ""
        got = raw_status(a, f"GET /v1/members/stream HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
        if got != want:
            fail(f"GET /v1/members/stream with {who or 'no'} token: {got}, want {want}")
        checked += 1
    print(f"  {checked} calls, each with the status its token earns")

    step("3. the CLI sends --token or $CHORUS_HTTP_TOKEN, and says why without one")
    cli = [CHORUS, "members", "--http", a]
    r = subprocess.run(cli, capture_output=True, text=True)
    if r.returncode != 1 or "401" not in r.stderr or "token" not in r.stderr:
        fail(f"chorus members without a token: exit {r.returncode}, stderr {r.stderr!r}")
    r = subprocess.run(cli + ["--token", secrets["read"]], capture_output=True, text=True)
    if r.returncode != 0 or "\na " not in r.stdout:
        fail(f"chorus members --token: exit {r.returncode}, {r.stdout!r} {r.stderr!r}")
    env = dict(os.environ, CHORUS_HTTP_TOKEN=secrets["write"])
    r = subprocess.run([CHORUS, "submit", "--http", a, "--key", "k3", "--type", "echo",
                        "--payload", "3"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        fail(f"chorus submit with $CHORUS_HTTP_TOKEN: exit {r.returncode}, {r.stderr!r}")
    r = subprocess.run([CHORUS, "keys", "--http", a], capture_output=True, text=True, env=env)
    if r.returncode != 1 or "403" not in r.stderr:
        fail(f"chorus keys with a write token: exit {r.returncode}, {r.stderr!r}")

    step("4. the audit log: who did what, and nothing secret")
    if os.path.exists(audit + ".1"):
        fail("the audit log rotated before 16 KiB")
    early = [json.loads(line) for line in open(audit).read().splitlines()]
    callers = {line["caller"] for line in early}
    if callers != {"anonymous", "dashboard", "ci", "ops"}:
        fail(f"the audit log names callers {callers}: want the three tokens' and anonymous")
    refused = {(line["caller"], line["outcome"]) for line in early if line["status"] in (401, 403)}
    if not {("anonymous", "missing_token"), ("anonymous", "bad_token"),
            ("dashboard", "scope")} <= refused:
        fail(f"the audit log's refusals are {refused}")
    keyring = [line for line in early if line["path"] == "/v1/keyring" and line["status"] == 200]
    if not keyring or not keyring[0].get("subject", "").startswith("install sha256:"):
        fail(f"the keyring install's audit line is {keyring[:1]}")
    for n in range(300):  # enough lines to rotate twice
        as_("write", "POST", "/v1/tasks", {"key": f"r{n}", "type": "echo", "payload": n})
    files = sorted(glob.glob(audit + "*"))
    if files != [audit, audit + ".1", audit + ".2"]:
        fail(f"the audit log's files are {files}: want the log, .1 and .2")
    text = "".join(open(f).read() for f in reversed(files))
    lines = [json.loads(line) for line in text.splitlines()]
    for secret in list(secrets.values()) + [key, new_key, "payload-text", "0" * 64]:
        if secret in text:
            fail(f"the audit log holds a secret or a payload: {secret[:12]}...")
    for line in lines:
        for field in ("time", "caller", "peer", "method", "path", "status", "outcome"):
            if field not in line:
                fail(f"an audit line without {field}: {line}")
        if line["method"] == "GET" and line["status"] not in (401, 403):
            fail(f"a GET that was not refused is in the audit log: {line}")
    for s in os.stat(audit), os.stat(audit + ".1"):
        if s.st_mode & 0o777 != 0o600 or s.st_size > 16384:
            fail(f"an audit file is {oct(s.st_mode)} and {s.st_size} bytes: want 0600, <= 16 KiB")
    submits = [line for line in lines if line["path"] == "/v1/tasks" and line["status"] == 202]
    if not submits or not all(line.get("task") for line in submits):
        fail("an accepted task's audit line does not name the task")
    if not all(line["peer"].startswith("127.0.0.1:") for line in lines):
        fail("an audit line's peer is not the client's address")
    print(f"  {len(early)} lines before rotation, {len(lines)} kept over {len(files)} files")

    step("5. agent b without tokens: no foreign Host, no cross-site POST")
    proc, _, b = launch(CHORUS, "b", os.path.join(work, "b.log"), ["--http-name", "chorus.test", "--config", config])
    procs["b"] = proc
    if b is None:
        fail("b did not start")
    port = b.rsplit(":", 1)[1]
    cases = [
        (f"GET /v1/members HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n", 403),
        (f"POST /v1/leave HTTP/1.1\r\nHost: rebind.evil.example:{port}\r\n"
         "Content-Length: 0\r\n\r\n", 403),
        (f"POST /v1/leave HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
         "Origin: http://evil.example\r\nContent-Length: 0\r\n\r\n", 403),
        (f"GET /v1/members HTTP/1.1\r\nHost: chorus.test:{port}\r\n\r\n", 200),
        (f"GET /v1/members HTTP/1.1\r\nHost: localhost:{port}\r\n"
         "Origin: http://evil.example\r\n\r\n", 200),
        (f"GET /v1/health HTTP/1.1\r\nHost: evil.example\r\n\r\n", 200),
    ]
    for request, want in cases:
        got = raw_status(b, request.encode())
        if got != want:
            fail(f"b answered {got}, want {want}, to {request.splitlines()[:3]}")
    if call(b, "GET", "/v1/health")[0] != 200 or procs["b"].poll() is not None:
        fail("b left, or stopped serving, after a refused leave")
    s, _, _ = call(b, "POST", "/v1/tasks", {"key": "k", "type": "echo", "payload": 1})
    if s not in (200, 202):
        fail(f"a local client's submit to b got {s}")

    step("6. a token file that does not parse stops an agent at start")
    broken = os.path.join(work, "broken.json")
    with open(broken, "w") as f:
        json.dump({"tokens": [{"id": "x", "scope": "root", "sha256": "00"}]}, f)
    rc, said = refused_at_start(CHORUS, os.path.join(work, "bad.log"), ["--acl-tokens", broken])
    if rc != 2 or "tokens[0].scope" not in said:
        fail(f"an agent with a bad token file: exit {rc}, said {said!r}")

    step("7. leave: refused to the write token, done for the admin token")
    if as_("write", "POST", "/v1/leave")[0] != 403:
        fail("the write token made a leave")
    s, _, _ = as_("admin", "POST", "/v1/leave")
    if s != 200:
        fail(f"the admin token's leave got {s}")
    try:
        rc = procs["a"].wait(timeout=30)
    except subprocess.TimeoutExpired:
        fail("a did not exit within 30 s of leaving")
    if rc != 0:
        fail(f"a exited {rc} after leaving")
    last = json.loads(open(audit).read().splitlines()[-1])
    if last["path"] != "/v1/leave" or last["caller"] != "ops" or last["status"] != 200:
        fail(f"the audit log's last line is {last}, not ops's leave")
    print("access: the matrix, the CLI's token, the audit log, Host and Origin checks all hold")


try:
    run()
finally:
    stop(procs)
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)
