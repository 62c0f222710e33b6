# Shared by the process tests in this folder. Source it; it defines functions only.
#
# A test calls test_begin first: it gets a temporary folder in $dir and a list $pids for the
# processes it starts; on exit, whatever way it ends, those processes and any they started are
# ended (by PID, never by name) and the folder removed. A test with more to undo sets $on_exit
# to a command.

test_begin() {
  dir="$(mktemp -d)"
  pids=()
  on_exit=":"
  trap test_end EXIT
}

test_end() {
  {
    for p in "${pids[@]}"; do end_tree "$p"; wait "$p"; done
    $on_exit
  } 2> /dev/null
  rm -rf "$dir"
}

# end_tree PID: ends PID and every process under it, by PID. A PID kept for `( ... ) &` or for
# a function run in the background is a subshell's, and killing only it would leave what it
# started running; so the process is stopped first (it can start nothing more), its children
# are ended the same way, then it is killed.
end_tree() {
  local c
  kill -STOP "$1" 2> /dev/null || return 0
  for c in $(pgrep -P "$1"); do end_tree "$c"; done
  kill -9 "$1" 2> /dev/null
}

# fail MESSAGE: prints it and the tail of every log in $dir, then exits 1.
fail() {
  echo "FAIL: $*"
  for f in "$dir"/*.log "$dir"/*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done
  exit 1
}

# step MESSAGE: a timestamped progress line.
step() { echo "[$(date +%T)] $*"; }

# poll SECONDS COMMAND...: runs COMMAND until it succeeds or the deadline passes (a wait for a
# condition, never a fixed sleep).
poll() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# log_field LINE KEY: KEY's value in a line of the agent's text log, `TIME LEVEL message
# key=value key="a value" ...` (a value holding a space, quote, `=` or backslash is quoted, with
# `\"` and `\\` inside). The first word of the form key=value starts the fields, so a message
# must not hold one. Fails if the line has no such field.
log_field() {
  local line=" $1" key="$2" rest value out="" i
  local re='^ ([A-Za-z_]+)=("(([^"\\]|\\.)*)"|([^ "]*))(.*)$'
  until [[ $line =~ $re ]]; do  # a word of the time, level or message
    rest="${line# }"
    [[ $rest == *" "* ]] || return 1
    line=" ${rest#* }"
  done
  while [[ $line =~ $re ]]; do
    if [ "${BASH_REMATCH[1]}" != "$key" ]; then
      line="${BASH_REMATCH[6]}"
      continue
    fi
    [[ ${BASH_REMATCH[2]} == \"* ]] || { echo "${BASH_REMATCH[5]}"; return 0; }
    value="${BASH_REMATCH[3]}"
    for ((i = 0; i < ${#value}; i++)); do
      [ "${value:i:1}" = '\' ] && i=$((i + 1))
      out+="${value:i:1}"
    done
    echo "$out"
    return 0
  done
  return 1
}

# started_agent LOG FROM PID: waits up to 30 s for the `agent started` line that the agent PID
# writes to LOG past byte FROM, then sets agent_bind and agent_http to the gossip and HTTP
# addresses it bound (host:port). Fails the test if the agent exits first.
started_agent() {
  local log="$1" from="$2" pid="$3" line deadline=$((SECONDS + 30))
  until line=$(started_line "$log" "$from"); do
    kill -0 "$pid" 2> /dev/null || return 1
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.05
  done
  agent_bind=$(log_field "$line" bind) && agent_http=$(log_field "$line" http)
}

# started_line LOG FROM: the first whole `agent started` line in LOG past byte FROM.
started_line() {
  local line
  while IFS= read -r line; do  # read skips a last line still being written (no newline yet)
    [[ $line == *" agent started "* ]] && { echo "$line"; return 0; }
  done < <(tail -c +$(($2 + 1)) "$1" 2> /dev/null)
  return 1
}

# start_agent LOG [--at BIND HTTP] COMMAND...: runs COMMAND, a `chorus agent` command line
# without --bind and --http, in the background with its output appended to LOG, and waits
# until it has started. It binds 127.0.0.1:0 for gossip and HTTP: the kernel picks ports no
# one holds, so tests run at once never collide (a random port base did). With --at it binds
# BIND and HTTP (a restart on its old addresses), or fresh ports if another process took one
# of those meanwhile. Sets agent_pid, agent_bind and agent_http (the addresses bound) and adds
# the PID to $pids; fails the test if the agent does not start.
start_agent() {
  local log="$1" bind=127.0.0.1:0 http=127.0.0.1:0 from
  shift
  if [ "$1" = --at ]; then
    bind="$2" http="$3"
    shift 3
  fi
  while :; do
    from=$(stat -c %s "$log" 2> /dev/null || echo 0)
    "$@" --bind "$bind" --http "$http" >> "$log" 2>&1 &
    agent_pid=$!
    pids+=($!)
    started_agent "$log" "$from" "$agent_pid" && return 0
    kill -0 "$agent_pid" 2> /dev/null && fail "an agent did not start in 30 s: $*"
    wait "$agent_pid"
    [ "$bind:$http" = 127.0.0.1:0:127.0.0.1:0 ] && fail "an agent could not start: $*"
    bind=127.0.0.1:0 http=127.0.0.1:0  # its old ports are taken: fresh ones
  done
}
