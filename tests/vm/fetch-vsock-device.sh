#!/usr/bin/env bash
# Usage: tests/vm/fetch-vsock-device.sh
#
# Installs rust-vmm's vhost-device-vsock (a userspace vhost-user vsock device, from
# the crate registry cargo is configured for) once into
# $VFPGA_CACHE/vhost-device-vsock and prints the binary's path.
# These machines have no /dev/vhost-vsock: a QEMU guest's vsock is this device, whose
# host end is a unix socket per port (`uds-path` + `_PORT`), the shape Firecracker's
# and Cloud Hypervisor's vsock have too. About two minutes the first time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$here/../../scripts/lib.sh"

version=0.3.0
root=$VFPGA_CACHE/vhost-device-vsock
bin=$root/bin/vhost-device-vsock
if [ ! -x "$bin" ] || [ "$(cat "$root/.version" 2>/dev/null)" != "$version" ]; then
	log "installing vhost-device-vsock $version with cargo install (about 2 min, once)"
	cargo install --locked --quiet --root "$root" vhost-device-vsock --version "$version" >&2 ||
		die "cargo install vhost-device-vsock $version failed"
	echo "$version" >"$root/.version"
fi
echo "$bin"
