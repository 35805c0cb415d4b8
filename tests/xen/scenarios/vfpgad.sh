#!/bin/sh
# Scenario `vfpgad` (busybox sh in dom0, run by tests/xen/dom0/init): vfpgad as the dom0
# service of a real Xen, against the real xenstored. Needs /usr/bin/vfpgad and
# /usr/bin/vfpga-vhu-demo in dom0 (tests/xen/build-xen.sh --bin FILE:/usr/bin/).
# Runs the same life twice: vfpgad reaching xenstored through its socket
# /run/xenstored/socket (what xenstore-rs picks first), then with XENSTORED_PATH
# pointing nowhere, so that it must fall back to /dev/xen/xenbus. Each time:
# - starts `vfpgad --config` with engine sim, [xen] enable = true and one guest g1
#   (socket /run/vfpga/g1.sock, domain vfpga-domu); waits for P/daemon/state = running
#   (P = /local/domain/0/vfpga) and checks the record: daemon/{version,pid,engine},
#   guests/g1/{socket,domain}, domid empty, sessions-dropped 0;
# - starts `vfpga-vhu-demo --hold` on the socket (stdin from a fifo): one vadd_u32
#   session, run once (HOLD-READY);
# - `xl create` the domU named vfpga-domu; waits for P/guests/g1/domid = `xl domid`;
# - `xl destroy`; waits for sessions-dropped = 1 and domid empty; the held session then
#   gets HOLD-RESULT BAD_SESSION;
# - the plain demo (every kernel, bit-exact) still works on the same socket;
# - SIGTERM: vfpgad exits 0, P is gone from xenstore and the socket is removed.
# Prints the time of each step (`VFPGAD-TIME <transport>/<step> <seconds>`), among them
# when vfpgad published the domid and how long after the @releaseDomain event it dropped
# the sessions (both from xenstore-watch stamps), and the watch timeline. With the share
# (/host) the raw evidence goes to /host/vfpgad/<transport>/ (socket, xenbus) for the
# caller to check: pid, reg.txt (xenstore-ls -f P once running), domid-xl, domid-xs,
# after-destroy.txt, hold.out, demo.out, demo.rc, vfpgad.rc, exists-after.rc
# (xenstore-exists P after the exit), vfpgad.log; and /host/vfpgad/timings.txt,
# timeline.txt. Exits non-zero at the first failed check.
#   tests/xen/build-xen.sh --bin target/release/vfpgad:/usr/bin/ \
#       --bin target/release/vfpga-vhu-demo:/usr/bin/
#   tests/xen/run-xen.sh --scenario vfpgad --share DIR
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail

