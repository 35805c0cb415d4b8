#!/bin/sh
# Scenario `supervised`: vfpgad runs under `--supervise`. Four processes run kernels
# in a loop, each result compared with the host's reference, counting requests sent
# and completed, while the host kills the daemon three times and upgrades it once;
# they stop when /host/stop appears. Then the host keeps the daemon down, and the
# guest resets its device (driver unbound and bound again) meanwhile and runs a
# kernel once the daemon is back. Nothing here knows of the restarts.
set -u
# shellcheck source=/dev/null
. ./params.sh
mkdir -p out
dmesg -c >/dev/null
worker() {
	p=$1
	shift
	sent=0
	completed=0
	while [ ! -e stop ]; do
		sent=$((sent + 1))
		if ! "$@" --out "out/p$p.bin" 2>"out/p$p.err"; then
			echo "supervised: process $p: request $sent failed: $(cat "out/p$p.err")"
			break
		fi
		completed=$((completed + 1))
		if ! cmp -s "out/p$p.bin" "in/want$p.bin"; then
			echo "supervised: process $p: request $sent: wrong result"
			break
		fi
	done
	echo "$sent $completed" >"out/p$p.count"
}
worker 0 vfpga run vadd_u32 --in in/p0_a.bin --in in/p0_b.bin &
pids=$!
worker 1 vfpga run sha256 --in in/p1_data.bin &
pids="$pids $!"
worker 2 vfpga run sobel --arg "w=$W" --arg "h=$H" --in in/p2_img.bin &
pids="$pids $!"
worker 3 vfpga run mmult --arg "m=$M" --arg "k=$K" --arg "n=$N" --in in/p3_a.bin --in in/p3_b.bin &
pids="$pids $!"
echo 'VFPGA-STEP running'
for pid in $pids; do
	wait "$pid"
done
for p in 0 1 2 3; do
	echo "supervised: process $p sent/completed: $(cat "out/p$p.count")"
done
echo 'VFPGA-STEP down?'
i=0
while [ ! -e down ] && [ "$i" -lt 1200 ]; do
	sleep 0.1
	i=$((i + 1))
done
[ -e down ] || { echo 'supervised: the host never took the daemon down'; exit 1; }
dev=
for d in /sys/bus/virtio/drivers/virtio_vfpga/virtio*; do
	dev=$(basename "$d")
	break
done
echo "supervised: resetting $dev"
echo "$dev" >/sys/bus/virtio/drivers/virtio_vfpga/unbind
echo "$dev" >/sys/bus/virtio/drivers/virtio_vfpga/bind
i=0
while [ ! -c /dev/vfpga0 ] && [ "$i" -lt 1200 ]; do
	sleep 0.1
	i=$((i + 1))
done
vfpga run vadd_u32 --in in/p0_a.bin --in in/p0_b.bin --out out/after.bin || exit 1
cmp -s out/after.bin in/want0.bin || { echo 'supervised: wrong result after the reset'; exit 1; }
dmesg | sed 's/^/supervised: dmesg: /'
echo 'supervised: OK'
