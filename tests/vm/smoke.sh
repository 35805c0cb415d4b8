#!/usr/bin/env bash
# Usage: tests/vm/smoke.sh
#
# End-to-end check of the VM test tooling: builds (or reuses) the QEMU root
# (build-qemu-root.sh), the guest kernel (fetch-kernel.sh) and a busybox initramfs
# (build-initramfs.sh) whose /init mounts proc, sys and devtmpfs, loads virtio_pci, prints
# "VFPGA-SMOKE-OK <uname -r>" on the serial console and powers off. Boots it under TCG with
# shared guest memory (as vhost-user needs) through tests/vm/qemu-system, under
# `timeout 120`, and exits 0 only if the marker appears with the expected kernel version.
# Prints the boot-to-marker time. Files (initramfs, console log) go to $VFPGA_CACHE/smoke.
# Environment: VFPGA_CACHE, VFPGA_SMOKE_TIMEOUT (seconds, default 120).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/qemu-lib.sh
. "$here/qemu-lib.sh"

case ${1:-} in
'') ;;
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
*) die "unknown argument: $1 (see --help)" ;;
esac
limit=${VFPGA_SMOKE_TIMEOUT:-120}
now() { printf '%s\n' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t0=$(now)
"$here/build-qemu-root.sh" >/dev/null
kdir=$("$here/fetch-kernel.sh")
# shellcheck disable=SC2012 # plain directory names
kver=$(ls "$kdir/lib/modules" | head -n1)
vmlinuz=$kdir/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "no kernel image $vmlinuz"
log "QEMU root and kernel $kver ready in $(since "$t0") s"

work=$VFPGA_CACHE/smoke
mkdir -p "$work"
exec 9>"$work/.lock"
flock 9 # one smoke run at a time per cache

cat >"$work/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
if modprobe virtio_pci && [ -d /sys/module/virtio_pci ]; then
	read -r up _ </proc/uptime
	echo "virtio devices: $(ls /sys/bus/virtio/devices | wc -l), uptime $up s"
	echo "VFPGA-SMOKE-OK $(uname -r)"
else
	echo "VFPGA-SMOKE-FAIL modprobe virtio_pci"
fi
poweroff -f
EOF
t1=$(now)
initrd=$("$here/build-initramfs.sh" --kernel-dir "$kdir" --modules virtio_pci \
	--init "$work/init" --out "$work/initramfs.cpio.gz")
log "initramfs built in $(since "$t1") s"

console=$work/console.log
qpid=''
trap stop_qemu EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

: >"$console" # before QEMU starts: the poll below must not see an old run's marker
log "booting $kver under TCG (timeout ${limit} s, console: $console)"
t2=$(now)
timeout -k 5 "$limit" "$here/qemu-system" -accel tcg -cpu max -m 512 -smp 2 \
	-nographic -no-reboot -nic none \
	-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
	-device virtio-rng-pci \
	-kernel "$vmlinuz" -initrd "$initrd" -append 'console=ttyS0 panic=-1 quiet' \
	</dev/null >"$console" 2>&1 &
qpid=$!

boot=''
while kill -0 "$qpid" 2>/dev/null; do
	# Only the time is taken here: the console is written a byte at a time, so the
	# line may still be incomplete. The verdict reads the whole log once QEMU is gone.
	if grep -aq -E 'VFPGA-SMOKE-(OK|FAIL)' "$console"; then
		boot=$(since "$t2")
		break
	fi
	sleep 0.05
done
rc=0
wait "$qpid" || rc=$? # QEMU exits by itself after poweroff -f (or timeout stops it)
qpid=''
total=$(since "$t2")
boot=${boot:-$total}
marker=$(grep -a -m1 -E 'VFPGA-SMOKE-(OK|FAIL)' "$console" | tr -d '\r') || true

if [ "$marker" != "VFPGA-SMOKE-OK $kver" ]; then
	tail -n 30 "$console" >&2
	[ "$rc" = 124 ] && die "no marker within ${limit} s (console: $console)"
	die "smoke test failed: ${marker:-no marker} (QEMU exit $rc, console: $console)"
fi
[ "$rc" = 0 ] || log "warning: QEMU exited with status $rc after the marker"
grep -a 'virtio devices' "$console" | tr -d '\r' | sed 's/.*\(virtio devices\)/guest: \1/' >&2 || true
log "boot-to-marker ${boot} s, QEMU exited after ${total} s, whole run $(since "$t0") s"
echo "$marker boot_to_marker=${boot}s"
