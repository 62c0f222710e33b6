#!/usr/bin/env bash
# Tasks on real `chorus` processes on loopback, through the CLI and the HTTP API:
#   - tasks posted to one node run on the owners the ring names, and a forwarded task's
#     status reads the same from every node;
#   - with an owner saturated (a slow sleep in its only slot), new tasks for its keys run on
#     the other candidates; with every candidate full, 503 with Retry-After;
#   - a silent owner (SIGSTOP): its keys run on the next candidate after the forward timeout;
#   - after kill -9 of an owner, once the cluster has marked it dead, every new task for its
#     keys runs elsewhere and none gets a 5xx;
#   - the exec handler's success (examples/handlers/checksum.sh), failure and timeout, and
#     CHORUS_TASK_ID and CHORUS_TASK_KEY in its environment; the http handler's success and
#     failure against a real HTTP server (the API of an agent of a cluster of its own);
#   - /metrics, task families included, passes `promtool check metrics` (when installed);
#   - bad input: unknown handler, bad JSON, an oversized payload answered 413 while the
#     client is still sending, an unknown task id.
# Waits poll with generous deadlines, never a fixed sleep; only processes started here are
# ended, by PID.
#
#   task_processes.sh /path/to/chorus /path/to/examples
set -u
chorus="$1"
examples="$(cd "$2" && pwd)"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_begin

# Agents bind ports the kernel picks (start_agent); agent i gossips on bind[i] and serves HTTP
# on http[i]. a, once up, is everyone's seed.
names=(a b c d e)
declare -A pid
bind=() http=()
hport() { echo "${http[$1]##*:}"; }
# A sleep no other process on the machine runs: the hung command's child, found by pgrep.
marker="29.$$"
me="$(id -un)"  # exec handlers run as the user running the test (under root, they must name one)
# Under root, one handler drops to nobody: the command runs as that user, under its limit,
# with no environment but its task's id and key.
confined_user=$([ "$(id -u)" -eq 0 ] && echo nobody || echo "$me")
# The http handlers post to the API of an agent of a cluster of its own: a real HTTP server
# that answers 202 and 404, and whose address is known before the config naming it is written.
# A cluster of one keeps no copies (replicas 1), or it would refuse every task.
echo '{"tasks": {"replicas": 1}}' > "$dir/web.json"
start_agent "$dir/web.log" "$chorus" agent --name web --profile local --cluster hooks \
  --config "$dir/web.json"
web=$agent_http
# Every node runs one task at a time and queues none, so "saturated" and "full" are one task.
# phi_route is out of reach: on a loaded machine a peer's φ can cross the default (5) between
# the ring lookup below and the submit after it, and the pick moves (a CI run saw it). This
# test is about key affinity, load and the forward timeout; stepping around a high φ is the
# router's and the simulator's to test, on virtual time.
cat > "$dir/agent.json" <<EOF
{
  "tasks": {"capacity": 1, "queue_max": 0, "phi_route": 1000000},
  "handlers": {
    "checksum": {"exec": ["$examples/handlers/checksum.sh"], "user": "$me"},
    "broken": {"exec": ["/bin/sh", "-c", "echo something broke >&2; exit 3"], "user": "$me"},
    "hang": {"exec": ["/bin/sh", "-c", "sleep $marker & wait"], "user": "$me"},
    "whoami": {"exec": ["/bin/sh", "-c",
               "printf '{\"id\":\"%s\",\"key\":\"%s\"}' \"\$CHORUS_TASK_ID\" \"\$CHORUS_TASK_KEY\""],
               "user": "$me"},
    "confined": {"exec": ["/bin/bash", "-c",
                 "echo \"\$(id -un):\$(ulimit -n):\$(env | grep -cvE '^(CHORUS_TASK_(ID|KEY)|PWD|SHLVL|_)=')\""],
                 "user": "$confined_user", "env": [], "limits": {"nofile": 32}},
    "hook": {"http": "http://$web/v1/tasks"},
    "hook404": {"http": "http://$web/v1/nowhere"}
  }
}
EOF

