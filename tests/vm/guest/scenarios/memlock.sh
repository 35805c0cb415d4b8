#!/bin/sh
# shellcheck disable=SC3045 # busybox ash has ulimit -l
# Scenario `memlock`: the pages a request pins count against its process's
# locked-memory limit. A process (not root, which may lock any amount) over its limit
# gets a clear error and pins nothing; the same request under a higher limit runs.
set -eu
mkdir -p out
chmod 666 /dev/vfpga0
# An unprivileged user to run as (root has CAP_IPC_LOCK: no limit applies to it).
grep -q '^nobody:' /etc/passwd 2>/dev/null || echo 'nobody:x:65534:65534:nobody:/tmp:/bin/sh' >>/etc/passwd
as_nobody() { su -s /bin/sh nobody -c "cd /host && $*"; }
# 50 000 u32 per buffer: three buffers of about 200 KB, some 150 pages, over 64 KiB.
if (ulimit -l 64 && as_nobody vfpga run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin \
	--out /tmp/no.bin) 2>out/memlock.err; then
	echo 'memlock: a request ran over its locked-memory limit'
	exit 1
fi
cat out/memlock.err
(ulimit -l 4096 && as_nobody vfpga run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin \
	--out /tmp/vadd.bin)
cp /tmp/vadd.bin out/vadd.bin
echo 'memlock: OK'
