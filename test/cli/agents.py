"""Real `chorus agent` processes for the Python process tests in this folder.

An agent binds ports the kernel picks (127.0.0.1:0) and says which in its `agent started` log
line; `launch` starts one, waits for that line and returns the addresses it bound, so tests run
at once never collide. `call` is one HTTP exchange with an agent's API.
"""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time

# A field of a line of the agent's text log: key=value, or key="a value" with \" and \\ inside.
FIELD = re.compile(r' ([A-Za-z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^ "]*))')


def log_fields(line):
    """The key=value fields of a line of the agent's text log (they follow the message)."""
    fields = {}
    for m in FIELD.finditer(line):
        if m.group(2) is not None:
            fields[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
        else:
            fields[m.group(1)] = m.group(3)
    return fields


def started(path, offset, proc):
    """Waits up to 30 s for the `agent started` line proc writes to path past offset: the
    addresses it bound, or None if it exited first."""
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(path, "rb") as f:
            f.seek(offset)
            for line in f.read().decode(errors="replace").splitlines(keepends=True):
                if " agent started " in line and line.endswith("\n"):  # a whole line
                    fields = log_fields(line.split(" agent started", 1)[1])
                    return fields["bind"], fields["http"]
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    sys.exit(f"an agent said nothing of starting in 30 s; see {path}")


def launch(chorus, name, log_path, args=(), bind="127.0.0.1:0", http_at="127.0.0.1:0",
           wrap=()):
    """Starts `chorus agent --name NAME` with ARGS, appending to LOG_PATH, and waits until it
    listens: (process, gossip address, HTTP address), or (process, None, None) if it exited.
    WRAP runs it elsewhere (Lan.wrap: on a host of a Lan; `ip netns exec` execs the agent, so
    the process is the agent's)."""
    try:
        with open(log_path, "rb") as f:
            offset = len(f.read())
    except FileNotFoundError:
        offset = 0
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            [*wrap, chorus, "agent", "--name", name, "--bind", bind, "--http", http_at, *args],
            stdout=log, stderr=subprocess.STDOUT)
    bound = started(log_path, offset, proc)
    return (proc, *bound) if bound else (proc, None, None)


def refused_at_start(chorus, log_path, args):
    """Runs `chorus agent` with ARGS (and loopback addresses), expecting it to refuse to start:
    (exit status, what it said)."""
    with open(log_path, "w") as log:
        r = subprocess.run([chorus, "agent", "--name", "refused", "--bind", "127.0.0.1:0",
                            "--http", "127.0.0.1:0", *args], stdout=log,
                           stderr=subprocess.STDOUT, timeout=30)
    with open(log_path) as f:
        return r.returncode, f.read()


def clear_frame_answer(host, port):
    """Sends one length-prefixed frame in clear (64 zero bytes) to a gossip port and returns
    whatever comes back within 5 s (b"" if the agent closed or said nothing)."""
    with socket.create_connection((host, int(port)), timeout=5) as s:
        body = bytes(64)
        s.sendall(len(body).to_bytes(4, "big") + body)
        s.settimeout(5)
        try:
            return s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            return b""


def call(http_addr, method, path, body=None, timeout=5, raw_body=None, headers=None):
    """One HTTP exchange: (status, parsed JSON or None, headers). RAW_BODY is sent as is."""
    host, port = http_addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        h = dict(headers or {})
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, data, h)
        r = c.getresponse()
        text = r.read()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return r.status, parsed, dict(r.getheaders())
    finally:
        c.close()


def step(what):
    print(f"[{time.strftime('%H:%M:%S')}] {what}", flush=True)


class Logs:
    """A test's failure report: `fail` prints why and the tail of each agent's log (WORK/NAME.log),
    then exits 1; `until` polls a condition with a deadline and fails with WHY when it passes."""

    def __init__(self, work, names, tail=25):
        self.work, self.names, self.tail = work, names, tail

    def fail(self, why):
        print(f"FAIL: {why}")
        for n in self.names:
            path = os.path.join(self.work, f"{n}.log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    print(f"== {n}.log (tail)\n" + "".join(f.readlines()[-self.tail:]))
        sys.exit(1)

    def until(self, cond, seconds, why):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.1)
        self.fail(why)


def stop(procs):
    """Kills, by PID, every process in PROCS (a dict of Popen) still running, and reaps it."""
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


def rerun_in_netns(prefix, argv, resolv_conf=None, timeout=600):
    """Runs ARGV (this script again, with an argument saying so) in a network namespace of its
    own with loopback up, so that it may bind fixed ports and, with RESOLV_CONF, see that text
    as /etc/resolv.conf (`ip netns exec` mounts /etc/netns/NS/resolv.conf over it). Returns its
    exit status, or 77 (skipped) where no namespace can be made (not root, no `ip`). The
    namespace and its folder are removed whatever happened."""
    import shutil
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("SKIP: needs root and `ip` for a network namespace")
        return 77
    ns = f"{prefix}-{os.getpid()}"
    ns_etc = f"/etc/netns/{ns}"
    try:
        if resolv_conf is not None:
            os.makedirs(ns_etc)
            with open(f"{ns_etc}/resolv.conf", "w") as f:
                f.write(resolv_conf)
        if subprocess.run(["ip", "netns", "add", ns]).returncode != 0:
            print("SKIP: cannot make a network namespace")
            return 77
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        return subprocess.run(["ip", "netns", "exec", ns, *argv], timeout=timeout).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        shutil.rmtree(ns_etc, ignore_errors=True)


