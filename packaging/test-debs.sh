#!/usr/bin/env bash
# Usage: packaging/test-debs.sh
#
# Tests vfpga's Debian packages end to end:
#  1. builds them (packaging/build-debs.sh) and checks what each holds (dpkg-deb -c, -I);
#  2. installs them with dpkg -i into a throwaway Debian 12 root: the cached root of
#     packaging/build-deb-root.sh under an overlay (with /run and /tmp on tmpfs, as on
#     a booted system), in a mount namespace of its own, so the cache stays as it was
#     and this machine is not touched;
#  3. there (packaging/test-debs-root.sh): files, man pages, bash/zsh/fish completions,
#     systemd-analyze verify on the units, vfpgad --check on the installed
#     /etc/vfpga/vfpgad.toml, DKMS's build of virtio_vfpga.ko for the root's kernel,
#     then dpkg -r (the conffile stays) and dpkg --purge;
#  4. checks the purge left nothing: every file the run added or changed in the root
#     (the overlay's upper layer) is either dpkg's own records or listed below.
# Needs root. Output is bounded (failing steps show their last lines).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$top/scripts/lib.sh"

case ${1:-} in
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
'') ;;
*) die "unknown argument: $1 (see --help)" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root (chroot, mounts)"

out=$top/target/debian
rm -rf "$out"
log "building the packages"
mapfile -t debs < <("$here/build-debs.sh" "$out")
[ ${#debs[@]} -eq 6 ] || die "expected 6 packages, build-debs.sh made: ${debs[*]}"

# has DEB PATH...: each PATH (as dpkg-deb -c lists it, without ./) is in DEB.
has() {
	local deb=$1 list p
	shift
	list=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./||')
	for p in "$@"; do
		grep -qxF -- "$p" <<<"$list" || die "$(basename "$deb") lacks $p"
	done
}
log "contents (dpkg-deb -c)"
for p in vfpgad vfpga-agent vfpga vfpga-xen vfpga-pxe; do
	deb=$(compgen -G "$out/${p}_*_amd64.deb")
	has "$deb" "usr/bin/$p" "usr/share/man/man1/$p.1.gz" \
		"usr/share/bash-completion/completions/$p" "usr/share/zsh/vendor-completions/_$p" \
		"usr/share/fish/vendor_completions.d/$p.fish" "usr/share/doc/$p/copyright"
	[ -f "$out/${p}-dbgsym_$(dpkg-deb -f "$deb" Version)_amd64.ddeb" ] || die "no dbgsym package for $p"
	# Stripped: the debug information is in the dbgsym package.
	dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/bin/$p" >"$out/.bin"
	! readelf -S "$out/.bin" | grep -q '\.debug_line' || die "$p's binary is not stripped"
	rm -f "$out/.bin"
done
has "$(compgen -G "$out/vfpgad_*.deb")" etc/vfpga/vfpgad.toml \
	usr/lib/systemd/system/vfpgad.service usr/lib/systemd/system/vfpgad-dom0.service
[ "$(dpkg-deb -I "$(compgen -G "$out/vfpgad_*.deb")" conffiles)" = /etc/vfpga/vfpgad.toml ] ||
	die "vfpgad's conffiles are not exactly /etc/vfpga/vfpgad.toml"
has "$(compgen -G "$out/vfpga-agent_*.deb")" usr/lib/systemd/system/vfpga-agent.service \
	usr/share/man/man1/vfpga-agent-serve.1.gz usr/share/man/man1/vfpga-agent-cert-init.1.gz
dkms_deb=$(compgen -G "$out/vfpga-dkms_*_all.deb")
v=$(dpkg-deb -f "$dkms_deb" Version)
has "$dkms_deb" "usr/src/vfpga-${v%-*}/dkms.conf" "usr/src/vfpga-${v%-*}/Kbuild" \
	"usr/src/vfpga-${v%-*}/uapi/vfpga_abi.h" usr/lib/udev/rules.d/60-vfpga.rules

root=$("$here/build-deb-root.sh")
tmp=$(mktemp -d)
trap 'rm -rf --one-file-system "$tmp"' EXIT
mkdir -p "$tmp/upper" "$tmp/work" "$tmp/root" "$tmp/mnt"
cp "${debs[@]}" "$here/test-debs-root.sh" "$tmp/mnt/"
log "dpkg -i, checks and dpkg --purge in a throwaway root (overlay on $root)"
# The mounts live and die with this mount namespace (its script gets its paths as $1..$5).
# shellcheck disable=SC2016
unshare --mount --propagation private bash -euo pipefail -c '
	mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4"
	mount -t proc proc "$4/proc"
	mount -t tmpfs tmpfs "$4/run"
	mount -t tmpfs tmpfs "$4/tmp"
	mount --bind "$5" "$4/mnt"
	mount -o remount,bind,ro "$4/mnt"
	timeout 1800 chroot "$4" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		DEBIAN_FRONTEND=noninteractive bash /mnt/test-debs-root.sh </dev/null
' _ "$root" "$tmp/upper" "$tmp/work" "$tmp/root" "$tmp/mnt"

log "nothing left after the purge"
# What may differ from the root as it was: dpkg's records and log, the indexes that
# triggers and depmod rewrite (the root has kernel headers but no kernel image, so
# depmod makes its indexes on the module's installation and leaves them), and the
# backups adduser/delgroup keep of the files they edit.
allowed='^(var/lib/dpkg/|var/log/|var/cache/man/|var/cache/debconf/|var/cache/ldconfig/|etc/ld\.so\.cache$|etc/(passwd|group|shadow|gshadow)-$|(usr/)?lib/modules/[^/]+/modules\.[a-z.]+$)'
left=()
while IFS= read -r -d '' f; do
	rel=${f#"$tmp/upper/"}
	[[ $rel =~ $allowed ]] && continue
	if [ -c "$f" ] && [ "$(stat -c %t:%T "$f")" = 0:0 ]; then
		left+=("removed: /$rel")
	elif [ -d "$f" ] && [ ! -L "$f" ]; then
		[ -d "$root/$rel" ] || left+=("new folder: /$rel")
	elif [ ! -e "$root/$rel" ] && [ ! -L "$root/$rel" ]; then
		left+=("new: /$rel")
	elif ! cmp -s "$f" "$root/$rel"; then
		left+=("changed: /$rel")
	fi
done < <(find "$tmp/upper" -mindepth 1 -print0)
if [ ${#left[@]} -gt 0 ]; then
	printf '  %s\n' "${left[@]}" | head -n 40 >&2
	die "the purge left ${#left[@]} change(s) in the root"
fi
log "packages: built, installed, checked and purged cleanly"
