#!/usr/bin/env bash
# A multi-host cluster in network namespaces: one namespace per node, each node with
# its own IP on a veth pair to a bridge (the bridge lives in a namespace of its own, so the
# host's network is untouched). With the default LAN profile:
#   - a partition made with iptables DROP rules is detected on both sides and outlasts
#     dead_retain_s (each side forgets the other); after the rules are removed the halves
#     merge again with no restart, through the seeds;
#   - 10% random loss (iptables -m statistic) on every node for 60 s causes no false dead;
#   - all of it sealed (--encrypt): node6, cut off while the keys rotate under steady task
#     traffic, comes back with the removed key and cannot rejoin nor change any view with the
#     Suspect and Dead it gossips of the others, and a frame it sends gets no answer; node7,
#     with no key, cannot join; the rotation loses no task and marks nobody dead.
# Needs root, ip and iptables; where namespaces cannot be created it says why and exits 77,
# which CTest reports as skipped. Only what this script creates is removed, and only the
# processes it started are ended, by PID.
#
#   netns_cluster.sh /path/to/chorus [loss-seconds]
set -u
chorus="$(realpath "$1")"
loss_seconds="${2:-60}"
n=5                                  # the cluster; node6 and node7 come in the last part
tag="ch$$"                           # names stay under the 15-character interface limit
net="10.$((100 + $$ % 100)).$((RANDOM % 250)).0"
prefix="${net%.0}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_begin
made=()
remove_namespaces() { local ns; for ns in "${made[@]}"; do ip netns del "$ns"; done; }
on_exit=remove_namespaces

