#!/usr/bin/env bash
# Real `chorus` processes on loopback, driven through the CLI and the HTTP API:
#   - bad flags exit 2 naming the field, nothing started;
#   - 5 agents started with seed lists converge (every `chorus members` shows 5 alive);
#   - a blocking query returns promptly on a change, and the event stream delivers it;
#   - kill -9 of one is seen dead by every other; restarted, it rejoins with a higher
#     incarnation;
#   - SIGTERM of one and `chorus leave` of another are seen as left, and both exit 0;
#   - garbage, truncated and wrong-cluster datagrams and frames are rejected and counted while
#     the node keeps serving; /metrics passes `promtool check metrics` (when installed).
# Waits poll with generous deadlines, never a fixed sleep; only processes started here are
# ended, by PID. HTTP requests go through bash's /dev/tcp, so no HTTP tool is needed.
#
#   cluster_processes.sh /path/to/chorus
set -u
chorus="$1"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
test_begin

# http PORT METHOD PATH: the raw response (status line, headers, body).
http() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n' "$2" "$3" >&3
  cat <&3
  exec 3<&-
}

# ---- bad input on the command line
out=$("$chorus" agent --profile moon 2>&1); rc=$?
[ $rc -eq 2 ] || fail "--profile moon exited $rc"
echo "$out" | grep -q "profile: must be lan, wan or local" || fail "no field named: $out"
out=$("$chorus" agent --tag oops 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "tag:" || fail "--tag oops: $rc $out"
echo '{"bogus": 1}' > "$dir/bad.json"
out=$("$chorus" agent --config "$dir/bad.json" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "bogus: unknown setting" || fail "bad config: $rc $out"
out=$("$chorus" members --nonsense 2>&1); rc=$?
[ $rc -eq 2 ] || fail "members --nonsense exited $rc"

# ---- five agents on ports the kernel picks (start_agent); agent i gossips on bind[i] and
# serves HTTP on http[i]. a and b, once up, are everyone's seeds.
names=(a b c d e)
declare -A pid
bind=() http=()
port() { echo "${bind[$1]##*:}"; }
hport() { echo "${http[$1]##*:}"; }
index_of() { local i; for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && echo "$i"; done; }
start() {  # name: a restarted agent comes back on its old addresses
  local n="$1"
  local i; i=$(index_of "$n")
  local seeds=() s
  for s in 0 1; do [ -n "${bind[$s]:-}" ] && [ "$s" != "$i" ] && seeds+=(--seed "${bind[$s]}"); done
  start_agent "$dir/$n.log" ${bind[$i]:+--at "${bind[$i]}" "${http[$i]}"} \
    "$chorus" agent --name "$n" --profile local "${seeds[@]}"
  pid[$n]=$agent_pid
  bind[$i]=$agent_bind
  http[$i]=$agent_http
}
members() { "$chorus" members --http "127.0.0.1:$(hport "$(index_of "$1")")" 2>/dev/null; }
# state_of OBSERVER NAME: NAME's state in OBSERVER's table
state_of() { members "$1" | awk -v n="$2" '$1 == n { print $3 }'; }
incarnation_of() { members "$1" | awk -v n="$2" '$1 == n { print $6 }'; }
count_alive() { members "$1" | awk '$3 == "alive"' | wc -l; }
all_see() {  # all_see STATE NAME OBSERVERS...
  local want="$1" who="$2"; shift 2
  local o
  for o in "$@"; do [ "$(state_of "$o" "$who")" = "$want" ] || return 1; done
}
converged() { local n; for n in "$@"; do [ "$(count_alive "$n")" -eq $# ] || return 1; done; }

step "starting 5 agents"
for n in "${names[@]}"; do start "$n"; done
poll 30 converged a b c d e || fail "5 agents did not converge"
members a > "$dir/table.out"
step "converged: $(tr '\n' '|' < "$dir/table.out")"

# ---- stream and blocking query, then kill -9
"$chorus" members --watch --json --http "127.0.0.1:$(hport 0)" > "$dir/watch.out" 2>&1 &
watch_pid=$!
pids+=($watch_pid)
poll 10 grep -q '"event":"snapshot"' "$dir/watch.out" || fail "the stream sent no snapshot"
index=$(http "$(hport 0)" GET /v1/members | tr -d '\r' | awk -F': ' 'tolower($1) == "x-chorus-index" { print $2 }')
[ -n "$index" ] || fail "no X-Chorus-Index"
( http "$(hport 0)" GET "/v1/members?index=$index&wait=120s" > "$dir/blocking.out"; date +%s%N > "$dir/blocking.done" ) &
pids+=($!)
inc_c=$(incarnation_of a c)
held() { grep -q 'chorus_http_blocking_queries 1' <(http "$(hport 0)" GET /metrics); }
poll 10 held || fail "the blocking query was not held"
step "killing c (kill -9); blocking query held at index $index"
killed_at=$(date +%s%N)
kill -9 "${pid[c]}"
poll 20 test -s "$dir/blocking.done" || fail "the blocking query did not return on the change"
blocked_ms=$(( ($(cat "$dir/blocking.done") - killed_at) / 1000000 ))
grep -q '"members"' "$dir/blocking.out" || fail "the blocking query returned no members"
step "blocking query returned ${blocked_ms} ms after the kill (its wait was 120 s)"
poll 30 all_see dead c a b d e || fail "not every survivor saw c dead"
dead_ms=$(( ($(date +%s%N) - killed_at) / 1000000 ))
step "c dead at every survivor within ${dead_ms} ms"
poll 10 grep -q '"name":"c".*"state":"dead"' "$dir/watch.out" || fail "the stream did not deliver c's death"

# ---- restart c: it rejoins with a higher incarnation
step "restarting c"
start c
poll 30 all_see alive c a b d e || fail "c did not rejoin everywhere"
inc_new=$(incarnation_of a c)
[ "$inc_new" -gt "$inc_c" ] || fail "c rejoined with incarnation $inc_new, not above $inc_c"
poll 10 grep -q '"name":"c".*"state":"alive"' "$dir/watch.out" || fail "the stream missed c's return"
step "c alive again with incarnation $inc_new > $inc_c"

# ---- SIGTERM d: left, not dead; exit 0
step "SIGTERM to d"
kill -TERM "${pid[d]}"
poll 15 bash -c "! kill -0 ${pid[d]} 2>/dev/null" || fail "d did not exit after SIGTERM"
wait "${pid[d]}"; rc=$?
[ $rc -eq 0 ] || fail "d exited $rc after SIGTERM"
poll 15 all_see left d a b c e || fail "not everyone saw d leave"
grep -q "member dead name=d" "$dir/a.log" && fail "a saw d dead instead of left"

# ---- chorus leave e
step "chorus leave on e"
out=$("$chorus" leave --http "127.0.0.1:$(hport 4)" 2>&1); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "Graceful leave complete" || fail "chorus leave: $rc $out"
poll 15 bash -c "! kill -0 ${pid[e]} 2>/dev/null" || fail "e did not exit after chorus leave"
wait "${pid[e]}"; rc=$?
[ $rc -eq 0 ] || fail "e exited $rc after chorus leave"
poll 15 all_see left e a b c || fail "not everyone saw e leave"
poll 10 grep -q '"name":"e".*"state":"left"' "$dir/watch.out" || fail "the stream missed e leaving"

# ---- bad input on the wire: rejected, counted, and a keeps serving
rejected() {  # rejected REASON: a's count
  http "$(hport 0)" GET /metrics | awk -v r="chorus_packets_rejected_total{reason=\"$1\"}" '$1 == r { print $2 }'
}
step "sending garbage to a"
printf 'this is not a chorus packet' > "/dev/udp/127.0.0.1/$(port 0)"
head -c 3 /dev/urandom > "/dev/udp/127.0.0.1/$(port 0)"  # truncated
malformed_ok() { [ "$(rejected malformed)" -ge 2 ]; }
poll 10 malformed_ok || fail "garbage datagrams were not counted (malformed=$(rejected malformed))"
# A TCP frame: a 4-byte length and garbage; then one declaring 2 GiB (too large).
exec 4<>"/dev/tcp/127.0.0.1/$(port 0)"; printf '\x00\x00\x00\x05hello' >&4; exec 4<&-
exec 4<>"/dev/tcp/127.0.0.1/$(port 0)"; printf '\x7f\xff\xff\xffxx' >&4; exec 4<&-
frame_ok() { [ "$(rejected malformed)" -ge 3 ]; }
poll 10 frame_ok || fail "a garbage frame was not counted"
# The frame of 2 GiB is counted under its own reason, once; the kill -9 earlier raised others.
stream_errors() {  # stream_errors REASON: a's count
  http "$(hport 0)" GET /metrics | awk -v r="chorus_stream_errors_total{reason=\"$1\"}" '$1 == r { print $2 }'
}
oversize() { [ "$(stream_errors too_large)" = 1 ]; }
poll 10 oversize || fail "an oversize frame was not counted once (too_large=$(stream_errors too_large))"
# Another cluster's agent seeding a: refused, counted, never listed.
start_agent "$dir/intruder.log" \
  "$chorus" agent --name intruder --profile local --cluster other --seed "127.0.0.1:$(port 0)"
wrong_cluster() { [ "$(rejected wrong_cluster)" -ge 1 ]; }
poll 15 wrong_cluster || fail "another cluster's traffic was not counted"
members a | grep -q intruder && fail "a listed a member of another cluster"
converged a b c || fail "a, b, c stopped agreeing after bad input"
http "$(hport 0)" GET /v1/health | head -1 | grep -q "200" || fail "a stopped serving"

# ---- malformed HTTP: each refused with its status and counted; a keeps serving
raw() {  # raw PORT BYTES: the response's status line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf '%b' "$2" >&3
  head -n 1 <&3 | tr -d '\r'
  exec 3<&-
}
step "malformed HTTP to a"
[[ "$(raw "$(hport 0)" 'GARBAGE\r\n\r\n')" == "HTTP/1.1 400 "* ]] || fail "a bad request line was not 400"
big=$(head -c 20000 /dev/zero | tr '\0' a)
[[ "$(raw "$(hport 0)" "GET / HTTP/1.1\r\nX-Big: $big\r\n\r\n")" == "HTTP/1.1 431 "* ]] || fail "huge headers were not 431"
[[ "$(raw "$(hport 0)" 'POST /v1/leave HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{bad}')" == "HTTP/1.1 400 "* ]] ||
  fail "bad JSON was not 400"
[[ "$(raw "$(hport 0)" 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n')" == "HTTP/1.1 400 "* ]] || fail "bad chunking was not 400"
http_rejected() { http "$(hport 0)" GET /metrics | awk -v r="chorus_http_rejected_total{reason=\"$1\"}" '$1 == r { print $2 }'; }
[ "$(http_rejected bad_request)" -ge 2 ] && [ "$(http_rejected headers_too_large)" -ge 1 ] &&
  [ "$(http_rejected bad_json)" -ge 1 ] || fail "malformed HTTP was not counted"
kill -0 "${pid[a]}" || fail "a stopped after a bad leave request"
http "$(hport 0)" GET /v1/health | head -1 | grep -q "200" || fail "a stopped serving after malformed HTTP"

# ---- metrics format
http "$(hport 0)" GET /metrics | tr -d '\r' | sed '1,/^$/d' > "$dir/metrics.out"
grep -q '^chorus_members{state="alive"} 3$' "$dir/metrics.out" || fail "metrics: alive count"
if command -v promtool > /dev/null; then
  promtool check metrics < "$dir/metrics.out" || fail "promtool check metrics"
  step "promtool check metrics: ok"
else
  step "promtool not installed; metrics format not checked by it"
fi

echo "cluster processes: 5 converged; blocking query ${blocked_ms} ms; kill -9 dead everywhere in ${dead_ms} ms; rejoin, SIGTERM, chorus leave, stream events, bad input: ok"
