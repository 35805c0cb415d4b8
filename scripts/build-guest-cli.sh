#!/usr/bin/env bash
# Builds the `vfpga` CLI as a static binary for guest images (a minimal initramfs has no
# shared libraries) and prints its path. Uses its own target folder so the static flags
# do not rebuild the rest of the workspace (see scripts/build-static.sh).
set -euo pipefail
exec "$(dirname "$0")/build-static.sh" vfpga
