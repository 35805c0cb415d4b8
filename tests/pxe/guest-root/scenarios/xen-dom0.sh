#!/bin/sh
# Scenario `xen-dom0`: checks that this kernel runs as Xen's dom0 (on the NFS root) and
# writes /work/out/xen.txt (hypervisor type, version, domain UUID) for the host. When a
# vfpga device is attached and virtio_vfpga loaded, also runs vadd_u32 like `pxe`.
set -eu
mkdir -p out
h=/sys/hypervisor
type=$(cat "$h/type" 2>/dev/null || echo none)
ver="$(cat "$h/version/major" 2>/dev/null || echo ?).$(cat "$h/version/minor" 2>/dev/null || echo ?)"
uuid=$(cat "$h/uuid" 2>/dev/null || echo ?)
printf 'type=%s\nversion=%s\nuuid=%s\n' "$type" "$ver" "$uuid" | tee out/xen.txt
[ "$type" = xen ] || { echo "xen-dom0: not running on Xen" >&2; exit 1; }
# dom0's handle is all zeros.
[ "$uuid" = 00000000-0000-0000-0000-000000000000 ] || { echo "xen-dom0: not dom0 (uuid $uuid)" >&2; exit 1; }
if [ -e /dev/vfpga0 ]; then
	vfpga info
	vfpga run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin --out out/vadd_u32.bin
fi
sync
echo 'xen-dom0: OK'
