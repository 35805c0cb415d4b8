#!/bin/sh
# Scenario `pci`: the PCI helpers of `vfpga-xen pci` on a real kernel with an IOMMU and
# an SR-IOV NIC, each command followed by assertions on the real sysfs state.
#
# Needs the IOMMU machine and image (see tests/vm/tests/pci.rs, which builds and runs it):
#   tests/vm/build-guest.sh --out DIR --scenarios tests/vm/guest/pci \
#       --modules "igb vfio-pci vfio_iommu_type1 xen-pciback" --bin .../vfpga-xen
#   tests/vm/run-guest.sh --guest DIR --iommu --scenario pci \
#       -- -device pcie-root-port,id=rp1,chassis=1
# The root port is optional: with one, a bind that the kernel refuses (vfio-pci does not
# take bridges) checks the rollback for real; without, that step is skipped.
#
# Console lines for the host to check:
#   PCI-STEP NAME rc=N ms=T: COMMAND   each vfpga-xen run (its output follows, indented)
#   PCI-CHECK WHAT = VALUE             an assertion on sysfs that held
#   PCI-FACT KEY=VALUE                 what was found (pf, vfs, groups, ...)
#   PCI-FAIL WHAT                      the first assertion that failed (then exit 1)
#   pci: OK                            everything held
set -u
S=/sys/bus/pci
D=$S/devices

ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
fail() {
	echo "PCI-FAIL $*"
	echo '--- last kernel messages ---'
	dmesg | tail -n 20
	exit 1
}
fact() { echo "PCI-FACT $*"; }
# expect WHAT GOT WANT
expect() {
	[ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
	echo "PCI-CHECK $1 = $3"
}
# holds WHAT COMMAND...: the command succeeds
holds() {
	w=$1
	shift
	"$@" || fail "$w"
	echo "PCI-CHECK $w = yes"
}
# step NAME vfpga-xen ARGS...: runs the command, keeps its output in /tmp/NAME.{out,err}
# and its status in $rc, and prints both with the time it took.
step() {
	name=$1
	shift
	t0=$(ms)
	"$@" >"/tmp/$name.out" 2>"/tmp/$name.err"
	rc=$?
	echo "PCI-STEP $name rc=$rc ms=$(($(ms) - t0)): $*"
	sed 's/^/    | /' "/tmp/$name.out" "/tmp/$name.err"
}
out_has() { grep -q -- "$2" "/tmp/$1.out"; }
err_has() { grep -q -- "$2" "/tmp/$1.err"; }
drv() {
	l=$(readlink "$D/$1/driver") || {
		echo none
		return 0
	}
	echo "${l##*/}"
}
grp() {
	l=$(readlink "$D/$1/iommu_group") || {
		echo none
		return 0
	}
	echo "${l##*/}"
}
ovr() { cat "$D/$1/driver_override"; }
# Sysfs names are plain BDFs and numbers: ls is fine.
# shellcheck disable=SC2012
members() { ls "/sys/kernel/iommu_groups/$1/devices" | tr '\n' ' ' | sed 's/ $//'; }
# shellcheck disable=SC2012
count() { ls "$1" | wc -l; }
virtfns() {
	for l in "$D/$1"/virtfn*; do
		[ -L "$l" ] || continue
		t=$(readlink "$l")
		echo "${l##*/virtfn} ${t##*/}"
	done | sort -n | cut -d' ' -f2 | tr '\n' ' ' | sed 's/ $//'
}
dmesg_count() { dmesg | grep -c -- "$1"; }

# --- modules ------------------------------------------------------------------------
t0=$(ms)
for m in igb vfio-pci vfio_iommu_type1; do
	modprobe "$m" || fail "modprobe $m"
done
echo "PCI-STEP modprobe rc=0 ms=$(($(ms) - t0)): modprobe igb vfio-pci vfio_iommu_type1"
# xen-pciback is in the image, but it loads only on Xen: here it must fail.
if modprobe xen-pciback 2>/tmp/pciback.err; then
	fail "modprobe xen-pciback succeeded on a kernel without Xen"
fi
fact "modprobe_xen_pciback=failed: $(cat /tmp/pciback.err)"
fact "hypervisor_type=$(cat /sys/hypervisor/type 2>/dev/null || echo none)"

# --- the PF, alone in its IOMMU group -------------------------------------------------
pf=''
for d in "$D"/*; do
	if [ "$(cat "$d/vendor")" = 0x8086 ] && [ "$(cat "$d/device")" = 0x10c9 ]; then
		pf=${d##*/}
	fi
