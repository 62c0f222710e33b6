#!/usr/bin/env bash
# A multi-host cluster in network namespaces: one namespace per node, each node with
# its own IP on a veth pair to a bridge (the bridge lives in a namespace of its own, so the
# host's network is untouched). With the default LAN profile:
#   - a partition made with iptables DROP rules is detected on both sides, and after the rules
#     are removed the halves merge again with no restart;
#   - 10% random loss (iptables -m statistic) on every node for 60 s causes no false dead.
# Needs root, ip and iptables; where namespaces cannot be created it says why and exits 77,
# which CTest reports as skipped. Only what this script creates is removed, and only the
# processes it started are ended, by PID.
#
#   netns_cluster.sh /path/to/chorus [loss-seconds]
set -u
chorus="$(realpath "$1")"
loss_seconds="${2:-60}"
n=5
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
for i in $(seq 1 $n); do
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
step "$n namespaces on $net/24 through a bridge"

# Each node binds its own IP, port 7900, HTTP on its namespace's loopback (the defaults).
# In the background, in_ns would run in a subshell whose PID is not the agent's, and ending it
# would leave the agent running: the agent writes its own PID (the shell's, which it replaces)
# to a file, and that is the PID ended when the test ends.
start() {
  local pidfile="$dir/node$1.pid"
  ip netns exec "$(ns "$1")" sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$pidfile" "$chorus" agent --name "node$1" --bind "$(ip_of "$1"):7900" \
    --seed "$(ip_of 1):7900" --seed "$(ip_of 2):7900" >> "$dir/node$1.log" 2>&1 &
  pids+=($!)  # ip, which becomes the agent too unless it forks
  poll 10 test -s "$pidfile" || fail "node$1 did not start"
  pids+=("$(cat "$pidfile")")
}
members() { in_ns "$1" "$chorus" members 2> /dev/null; }
count_state() { members "$1" | awk -v s="$2" '$3 == s' | wc -l; }
state_of() { members "$1" | awk -v m="node$2" '$1 == m { print $3 }'; }
all_alive() { local i; for i in $(seq 1 $n); do [ "$(count_state "$i" alive)" -eq $n ] || return 1; done; }
# sees OBSERVER STATE MEMBERS...
sees() { local o="$1" s="$2" m; shift 2; for m in "$@"; do [ "$(state_of "$o" "$m")" = "$s" ] || return 1; done; }

for i in $(seq 1 $n); do start "$i"; done
t0=$(now_ms)
poll 60 all_alive || fail "the $n nodes did not converge"
step "converged in $(since "$t0") s"

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
  for i in "${left_side[@]}"; do sees "$i" dead "${right_side[@]}" && sees "$i" alive "${left_side[@]}" || return 1; done
  for i in "${right_side[@]}"; do sees "$i" dead "${left_side[@]}" && sees "$i" alive "${right_side[@]}" || return 1; done
}
poll 60 both_sides || fail "the partition was not detected on both sides"
step "both sides saw the other dead within $(since "$t0") s"

step "healing"
for i in $(seq 1 $n); do in_ns "$i" iptables -F; done
t0=$(now_ms)
poll 90 all_alive || fail "the halves did not merge after the partition healed"
merged=$(since "$t0")
step "merged in $merged s, no restart"

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
echo "netns cluster: partition detected on both sides and healed in $merged s; ${loss_seconds} s of 10% loss, 0 false dead (suspicion log lines in all: $suspicions)"