class Lan:
    """Hosts on a LAN made of network namespaces: one namespace per host, each with its own
    address (PREFIX.i/24) on a veth to a bridge that lives in a namespace of its own, so the
    machine's network is untouched. The test itself runs as one more host, `client`, so that
    a partition or a silent host (iptables DROP inside a host's namespace, which answers
    nothing, not even an RST) cuts agents off from each other but not from the test.

    `Lan.rerun(tag, hosts, argv)` builds it from the root namespace, runs ARGV (the script
    again) as `client` with CHORUS_LAN in its environment, and removes every namespace it made
    whatever happened: its exit status, or 77 (skipped) without root, `ip` or `iptables`.
    Inside, `Lan()` reads CHORUS_LAN back."""

    @staticmethod
    def rerun(tag, hosts, argv, timeout=900):
        import shutil
        if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables"):
            print("SKIP: needs root, `ip` and `iptables` for network namespaces")
            return 77
        tag = f"{tag[:6]}{os.getpid() % 10000}"  # interface names: 15 characters at most
        prefix = f"10.{100 + os.getpid() % 100}.{os.getpid() // 100 % 250}"
        everyone = [*hosts, "client"]
        made = []

        def sh(*command, ns=None):
            full = ["ip", "netns", "exec", ns, *command] if ns else list(command)
            return subprocess.run(full, capture_output=True, text=True)

        try:
            for ns in [f"{tag}br"] + [f"{tag}h{i}" for i in range(len(everyone))]:
                if sh("ip", "netns", "add", ns).returncode != 0:
                    print("SKIP: cannot make a network namespace")
                    return 77
                made.append(ns)
                sh("ip", "link", "set", "lo", "up", ns=ns)
            br = f"{tag}br"
            if sh("ip", "link", "add", "br0", "type", "bridge", ns=br).returncode != 0:
                print("SKIP: cannot make a bridge")
                return 77
            sh("ip", "link", "set", "br0", "up", ns=br)
            for i in range(len(everyone)):
                ns, veth = f"{tag}h{i}", f"{tag}v{i}"
                for command in (["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                                 "netns", ns],
                                ["ip", "link", "set", veth, "netns", br]):
                    if sh(*command).returncode != 0:
                        print(f"SKIP: cannot make a veth pair: {' '.join(command)}")
                        return 77
                sh("ip", "link", "set", veth, "master", "br0", "up", ns=br)
                sh("ip", "addr", "add", f"{prefix}.{i + 1}/24", "dev", "eth0", ns=ns)
                sh("ip", "link", "set", "eth0", "up", ns=ns)
            r = sh("iptables", "-L", "-n", ns=f"{tag}h0")
            if r.returncode != 0:
                print(f"SKIP: iptables does not work in a namespace here: {r.stderr.strip()}")
                return 77
            env = dict(os.environ, CHORUS_LAN=json.dumps(
                {"tag": tag, "prefix": prefix, "hosts": everyone}))
            return subprocess.run(["ip", "netns", "exec", f"{tag}h{len(hosts)}", *argv],
                                  env=env, timeout=timeout).returncode
        finally:
            for ns in made:
                subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)

    def __init__(self):
        lan = json.loads(os.environ["CHORUS_LAN"])
        self.tag, self.prefix, self.hosts = lan["tag"], lan["prefix"], lan["hosts"]

    def ip(self, host):
        return f"{self.prefix}.{self.hosts.index(host) + 1}"

    def wrap(self, host):
        """What runs a command on HOST (its namespace)."""
        return ["ip", "netns", "exec", f"{self.tag}h{self.hosts.index(host)}"]

    def iptables(self, host, *rule):
        subprocess.run([*self.wrap(host), "iptables", *rule], check=True)

    def cut(self, side_a, side_b):
        """A partition: nothing passes between the hosts of SIDE_A and those of SIDE_B."""
        for near, far in ((side_a, side_b), (side_b, side_a)):
            for h in near:
                for f in far:
                    self.iptables(h, "-A", "INPUT", "-s", self.ip(f), "-j", "DROP")
                    self.iptables(h, "-A", "OUTPUT", "-d", self.ip(f), "-j", "DROP")

    def silence(self, host):
        """HOST drops every packet in and out (loopback aside): a host that lost power."""
        self.iptables(host, "-A", "INPUT", "!", "-i", "lo", "-j", "DROP")
        self.iptables(host, "-A", "OUTPUT", "!", "-o", "lo", "-j", "DROP")

    def heal(self):
        for h in self.hosts:
            if h != "client":
                self.iptables(h, "-F")
