#!/usr/bin/env bash
# Usage: tests/vm/build-guest.sh [--out DIR] [--bin SRC[:DEST]]... [--scenarios DIR]...
#                                [--modules "A B"]... [--no-vfpga-module] [--force]
#   --out DIR          output folder (default: $VFPGA_CACHE/guest); use another folder for
#                      an image with other --bin, --scenarios or --modules so that the
#                      default image stays as it is
#   --bin SRC[:DEST]   put file SRC into the image at DEST (default /bin/<name>; a DEST
#                      ending in / keeps the name), e.g. --bin target/x86_64-unknown-linux-musl/release/vfpga:/bin/vfpga
#                      The guest has no shared libraries: give static binaries.
#   --scenarios DIR    add DIR/*.sh to /scenarios (after tests/vm/guest/scenarios; a later
#                      file of the same name wins); repeatable
#   --modules "A B"    more kernel modules (with their dependencies) in the image, for the
#                      scenario to modprobe, e.g. "igb vfio-pci vfio_iommu_type1"; soft
#                      dependencies are not followed: list them too; repeatable
#   --no-vfpga-module  leave virtio_vfpga.ko out: a guest that reaches vfpgad only over
#                      a stream (vsock, TLS), as a guest whose kernel cannot take the module
#   --force            rebuild the module and the initramfs even if nothing changed
#
# Builds the vfpga test guest for tests/vm/run-guest.sh:
# - the Debian guest kernel (tests/vm/fetch-kernel.sh) and, once, an uncompressed
#   `vmlinux` extracted from its bzImage into the kernel's cache folder (QEMU boots it
#   directly through PVH, CONFIG_PVH=y: ~2.5 s to /init instead of ~6.7 s);
# - guest-driver/kmod/virtio_vfpga.ko, built out of tree against the cached Debian
#   headers in a scratch copy under $VFPGA_CACHE/guest-build (nothing is built in the
#   repository tree); rebuilt only when a source file changed;
# - initrd.gz (tests/vm/build-initramfs.sh): busybox, virtio_pci, 9p, 9pnet_virtio, the
#   --modules and their dependencies, virtio_vfpga.ko in lib/modules/<ver>/extra,
#   tests/vm/guest/init as /init, the scenarios in /scenarios and the --bin files;
#   rebuilt only when one of its inputs changed.
# DIR then holds vmlinux (or vmlinuz if extraction failed), initrd.gz, virtio_vfpga.ko
# and kver. Prints DIR on stdout. Warm reruns take well under a second.
# Environment: VFPGA_CACHE, VFPGA_KERNEL (kernel version, see fetch-kernel.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/kernel-lib.sh
. "$here/kernel-lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

out=$VFPGA_CACHE/guest force=0 with_ko=1
bins=() scen_dirs=("$here/guest/scenarios") more_modules=''
while [ $# -gt 0 ]; do
	case $1 in
	--out | --bin | --scenarios | --modules)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--out) out=$2 ;;
		--bin) bins+=("$2") ;;
		--scenarios) [ -d "$2" ] || die "--scenarios $2: not a directory" && scen_dirs+=("$2") ;;
		--modules) more_modules+=" $2" ;;
		esac
		shift 2
		;;
	--force) force=1 && shift ;;
	--no-vfpga-module) with_ko=0 && shift ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
export LC_ALL=C
modules="virtio_pci 9pnet_virtio 9p$more_modules"

