# Shared by the scripts in scripts/: installing what is missing and building.
# Source it; it defines functions only.

CHORUS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Every process a script starts inherits this, so check_no_strays tells the agents this run
# started from anyone else's (a demo, another run of the tests) by more than their binary.
export CHORUS_RUN_ID="$$.$(date +%s%N)"

# Debian packages the build and tests need. Keep in step with CMakeLists.txt.
CHORUS_PACKAGES=(
  cmake ninja-build g++ pkg-config
  libuv1-dev libflatbuffers-dev flatbuffers-compiler nlohmann-json3-dev libfmt-dev
  catch2 libcli11-dev node-llhttp libxxhash-dev libsqlite3-dev
)
# What the tests need beyond the build: promtool (from prometheus) checks /metrics; iproute2
# and iptables build the network-namespace cluster and its partitions and loss; python3 runs
# the chaos test's client.
CHORUS_TEST_PACKAGES=(prometheus iproute2 iptables python3)

# Installs whichever of the given packages are missing; silent when all are present.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}" >&2
    echo "install them (sudo apt-get install ${missing[*]}) or run this script as root" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# configure_and_build DIR [cmake args...]: configures DIR and builds everything in it.
configure_and_build() {
  local dir="$1"; shift
  cmake -S "$CHORUS_ROOT" -B "$CHORUS_ROOT/$dir" -G Ninja "$@" >/dev/null
  cmake --build "$CHORUS_ROOT/$dir" -j "$(nproc 2>/dev/null || echo 2)"
}

# build_target DIR TARGET: configures DIR if it is new and builds one target, leaving the
# cache as it is (so a demo never turns off the tests that scripts/test builds in DIR).
build_target() {
  local dir="$1" target="$2"
  [ -f "$CHORUS_ROOT/$dir/CMakeCache.txt" ] ||
    cmake -S "$CHORUS_ROOT" -B "$CHORUS_ROOT/$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$CHORUS_ROOT/$dir" -j "$(nproc 2>/dev/null || echo 2)" --target "$target"
}

# check_no_strays DIR: fails if a process this run started from DIR's chorus binary is still
# running, as after a test pass none may be: a test that leaves an agent behind leaks one on
# every run, and leftovers hold ports and disturb later tests. Prints each and ends it (by
# PID; this run started it). Others running that binary are left alone.
check_no_strays() {
  local exe="$CHORUS_ROOT/$1/chorus" p strays=()
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2> /dev/null)" = "$exe" ] || continue
    grep -qzxF "CHORUS_RUN_ID=$CHORUS_RUN_ID" "$p/environ" 2> /dev/null || continue
    strays+=("${p#/proc/}")
  done
  [ ${#strays[@]} -eq 0 ] && return 0
  echo "FAIL: ${#strays[@]} process(es) of $exe outlived the tests that started them:" >&2
  for p in "${strays[@]}"; do
    echo "  $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2> /dev/null)" >&2
    kill -9 "$p" 2> /dev/null || true  # (it may have ended meanwhile)
  done
  return 1
}
