#!/usr/bin/env bash
# Usage: scripts/bench-plots.sh [--plot-only]
#   --plot-only   only redraw the plots from the CSV files in docs/bench
#
# Regenerates the benchmark plots of docs/benchmarks.md. First measures, with
# `cargo bench -p vfpgad --bench figures` (release build, in-process vfpgad and
# vfpga-agent, sim engine, no VM; about a minute once built), and writes
# docs/bench/latency.csv, throughput.csv and remote.csv; then draws latency.svg,
# throughput.svg and remote.svg from them (scripts/plot-bench.py) and transports.svg
# from docs/bench/one-boot.csv and transports.csv (scripts/plot-transports.py; those
# figures come from guest boots: scripts/bench.sh measures one-boot.csv, see
# docs/benchmarks.md). The measurement is not part of the test command
# (figures vary from run to run); scripts/test-plots.py, in the test command, checks the
# drawing from the checked-in CSV files.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

plot_only=0
case ${1:-} in
'') ;;
--plot-only) plot_only=1 ;;
-h | --help)
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit 0
	;;
*) die "unknown argument: $1 (see --help)" ;;
esac
if [ "$plot_only" = 0 ]; then
	log "measuring: cargo bench -p vfpgad --bench figures"
	VFPGA_BENCH_OUT=$PWD/docs/bench cargo bench --locked -p vfpgad --bench figures
fi
log "drawing"
python3 scripts/plot-bench.py --csv docs/bench --out docs/bench
python3 scripts/plot-transports.py docs/bench/one-boot.csv docs/bench/transports.csv docs/bench/transports.svg
