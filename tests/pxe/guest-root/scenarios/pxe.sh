#!/bin/sh
# Scenario `pxe`: on the NFS root, with virtio_vfpga loaded from it, shows the device
# and runs vadd_u32 and sha256 on inputs the host wrote to /work/in (NFS), writing
# /work/out/<kernel>.bin for the host to compare with its references.
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail
mkdir -p out
vfpga info
vfpga run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin --out out/vadd_u32.bin
vfpga run sha256 --in in/data.bin --out out/sha256.bin
sync
echo 'pxe: OK'
