#!/bin/sh
# Scenario `smoke` (busybox sh, run by the guest's /init): checks that virtio_vfpga bound
# a device: /dev/vfpga0 exists and is a character device of mode 0660 (crw-rw----).
# Shows the driver's kernel messages. Exits non-zero otherwise.
#   tests/vm/run-guest.sh --scenario smoke --vfpga SOCKET
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail

echo '--- dmesg | grep -i vfpga'
dmesg | grep -i vfpga || echo '(no vfpga kernel messages)'
echo '---'

dev=/dev/vfpga0
if [ ! -e "$dev" ]; then
	nodes=$(find /dev -maxdepth 1 -name 'vfpga*' | tr '\n' ' ')
	echo "smoke: FAIL: $dev missing; vfpga nodes: ${nodes:-none}"
	echo "smoke: virtio devices:"
	for d in /sys/bus/virtio/devices/*; do
		[ -e "$d" ] || continue
		echo "  ${d##*/} device=$(cat "$d/device") driver=$(basename "$(readlink "$d/driver" || echo none)")"
	done
	exit 1
fi
if [ ! -c "$dev" ]; then
	echo "smoke: FAIL: $dev is not a character device"
	exit 1
fi
mode=$(stat -c %A "$dev")
ls -l "$dev"
if [ "$mode" != crw-rw---- ]; then
	echo "smoke: FAIL: $dev has mode $mode, expected crw-rw----"
	exit 1
fi
echo "smoke: OK: $dev $mode ($(cat /sys/class/vfpga/vfpga0/dev))"
