#!/bin/sh
# Scenario `smoke` (busybox sh in dom0, run by tests/xen/dom0/init): the Xen toolstack
# works in dom0.
# - xenstored answers over its unix socket /run/xenstored/socket (XENSTORED_PATH forces
#   libxenstore onto it) and over /dev/xen/xenbus, and xenstore-ls shows Domain-0's
#   entries (/local/domain/0/name = "Domain-0");
# - `xl info` reports the hypervisor (xen_major 4, xen_minor 17, virt_caps with pv);
# - `xl list` shows Domain-0 with ID 0.
# Exits non-zero at the first failed check.
#   tests/xen/run-xen.sh --scenario smoke
set -eu
# shellcheck disable=SC3040 # busybox sh has pipefail
set -o pipefail

fail() {
	echo "smoke: FAIL: $*"
	exit 1
}

sock=/run/xenstored/socket
[ -S "$sock" ] || fail "no xenstored socket $sock"
ls -l "$sock"
echo '--- xenstore-ls'
out=$(XENSTORED_PATH=$sock xenstore-ls) || fail "xenstore-ls over $sock failed"
echo "$out"
echo "$out" | grep -q '^   name = "Domain-0"' || fail "xenstore-ls shows no /local/domain/0/name = Domain-0"
name=$(XENSTORED_PATH=/dev/xen/xenbus xenstore-read /local/domain/0/name) ||
	fail "xenstore-read over /dev/xen/xenbus failed"
[ "$name" = Domain-0 ] || fail "/local/domain/0/name is '$name' over /dev/xen/xenbus"

echo '--- xl info'
info=$(xl info) || fail "xl info failed"
echo "$info"
field() { echo "$info" | sed -n "s/^$1 *: //p"; }
ver=$(field xen_major).$(field xen_minor)
[ "$ver" = 4.17 ] || fail "xl info: xen $ver, expected 4.17"
field virt_caps | grep -qw pv || fail "xl info: virt_caps '$(field virt_caps)' lacks pv"

echo '--- xl list'
list=$(xl list) || fail "xl list failed"
echo "$list"
echo "$list" | grep -Eq '^Domain-0 +0 ' || fail "xl list shows no Domain-0 with ID 0"
echo "smoke: OK: Xen $(field xen_version), $(field nr_cpus) CPUs, $(field free_memory) MB free"