done
[ -n "$pf" ] || fail "no igb PF (8086:10c9): boot with run-guest.sh --iommu"
fact "pf=$pf"
ngroups=$(count /sys/kernel/iommu_groups)
[ "$ngroups" -gt 0 ] || fail "no IOMMU groups: boot with intel_iommu=on (run-guest.sh --iommu)"
fact "groups=$ngroups"
pfg=$(grp "$pf")
fact "pf_group=$pfg"
expect "PF driver" "$(drv "$pf")" igb
expect "PF group members" "$(members "$pfg")" "$pf"
expect "PF sriov_totalvfs" "$(cat "$D/$pf/sriov_totalvfs")" 7
expect "PF sriov_numvfs" "$(cat "$D/$pf/sriov_numvfs")" 0
fact "totalvfs=$(cat "$D/$pf/sriov_totalvfs")"

# --- groups ---------------------------------------------------------------------------
step groups vfpga-xen pci groups
expect "groups rc" "$rc" 0
expect "groups listed" "$(grep -c '^group ' /tmp/groups.out)" "$ngroups"
holds "PF's group not marked shared" out_has groups "^group $pfg\$"
holds "PF listed with driver and group" out_has groups "^  $pf \[8086:10c9\] class 020000 driver igb iommu_group $pfg sriov 0/7 VFs\$"
for g in /sys/kernel/iommu_groups/*; do
	n=$(count "$g/devices")
	if [ "$n" -gt 1 ]; then
		holds "shared group ${g##*/} ($n functions) marked shared" out_has groups "^group ${g##*/}  (shared"
	fi
done

# --- sriov list -----------------------------------------------------------------------
step sriov_list vfpga-xen pci sriov
expect "sriov list rc" "$rc" 0
holds "sriov list shows the PF with 0/7 VFs" out_has sriov_list "^$pf \[8086:10c9\] .* sriov 0/7 VFs\$"
expect "sriov list: PFs" "$(grep -c '^[0-9a-f]' /tmp/sriov_list.out)" 1

# --- enable 2 VFs ---------------------------------------------------------------------
step enable2_dry vfpga-xen --dry-run pci sriov enable "$pf" 2
expect "dry-run rc" "$rc" 0
holds "dry run would turn autoprobe off" out_has enable2_dry "would write \"0\" to $D/$pf/sriov_drivers_autoprobe"
holds "dry run would write 2 VFs" out_has enable2_dry "would write \"2\" to $D/$pf/sriov_numvfs"
expect "dry run: sriov_numvfs untouched" "$(cat "$D/$pf/sriov_numvfs")" 0
expect "dry run: autoprobe untouched" "$(cat "$D/$pf/sriov_drivers_autoprobe")" 1

step enable2 vfpga-xen pci sriov enable "$pf" 2
expect "enable 2 rc" "$rc" 0
expect "sriov_numvfs" "$(cat "$D/$pf/sriov_numvfs")" 2
expect "sriov_drivers_autoprobe" "$(cat "$D/$pf/sriov_drivers_autoprobe")" 0
vfs=$(virtfns "$pf")
fact "vfs2=$vfs"
expect "virtfn links" "$(echo "$vfs" | wc -w)" 2
expect "VFs printed" "$(sed -n 's/^  //p' /tmp/enable2.out | tr '\n' ' ' | sed 's/ $//')" "$vfs"
vgroups=''
for vf in $vfs; do
	l=$(readlink "$D/$vf/physfn")
	expect "$vf physfn" "${l##*/}" "$pf"
	expect "$vf id" "$(cat "$D/$vf/vendor"):$(cat "$D/$vf/device")" 0x8086:0x10ca
	expect "$vf driver (autoprobe off)" "$(drv "$vf")" none
	g=$(grp "$vf")
	if [ "$g" = none ] || [ "$g" = "$pfg" ]; then fail "$vf: group '$g' (PF's is $pfg)"; fi
	expect "$vf group $g members" "$(members "$g")" "$vf"
	vgroups="$vgroups $g"
done
fact "vf_groups=${vgroups# }"

step sriov_list2 vfpga-xen pci sriov
expect "sriov list rc" "$rc" 0
holds "sriov list shows 2/7" out_has sriov_list2 "^$pf .* sriov 2/7 VFs\$"
for vf in $vfs; do
	holds "sriov list shows $vf" out_has sriov_list2 "^  $vf \[8086:10ca\] class 020000 driver - iommu_group $(grp "$vf") VF of $pf\$"
done

# --- 2 -> 3 VFs goes through 0 --------------------------------------------------------
step enable3_dry vfpga-xen --dry-run pci sriov enable "$pf" 3
expect "dry-run rc" "$rc" 0
expect "dry run: numvfs writes" "$(sed -n "s|^would write \"\\([0-9]*\\)\" to $D/$pf/sriov_numvfs\$|\\1|p" /tmp/enable3_dry.out | tr '\n' ' ')" "0 3 "
disabled=$(dmesg_count 'IOV Disabled')
step enable3 vfpga-xen pci sriov enable "$pf" 3
expect "enable 3 rc" "$rc" 0
expect "sriov_numvfs" "$(cat "$D/$pf/sriov_numvfs")" 3
expect "kernel disabled SR-IOV in between" "$(dmesg_count 'IOV Disabled')" $((disabled + 1))
vfs=$(virtfns "$pf")
fact "vfs3=$vfs"
expect "virtfn links" "$(echo "$vfs" | wc -w)" 3
for vf in $vfs; do
	expect "$vf group members" "$(members "$(grp "$vf")")" "$vf"
