#!/usr/bin/env bash
# The main job: boots a guest VM (Debian kernel, virtio_vfpga module, vfpga CLI) under
# QEMU with an accelerator served by vfpgad on the embedded software engine; the guest
# shows the device and its kernels, runs some and prints the results. Installs what it
# needs and caches downloads in ~/.cache/vfpga; reruns take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

scripts/setup.sh
log "building vfpgad and the guest CLI"
cargo build --release --locked -p vfpgad
cli=$(scripts/build-guest-cli.sh)
log "preparing QEMU and the guest image (first run: a few minutes)"
tests/vm/build-qemu-root.sh >/dev/null
guest=$(tests/vm/build-guest.sh --bin "$cli:/bin/vfpga")
work=$(mktemp -d)
daemon=
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
target/release/vfpgad --socket "demo=$work/demo.sock" &
daemon=$!
for _ in $(seq 600); do [ -S "$work/demo.sock" ] && break; kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
[ -S "$work/demo.sock" ] || die "vfpgad did not start"
log "booting the guest under QEMU (TCG); its console follows"
set +e
tests/vm/run-guest.sh --scenario demo --guest "$guest" --vfpga "$work/demo.sock" \
	--vq-size 1024 --timeout 180 --log "$work/console.log" |
	sed -n '/^=== /,/^VFPGA-DONE/p' | grep -v '^VFPGA-DONE\|^vfpga-init:'
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || { cat "$work/console.log" >&2; die "the guest scenario failed (rc $rc)"; }
kill -TERM "$daemon"
wait "$daemon"
daemon=
log "guest done; vfpgad stopped cleanly"
