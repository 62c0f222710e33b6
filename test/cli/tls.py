"""TLS on the HTTP API, on real agents, checked with openssl s_client, curl and the CLI.

  1. openssl makes a CA, a server certificate from it for 127.0.0.1 and localhost, a client
     certificate from it (CN=ops), and a self-signed certificate nobody trusts.
  2. Agent a serves HTTPS (--tls-cert, --tls-key): `openssl s_client` verifies it against the
     CA and gets an answer through it; `curl --cacert` gets the members; curl trusting only the
     system's store or another CA refuses it; plain HTTP to it gets no answer and is counted,
     and a serves on.
  3. The CLI: `--http https://127.0.0.1:PORT --ca CA` and $CHORUS_CACERT work, by address and
     by name (localhost); without the CA it fails and says why.
  4. Agent b requires client certificates (--tls-ca): without one, or with one the CA did not
     sign, the handshake fails; with one, a task goes through, a second connection resumes the
     session, and the audit log names the certificate's subject as the caller.
  5. Agent c presents the self-signed certificate: curl and the CLI with the CA refuse it.
  6. A certificate file that does not load stops an agent at start with exit status 2.

    python3 tls.py /path/to/chorus

Bounded: each wait has a deadline; the run takes a few seconds. Only the processes it started
are ended, by PID, however the test ends.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, launch, refused_at_start, step, stop  # noqa: E402  (the folder's shared helpers)

CHORUS = sys.argv[1]
work = tempfile.mkdtemp(prefix="chorus-tls-")
procs = {}
logs = Logs(work, ["a", "b", "c", "bad"])
fail = logs.fail


def path(name):
    return os.path.join(work, name)


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=work)
    if r.returncode != 0:
        fail(f"openssl {' '.join(args)}: {r.stderr}")


def make_certificates():
    # A CA, and two certificates it signs; and one that signs itself.
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=chorus test CA")
    for name, subj, ext in (
            ("server", "/CN=chorus agent", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            ("client", "/O=chorus/CN=ops", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj)
        with open(path(f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "2", "-subj", "/CN=rogue",
            "-addext", "subjectAltName=IP:127.0.0.1")


def start(name, args):
    proc, _, http_at = launch(CHORUS, name, path(f"{name}.log"), args)
    procs[name] = proc
    if http_at is None:
        fail(f"{name} did not start")
    return http_at


def curl(*args):
    """(exit status, status code or 0, body)."""
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", path("body"), "-w",
                        "%{http_code}", *args], capture_output=True, text=True)
    body = open(path("body")).read() if os.path.exists(path("body")) else ""
    if os.path.exists(path("body")):
        os.remove(path("body"))
    return r.returncode, int(r.stdout or 0), body, r.stderr


def chorus(*args, env=None):
    return subprocess.run([CHORUS, *args], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, **(env or {})))


def run():
    step("1. a CA, a server and a client certificate from it, and a self-signed one")
    make_certificates()
    ca, cert, key = path("ca.pem"), path("server.pem"), path("server.key")
    config = path("agent.json")
    with open(config, "w") as f:
        json.dump({"tasks": {"replicas": 1}}, f)

    step("2. agent a serves HTTPS: s_client and curl verify it; others refuse it")
    a = start("a", ["--tls-cert", cert, "--tls-key", key, "--config", config])
    port = a.rsplit(":", 1)[1]
    r = subprocess.run(["openssl", "s_client", "-connect", a, "-CAfile", ca,
                        "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet"],
                       input="GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Connection: close\r\n\r\n",
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0 or "HTTP/1.1 200" not in r.stdout:
        fail(f"openssl s_client: exit {r.returncode}, {r.stdout!r} {r.stderr[-400:]!r}")
    rc, status, body, _ = curl("--cacert", ca, f"https://127.0.0.1:{port}/v1/members")
    if rc != 0 or status != 200 or json.loads(body)["self"] != "a":
        fail(f"curl --cacert: exit {rc}, status {status}, {body[:200]!r}")
    rc, status, body, _ = curl("--cacert", ca, f"https://localhost:{port}/v1/health")
    if rc != 0 or status != 200:
        fail(f"curl --cacert by name: exit {rc}, status {status}")
    for what, args in (("the system's store", []), ("another CA", ["--cacert", path("rogue.pem")])):
        rc, status, _, err = curl(*args, f"https://127.0.0.1:{port}/v1/health")
        if rc != 60:  # "Peer certificate cannot be authenticated with known CA certificates"
            fail(f"curl trusting {what} got exit {rc} (status {status}), not 60: {err}")
    def failed_handshakes():
        _, _, text, _ = curl("--cacert", ca, f"https://127.0.0.1:{port}/metrics")
        for line in text.splitlines():
            if line.startswith('chorus_http_rejected_total{reason="tls_handshake"} '):
                return int(float(line.split()[-1]))
        fail("no chorus_http_rejected_total{reason=\"tls_handshake\"} in /metrics")
    before = failed_handshakes()
    rc, status, _, err = curl(f"http://127.0.0.1:{port}/v1/health")
    if rc == 0 or status != 0:
        fail(f"plain HTTP to the HTTPS port was answered: exit {rc}, status {status}")
    if failed_handshakes() != before + 1:
        fail("the plain HTTP request was not counted as a failed handshake")
    # Many records each way: a 600 KB payload in, the same back; and an event stream.
    payload = "x" * 600_000
    with open(path("big.json"), "w") as f:
        json.dump({"key": "big", "type": "echo", "payload": payload}, f)
    rc, status, body, _ = curl("--cacert", ca, "-H", "Content-Type: application/json",
                               "--data-binary", "@" + path("big.json"),
                               f"https://127.0.0.1:{port}/v1/tasks?wait=10s")
    if rc != 0 or status != 200 or json.loads(body).get("result") != payload:
        fail(f"a 600 KB task over TLS: exit {rc}, status {status}, {body[:200]!r}")
    rc, status, body, _ = curl("--cacert", ca, "-N", "--max-time", "2",
                               f"https://127.0.0.1:{port}/v1/members/stream")
    if status != 200 or "event: snapshot" not in body:
        fail(f"the event stream over TLS: exit {rc}, status {status}, {body[:200]!r}")
    print("  s_client and curl --cacert complete, a 600 KB task and an event stream pass; the "
          "system's store, another CA and plain HTTP are refused")

    step("3. the CLI speaks HTTPS with --ca or $CHORUS_CACERT")
    for http_at, extra, env in ((f"https://127.0.0.1:{port}", ["--ca", ca], None),
                                (f"https://localhost:{port}", ["--ca", ca], None),
                                (f"https://127.0.0.1:{port}", [], {"CHORUS_CACERT": ca})):
        r = chorus("members", "--http", http_at, *extra, env=env)
        if r.returncode != 0 or "\na " not in r.stdout:
            fail(f"chorus members --http {http_at} {extra} {env}: exit {r.returncode}, "
                 f"{r.stdout!r} {r.stderr!r}")
    r = chorus("submit", "--http", f"https://127.0.0.1:{port}", "--ca", ca, "--key", "k",
               "--type", "echo", "--payload", '"over tls"', "--wait", "10s", "--json")
    if r.returncode != 0 or json.loads(r.stdout)["result"] != "over tls":
        fail(f"chorus submit over TLS: exit {r.returncode}, {r.stdout!r} {r.stderr!r}")
    r = chorus("members", "--http", f"https://127.0.0.1:{port}")
    if r.returncode != 1 or "certificate" not in r.stderr:
        fail(f"chorus members without the CA: exit {r.returncode}, {r.stderr!r}")
    r = chorus("members", "--http", f"127.0.0.1:{port}", "--ca", ca)
    if r.returncode != 1 or "https://" not in r.stderr:
        fail(f"--ca with a plain address: exit {r.returncode}, {r.stderr!r}")

    step("4. agent b requires client certificates, and audits by their subject")
    audit = path("audit.log")
    b = start("b", ["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca, "--audit-log", audit,
                    "--config", config])
    url = f"https://127.0.0.1:{b.rsplit(':', 1)[1]}"
    rc, status, _, err = curl("--cacert", ca, url + "/v1/health")
    if rc == 0:
        fail(f"b answered a client without a certificate: status {status}")
    rc, status, _, err = curl("--cacert", ca, "--cert", path("rogue.pem"), "--key",
                              path("rogue.key"), url + "/v1/health")
    if rc == 0:
        fail(f"b answered a client whose certificate it did not sign: status {status}")
    r = chorus("submit", "--http", url, "--ca", ca, "--client-cert", path("client.pem"),
               "--client-key", path("client.key"), "--key", "k", "--type", "echo",
               "--payload", "1")
    if r.returncode != 0:
        fail(f"chorus submit with a client certificate: exit {r.returncode}, {r.stderr!r}")
    rc, status, _, err = curl("--cacert", ca, "--cert", path("client.pem"), "--key",
                              path("client.key"), "-X", "POST", url + "/v1/tasks", "-H",
                              "Content-Type: application/json", "-d",
                              '{"key": "k2", "type": "echo", "payload": 2}')
    if rc != 0 or status not in (200, 202):
        fail(f"curl with the client certificate: exit {rc}, status {status}: {err}")
    # A client with a session cache resumes its session (tickets work with --tls-ca).
    outs = []
    for sess in ("-sess_out", "-sess_in"):
        r = subprocess.run(["openssl", "s_client", "-connect", b, "-CAfile", ca, "-cert",
                            path("client.pem"), "-key", path("client.key"), "-ign_eof", sess,
                            path("session.pem")],
                           input="GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Connection: close\r\n\r\n",
                           capture_output=True, text=True, timeout=20)
        outs.append(r.stdout)
        if "HTTP/1.1 200" not in r.stdout:
            fail(f"s_client {sess} with a client certificate: {r.stdout[-600:]!r} "
                 f"{r.stderr[-400:]!r}")
    if "Reused," not in outs[1]:
        fail(f"the second handshake did not resume the session: {outs[1][:600]!r}")
    lines = [json.loads(line) for line in open(audit).read().splitlines()]
    if len(lines) != 2 or any(x["caller"] != "CN=ops,O=chorus" or x["cert"] != "CN=ops,O=chorus"
                              or x["status"] != 202 for x in lines):
        fail(f"the audit log does not name the client certificate: {lines}")
    print("  no certificate and a stranger's are refused; CN=ops,O=chorus is audited")

    step("5. agent c presents a self-signed certificate: clients with the CA refuse it")
    c = start("c", ["--tls-cert", path("rogue.pem"), "--tls-key", path("rogue.key")])
    rc, status, _, err = curl("--cacert", ca, f"https://{c}/v1/health")
    if rc != 60:
        fail(f"curl --cacert against a self-signed certificate: exit {rc}, status {status}")
    r = chorus("members", "--http", f"https://{c}", "--ca", ca)
    if r.returncode != 1 or "certificate" not in r.stderr:
        fail(f"chorus members against a self-signed certificate: exit {r.returncode}, "
             f"{r.stderr!r}")

    step("6. a certificate that does not load stops an agent at start")
    rc, said = refused_at_start(CHORUS, path("bad.log"),
                                ["--tls-cert", path("missing.pem"), "--tls-key", key])
    if rc != 2 or "missing.pem" not in said:
        fail(f"an agent with a missing certificate: exit {rc}, said {said!r}")
    for name in ("a", "b", "c"):
        if procs[name].poll() is not None:
            fail(f"{name} stopped during the test")
    print("tls: s_client, curl --cacert, the CLI, client certificates and refusals all hold")


try:
    run()
finally:
    stop(procs)
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(work, ignore_errors=True)
