#!/usr/bin/env bash
# Usage: tests/xen/build-xen.sh [--out DIR] [--bin SRC[:DEST]]... [--scenarios DIR]...
#                               [--domu-file SRC:DEST]... [--domu-name NAME] [--force]
#   --out DIR          output folder (default: $VFPGA_CACHE/xen)
#   --bin SRC[:DEST]   put file SRC into dom0 at DEST (default /bin/<name>; a DEST ending
#                      in / keeps the name), e.g. --bin target/release/vfpgad:/usr/bin/
#                      A dynamically linked SRC gets the libraries `ldd SRC` lists on this
#                      machine copied to dom0's /lib/x86_64-linux-gnu (they replace the
#                      Debian ones of the same name), so a glibc build runs in dom0.
#   --scenarios DIR    add DIR/*.sh to /scenarios (after tests/xen/scenarios; a later file
#                      of the same name wins); repeatable
#   --domu-file SRC:DEST  put file SRC into the domU's initramfs at DEST (static binaries,
#                      data, and /domu-run.sh: a script the domU's /init runs instead of
#                      sleeping; see tests/xen/domu/init); repeatable
#   --domu-name NAME   the domain name in /domu/domu.cfg (default: vfpga-domu)
#   --force            re-extract the Xen packages and rebuild both initramfs images
#
# Builds what tests/xen/run-xen.sh boots: Debian's Xen 4.17 with a PV dom0 and, inside
# dom0, a tiny PV domU.
# - Downloads (apt_download, into $VFPGA_CACHE/debs) xen-hypervisor-4.17-amd64,
#   xen-utils-4.17, xen-utils-common, xenstore-utils, libgcc-s1 and the library packages
#   (lib*, zlib1g) they depend on, recursively through their Depends (python3, udev and
#   other programs are not followed), and extracts them once into
#   $VFPGA_CACHE/xen-root/4.17. Every ELF put into dom0 is then checked: each NEEDED
#   library must resolve in dom0's image, or the build fails naming it.
# - DIR/xen: the hypervisor, decompressed (QEMU's -kernel takes it as a multiboot image).
# - DIR/vmlinux: the Debian kernel of tests/vm/fetch-kernel.sh, uncompressed (extracted
#   once from the bzImage, as tests/vm/build-guest.sh does; DIR/vmlinuz if extraction
#   failed). It is both dom0's kernel and the domU's.
# - DIR/domu-initrd.gz (~2 MB, tests/vm/build-initramfs.sh): busybox, the modules a
#   domU needs to reach dom0 (xen-evtchn, xen-gntdev, xen-gntalloc, xen-netfront),
#   the --domu-file files and tests/xen/domu/init, which prints `VFPGA-DOMU-UP ...` on
#   hvc0 and sleeps (or runs /domu-run.sh).
# - DIR/dom0-initrd.gz (tests/vm/build-initramfs.sh): busybox, the modules xen-evtchn,
#   xen-gntdev, xen-gntalloc, xen-privcmd, xenfs, xen-netback, bridge, virtio_pci,
#   9pnet_virtio, 9p (and their dependencies), tests/xen/dom0/init as /init,
#   tests/xen/dom0/vif as /etc/xen/scripts/vfpga-vif (a busybox vif hotplug script:
#   `vif = ["bridge=BR,script=vfpga-vif"]` puts the guest's vif on bridge BR), /usr/lib/xen-4.17/bin/{xl, xenstored,
#   xenconsoled, xen-init-dom0, xenconsole, xenstore-control, libxl-save-helper},
#   /usr/bin/xenstore and its xenstore-{ls,read,write,rm,list,exists,chmod,watch} links,
#   the libraries they need (glibc, libgcc_s.so.1, the libxen* ones, ...) in
#   /lib/x86_64-linux-gnu, /etc/xen/xl.conf, the scenarios in /scenarios, the --bin files,
#   and the domU: /domu/vmlinux, /domu/initrd.gz and /domu/domu.cfg (type='pv',
#   memory=256, vcpus=1, name=--domu-name; `xl create /domu/domu.cfg name=OTHER`
#   overrides the name).
# Each image is rebuilt only when one of its inputs changed; a warm rerun takes about a
# second (most of it fetch-kernel.sh's apt-cache query); a cold one ~30 s (the recursive
# apt-cache walk and the downloads) plus ~3 s per dom0 image. DIR also holds kver and
# xen-version. Prints DIR on stdout.
# Environment: VFPGA_CACHE, VFPGA_KERNEL (kernel version, see tests/vm/fetch-kernel.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm=$(cd "$here/../vm" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/../vm/kernel-lib.sh
. "$here/../vm/kernel-lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

