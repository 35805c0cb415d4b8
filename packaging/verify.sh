#!/usr/bin/env bash
# Usage: packaging/verify.sh VFPGAD
# Checks the packaging against a built vfpgad: the example configuration passes
# `vfpgad --check`, and systemd accepts the unit (`systemd-analyze verify`, with
# ExecStart pointing at VFPGAD and the example configuration) and rates its sandbox
# (`systemd-analyze security --offline`, which fails above the exposure threshold 3.0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
. "$here/../scripts/lib.sh"
[ $# -eq 1 ] || die "usage: packaging/verify.sh VFPGAD"
bin=$(realpath "$1")
[ -x "$bin" ] || die "$1: not an executable"
"$bin" --config "$here/vfpgad.toml" --check >/dev/null
command -v systemd-analyze >/dev/null || apt_install systemd
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e "s#/usr/bin/vfpgad#$bin#g" -e "s#/etc/vfpga/vfpgad.toml#$here/vfpgad.toml#g" \
	"$here/systemd/vfpgad.service" >"$tmp/vfpgad.service"
systemd-analyze verify "$tmp/vfpgad.service"
systemd-analyze security --offline=yes --threshold=30 "$tmp/vfpgad.service" | tail -n 1
