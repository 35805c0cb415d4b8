#!/usr/bin/env bash
# Usage: tests/xen/xen-smoke.sh [--timeout SECS] [-- BUILD-XEN OPTIONS...]
#   --timeout SECS   limit for each Xen run (default 300)
#   -- ...           more options for tests/xen/build-xen.sh (e.g. --bin FILE:/usr/bin/)
#
# End-to-end check of the Xen test tooling: builds (or reuses) the QEMU root
# (tests/vm/build-qemu-root.sh) and Xen + dom0 + domU (tests/xen/build-xen.sh, output in
# $VFPGA_CACHE/xen-smoke/xen), then boots Xen twice with tests/xen/run-xen.sh:
# scenario `smoke` (xenstored, xl info, xl list in dom0) and scenario `domu` (a PV domU
# created, seen on its console and in xenstore, destroyed; @introduceDomain and
# @releaseDomain watched). Exits 0 only if both scenarios passed, else the first failing
# run's status (124 timeout, 125 no result). Console logs go to
# $VFPGA_CACHE/xen-smoke/{smoke,domu}.log. Environment: VFPGA_CACHE, VFPGA_QEMU_ROOT.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

limit=300
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--timeout)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		limit=$2
		shift 2
		;;
	--) shift && extra=("$@") && break ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
case $limit in '' | *[!0-9]* | 0) die "--timeout $limit: expected a positive integer" ;; esac

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
work=$VFPGA_CACHE/xen-smoke
mkdir -p "$work"
exec 8>"$work/.lock"
flock 8 # one run at a time per cache

t0=$EPOCHREALTIME
"$here/../vm/build-qemu-root.sh" >/dev/null
xdir=$("$here/build-xen.sh" --out "$work/xen" "${extra[@]}")
log "QEMU root and Xen build ready in $(since "$t0") s"

rc=0 results=()
for s in smoke domu; do
	t1=$EPOCHREALTIME
	src=0
	"$here/run-xen.sh" --xen "$xdir" --scenario "$s" --timeout "$limit" --log "$work/$s.log" || src=$?
	results+=("$s: rc=$src in $(since "$t1") s")
	[ "$rc" != 0 ] || rc=$src
done
for r in "${results[@]}"; do log "$r"; done
if [ "$rc" != 0 ]; then
	log "error: Xen smoke test failed (logs: $work/smoke.log, $work/domu.log)"
	exit "$rc"
fi
log "Xen smoke test passed in $(since "$t0") s"
