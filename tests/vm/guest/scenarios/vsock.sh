#!/bin/sh
# Scenario `vsock`: a guest without the virtio_vfpga module (the image is built without
# it) reaches vfpgad over vsock, through the host's vsock device: the same CLI, with
# VFPGA_DEVICE=vsock://2:PORT (PORT from vfpga.vsock_port=, default 7000). Runs the
# kernels, concurrent, big and errors scenarios that way, then tries a port where
# nothing listens.
set -eu
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
	modprobe "$m"
done
if grep -q '^virtio_vfpga ' /proc/modules || [ -e /dev/vfpga0 ]; then
	echo 'vsock: this guest has the vfpga device or module; it must not'
	exit 1
fi
port=$(sed -n 's/.*vfpga\.vsock_port=\([0-9]*\).*/\1/p' /proc/cmdline)
VFPGA_DEVICE=vsock://2:${port:-7000}
export VFPGA_DEVICE
echo "vsock: VFPGA_DEVICE=$VFPGA_DEVICE, no virtio_vfpga module"
for s in kernels concurrent big errors; do
	echo "--- vsock: scenario $s"
	sh "/scenarios/$s.sh"
done
vfpga -d vsock://2:7999 info >out/noport.out 2>out/noport.err && echo 0 >out/noport.rc ||
	echo $? >out/noport.rc
echo "--- noport: rc $(cat out/noport.rc): $(cat out/noport.err)"
echo 'vsock: OK'
