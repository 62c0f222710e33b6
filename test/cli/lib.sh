# Shared by the process tests in this folder. Source it; it defines functions only.

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
