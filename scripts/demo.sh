#!/usr/bin/env bash
# The main job: starts vfpgad on the embedded software engine, drives it over its
# vhost-user socket with a client that behaves like a guest (lists the kernels, runs
# each on sample data, checks the results), then stops the daemon with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

scripts/setup.sh
log "building vfpgad and the demo client"
cargo build --release --locked -p vfpgad -p vfpga-vhu-frontend
work=$(mktemp -d)
daemon=
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
target/release/vfpgad --socket "demo=$work/demo.sock" &
daemon=$!
for _ in $(seq 100); do [ -S "$work/demo.sock" ] && break; sleep 0.05; done
[ -S "$work/demo.sock" ] || die "vfpgad did not start"
timeout 60 target/release/vfpga-vhu-demo "$work/demo.sock"
kill -TERM "$daemon"
wait "$daemon"
daemon=
log "vfpgad stopped cleanly"