# --bin specs as SRC:DEST with an absolute DEST, checked.
specs=()
for b in "${bins[@]}"; do
	case $b in *:*) src=${b%%:*} dst=${b#*:} ;; *) src=$b dst=/bin/ ;; esac
	if [ -z "$src" ] || [ -z "$dst" ]; then die "--bin $b: expected SRC[:DEST]"; fi
	[ -f "$src" ] || die "--bin $b: $src is not a file"
	case $dst in */) dst=$dst${src##*/} ;; esac
	dst=/${dst#/}
	if command -v readelf >/dev/null && readelf -l "$src" 2>/dev/null | grep -q 'program interpreter'; then
		log "warning: --bin $src is dynamically linked; the guest has no shared libraries"
	fi
	specs+=("$(realpath "$src"):$dst")
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.lock"
flock 9 # one build per output folder at a time

kdir=$("$here/fetch-kernel.sh")
# shellcheck disable=SC2012 # plain directory names
kver=$(ls "$kdir/lib/modules" | head -n1)
hdr=$kdir/usr/src/linux-headers-$kver
vmlinuz=$kdir/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "no kernel image $vmlinuz"
[ -f "$hdr/Makefile" ] || die "no prepared headers in $hdr (remove $kdir and rerun fetch-kernel.sh)"

# --- the kernel to boot: vmlinux, extracted once from the bzImage -------------------------
kernel=$(boot_kernel "$kdir" "$kver")

# --- virtio_vfpga.ko, out of tree in a scratch copy -----------------------------------------
# Sources: guest-driver/kmod without build products (see .gitignore), and the ABI header
# its Kbuild includes as $(src)/../../proto/include.
kmod_sources() {
	(cd "$repo" && find guest-driver/kmod proto/include -type f \
		! -name '*.o' ! -name '*.ko' ! -name '*.mod' ! -name '*.mod.c' ! -name '.*' \
		! -name Module.symvers ! -name modules.order ! -name '*.a' | sort)
}
build=$VFPGA_CACHE/guest-build/$kver
ko=$build/guest-driver/kmod/virtio_vfpga.ko
kstamp=$( {
	echo "$kver"
	kmod_sources | (cd "$repo" && xargs -r sha256sum)
} | sha256sum | cut -d' ' -f1)
if [ "$force" = 1 ] || [ ! -f "$ko" ] || [ "$(cat "$build/.stamp" 2>/dev/null)" != "$kstamp" ]; then
	t0=$EPOCHREALTIME
	mkdir -p "$build"
	# Copy only what changed: untouched files keep their mtime, so make rebuilds only
	# what depends on an edited file.
	while IFS= read -r f; do
		mkdir -p "$build/$(dirname "$f")"
		cmp -s "$repo/$f" "$build/$f" || cp "$repo/$f" "$build/$f"
	done < <(kmod_sources)
	rm -f "$build/.stamp"
	[ "$force" = 0 ] || make -s -C "$hdr" M="$build/guest-driver/kmod" clean >/dev/null 2>&1 || true
	if ! make -C "$hdr" M="$build/guest-driver/kmod" modules >"$build/make.log" 2>&1; then
		tail -n 40 "$build/make.log" >&2
		die "building virtio_vfpga.ko failed (log: $build/make.log)"
	fi
	grep -E 'warning:|error:' "$build/make.log" >&2 || true
	[ -f "$ko" ] || die "make succeeded but $ko is missing (log: $build/make.log)"
	echo "$kstamp" >"$build/.stamp"
	log "virtio_vfpga.ko built in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
fi

# --- initramfs --------------------------------------------------------------------------
# Scenarios: later folders override earlier ones file by file.
declare -A scen=()
for d in "${scen_dirs[@]}"; do
	for f in "$d"/*.sh; do
		[ -f "$f" ] && scen[${f##*/}]=$(realpath "$f")
	done
done
[ -n "${scen[smoke.sh]:-}" ] || die "no smoke.sh scenario in ${scen_dirs[*]}"
# Everything the image is made of, hashed: unchanged inputs mean an unchanged image.
istamp=$( {
	echo "kver $kver modules $modules virtio_vfpga $with_ko"
	sha256sum "$here/build-initramfs.sh" "$here/guest/init" "$ko"
	compgen -G "$VFPGA_CACHE/debs/busybox-static_*.deb" | sort || true
	for n in $(printf '%s\n' "${!scen[@]}" | sort); do
		echo "scenario $n $(sha256sum <"${scen[$n]}")"
	done
	for s in "${specs[@]}"; do
		echo "bin ${s#*:} $(sha256sum <"${s%%:*}") $(stat -c %a "${s%%:*}")"
	done
} | sha256sum | cut -d' ' -f1)
if [ "$force" = 1 ] || [ ! -s "$out/initrd.gz" ] || [ "$(cat "$out/.stamp" 2>/dev/null)" != "$istamp" ]; then
	t0=$EPOCHREALTIME
	stage=$(mktemp -d "${TMPDIR:-/tmp}/vfpga-guest.XXXXXX")
	trap 'rm -rf "$stage"' EXIT
	mkdir -p "$stage/scenarios"
	for n in "${!scen[@]}"; do install -m 755 "${scen[$n]}" "$stage/scenarios/$n"; done
	files=(--file "$stage/scenarios:/")
	[ "$with_ko" = 0 ] || files+=(--file "$ko:/lib/modules/@KVER@/extra/virtio_vfpga.ko")
	for s in "${specs[@]}"; do files+=(--file "$s"); done
	rm -f "$out/.stamp"
	"$here/build-initramfs.sh" --kernel-dir "$kdir" --modules "$modules" "${files[@]}" \
		--init "$here/guest/init" --out "$out/initrd.gz" >/dev/null
	echo "$istamp" >"$out/.stamp"
	log "initramfs built in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
fi

# --- output folder ----------------------------------------------------------------------
link() { # link SRC DEST: hard link (same file system) or copy, when DEST differs
	[ "$1" -ef "$2" ] && return 0
	ln -f "$1" "$2" 2>/dev/null || cp "$1" "$2"
}
case $kernel in
*/vmlinux-*) link "$kernel" "$out/vmlinux" && rm -f "$out/vmlinuz" ;;
*) link "$kernel" "$out/vmlinuz" && rm -f "$out/vmlinux" ;;
esac
link "$ko" "$out/virtio_vfpga.ko"
echo "$kver" >"$out/kver"
echo "$out"
