#!/usr/bin/env bash
# The Debian package (cmake/ChorusInstall.cmake, cmake/deb/), installed, run by systemd and
# removed:
#   - `cpack -G DEB` builds it from BUILD_DIR, its conffile and maintainer scripts in it;
#   - in a throwaway copy of this machine (an overlay of / on a tmpfs, booted by systemd-nspawn:
#     a real systemd as its PID 1, a network namespace of its own), `dpkg -i` puts every file in
#     place (chorus(1) naming every subcommand of `chorus --help`), makes the system user chorus
#     and /var/lib/chorus, `systemd-analyze verify` finds the installed unit clean, and the
#     postinst's start leaves the service enabled and active (Type=notify: READY=1 came) with
#     its process running as chorus, answering `chorus members`;
#   - `dpkg -r` stops it and removes the files but keeps the config, as Debian does; `dpkg -P`
#     then leaves nothing named chorus behind: no file, user, group, state or enabled unit.
# This machine's own dpkg database, users and units are never touched: the writes land in the
# overlay's tmpfs, mounted in a mount namespace of this script's own that ends with it. Every
# wait is bounded, and the container is stopped on any exit (a `timeout` stops it anyway).
# Needs root, dpkg, cpack and systemd-nspawn (Debian: systemd-container); skipped (77) without.
#
#   package.sh BUILD_DIR
set -euo pipefail

build="$(cd "${1:?usage: package.sh BUILD_DIR}" && pwd)"
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (it boots a container to install the package in)"
for tool in dpkg dpkg-deb cpack systemd-nspawn nsenter unshare ip; do
  command -v "$tool" > /dev/null || skip "$tool is not installed (systemd-nspawn: systemd-container)"
done
# known: whether dpkg knows chorus in any state but "not-installed" (a removed package whose
# config is kept included).
known() { dpkg-query -W -f='${Status}' chorus 2> /dev/null | grep -qv 'not-installed$'; }
if known || getent passwd chorus > /dev/null; then
  skip "chorus (the package or the user) is already on this machine: the test starts from a system without it"
fi

# The rest runs in a mount namespace of its own, so every mount below goes away with it.
if [ -z "${CHORUS_PACKAGE_NS:-}" ]; then
  CHORUS_PACKAGE_NS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi

