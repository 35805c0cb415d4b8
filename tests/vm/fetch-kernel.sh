#!/usr/bin/env bash
# Fetches the Debian guest kernel and its headers into the cache and prepares the headers
# for out-of-tree module builds. Prints the kernel directory. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/../../scripts/lib.sh"

ver=${VFPGA_KERNEL:-}
if [ -z "$ver" ]; then
	ver=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/.*Depends: linux-image-\(6\.[0-9.]*-[0-9]*-amd64\)$/\1/p' | head -n1)
	[ -n "$ver" ] || { apt-get update >/dev/null; ver=$(apt-cache depends linux-image-amd64 |
		sed -n 's/.*Depends: linux-image-\(6\.[0-9.]*-[0-9]*-amd64\)$/\1/p' | head -n1); }
	[ -n "$ver" ] || die "cannot tell which kernel linux-image-amd64 depends on"
fi
dir=$VFPGA_CACHE/kernel/$ver
if [ -f "$dir/.ready" ]; then
	echo "$dir"
	exit 0
fi
common=${ver%-amd64}-common
kbuild=linux-kbuild-$(echo "$ver" | cut -d. -f1-2)
debs=$VFPGA_CACHE/debs
apt_download "$debs" "linux-image-$ver" "linux-headers-$ver" "linux-headers-$common" "$kbuild"
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp"
for p in "linux-image-$ver" "linux-headers-$ver" "linux-headers-$common" "$kbuild"; do
	dpkg -x "$(compgen -G "$debs/${p}_*.deb" | head -n1)" "$dir.tmp"
done
# The headers' Makefile includes the common tree by absolute path: point it here.
hdr=$dir.tmp/usr/src/linux-headers-$ver
sed -i "s|/usr/src/linux-headers-$common|$dir/usr/src/linux-headers-$common|g" "$hdr/Makefile"
# kbuild tools are found through the scripts symlink into /usr/lib/linux-kbuild-X.
for l in "$hdr/scripts" "$hdr/tools/objtool" "$dir.tmp/usr/src/linux-headers-$common/scripts"; do
	[ -L "$l" ] || continue
	t=$(readlink "$l")
	case $t in /*) ln -sfn "$dir${t}" "$l" ;; esac
done
rm -rf "$dir"
mv "$dir.tmp" "$dir"
sed -i "s|$dir.tmp|$dir|g" "$hdr/Makefile" 2>/dev/null || true
hdr=$dir/usr/src/linux-headers-$ver
sed -i "s|$dir.tmp|$dir|g" "$hdr/Makefile"
touch "$dir/.ready"
echo "$dir"
