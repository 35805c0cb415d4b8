#!/bin/sh
# /domu-run.sh of the `streams` Xen test (tests/xen/build-xen.sh --domu-file): a PV domU
# with no vfpga kernel module reaches vfpgad in dom0 with the static `vfpga` CLI, over
# Xen vchan and over TLS on its vif. Kernel command line keys:
#   vfpga.role=guest|intruder   what to do (default guest)
#   vfpga.ip=ADDR               this domU's address on dom0's bridge (10.0.3.0/24)
#   vfpga.peer=DOMID            (intruder) the guest domU's id
# guest: runs every kernel on /in (shapes in /in/params.sh) over vchan:// and over
#   tls://10.0.3.1:7000 (certificate /pki/d1), printing `VFPGA-OUT <transport> <kernel>
#   <sha256 of the output>` for the host to compare, and `VFPGA-BENCH <transport> ...`
#   lines of `vfpga bench`; then leaves a run going over vchan (its session open) and
#   prints VFPGA-DOMU-HOLD once vfpgad has counted its runs.
# intruder: uses its own vchan (VFPGA-INTRUDER own ...), then tries the guest domU's
#   channel by its absolute xenstore path and dom0's TLS port with its own certificate
#   (/pki/d2, a guest that port does not serve); prints `VFPGA-INTRUDER <what> rc=N: <msg>`.
set -u
arg() { sed -n "s/.*vfpga\\.$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
role=$(arg role)
ip=$(arg ip)
for m in xen-evtchn xen-gntdev xen-netfront; do
	modprobe "$m" || echo "VFPGA-FAIL modprobe $m"
done
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $((n += 1)) -le 300 ]; do sleep 0.1; done
ip addr add "$ip/24" dev eth0 && ip link set eth0 up || echo "VFPGA-FAIL network"

if [ "$role" = intruder ]; then
	peer=$(arg peer)
	export VFPGA_TLS_DIR=/pki/d2
	n=0
	until vfpga -d vchan:// info >/tmp/own.out 2>&1 || [ $((n += 1)) -gt 600 ]; do sleep 0.2; done
	if vfpga -d vchan:// info >/tmp/own.out 2>&1; then
		echo "VFPGA-INTRUDER own ok: $(grep '^device:' /tmp/own.out)"
	else
		echo "VFPGA-INTRUDER own rc=$?: $(cat /tmp/own.out)"
	fi
	vfpga -d "vchan://0//local/domain/$peer/vfpga" info >/tmp/x.out 2>&1
	echo "VFPGA-INTRUDER vchan rc=$?: $(tr '\n' ' ' </tmp/x.out)"
	vfpga -d tls://10.0.3.1:7000 info >/tmp/x.out 2>&1
	echo "VFPGA-INTRUDER tls rc=$?: $(tr '\n' ' ' </tmp/x.out)"
	exit 0
fi

# dom0's vfpgad offers the channels once it has seen this domain come up.
n=0
until vfpga -d vchan:// info >/tmp/first.out 2>&1; do
	[ $((n += 1)) -le 600 ] || { echo "VFPGA-FAIL no vchan: $(cat /tmp/first.out)"; exit 1; }
	sleep 0.2
done
# shellcheck source=/dev/null
. /in/params.sh
export VFPGA_TLS_DIR=/pki/d1
rc=0
digest() { # digest TRANSPORT KERNEL FILE
	echo "VFPGA-OUT $1 $2 $(sha256sum <"$3" | cut -d' ' -f1)"
}
for t in vchan tls; do
	case $t in
	vchan) VFPGA_DEVICE=vchan:// ;;
	tls) VFPGA_DEVICE=tls://10.0.3.1:7000 ;;
	esac
	export VFPGA_DEVICE
	o=/tmp/$t
	mkdir -p "$o"
	vfpga info || { echo "VFPGA-FAIL $t info"; rc=1; continue; }
	run() { # run KERNEL ARGS...: one kernel, its output's digest
		k=$1
		shift
		if vfpga run "$k" "$@" --out "$o/$k.bin"; then digest "$t" "$k" "$o/$k.bin"; else
			echo "VFPGA-FAIL $t $k"
			rc=1
		fi
	}
	run vadd_u32 --in /in/a_u32.bin --in /in/b_u32.bin
	run vadd_f32 --in /in/a_f32.bin --in /in/b_f32.bin
	run mmult --arg "m=$M" --arg "k=$K" --arg "n=$N" --in /in/ma.bin --in /in/mb.bin
	run fir --in /in/x.bin --in /in/taps.bin
	run sha256 --in /in/data.bin
	run sobel --arg "w=$W" --arg "h=$H" --in /in/img.bin
	vfpga bench --nops 1000 --size 16M --runs 3 2>&1 | sed "s/^/VFPGA-BENCH $t /"
done

# A session left open over vchan when dom0 destroys this domain.
export VFPGA_DEVICE=vchan://
runs() { vfpga stats | sed -n 's/^kernel runs: *//p'; }
before=$(runs)
vfpga run vadd_u32 --in /in/a_u32.bin --in /in/b_u32.bin --repeat 1000000000 >/dev/null 2>&1 &
n=0
until [ "$(runs)" -gt $((before + 1)) ]; do
	[ $((n += 1)) -le 600 ] || { echo 'VFPGA-FAIL the held run never ran'; exit 1; }
	sleep 0.1
done
echo "VFPGA-DOMU-HOLD runs $(runs)"
exit "$rc"
