#!/usr/bin/env bash
# Usage: tests/pxe/netns-servers.sh --netns NAME --state DIR [options]
#   --netns NAME           network namespace to create (ip netns add), serve in, and
#                          delete at the end; NAME: [A-Za-z0-9_.-]+, not existing yet
#   --state DIR            logs and PID files (rpcbind.log, ganesha.log, ganesha.pid,
#                          httpd.log: every request with its URL)
#   --ganesha-config FILE  run rpcbind and nfs-ganesha with this configuration, e.g. the
#                          nfs/ganesha.conf of vfpga-pxe; it must serve NFS on
#                          127.0.0.1:2049 (and MOUNT on 20048 for NFSv3)
#   --http-root DIR        serve DIR over HTTP on 127.0.0.1:PORT (busybox httpd)
#   --http-port PORT       (default 8080)
#   --busybox FILE         busybox with httpd (default: the busybox-static that
#                          tests/vm/build-initramfs.sh keeps in $VFPGA_CACHE/busybox)
#   --max-life SECS        stop everything after SECS seconds (default 1800)
#
# The servers of a network-boot test, isolated: in a network namespace of their own
# (loopback up) and with a private tmpfs on /run (rpcbind's socket and lock live there),
# so they neither clash with nor use another NFS server, rpcbind or HTTP server of the
# machine or of a test running beside this one. Run QEMU in the namespace
# (tests/vm/run-guest.sh --netns NAME, or ip netns exec NAME ...): its user-mode network
# then reaches these servers as 10.0.2.2, and finds nobody at 198.51.100.0/24
# (connections there hang, as to a server that is switched off).
#
# Runs in the foreground. Prints `ready` on stdout once every server answers (NFS: RPC
# NULL calls for NFSv4 and NFSv3 on 127.0.0.1:2049 and MOUNT on 20048; HTTP: a TCP
# connection), then waits. SIGTERM, SIGINT or SIGHUP, stdin reaching end of file (the caller went away;
# by hand, keep stdin open: run it from a terminal or as `sleep infinity | ...`),
# --max-life, or a server exiting, stops every process it started (by PID: SIGTERM,
# SIGKILL after 15 s), deletes the namespace and exits: 0 when asked to stop, 1 when a
# server failed to start or died (with the tail of its log on stderr).
# Environment: VFPGA_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

ns='' state='' conf='' http_root='' http_port=8080 busybox='' max_life=1800 inner=0
while [ $# -gt 0 ]; do
	case $1 in
	--netns | --state | --ganesha-config | --http-root | --http-port | --busybox | --max-life)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--netns) ns=$2 ;;
		--state) state=$2 ;;
		--ganesha-config) conf=$2 ;;
		--http-root) http_root=$2 ;;
		--http-port) http_port=$2 ;;
		--busybox) busybox=$2 ;;
		--max-life) max_life=$2 ;;
		esac
		shift 2
		;;
	--inner) inner=1 && shift ;; # internal: the part running inside the namespace
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

# --- outside: create the namespace, run the inside part in it, delete it ----------------
if [ "$inner" = 0 ]; then
	case $ns in '' | *[!A-Za-z0-9_.-]* | .*) die "--netns NAME: expected [A-Za-z0-9_.-]+" ;; esac
	[ -n "$state" ] || die "--state DIR is required"
	[ -n "$conf$http_root" ] || die "nothing to serve: give --ganesha-config and/or --http-root"
	[ -z "$conf" ] || [ -f "$conf" ] || die "--ganesha-config $conf: no such file"
	[ -z "$http_root" ] || [ -d "$http_root" ] || die "--http-root $http_root: not a directory"
	case $http_port in '' | *[!0-9]*) die "--http-port $http_port: expected a port number" ;; esac
	case $max_life in '' | *[!0-9]* | 0) die "--max-life $max_life: expected a positive number of seconds" ;; esac
	[ "$(id -u)" = 0 ] || die "run as root (network namespaces, mounts)"
	command -v ip >/dev/null || apt_install iproute2
	if [ -n "$conf" ]; then
		apt_install nfs-ganesha nfs-ganesha-vfs rpcbind
		conf=$(realpath "$conf")
	fi
	if [ -n "$http_root" ]; then
		http_root=$(realpath "$http_root")
		busybox=${busybox:-$(compgen -G "$VFPGA_CACHE/busybox/*/bin/busybox" | sort -V | tail -n1 || true)}
		[ -x "$busybox" ] || die "no busybox for httpd (give --busybox, or run tests/vm/build-initramfs.sh once)"
		busybox=$(realpath "$busybox")
	fi
	mkdir -p "$state"
	state=$(realpath "$state")
	ip netns add "$ns" || die "cannot create network namespace $ns (does it exist already?)"
	child=''
	# shellcheck disable=SC2317 # called by the traps
	outer_stop() {
		trap '' TERM INT HUP
		if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
			kill -TERM "$child" 2>/dev/null || true
			wait "$child" 2>/dev/null || true
		fi
		ip netns del "$ns" 2>/dev/null || true
	}
	trap outer_stop EXIT
	trap 'exit 0' TERM INT HUP
	ip netns exec "$ns" "$0" --inner --netns "$ns" --state "$state" \
		${conf:+--ganesha-config "$conf"} ${http_root:+--http-root "$http_root"} \
		--http-port "$http_port" ${busybox:+--busybox "$busybox"} --max-life "$max_life" <&0 &
	child=$!
	rc=0
	wait "$child" || rc=$?
	child=''
	exit "$rc"
