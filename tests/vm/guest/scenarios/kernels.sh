#!/bin/sh
# Scenario `kernels`: shows the device and its catalogue, then runs every kernel with
# the CLI on inputs the host wrote to /host/in, writing /host/out/<kernel>.bin for the
# host to compare with its references. Shapes come from /host/params.sh.
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail
# shellcheck source=/dev/null
. ./params.sh
mkdir -p out
vfpga info
vfpga kernels
vfpga run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin --out out/vadd_u32.bin
vfpga run vadd_f32 --in in/a_f32.bin --in in/b_f32.bin --out out/vadd_f32.bin
vfpga run mmult --arg "m=$M" --arg "k=$K" --arg "n=$N" --in a=in/ma.bin --in b=in/mb.bin --out c=out/mmult.bin
vfpga run fir --in in/x.bin --in in/taps.bin --out out/fir.bin
vfpga run sha256 --in in/data.bin --out out/sha256.bin
vfpga run sobel --arg "w=$W" --arg "h=$H" --in in/img.bin --out out/sobel.bin
vfpga stats
echo 'kernels: OK'
