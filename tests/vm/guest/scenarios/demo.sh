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
# Two u32 vectors: a = 0,1,...,7 and b = 100,200,...,800 (little-endian).
le32() {
	v=$1
	for _ in 1 2 3 4; do
		printf '%b' "\\0$(printf '%o' $((v % 256)))"
		v=$((v / 256))
	done
}
: >a.bin
: >b.bin
i=0
while [ "$i" -lt 8 ]; do
	le32 "$i" >>a.bin
	le32 $(((i + 1) * 100)) >>b.bin
	i=$((i + 1))
done
echo '=== vfpga run vadd_u32 (a = 0..7, b = 100..800; c printed as little-endian hex)'
vfpga run vadd_u32 --in a.bin --in b.bin
printf 'abc' >abc.txt
echo '=== vfpga run sha256 on "abc" (FIPS 180-4: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad)'
vfpga run sha256 --in abc.txt
echo '=== vfpga bench'
vfpga bench --nops 500 --size 1M --runs 5
echo '=== vfpga stats'
vfpga stats
