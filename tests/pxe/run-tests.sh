#!/usr/bin/env bash
# Usage: tests/pxe/run-tests.sh [--timeout SECS] [-- CARGO TEST FILTERS...]
#   --timeout SECS   stop the tests after SECS seconds (default 1800)
#   -- FILTERS       passed to the test binary, e.g. `-- tftp_boot` for one test
#
# The network-boot tests in one command (run as root): installs what they need (Debian
# packages nfs-ganesha, nfs-ganesha-vfs, rpcbind, dnsmasq-base, iproute2, cpio), builds
# vfpgad and vfpga-pxe (release), the static vfpga CLI, the QEMU 11 root and the guest
# kernel module, then runs tests/vm/tests/pxe.rs under `timeout`: QEMU (TCG) boots
# through iPXE over TFTP and over HTTP, and the generated Xen entry, each time with the
# root file system from nfs-ganesha and a vfpga kernel run against vfpgad; plus
# `dnsmasq --test` on the generated snippets. Every server runs in a network namespace
# of the test's own (tests/pxe/netns-servers.sh) and is stopped by PID; the tests check
# that nothing is left running. Exits with the tests' status (124: timed out).
# Environment: VFPGA_CACHE, VFPGA_QEMU_ROOT, VFPGA_KERNEL.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=SCRIPTDIR/../../scripts/lib.sh
. "$repo/scripts/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

limit=1800 filters=()
while [ $# -gt 0 ]; do
	case $1 in
	--timeout)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		limit=$2
		shift 2
		;;
	--) shift && filters=("$@") && break ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
case $limit in '' | *[!0-9]* | 0) die "--timeout $limit: expected a positive number of seconds" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (network namespaces, NFS server, guest root file system)"
cd "$repo"

apt_install nfs-ganesha nfs-ganesha-vfs rpcbind dnsmasq-base iproute2 cpio
log "building vfpgad, vfpga-pxe, the static vfpga CLI, the QEMU root, the guest module"
cargo build --release --locked -p vfpgad -p vfpga-pxe
cli=$(scripts/build-guest-cli.sh)
tests/vm/build-qemu-root.sh >/dev/null
tests/vm/build-guest.sh --bin "$cli:/bin/vfpga" >/dev/null
# The test binary itself runs under timeout (not cargo, which would not pass the signal
# on): its vfpgad and run-guest.sh children get SIGTERM when it dies (PR_SET_PDEATHSIG,
# tests/vm/src/lib.rs), and the servers stop when their stdin closes.
bin=$(cargo test --locked -p vfpga-vm-tests --test pxe --no-run 2>&1 |
	sed -n 's/.*Executable tests\/pxe.rs (\(.*\))$/\1/p' | tail -n1)
case $bin in /*) ;; *) bin=$repo/$bin ;; esac
[ -x "$bin" ] || die "cannot find the test binary of tests/vm/tests/pxe.rs"
log "network-boot tests (timeout $limit s)"
t0=$SECONDS
rc=0
(cd tests/vm && VFPGA_CLI=$cli timeout -k 30 "$limit" "$bin" --ignored --test-threads=1 --nocapture "${filters[@]}") || rc=$?
[ "$rc" != 124 ] || log "error: the tests did not finish within $limit s"
log "network-boot tests: status $rc after $((SECONDS - t0)) s"
exit "$rc"
