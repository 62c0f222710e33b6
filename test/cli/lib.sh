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
