#!/bin/sh
# Scenario `soak`: runs kernels in a loop until the host creates ./stop, checking each
# sha256 against busybox's (an independent reference) and each vadd of zeros against
# its input; counts runs and failures in out/soak.txt.
set -eu
mkdir -p out
runs=0 fails=0
while [ ! -e stop ]; do
	dd if=/dev/urandom of=/tmp/d.bin bs=4096 count=$((1 + runs % 64)) 2>/dev/null
	want=$(sha256sum /tmp/d.bin | cut -d' ' -f1)
	vfpga run sha256 --in /tmp/d.bin --out /tmp/h.bin
	got=$(od -An -tx1 -v /tmp/h.bin | tr -d ' \n')
	[ "$got" = "$want" ] || fails=$((fails + 1))
	head -c "$(wc -c </tmp/d.bin)" /dev/zero >/tmp/z.bin
	vfpga run vadd_u32 --in /tmp/d.bin --in /tmp/z.bin --out /tmp/s.bin
	cmp -s /tmp/s.bin /tmp/d.bin || fails=$((fails + 1))
	runs=$((runs + 2))
	echo "runs=$runs fails=$fails" >out/soak.txt
done
echo "soak: runs=$runs fails=$fails"
[ "$fails" = 0 ]
echo 'soak: OK'
