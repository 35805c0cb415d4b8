#!/bin/sh
# Scenario `supervised`: vfpgad runs under `--supervise`. Four processes run kernels
# in a loop, each result compared with the host's reference, counting requests sent
# and completed, while the host kills the daemon three times and upgrades it once;
# they stop when /host/stop appears. Then the host keeps the daemon down, and the
# guest resets its device (driver unbound and bound again) meanwhile and runs a
# kernel once the daemon is back. Nothing here knows of the restarts.
# A guest without the module (vfpga.tls_port= on the command line) does the same over
# TLS on the user-mode network (certificates in /host/pki), where the guest library
# reconnects; it has no device to reset.
set -u
# shellcheck source=/dev/null
. ./params.sh
mkdir -p out
dmesg -c >/dev/null
port=$(sed -n 's/.*vfpga\.tls_port=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$port" ]; then
	modprobe virtio_net
	ip link set lo up
	n=0
	while [ ! -e /sys/class/net/eth0 ] && [ $((n += 1)) -le 300 ]; do sleep 0.1; done
	udhcpc -q -n -t 20 -i eth0 >/dev/null
	VFPGA_DEVICE=tls://10.0.2.2:$port
	VFPGA_TLS_DIR=/host/pki
	export VFPGA_DEVICE VFPGA_TLS_DIR
	echo "supervised: over $VFPGA_DEVICE"
fi
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
if [ -n "$port" ]; then
	echo 'supervised: OK'
	exit 0
fi
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
