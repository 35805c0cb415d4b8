#!/bin/sh
# Scenario `kernels`: shows the device and its catalogue, then runs every kernel with
# the CLI on inputs the host wrote to /host/in, writing /host/out/<kernel>.bin for the
# host to compare with its references (inputs given in the old bare form and the @
# form), vadd_f32 once more from and to .npy files, and typed values printed to
# /host/out/*.txt. Shapes come from /host/params.sh.
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail
# shellcheck source=/dev/null
. ./params.sh
mkdir -p out
vfpga info
vfpga kernels
vfpga run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin --out out/vadd_u32.bin
vfpga run vadd_f32 --in a=@in/a_f32.bin --in b=@in/b_f32.bin --out c=@out/vadd_f32.bin
vfpga run vadd_f32 --in a=@in/a_f32.npy --in b=@in/b_f32.bin --out c=@out/vadd_f32.npy
vfpga run mmult --arg "m=$M" --arg "k=$K" --arg "n=$N" --in a=in/ma.bin --in b=in/mb.bin --out c=out/mmult.bin
vfpga run fir --in @in/x.bin --in @in/taps.bin --out @out/fir.bin
vfpga run sha256 --in in/data.bin --out out/sha256.bin
vfpga run sobel --arg "w=$W" --arg "h=$H" --in in/img.bin --out out/sobel.bin
vfpga run fir --in x=1,-2,3,-32768 --in taps=2,-1 >out/fir.txt
vfpga run sha256 --in @- --format hex <in/data.bin >out/sha256.txt
vfpga stats
echo 'kernels: OK'
