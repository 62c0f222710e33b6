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
  catch2 libcli11-dev node-llhttp libxxhash-dev libsqlite3-dev libssl-dev
  util-linux  # prlimit: an exec handler's resource limits
  help2man    # chorus(1) from `chorus --help` (a build without it installs no man page)
)
# What the tests need beyond the build: promtool (from prometheus) checks /metrics; iproute2
# and iptables build the network-namespace cluster and its partitions and loss; python3 runs
# the chaos test's client; openssl and curl check the API's TLS (test/cli/tls.py); systemd
# brings systemd-analyze, which checks the unit in examples/systemd (test/cli/systemd.py);
# python3-yaml reads examples/kubernetes (test/cli/kubernetes.py); dnsmasq-base serves the DNS
# SRV seeds in test/cli/dns_seeds.py; dpkg-dev (dpkg-shlibdeps)
# and systemd-container (systemd-nspawn) build the Debian package and boot a container that
# installs and runs it (test/cli/package.sh).
# chromium runs the dashboard in a real browser (test/browser, with playwright-core from the npm
# registry, on Node.js: see ensure_node).
CHORUS_TEST_PACKAGES=(prometheus iproute2 iptables python3 python3-yaml openssl curl systemd chromium
  dnsmasq-base dpkg-dev systemd-container)

# Node.js and npm from Debian (nodejs, npm) unless some are already there: a machine may have
# them from elsewhere (NodeSource's nodejs holds npm), and Debian's npm would not install
# beside those.
ensure_node() {
  command -v node > /dev/null && command -v npm > /dev/null && return 0
  ensure_packages nodejs npm
}

# phase TEXT: a heading in a script's output, with the time since the script started, so that a
# CI log says where its minutes went.
phase() {
  printf '== %s  [%dm%02ds]\n' "$*" $((SECONDS / 60)) $((SECONDS % 60))
}