work="$(mktemp -d /tmp/chorus-package.XXXXXX)"
box_pid=""  # the `timeout` over systemd-nspawn
step() { printf '%s [%ds]\n' "$*" "$SECONDS"; }
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 40 "$f"; }; done
  exit 1
}
cleanup() {
  if [ -n "$box_pid" ] && kill -0 "$box_pid" 2> /dev/null; then
    # SIGTERM to systemd-nspawn (through timeout) halts the container's systemd.
    kill -TERM "$box_pid" 2> /dev/null || true
    for _ in $(seq 1 60); do kill -0 "$box_pid" 2> /dev/null || break; sleep 0.5; done
    kill -KILL "$box_pid" 2> /dev/null || true
    wait "$box_pid" 2> /dev/null || true
  fi
  umount -l "$work/fs/root" 2> /dev/null || true
  umount -l "$work/fs" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step "cpack -G DEB"
cpack -G DEB -B "$work/cpack" --config "$build/CPackConfig.cmake" > "$work/cpack.log" 2>&1 ||
  fail "cpack did not build the package"
debs=("$work"/cpack/chorus_*.deb)
[ -f "${debs[0]}" ] || fail "cpack made no chorus_*.deb"
mkdir "$work/deb"
cp "${debs[0]}" "$work/deb/chorus.deb"
dpkg-deb --info "$work/deb/chorus.deb" > "$work/info.txt"
dpkg-deb --contents "$work/deb/chorus.deb" > "$work/contents.txt"
echo "   $(basename "${debs[0]}"): $(du -k "${debs[0]}" | cut -f1) KiB, $(grep -c . "$work/contents.txt") entries"
grep -E '^ (Package|Version|Architecture|Depends|Section):' "$work/info.txt"
control="$(dpkg-deb --ctrl-tarfile "$work/deb/chorus.deb" | tar -t)"
for member in conffiles postinst prerm postrm; do
  grep -qx "./$member" <<< "$control" || fail "the package has no $member"
done
dpkg-deb --ctrl-tarfile "$work/deb/chorus.deb" | tar -xO ./conffiles | grep -qx /etc/chorus/chorus.json ||
  fail "/etc/chorus/chorus.json is not a conffile"
man=0
grep -q ' \./usr/share/man/man1/chorus\.1\.gz$' "$work/contents.txt" && man=1
if grep -qE '^HELP2MAN:FILEPATH=/' "$build/CMakeCache.txt" && [ "$man" -eq 0 ]; then
  fail "help2man was found but the package has no chorus(1)"
fi

step "a copy of this machine: an overlay of / on a tmpfs, booted by systemd-nspawn"
mkdir "$work/fs"
mount -t tmpfs -o mode=0755 chorus-package "$work/fs"
mkdir "$work/fs/upper" "$work/fs/work" "$work/fs/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/fs/upper,workdir=$work/fs/work" "$work/fs/root"
# A policy-rc.d that forbids maintainer scripts to start services (as container images have,
# this VM's included) would keep the postinst's start from being tested: the copy has none.
rm -f "$work/fs/root/usr/sbin/policy-rc.d"
# systemd-nspawn keeps its own state under /run/systemd/nspawn and will only delete it from a
# tmpfs; where /run is none (as in this VM), a tmpfs in this namespace holds it instead.
if [ "$(stat -f -c %T /run)" != tmpfs ] && [ -d /run/systemd ]; then
  mount -t tmpfs -o mode=0755 chorus-package-run /run/systemd
fi
# basic.target: the system's foundations, without the services this machine happens to have
# enabled (databases, web servers); the postinst starts chorus itself.
timeout --kill-after=10 280 systemd-nspawn --directory="$work/fs/root" \
  --machine="chorus-package-$$" --register=no --keep-unit --link-journal=no --private-network \
  --console=read-only --bind-ro="$work/deb:/mnt/chorus-package" --boot \
  systemd.unit=basic.target > "$work/console.log" 2>&1 &
box_pid=$!

# The container's PID 1: the process named systemd under systemd-nspawn under timeout.
leader=""
for _ in $(seq 1 100); do
  leader="$(ps -e -o pid=,ppid=,comm= | awk -v top="$box_pid" '
    { parent[$1] = $2; name[$1] = $3 }
    END { for (p in name) if (name[p] == "systemd" && parent[parent[p]] == top) print p }')"
  [ -n "$leader" ] && break
  kill -0 "$box_pid" 2> /dev/null || fail "systemd-nspawn exited before the container's systemd started"
  sleep 0.2
done
[ -n "$leader" ] || fail "no systemd started in the container within 20 s"

# box CMD...: runs CMD inside the container, in all its namespaces, at most 120 s.
box() {
  timeout --kill-after=5 120 nsenter --target "$leader" --all -- \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
# Until its systemd listens, systemctl answers nothing; then --wait returns once booting ends.
state=""
for _ in $(seq 1 100); do
  state="$(box systemctl is-system-running --wait 2> /dev/null || true)"
  [ -n "$state" ] && break
  sleep 0.3
done
echo "   the container's systemd (PID $leader here): $(box systemctl --version | head -n 1), system $state"
[ "$state" = running ] || [ "$state" = degraded ] || fail "the container did not finish booting ($state)"

# The container has loopback only, and the packaged config gives no --advertise: the agent
# advertises the first non-loopback address, as on a host. A veth pair inside the container's
# own network namespace gives it one, from TEST-NET-1 (RFC 5737); with no seeds nothing is sent.
box sh -c 'ip link add chorus-a type veth peer name chorus-b && ip addr add 192.0.2.10/24 dev chorus-a &&
  ip link set chorus-a up && ip link set chorus-b up' || fail "no veth pair in the container"

step "dpkg -i"
box dpkg -i /mnt/chorus-package/chorus.deb > "$work/dpkg-install.log" 2>&1 || fail "dpkg -i failed"
files=(/usr/bin/chorus /usr/bin/chorus-sim /usr/lib/systemd/system/chorus.service
  /etc/chorus/chorus.json /usr/share/doc/chorus/README.md /usr/share/doc/chorus/LICENSE
  /usr/share/doc/chorus/examples/systemd/chorus.service
  /usr/share/doc/chorus/examples/handlers/checksum.sh)
[ "$man" -eq 1 ] && files+=(/usr/share/man/man1/chorus.1.gz)
for f in "${files[@]}"; do box test -f "$f" || fail "$f is not installed"; done
box test -x /usr/share/doc/chorus/examples/handlers/checksum.sh || fail "the example handler is not executable"
box grep -qx 'ExecStart=/usr/bin/chorus agent --config /etc/chorus/chorus.json' \
  /usr/lib/systemd/system/chorus.service || fail "the installed unit's ExecStart is not /usr/bin/chorus's"
box dpkg-query -W -f='${Conffiles}\n' chorus | grep -q '^ /etc/chorus/chorus.json ' ||
  fail "dpkg does not hold /etc/chorus/chorus.json as a conffile"
if [ "$man" -eq 1 ]; then
  # chorus(1) comes from `chorus --help`: every subcommand listed there is in it.
  page="$(box sh -c 'zcat /usr/share/man/man1/chorus.1.gz' | sed 's/\\-/-/g')"  # roff's \- is -
  for sub in $(box chorus --help | awk '/^Subcommands:/ { on = 1; next } on && NF { print $1 }'); do
    grep -q -- "$sub" <<< "$page" || fail "chorus(1) does not name the subcommand $sub"
  done
fi
user="$(box getent passwd chorus)" || fail "dpkg -i made no user chorus"
echo "   user: $user"
uid="$(cut -d: -f3 <<< "$user")"
[ "$uid" -lt 1000 ] || fail "chorus is not a system user (uid $uid)"
case "$(cut -d: -f7 <<< "$user")" in */nologin | */false) ;; *) fail "chorus can log in: $user" ;; esac
box getent group chorus > /dev/null || fail "dpkg -i made no group chorus"
[ "$(box stat -c '%U:%G %a' /var/lib/chorus)" = "chorus:chorus 700" ] ||
  fail "/var/lib/chorus is not chorus's alone: $(box stat -c '%U:%G %a' /var/lib/chorus)"

