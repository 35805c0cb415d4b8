#!/usr/bin/env bash
# Usage: tests/xen/run-xen.sh [--scenario NAME] [options] [-- QEMU ARGS...]
#   --scenario NAME    scenario to run in dom0: /scenarios/NAME.sh (default: smoke)
#   --share DIR        export DIR to dom0 over 9p (tag `host`, mounted at /host, the
#                      scenario's working folder; security_model=none: files dom0 writes
#                      as root are plain files of this user on the host)
#   --timeout SECS     stop QEMU after SECS seconds (default 300)
#   --mem MB           machine memory (default 2048)
#   --dom0-mem MB      dom0's memory, Xen's dom0_mem (default 1024); the rest is free
#                      for domUs
#   --smp N            CPUs (multi-threaded TCG) (default 2)
#   --log FILE         console log (default: $VFPGA_CACHE/run-xen/NAME.log)
#   --append ARGS      more dom0 kernel command line (no commas), e.g. 'vfpga.foo=1'
#   --xen-append ARGS  more Xen command line
#   --xen DIR          output of tests/xen/build-xen.sh (default: $VFPGA_CACHE/xen)
#   -- ARGS            everything after -- goes to QEMU as is
#
# Boots Xen 4.17 with a PV dom0 (built by tests/xen/build-xen.sh) under TCG with
# tests/vm/qemu-system (QEMU 11): QEMU loads DIR/xen as a multiboot kernel (-kernel) with
# the Xen command line
#   console=com1 com1=115200 dom0_mem=MB,max:MB loglvl=all guest_loglvl=all noreboot
#   spec-ctrl=eager-fpu
# and two multiboot modules (-initrd, comma-separated, each with its command line): the
# dom0 kernel DIR/vmlinux with
#   console=hvc0 earlyprintk=xen panic=-1 quiet vfpga.scenario=NAME ARGS
# and DIR/dom0-initrd.gz. The serial console (Xen's and, through it, dom0's hvc0) goes
# to stdout and to the log. Dom0's /init runs the scenario, prints `VFPGA-DONE rc=N` and
# powers off (Xen halts and QEMU exits); this script exits with that N. It exits 124 when
# the timeout stopped QEMU, and 125 when QEMU failed or dom0 ended without a DONE line,
# with a message on stderr in every case. QEMU never outlives the script: it runs under
# `timeout`, and an EXIT trap stops it by PID; it is also stopped when it has not exited
# 10 s after the DONE line.
# spec-ctrl=eager-fpu: QEMU's TCG `-cpu max` is an AMD CPU to Xen ("AMD Fam6h"), so Xen
# defaults to lazy FPU switching (CR0.TS, #NM). Under TCG that corrupts the FPU/SIMD
# state of dom0 processes once a domU's vCPU competes with dom0's: short-lived busybox
# processes died in static glibc's TLS setup, the .tdata copy (a SIMD memcpy) holding
# garbage, with SIGSEGV or #GP (and scenario domu exited 139): 15 crashes in ~450
# process starts while a PV domU ran, none in ~180 without a domU, none in ~530 with
# eager switching (Xen then prints "Support for PV VMs: EAGER_FPU").
# Environment: VFPGA_CACHE, VFPGA_QEMU_ROOT (see tests/vm/qemu-system).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm=$(cd "$here/../vm" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/../vm/qemu-lib.sh
. "$here/../vm/qemu-lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

scenario=smoke share='' limit=300 mem=2048 dom0_mem=1024 smp=2 logf='' append='' xappend=''
xdir=$VFPGA_CACHE/xen
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--scenario | --share | --timeout | --mem | --dom0-mem | --smp | --log | --append | --xen-append | --xen)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--scenario) scenario=$2 ;;
		--share) share=$2 ;;
		--timeout) limit=$2 ;;
		--mem) mem=$2 ;;
		--dom0-mem) dom0_mem=$2 ;;
		--smp) smp=$2 ;;
		--log) logf=$2 ;;
		--append) append=$2 ;;
		--xen-append) xappend=$2 ;;
		--xen) xdir=$2 ;;
		esac
		shift 2
		;;
	--) shift && extra=("$@") && break ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

case $scenario in '' | *[!A-Za-z0-9_.-]* | .*) die "--scenario $scenario: expected [A-Za-z0-9_.-]+" ;; esac
isnum() { case $2 in '' | *[!0-9]*) die "$1 $2: expected a positive integer" ;; esac; [ "$2" -gt 0 ] || die "$1 $2: must be > 0"; }
isnum --timeout "$limit"
isnum --mem "$mem"
isnum --dom0-mem "$dom0_mem"
isnum --smp "$smp"
[ "$dom0_mem" -lt "$mem" ] || die "--dom0-mem $dom0_mem must be below --mem $mem"
[ -z "$share" ] || [ -d "$share" ] || die "--share $share: not a directory"
# QEMU splits -initrd at commas (modules) and each module's file name at the first space.
case $append in *,*) die "--append: the dom0 command line cannot contain a comma (QEMU's -initrd separator)" ;; esac
case $share in *,*) die "--share: a path with a comma cannot be passed to QEMU" ;; esac

