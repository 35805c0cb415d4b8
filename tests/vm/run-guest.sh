#!/usr/bin/env bash
# Usage: tests/vm/run-guest.sh [--scenario NAME] [options] [-- QEMU ARGS...]
#   --scenario NAME    scenario to run in the guest: /scenarios/NAME.sh (default: smoke)
#   --vfpga SOCKET     attach a vfpga device served by vfpgad on this vhost-user socket;
#                      repeatable (guest /dev/vfpga0, /dev/vfpga1, ... in that order;
#                      QEMU chardev ids vfpga0, ..., device ids vfpgadev0, ...)
#   --queues N         virtqueues per vfpga device: control queue + request queues
#                      (default 3, i.e. vfpgad's default of 2 request queues)
#   --vq-size N        descriptors per virtqueue (QEMU's vq_size; default: QEMU's, 64):
#                      a power of two, at most 1024 (QEMU aborts above) and at most
#                      vfpgad's --queue-size (default 1024; QEMU aborts when the daemon
#                      refuses the size). With indirect descriptors (vfpgad offers them) a
#                      request may have up to the device's max_segments descriptors
#                      whatever the ring size; only without them does the ring bound it
#   --vsock SOCKET     attach a vhost-user-vsock-pci device served on this vhost-user
#                      socket (e.g. by vhost-device-vsock, started first): the guest's
#                      AF_VSOCK reaches the host without the vfpga device
#   --user-net         a virtio NIC on QEMU's user-mode network (no iPXE ROM): the guest
#                      reaches the host's loopback as 10.0.2.2 (virtio_net must be in the
#                      image; the scenario brings eth0 up, e.g. with udhcpc)
#   --share DIR        export DIR to the guest over 9p (tag `host`, mounted at /host, the
#                      scenario's working folder; security_model=none: files the guest
#                      writes as root are plain files of this user on the host)
#   --timeout SECS     stop QEMU after SECS seconds (default 120)
#   --mem MB           guest memory, shared memfd (vhost-user needs it) (default 512)
#   --smp N            guest CPUs (multi-threaded TCG) (default 2)
#   --log FILE         console log (default: $VFPGA_CACHE/run-guest/NAME.log)
#   --append ARGS      more kernel command line, e.g. 'vfpga.modargs="gid=5"'
#   --guest DIR        output of tests/vm/build-guest.sh (default: $VFPGA_CACHE/guest)
#   --iommu            the IOMMU/SR-IOV machine: q35 (kernel-irqchip=split) with an Intel
#                      IOMMU (intremap=on) and an igb SR-IOV NIC (on QEMU's user-mode
#                      network, 8086:10c9, 7 VFs) after it, and intel_iommu=on on the
#                      kernel command line; the guest then has real IOMMU groups (for
#                      the PCI helpers' tests; build the image with --modules for igb
#                      and vfio-pci, see tests/vm/build-guest.sh)
#   --qmp SOCKET       also serve QMP on this unix socket for other tools (one client at
#                      a time; free once the devices are attached), e.g. for device_del
#   --netboot FILE     boot from the network instead of --guest: QEMU user networking
#                      with a virtio NIC whose iPXE ROM (Debian's ipxe-qemu) fetches the
#                      DHCP boot file FILE, a TFTP name (with --tftp) or a URL such as
#                      http://10.0.2.2:8080/menu.ipxe; what it loads gives the kernel and
#                      its command line (--append and --guest are not used), e.g. a
#                      vfpga-pxe menu. The guest must print the DONE line itself
#   --tftp DIR         with --netboot: the folder QEMU's user-mode TFTP server serves
#   --netns NAME       run QEMU in network namespace NAME (ip netns exec), so that its
#                      user-mode network reaches the servers on that namespace's
#                      loopback as 10.0.2.2 (see tests/pxe/netns-servers.sh)
#   -- ARGS            everything after -- goes to QEMU as is
#
# Boots the guest built by tests/vm/build-guest.sh under TCG with tests/vm/qemu-system
# (QEMU 11), with the kernel command line
#   console=ttyS0 panic=-1 quiet vfpga.scenario=NAME ARGS
# The serial console goes to stdout and to the log. The guest's /init runs the scenario,
# prints `VFPGA-DONE rc=N` and powers off; this script exits with that N. It exits 124
# when the timeout stopped QEMU, and 125 when QEMU failed or the guest ended without a
# DONE line, with a message on stderr in every case. QEMU never outlives the script: it
# runs under `timeout`, and an EXIT trap stops it by PID; it is also stopped when it has
# not exited 10 s after the DONE line.
#
# vhost-user, reconnect-ms and a missing socket (measured with QEMU 11.1.3): a
# vhost-user-test-device-pci given with -device on the command line whose chardev has
# reconnect-ms=N makes QEMU exit at once, with "Failed to set msg fds." and
# "vhost_backend_init failed: Protocol error", whether or not the socket exists: with
# reconnect-ms the chardev connects asynchronously, and vhost-user-base's realize calls
# vhost_dev_init() without waiting for it (vhost-user-blk waits; -base does not). Without
# reconnect-ms, the socket must exist at start ("Failed to connect to ...: No such file")
# and a daemon restart is never reconnected. So this script starts QEMU paused (-S) with
# a QMP socket and the chardevs (reconnect-ms=1000), waits until each chardev has
# connected to its socket (the guest does not start before every vfpgad listens; the
# wait counts against --timeout), then adds the devices with QMP device_add and starts
# the guest (cont), all with `vfpga-qmp attach` (tests/vm/src/bin/vfpga-qmp.rs: the QMP
# client the VM tests use too).
#
# A vfpgad restart under a running guest (measured, QEMU 11.1.3): while vfpgad is gone,
# requests in flight stay pending in the guest (killable) and QEMU retries the socket
# every second; when the new vfpgad accepts, QEMU aborts with "vhost_dev_start:
# Assertion `hdev->vhost_ops' failed" (vhost-user-base's reconnect path restarts the
# device without re-initialising its vhost_dev), so the guest dies. What works is a
# hot-unplug: QMP device_del (the guest driver fails what is in flight with ENODEV and
# /dev/vfpgaN goes away), restart vfpgad, then device_add the same device again (use
# --qmp to reach QEMU; with vfpgad alive, the first device_add after an unplug fails
# with "vhost_init_features failed" because QEMU reuses the old connection and
# vhost-user-backend refuses its second SET_OWNER; QEMU then reconnects and a second
# device_add succeeds).
# Environment: VFPGA_CACHE, VFPGA_QEMU_ROOT (see qemu-system); VFPGA_QMP, the vfpga-qmp
# binary (default: built with `cargo build --release -p vfpga-vm-tests --bin vfpga-qmp`
# when a --vfpga device needs it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/qemu-lib.sh
. "$here/qemu-lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