step "systemd-analyze verify /usr/lib/systemd/system/chorus.service"
verify="$(box systemd-analyze verify /usr/lib/systemd/system/chorus.service 2>&1)" ||
  fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify is not clean: $verify"
echo "   clean"

step "the service, started by the postinst"
box systemctl is-enabled chorus > /dev/null || fail "the postinst did not enable chorus.service"
# The postinst's start returns once the agent has said READY=1 (Type=notify); a failed start
# shows here as not active.
active="$(box systemctl is-active chorus || true)"
box systemctl show -p Type,ActiveState,SubState,Result,MainPID,User,NRestarts chorus | sed 's/^/   /'
box journalctl -u chorus --no-pager -o cat > "$work/journal.log" 2>&1 || true
[ "$active" = active ] || fail "chorus.service is $active, not active"
pid="$(box systemctl show -p MainPID --value chorus)"
[ "$(box ps -o user= -p "$pid")" = chorus ] || fail "the agent (PID $pid) does not run as chorus"
echo "   the agent, PID $pid in the container: $(box ps -o user=,args= -p "$pid")"
grep -m1 ' agent started ' "$work/journal.log" | sed 's/^/   journal: /' || fail "the journal has no 'agent started'"
# systemd's own word that the start job finished, which for Type=notify is READY=1's arrival.
grep -m1 '^Started chorus.service' "$work/journal.log" | sed 's/^/   journal: /' ||
  fail "systemd never logged chorus.service as started"
box chorus members > "$work/members.log" 2>&1 || fail "chorus members did not reach the service"
grep -q alive "$work/members.log" || fail "chorus members shows no member alive"
sed 's/^/   /' "$work/members.log"

step "dpkg -r: stopped, files gone, config kept"
box dpkg -r chorus > "$work/dpkg-remove.log" 2>&1 || fail "dpkg -r failed"
[ "$(box systemctl is-active chorus || true)" != active ] || fail "chorus.service still runs after dpkg -r"
for f in /usr/bin/chorus /usr/bin/chorus-sim /usr/lib/systemd/system/chorus.service; do
  box test ! -e "$f" || fail "$f is still there after dpkg -r"
done
box test -f /etc/chorus/chorus.json || fail "dpkg -r removed the conffile (only a purge should)"

step "dpkg -P: nothing left"
box dpkg -P chorus > "$work/dpkg-purge.log" 2>&1 || fail "dpkg -P failed"
! box getent passwd chorus > /dev/null || fail "the user chorus is still there after dpkg -P"
! box getent group chorus > /dev/null || fail "the group chorus is still there after dpkg -P"
for f in /etc/chorus /var/lib/chorus /etc/systemd/system/multi-user.target.wants/chorus.service; do
  box test ! -e "$f" -a ! -L "$f" || fail "$f is still there after dpkg -P"
done
! box dpkg-query -W -f='${Status}' chorus 2> /dev/null | grep -qv 'not-installed$' ||
  fail "dpkg still knows chorus after dpkg -P"
# Every write of the container's life is in the overlay's upper folder: nothing named chorus may
# remain there but the folder the package was handed in through.
left="$(cd "$work/fs/upper" && find . -iname '*chorus*' ! -path ./mnt/chorus-package)"
[ -z "$left" ] || fail "left behind after dpkg -P: $left"
echo "   no file, user, group, state or unit named chorus"
# And this machine, under the overlay, never had any of it.
! known && ! getent passwd chorus > /dev/null || fail "chorus reached this machine itself"
echo "PASS [${SECONDS}s]"
