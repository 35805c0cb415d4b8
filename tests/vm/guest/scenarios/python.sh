#!/bin/sh
# Scenario `python`: the Python client (clients/python) in a guest without the
# virtio_vfpga module, over vsock. The host's test put a Python in /host/py
# (clients/python/tests/guest/runtime.sh: Debian's python3 with its libraries and
# standard library) and the inputs of the kernels scenario in /host/in;
# clients/python/tests/guest/kernels.py (copied to /host/py) runs every kernel and the
# errors, writing /host/out. PORT from vfpga.vsock_port= (default 7000).
set -eu
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
	modprobe "$m"
done
port=$(sed -n 's/.*vfpga\.vsock_port=\([0-9]*\).*/\1/p' /proc/cmdline)
PYTHONHOME=/host/py PYTHONPATH=/host/py/client PYTHONDONTWRITEBYTECODE=1 \
	/host/py/lib/ld-linux-x86-64.so.2 --library-path /host/py/lib /host/py/bin/python3 -S \
	/host/py/kernels.py "vsock://2:${port:-7000}"
