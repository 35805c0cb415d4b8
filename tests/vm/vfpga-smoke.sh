#!/usr/bin/env bash
# Usage: tests/vm/vfpga-smoke.sh [--vfpgad PATH] [--timeout SECS] [-- RUN-GUEST OPTIONS...]
#   --vfpgad PATH    the daemon to test (default: target/release/vfpgad; not built here)
#   --timeout SECS   limit for the guest run (default 120)
#   -- ...           more options for tests/vm/run-guest.sh (e.g. --vq-size 256)
#
# End-to-end smoke test of the guest driver against the real daemon: builds (or reuses)
# the QEMU root (build-qemu-root.sh) and the guest (build-guest.sh), starts vfpgad on a
# socket in a temporary folder, boots the guest with one vfpga device on that socket
# (run-guest.sh --scenario smoke: /dev/vfpga0 must appear as crw-rw----), then stops
# vfpgad with SIGTERM. Exits 0 only if the guest scenario passed, vfpgad saw the guest
# connect, and vfpgad stopped cleanly with status 0. The daemon log (RUST_LOG=info unless
# set) and the console log go to $VFPGA_CACHE/vfpga-smoke/. Environment: VFPGA_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

vfpgad=$repo/target/release/vfpgad limit=120
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--vfpgad | --timeout)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--vfpgad) vfpgad=$2 ;;
		--timeout) limit=$2 ;;
		esac
		shift 2
		;;
	--) shift && extra=("$@") && break ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
[ -x "$vfpgad" ] || die "no vfpgad at $vfpgad (build it with: cargo build --release -p vfpgad)"

t0=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
"$here/build-qemu-root.sh" >/dev/null
guest=$("$here/build-guest.sh")
log "QEMU root and guest ready in $(since "$t0") s"

work=$VFPGA_CACHE/vfpga-smoke
mkdir -p "$work"
exec 9>"$work/.lock"
flock 9 # one run at a time per cache
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vfpga-smoke.XXXXXX")
sock=$tmp/vm0.sock dlog=$work/vfpgad.log
dpid=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null; then
		kill -TERM "$dpid" 2>/dev/null || true
		wait "$dpid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RUST_LOG=${RUST_LOG:-info} "$vfpgad" --socket "vm0=$sock" 2>"$dlog" &
dpid=$!
for _ in $(seq 600); do
	[ -S "$sock" ] && break
	kill -0 "$dpid" 2>/dev/null || break
	sleep 0.05
done
if [ ! -S "$sock" ]; then
	tail -n 20 "$dlog" >&2
	die "vfpgad did not create $sock (log: $dlog)"
fi
log "vfpgad $dpid listening on $sock"

rc=0
"$here/run-guest.sh" --guest "$guest" --scenario smoke --vfpga "$sock" --timeout "$limit" \
	--log "$work/console.log" "${extra[@]}" || rc=$?

drc=0
if kill -0 "$dpid" 2>/dev/null; then
	kill -TERM "$dpid"
	wait "$dpid" || drc=$?
else
	wait "$dpid" || drc=$?
	log "error: vfpgad exited during the run (status $drc)"
	[ "$drc" != 0 ] || drc=1
fi
dpid=''
ok=1
[ "$rc" = 0 ] || { log "error: guest scenario smoke failed (status $rc, console: $work/console.log)"; ok=0; }
[ "$drc" = 0 ] || { log "error: vfpgad stopped with status $drc (log: $dlog)"; ok=0; }
grep -q 'frontend connected' "$dlog" || { log "error: vfpgad never saw the guest connect (log: $dlog)"; ok=0; }
if [ "$ok" = 0 ]; then
	tail -n 15 "$dlog" >&2
	exit 1
fi
log "vfpga smoke test passed in $(since "$t0") s (vfpgad stopped cleanly)"
