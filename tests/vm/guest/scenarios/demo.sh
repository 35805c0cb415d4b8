#!/bin/sh
# Scenario `demo` (the README's main job): a guest program uses the accelerator through
# /dev/vfpga0 — device info, the kernel catalogue, a few kernels on data made here,
# and a short benchmark — and prints what it gets.
set -eu
cd /tmp
echo '=== vfpga info'
vfpga info
echo '=== vfpga kernels'
vfpga kernels
# A u32 vector in a raw file: a = 0,1,...,7 (little-endian).
le32() {
	v=$1
	for _ in 1 2 3 4; do
		printf '%b' "\\0$(printf '%o' $((v % 256)))"
		v=$((v / 256))
	done
}
: >a.bin
i=0
while [ "$i" -lt 8 ]; do
	le32 "$i" >>a.bin
	i=$((i + 1))
done
echo '=== vfpga run vadd_u32 (a = 0..7 from a file, b = 100..800 typed in)'
vfpga run vadd_u32 --in a=@a.bin --in b=100,200,300,400,500,600,700,800
echo '=== vfpga run fir (i16 samples, i32 taps and results)'
vfpga run fir --in x=1,-2,3,-4 --in taps=2,-1
echo '=== vfpga run vadd_f32'
vfpga run vadd_f32 --in a=0.5,1e30,-3 --in b=0.25,1e30,inf
printf 'abc' >abc.txt
echo '=== vfpga run sha256 on "abc" (FIPS 180-4: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad)'
vfpga run sha256 --in @abc.txt --format hex
echo '=== vfpga bench'
vfpga bench --nops 500 --size 1M --runs 5
echo '=== vfpga stats'
vfpga stats
