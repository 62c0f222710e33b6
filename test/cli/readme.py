#!/usr/bin/env python3
"""Every example in README.md runs as written.

The README's code blocks are read from the file itself, so an example edited there is the one
tested. Each block is told by its first word and run in a network namespace of its own (the
examples use the fixed ports 7900, 7901, 7980 and 7981 on loopback), with the build's `chorus`
and `chorus-sim` first on PATH:

  - the two-agent start, line by line as background processes, as written; then every
    `chorus members/leave/tags/drain/force-leave/monitor` line, every `curl` line, every
    `chorus submit/task/ring` line and the keys block against them (the keys block and
    /v1/keyring with the agents started again with --encrypt, as the README's Encryption
    section says: keyring ops are refused in clear). Each must
    exit 0 and print no API error; the lines that follow a stream (`--watch`, `monitor`,
    `curl -N`) must still be streaming after 3 s and have printed something. The lines that
    end the agent (`chorus leave`, POST /v1/leave) run last.
  - the config block must be examples/agent.json, and `chorus agent --config
    examples/agent.json --check-config` takes it;
  - JSON blocks parse; every flag in the chorus-sim synopsis is one it takes.

Placeholders are filled in, and only these: NAME and n4 (a member killed for the purpose, dead
by then), ID and 5f1c...-nightly-17 (a task's real id), NEWKEY and OLDKEY (keys from `chorus
keygen`); doc.json is written first. The two commands of the first block (scripts/demo,
scripts/test) are not run here: scripts/test is this suite; of the install block, the build is
what the suite did and `cmake --install` runs into a scratch DESTDIR (test/cli/package.sh
installs the package and starts the service in a container).

    readme.py /path/to/build /path/to/README.md /path/to/examples

Needs root for the namespace; exits 77 (skipped) otherwise. Bounded: every command has a
timeout; about 40 s. Only what it started is ended, by PID.
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agents import Logs, call, rerun_in_netns, step  # noqa: E402

BUILD, README, EXAMPLES = (os.path.abspath(a) for a in sys.argv[1:4])
INSIDE = len(sys.argv) > 4
if not INSIDE:
    sys.exit(rerun_in_netns("chorus-readme", [sys.executable, os.path.abspath(__file__),
                                              *sys.argv[1:4], "--inside"], timeout=300))

work = tempfile.mkdtemp(prefix="chorus-readme-")
logs = Logs(work, ["a", "b", "victim"])
fail, until = logs.fail, logs.until
env = dict(os.environ, PATH=f"{BUILD}:{os.environ['PATH']}")
procs = []


def blocks():
    """The README's fenced code blocks: (line number, info string, lines)."""
    out, current = [], None
    with open(README) as f:
        for number, line in enumerate(f, 1):
            if line.startswith("```"):
                if current is None:
                    current = (number, line[3:].strip(), [])
                else:
                    out.append(current)
                    current = None
            elif current is not None:
                current[2].append(line.rstrip("\n"))
    return out


