#!/bin/sh
# Scenario `restart`: runs a kernel, starts another that the host's model holds in
# flight, and tells the host (VFPGA-STEP restart) to kill and restart vfpgad once the
# run has reached the core, and re-attach the device; waits for /host/go, then for the
# new /dev/vfpga0, and runs a kernel again, without rebooting.
# The long run's exit status and messages go to /host/out/inflight.*.
set -u
# shellcheck source=/dev/null
. ./params.sh
mkdir -p out
vfpga run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin --out out/before.bin || exit 1
(
	vfpga run mmult --arg "m=$LM" --arg "k=$LM" --arg "n=$LM" --in in/lm.bin --in in/lm.bin \
		--out out/long.bin >out/inflight.out 2>out/inflight.err
	echo $? >out/inflight.rc
) &
inflight=$!
echo 'VFPGA-STEP restart'
i=0
while [ ! -e go ] && [ "$i" -lt 900 ]; do
	sleep 0.2
	i=$((i + 1))
done
[ -e go ] || { echo 'restart: the host never said go'; exit 1; }
wait "$inflight"
echo "restart: the run in flight ended with $(cat out/inflight.rc): $(cat out/inflight.err)"
i=0
while [ ! -c /dev/vfpga0 ] && [ "$i" -lt 1200 ]; do
	sleep 0.1
	i=$((i + 1))
done
vfpga info || exit 1
vfpga run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin --out out/after.bin || exit 1
echo 'restart: OK'
