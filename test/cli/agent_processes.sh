#!/usr/bin/env bash
# Real `chorus agent` processes on loopback: three join; kill -9 of one is seen as dead; SIGTERM
# of another is seen as left and it exits 0; bad flags exit 2 without starting. Waits poll the
# logs with generous deadlines; only the processes started here are ended, by PID.
#
#   agent_processes.sh /path/to/chorus
set -u
chorus="$1"
dir="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$dir"/*.log; do echo "== $f"; cat "$f"; done; exit 1; }

# wait_for FILE PATTERN SECONDS
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# Bad input: exit 2, a message naming the field, nothing started.
out=$("$chorus" agent --profile moon 2>&1); rc=$?
[ $rc -eq 2 ] || fail "--profile moon exited $rc"
echo "$out" | grep -q "profile: must be lan, wan or local" || fail "no field named: $out"
out=$("$chorus" agent --tag oops 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "tag:" || fail "--tag oops: $rc $out"
echo '{"bogus": 1}' > "$dir/bad.json"
out=$("$chorus" agent --config "$dir/bad.json" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "bogus: unknown setting" || fail "bad config: $rc $out"

# Three agents on random high ports.
base=$((20000 + RANDOM % 30000))
start() {  # name port [seed]
  local args=(agent --name "$1" --bind "127.0.0.1:$2" --http "127.0.0.1:$(($2 + 1000))" --profile local)
  [ -n "${3:-}" ] && args+=(--seed "127.0.0.1:$3")
  "$chorus" "${args[@]}" > "$dir/$1.log" 2>&1 &
  pids+=($!)
}
start a $base
wait_for "$dir/a.log" "agent started" 10 || fail "a did not start"
start b $((base + 1)) $base
start c $((base + 2)) $base
pid_b=${pids[1]}
pid_c=${pids[2]}
for n in b c; do wait_for "$dir/a.log" "member alive name=$n" 15 || fail "a never saw $n"; done
wait_for "$dir/b.log" "member alive name=c" 15 || fail "b never saw c"

kill -9 "$pid_c"
wait_for "$dir/a.log" "member dead name=c" 20 || fail "a did not see c dead"
wait_for "$dir/b.log" "member dead name=c" 20 || fail "b did not see c dead"

kill -TERM "$pid_b"
deadline=$((SECONDS + 15))
while kill -0 "$pid_b" 2>/dev/null; do
  [ $SECONDS -ge $deadline ] && fail "b did not exit after SIGTERM"
  sleep 0.1
done
wait "$pid_b"; rc=$?
[ $rc -eq 0 ] || fail "b exited $rc after SIGTERM"
wait_for "$dir/a.log" "member left name=b" 10 || fail "a did not see b leave"
grep -q "member dead name=b" "$dir/a.log" && fail "a saw b dead instead of left"
echo "agent processes: 3 joined, kill -9 seen dead, SIGTERM seen left, bad flags refused"
