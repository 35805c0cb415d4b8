#!/bin/sh
# Scenario `tenants`: one of two guests sharing one vfpgad at once, each under its own
# policy (its role in ./role): what it lists, runs and may not run or load, and the
# limits it reads back.
set -eu
mkdir -p out
role=$(cat role)
vfpga limits >out/limits.txt
vfpga kernels >out/kernels.txt
case $role in
a)
	# May run base/vadd_u32 only (time-shared with the other guest's bitstream).
	vfpga run base/vadd_u32 --in in/a_u32.bin --in in/b_u32.bin --out out/vadd.bin --repeat 20
	if vfpga run sha256 --in in/data.bin --out out/refused.bin 2>out/refused.txt; then
		echo 'tenants: sha256 ran, its policy does not allow it'
		exit 1
	fi
	;;
b)
	# Runs a kernel of the time-shared bitstream `extra` (while the other guest runs
	# one of `base`), may not load bitstreams.
	vfpga run extra/sha256 --in in/data.bin --out out/sha.bin --repeat 20
	if vfpga load extra 2>out/refused.txt; then
		echo 'tenants: the load went through, its policy allows none'
		exit 1
	fi
	;;
esac
cat out/limits.txt out/kernels.txt out/refused.txt
echo 'tenants: OK'
