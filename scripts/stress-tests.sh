#!/usr/bin/env bash
# Usage: scripts/stress-tests.sh [--debug N] [--release N] [--vm N] [--load K] [--report FILE]
#   --debug N     runs of `cargo test --workspace` in the debug profile (default 20)
#   --release N   runs in the release profile (default 5)
#   --vm N        runs of the VM tests (`-p vfpga-vm-tests -- --ignored`) (default 0)
#   --load K      busy loops kept running on the side (default: one per CPU)
#   --report FILE where the tally goes (default: target/stress/report.txt)
#
# Runs the test suite again and again while busy loops occupy the cores, as a shared CI
# machine can be, and reports every failure with its test name. A verdict that depends
# on the machine's speed, the load or the build profile shows up here long before it
# blocks a landing at random. Each run's full output is kept under target/stress/.
# Exits 1 if any run failed. Needs what scripts/test-all.sh installs (run it once).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
debug=20 release=5 vm=0 load=$(nproc) report=target/stress/report.txt
while [ $# -gt 0 ]; do
	case $1 in
	--debug | --release | --vm | --load | --report)
		[ $# -ge 2 ] || die "$1 needs a value (see --help)"
		case $1 in
		--debug) debug=$2 ;;
		--release) release=$2 ;;
		--vm) vm=$2 ;;
		--load) load=$2 ;;
		--report) report=$2 ;;
		esac
		shift 2
		;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
for v in "$debug" "$release" "$vm" "$load"; do
	case $v in '' | *[!0-9]*) die "counts must be whole numbers (see --help)" ;; esac
done

out=$(dirname "$report")
mkdir -p "$out"
: >"$report"
busy=()
cleanup() {
	for p in "${busy[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Build first, without load: the runs then time the tests, not the compiler.
log "building the tests"
cargo test --workspace --locked --no-run >/dev/null 2>&1 || die "the tests do not build"
[ "$release" = 0 ] || cargo test --workspace --locked --release --no-run >/dev/null 2>&1 ||
	die "the tests do not build in release"
if [ "$vm" != 0 ]; then
	cargo build --release --locked -p vfpgad -p vfpga-vhu-frontend -p vfpga-xen -p vfpga-pxe >/dev/null 2>&1 ||
		die "the daemons do not build"
	cli=$(scripts/build-guest-cli.sh)
	xen=$(scripts/build-static.sh vfpga-xen)
	tests/vm/build-qemu-root.sh >/dev/null
fi

for _ in $(seq "$load"); do
	sh -c 'while :; do :; done' &
	busy+=($!)
done
log "${#busy[@]} busy loops running"

failed=0 runs=0
# one KIND I CMD...: one run; failures (test names) go to the report.
one() {
	local kind=$1 i=$2 rc=0
	shift 2
	local f="$out/$kind-$i.log"
	local t0=$SECONDS
	"$@" >"$f" 2>&1 || rc=$?
	runs=$((runs + 1))
	if [ "$rc" = 0 ]; then
		log "$kind run $i: ok ($((SECONDS - t0)) s)"
		return
	fi
	failed=$((failed + 1))
	local names
	names=$(grep -aE '^test .* \.\.\. FAILED$' "$f" | sed 's/^test \(.*\) \.\.\. FAILED$/\1/' | tr '\n' ' ')
	log "$kind run $i: FAILED (rc $rc): ${names:-no test name; see $f}"
	echo "$kind run $i: rc $rc: ${names:-see $f}" >>"$report"
}
for i in $(seq "$debug"); do one debug "$i" cargo test --workspace --locked; done
for i in $(seq "$release"); do one release "$i" cargo test --workspace --locked --release; done
for i in $(seq "$vm"); do
	one vm "$i" env VFPGA_CLI="$cli" VFPGA_XEN="$xen" cargo test --locked -p vfpga-vm-tests -- --ignored
done
echo "$runs runs ($debug debug, $release release, $vm VM) beside ${#busy[@]} busy loops: $failed failed" |
	tee -a "$report"
[ "$failed" = 0 ]