P=/local/domain/0/vfpga
G=$P/guests/g1
sock=/run/vfpga/g1.sock
domain=vfpga-domu
cfg=${VFPGA_DOMU_CFG:-/domu/domu.cfg}
xsock=/run/xenstored/socket
top=/tmp/vfpgad-out
if [ -n "${VFPGA_HOST:-}" ] && mkdir -p /host/vfpgad 2>/dev/null; then top=/host/vfpgad; fi
rm -rf "${top:?}"/*
out=$top tr='' vpid='' hpid=''

now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
timing() { # timing STEP SECONDS
	echo "VFPGAD-TIME $tr/$1 $2"
	echo "$tr/$1 $2" >>"$top/timings.txt"
}
mark() { echo "$(now) --- $*" >>/tmp/watch-marks.log; }
stop_watchers() {
	for f in /tmp/watch-*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
		rm -f "$f"
	done
}
timeline() { sort -n -s /tmp/watch-*.log 2>/dev/null || true; }
cleanup() {
	stop_watchers
	[ -n "$hpid" ] && kill "$hpid" 2>/dev/null
	[ -n "$vpid" ] && kill -KILL "$vpid" 2>/dev/null
	xl destroy "$domain" >/dev/null 2>&1 || true
	return 0
}
fail() {
	echo "vfpgad: FAIL ($tr): $*"
	for f in /tmp/vfpgad.log /tmp/hold.out /tmp/demo.out; do
		[ -s "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }
	done
	echo "--- xenstore-ls -f $P"
	xenstore-ls -f "$P" 2>&1 || true
	echo '--- timeline: dom0 uptime, [watch] event path or --- step'
	timeline
	cp /tmp/vfpgad.log /tmp/hold.out "$out/" 2>/dev/null || true
	cleanup
	exit 1
}
trap cleanup EXIT
# wait_until SECS WHAT COMMAND...: polls COMMAND every 0.05 s.
wait_until() {
	_s=$1 _w=$2
	shift 2
	_n=0
	until "$@"; do
		[ $((_n += 1)) -le $((_s * 20)) ] || fail "$_w: not after $_s s"
		[ -z "$vpid" ] || kill -0 "$vpid" 2>/dev/null || fail "$_w: vfpgad exited"
		sleep 0.05
	done
}
# is PATH VALUE: PATH exists and holds VALUE (which may be empty).
is() {
	_v=$(xenstore-read "$1" 2>/dev/null) || return 1
	[ "$_v" = "$2" ]
}
val() { xenstore-read "$1" 2>/dev/null || echo '<missing>'; }
# watch TAG PATH: xenstore-watch over xenstored's socket, each event stamped with dom0's
# uptime by awk as it arrives (no process per event, so the stamps lag little).
watch() {
	sh -c 'echo $$ >"$0"; XENSTORED_PATH=$1 exec xenstore-watch "$2"' \
		"/tmp/watch-$1.pid" "$xsock" "$2" 2>&1 |
		awk -v tag="[$2]" '{
			getline u <"/proc/uptime"; close("/proc/uptime"); split(u, a, " ")
			print a[1], tag, $0; fflush()
		}' >"/tmp/watch-$1.log" &
}
# first_after MARK TAG: the stamp of the first TAG event after the step MARK, else "".
first_after() {
	timeline | awk -v m="--- $1" -v t="[$2]" '
		!on && $2 == "---" && substr($0, index($0, "---")) == m { on = 1; next }
		on && $2 == t { print $1; exit }'
}
stamp() { timeline | awk -v m="--- $1" '$2 == "---" && substr($0, index($0, "---")) == m { print $1; exit }'; }
diff_s() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "?"; else printf "%.2f", b - a }'; }
# stop_daemon: SIGTERM, wait (30 s at most) and record the exit status in $out/vfpgad.rc.
stop_daemon() {
	kill -TERM "$vpid"
	states='' _n=0
	while kill -0 "$vpid" 2>/dev/null; do
		[ $((_n += 1)) -le 600 ] || fail "vfpgad still running 30 s after SIGTERM"
		_st=$(xenstore-read "$P/daemon/state" 2>/dev/null) || _st=gone
		case " $states " in *" $_st "*) ;; *) states="$states $_st" ;; esac
		sleep 0.05
	done
	vrc=0
	wait "$vpid" || vrc=$?
	vpid=''
	echo "$vrc" >"$out/vfpgad.rc"
}

# life TRANSPORT [ENV=VALUE]: one daemon's life, vfpgad started under `env ENV=VALUE`.
life() {
	tr=$1 out=$top/$1
	mkdir -p "$out"
	rm -f /tmp/watch-*.log /tmp/hold.in /tmp/hold.out /tmp/demo.out
	: >/tmp/watch-marks.log
	watch release @releaseDomain
	watch dropped "$G/sessions-dropped"
	watch domid "$G/domid"

	# 1. start and registration
	echo "=== $tr: vfpgad --config /tmp/vfpgad.toml${2:+ with $2}"
	t=$(now)
	# shellcheck disable=SC2086 # no assignment or one
	env ${2:-} RUST_LOG=info,vfpga_xen=debug vfpgad --config /tmp/vfpgad.toml >/tmp/vfpgad.log 2>&1 &
	vpid=$!
	echo "$vpid" >"$out/pid"
	wait_until 60 "$P/daemon/state = running" is "$P/daemon/state" running
	timing registered "$(since "$t")"
	[ -S "$sock" ] || fail "no socket $sock"
	xenstore-ls -f "$P" | tee "$out/reg.txt" || fail "xenstore-ls -f $P"
	[ -n "$(val "$P/daemon/version")" ] || fail "$P/daemon/version is empty"
	[ "$(val "$P/daemon/pid")" = "$vpid" ] || fail "$P/daemon/pid is $(val "$P/daemon/pid"), vfpgad is $vpid"
	[ "$(val "$P/daemon/engine")" = sim ] || fail "$P/daemon/engine is $(val "$P/daemon/engine")"
	[ "$(val "$G/socket")" = "$sock" ] || fail "$G/socket is $(val "$G/socket")"
	[ "$(val "$G/domain")" = "$domain" ] || fail "$G/domain is $(val "$G/domain")"
	is "$G/domid" '' || fail "$G/domid is $(val "$G/domid") with no domain running"
	[ "$(val "$G/sessions-dropped")" = 0 ] || fail "$G/sessions-dropped is $(val "$G/sessions-dropped")"

	# 2. a session held open by a frontend
	mkfifo /tmp/hold.in
	t=$(now)
	vfpga-vhu-demo --hold "$sock" </tmp/hold.in >/tmp/hold.out 2>&1 &
	hpid=$!
	exec 3>/tmp/hold.in
	wait_until 60 "HOLD-READY from vfpga-vhu-demo --hold" grep -q '^HOLD-READY' /tmp/hold.out
	timing session-held "$(since "$t")"
	cat /tmp/hold.out

	# 3. the domain comes up
	echo "--- xl create $cfg name=$domain"
	mark "xl create"
	t=$(now)
	xl create "$cfg" "name=\"$domain\"" || fail "xl create $cfg"
	timing xl-create "$(since "$t")"
	mark "xl create done"
	domid=$(xl domid "$domain") || fail "xl domid $domain"
	echo "$domid" >"$out/domid-xl"
	wait_until 30 "$G/domid = $domid" is "$G/domid" "$domid"
	val "$G/domid" >"$out/domid-xs"
	# From the watch stamps: when vfpgad wrote the domid, after `xl create` started (and
	# relative to its return: negative while xl was still busy).
	sleep 0.3 # let the stamping catch up
	w=$(first_after "xl create" "$G/domid")
	timing domid-after-create-start "$(diff_s "$(stamp "xl create")" "$w")"
	timing domid-after-create-return "$(diff_s "$(stamp "xl create done")" "$w")"
	echo "vfpgad: $domain is domain $domid, published in $G/domid"
	[ "$(val "$G/sessions-dropped")" = 0 ] || fail "sessions dropped while the domain came up"
	kill -0 "$hpid" 2>/dev/null || fail "the hold client exited early"

	# 4. the domain goes away: its sessions are dropped
	echo "--- xl destroy $domain"
	mark "xl destroy"
	t=$(now)
	xl destroy "$domain" || fail "xl destroy $domain"
	mark "xl destroy done"
	timing xl-destroy "$(since "$t")"
	wait_until 30 "$G/sessions-dropped = 1" is "$G/sessions-dropped" 1
	timing sessions-dropped-after-destroy-start "$(since "$t")"
	wait_until 30 "$G/domid empty" is "$G/domid" ''
	xenstore-ls -f "$P" | tee "$out/after-destroy.txt" || fail "xenstore-ls -f $P"
	# From the watch stamps: the @releaseDomain event and vfpgad's sessions-dropped write
	# (the first of each after the destroy started).
	sleep 0.3 # let the stamping catch up
	rel=$(first_after "xl destroy" @releaseDomain)
	lat=$(diff_s "$rel" "$(first_after "xl destroy" "$G/sessions-dropped")")
	timing release-after-destroy-start "$(diff_s "$(stamp "xl destroy")" "$rel")"
	timing release-to-drop "$lat"

	# 5. the held session is gone
	t=$(now)
	echo go >&3
	exec 3>&-
	_n=0
	while kill -0 "$hpid" 2>/dev/null; do
		[ $((_n += 1)) -le 600 ] || fail "the hold client did not finish within 30 s"
		sleep 0.05
	done
	hrc=0
	wait "$hpid" || hrc=$?
	hpid=''
	cp /tmp/hold.out "$out/hold.out"
	cat /tmp/hold.out
	timing held-session-retried "$(since "$t")"
	[ "$hrc" = 0 ] || fail "vfpga-vhu-demo --hold exited with $hrc"
	grep -qx 'HOLD-RESULT BAD_SESSION' /tmp/hold.out ||
		fail "the held session was not dropped: $(grep HOLD-RESULT /tmp/hold.out || echo 'no HOLD-RESULT')"

	# 6. the daemon still serves
	t=$(now)
	drc=0
	vfpga-vhu-demo "$sock" >/tmp/demo.out 2>&1 || drc=$?
	echo "$drc" >"$out/demo.rc"
	cp /tmp/demo.out "$out/demo.out"
	cat /tmp/demo.out
	timing demo "$(since "$t")"
	[ "$drc" = 0 ] || fail "vfpga-vhu-demo $sock exited with $drc after the drop"
	[ "$(val "$G/sessions-dropped")" = 1 ] || fail "$G/sessions-dropped is $(val "$G/sessions-dropped") after the demo"

	# 7. SIGTERM
	stop_watchers
	t=$(now)
	stop_daemon
	timing sigterm-exit "$(since "$t")"
	echo "vfpgad: states seen while stopping:${states:- none}"
	erc=0
	xenstore-exists "$P" 2>/dev/null || erc=$?
	echo "$erc" >"$out/exists-after.rc"
	cp /tmp/vfpgad.log "$out/vfpgad.log"
	echo "vfpgad: $(grep -c 'xenstore watch' /tmp/vfpgad.log || true) watch events reached vfpgad"
	[ "$vrc" = 0 ] || fail "vfpgad exited with $vrc after SIGTERM"
	[ "$erc" != 0 ] || fail "$P still exists after vfpgad stopped: $(xenstore-ls -f "$P" 2>&1)"
	[ ! -e "$sock" ] || fail "the socket $sock is still there after vfpgad stopped"
	echo "--- $tr: timeline: dom0 uptime, [watch] event path or --- step"
	timeline | tee "$out/timeline.txt"
	echo "vfpgad: $tr: OK: registered, domain $domid followed, session dropped $lat s after" \
		"@releaseDomain, still serving, unregistered on SIGTERM"
}

for b in vfpgad vfpga-vhu-demo; do
	command -v "$b" >/dev/null || fail "no $b in dom0 (build-xen.sh --bin FILE:/usr/bin/)"
done
echo "--- vfpgad --version: $(vfpgad --version 2>&1)"
mkdir -p /run/vfpga
cat >/tmp/vfpgad.toml <<EOF
[daemon]
engine = "sim"

[xen]
enable = true

[[guest]]
name = "g1"
socket = "$sock"
domain = "$domain"
EOF
echo '--- vfpgad --config /tmp/vfpgad.toml --check'
vfpgad --config /tmp/vfpgad.toml --check || fail "vfpgad --check refuses the configuration"

life socket
life xenbus XENSTORED_PATH=/run/xenstored/no-such-socket
tr=all
echo "vfpgad: OK over xenstored's socket and over /dev/xen/xenbus"
