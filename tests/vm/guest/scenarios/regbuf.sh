#!/bin/sh
# Scenario `regbuf`: registered buffers and huge pages, then hybrid polling.
# /host/regbuf (tests/vm/guest/tools/regbuf.c, built by the host test) runs vadd_u32
# on registered buffers through the raw ioctls, checks every element, and tries the
# hostile cases; then `vfpga bench` on 16 MiB vectors in 4 KiB pages, transparent huge
# pages and the huge page pool, registered or not, prints each run's descriptor count;
# then null ops with the driver's polling off and on, and the CPU the guest spends
# idle afterwards (VFPGA-IDLE busy/total jiffies over two seconds; vfpgad polls too).
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail
mkdir -p out
# 32 huge pages of 2 MiB: regbuf's 3 x 4 MiB, then three 16 MiB vectors.
echo 32 >/proc/sys/vm/nr_hugepages
echo "regbuf: $(cat /proc/sys/vm/nr_hugepages) huge pages reserved"
/host/regbuf hugetlb
thp=/sys/kernel/mm/transparent_hugepage/enabled
[ ! -w "$thp" ] || echo madvise >"$thp"
for memory in pages thp hugetlb; do
	for reg in '' --register; do
		# shellcheck disable=SC2086 # $reg is one flag or none
		vfpga bench --nops 0 --size 16M --runs 3 --memory "$memory" $reg |
			sed 's/^/VFPGA-BENCH /'
	done
done
poll=/sys/module/virtio_vfpga/parameters/poll_us
for us in 0 50 0 50; do
	echo "$us" >"$poll"
	vfpga bench --nops 500 --runs 0 | sed "s/^/VFPGA-POLL $us /"
done
# A long polled run: the queue's interrupts (off while polling) must not pile up as
# unhandled ones, which the kernel would end by disabling the vector as spurious.
irqs() { grep 'virtio' /proc/interrupts | tr -s ' ' | tr '\n' ';'; }
echo "VFPGA-IRQ before: $(irqs)"
echo 50 >"$poll"
vfpga bench --nops 20000 --runs 0 | sed 's/^/VFPGA-POLL long /'
echo "VFPGA-IRQ after 20000 polled null ops: $(irqs)"
if dmesg | grep -Ei 'nobody cared|disabling irq'; then
	echo 'regbuf: FAIL: the kernel disabled an interrupt as spurious'
	exit 1
fi
# Idle with polling on (here and in vfpgad): nothing may keep spinning once the
# requests are answered. The host measures vfpgad between the two lines.
echo 'VFPGA-IDLE-START'
jiffies() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
before=$(jiffies)
sleep 2
after=$(jiffies)
echo "$before $after" | awk '{ print "VFPGA-IDLE " $3 - $1 " " $4 - $2 }'
echo 0 >"$poll"
echo 'regbuf: scenario OK'