scenario=smoke queues=3 vq_size='' share='' limit=120 mem=512 smp=2 logf='' append='' qmp='' iommu=0 vsock='' usernet=0
guest=$VFPGA_CACHE/guest
socks=() extra=()
netboot='' tftp='' netns=''
while [ $# -gt 0 ]; do
	case $1 in
	--scenario | --vfpga | --vsock | --queues | --vq-size | --share | --timeout | --mem | --smp | --log | --append | --guest | --qmp | --netboot | --tftp | --netns)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--scenario) scenario=$2 ;;
		--vfpga) socks+=("$2") ;;
		--vsock) vsock=$2 ;;
		--queues) queues=$2 ;;
		--vq-size) vq_size=$2 ;;
		--share) share=$2 ;;
		--timeout) limit=$2 ;;
		--mem) mem=$2 ;;
		--smp) smp=$2 ;;
		--log) logf=$2 ;;
		--append) append=$2 ;;
		--guest) guest=$2 ;;
		--qmp) qmp=$2 ;;
		--netboot) netboot=$2 ;;
		--tftp) tftp=$2 ;;
		--netns) netns=$2 ;;
		esac
		shift 2
		;;
	--iommu) iommu=1 && shift ;;
	--user-net) usernet=1 && shift ;;
	--) shift && extra=("$@") && break ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

