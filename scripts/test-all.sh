#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, licences, unit and protocol tests
# against the real daemon. Installs what it needs first (see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

scripts/setup.sh

log "formatting"
cargo fmt --all -- --check
log "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "licences, bans, sources"
cargo deny --locked check licenses bans sources
log "shell scripts"
shellcheck -x scripts/*.sh tests/vm/*.sh tests/vm/qemu-system tests/vm/guest/init tests/vm/guest/scenarios/*.sh
log "unit and protocol tests"
cargo test --workspace --locked
log "all tests passed"
