#!/bin/sh
# Scenario `domu` (busybox sh in dom0, run by tests/xen/dom0/init): a PV domU's life.
# - watches @introduceDomain, @releaseDomain and /local/domain with xenstore-watch over
#   xenstored's socket /run/xenstored/socket (one process each; at the end the steps and
#   the events are printed as one timeline: what a dom0 daemon watching xenstore sees);
# - `xl create $VFPGA_DOMU_CFG` (/domu/domu.cfg; name from `vfpga.domu_name=NAME` on the
#   dom0 command line if given, passed to xl as name=NAME);
# - waits (60 s at most) for the domU's `VFPGA-DOMU-UP` line in xenconsoled's log
#   $VFPGA_XEN_CONSOLE_DIR/guest-NAME.log;
# - `xl list` shows the domain; `xenstore-ls /local/domain/<domid>` shows its entries
#   (name = NAME), and the backend entries dom0 holds for it are listed;
# - `xl destroy NAME`; the domain is gone from `xl list` and /local/domain/<domid>,
#   /libxl/<domid> and dom0's backend/*/<domid> are gone from xenstore;
# - @introduceDomain and @releaseDomain each fired at least once more than the initial
#   event every new watch gets.
# Prints the time of each step. Exits non-zero at the first failed check.
#   tests/xen/run-xen.sh --scenario domu
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail

cfg=${VFPGA_DOMU_CFG:-/domu/domu.cfg}
logdir=${VFPGA_XEN_CONSOLE_DIR:-/var/log/xen/console}
name=$(sed -n 's/^\(.* \)\{0,1\}vfpga\.domu_name=\([^ ]*\).*/\2/p' /proc/cmdline)
[ -n "$name" ] || name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$cfg")
sock=/run/xenstored/socket

now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
mark() { echo "$(now) --- $*" >>/tmp/watch-marks.log; }
stop_watchers() {
	for f in /tmp/watch-*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
		rm -f "$f"
	done
	wait 2>/dev/null || true
}
# The steps and the watch events in time order (uptime in seconds).
show_watches() {
	echo '--- timeline: dom0 uptime, [watch] event path or --- step'
	sort -n -s /tmp/watch-*.log 2>/dev/null || true
}
fail() {
	echo "domu: FAIL: $*"
	stop_watchers
	show_watches
	[ -f "$logdir/guest-$name.log" ] && { echo "--- $logdir/guest-$name.log"; cat "$logdir/guest-$name.log"; }
	xl destroy "$name" >/dev/null 2>&1 || true
	exit 1
}
trap stop_watchers EXIT

# watch TAG PATH: one xenstore-watch process on PATH talking to xenstored's unix socket,
# as the daemon will; each event line gets dom0's uptime and [PATH].
watch() {
	sh -c 'echo $$ >"$0"; XENSTORED_PATH=$1 exec xenstore-watch "$2"' \
		"/tmp/watch-$1.pid" "$sock" "$2" 2>&1 |
		while IFS= read -r p; do echo "$(now) [$2] $p"; done >"/tmp/watch-$1.log" &
}
: >/tmp/watch-marks.log
watch intro @introduceDomain
watch release @releaseDomain
watch local /local/domain
count() { grep -c "\\[$2\\] $2\$" "/tmp/watch-$1.log" || true; } # count TAG PATH
# wait_count TAG PATH N WHAT: waits (up to 60 s) until TAG's log holds more than N events.
wait_count() {
	n=0
	until [ "$(count "$1" "$2")" -gt "$3" ]; do
		[ $((n += 1)) -le 600 ] || fail "$4"
		sleep 0.1
	done
}
# A registered watch fires once at once, with its own path: wait for that first event.
wait_count intro @introduceDomain 0 "the @introduceDomain watch never registered"
wait_count release @releaseDomain 0 "the @releaseDomain watch never registered"
intro0=$(count intro @introduceDomain) rel0=$(count release @releaseDomain)

echo "--- xl create $cfg name=$name"
mark "xl create"
t=$(now)
xl create "$cfg" "name=\"$name\"" || fail "xl create $cfg"
t_create=$(since "$t")
domid=$(xl domid "$name") || fail "xl domid $name"
mark "xl create done: domain $domid"
echo "domu: $name is domain $domid; xl create took $t_create s"

t=$(now)
log=$logdir/guest-$name.log
n=0
until grep -q 'VFPGA-DOMU-UP' "$log" 2>/dev/null; do
	[ $((n += 1)) -le 1800 ] || fail "no VFPGA-DOMU-UP in $log after 180 s"
	sleep 0.1
done
mark "console marker seen"
echo "domu: console marker after $(since "$t") s more: $(grep -m1 'VFPGA-DOMU-UP' "$log")"

echo '--- xl list'
xl list | tee /tmp/xl-list || fail "xl list"
grep -Eq "^$name +$domid " /tmp/xl-list || fail "xl list shows no $name with ID $domid"
echo "--- xenstore-ls /local/domain/$domid"
xenstore-ls "/local/domain/$domid" | tee /tmp/xs-domu || fail "xenstore-ls /local/domain/$domid"
[ "$(xenstore-read "/local/domain/$domid/name")" = "$name" ] ||
	fail "/local/domain/$domid/name is not $name"
echo "--- xenstore-ls -f /local/domain/0/backend (entries of dom0 for its guests)"
xenstore-ls -f /local/domain/0/backend 2>&1 || echo '(none)'
echo "--- xenstore-ls -f /libxl/$domid"
xenstore-ls -f "/libxl/$domid" 2>&1 || echo '(none)'
echo "--- xenstore-ls -f /vm"
xenstore-ls -f /vm 2>&1 || echo '(none)'

echo "--- xl destroy $name"
mark "xl destroy"
t=$(now)
xl destroy "$name" || fail "xl destroy $name"
mark "xl destroy done"
echo "domu: xl destroy took $(since "$t") s"
wait_count intro @introduceDomain "$intro0" "@introduceDomain did not fire on xl create"
wait_count release @releaseDomain "$rel0" "@releaseDomain did not fire on xl destroy"
xl list | tee /tmp/xl-list || fail "xl list"
! grep -Eq "^$name " /tmp/xl-list || fail "$name is still in xl list"
for p in "/local/domain/$domid" "/libxl/$domid"; do
	! xenstore-exists "$p" 2>/dev/null || fail "$p still exists in xenstore"
done
for b in $(xenstore-list /local/domain/0/backend 2>/dev/null); do
	! xenstore-exists "/local/domain/0/backend/$b/$domid" 2>/dev/null ||
		fail "/local/domain/0/backend/$b/$domid still exists"
done
stop_watchers
show_watches
intro=$(count intro @introduceDomain) rel=$(count release @releaseDomain)
[ "$intro" -gt "$intro0" ] || fail "@introduceDomain did not fire on xl create"
[ "$rel" -gt "$rel0" ] || fail "@releaseDomain did not fire on xl destroy"
echo "--- $log"
cat "$log"
echo "domu: OK: domain $domid ($name) created in $t_create s, up, listed, destroyed and gone;" \
	"@introduceDomain fired $((intro - intro0))x, @releaseDomain $((rel - rel0))x"
