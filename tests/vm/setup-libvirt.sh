#!/usr/bin/env bash
# Usage: tests/vm/setup-libvirt.sh
#
# Installs what the libvirt VM test (tests/vm/tests/libvirt.rs) needs and nothing the
# main job needs: Debian's libvirt daemon and virsh (libvirt-daemon-system,
# libvirt-clients; without recommends, so no QEMU of Debian's: the test's domain runs
# the QEMU 11 root of tests/vm/build-qemu-root.sh). Idempotent; scripts/setup-tests.sh
# (the test command's installs) calls it. The test starts its own libvirtd (tests/vm/libvirtd.sh),
# never the system service the package installs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

case ${1:-} in -h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
esac
[ "$(id -u)" = 0 ] || die "run as root (installs Debian packages)"
# Installing would start the system libvirtd, and with it the default network (a bridge
# and dnsmasq on the host), where package services may start: deny them for the install
# unless a policy does already (the test machines have one).
if [ ! -e /usr/sbin/policy-rc.d ] &&
	! dpkg-query -W -f='${Status}' libvirt-daemon-system 2>/dev/null | grep -q 'install ok installed'; then
	printf '#!/bin/sh\n# tests/vm/setup-libvirt.sh: no service starts during its install\nexit 101\n' \
		>/usr/sbin/policy-rc.d
	chmod 0755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt_install libvirt-daemon-system libvirt-clients
# The tests run a private libvirtd: the package's default network must not come up
# with a system libvirtd at the next boot (a bridge and dnsmasq on the host).
rm -f /etc/libvirt/qemu/networks/autostart/default.xml