done
vf=${vfs%% *}
vf2=$(echo "$vfs" | cut -d' ' -f2)
g=$(grp "$vf")
fact "vf=$vf vf_group=$g"

# --- bind a VF to vfio-pci ------------------------------------------------------------
[ ! -e "/dev/vfio/$g" ] || fail "/dev/vfio/$g exists before the bind"
step bind vfpga-xen pci bind "$vf" --driver vfio-pci
expect "bind rc" "$rc" 0
expect "$vf driver" "$(drv "$vf")" vfio-pci
expect "$vf driver_override" "$(ovr "$vf")" vfio-pci
holds "/dev/vfio/$g is a character device" test -c "/dev/vfio/$g"
holds "bind says bound" out_has bind "^$vf: bound to vfio-pci (was unbound)\$"
holds "xl pci-assignable-add line" out_has bind "^  xl pci-assignable-add $vf\$"
holds "xl.cfg pci line" out_has bind "^  pci = \[ \"$vf\" \]\$"
holds "QEMU vfio-pci line" out_has bind "^  -device vfio-pci,host=$vf\$"
expect "bytes of warnings (the VF is alone in its group)" "$(wc -c </tmp/bind.err)" 0
step lines vfpga-xen pci lines "$vf"
expect "lines rc" "$rc" 0
holds "lines: xl" out_has lines "^xl pci-assignable-add $vf\$"
holds "lines: QEMU" out_has lines "^-device vfio-pci,host=$vf\$"

# --- failures: no pciback here, and a bind the kernel refuses -------------------------
step pciback_bound vfpga-xen pci bind "$vf" --driver pciback
[ "$rc" != 0 ] || fail "bind to pciback succeeded without Xen"
holds "pciback: says no Xen" err_has pciback_bound "does not run on Xen"
expect "$vf driver after failed bind" "$(drv "$vf")" vfio-pci
expect "$vf driver_override after failed bind" "$(ovr "$vf")" vfio-pci
holds "/dev/vfio/$g still there" test -c "/dev/vfio/$g"
step pciback_free vfpga-xen pci bind "$vf2" --driver pciback
[ "$rc" != 0 ] || fail "bind to pciback succeeded without Xen"
expect "$vf2 driver after failed bind" "$(drv "$vf2")" none
expect "$vf2 driver_override after failed bind" "$(ovr "$vf2")" '(null)'

