#!/usr/bin/env bash
# Usage: tests/vm/build-initramfs.sh [options]
#   --kernel-dir DIR   kernel tree printed by tests/vm/fetch-kernel.sh (needed for --modules
#                      and for modules added with --file); the version is taken from
#                      DIR/lib/modules/<ver>
#   --modules "A B"    kernel modules to include, with their dependencies (from each
#                      module's modinfo depends=); names with - or _; repeatable.
#                      Soft dependencies are not followed: list them too.
#   --file SRC:DEST    copy file or directory SRC to DEST in the image (repeatable). A DEST
#                      ending in / keeps SRC's name; @KVER@ in DEST becomes the kernel
#                      version, e.g. --file vfpga.ko:/lib/modules/@KVER@/extra/
#   --init PATH        the /init script (default: mount proc, sys, dev and run a shell)
#   --out PATH         output, a gzip'd newc cpio (default: $VFPGA_CACHE/initramfs/initramfs.cpio.gz)
#
# Builds a busybox-static initramfs: /bin/busybox with all applet links, /dev (console,
# null), /proc, /sys, /tmp, /run, /root, /etc/udhcpc/default.script (sets address, routes
# and /etc/resolv.conf), the modules and `busybox depmod` data. Modules stay as Debian ships
# them (.ko); compressed ones (.ko.xz/.zst/.gz) are stored decompressed. Output is
# byte-for-byte reproducible (fixed mtimes, sorted, GNU cpio --reproducible, gzip -n;
# SOURCE_DATE_EPOCH sets the mtime, default 0) and written atomically. Prints the output path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

kdir='' init='' out=$VFPGA_CACHE/initramfs/initramfs.cpio.gz
mods=() files=()
while [ $# -gt 0 ]; do
	case $1 in
	--kernel-dir | --modules | --file | --init | --out)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--kernel-dir) kdir=$2 ;;
		--modules) read -r -a m <<<"$2" && mods+=("${m[@]}") ;;
		--file) files+=("$2") ;;
		--init) init=$2 ;;
		--out) out=$2 ;;
		esac
		shift 2
		;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done

kver='' kmods=''
if [ -n "$kdir" ]; then
	[ -d "$kdir/lib/modules" ] || die "--kernel-dir $kdir has no lib/modules (use the directory fetch-kernel.sh prints)"
	# shellcheck disable=SC2012 # plain directory names
	[ "$(ls "$kdir/lib/modules" | wc -l)" = 1 ] || die "expected one kernel version in $kdir/lib/modules"
	kver=$(ls "$kdir/lib/modules")
	kmods=$kdir/lib/modules/$kver
elif [ ${#mods[@]} -gt 0 ]; then
	die "--modules needs --kernel-dir"
fi
[ -z "$init" ] || [ -f "$init" ] || die "--init $init: no such file"
umask 022
export LC_ALL=C

# --- busybox-static, extracted once into the cache -------------------------------------
bb_dir() {
	local deb name dir
	apt_download "$VFPGA_CACHE/debs" busybox-static
	deb=$(compgen -G "$VFPGA_CACHE/debs/busybox-static_*.deb" | sort -V | tail -n1)
	name=$(basename "$deb" .deb)
	dir=$VFPGA_CACHE/busybox/$name
	if [ ! -f "$dir/.ready" ]; then
		rm -rf "$dir.tmp.$$"
		mkdir -p "$dir.tmp.$$"
		dpkg -x "$deb" "$dir.tmp.$$" || die "cannot unpack $deb"
		"$dir.tmp.$$/bin/busybox" true || die "the busybox from $deb does not run here"
		touch "$dir.tmp.$$/.ready"
		[ -f "$dir/.ready" ] || rm -rf "$dir"
		mv -T "$dir.tmp.$$" "$dir" 2>/dev/null || rm -rf "$dir.tmp.$$" # lost a race: fine
	fi
	echo "$dir"
}
bbdir=$(bb_dir)
busybox=$bbdir/bin/busybox
if ! command -v cpio >/dev/null || ! command -v gzip >/dev/null; then apt_install cpio gzip; fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/vfpga-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
r=$stage/root
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,mnt,etc/udhcpc,lib/modules}
chmod 1777 "$r/tmp"
cp "$busybox" "$r/bin/busybox"
# The equivalent of `busybox --install -s`, done at build time.
"$busybox" --list-full | while read -r app; do
	[ "$app" = bin/busybox ] || ln -s /bin/busybox "$r/$app"
done
# Nodes the kernel wants before /init can mount devtmpfs (it also has built-in ones).
if ! { mknod -m 600 "$r/dev/console" c 5 1 && mknod -m 666 "$r/dev/null" c 1 3; } 2>/dev/null; then
	log "cannot create device nodes here; relying on the kernel's built-in /dev/console"
fi

cat >"$r/etc/udhcpc/default.script" <<'EOF'
#!/bin/sh
# udhcpc event script: sets the interface address, default route(s) and /etc/resolv.conf.
case $1 in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set dev "$interface" up
	;;
bound | renew)
	if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/${mask:-24} "; then
		ip -4 addr flush dev "$interface"
		ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
	fi
	[ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
	if [ -n "$router" ]; then
		while ip -4 route del default dev "$interface" 2>/dev/null; do :; done
		metric=0
		for r in $router; do
			ip route add default via "$r" dev "$interface" metric "$metric"
			metric=$((metric + 1))
		done
	fi
	{
		[ -n "$search$domain" ] && echo "search ${search:-$domain}"
		for d in $dns; do echo "nameserver $d"; done
	} >/etc/resolv.conf.$$ && mv /etc/resolv.conf.$$ /etc/resolv.conf
	echo "udhcpc: $interface $ip/${mask:-24} via ${router:-none} dns ${dns:-none}"
	;;
leasefail | nak)
	echo "udhcpc: $1 on $interface${message:+: $message}" >&2
	;;
