#!/usr/bin/env python3
"""The Kubernetes kit (examples/kubernetes/chorus.yaml), checked without a cluster:
  - the YAML parses into a headless Service that publishes not-ready addresses, a StatefulSet
    and a PodDisruptionBudget with maxUnavailable 1;
  - the container's arguments, with the pod's name and address put in as Kubernetes would,
    are ones the agent takes: `chorus agent ARGS --check-config` exits 0;
  - readiness is /v1/health on the API's port, liveness is not (an unjoined member is alive);
  - the seed is the Service's SRV name for its TCP gossip port (which lists every pod);
  - the preStop hook is a `chorus leave` the CLI takes, and the grace period outlasts the
    leave timeout.

  kubernetes.py /path/to/chorus /path/to/examples
"""
import os
import re
import subprocess
import sys

import yaml

chorus = os.path.abspath(sys.argv[1])
path = os.path.join(os.path.abspath(sys.argv[2]), "kubernetes", "chorus.yaml")


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


with open(path) as f:
    docs = {d["kind"]: d for d in yaml.safe_load_all(f) if d}
for kind in ("Service", "StatefulSet", "PodDisruptionBudget"):
    if kind not in docs:
        fail(f"{path} has no {kind}")
service, sts, pdb = docs["Service"], docs["StatefulSet"], docs["PodDisruptionBudget"]

if service["spec"].get("clusterIP") != "None" or \
        service["spec"].get("publishNotReadyAddresses") is not True:
    fail("the Service must be headless and publish not-ready addresses")
if pdb["spec"].get("maxUnavailable") != 1:
    fail("the PodDisruptionBudget must allow one member down at a time")
if sts["spec"]["serviceName"] != service["metadata"]["name"]:
    fail("the StatefulSet is not governed by the headless Service")

pod = sts["spec"]["template"]["spec"]
container = pod["containers"][0]
args = container["args"]
if args[0] != "agent":
    fail(f"the container does not run the agent: {args}")

# $(VAR) as Kubernetes expands it from the container's env.
values = {"POD_NAME": "chorus-2", "POD_IP": "10.1.2.3"}
for e in container["env"]:
    if e["name"] not in values:
        fail(f"an env var the test does not know: {e['name']}")
expanded = [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], a) for a in args]
r = subprocess.run([chorus, *expanded, "--check-config"], capture_output=True, text=True,
                   timeout=30)
if r.returncode != 0 or "config ok: name chorus-2" not in r.stdout:
    fail(f"chorus {' '.join(expanded)} --check-config: exit {r.returncode}, "
         f"said {r.stdout!r} {r.stderr!r}")
print(r.stdout.strip())

# The check itself refuses what the agent would (so the pass above means something).
bad = subprocess.run([chorus, *expanded, "--bind=0.0.0.0:99999", "--check-config"],
                     capture_output=True, text=True, timeout=30)
if bad.returncode != 2 or "bind" not in bad.stderr:
    fail(f"--check-config took a bad port: exit {bad.returncode}, said {bad.stderr!r}")

name = sts["metadata"]["name"]
domain = f"{service['metadata']['name']}.default.svc.cluster.local"
seeds = [a.split("=", 1)[1] for a in args if a.startswith("--seed=")]
gossip_tcp = [p["name"] for p in service["spec"]["ports"]
              if p["port"] == 7900 and p.get("protocol", "TCP") == "TCP"]
if sts["spec"]["serviceName"] != service["metadata"]["name"] or len(gossip_tcp) != 1 or \
        seeds != [f"dnssrv+_{gossip_tcp[0]}._tcp.{domain}"]:
    fail(f"the seed is not the Service's SRV name for its TCP gossip port: {seeds}")

ports = {p["name"]: p["containerPort"] for p in container["ports"]}
ready = container["readinessProbe"]["httpGet"]
if ready["path"] != "/v1/health" or ports.get(ready["port"], ready["port"]) != 7980:
    fail(f"readiness is not /v1/health on the API's port: {ready}")
if container["livenessProbe"].get("httpGet", {}).get("path") == "/v1/health":
    fail("liveness on /v1/health would restart a member that is only waiting for its seeds")

hook = container["lifecycle"]["preStop"]["exec"]["command"]
if os.path.basename(hook[0]) != "chorus" or hook[1] != "leave":
    fail(f"preStop is not chorus leave: {hook}")
# The hook's flags are the CLI's: against no agent it fails to connect (1), not on usage (2).
r = subprocess.run([chorus, *hook[1:-1], "127.0.0.1:1"], capture_output=True, text=True,
                   timeout=30)
if r.returncode != 1:
    fail(f"the preStop command's flags: exit {r.returncode}, said {r.stderr!r}")
leave_ms = next((int(a.split("=", 1)[1]) for a in args if a.startswith("--leave-timeout-ms=")),
                15000)
if pod["terminationGracePeriodSeconds"] * 1000 <= leave_ms + 5000:
    fail(f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} does not "
         f"outlast the leave timeout ({leave_ms} ms) with room to hand tasks over")
print("kubernetes: the kit's flags, probes, seeds, hook and budgets hold")
