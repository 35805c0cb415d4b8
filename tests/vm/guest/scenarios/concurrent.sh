#!/bin/sh
# Scenario `concurrent`: four processes, each running a different kernel $ROUNDS times
# at once on its own inputs; every output is kept for the host to check.
set -eu
# shellcheck source=/dev/null
. ./params.sh
mkdir -p out
worker() {
	p=$1
	shift
	i=0
	while [ "$i" -lt "$ROUNDS" ]; do
		"$@" --out "out/p${p}_$i.bin" || return 1
		i=$((i + 1))
	done
}
worker 0 vfpga run vadd_u32 --in in/p0_a.bin --in in/p0_b.bin >out/p0.log 2>&1 &
pids=$!
worker 1 vfpga run sha256 --in in/p1_data.bin >out/p1.log 2>&1 &
pids="$pids $!"
worker 2 vfpga run sobel --arg "w=$W" --arg "h=$H" --in in/p2_img.bin >out/p2.log 2>&1 &
pids="$pids $!"
worker 3 vfpga run mmult --arg "m=$M" --arg "k=$K" --arg "n=$N" --in in/p3_a.bin --in in/p3_b.bin >out/p3.log 2>&1 &
pids="$pids $!"
rc=0
for pid in $pids; do
	wait "$pid" || rc=1
done
cat out/p*.log
echo "concurrent: rc=$rc"
exit "$rc"