out=$VFPGA_CACHE/xen force=0 domu_name=vfpga-domu
bins=() scen_dirs=("$here/scenarios") domu_files=()
while [ $# -gt 0 ]; do
	case $1 in
	--out | --bin | --scenarios | --domu-file | --domu-name)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--out) out=$2 ;;
		--bin) bins+=("$2") ;;
		--scenarios) [ -d "$2" ] || die "--scenarios $2: not a directory" && scen_dirs+=("$2") ;;
		--domu-file) domu_files+=("$2") ;;
		--domu-name) domu_name=$2 ;;
		esac
		shift 2
		;;
	--force) force=1 && shift ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
case $domu_name in '' | *[!A-Za-z0-9_.-]*) die "--domu-name $domu_name: expected [A-Za-z0-9_.-]+" ;; esac
export LC_ALL=C
umask 022
xenver=4.17
dom0_modules='xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs xen-netback bridge virtio_pci 9pnet_virtio 9p'
domu_modules='xen-evtchn xen-gntdev xen-gntalloc xen-netfront'
# From xen-utils-4.17 (/usr/lib/xen-4.17/bin) and xenstore-utils (/usr/bin).
xen_bins='xl xenstored xenconsoled xen-init-dom0 xenconsole xenstore-control libxl-save-helper'
xs_links='xenstore-chmod xenstore-exists xenstore-list xenstore-ls xenstore-read xenstore-rm xenstore-watch xenstore-write'
command -v readelf >/dev/null || apt_install binutils