# wrk_row DIR SECONDS CONNECTIONS URL LUA: runs wrk (2 threads, keep-alive connections) against
# URL for SECONDS with the Lua script LUA, its output in DIR, and prints one line:
# "requests/s p50_ms p99_ms non2xx requests wrk_cpu_s" (wrk's own user + system CPU).
wrk_row() {
  local dir="$1" seconds="$2" connections="$3" url="$4" lua="$5" TIMEFORMAT='%U %S'
  { time wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$lua" "$url" \
    > "$dir/wrk.out" 2>&1; } 2> "$dir/wrk.cpu"
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    FILENAME ~ /cpu$/ { cpu = $1 + $2; next }
    /requests in/ { n = $1 }
    /Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.2f %.2f %d %d %.2f\n", rps, p50, p99, bad + 0, n, cpu }' \
    "$dir/wrk.cpu" "$dir/wrk.out"
}

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

# ---- fuzzing (test/fuzz): libFuzzer targets under ASan + UBSan, built with clang

# clang is Debian's default (14 on Debian 12); libFuzzer and the sanitizer runtimes are its
# compiler-rt (libclang-rt-dev, only a recommendation of clang, which --no-install-recommends
# skips); llvm brings llvm-symbolizer, for stacks with file and line; iproute2 brings the `ip`
# that brings up loopback in the fuzzers' network namespace (unshare is util-linux's).
CHORUS_FUZZ_PACKAGES=(clang libclang-rt-dev llvm iproute2)
# Every target in test/fuzz/CMakeLists.txt, without its fuzz_ prefix.
CHORUS_FUZZ_TARGETS=(packet frame config http task_json stream seal srv)

# A unity build, eight files to a batch: what scripts/test's second and later builds use (see
# there). Two cores still have batches enough to share.
CHORUS_UNITY=(-DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=8)

# Configures build-fuzz (clang, CHORUS_FUZZ; the test suite is not built there) and builds the
# fuzz targets.
build_fuzzers() {
  cmake -S "$CHORUS_ROOT" -B "$CHORUS_ROOT/build-fuzz" -G Ninja "${CHORUS_UNITY[@]}" \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCHORUS_FUZZ=ON -DCHORUS_STATIC=OFF -DBUILD_TESTING=OFF -DCHORUS_WERROR=ON >/dev/null
  cmake --build "$CHORUS_ROOT/build-fuzz" -j "$(nproc 2>/dev/null || echo 2)" --target fuzzers
}

# isolated CMD...: runs CMD in a network namespace of its own with only loopback up, so an
# agent under fuzzing reaches nothing else whatever addresses its input names (as root, or
# through a user namespace otherwise).
isolated() {
  local ip flags=(--net)
  ip="$(command -v ip || echo /usr/sbin/ip)"
  [ "$(id -u)" -eq 0 ] || flags+=(--map-root-user)
  unshare "${flags[@]}" sh -c '"$0" link set lo up && exec "$@"' "$ip" "$@"
}

# Whether `isolated` works here (it needs root or user namespaces; some containers allow
# neither).
can_isolate() {
  isolated true 2>/dev/null
}

# fuzz_target TARGET SECONDS: fuzzes build-fuzz's fuzz_TARGET for SECONDS, one process on one
# core, from a fresh copy of its seeds, in a network namespace of its own. Work goes under
# build-fuzz/fuzz/TARGET/, emptied first: the corpus it grew, its log, and crashes/ with the
# inputs of any crash, leak, sanitizer report or hang. Fails (and says where to look) on any.
fuzz_target() {
  local target="$1" seconds="$2"
  local bin="$CHORUS_ROOT/build-fuzz/test/fuzz/fuzz_$target"
  local work="$CHORUS_ROOT/build-fuzz/fuzz/$target"
  local dict=()
  case "$target" in
    http) dict=(-dict="$CHORUS_ROOT/test/fuzz/dict/http.dict") ;;
    config | task_json) dict=(-dict="$CHORUS_ROOT/test/fuzz/dict/json.dict") ;;
  esac
  local run=(isolated)
  if ! can_isolate; then
    if [ "$target" = stream ]; then
      echo "!! fuzz_stream skipped: it needs a network namespace, and none can be made here" >&2
      return 0
    fi
    run=()
  fi
  rm -rf "$work/corpus" "$work/crashes"
  mkdir -p "$work/corpus" "$work/crashes"
  cp -r "$CHORUS_ROOT/test/fuzz/corpus/$target/." "$work/corpus/"
  phase "fuzz_$target for ${seconds}s (work: $work)"
  local rc=0
  # -timeout: an input that takes 30 s hangs (the harness waits tens of milliseconds an exchange).
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "${run[@]}" "$bin" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$work/crashes/" "${dict[@]}" "$work/corpus" >"$work/fuzz.log" 2>&1 || rc=$?
  grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)' \
    "$work/fuzz.log" || true
  echo "   corpus: $(find "$work/corpus" -type f | wc -l) inputs"
  if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$work/crashes")" ]; then
    grep -m1 -E '^==[0-9]+==ERROR|runtime error|^fuzz: property broken|^==[0-9]+== ERROR' \
      "$work/fuzz.log" || tail -n 20 "$work/fuzz.log"
    echo "!! fuzz_$target failed (exit $rc); log: $work/fuzz.log; inputs: $work/crashes/" >&2
    ls -l "$work/crashes" >&2
    return 1
  fi
}

# run_fuzzers SECONDS_EACH: builds build-fuzz, replays every seed and every saved crash
# (test/fuzz/regressions) once through CTest, then fuzzes each target for SECONDS_EACH in turn.
# Fails if anything crashed; each failure names its log and inputs.
run_fuzzers() {
  local seconds="$1" failed=()
  ensure_packages "${CHORUS_PACKAGES[@]}" "${CHORUS_FUZZ_PACKAGES[@]}"
  phase "build (clang, libFuzzer, ASan + UBSan)"
  build_fuzzers
  phase "fuzz seeds and regressions"
  local run=()
  can_isolate && run=(isolated)
  "${run[@]}" ctest --test-dir "$CHORUS_ROOT/build-fuzz" --output-on-failure --timeout 300 ||
    failed+=(regressions)
  for target in "${CHORUS_FUZZ_TARGETS[@]}"; do
    fuzz_target "$target" "$seconds" || failed+=("$target")
  done
  if [ ${#failed[@]} -ne 0 ]; then
    echo "!! fuzzing failed: ${failed[*]}" >&2
    return 1
  fi
}
