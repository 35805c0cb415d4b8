#!/usr/bin/env bash
# Usage: tests/vm/build-qemu-root.sh [--force]
#
# Builds a Debian sid root file system that holds a recent QEMU (qemu-system-x86 plus the
# iPXE option ROMs of ipxe-qemu) in $VFPGA_CACHE/qemu-root with debootstrap, from the
# Debian mirror this machine's apt already uses. tests/vm/qemu-system runs that QEMU
# without chroot. Prints the root directory on stdout.
#
# Idempotent: returns at once when $VFPGA_CACHE/qemu-root/.ready exists. --force rebuilds.
# Needs root (debootstrap). Environment: VFPGA_CACHE, VFPGA_QEMU_SUITE (default: sid).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

force=0
while [ $# -gt 0 ]; do
	case $1 in
	--force) force=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
		exit 0
		;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

suite=${VFPGA_QEMU_SUITE:-sid}
root=$VFPGA_CACHE/qemu-root
tmp=$root.tmp

if [ "$force" = 0 ] && [ -f "$root/.ready" ]; then
	echo "$root"
	exit 0
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root; run this script as root"

mkdir -p "$VFPGA_CACHE"
exec 9>"$root.lock"
flock 9
if [ "$force" = 0 ] && [ -f "$root/.ready" ]; then # built by another process meanwhile
	echo "$root"
	exit 0
fi

# Unmounts whatever debootstrap left mounted below $1 (deepest first), then removes $1.
remove_tree() {
	local d=$1 m
	[ -e "$d" ] || return 0
	d=$(realpath "$d")
	awk -v d="$d" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r |
		while read -r m; do umount -l "$m" || die "cannot unmount $m"; done
	rm -rf --one-file-system "$d"
}
[ "$force" = 0 ] || remove_tree "$tmp"
apt_install debootstrap debian-archive-keyring
mirror=$(apt_mirror)
logf=$VFPGA_CACHE/qemu-root.log
start=$(date +%s)
# A finished debootstrap left by a run that failed later is reused (.debootstrapped).
if [ ! -f "$tmp/.debootstrapped" ]; then
	trap 'remove_tree "$tmp"' EXIT
	remove_tree "$tmp"
	log "debootstrap $suite with QEMU into $root (about 1 min, log: $logf)"
	# sid's qemu-system-x86 Depends on ipxe-qemu (and seabios) already; ipxe-qemu is listed
	# anyway so that the iPXE ROMs for virtio-net-pci stay if that ever becomes a Recommends.
	if ! debootstrap --variant=minbase --include=qemu-system-x86,ipxe-qemu \
		--exclude=qemu-system-gui "$suite" "$tmp" "$mirror" >"$logf" 2>&1; then
		tail -n 20 "$logf" >&2
		[ -f "$tmp/debootstrap/debootstrap.log" ] && tail -n 20 "$tmp/debootstrap/debootstrap.log" >&2
		die "debootstrap $suite from $mirror failed (full log: $logf)"
	fi
	touch "$tmp/.debootstrapped"
	trap - EXIT
fi

# QEMU runs without chroot: tests/vm/qemu-system passes these firmware directories with
# -L (Debian's QEMU searches /usr/share/qemu:/usr/share/seabios, older iPXE packages put
# their ROMs in /usr/lib/ipxe/qemu). Absolute symlinks in them would point to the host's
# files: make them relative.
fwdirs='usr/share/qemu usr/share/seabios usr/lib/ipxe/qemu'
for d in $fwdirs; do
	[ -d "$tmp/$d" ] || continue
	find "$tmp/$d" -type l | while read -r l; do
		t=$(readlink "$l")
		case $t in
		/*) ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$tmp$t")" "$l" ;;
		esac
	done
done
# The wrapper starts QEMU through the root's dynamic loader; calling the loader through
# this link makes the process name (comm) qemu-system-x86 instead of ld-linux-x86-64.
mkdir -p "$tmp/usr/lib/vfpga"
ln -sfn ../x86_64-linux-gnu/ld-linux-x86-64.so.2 "$tmp/usr/lib/vfpga/qemu-system-x86_64"
# Drop what only an installed system needs (apt lists and package cache).
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_Packages

[ -x "$tmp/usr/bin/qemu-system-x86_64" ] || die "qemu-system-x86_64 missing from the new root"
for f in bios-256k.bin efi-virtio.rom; do # SeaBIOS; iPXE ROM of virtio-net-pci
	found=0
	for d in $fwdirs; do [ -s "$tmp/$d/$f" ] && found=1; done
	[ "$found" = 1 ] || die "$f missing (or a dangling link) in the new root's firmware dirs"
done
ld=$tmp/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
[ -f "$ld" ] || die "dynamic loader missing from the new root"
ver=$("$ld" --library-path "$tmp/usr/lib/x86_64-linux-gnu" "$tmp/usr/bin/qemu-system-x86_64" \
	--version | head -n1) || die "the new root's qemu-system-x86_64 does not run"
log "$ver; root ready in $(($(date +%s) - start)) s, $(du -sh --one-file-system "$tmp" | cut -f1)"

touch "$tmp/.ready"
remove_tree "$root"
mv -T "$tmp" "$root"
trap - EXIT
echo "$root"