esac
exit 0
EOF
chmod 755 "$r/etc/udhcpc/default.script"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
printf 'root:x:0:\n' >"$r/etc/group"
printf '127.0.0.1 localhost\n' >"$r/etc/hosts"

if [ -n "$init" ]; then
	head -c2 "$init" | grep -q '^#!' || log "warning: $init has no #! line; the kernel may not run it"
	cp "$init" "$r/init"
else
	cat >"$r/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "vfpga initramfs: $(uname -r); poweroff -f to leave"
exec setsid cttyhack sh -l
EOF
fi
chmod 755 "$r/init"

# --- extra files ------------------------------------------------------------------------
decompress() { # decompress SRC DEST: stores a module as a plain .ko
	case $1 in
	*.ko) cp "$1" "$2" ;;
	*.ko.xz) command -v xz >/dev/null || apt_install xz-utils; xz -dc "$1" >"$2" ;;
	*.ko.zst) command -v zstd >/dev/null || apt_install zstd; zstd -qdc "$1" >"$2" ;;
	*.ko.gz) gzip -dc "$1" >"$2" ;;
	*) die "unknown module format: $1" ;;
	esac
}
for spec in "${files[@]}"; do
	case $spec in *:*) ;; *) die "--file $spec: expected SRC:DEST" ;; esac
	src=${spec%%:*} dst=${spec#*:}
	[ -e "$src" ] || die "--file $spec: $src does not exist"
	case $dst in *@KVER@*) [ -n "$kver" ] || die "--file $spec: @KVER@ needs --kernel-dir" ;; esac
	dst=${dst//@KVER@/$kver}
	dst=/${dst#/}
	case $dst in */) dst=$dst${src##*/} ;; esac
	mkdir -p "$r$(dirname "$dst")"
	rm -rf "${r:?}$dst"
	cp -R --preserve=mode "$src" "$r$dst"
	case $dst in *.ko.xz | *.ko.zst | *.ko.gz)
		decompress "$r$dst" "$r${dst%.ko*}.ko" && rm "$r$dst" ;;
	esac
done

# --- kernel modules ---------------------------------------------------------------------
modinfo_depends() { tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n1 | tr , ' '; }
if [ -n "$kver" ]; then
	declare -A path=() want=()
	queue=()
	for m in "${mods[@]}"; do queue+=("${m//-/_}"); done
	# Modules added with --file (say an out-of-tree one under extra/) are present already;
	# their dependencies are pulled in like those of --modules.
	while IFS= read -r f; do
		b=${f##*/}
		b=${b%.ko}
		want[${b//-/_}]=$f
		for d in $(modinfo_depends "$f"); do queue+=("${d//-/_}"); done
	done < <(find "$r/lib/modules" -name '*.ko' | sort)
	if [ ${#queue[@]} -gt 0 ]; then
		while IFS= read -r f; do
			b=${f##*/}
			b=${b%%.ko*}
			path[${b//-/_}]=$f
		done < <(cd "$kmods" && find kernel updates extra -name '*.ko' -o -name '*.ko.[xgz]*' 2>/dev/null)
		[ ${#path[@]} -gt 0 ] || die "no modules found under $kmods"
	fi
	while [ ${#queue[@]} -gt 0 ]; do
		m=${queue[0]}
		queue=("${queue[@]:1}")
		[ -n "${want[$m]:-}" ] && continue
		if [ -z "${path[$m]:-}" ]; then
			if tr - _ <"$kmods/modules.builtin" | grep -q "/${m}\.ko"; then
				log "module $m is built into $kver; skipping it"
				want[$m]=builtin
				continue
			fi
			die "module $m not found in $kmods"
		fi
		f=${path[$m]}
		dst=$r/lib/modules/$kver/${f%.ko*}.ko
		want[$m]=$dst
		mkdir -p "${dst%/*}"
		decompress "$kmods/$f" "$dst"
		for d in $(modinfo_depends "$dst"); do queue+=("${d//-/_}"); done
	done
	[ ${#want[@]} -eq 0 ] ||
		log "modules: $(for m in "${!want[@]}"; do [ "${want[$m]}" = builtin ] || echo "$m"; done | sort | tr '\n' ' ')"
fi

if [ -n "$kver" ] && [ -d "$r/lib/modules/$kver" ]; then
	for f in modules.builtin modules.builtin.modinfo modules.order; do
		[ -f "$kmods/$f" ] && cp "$kmods/$f" "$r/lib/modules/$kver/"
	done
	"$busybox" depmod -b "$r" "$kver" || die "busybox depmod failed"
fi

# --- archive ----------------------------------------------------------------------------
find "$r" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
mkdir -p "$(dirname "$out")"
tmpout=$out.tmp.$$
trap 'rm -rf "$stage" "$tmpout"' EXIT
(cd "$r" && find . -mindepth 1 -printf '%P\0' | sort -z |
	cpio --null --create --format=newc --reproducible --owner=0:0 --quiet) |
	gzip -n -6 >"$tmpout"
mv "$tmpout" "$out"
log "initramfs $out: $(du -k "$out" | cut -f1) KiB"
echo "$out"
