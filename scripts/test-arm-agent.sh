#!/usr/bin/env bash
# Usage: scripts/test-arm-agent.sh [-- CARGO TEST FILTERS...]
#
# The board agent as a PYNQ-Z1 runs it: cross-builds vfpga-agent for armv7 (32-bit,
# hard float; the recipe of docs/remote.md) and runs the remote-path tests
# (backend/agent/tests/remote.rs) with that binary under qemu-arm user emulation,
# behind an x86_64 vfpgad: bit-exact kernels, killed and stalled links, certificates,
# upload, the pl engine against the register-level model, SIGTERM.
#
# Installs what it needs: the armv7 Rust standard library (rustup), Debian's
# gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross and qemu-user-static.
# Exits 0 when the tests pass, 1 when they fail, and 77 (with a message) when the
# armv7 standard library cannot be installed: rustup's downloads are not Debian's, and
# a machine without them cannot cross-build at all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
cd "$here/.."

case ${1:-} in
-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" && exit 0 ;;
--) shift ;;
'') ;;
*) die "unknown argument: $1 (see --help)" ;;
esac

target=armv7-unknown-linux-gnueabihf
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
	log "installing the $target standard library (rustup)"
	if ! timeout 300 rustup target add "$target" >&2; then
		log "cannot install the $target standard library: the armv7 agent is not tested on this machine"
		exit 77
	fi
fi
apt_install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static

export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
log "cross-building vfpga-agent for $target"
cargo build --release --locked --target "$target" -p vfpga-agent
agent=$PWD/target/$target/release/vfpga-agent
file "$agent" 2>/dev/null | grep -q 'ELF 32-bit LSB.*ARM' || die "$agent is not a 32-bit ARM binary"
runner="qemu-arm-static -L /usr/arm-linux-gnueabihf"
log "$($runner "$agent" --version) runs under qemu-arm; the remote-path tests against it"
VFPGA_AGENT=$agent VFPGA_AGENT_RUNNER=$runner \
	timeout 1200 cargo test --locked -p vfpga-agent --test remote -- "$@"
