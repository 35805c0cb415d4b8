#!/usr/bin/env bash
# Usage: packaging/build-deb-root.sh [--force]
#
# Builds the Debian root the package test installs into (packaging/test-debs.sh mounts
# it read-only under an overlay, so every run starts from it unchanged): Debian 12
# (bookworm, as the machines run) with debootstrap, from the mirror this machine's apt
# uses, plus what the test exercises: systemd (systemd-analyze), man-db, bash-completion,
# zsh, fish, adduser, and dkms with the headers of the kernel linux-image-amd64 depends
# on (the kernel tests/vm/fetch-kernel.sh fetches for the VM tests). Prints the root.
#
# Idempotent: returns at once when $VFPGA_CACHE/deb-root/.ready exists. --force rebuilds.
# Needs root (debootstrap). Environment: VFPGA_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$here/../scripts/lib.sh"

force=0
case ${1:-} in
'') ;;
--force) force=1 ;;
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
*) die "unknown argument: $1 (see --help)" ;;
esac

root=$VFPGA_CACHE/deb-root
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

apt_install debootstrap debian-archive-keyring
mirror=$(apt_mirror)
logf=$VFPGA_CACHE/deb-root.log
rm -rf --one-file-system "$tmp"
trap 'rm -rf --one-file-system "$tmp"' EXIT
start=$(date +%s)
log "debootstrap bookworm with systemd, dkms and kernel headers into $root (a few minutes, log: $logf)"
# debootstrap mounts nothing outside $tmp's own proc/sys, and unmounts them itself.
if ! debootstrap --variant=minbase \
	--include=systemd,man-db,bash-completion,zsh,fish,adduser,dkms,linux-headers-amd64 \
	bookworm "$tmp" "$mirror" >"$logf" 2>&1; then
	tail -n 20 "$logf" >&2
	[ -f "$tmp/debootstrap/debootstrap.log" ] && tail -n 20 "$tmp/debootstrap/debootstrap.log" >&2
	die "debootstrap bookworm from $mirror failed (full log: $logf)"
fi
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*_Packages
compgen -G "$tmp/usr/src/linux-headers-*-amd64" >/dev/null || die "no kernel headers in the new root"
for b in systemd-analyze dkms man bash zsh fish addgroup; do
	chroot "$tmp" sh -c "command -v $b" >/dev/null || die "$b missing from the new root"
done
log "root ready in $(($(date +%s) - start)) s, $(du -sh --one-file-system "$tmp" | cut -f1)"
touch "$tmp/.ready"
rm -rf --one-file-system "$root"
mv -T "$tmp" "$root"
trap - EXIT
echo "$root"
