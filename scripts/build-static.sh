#!/usr/bin/env bash
# Usage: scripts/build-static.sh PACKAGE...
#   PACKAGE   a workspace package with binaries, e.g. vfpga (the CLI) or vfpga-xen
#
# Builds the binaries of the given packages as static executables (glibc, crt-static)
# for guest images, whose minimal initramfs has no shared libraries, and prints the path
# of each executable, one per line. Uses its own target folder (target/guest) so the
# static flags do not rebuild the rest of the workspace. Cargo's output goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

case ${1:-} in
'' | -h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	[ $# -gt 0 ] || exit 2
	exit 0
	;;
esac
pkgs=()
for p in "$@"; do pkgs+=(-p "$p"); done
# Cargo reports every executable it built or found fresh in its JSON messages.
out=$(CARGO_TARGET_DIR=target/guest RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release --locked --target x86_64-unknown-linux-gnu \
	--message-format=json-render-diagnostics "${pkgs[@]}") || die "cargo build failed for $*"
exes=$(printf '%s\n' "$out" | grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//;s/"$//' | sort -u)
[ -n "$exes" ] || die "no executables built for $*"
printf '%s\n' "$exes"
