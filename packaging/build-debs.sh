#!/usr/bin/env bash
# Usage: packaging/build-debs.sh [OUT]
#
# Builds vfpga's Debian packages into OUT (default: target/debian) and prints their paths:
#   vfpgad       the daemon, its systemd units (installed, not enabled), the example
#                /etc/vfpga/vfpgad.toml (a conffile)
#   vfpga-agent  the board agent and its unit
#   vfpga        the guest's command
#   vfpga-xen    Xen guest configuration and PCI passthrough helpers
#   vfpga-pxe    the network boot tree generator
#   vfpga-dkms   the guest kernel module's sources for DKMS, and its udev rule
# each with its man pages and bash, zsh and fish completions, which vfpga-docgen writes
# first into target/docgen from the commands' own definitions. The five programs are
# packaged by cargo-deb (`cargo deb -p NAME`, metadata in each Cargo.toml) from one
# release build of them all; their debug line tables go into NAME-dbgsym_*.ddeb beside.
# Needs cargo-deb and dpkg-dev (scripts/setup-tests.sh installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$top/scripts/lib.sh"

case ${1:-} in
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
esac
out=${1:-$top/target/debian}
cargo deb --version >/dev/null 2>&1 || die "cargo-deb not found: run scripts/setup-tests.sh (or cargo install --locked cargo-deb)"
command -v dpkg-shlibdeps >/dev/null || die "dpkg-shlibdeps not found: apt-get install dpkg-dev"

cd "$top"
# The packages' assets name target/docgen relative to the workspace, whatever
# CARGO_TARGET_DIR says.
rm -rf target/docgen
cargo run --locked --quiet -p vfpga-docgen -- target/docgen
pkgs=(vfpgad vfpga-agent vfpga vfpga-xen vfpga-pxe)
# One build for the five (`cargo deb -p` alone would build each with its own features,
# rebuilding shared dependencies five times).
cargo build --release --locked "${pkgs[@]/#/-p}"
mkdir -p "$out"
for p in "${pkgs[@]}"; do
	cargo deb --locked --no-build --quiet -p "$p" -o "$out" >/dev/null || die "cargo deb -p $p failed"
	deb=$(compgen -G "$out/${p}_*.deb" | sort -V | tail -n1)
	[ -n "$deb" ] || die "cargo deb -p $p made no $out/${p}_*.deb"
	echo "$deb"
done
packaging/dkms/build-deb.sh "$out"
