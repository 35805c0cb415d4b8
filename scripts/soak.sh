#!/usr/bin/env bash
# Usage: scripts/soak.sh [--minutes N] [--guests G] [--threads T] [--no-vms]
#   --minutes N   how long (default 10)
#   --guests G    guests driven from the host (default 8)
#   --threads T   threads per guest: one on its virtio device, the others on streams
#                 (default 4)
#   --no-vms      without the two VMs
#
# A soak of vfpgad: G guests x T threads through the vhost-user test frontend and the
# guest library (backend/vfpgad/examples/soak.rs), plus two real VMs (QEMU, TCG) running
# kernels in a loop the whole time (scenario soak), every result checked. Fails on any
# error, or if the daemon's memory or file descriptors keep growing after warm-up.
# Not part of the test command (it takes the time it says); figures in docs/hardening.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

minutes=10 guests=8 threads=4 vms=1
while [ $# -gt 0 ]; do
	case $1 in
	--minutes) minutes=${2:?} && shift 2 ;;
	--guests) guests=${2:?} && shift 2 ;;
	--threads) threads=${2:?} && shift 2 ;;
	--no-vms) vms=0 && shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" && exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
cargo build --release --locked -p vfpgad --example soak
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/run"
[ "$vms" = 0 ] || : >"$work/run/vms"
target/release/examples/soak target/release/vfpgad "$work/run" "$minutes" "$guests" "$threads" |
	tee "$work/soak.out" &
soak=$!
if [ "$vms" = 1 ]; then
	cli=$(scripts/build-guest-cli.sh)
	tests/vm/build-qemu-root.sh >/dev/null
	guest=$(tests/vm/build-guest.sh --bin "$cli:/bin/vfpga")
	for _ in $(seq 600); do [ -e "$work/run/ready" ] && break; sleep 0.1; done
	[ -e "$work/run/ready" ] || die "the soak did not start"
	secs=$(awk "BEGIN {print int($minutes * 60) + 120}")
	for vm in a b; do
		mkdir -p "$work/share-$vm"
		# The soak's daemon serves 4 request queues: 1 control + 4.
		tests/vm/run-guest.sh --scenario soak --guest "$guest" --vfpga "$work/run/vm-$vm.sock" --queues 5 \
			--vq-size 1024 --timeout "$secs" --share "$work/share-$vm" --log "$work/vm-$vm.log" \
			>"$work/vm-$vm.out" 2>&1 &
		pids+=($!)
	done
	# Warm-up ends once both VMs run kernels (each has written its first tally).
	(
		for _ in $(seq 3000); do
			[ -s "$work/share-a/out/soak.txt" ] && [ -s "$work/share-b/out/soak.txt" ] && break
			sleep 0.2
		done
		: >"$work/run/warm"
	) &
fi
rc=0
if [ "$vms" = 1 ]; then
	# The VMs stop first (the soak waits for them before it stops the daemon).
	until [ -e "$work/run/finish" ] || ! kill -0 "$soak" 2>/dev/null; do sleep 0.5; done
	for vm in a b; do : >"$work/share-$vm/stop"; done
	for i in "${!pids[@]}"; do
		vm=$([ "$i" = 0 ] && echo a || echo b)
		if wait "${pids[$i]}"; then
			log "VM $vm: $(cat "$work/share-$vm/out/soak.txt" 2>/dev/null)"
		else
			log "VM $vm failed:"
			tail -n 20 "$work/vm-$vm.log" >&2
			rc=1
		fi
	done
	pids=()
	: >"$work/run/vms-stopped"
fi
wait "$soak" || rc=1
[ "$rc" = 0 ] || die "the soak failed"
log "soak passed"