bridge=''
for d in "$D"/*; do
	case $(cat "$d/class") in 0x0604*) [ "$(drv "${d##*/}")" = pcieport ] && bridge=${d##*/} ;; esac
done
if [ -n "$bridge" ]; then
	fact "bridge=$bridge"
	step rollback vfpga-xen pci bind "$bridge" --driver vfio-pci
	[ "$rc" != 0 ] || fail "vfio-pci took a bridge"
	holds "rollback: says it did not bind" err_has rollback "did not bind to vfio-pci (driver now: none)"
	holds "rollback: says rolled back" err_has rollback "rolled back ($bridge driver: pcieport, driver_override: none)"
	expect "$bridge driver after rollback" "$(drv "$bridge")" pcieport
	expect "$bridge driver_override after rollback" "$(ovr "$bridge")" '(null)'
	echo 'PCI-CHECK rollback = done'
else
	echo 'PCI-CHECK rollback = skipped (no PCIe bridge: add -device pcie-root-port,id=rp1,chassis=1)'
fi

# --- unbind ---------------------------------------------------------------------------
step unbind vfpga-xen pci unbind "$vf"
expect "unbind rc" "$rc" 0
expect "$vf driver after unbind" "$(drv "$vf")" none
expect "$vf driver_override after unbind" "$(ovr "$vf")" '(null)'
holds "/dev/vfio/$g gone" test ! -e "/dev/vfio/$g"
holds "unbind says none" out_has unbind "^$vf: released (driver now none)\$"

# --- disable --------------------------------------------------------------------------
step disable vfpga-xen pci sriov disable "$pf"
expect "disable rc" "$rc" 0
expect "sriov_numvfs" "$(cat "$D/$pf/sriov_numvfs")" 0
expect "virtfn links" "$(virtfns "$pf")" ''
for v in $vfs; do
	holds "$v gone" test ! -e "$D/$v"
done
step sriov_list0 vfpga-xen pci sriov
holds "sriov list shows 0/7" out_has sriov_list0 "^$pf .* sriov 0/7 VFs\$"
expect "sriov list: no VF lines" "$(grep -c '^  ' /tmp/sriov_list0.out)" 0

# --- the PF: on vfio-pci it cannot make VFs; without a driver neither -----------------
step bind_pf vfpga-xen pci bind "$pf" --driver vfio-pci
expect "bind PF rc" "$rc" 0
expect "$pf driver" "$(drv "$pf")" vfio-pci
holds "/dev/vfio/$pfg is a character device" test -c "/dev/vfio/$pfg"
step enable_vfio vfpga-xen pci sriov enable "$pf" 2
[ "$rc" != 0 ] || fail "VFs enabled through vfio-pci without enable_sriov=1"
holds "enable on vfio-pci: names the driver" err_has enable_vfio "its driver (vfio-pci) cannot change the number of VFs"
expect "sriov_numvfs" "$(cat "$D/$pf/sriov_numvfs")" 0
step unbind_pf vfpga-xen pci unbind "$pf"
expect "unbind PF rc" "$rc" 0
expect "$pf driver after unbind (host driver back)" "$(drv "$pf")" igb
holds "unbind PF says igb" out_has unbind_pf "^$pf: released (driver now igb)\$"

echo "$pf" >"$S/drivers/igb/unbind" || fail "unbind igb from $pf"
echo 1 >"$D/$pf/sriov_drivers_autoprobe" || fail "autoprobe back on"
step enable_nodrv vfpga-xen pci sriov enable "$pf" 2
[ "$rc" != 0 ] || fail "VFs enabled on a PF without driver"
holds "enable without driver: says so" err_has enable_nodrv "$pf has no driver"
expect "autoprobe untouched" "$(cat "$D/$pf/sriov_drivers_autoprobe")" 1
step unbind_pf2 vfpga-xen pci unbind "$pf"
expect "unbind PF rc" "$rc" 0
expect "$pf driver (host driver back)" "$(drv "$pf")" igb

step list vfpga-xen pci list
expect "list rc" "$rc" 0
holds "list: PF as at the start" out_has list "^$pf \[8086:10c9\] class 020000 driver igb iommu_group $pfg sriov 0/7 VFs\$"
echo 'pci: OK'
