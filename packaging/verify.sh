#!/usr/bin/env bash
# Usage: packaging/verify.sh VFPGAD [AGENT]
# Checks the packaging against built binaries: the example configuration passes
# `vfpgad --check`, and systemd accepts each unit (`systemd-analyze verify`, with
# ExecStart pointing at the binary and the example configuration) and rates its sandbox
# (`systemd-analyze security --offline`, which fails above the exposure threshold 3.0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$here/../scripts/lib.sh"
case $# in 1 | 2) ;; *) die "usage: packaging/verify.sh VFPGAD [AGENT]" ;; esac
bin=$(realpath "$1")
[ -x "$bin" ] || die "$1: not an executable"
"$bin" --config "$here/vfpgad.toml" --check >/dev/null
command -v systemd-analyze >/dev/null || apt_install systemd
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check_unit() { # UNIT: verify and rate the unit prepared in $tmp
	systemd-analyze verify "$tmp/$1"
	systemd-analyze security --offline=yes --threshold=30 "$tmp/$1" | tail -n 1
}
for unit in vfpgad.service vfpgad-dom0.service; do
	sed -e "s#/usr/bin/vfpgad#$bin#g" -e "s#/etc/vfpga/vfpgad.toml#$here/vfpgad.toml#g" \
		"$here/systemd/$unit" >"$tmp/$unit"
	check_unit "$unit"
done
if [ $# -eq 2 ]; then
	agent=$(realpath "$2")
	[ -x "$agent" ] || die "$2: not an executable"
	sed -e "s#/usr/bin/vfpga-agent#$agent#g" "$here/systemd/vfpga-agent.service" >"$tmp/vfpga-agent.service"
	check_unit vfpga-agent.service
fi