case $scenario in '' | *[!A-Za-z0-9_.-]* | .*) die "--scenario $scenario: expected [A-Za-z0-9_.-]+" ;; esac
isnum() { case $2 in '' | *[!0-9]*) die "$1 $2: expected a positive integer" ;; esac; [ "$2" -gt 0 ] || die "$1 $2: must be > 0"; }
isnum --queues "$queues"
[ "$queues" -ge 2 ] || die "--queues $queues: a vfpga device needs the control queue and at least one request queue"
isnum --timeout "$limit"
isnum --mem "$mem"
isnum --smp "$smp"
if [ -n "$vq_size" ]; then
	isnum --vq-size "$vq_size"
	# QEMU aborts (no message) on a virtqueue larger than its VIRTQUEUE_MAX_SIZE, 1024.
	if [ "$vq_size" -gt 1024 ] || [ $((vq_size & (vq_size - 1))) != 0 ]; then
		die "--vq-size $vq_size: must be a power of two, at most 1024 (QEMU's limit)"
	fi
fi
[ -z "$share" ] || [ -d "$share" ] || die "--share $share: not a directory"
for s in "${socks[@]}"; do
	case $s in *,*) die "--vfpga $s: a socket path with a comma cannot be passed to QEMU" ;; esac
done
case $share$qmp$vsock in *,*) die "--share/--qmp/--vsock: a path with a comma cannot be passed to QEMU" ;; esac
[ -z "$vsock" ] || [ -S "$vsock" ] || die "--vsock $vsock: no socket there (start the vsock backend first)"

if [ -n "$netboot" ]; then
	case $netboot$tftp in *,*) die "--netboot/--tftp: a comma cannot be passed to QEMU" ;; esac
	[ -z "$tftp" ] || [ -d "$tftp" ] || die "--tftp $tftp: not a directory"
	[ -z "$append" ] || die "--append has no effect with --netboot: the boot menu gives the kernel command line"
	[ "$iommu" = 0 ] || die "--iommu needs intel_iommu=on on the kernel command line, which --netboot leaves to the boot menu"
	kernel=$netboot
else
	[ -z "$tftp" ] || die "--tftp needs --netboot"
	[ -d "$guest" ] || die "no guest in $guest: run tests/vm/build-guest.sh first"
	kernel=$guest/vmlinux
	[ -f "$kernel" ] || kernel=$guest/vmlinuz
	[ -f "$kernel" ] || die "no vmlinux or vmlinuz in $guest: run tests/vm/build-guest.sh"
	[ -f "$guest/initrd.gz" ] || die "no initrd.gz in $guest: run tests/vm/build-guest.sh"
fi
pre=() # what QEMU runs under, inside timeout
if [ -n "$netns" ]; then
	ip netns exec "$netns" true 2>/dev/null || die "--netns $netns: no such network namespace"
	pre=(ip netns exec "$netns")
fi
[ -f "${VFPGA_QEMU_ROOT:-$VFPGA_CACHE/qemu-root}/.ready" ] ||
	die "no QEMU root in ${VFPGA_QEMU_ROOT:-$VFPGA_CACHE/qemu-root}: run tests/vm/build-qemu-root.sh first"

logf=${logf:-$VFPGA_CACHE/run-guest/$scenario.log}
mkdir -p "$(dirname "$logf")"

# shellcheck disable=SC2054 # commas inside QEMU option values
args=(-accel tcg -cpu max -smp "$smp" -m "${mem}M"
	-object "memory-backend-memfd,id=mem,size=${mem}M,share=on" -numa node,memdev=mem
	-nographic -no-reboot -nic none
	-kernel "$kernel" -initrd "$guest/initrd.gz"
	-append "console=ttyS0 panic=-1 quiet vfpga.scenario=$scenario$([ "$iommu" = 0 ] || echo ' intel_iommu=on')${append:+ $append}")
