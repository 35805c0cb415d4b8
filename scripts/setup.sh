#!/usr/bin/env bash
# Installs what building and testing vfpga needs, idempotently: Debian packages, the
# Rust components and cargo-deny. Safe to rerun; a second run does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || die "run as root (installs Debian packages)"
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain first"

apt_install build-essential pkg-config ca-certificates curl cpio xz-utils \
	debootstrap shellcheck systemd iproute2
# The network-boot tests' servers: NFS root from nfs-ganesha, dnsmasq --test.
apt_install nfs-ganesha nfs-ganesha-vfs rpcbind dnsmasq-base

for c in rustfmt clippy; do
	if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
		log "adding Rust component $c"
		rustup component add "$c"
	fi
done

deny_version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$deny_version"; then
	log "installing cargo-deny $deny_version (a few minutes, once)"
	cargo install --locked cargo-deny --version "$deny_version" >/dev/null
fi