def commands(lines):
    """Shell commands from a block's lines: comments dropped, `\\` continuations joined, lines
    that are only a comment's continuation skipped."""
    out, pending = [], ""
    for line in lines:
        text = line.split("  #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not text.strip():
            continue
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        out.append(pending + text.strip())
        pending = ""
    return out


def start(command, name):
    """A long-running example line (an agent) in the background, logging to NAME.log."""
    log = open(os.path.join(work, f"{name}.log"), "a")
    p = subprocess.Popen("exec " + command, shell=True, cwd=work, env=env, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(p)
    return p


def end(p, sig=signal.SIGTERM):
    if p.poll() is None:
        os.killpg(p.pid, sig)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


API_ERROR = re.compile(r'"error"\s*:\s*\{')


def run(command, subst=None, streams=False):
    """Runs one example line as written (after filling its placeholders): it must exit 0 and
    print no API error; a streaming one must still run after 3 s, having printed something."""
    for k, v in (subst or {}).items():
        command = command.replace(k, v)
    print(f"  $ {command}", flush=True)
    p = subprocess.Popen(command, shell=True, cwd=work, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL if command.startswith("curl") else
                         subprocess.STDOUT, start_new_session=True)  # not curl's progress meter
    try:
        out, _ = p.communicate(timeout=3 if streams else 60)
        if streams:
            fail(f"`{command}` ended (exit {p.returncode}) instead of streaming: {out!r}")
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        if not streams:
            fail(f"`{command}` did not finish in 60 s: {out!r}")
        if not out.strip():
            fail(f"`{command}` streamed nothing in 3 s")
        return out.decode(errors="replace")
    text = out.decode(errors="replace")
    if p.returncode != 0 or API_ERROR.search(text):
        fail(f"`{command}` exited {p.returncode}: {text}")
    return text


def streaming(command):
    return "--watch" in command or command.startswith("chorus monitor") or " -N " in command


def ending(command):
    return command.startswith("chorus leave") or "/v1/leave" in command


def alive(names, http="127.0.0.1:7980"):
    def check():
        try:
            s, j, _ = call(http, "GET", "/v1/members")
        except OSError:
            return False
        states = {m["name"]: m["state"] for m in (j or {}).get("members", [])} if s == 200 else {}
        return all(states.get(n) == "alive" for n in names)
    return check


def dead_member(name, seed="127.0.0.1:7900"):
    """Starts an agent NAME that joins, then kills it -9 and waits until a sees it dead."""
    p = start(f"chorus agent --name {name} --bind 127.0.0.1:0 --http 127.0.0.1:0 --seed {seed}",
              "victim")
    until(alive([name]), 30, f"{name} did not join")
    end(p, signal.SIGKILL)

    def dead():
        s, j, _ = call("127.0.0.1:7980", "GET", "/v1/members")
        return any(m["name"] == name and m["state"] == "dead" for m in (j or {}).get("members", []))
    until(dead, 60, f"{name} was not seen dead")
    return name


all_blocks = blocks()
by_first = {}
for number, info, lines in all_blocks:
    cmds = commands(lines)
    first = cmds[0].split()[0:2] if cmds else []
    if info or (cmds and cmds[0].startswith("{")):
        key = info or "{"
    else:
        key = " ".join(first) if first and first[0] == "chorus" else first[0] if first else ""
    by_first.setdefault(key, []).append((number, cmds, lines))
print("README blocks: " + ", ".join(f"{k} x{len(v)}" for k, v in by_first.items()), flush=True)
tested = set()


def take(key):
    if key not in by_first:
        fail(f"README has no block starting with `{key}` (the test knows each kind it has)")
    tested.add(key)
    return by_first[key]


try:
    step("JSON blocks parse; the config block is examples/agent.json, and the agent takes it")
    for number, _, lines in take("json"):
        with open(os.path.join(EXAMPLES, "agent.json")) as f:
            if json.loads("\n".join(lines)) != json.load(f):
                fail(f"README line {number}: the config shown is not examples/agent.json")
    for number, _, lines in take("{"):
        try:
            json.loads("\n".join(lines))
        except ValueError as e:
            fail(f"README line {number}: a JSON example that does not parse: {e}")
    r = subprocess.run(["chorus", "agent", "--config", os.path.join(EXAMPLES, "agent.json"),
                        "--check-config"], env=env, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail(f"--config examples/agent.json --check-config: {r.returncode} {r.stderr}")

    step("the chorus-sim synopsis: every flag is one chorus-sim takes")
    (number, _, lines), = take("chorus-sim")
    helptext = subprocess.run(["chorus-sim", "--help"], env=env, capture_output=True, text=True,
                              timeout=30).stdout
    for flag in sorted(set(re.findall(r"--[a-z][a-z-]*", "\n".join(lines)))):
        if not re.search(rf"{flag}\b", helptext):
            fail(f"README line {number}: chorus-sim takes no {flag}")
    run("chorus-sim --nodes 20 --duration 30 --crash 1 --crash-at 10 --json")

    step("the two-agent start, as written")
    (number, start_cmds, _), = take("chorus agent")
    agents = [start(c, re.search(r"--name (\S+)", c).group(1)) for c in start_cmds]
    until(alive(["a", "b"]), 30, "the README's two agents did not form a cluster")

    step("the operator's commands")
    (number, member_cmds, _), = take("chorus members")
    last = []
    victim = dead_member("victim1")
    for c in member_cmds:
        if ending(c):
            last.append(c)
        else:
            run(c, {"NAME": victim}, streaming(c))
    run("chorus drain --off")

    step("the API through curl")
    (number, curl_cmds, _), = take("curl")
    victim = dead_member("victim2")
    keyring = [c for c in curl_cmds if "/v1/keyring" in c]  # with a key, below
    for c in curl_cmds:
        if ending(c):
            last.append(c)
        elif c not in keyring:
            run(c, {"n4": victim}, streaming(c))

    step("tasks: submit, read, cancel, ring (agents with examples/agent.json's handlers)")
    for p in agents:
        end(p)
    agents = [start(f"{c} --config {EXAMPLES}/agent.json", re.search(r"--name (\S+)", c).group(1))
              for c in start_cmds]
    until(alive(["a", "b"]), 30, "the two agents did not form a cluster with agent.json")
    with open(os.path.join(work, "doc.json"), "w") as f:
        json.dump({"text": "hello"}, f)
    ids = {}
    for c in [c for _, cmds, _ in take("chorus submit") for c in cmds]:
        out = run(c, {"5f1c...-nightly-17": ids.get("nightly-17", "?"), "ID": ids.get("any", "?")})
        for task_id in re.findall(r"\b[0-9a-f]{16}-[\w.:-]+", out):
            ids.setdefault("any", task_id)
            if task_id.endswith("-nightly-17"):
                ids["nightly-17"] = task_id
        if "--payload-file doc.json" in c and '"sum"' not in out and "succeeded" not in out:
            fail(f"the checksum task did not come back finished: {out}")

    step("keys, on the two agents started again with --encrypt")
    for p in agents:
        end(p)
    old = subprocess.run(["chorus", "keygen"], env=env, capture_output=True, text=True,
                         timeout=10).stdout.strip()
    new = subprocess.run(["chorus", "keygen"], env=env, capture_output=True, text=True,
                         timeout=10).stdout.strip()
    agents = [start(f"{c} --encrypt {old}", re.search(r"--name (\S+)", c).group(1))
              for c in start_cmds]
    until(alive(["a", "b"]), 30, "the two agents did not form a cluster with a key")
    (number, key_cmds, _), = take("chorus keys")
    for c in key_cmds + keyring:
        run(c, {"NEWKEY": new, "OLDKEY": old})

    step("the lines that end the agent, last")
    for c in last:
        run(c)
        until(lambda: agents[0].poll() is not None, 30, f"`{c}` did not end the agent")
        agents[0] = start(start_cmds[0] + f" --encrypt {new}", "a")
        until(alive(["a", "b"]), 30, "a did not come back after leaving")

    step("install: cmake --install into a scratch DESTDIR (the package itself: package.sh)")
    (number, install_cmds, _), = take("cmake")
    dest = os.path.join(work, "dest")
    line = next(c for c in install_cmds if c.startswith("cmake --install build"))
    run(line.split("  ")[0].replace("cmake --install build", f"DESTDIR={dest} cmake --install {BUILD}"))
    units = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs
             if f == "chorus.service" and d.endswith("/lib/systemd/system")]
    binaries = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if f == "chorus"]
    if len(units) != 1 or len(binaries) != 1:
        fail(f"cmake --install laid out units {units} and binaries {binaries}")
    with open(units[0]) as f:
        exec_start = re.search(r"^ExecStart=(\S+)", f.read(), re.M).group(1)
    if dest + exec_start != binaries[0]:
        fail(f"the installed unit starts {exec_start}, the binary is at {binaries[0]}")

    untested = set(by_first) - tested - {"scripts/demo"}
    if untested:
        fail(f"README blocks this test does not know: {sorted(untested)}")
    print("PASS: every README example ran as written")
finally:
    for p in procs:
        end(p, signal.SIGKILL)
    shutil.rmtree(work, ignore_errors=True)
