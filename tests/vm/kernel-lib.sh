# shellcheck shell=bash
# The guest kernel as QEMU and Xen boot it fastest, shared by tests/vm/build-guest.sh
# and tests/xen/build-xen.sh (same cache file: whichever runs first extracts it).

# extract_vmlinux BZIMAGE OUT: the ELF kernel inside an x86 bzImage. The compressed
# payload is located by the boot protocol header (2.08+): payload_offset/payload_length
# at 0x248/0x24c, counted from the protected-mode code at (setup_sects + 1) * 512
# (setup_sects at 0x1f1; 0 means 4).
extract_vmlinux() {
	local img=$1 dst=$2 ss off len tmp
	ss=$(od -An -tu1 -j $((0x1f1)) -N1 "$img" | tr -d ' ')
	[ "$ss" != 0 ] || ss=4
	read -r off len < <(od -An -tu4 -j $((0x248)) -N8 "$img")
	[ -n "$len" ] && [ "$len" -gt 0 ] || return 1
	tmp=$dst.tmp.$$
	# A decompressor may complain about the 4-byte size the kernel appends after the
	# stream; the ELF check below decides.
	tail -c +$(((ss + 1) * 512 + off + 1)) "$img" | head -c "$len" >"$tmp.z"
	case $(od -An -tx1 -N6 "$tmp.z" | tr -d ' \n') in
	fd377a585a00*) xz -dc --single-stream "$tmp.z" >"$tmp" 2>/dev/null || true ;;
	1f8b*) gzip -dc "$tmp.z" >"$tmp" 2>/dev/null || true ;;
	28b52ffd*) zstd -qdc "$tmp.z" >"$tmp" 2>/dev/null || true ;;
	5d0000*) xz -dc --format=lzma "$tmp.z" >"$tmp" 2>/dev/null || true ;;
	*) rm -f "$tmp.z" && return 1 ;;
	esac
	rm -f "$tmp.z"
	if [ "$(od -An -tx1 -N4 "$tmp" 2>/dev/null | tr -d ' \n')" != 7f454c46 ]; then
		rm -f "$tmp"
		return 1
	fi
	mv "$tmp" "$dst"
}

# boot_kernel KDIR KVER: prints the kernel to boot: KDIR/boot/vmlinux-KVER, extracted
# from the bzImage once (an uncompressed kernel skips seconds of decompression under
# TCG), or the bzImage itself if that fails.
boot_kernel() {
	local vmlinuz=$1/boot/vmlinuz-$2 kernel=$1/boot/vmlinux-$2
	if [ ! -s "$kernel" ] || [ "$kernel" -ot "$vmlinuz" ]; then
		log "extracting vmlinux from $(basename "$vmlinuz") (once)"
		if ! extract_vmlinux "$vmlinuz" "$kernel"; then
			log "warning: cannot extract vmlinux from $vmlinuz; booting the bzImage (slower)"
			kernel=$vmlinuz
		fi
	fi
	echo "$kernel"
}
