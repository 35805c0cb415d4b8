#!/usr/bin/env bash
# Usage: scripts/fuzz.sh [--runs N] [--jobs J] [TARGET...]
#   --runs N   executions per target (default 10000000)
#   --jobs J   parallel fuzzing processes per target (default 1)
#   TARGET     chain, stream, manifest, config, xen_guest, pxe (default: all)
#
# A fuzzing campaign with cargo-fuzz (libFuzzer, on the nightly toolchain rustup
# installs) over every input a guest, a peer or a file controls: virtqueue chains, the
# stream protocol (vfpgad's listeners and the board agent share its loop), bitstream
# manifests, vfpgad's configuration, vfpga-xen and vfpga-pxe descriptions. The targets
# are functions of tests/fuzz-targets. New inputs that reach new code go to
# fuzz/corpus/TARGET/ when they add coverage (libFuzzer's -merge, so the corpus stays
# small);
# a crash goes to fuzz/artifacts/TARGET/ and fails the script. Commit the corpora: the
# test suite replays them on stable (tests/fuzz-targets/tests/replay.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

runs=10000000 jobs=1 targets=()
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=${2:?--runs needs a number} && shift 2 ;;
	--jobs) jobs=${2:?--jobs needs a number} && shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" && exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) targets+=("$1") && shift ;;
	esac
done
[ ${#targets[@]} -gt 0 ] || targets=(chain stream manifest config xen_guest pxe vhost_user)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
mkdir -p target/fuzz
for t in "${targets[@]}"; do
	[ -f "fuzz/fuzz_targets/$t.rs" ] || die "no fuzz target $t"
	log "fuzz $t: $runs executions"
	new=$(mktemp -d)
	t0=$SECONDS
	# New finds go to a scratch corpus first, then merge keeps only what adds coverage.
	(cd fuzz && cargo +nightly fuzz run "$t" "$new" "corpus/$t" -- \
		-runs="$runs" -jobs="$jobs" -workers="$jobs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1) >"target/fuzz/$t.log" 2>&1 || {
		tail -n 40 "target/fuzz/$t.log" >&2
		die "fuzz $t found a crash (fuzz/artifacts/$t/; the log is target/fuzz/$t.log)"
	}
	# Keep of the new finds only those that add coverage to the committed corpus.
	(cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" "$new" -- -merge=1) >>"target/fuzz/$t.log" 2>&1 ||
		die "fuzz $t: merging the new inputs failed (target/fuzz/$t.log)"
	rm -rf "$new"
	execs=$(grep -a 'stat::number_of_executed_units' "target/fuzz/$t.log" | head -n "$jobs" | awk '{s+=$2} END {print s+0}')
	cov=$(grep -ao 'cov: [0-9]*' "target/fuzz/$t.log" | tail -n 1 | awk '{print $2}')
	log "fuzz $t: $execs executions in $((SECONDS - t0)) s, coverage $cov, corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs"
done
