#!/usr/bin/env bash
# Usage: tests/pxe/build-guest-root.sh --out DIR --ko FILE --cli FILE
#   --out DIR    the root to create (must not exist, or be a root this script made)
#   --ko FILE    virtio_vfpga.ko built for the guest kernel (tests/vm/build-guest.sh
#                leaves one in its output folder)
#   --cli FILE   the static vfpga CLI (scripts/build-guest-cli.sh)
#
# Builds the NFS root the PXE tests export: busybox-static with its applet links, the
# vfpga CLI as /usr/bin/vfpga, virtio_vfpga.ko in /lib/modules/<ver>/extra with the
# modules it needs (virtio, virtio_ring) and `busybox depmod` data,
# tests/pxe/guest-root/init as /sbin/init, tests/pxe/guest-root/scenarios/*.sh in
# /scenarios, and an empty /work for the scenarios' inputs and outputs. The files come
# from tests/vm/build-initramfs.sh (same kernel: tests/vm/fetch-kernel.sh), whose image
# is unpacked into DIR (as root, so device nodes and owners are kept).
# Prints shell assignments on stdout: root=DIR kernel_dir=... kver=... busybox=...
# (the static busybox the image holds, for vfpga-pxe's initramfs).
# Environment: VFPGA_CACHE, VFPGA_KERNEL (see tests/vm/fetch-kernel.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm=$(cd "$here/../vm" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

out='' ko='' cli=''
while [ $# -gt 0 ]; do
	case $1 in
	--out | --ko | --cli)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--out) out=$2 ;;
		--ko) ko=$2 ;;
		--cli) cli=$2 ;;
		esac
		shift 2
		;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
[ -n "$out" ] || die "--out DIR is required"
[ -f "$ko" ] || die "--ko $ko: no such file (tests/vm/build-guest.sh builds it)"
[ -f "$cli" ] || die "--cli $cli: no such file (scripts/build-guest-cli.sh builds it)"
if [ -e "$out" ] && [ ! -f "$out/.vfpga-guest-root" ]; then
	die "--out $out exists and was not made by this script"
fi
[ "$(id -u)" = 0 ] || die "run as root (the root holds device nodes and root-owned files)"
command -v cpio >/dev/null || apt_install cpio

kdir=$("$vm/fetch-kernel.sh")
stage=$(mktemp -d "${TMPDIR:-/tmp}/vfpga-guest-root.XXXXXX")
trap 'rm -rf "$stage"' EXIT
"$vm/build-initramfs.sh" --kernel-dir "$kdir" \
	--file "$ko:/lib/modules/@KVER@/extra/virtio_vfpga.ko" \
	--file "$cli:/usr/bin/vfpga" \
	--file "$here/guest-root/init:/sbin/init" \
	--file "$here/guest-root/scenarios:/" \
	--out "$stage/root.cpio.gz" >/dev/null
rm -rf "$out"
mkdir -p "$out"
(cd "$out" && gzip -dc "$stage/root.cpio.gz" | cpio -idm --quiet --no-absolute-filenames)
chmod 755 "$out/sbin/init" "$out/usr/bin/vfpga"
mkdir -p "$out/work"
touch "$out/.vfpga-guest-root"
out=$(cd "$out" && pwd)
busybox=$(compgen -G "$VFPGA_CACHE/busybox/*/bin/busybox" | sort -V | tail -n1)
echo "root=$out"
echo "kernel_dir=$kdir"
# shellcheck disable=SC2012 # plain directory names
echo "kver=$(ls "$kdir/lib/modules" | head -n1)"
echo "busybox=$busybox"