# --bin specs as SRC:DEST with an absolute DEST, checked.
specs=()
for b in "${bins[@]}"; do
	case $b in *:*) src=${b%%:*} dst=${b#*:} ;; *) src=$b dst=/bin/ ;; esac
	if [ -z "$src" ] || [ -z "$dst" ]; then die "--bin $b: expected SRC[:DEST]"; fi
	[ -f "$src" ] || die "--bin $b: $src is not a file"
	case $dst in */) dst=$dst${src##*/} ;; esac
	dst=/${dst#/}
	specs+=("$(realpath "$src"):$dst")
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.lock"
flock 9 # one build per output folder at a time

# --- kernel and vmlinux -------------------------------------------------------------------
kdir=$("$vm/fetch-kernel.sh")
# shellcheck disable=SC2012 # plain directory names
kver=$(ls "$kdir/lib/modules" | head -n1)
vmlinuz=$kdir/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "no kernel image $vmlinuz"

# --- the kernel to boot: vmlinux, extracted once from the bzImage -------------------------
kernel=$(boot_kernel "$kdir" "$kver")

# --- Xen packages, extracted once ---------------------------------------------------------
# deps_of PKG...: the packages PKG... depend on (all alternatives, no virtual ones).
deps_of() {
	apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances "$@" 2>/dev/null |
		awk '/^ *\|?(Pre)?Depends: [^<]/ { sub(/:any$/, "", $2); print $2 }' | sort -u
}
# lib_closure PKG...: PKG... and, recursively, the library packages they depend on.
lib_closure() {
	local -A seen=()
	local level=("$@") next p
	while [ ${#level[@]} -gt 0 ]; do
		next=()
		for p in "${level[@]}"; do seen[$p]=1; done
		while IFS= read -r p; do
			case $p in lib* | zlib*) [ -n "${seen[$p]:-}" ] || next+=("$p") ;; esac
		done < <(deps_of "${level[@]}")
		level=("${next[@]}")
	done
	printf '%s\n' "${!seen[@]}" | sort
}
xroot=$VFPGA_CACHE/xen-root/$xenver
if [ "$force" = 1 ] || [ ! -f "$xroot/.ready" ]; then
	t0=$EPOCHREALTIME
	top=("xen-hypervisor-$xenver-amd64" "xen-utils-$xenver" xen-utils-common xenstore-utils libgcc-s1 zlib1g)
	mapfile -t pkgs < <(lib_closure "${top[@]}")
	[ ${#pkgs[@]} -gt ${#top[@]} ] || { apt-get update >/dev/null && mapfile -t pkgs < <(lib_closure "${top[@]}"); }
	[ ${#pkgs[@]} -gt ${#top[@]} ] || die "apt-cache knows no dependencies of ${top[*]}"
	apt_download "$VFPGA_CACHE/debs" "${pkgs[@]}"
	rm -rf "$xroot.tmp.$$"
	mkdir -p "$xroot.tmp.$$"
	for p in "${pkgs[@]}"; do
		deb=$(compgen -G "$VFPGA_CACHE/debs/${p}_*.deb" | sort -V | tail -n1)
		dpkg -x "$deb" "$xroot.tmp.$$" || die "cannot unpack $deb"
		basename "$deb" >>"$xroot.tmp.$$/.ready.tmp"
	done
	mv "$xroot.tmp.$$/.ready.tmp" "$xroot.tmp.$$/.ready"
	rm -rf "$xroot"
	mv -T "$xroot.tmp.$$" "$xroot"
	log "Xen $xenver packages (${#pkgs[@]}) extracted in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
fi
xgz=$xroot/boot/xen-$xenver-amd64.gz
[ -f "$xgz" ] || die "no $xgz in the extracted packages"
if [ ! -s "$out/xen" ] || [ "$out/xen" -ot "$xgz" ]; then
	gzip -dc "$xgz" >"$out/xen.tmp.$$" && mv "$out/xen.tmp.$$" "$out/xen"
fi
sed -n 's/^xen-hypervisor-[^_]*_\([^_]*\)_.*/\1/p' "$xroot/.ready" | sed 's/%3a/:/' >"$out/xen-version"

# --- domU initramfs -------------------------------------------------------------------------
dfiles=()
for f in "${domu_files[@]}"; do
	case $f in *:/*) ;; *) die "--domu-file $f: expected SRC:/DEST" ;; esac
	[ -f "${f%%:*}" ] || die "--domu-file $f: ${f%%:*} is not a file"
	dfiles+=(--file "$(realpath "${f%%:*}"):${f#*:}")
done
domu_stamp=$( {
	echo "kver $kver modules $domu_modules"
	sha256sum "$vm/build-initramfs.sh" "$here/domu/init"
	compgen -G "$VFPGA_CACHE/debs/busybox-static_*.deb" | sort || true
	for f in "${domu_files[@]}"; do echo "file ${f#*:} $(sha256sum <"${f%%:*}")"; done
} | sha256sum | cut -d' ' -f1)
if [ "$force" = 1 ] || [ ! -s "$out/domu-initrd.gz" ] || [ "$(cat "$out/.domu-stamp" 2>/dev/null)" != "$domu_stamp" ]; then
	rm -f "$out/.domu-stamp"
	"$vm/build-initramfs.sh" --kernel-dir "$kdir" --modules "$domu_modules" "${dfiles[@]}" \
		--init "$here/domu/init" --out "$out/domu-initrd.gz" >/dev/null
	echo "$domu_stamp" >"$out/.domu-stamp"
fi

# --- dom0 initramfs -------------------------------------------------------------------------
declare -A scen=()
for d in "${scen_dirs[@]}"; do
	for f in "$d"/*.sh; do
		[ -f "$f" ] && scen[${f##*/}]=$(realpath "$f")
	done
done
[ -n "${scen[smoke.sh]:-}" ] || die "no smoke.sh scenario in ${scen_dirs[*]}"
# host_libs FILE: the libraries `ldd FILE` resolves on this machine (none if static).
host_libs() {
	{ ldd "$1" 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}
istamp=$( {
	echo "kver $kver modules $dom0_modules bins $xen_bins domu $domu_name kernel $kernel"
	cat "$xroot/.ready"
	sha256sum "$0" "$vm/build-initramfs.sh" "$here/dom0/init" "$here/dom0/vif" "$out/domu-initrd.gz"
	compgen -G "$VFPGA_CACHE/debs/busybox-static_*.deb" | sort || true
	for n in $(printf '%s\n' "${!scen[@]}" | sort); do
		echo "scenario $n $(sha256sum <"${scen[$n]}")"
	done
	for s in "${specs[@]}"; do
		echo "bin ${s#*:} $(sha256sum <"${s%%:*}") $(stat -c %a "${s%%:*}")"
		host_libs "${s%%:*}" | while IFS= read -r l; do echo "lib $l $(sha256sum <"$l")"; done
	done
} | sha256sum | cut -d' ' -f1)
if [ "$force" = 1 ] || [ ! -s "$out/dom0-initrd.gz" ] || [ "$(cat "$out/.stamp" 2>/dev/null)" != "$istamp" ]; then
	t0=$EPOCHREALTIME
	stage=$(mktemp -d "${TMPDIR:-/tmp}/vfpga-xen.XXXXXX")
	trap 'rm -rf "$stage"' EXIT
	o=$stage/ov # dom0's files beyond busybox, in their final places
	libdir=$o/lib/x86_64-linux-gnu
	mkdir -p "$libdir" "$o/lib64" "$o/usr/lib/xen-$xenver/bin" "$o/usr/bin" "$o/etc/xen/scripts" \
		"$o/scenarios" "$o/domu" "$stage/bin"
	install -m 755 "$here/dom0/vif" "$o/etc/xen/scripts/vfpga-vif"
	for b in $xen_bins; do
		cp "$xroot/usr/lib/xen-$xenver/bin/$b" "$o/usr/lib/xen-$xenver/bin/" || die "no $b in xen-utils-$xenver"
	done
	cp "$xroot/usr/bin/xenstore" "$o/usr/bin/"
	for l in $xs_links; do ln -s xenstore "$o/usr/bin/$l"; done
	cp "$xroot/etc/xen/xl.conf" "$o/etc/xen/"
	for n in "${!scen[@]}"; do install -m 755 "${scen[$n]}" "$o/scenarios/$n"; done
	# The domU: kernel, initrd and an example configuration.
	cp "$kernel" "$o/domu/${kernel##*/boot/}"
	[ -f "$o/domu/vmlinux-$kver" ] && mv "$o/domu/vmlinux-$kver" "$o/domu/vmlinux"
	[ -f "$o/domu/vmlinuz-$kver" ] && mv "$o/domu/vmlinuz-$kver" "$o/domu/vmlinuz"
	cp "$out/domu-initrd.gz" "$o/domu/initrd.gz"
	dkernel=$(cd "$o/domu" && echo vmlinu?)
	cat >"$o/domu/domu.cfg" <<EOF
# Tiny PV domU of the vfpga Xen tests (tests/xen/build-xen.sh): Debian kernel $kver
# and a busybox initrd whose /init prints VFPGA-DOMU-UP on hvc0 and sleeps.
#   xl create /domu/domu.cfg [name=OTHER]
name = "$domu_name"
type = "pv"
kernel = "/domu/$dkernel"
ramdisk = "/domu/initrd.gz"
extra = "console=hvc0 quiet"
memory = 256
vcpus = 1
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
EOF
	# Glibc and the libraries of the Xen tools from the packages, under their sonames.
	declare -A have=()
	add_lib() { # add_lib SONAME PATH
		[ -n "${have[$1]:-}" ] && return 0
		cp -L "$2" "$libdir/$1" || die "cannot copy $2"
		have[$1]=$2
	}
	find_lib() { # find_lib SONAME: its file in the extracted packages
		local d
		for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib usr/lib; do
			[ -e "$xroot/$d/$1" ] && { echo "$xroot/$d/$1"; return 0; }
		done
		return 1
	}
	needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'; }
	# --bin files and their host libraries first: they win over the packages' copies.
	for s in "${specs[@]}"; do
		src=${s%%:*} dst=${s#*:}
		mkdir -p "$stage/bin/$(dirname "$dst")"
		cp "$src" "$stage/bin$dst"
		while IFS= read -r l; do
			case $l in */ld-linux*) add_lib ld-linux-x86-64.so.2 "$l" ;; *) add_lib "${l##*/}" "$l" ;; esac
		done < <(host_libs "$src")
	done
	ld=$(find_lib ld-linux-x86-64.so.2) || die "no dynamic loader in the packages"
	add_lib ld-linux-x86-64.so.2 "$ld"
	gcc_s=$(find_lib libgcc_s.so.1) || die "no libgcc_s.so.1 in the packages"
	add_lib libgcc_s.so.1 "$gcc_s" # dlopen'ed by glibc for unwinding: xl create aborts without it
	# Every ELF in dom0 (beyond busybox), and the libraries they pull in, resolved.
	queue=()
	while IFS= read -r f; do
		[ "$(od -An -tx1 -N4 "$f" 2>/dev/null | tr -d ' \n')" = 7f454c46 ] && queue+=("$f")
	done < <(find "$o/usr" "$stage/bin" -type f)
	missing=()
	while [ ${#queue[@]} -gt 0 ]; do
		f=${queue[0]}
		queue=("${queue[@]:1}")
		for n in $(needed "$f"); do
			[ -n "${have[$n]:-}" ] && continue
			if p=$(find_lib "$n"); then
				add_lib "$n" "$p"
				queue+=("$libdir/$n")
			else
				missing+=("$n (needed by ${f#"$stage"/*/})")
				have[$n]=missing
			fi
		done
	done
	[ ${#missing[@]} -eq 0 ] || die "libraries not found for dom0: ${missing[*]}"
	ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$o/lib64/ld-linux-x86-64.so.2"

	# Only paths busybox's image does not have are given whole; /usr/bin files one by one.
	files=()
	for p in lib/x86_64-linux-gnu lib64 usr/lib/xen-$xenver etc/xen scenarios domu; do
		files+=(--file "$o/$p:/$p")
	done
	for f in "$o"/usr/bin/*; do files+=(--file "$f:/usr/bin/${f##*/}"); done
	for s in "${specs[@]}"; do files+=(--file "$stage/bin${s#*:}:${s#*:}"); done
	rm -f "$out/.stamp"
	"$vm/build-initramfs.sh" --kernel-dir "$kdir" --modules "$dom0_modules" "${files[@]}" \
		--init "$here/dom0/init" --out "$out/dom0-initrd.gz" >/dev/null
	echo "$istamp" >"$out/.stamp"
	log "dom0 initramfs built in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s ($(du -k "$out/dom0-initrd.gz" | cut -f1) KiB)"
fi

# --- output folder --------------------------------------------------------------------------
link() { # link SRC DEST: hard link (same file system) or copy, when DEST differs
	[ "$1" -ef "$2" ] && return 0
	ln -f "$1" "$2" 2>/dev/null || cp "$1" "$2"
}
case $kernel in
*/vmlinux-*) link "$kernel" "$out/vmlinux" && rm -f "$out/vmlinuz" ;;
*) link "$kernel" "$out/vmlinuz" && rm -f "$out/vmlinux" ;;
esac
echo "$kver" >"$out/kver"
echo "$out"