if [ "$iommu" = 1 ]; then
	# The IOMMU must exist before the devices it translates for: intel-iommu first.
	# shellcheck disable=SC2054 # commas inside QEMU option values
	args+=(-M q35,kernel-irqchip=split -device intel-iommu,intremap=on
		-netdev user,id=n1 -device igb,netdev=n1)
fi
if [ -n "$netboot" ]; then
	# Network boot: the menu gives kernel, initrd and command line, so -kernel, -initrd,
	# -append and -nic none go; a virtio NIC on QEMU's user network boots through iPXE.
	kept=()
	for ((j = 0; j < ${#args[@]}; j++)); do
		case ${args[j]} in
		-kernel | -initrd | -append) j=$((j + 1)) ;;
		-nic) if [ "${args[j + 1]}" = none ]; then j=$((j + 1)); else kept+=("${args[j]}"); fi ;;
		*) kept+=("${args[j]}") ;;
		esac
	done
	# shellcheck disable=SC2054 # commas inside QEMU option values
	args=("${kept[@]}" -netdev "user,id=n0${tftp:+,tftp=$(realpath "$tftp")},bootfile=$netboot"
		-device virtio-net-pci,netdev=n0 -boot n)
fi
# The vfpga devices are added through QMP once their chardevs are connected (see above).
work=$(mktemp -d "${TMPDIR:-/tmp}/vfpga-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
qmp=${qmp:-$work/qmp.sock}
devs=()
i=0
for s in "${socks[@]}"; do
	args+=(-chardev "socket,id=vfpga$i,path=$s,reconnect-ms=1000")
	devs+=("vfpga$i={\"driver\":\"vhost-user-test-device-pci\",\"id\":\"vfpgadev$i\",\"chardev\":\"vfpga$i\",\"virtio-id\":21,\"num_vqs\":$queues,\"config_size\":40${vq_size:+,\"vq_size\":$vq_size}}")
	i=$((i + 1))
done
if [ ${#socks[@]} -gt 0 ]; then
	# The QMP client that attaches them: this crate's vfpga-qmp (tests/vm/src/qmp.rs),
	# the one the VM tests drive QEMU with; they pass it in VFPGA_QMP.
	qmp_tool=${VFPGA_QMP:-}
	if [ -z "$qmp_tool" ]; then
		cargo build --release --locked --quiet --manifest-path "$here/Cargo.toml" --bin vfpga-qmp ||
			die "cannot build vfpga-qmp (cargo build --release -p vfpga-vm-tests --bin vfpga-qmp)"
		qmp_tool=${CARGO_TARGET_DIR:-$here/../../target}/release/vfpga-qmp
	fi
	[ -x "$qmp_tool" ] || die "no vfpga-qmp at $qmp_tool (VFPGA_QMP)"
fi
if [ ${#socks[@]} -gt 0 ] || [ "$qmp" != "$work/qmp.sock" ]; then
	[ ! -S "$qmp" ] || rm -f "$qmp" # a stale socket of an earlier run
	args+=(-qmp "unix:$qmp,server=on,wait=off")
fi
[ ${#socks[@]} -eq 0 ] || args+=(-S)
if [ "$usernet" = 1 ]; then
	[ -z "$netboot" ] || die "--user-net: --netboot has its NIC already"
	# shellcheck disable=SC2054 # commas inside QEMU option values
	args+=(-netdev user,id=un0 -device virtio-net-pci,netdev=un0,romfile=)
fi
if [ -n "$vsock" ]; then
	# shellcheck disable=SC2054 # commas inside QEMU option values
	args+=(-chardev "socket,id=vsock0,path=$vsock" -device vhost-user-vsock-pci,chardev=vsock0)
fi
if [ -n "$share" ]; then
	# shellcheck disable=SC2054 # commas inside QEMU option values
	args+=(-fsdev "local,id=host,path=$(realpath "$share"),security_model=none"
		-device virtio-9p-pci,fsdev=host,mount_tag=host)
fi
args+=("${extra[@]}")

qpid='' tpid=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	stop_qemu
	if [ -n "$tpid" ]; then kill "$tpid" 2>/dev/null || true; fi
	rm -rf "$work"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
: >"$logf" # before QEMU starts: the poll below must not see an old run's lines
log "scenario $scenario: booting $(basename "$kernel") (${#socks[@]} vfpga,$([ "$iommu" = 0 ] || echo ' IOMMU + igb,') ${mem} MB, $smp CPUs, timeout $limit s, log $logf)"
t0=$EPOCHREALTIME
timeout -k 5 "$limit" "${pre[@]}" "$here/qemu-system" "${args[@]}" </dev/null >>"$logf" 2>&1 &
qpid=$!
tail -n +1 -s 0.1 -f --pid="$qpid" "$logf" &
tpid=$!
if [ ${#socks[@]} -gt 0 ] && ! "$qmp_tool" attach --qmp "$qmp" --timeout "$limit" "${devs[@]}"; then
	qrc=0
	# QEMU may be on its way out (stopped by the timeout): let timeout report it.
	for _ in $(seq 30); do
		kill -0 "$qpid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$qpid" 2>/dev/null || wait "$qpid" || qrc=$?
	stop_qemu
	qpid=''
	if [ "$qrc" = 124 ]; then
		log "error: timed out after $limit s waiting for vfpgad on ${socks[*]} (console: $logf)"
		exit 124
	fi
	log "error: could not attach the vfpga devices through QMP (console: $logf)"
	exit 125
fi

t_init='' t_done=''
t_linux='' t_nbinit='' t_mount='' # network boot: kernel started, netboot /init, NFS root
while kill -0 "$qpid" 2>/dev/null; do
	if [ -n "$netboot" ]; then
		[ -n "$t_linux" ] || ! grep -aq 'Linux version' "$logf" || t_linux=$(since "$t0")
		[ -n "$t_nbinit" ] || ! grep -aq 'vfpga-netboot: kernel' "$logf" || t_nbinit=$(since "$t0")
		[ -n "$t_mount" ] || ! grep -aq 'vfpga-netboot: mounted' "$logf" || t_mount=$(since "$t0")
	fi
	if [ -z "$t_init" ] && grep -aq 'vfpga-init: kernel' "$logf"; then t_init=$(since "$t0"); fi
	if [ -z "$t_done" ] && grep -aq 'VFPGA-DONE rc=' "$logf"; then
		t_done=$(since "$t0") done_at=$SECONDS
	fi
	if [ -n "$t_done" ] && [ $((SECONDS - done_at)) -ge 10 ]; then
		log "warning: QEMU still running 10 s after the DONE line; stopping it"
		stop_qemu
		break
	fi
	sleep 0.1
done
qrc=0
wait "$qpid" || qrc=$?
qpid=''
wait "$tpid" 2>/dev/null || true
tpid=''
total=$(since "$t0")
t_init=${t_init:-$total} t_done=${t_done:-$total}

line=$(grep -a -m1 -o 'VFPGA-DONE rc=[0-9]*' "$logf" || true)
err=$(grep -a -m1 'VFPGA-ERROR' "$logf" | tr -d '\r' || true)
if [ -z "$line" ]; then
	[ -z "$err" ] || log "guest: $err"
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		log "error: scenario $scenario timed out after $limit s without a DONE line (console: $logf)"
		exit 124
	fi
	if grep -aq 'Kernel panic' "$logf"; then
		log "error: the guest kernel panicked (console: $logf)"
	elif [ "$qrc" != 0 ]; then
		log "error: QEMU failed with status $qrc (console: $logf)"
	else
		log "error: the guest powered off without a VFPGA-DONE line (console: $logf)"
	fi
	exit 125
fi
rc=${line#VFPGA-DONE rc=}
[ -z "$err" ] || log "guest: $err"
[ "$qrc" = 0 ] || log "warning: QEMU exited with status $qrc after the DONE line"
[ -z "$netboot" ] || log "network boot: kernel started after ${t_linux:-? (quiet)} s, netboot /init after ${t_nbinit:-?} s, NFS root mounted after ${t_mount:-?} s"
log "scenario $scenario: rc=$rc; /init after $t_init s, DONE after $t_done s, QEMU gone after $total s"
exit "$rc"
