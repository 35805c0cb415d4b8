#!/usr/bin/env bash
# Usage: tests/pxe/fetch-xen.sh
#
# Prints the path of Debian's Xen hypervisor as the package installs it,
# boot/xen-4.17-amd64.gz (gzip'd: vfpga-pxe must decompress it for iPXE's multiboot),
# fetched once with apt-get download (xen-hypervisor-4.17-amd64, into $VFPGA_CACHE/debs,
# shared with tests/xen/build-xen.sh) and unpacked into $VFPGA_CACHE/pxe-xen.
# Environment: VFPGA_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

case ${1:-} in
-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" && exit 0 ;;
'') ;;
*) die "unknown argument: $1 (see --help)" ;;
esac
pkg='xen-hypervisor-4.17-amd64'
dir=$VFPGA_CACHE/pxe-xen
xen=$dir/boot/xen-4.17-amd64.gz
if [ ! -f "$dir/.ready" ] || [ ! -f "$xen" ]; then
	apt_download "$VFPGA_CACHE/debs" "$pkg"
	deb=$(compgen -G "$VFPGA_CACHE/debs/${pkg}_*.deb" | sort -V | tail -n1)
	rm -rf "$dir.tmp.$$"
	dpkg -x "$deb" "$dir.tmp.$$"
	[ -f "$dir.tmp.$$/boot/xen-4.17-amd64.gz" ] || die "$deb has no boot/xen-4.17-amd64.gz"
	touch "$dir.tmp.$$/.ready"
	rm -rf "$dir"
	mv "$dir.tmp.$$" "$dir"
fi
echo "$xen"