fi

# --- inside the namespace ----------------------------------------------------------------
# `ip netns exec` gave this process a mount namespace of its own: the tmpfs stays here.
mount -t tmpfs -o mode=755,size=16m tmpfs /run
mkdir -p /run/rpcbind
ip link set lo up
# getaddrinfo(AI_ADDRCONFIG), as ganesha uses it for Bind_addr, finds no IPv4 address
# ("Name or service not known" for 127.0.0.1) unless a non-loopback one is configured.
ip addr add 192.0.2.1/32 dev lo
# 198.51.100.0/24 leads into a link where nothing answers (a veth pair whose far end
# ignores foreign frames, no ARP): a connection there hangs as to a server that is off,
# which the tests of an unreachable NFS server need. veth, as this kernel has no dummy.
ip link add vfpga-void0 type veth peer name vfpga-void1
ip link set vfpga-void1 up
ip link set vfpga-void0 arp off up
ip route add 198.51.100.0/24 dev vfpga-void0
started=() # "PID NAME" of each server, in start order
t0=$EPOCHREALTIME
since() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
alive() { [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }
stop_all() {
	local i pid name n
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do
		read -r pid name <<<"${started[$i]}"
		alive "$pid" "$name" || { log "$name $pid had exited" && continue; }
		kill -TERM "$pid" 2>/dev/null || continue
		n=0
		while alive "$pid" "$name" && [ $((n += 1)) -le 150 ]; do sleep 0.1; done
		if alive "$pid" "$name"; then
			log "$name $pid did not stop within 15 s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		else
			log "stopped $name $pid in $((n / 10)).$((n % 10)) s"
		fi
	done
	wait 2>/dev/null || true
	started=()
}
trap stop_all EXIT
# A signal only sets a flag: were it to exit at once, a second signal (the caller sends
# SIGTERM and closes stdin) could cut the EXIT trap's cleanup short.
stopping=''
trap 'stopping=1' TERM INT HUP
# wait_for NAME PID LOG CHECK...: until CHECK succeeds (100 s: the caller waits 120), while
# PID lives.
wait_for() {
	local name=$1 pid=$2 logf=$3
	shift 3
	for _ in $(seq 1000); do
		[ -z "$stopping" ] || exit 0
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 20 "$logf" >&2 || true
	die "$name did not start serving within 100 s (log: $logf)"
}

if [ -n "$conf" ]; then
	rpcbind -f </dev/null >"$state/rpcbind.log" 2>&1 &
	started+=("$! rpcbind")
	wait_for rpcbind $! "$state/rpcbind.log" rpcinfo -p 127.0.0.1
	rm -f "$state/ganesha.pid"
	ganesha.nfsd -F -f "$conf" -L "$state/ganesha.log" -p "$state/ganesha.pid" \
		</dev/null >"$state/ganesha.out" 2>&1 &
	started+=("$! ganesha.nfsd")
	serving() {
		rpcinfo -n 2049 -t 127.0.0.1 nfs 4 && rpcinfo -n 2049 -t 127.0.0.1 nfs 3 &&
			rpcinfo -n 20048 -t 127.0.0.1 mountd 3
	}
	wait_for ganesha.nfsd $! "$state/ganesha.log" serving
	log "nfs-ganesha serves $(sed -n 's/^[[:space:]]*Path = "\(.*\)";$/\1/p' "$conf" | head -n1) in netns $ns after $(since) s"
fi
if [ -n "$http_root" ]; then
	"$busybox" httpd -f -vv -p "127.0.0.1:$http_port" -h "$http_root" </dev/null >"$state/httpd.log" 2>&1 &
	started+=("$! busybox")
	wait_for httpd $! "$state/httpd.log" bash -c "exec 3<>/dev/tcp/127.0.0.1/$http_port"
	log "busybox httpd serves $http_root on 127.0.0.1:$http_port in netns $ns"
fi
echo ready

end=$((SECONDS + max_life))
while :; do
	if [ -n "$stopping" ]; then
		log "stopping the servers of netns $ns"
		exit 0
	fi
	rc=0
	read -r -t 1 _ || rc=$?
	[ "$rc" = 0 ] && continue
	[ -z "$stopping" ] || continue
	if [ "$rc" -le 128 ]; then
		log "stdin closed: stopping the servers of netns $ns"
		exit 0
	fi
	if [ "$SECONDS" -ge "$end" ]; then
		log "--max-life $max_life s reached: stopping the servers of netns $ns"
		exit 0
	fi
	for s in "${started[@]}"; do
		read -r pid name <<<"$s"
		if ! alive "$pid" "$name"; then
			log "error: $name ($pid) exited"
			exit 1
		fi
	done
done
