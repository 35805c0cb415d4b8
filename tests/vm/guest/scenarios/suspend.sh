#!/bin/sh
# Scenario `suspend`: a system sleep cycle of the guest with the device in use. The
# kernel's PM test mode `devices` suspends every device as a real suspend does (the
# driver's .freeze: new requests wait, the device is reset, its virtqueues freed),
# pauses, and resumes them (.restore: new virtqueues), without firmware sleep, which
# TCG lacks. A file stays open across it; kernels run bit-exact before and after.
#
# The 9p share does not survive the cycle (its virtio transport has no freeze and
# restore, so the reset on resume leaves it without rings): the inputs are copied to
# /tmp and the share unmounted first, and what runs after the resume reports on the
# console (sha256sum of each output, compared with the references on the host).
set -eu
mkdir -p out
cp in/a_u32.bin in/b_u32.bin in/data.bin /tmp/
vfpga run vadd_u32 --in /tmp/a_u32.bin --in /tmp/b_u32.bin --out out/before.bin
cd /
umount /host
exec 3<>/dev/vfpga0
echo devices >/sys/power/pm_test
# The pause between suspend and resume (default 5 s).
echo 1 >/sys/module/suspend/parameters/pm_test_delay
dmesg -c >/dev/null
echo 'suspend: entering the PM test cycle'
echo freeze >/sys/power/state
echo none >/sys/power/pm_test
dmesg | sed 's/^/suspend: dmesg: /'
vfpga run vadd_u32 --in /tmp/a_u32.bin --in /tmp/b_u32.bin --out /tmp/after.bin
vfpga -d /dev/vfpga0 run sha256 --in /tmp/data.bin --out /tmp/sha.bin
exec 3>&-
echo "suspend: after vadd_u32 $(sha256sum /tmp/after.bin | cut -d' ' -f1)"
echo "suspend: after sha256 $(sha256sum /tmp/sha.bin | cut -d' ' -f1)"
echo 'suspend: OK'
