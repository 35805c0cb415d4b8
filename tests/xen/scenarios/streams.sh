#!/bin/sh
# Scenario `streams` (busybox sh in dom0, run by tests/xen/dom0/init): PV domUs without
# any vfpga kernel module reach vfpgad in dom0 over Xen vchan and over TLS on a bridged
# vif. Needs in dom0: /usr/bin/vfpgad and /pki/{ca.pem,server.pem,server.key} (vfpgad's
# certificate for 10.0.3.1), and a domU image whose /domu-run.sh is
# tests/xen/domu/streams.sh (tests/xen/build-xen.sh --domu-file). Steps:
# - bridge xenbr0 at 10.0.3.1/24; vfpgad as the dom0 service with guest d1 (domain
#   vfpga-domu: vchan and tls:10.0.3.1:7000) and d2 (domain vfpga-domu2: vchan only);
# - `xl create` vfpga-domu (role guest, 10.0.3.2, its vif on xenbr0); waits for its
#   VFPGA-DOMU-DONE (kernels over both transports, then a session held over vchan);
# - `xl create` vfpga-domu2 (role intruder, 10.0.3.3, told d1's domid); waits for its
#   DONE; destroys it; d1's sessions-dropped must still be 0;
# - `xl destroy vfpga-domu`: d1's sessions-dropped must become 1 or more (the held
#   session) and its vchan channels leave xenstore;
# - SIGTERM: vfpgad exits 0.
# With the share, the evidence goes to /host/streams/: domu1.log, domu2.log (the domUs'
# consoles), vfpgad.log, dropped-before, dropped-after, vchan-after.rc, vfpgad.rc.
set -eu
P=/local/domain/0/vfpga
cdir=${VFPGA_XEN_CONSOLE_DIR:-/var/log/xen/console}
out=/tmp/streams-out
if [ -n "${VFPGA_HOST:-}" ] && mkdir -p /host/streams 2>/dev/null; then out=/host/streams; fi
vpid=''
save() {
	cp "$cdir/guest-vfpga-domu.log" "$out/domu1.log" 2>/dev/null || true
	cp "$cdir/guest-vfpga-domu2.log" "$out/domu2.log" 2>/dev/null || true
	cp /tmp/vfpgad.log "$out/vfpgad.log" 2>/dev/null || true
}
cleanup() {
	save
	xl destroy vfpga-domu2 >/dev/null 2>&1 || true
	xl destroy vfpga-domu >/dev/null 2>&1 || true
	[ -z "$vpid" ] || kill -KILL "$vpid" 2>/dev/null || true
}
trap cleanup EXIT
fail() {
	echo "streams: FAIL: $*"
	for f in /tmp/vfpgad.log "$cdir/guest-vfpga-domu.log" "$cdir/guest-vfpga-domu2.log"; do
		[ -s "$f" ] && { echo "--- $f"; tail -n 60 "$f"; }
	done
	exit 1
}
# wait_until SECS WHAT COMMAND...: polls COMMAND every 0.1 s.
wait_until() {
	_s=$1 _w=$2
	shift 2
	_n=0
	until "$@"; do
		[ $((_n += 1)) -le $((_s * 10)) ] || fail "$_w: not after $_s s"
		[ -z "$vpid" ] || kill -0 "$vpid" 2>/dev/null || fail "$_w: vfpgad exited"
		sleep 0.1
	done
}
logged() { grep -q "$2" "$cdir/guest-$1.log" 2>/dev/null; }
at_least() { _v=$(xenstore-read "$1" 2>/dev/null) && [ "$_v" -ge "$2" ]; }

modprobe xen-netback || fail "modprobe xen-netback"
modprobe bridge || fail "modprobe bridge"
ip link add xenbr0 type bridge
ip addr add 10.0.3.1/24 dev xenbr0
ip link set xenbr0 up
cat >/tmp/vfpgad.toml <<'TOML'
[xen]
enable = true
[tls]
ca = "/pki/ca.pem"
cert = "/pki/server.pem"
key = "/pki/server.key"
[[guest]]
name = "d1"
domain = "vfpga-domu"
listen = ["vchan", "tls:10.0.3.1:7000"]
[[guest]]
name = "d2"
domain = "vfpga-domu2"
listen = ["vchan"]
TOML
RUST_LOG=${RUST_LOG:-info} vfpgad --config /tmp/vfpgad.toml >/tmp/vfpgad.log 2>&1 &
vpid=$!
wait_until 60 "vfpgad registered" sh -c "[ \"\$(xenstore-read $P/daemon/state 2>/dev/null)\" = running ]"

cfg() { # cfg NAME EXTRA: a copy of the domU config with a vif on xenbr0
	sed -e "s/^name = .*/name = \"$1\"/" -e "s/^extra = \"\\(.*\\)\"/extra = \"\\1 $2\"/" \
		"${VFPGA_DOMU_CFG:-/domu/domu.cfg}" >"/tmp/$1.cfg"
	echo 'vif = ["bridge=xenbr0,script=vfpga-vif"]' >>"/tmp/$1.cfg"
	echo "/tmp/$1.cfg"
}
xl create "$(cfg vfpga-domu 'vfpga.role=guest vfpga.ip=10.0.3.2')" || fail "xl create vfpga-domu"
domid1=$(xl domid vfpga-domu)
echo "streams: vfpga-domu is domain $domid1"
wait_until 400 "vfpga-domu's run" logged vfpga-domu 'VFPGA-DOMU-DONE'
logged vfpga-domu 'VFPGA-DOMU-HOLD' || fail "vfpga-domu holds no session"
xl create "$(cfg vfpga-domu2 "vfpga.role=intruder vfpga.ip=10.0.3.3 vfpga.peer=$domid1")" ||
	fail "xl create vfpga-domu2"
wait_until 300 "vfpga-domu2's run" logged vfpga-domu2 'VFPGA-DOMU-DONE'
xl destroy vfpga-domu2
xenstore-read "$P/guests/d1/sessions-dropped" >"$out/dropped-before"
xl destroy vfpga-domu
wait_until 60 "d1's sessions dropped" at_least "$P/guests/d1/sessions-dropped" 1
xenstore-read "$P/guests/d1/sessions-dropped" >"$out/dropped-after"
rc=0
xenstore-exists "/local/domain/$domid1/vfpga/0" 2>/dev/null || rc=$?
echo "$rc" >"$out/vchan-after.rc"
kill -TERM "$vpid"
rc=0
wait "$vpid" || rc=$?
vpid=''
echo "$rc" >"$out/vfpgad.rc"
[ "$rc" = 0 ] || fail "vfpgad exited with $rc after SIGTERM"
save
grep -h '^VFPGA-' "$out/domu1.log" "$out/domu2.log" || true
echo 'streams: OK'
