#!/usr/bin/env bash
# Usage: tests/vm/libvirtd.sh DIR [QEMU_TIMEOUT]
#
# Runs Debian's libvirtd (libvirt 9) in the foreground as a private instance for the
# VM tests: its configuration, sockets, state, cache and logs live in DIR, so it never
# meets a system libvirtd or its guests. It runs in a mount namespace of its own where
# DIR/etc, DIR/run, DIR/lib, DIR/cache and DIR/log are bound over /etc/libvirt,
# /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt (the root
# daemon's paths are built in), and in a network namespace of its own, so that no
# libvirt network can touch the host's. QEMU processes it starts share both.
#
# The process is libvirtd itself once started (unshare and this script exec into it):
# stop it with SIGTERM to the PID you started. Clients connect with
#   virsh -c 'qemu:///system?socket=DIR/run/libvirt-sock' ...
# (the socket appears once the daemon accepts). Its log: DIR/log/libvirtd.log; each
# domain's QEMU log: DIR/log/qemu/NAME.log.
#
# QEMU runs as Debian's libvirt makes it run: as the user and group libvirt-qemu
# (qemu.conf's defaults), so what it opens must be open to that user (a vfpgad socket:
# --socket-group libvirt-qemu --socket-mode 0660, in a folder it may enter). Unlike a
# system daemon: no security driver (these machines have no AppArmor), no cgroups (no
# systemd), no chown of the domain's files (dynamic_ownership = 0: make them readable),
# and no KVM: these machines' /dev/kvm is a nested software hypervisor, root's only, and
# libvirt, which probes QEMU as root but checks KVM for libvirt-qemu, would find its
# probe outdated at every lookup and probe again (some 30 s per `virsh define`); domains
# are type 'qemu' (TCG).
#
# The QEMU is the QEMU 11 root of tests/vm/build-qemu-root.sh, bound read-only at
# DIR/qemu-root (the cache under /root is closed to libvirt-qemu), through
# DIR/qemu-system-x86_64, a wrapper that runs it under `timeout QEMU_TIMEOUT` (seconds,
# default 600): give that path as the domain's <emulator>. DIR is made 0755.
#
# Needs root and libvirt-daemon-system (tests/vm/setup-libvirt.sh installs it).
# Environment: VFPGA_CACHE, VFPGA_QEMU_ROOT (see tests/vm/qemu-system).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

case ${1:-} in
-h | --help | '')
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	[ -n "${1:-}" ] && exit 0
	exit 2
	;;
--inside)
	dir=$2 root=$3
	mount --make-rprivate /
	mount --bind -o ro "$root" "$dir/qemu-root"
	# No KVM (see above): an empty file closed to libvirt-qemu stands in for /dev/kvm.
	[ ! -e /dev/kvm ] || mount --bind "$dir/no-kvm" /dev/kvm
	for d in etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt cache:/var/cache/libvirt log:/var/log/libvirt; do
		mkdir -p "${d#*:}"
		mount --bind "$dir/${d%%:*}" "${d#*:}"
	done
	ip link set lo up
	exec libvirtd --config "$dir/etc/libvirtd.conf" --pid-file "$dir/libvirtd.pid"
	;;
esac

[ "$(id -u)" = 0 ] || die "run as root (libvirtd's system instance, mount namespaces)"
command -v libvirtd >/dev/null || die "libvirtd not found: run tests/vm/setup-libvirt.sh"
dir=$(realpath "$1")
[ -d "$dir" ] || die "$dir: not a directory"
limit=${2:-600}
case $limit in '' | *[!0-9]* | 0) die "QEMU_TIMEOUT $limit: expected seconds, > 0" ;; esac
root=${VFPGA_QEMU_ROOT:-$VFPGA_CACHE/qemu-root}
[ -f "$root/.ready" ] || die "no QEMU root at $root: run tests/vm/build-qemu-root.sh first"

case $dir in *\'* | *'"'*) die "$dir: a quote cannot go into the generated files" ;; esac
chmod 0755 "$dir"
install -m 0600 /dev/null "$dir/no-kvm"
mkdir -p "$dir"/{etc/qemu,run,lib,cache,log,qemu-root,bin/tests/vm,bin/scripts}
cat >"$dir/etc/libvirtd.conf" <<EOF
# A private libvirtd for the vfpga VM tests (tests/vm/libvirtd.sh).
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:$dir/log/libvirtd.log"
EOF
cat >"$dir/etc/qemu.conf" <<EOF
# QEMU as user and group libvirt-qemu (the defaults), with what these machines lack off.
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
: >"$dir/etc/libvirt.conf"
# The QEMU wrapper and its helper, where libvirt-qemu may read them (a clone of the
# repository may sit below /root).
install -m 0755 "$here/qemu-system" "$dir/bin/tests/vm/qemu-system"
install -m 0644 "$here/../../scripts/lib.sh" "$dir/bin/scripts/lib.sh"
cat >"$dir/qemu-system-x86_64" <<EOF
#!/bin/sh
# QEMU 11 for the private libvirtd of tests/vm/libvirtd.sh, never for longer than
# $limit s.
VFPGA_QEMU_ROOT='$dir/qemu-root' exec timeout -k 5 $limit '$dir/bin/tests/vm/qemu-system' "\$@"
EOF
chmod 0755 "$dir/qemu-system-x86_64"
exec unshare --mount --net -- "$0" --inside "$dir" "$root"
