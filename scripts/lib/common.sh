# Shared by the scripts in scripts/: installing what is missing and building.
# Source it; it defines functions only.

CHORUS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Debian packages the build and tests need. Keep in step with CMakeLists.txt.
CHORUS_PACKAGES=(
  cmake ninja-build g++
  libuv1-dev libflatbuffers-dev flatbuffers-compiler nlohmann-json3-dev libfmt-dev
  catch2 libcli11-dev
)

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

# configure_and_build DIR [cmake args...]: configures (once) and builds DIR.
configure_and_build() {
  local dir="$1"; shift
  local jobs; jobs="$(nproc 2>/dev/null || echo 2)"
  cmake -S "$CHORUS_ROOT" -B "$CHORUS_ROOT/$dir" -G Ninja "$@" >/dev/null
  cmake --build "$CHORUS_ROOT/$dir" -j "$jobs"
}
