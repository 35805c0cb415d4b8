#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, licences, unit and protocol tests
# against the real daemon. Installs what it needs first (see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

scripts/setup.sh
scripts/setup-tests.sh

log "formatting"
cargo fmt --all -- --check
log "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "API documentation (a broken intra-doc link fails: [workspace.lints.rustdoc])"
cargo doc --workspace --no-deps --locked --quiet
log "licences, bans, sources"
cargo deny --locked check licenses bans sources
log "shell scripts"
shellcheck -x scripts/*.sh clients/python/test.sh clients/python/tests/guest/runtime.sh tests/vm/*.sh tests/vm/qemu-system tests/vm/guest/init tests/vm/guest/scenarios/*.sh \
	guest-driver/kmod/*.sh packaging/*.sh packaging/dkms/*.sh packaging/dkms/postinst packaging/dkms/prerm \
	packaging/dkms/postrm packaging/deb/*/postrm tests/xen/*.sh tests/xen/dom0/init tests/xen/dom0/vif tests/xen/domu/init tests/xen/domu/*.sh tests/xen/scenarios/*.sh \
	tests/vm/guest/pci/*.sh tests/pxe/*.sh tests/pxe/guest-root/init tests/pxe/guest-root/scenarios/*.sh \
	ipxe/assets/init ipxe/assets/udhcpc.script
log "benchmark plots: redrawn from docs/bench/*.csv as checked in, one series per row group"
python3 scripts/test-plots.py
log "docs/benchmarks.md's generated section: what scripts/bench.sh --render-only makes of docs/bench/one-boot.csv"
python3 scripts/bench-table.py render --check
log "unit and protocol tests"
cargo test --workspace --locked
log "the board agent built for armv7 (PYNQ-Z1), under qemu-arm, behind vfpgad"
rc=0
scripts/test-arm-agent.sh || rc=$?
case $rc in
0) ;;
77) log "SKIPPED: the armv7 agent (no armv7 Rust standard library on this machine)" ;;
*) die "the armv7 agent tests failed" ;;
esac
log "the Python client against the real vfpgad and vfpga-agent (and under Python 3.8 if present)"
clients/python/test.sh
log "guest kernel module: checkpatch --strict"
guest-driver/kmod/checkpatch.sh
log "VM tests: guests under QEMU against vfpgad (virtio and vsock), under libvirtd, Xen dom0, IOMMU/SR-IOV, network boot"
cargo build --release --locked -p vfpgad -p vfpga -p vfpga-agent -p vfpga-vhu-frontend -p vfpga-xen -p vfpga-pxe
log "packaging: example config and systemd units"
packaging/verify.sh target/release/vfpgad target/release/vfpga-agent
log "packages: .debs (cargo-deb, DKMS) installed, checked and purged in a throwaway Debian root"
packaging/test-debs.sh
log "docs: every example of README.md and docs/ runs as shown (or says why it cannot here)"
scripts/test-docs.sh
cli=$(scripts/build-guest-cli.sh)
xen=$(scripts/build-static.sh vfpga-xen)
tests/vm/build-qemu-root.sh >/dev/null
vsock=$(tests/vm/fetch-vsock-device.sh)
VFPGA_CLI=$cli VFPGA_XEN=$xen VFPGA_VSOCK_DEVICE=$vsock cargo test --locked -p vfpga-vm-tests -- --ignored
log "all tests passed"
