#!/bin/sh
# Scenario `transports`: one guest, three ways to the same vfpgad, measured side by side
# with `vfpga bench` (null-op round trips and 16 MiB vadd_u32): the virtio device
# (/dev/vfpga0), vsock (vsock://2:7000, through the host's vsock device) and TLS over the
# user-mode network (tls://10.0.2.2:PORT, PORT from vfpga.tls_port=, certificates in
# /pki). Each bench line is printed as `VFPGA-BENCH <transport> <line>`. Between virtio
# and the streams, the floor of any RPC over vsock (a vAccel-style one included): 64-byte
# echoes to the host's port 7001 with /bin/vsock-echo (tests/vm/guest/tools/vsock-echo.c),
# as VFPGA-BENCH vsock-echo.
# The virtio device is benched once per line `NAME [FLAGS...]` of /host/bench-virtio
# (scripts/bench.sh writes it: variants such as buffers in huge pages), as
# VFPGA-BENCH NAME; without the file, once, plain, as VFPGA-BENCH virtio. A flag
# `poll_us=N` sets the driver's hybrid polling for that variant instead of going to
# `vfpga bench`.
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport virtio_net; do
	modprobe "$m"
done
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $((n += 1)) -le 300 ]; do sleep 0.1; done
udhcpc -q -n -t 20 -i eth0 >/dev/null
port=$(sed -n 's/.*vfpga\.tls_port=\([0-9]*\).*/\1/p' /proc/cmdline)
export VFPGA_TLS_DIR=/pki
# Huge pages only where asked for (MADV_HUGEPAGE, as `--memory thp` does): the
# plain runs keep their buffers in 4 KiB pages, a guest's usual scatter.
thp=/sys/kernel/mm/transparent_hugepage/enabled
[ ! -w "$thp" ] || echo madvise >"$thp"
# The pool `--memory hugetlb` takes from: three 16 MiB vectors.
echo 32 >/proc/sys/vm/nr_hugepages
poll=/sys/module/virtio_vfpga/parameters/poll_us
variants=/host/bench-virtio
[ -f "$variants" ] || { echo virtio >/tmp/bench-virtio && variants=/tmp/bench-virtio; }
# Whole, then its first line: a reader that stops early (`| head`) would end the CLI
# with a broken pipe, which pipefail turns into a failure when it wins the race.
vfpga -d /dev/vfpga0 info >/tmp/virtio.info
head -n 1 /tmp/virtio.info
while read -r name flags; do
	[ -n "$name" ] || continue
	us=0
	args=
	set -f # the flags are words, never patterns
	for f in $flags; do
		case $f in
		poll_us=*) us=${f#poll_us=} ;;
		*) args="$args $f" ;;
		esac
	done
	set +f
	echo "$us" >"$poll"
	# shellcheck disable=SC2086 # the flags are separate words
	vfpga -d /dev/vfpga0 bench --nops 2000 --size 16M --runs 5 $args </dev/null 2>&1 |
		sed "s/^/VFPGA-BENCH $name /"
done <"$variants"
echo 0 >"$poll"
# Right after the virtio device's null ops, which it is the reference for: on a shared
# machine the load drifts within a boot.
vsock-echo 7001 2000 64 | sed "s/^/VFPGA-BENCH vsock-echo /"
# For scripts/bench.sh, the null op and the echo interleaved: three rounds of the null
# op with the driver's polling off, on, then the echo, as VFPGA-BENCH round-N-KIND.
if [ -f /host/bench-virtio ]; then
	for round in 1 2 3; do
		for kind in virtio:0 polled:50; do
			echo "${kind#*:}" >"$poll"
			vfpga -d /dev/vfpga0 bench --nops 1000 --runs 0 </dev/null |
				sed "s/^/VFPGA-BENCH round-$round-${kind%%:*} /"
		done
		echo 0 >"$poll"
		vsock-echo 7001 1000 64 | sed "s/^/VFPGA-BENCH round-$round-echo /"
	done
fi
for t in vsock:vsock://2:7000 "tls:tls://10.0.2.2:$port"; do
	name=${t%%:*}
	dev=${t#*:}
	vfpga -d "$dev" info >"/tmp/$name.info"
	head -n 1 "/tmp/$name.info"
	vfpga -d "$dev" bench --nops 2000 --size 16M --runs 5 2>&1 | sed "s/^/VFPGA-BENCH $name /"
done
echo 'transports: OK'