index_of() { local i; for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && echo "$i"; done; }
start() {
  local n="$1" i; i=$(index_of "$1")
  start_agent "$dir/$n.log" "$chorus" agent --name "$n" --profile local \
    ${bind[0]:+--seed "${bind[0]}"} --config "$dir/agent.json"
  pid[$n]=$agent_pid
  bind[$i]=$agent_bind
  http[$i]=$agent_http
}
at() { echo "${http[$(index_of "$1")]}"; }
# field JSON NAME: a top-level string or number field of compact JSON.
field() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<< "$1" | head -n 1; }
# submit NODE KEY TYPE PAYLOAD [WAIT]: the agent's JSON answer (stdout), or nothing.
submit() {
  "$chorus" submit --http "$(at "$1")" --key "$2" --type "$3" --payload "$4" \
    ${5:+--wait "$5"} --json 2>>"$dir/cli.err" | tr -d '\n '
}
# settled NODE KEY: true once NODE sees every candidate of KEY alive, idle (no load reported,
# none sent since) and with a steady φ: then the router's pick is the ring's first
# candidate and stays so while one task runs, so `owner` (set here) is where it will run.
# Without the wait, a load report arriving between the lookup and the submit moved the pick.
settled() {
  owner=$("$chorus" ring --http "$(at "$1")" --key "$2" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
cs = r["candidates"]
ok = cs and all(c["alive"] and c["load"] == 0 and c["sent"] == 0 and c["phi"] < 2.5 for c in cs)
print(r["owner"] if ok and r["owner"] == cs[0]["name"] else "")')
  [ -n "$owner" ]
}
primary_of() {
  "$chorus" ring --http "$(at "$1")" --key "$2" --json | tr -d '\n ' |
    sed -n 's/.*"candidates":\[{[^}]*"name":"\([^"]*\)".*/\1/p'
}
# raw PORT REQUEST: sends REQUEST as is and prints what comes back.
raw() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf '%b' "$2" >&3
  timeout 10 cat <&3
  exec 3<&-
}
alive_everywhere() {
  local n
  for n in "$@"; do
    [ "$("$chorus" members --http "$(at "$n")" 2>/dev/null | awk '$3 == "alive"' | wc -l)" -eq $# ] ||
      return 1
  done
}

step "start 5 agents"
for n in "${names[@]}"; do start "$n"; done
poll 60 alive_everywhere "${names[@]}" || fail "the cluster did not converge"

step "tasks posted to a run on the ring's owner; status reads the same from every node"
forwarded=0
for k in $(seq 1 20); do
  key="user-$k"
  poll 30 settled a "$key" || fail "the candidates of $key did not settle: $("$chorus" ring --http "$(at a)" --key "$key" --json)"
  out=$(submit a "$key" echo "{\"n\":$k}" 10s)
  [ "$(field "$out" state)" = succeeded ] || fail "$key: $out"
  [ "$(field "$out" owner)" = "$owner" ] || fail "$key ran on $(field "$out" owner), the ring said $owner"
  grep -q "\"result\":{\"n\":$k}" <<< "$out" || fail "$key: wrong result: $out"
  if [ "$owner" != a ]; then
    forwarded=$((forwarded + 1))
    id=$(field "$out" id)
    for n in "${names[@]}"; do
      s=$("$chorus" task --http "$(at "$n")" "$id" --json | tr -d '\n ')
      [ "$(field "$s" owner)" = "$owner" ] && [ "$(field "$s" state)" = succeeded ] ||
        fail "task $id read from $n: $s"
    done
  fi
done
[ $forwarded -gt 0 ] || fail "no task was forwarded (20 keys all owned by a?)"
step "  20 tasks on their owners, $forwarded forwarded and readable from all 5 nodes"

step "a saturated owner's keys go to the other candidates"
key=hot-key
poll 30 settled a "$key" || fail "the candidates of $key did not settle"
primary=$owner
slow=$(submit a "$key" sleep '{"ms":60000}')
[ "$(field "$slow" owner)" = "$primary" ] || fail "the slow task went to $(field "$slow" owner), not the idle primary $primary"
for i in 1 2 3 4; do
  out=$(submit a "$key" echo "{\"i\":$i}" 10s)
  [ "$(field "$out" state)" = succeeded ] || fail "echo $i: $out"
  [ "$(field "$out" owner)" != "$primary" ] || fail "echo $i ran on the saturated owner $primary"
done
slow2=$(submit a "$key" sleep '{"ms":60000}')
slow3=$(submit a "$key" sleep '{"ms":60000}')
[ -n "$slow2" ] && [ -n "$slow3" ] || fail "the other candidates did not take a slow task each"
body='{"key":"hot-key","type":"echo"}'
resp=$(raw "$(hport 0)" "POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${#body}\r\n\r\n$body")
grep -q "^HTTP/1.1 503" <<< "$resp" && grep -qi "^Retry-After: 1" <<< "$resp" ||
  fail "all candidates full, but: $resp"
for t in "$slow" "$slow2" "$slow3"; do
  "$chorus" task --http "$(at c)" --cancel "$(field "$t" id)" > /dev/null || fail "cancel $t"
done
step "  4 echo tasks avoided $primary; all 3 candidates full gave 503 + Retry-After"

step "exec handler: success, failure, timeout, and the task's id and key in its environment"
out=$(submit b doc-1 checksum '{"text":"hello"}' 20s)
[ "$(field "$out" state)" = succeeded ] && grep -q '"sha256":"[0-9a-f]\{64\}"' <<< "$out" ||
  fail "checksum: $out"
out=$(submit b doc-2 broken '{}' 20s)
[ "$(field "$out" state)" = failed ] && [ "$(field "$out" exit_code)" = 3 ] &&
  grep -q "somethingbroke" <<< "$out" || fail "broken: $out"  # (spaces stripped)
t0=$SECONDS
out=$("$chorus" submit --http "$(at b)" --key doc-3 --type hang --timeout-ms 500 --wait 20s --json | tr -d '\n ')
[ "$(field "$out" state)" = timed_out ] || fail "hang: $out"
[ $((SECONDS - t0)) -lt 15 ] || fail "the timed-out command took $((SECONDS - t0)) s to end"
poll 20 bash -c "! pgrep -f 'slee[p] $marker' > /dev/null" ||
  fail "the hung command's child survived its timeout"
out=$(submit a env-1 whoami '{}' 20s)
python3 -c '
import json, sys
t = json.loads(sys.argv[1])
sys.exit(t["state"] != "succeeded" or t["result"] != {"id": t["id"], "key": "env-1"})' "$out" ||
  fail "whoami: the command did not see its task's id and key: $out"
step "  checksum succeeded, broken failed with exit 3 and its stderr, hang timed out and was killed"
step "  whoami saw its task's id and key in CHORUS_TASK_ID and CHORUS_TASK_KEY"
out=$(submit a confined-1 confined '{}' 20s)
python3 -c '
import json, sys
t = json.loads(sys.argv[1])
sys.exit(t["state"] != "succeeded" or t["result"] != sys.argv[2] + ":32:0\n")' "$out" "$confined_user" ||
  fail "confined: the command did not run as $confined_user with 32 files and no variables of the agent: $out"
step "  confined ran as $confined_user, with at most 32 open files and only its task's variables"

step "http handler: a 2xx body is the result, anything else fails the task"
out=$(submit c web-1 hook '{"key":"inner","type":"echo"}' 20s)
[ "$(field "$out" state)" = succeeded ] && grep -q '"result":{.*"key":"inner"' <<< "$out" ||
  fail "hook: $out"
out=$(submit c web-2 hook404 '{}' 20s)
[ "$(field "$out" state)" = failed ] && grep -q "POSTanswered404" <<< "$out" ||
  fail "hook404: $out"  # (spaces stripped)
step "  a POST to another agent's API became a task's result; a 404 failed its task"

step "bad input"
out=$("$chorus" submit --http "$(at a)" --key k --type nope 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "no member has a handler named 'nope'" <<< "$out" && grep -q "(422)" <<< "$out" ||
  fail "unknown type: $rc $out"
resp=$(raw "$(hport 0)" "POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"key\":1,")
grep -q "^HTTP/1.1 400" <<< "$resp" && grep -q bad_json <<< "$resp" || fail "bad JSON: $resp"
# Headers announce 2 MiB; the answer comes before a byte of the body is sent.
resp=$(raw "$(hport 0)" "POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
grep -q "^HTTP/1.1 413" <<< "$resp" || fail "oversized payload: $resp"
out=$("$chorus" task --http "$(at a)" 0123456789abcdef-nothing 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "(404)" <<< "$out" || fail "unknown id: $rc $out"
"$chorus" members --http "$(at a)" > /dev/null || fail "a stopped serving after bad input"

step "a silent owner (SIGSTOP): its keys go to the next candidate after the forward timeout"
silent=""
for k in $(seq 1 50); do
  p=$(primary_of a "quiet-$k")
  if [ "$p" != a ]; then silent=$p; silent_key="quiet-$k"; break; fi
done
[ -n "$silent" ] || fail "no key with a primary other than a"
kill -STOP "${pid[$silent]}"
t0=$SECONDS
for i in 1 2 3; do
  out=$(submit a "$silent_key" echo "{\"i\":$i}" 10s)
  [ "$(field "$out" state)" = succeeded ] || fail "$silent_key with $silent stopped: $out $(tail -n 3 "$dir/cli.err")"
  [ "$(field "$out" owner)" != "$silent" ] || fail "$silent_key ran on the stopped $silent"
done
took=$((SECONDS - t0))
[ $took -lt 30 ] || fail "3 tasks took $took s around the silent owner"
kill -CONT "${pid[$silent]}"
poll 60 alive_everywhere "${names[@]}" || fail "$silent did not come back after SIGCONT"
step "  3 tasks for $silent's key ran on other candidates within $took s"

step "kill -9 an owner: once it is dead, its keys run elsewhere with no 5xx"
victim=""
for k in $(seq 1 50); do
  p=$(primary_of a "key-$k")
  if [ "$p" != a ]; then victim=$p; break; fi
done
[ -n "$victim" ] || fail "no key with a primary other than a"
keys=()
for k in $(seq 1 200); do
  [ "$(primary_of a "key-$k")" = "$victim" ] && keys+=("key-$k")
  [ ${#keys[@]} -ge 10 ] && break
done
kill -9 "${pid[$victim]}"
survivors=()
for n in "${names[@]}"; do [ "$n" != "$victim" ] && survivors+=("$n"); done
dead_everywhere() {
  local n
  for n in "${survivors[@]}"; do
    [ "$("$chorus" members --http "$(at "$n")" | awk -v v="$victim" '$1 == v { print $3 }')" = dead ] || return 1
  done
}
poll 60 dead_everywhere || fail "$victim was not marked dead everywhere"
for key in "${keys[@]}"; do
  out=$(submit a "$key" echo '{"after":"crash"}' 10s)
  [ "$(field "$out" state)" = succeeded ] || fail "$key after the crash: $out $(tail -n 3 "$dir/cli.err")"
  [ "$(field "$out" owner)" != "$victim" ] || fail "$key ran on the dead $victim"
done
step "  ${#keys[@]} tasks for $victim's keys ran on other candidates, none failed"
if command -v promtool > /dev/null; then
  exec 3<> "/dev/tcp/127.0.0.1/$(hport 0)"
  printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
  sed '1,/^\r$/d' <&3 > "$dir/metrics.txt"
  exec 3<&-
  grep -q '^chorus_task_forward_duration_seconds_count [1-9]' "$dir/metrics.txt" ||
    fail "no forwarded task in a's metrics"
  promtool check metrics < "$dir/metrics.txt" > "$dir/promtool.out" 2>&1 ||
    fail "promtool: $(cat "$dir/promtool.out")"
fi
echo "PASS"
