#!/usr/bin/env bash
# Usage: packaging/dkms/build-deb.sh OUT
#
# Builds vfpga-dkms_VERSION-1_all.deb into OUT and prints its path: the sources of the
# guest kernel module (guest-driver/kmod, with the ABI header from proto/include) as
# /usr/src/vfpga-VERSION for DKMS, its udev rule (/dev/vfpgaN to group vfpga, mode
# 0660), and the maintainer scripts that create the group and have DKMS build, install
# and remove the module. VERSION is the workspace's (vfpga's Cargo.toml).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$top/scripts/lib.sh"

case ${1:-} in
'' | -h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	[ $# -gt 0 ] || exit 2
	exit 0
	;;
esac
out=$(mkdir -p "$1" && cd "$1" && pwd)
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"

version=$(cargo pkgid --manifest-path "$top/guest-driver/Cargo.toml" -p vfpga | sed 's/.*[#@]//')
case $version in
[0-9]*.[0-9]*.[0-9]*) ;;
*) die "cannot tell the version of the vfpga package (cargo pkgid said: $version)" ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
kmod=$top/guest-driver/kmod
src=$stage/usr/src/vfpga-$version
install -d "$src/uapi"
# The module's own build files and sources; DKMS builds with `make KDIR=...` there.
# (Not the files a build in the repository leaves there: *.mod.c and objects.)
sources=()
for f in "$kmod"/*.c "$kmod"/*.h; do
	case $f in *.mod.c) continue ;; esac
	sources+=("$f")
done
install -m 0644 "$kmod/Makefile" "$kmod/Kbuild" "${sources[@]}" "$src/"
install -m 0644 "$kmod/uapi/vfpga_ioctl.h" "$src/uapi/"
# In the repository the ABI header is ../../proto/include (Kbuild's second -I); here it
# sits beside vfpga_ioctl.h, in the first.
install -m 0644 "$top/proto/include/vfpga_abi.h" "$src/uapi/"
sed "s/@VERSION@/$version/" "$here/dkms.conf" >"$src/dkms.conf"
chmod 0644 "$src/dkms.conf"

install -D -m 0644 "$kmod/60-vfpga.rules" "$stage/usr/lib/udev/rules.d/60-vfpga.rules"
doc=$stage/usr/share/doc/vfpga-dkms
install -D -m 0644 "$kmod/README.md" "$doc/README.md"
cat >"$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vfpga
Comment: the virtio_vfpga guest kernel module (guest-driver/kmod) and the ABI header
 it shares with user space (proto/include/vfpga_abi.h).

Files: *
Copyright: vfpga contributors
License: GPL-2.0-only
 On Debian systems the full text of the GNU General Public License version 2 is in
 /usr/share/common-licenses/GPL-2.
EOF

install -d "$stage/DEBIAN"
for s in postinst prerm postrm; do
	sed "s/@VERSION@/$version/" "$here/$s" >"$stage/DEBIAN/$s"
	chmod 0755 "$stage/DEBIAN/$s"
done
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" "$here/control" >"$stage/DEBIAN/control"

deb=$out/vfpga-dkms_${version}-1_all.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