skip() { echo "SKIP: $*"; exit 77; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
since() { echo "$(( ($(now_ms) - $1) / 100 ))" | sed -E 's/([0-9])$/.\1/; s/^\./0./'; }  # seconds, 1 decimal

[ "$(id -u)" -eq 0 ] || skip "network namespaces need root"
command -v ip > /dev/null || skip "ip (iproute2) is not installed"
command -v iptables > /dev/null || skip "iptables is not installed"
ip netns add "${tag}br" 2> "$dir/err" || skip "cannot create a network namespace: $(cat "$dir/err")"
made+=("${tag}br")
in_br() { ip netns exec "${tag}br" "$@"; }
in_br ip link add br0 type bridge || skip "cannot create a bridge"
in_br ip link set br0 up
in_br ip link set lo up

ns() { echo "${tag}n$1"; }
ip_of() { echo "$prefix.$1"; }
for i in $(seq 1 $((n + 2))); do
  ip netns add "$(ns "$i")" || fail "netns add"
  made+=("$(ns "$i")")
  ip link add "${tag}v$i" type veth peer name eth0 netns "$(ns "$i")" || fail "veth"
  ip link set "${tag}v$i" netns "${tag}br"
  in_br ip link set "${tag}v$i" master br0 up
  ip netns exec "$(ns "$i")" ip addr add "$(ip_of "$i")/24" dev eth0
  ip netns exec "$(ns "$i")" ip link set eth0 up
  ip netns exec "$(ns "$i")" ip link set lo up
  ip netns exec "$(ns "$i")" iptables -A INPUT -p icmp -j ACCEPT 2> "$dir/err" ||
    skip "iptables does not work in a namespace here: $(cat "$dir/err")"
done
in_ns() { local i="$1"; shift; ip netns exec "$(ns "$i")" "$@"; }
step "$((n + 2)) namespaces on $net/24 through a bridge"
# Dead members are forgotten 20 s after they are declared dead (an hour by default), so the
# partition below outlasts it.
dead_retain_s=20
echo "{\"dead_retain_s\": $dead_retain_s}" > "$dir/agent.json"
key=$("$chorus" keygen)
new_key=$("$chorus" keygen)

# Each node runs with the defaults a host gets: gossip on 0.0.0.0:7900, advertising the
# host's private address (eth0's, which the agent picks itself), HTTP on its namespace's
# loopback.
# In the background, in_ns would run in a subshell whose PID is not the agent's, and ending it
# would leave the agent running: the agent writes its own PID (the shell's, which it replaces)
# to a file, and that is the PID ended when the test ends.
# start NODE [agent flags]: every node seals with $key unless told otherwise.
start() {
  local pidfile="$dir/node$1.pid" i="$1"; shift
  [ $# -gt 0 ] || set -- --encrypt "$key"
  ip netns exec "$(ns "$i")" sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$pidfile" "$chorus" agent --name "node$i" --seed "$(ip_of 1):7900" --seed "$(ip_of 2):7900" \
    --config "$dir/agent.json" "$@" >> "$dir/node$i.log" 2>&1 &
  pids+=($!)  # ip, which becomes the agent too unless it forks
  poll 10 test -s "$pidfile" || fail "node$i did not start"
  pids+=("$(cat "$pidfile")")
}
members() { in_ns "$1" "$chorus" members 2> /dev/null; }
count_state() { members "$1" | awk -v s="$2" '$3 == s' | wc -l; }
state_of() { members "$1" | awk -v m="node$2" '$1 == m { print $3 }'; }
all_alive() { local i; for i in $(seq 1 $n); do [ "$(count_state "$i" alive)" -eq $n ] || return 1; done; }
# in_view VIEW STATE MEMBERS...: VIEW (a `chorus members` table) has each of them in STATE.
in_view() {
  local view="$1" s="$2" m; shift 2
  for m in "$@"; do [ "$(awk -v m="node$m" '$1 == m { print $3 }' <<< "$view")" = "$s" ] || return 1; done
}
# sees OBSERVER STATE MEMBERS...: one `chorus members` call, however many members are asked
# about (a sanitized CLI under load takes a second a call, and views change meanwhile).
sees() { local o="$1"; shift; in_view "$(members "$o")" "$@"; }

for i in $(seq 1 $n); do start "$i"; done
t0=$(now_ms)
poll 60 all_alive || fail "the $n nodes did not converge"
step "converged in $(since "$t0") s"
for i in $(seq 1 $n); do
  grep -q "advertising $(ip_of "$i"):7900, eth0's address" "$dir/node$i.log" ||
    fail "node$i did not advertise eth0's address: $(grep -m1 advertis "$dir/node$i.log")"
  [ "$(in_ns "$i" "$chorus" members | awk -v m="node$i" '$1 == m { print $2 }')" = "$(ip_of "$i"):7900" ] ||
    fail "node$i's row does not show $(ip_of "$i"):7900: $(members "$i")"
done
step "every node, bound to 0.0.0.0 with no --advertise, advertises its own eth0 address"

# ---- partition {1,2} | {3,4,5}
left_side=(1 2)
right_side=(3 4 5)
block() {  # block NODE OTHERS...: drop everything between NODE and OTHERS
  local me="$1" o; shift
  for o in "$@"; do
    in_ns "$me" iptables -A INPUT -s "$(ip_of "$o")" -j DROP
    in_ns "$me" iptables -A OUTPUT -d "$(ip_of "$o")" -j DROP
  done
}
step "partition {1,2} | {3,4,5}"
for i in "${left_side[@]}"; do block "$i" "${right_side[@]}"; done
for i in "${right_side[@]}"; do block "$i" "${left_side[@]}"; done
t0=$(now_ms)
both_sides() {
  local i
  local view
  for i in "${left_side[@]}"; do
    view="$(members "$i")"
    in_view "$view" dead "${right_side[@]}" && in_view "$view" alive "${left_side[@]}" || return 1
  done
  for i in "${right_side[@]}"; do
    view="$(members "$i")"
    in_view "$view" dead "${left_side[@]}" && in_view "$view" alive "${right_side[@]}" || return 1
  done
}
poll 60 both_sides || fail "the partition was not detected on both sides"
step "both sides saw the other dead within $(since "$t0") s"

# Longer than dead_retain_s: each side forgets the other (no row left to call back), and
# only the seeds, node1 and node2, lead {3,4,5} back once the network heals.
forgot() {
  local i
  for i in "${left_side[@]}"; do [ "$(count_state "$i" dead)" -eq 0 ] && [ "$(members "$i" | wc -l)" -eq 3 ] || return 1; done
  for i in "${right_side[@]}"; do [ "$(count_state "$i" dead)" -eq 0 ] && [ "$(members "$i" | wc -l)" -eq 4 ] || return 1; done
}
poll 60 forgot || fail "the sides did not forget each other after dead_retain_s ($(members 1))"
step "each side forgot the other (dead_retain_s $dead_retain_s)"
step "healing"
for i in $(seq 1 $n); do in_ns "$i" iptables -F; done
t0=$(now_ms)
poll 90 all_alive || fail "the halves did not merge after the partition healed"
merged=$(since "$t0")
step "merged in $merged s, no restart, through the seeds"

# ---- 10% random loss on every node's input for loss_seconds: no false dead
for i in $(seq 1 $n); do
  in_ns "$i" iptables -A INPUT -m statistic --mode random --probability 0.1 -j DROP
  grep -c "member dead" "$dir/node$i.log" > "$dir/dead-before-$i"
done
step "10% loss on every node for ${loss_seconds} s"
t_end=$((SECONDS + loss_seconds))
while [ $SECONDS -lt $t_end ]; do
  for i in $(seq 1 $n); do
    [ "$(count_state "$i" dead)" -eq 0 ] || fail "node$i saw a false dead under 10% loss"
  done
  sleep 1
done
for i in $(seq 1 $n); do
  [ "$(grep -c "member dead" "$dir/node$i.log")" -eq "$(cat "$dir/dead-before-$i")" ] ||
    fail "node$i logged a death under 10% loss"
  in_ns "$i" iptables -F
done
suspicions=$(cat "$dir"/node*.log | grep -c "member suspect")
poll 30 all_alive || fail "not all alive after the loss ended"
loss_note="${loss_seconds} s of 10% loss, 0 false dead (suspicion log lines in all: $suspicions)"
step "$loss_note"

# ---- keys: node6 misses a rotation, node7 has no key
metric() {  # metric NODE SAMPLE: the value of one sample of NODE's /metrics
  in_ns "$1" "$chorus" members > /dev/null 2>&1  # (the API is up)
  in_ns "$1" python3 -c '
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:7980/metrics", timeout=5).read().decode()
print(next((int(float(l.split()[-1])) for l in text.splitlines() if l.startswith(sys.argv[1] + " ")), -1))' "$2"
}
unsealed='chorus_packets_rejected_total{reason="unsealed"}'
start 6
six_alive() { local i; for i in $(seq 1 6); do [ "$(count_state "$i" alive)" -eq 6 ] || return 1; done; }
poll 60 six_alive || fail "node6 did not join the sealed cluster"
step "node6 joined; now cut off"
block 6 1 2 3 4 5
for i in 1 2 3 4 5; do block "$i" 6; done
# The cluster gives node6 up, and node6 suspects the others: what it will gossip once back.
# (Alone, node6's own health score slows its verdicts, so suspicion is what is waited for.)
six_cut() {
  local i
  for i in 1 2 3 4 5; do sees "$i" dead 6 || return 1; done
  [ "$(count_state 6 alive)" -lt 6 ]
}
poll 60 six_cut || fail "node6 and the cluster did not give each other up"
marks=$(cat "$dir"/node[1-5].log | grep -c -E "member (dead|suspect)")

# Steady task traffic through every member while the keys rotate (bounded: 600 tasks, 20/s).
# curl posts them: a client that starts in milliseconds even when the agents are built with
# sanitizers (a sanitized `chorus submit` takes 0.3 s to start, more on a loaded machine). A
# refusal is kept in refused.out, which a failure shows.
: > "$dir/acked"
traffic() {
  local t i=0 answer
  while [ $i -lt 600 ] && [ ! -e "$dir/stop" ]; do
    i=$((i + 1))
    answer=$(in_ns $((1 + i % n)) curl -s -m 10 -w ' %{http_code}' -X POST \
      -H 'Content-Type: application/json' -d "{\"key\":\"rot$i\",\"type\":\"echo\",\"payload\":$i}" \
      http://127.0.0.1:7980/v1/tasks)
    if [ "${answer##* }" = 202 ] && t=$(grep -o '"id":"[^"]*"' <<< "$answer" | cut -d'"' -f4); then
      echo "$t" >> "$dir/acked"
    else
      echo "node$((1 + i % n)) rot$i: $answer" >> "$dir/refused.out"
    fi
    sleep 0.05
  done
}
traffic &
traffic_pid=$!
pids+=("$traffic_pid")
acked_past() { [ "$(wc -l < "$dir/acked")" -ge "$1" ]; }
keys() { in_ns "$1" "$chorus" keys --json "${@:2}" > "$dir/keys.out" 2>&1 || fail "chorus keys ${*:2} via node$1: $(cat "$dir/keys.out")"; }
# traffic_goes_on WHAT: 20 more tasks acknowledged after WHAT, within a minute.
traffic_goes_on() { poll 60 acked_past $(($(wc -l < "$dir/acked") + 20)) || fail "traffic stopped after $1"; }
traffic_goes_on "it started"
keys 1 --install "$new_key"
traffic_goes_on "the install"
keys 2 --use "$new_key"
traffic_goes_on "the use"
keys 3 --remove "$key"
traffic_goes_on "the remove"
touch "$dir/stop"
wait "$traffic_pid"
step "rotated to a new key through node1, node2, node3 under traffic"

# node6 comes back holding only the removed key, sure every other member is dead; node7 has
# no key at all.
before=$(metric 1 "$unsealed")
for i in $(seq 1 6); do in_ns "$i" iptables -F; done
start 7 --log-level info
forged=$(grep -c -E "member (dead|suspect)" "$dir/node6.log")
six_heard() { [ "$(metric 1 "$unsealed")" -ge $((before + 5)) ]; }
poll 60 six_heard || fail "node1 did not count what node6 and node7 sent it"
# A task frame from node6's address straight to node1's gossip port: no answer.
in_ns 6 python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
from agents import clear_frame_answer
sys.exit(1 if clear_frame_answer(sys.argv[2], 7900) else 0)' "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" "$(ip_of 1)" ||
  fail "node1 answered a frame from node6"
for i in 1 2 3 4 5; do
  sees "$i" alive 1 2 3 4 5 || fail "node$i's view changed: $(members "$i")"
  [ "$(state_of "$i" 6)" != alive ] || fail "node$i sees node6 alive with a removed key"
  [ -z "$(state_of "$i" 7)" ] || fail "node$i sees node7, which has no key"
done
[ "$(cat "$dir"/node[1-5].log | grep -c -E "member (dead|suspect)")" -eq "$marks" ] ||
  fail "a member was suspected or declared dead during the rotation or after node6 came back"
# Every acknowledged task finished (asked of node1, which reads any task from its owner).
acked=$(wc -l < "$dir/acked")
lost=$(in_ns 1 python3 -c '
import json, sys, urllib.request
lost = 0
for task in open(sys.argv[1]).read().split():
    url = f"http://127.0.0.1:7980/v1/tasks/{task}?wait=10s"
    try:
        state = json.load(urllib.request.urlopen(url, timeout=15))["state"]
    except OSError:
        state = "unreadable"
    lost += state != "succeeded"
print(lost)' "$dir/acked")
[ "$lost" = 0 ] || fail "$lost of $acked acknowledged tasks did not succeed"
in_ns 1 "$chorus" keys --json | python3 -c '
import json, sys
k = json.load(sys.stdin)
sys.exit(0 if [(x["key"], x["members"]) for x in k["keys"]] == [(sys.argv[1], 5)] else 1)' "$new_key" ||
  fail "the five members do not all hold the new key alone"
step "node6 (removed key, $forged suspect or dead marks of others in its log) and node7 (no key) changed nothing; $acked tasks finished"
echo "netns cluster: partition detected on both sides and healed in $merged s; $loss_note; a rotation under traffic lost none of $acked tasks, and a member with the removed key and one with none changed no view"
