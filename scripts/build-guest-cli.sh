#!/usr/bin/env bash
# Builds the `vfpga` CLI as a static binary for guest images (a minimal initramfs has no
# shared libraries) and prints its path. Uses its own target folder so the static flags
# do not rebuild the rest of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/guest RUSTFLAGS="-C target-feature=+crt-static" \
	cargo build --release --locked --target x86_64-unknown-linux-gnu -p vfpga >&2
echo "$PWD/target/guest/x86_64-unknown-linux-gnu/release/vfpga"