[ -d "$xdir" ] || die "no Xen build in $xdir: run tests/xen/build-xen.sh first"
xdir=$(cd "$xdir" && pwd)
kernel=$xdir/vmlinux
[ -f "$kernel" ] || kernel=$xdir/vmlinuz
for f in xen "${kernel##*/}" dom0-initrd.gz; do
	[ -f "$xdir/$f" ] || die "no $f in $xdir: run tests/xen/build-xen.sh"
done
case $xdir in *[,\ ]*) die "--xen $xdir: a path with a comma or a space cannot be a multiboot module" ;; esac
[ -f "${VFPGA_QEMU_ROOT:-$VFPGA_CACHE/qemu-root}/.ready" ] ||
	die "no QEMU root in ${VFPGA_QEMU_ROOT:-$VFPGA_CACHE/qemu-root}: run tests/vm/build-qemu-root.sh first"

logf=${logf:-$VFPGA_CACHE/run-xen/$scenario.log}
mkdir -p "$(dirname "$logf")"

xen_cmdline="console=com1 com1=115200 dom0_mem=${dom0_mem}M,max:${dom0_mem}M loglvl=all guest_loglvl=all noreboot spec-ctrl=eager-fpu${xappend:+ $xappend}"
dom0_cmdline="console=hvc0 earlyprintk=xen panic=-1 quiet vfpga.scenario=$scenario${append:+ $append}"
# shellcheck disable=SC2054 # commas inside QEMU option values
args=(-accel tcg -cpu max -smp "$smp" -m "${mem}M"
	-nographic -no-reboot -nic none
	-kernel "$xdir/xen" -append "$xen_cmdline"
	-initrd "$kernel $dom0_cmdline,$xdir/dom0-initrd.gz")
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
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
: >"$logf" # before QEMU starts: the poll below must not see an old run's lines
log "scenario $scenario: booting Xen $(cat "$xdir/xen-version" 2>/dev/null) + dom0 $(basename "$kernel") (${mem} MB, dom0 ${dom0_mem} MB, $smp CPUs, timeout $limit s, log $logf)"
t0=$EPOCHREALTIME
timeout -k 5 "$limit" "$vm/qemu-system" "${args[@]}" </dev/null >>"$logf" 2>&1 &
qpid=$!
tail -n +1 -s 0.1 -f --pid="$qpid" "$logf" &
tpid=$!

t_dom0='' t_init='' t_done=''
while kill -0 "$qpid" 2>/dev/null; do
	if [ -z "$t_dom0" ] && grep -aq 'Building a PV Dom0' "$logf"; then t_dom0=$(since "$t0"); fi
	if [ -z "$t_init" ] && grep -aq 'vfpga-init: dom0 kernel' "$logf"; then t_init=$(since "$t0"); fi
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
t_dom0=${t_dom0:-?} t_init=${t_init:-$total} t_done=${t_done:-$total}

line=$(grep -a -m1 -o 'VFPGA-DONE rc=[0-9]*' "$logf" || true)
err=$(grep -a -m1 'VFPGA-ERROR' "$logf" | tr -d '\r' || true)
if [ -z "$line" ]; then
	[ -z "$err" ] || log "dom0: $err"
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		log "error: scenario $scenario timed out after $limit s without a DONE line (console: $logf)"
		exit 124
	fi
	if grep -aq 'Kernel panic' "$logf"; then
		log "error: the dom0 kernel panicked (console: $logf)"
	elif grep -aq 'Panic on CPU' "$logf"; then
		log "error: Xen panicked (console: $logf)"
	elif [ "$qrc" != 0 ]; then
		log "error: QEMU failed with status $qrc (console: $logf)"
	else
		log "error: dom0 powered off without a VFPGA-DONE line (console: $logf)"
	fi
	exit 125
fi
rc=${line#VFPGA-DONE rc=}
[ -z "$err" ] || log "dom0: $err"
[ "$qrc" = 0 ] || log "warning: QEMU exited with status $qrc after the DONE line"
log "scenario $scenario: rc=$rc; Xen building dom0 after $t_dom0 s, dom0 /init after $t_init s, DONE after $t_done s, QEMU gone after $total s"
exit "$rc"
