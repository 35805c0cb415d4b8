#!/bin/sh
# Scenario `parse` (busybox sh in dom0, run by tests/xen/dom0/init): does Xen 4.17's xl
# accept these xl.cfg files? For every /host/cfg/*.cfg (the 9p share, e.g. files written
# by `vfpga-xen guest-config`), in name order, runs the dry run
#   xl create -n FILE
# (parses the file and prints the resulting domain configuration as JSON, creates
# nothing) and prints on the console
#   VFPGA-PARSE-BEGIN <file>
#   <xl's output, stdout and stderr>
#   VFPGA-PARSE <file> rc=<xl's exit status>
# with <file> the name relative to /host/cfg. The same output goes to the share:
# /host/parse/<file>.out (xl's output) and /host/parse/<file>.rc (the status).
# Exits 0 when every file was tried (whatever xl said: the caller judges each rc), 2
# without the share or without *.cfg files.
#   mkdir -p DIR/cfg && vfpga-xen guest-config vm1.toml -o DIR/cfg/vm1.cfg --xen-version 4.17
#   tests/xen/run-xen.sh --scenario parse --share DIR
#   grep '^VFPGA-PARSE ' "$VFPGA_CACHE/run-xen/parse.log"     # or: cat DIR/parse/*.rc
set -u

dir=/host/cfg
if [ -z "${VFPGA_HOST:-}" ]; then
	echo "parse: FAIL: no 9p share mounted on /host (run-xen.sh --share DIR, with DIR/cfg/*.cfg)"
	exit 2
fi
set -- "$dir"/*.cfg
if [ ! -f "$1" ]; then
	echo "parse: FAIL: no *.cfg files in $dir"
	exit 2
fi
out=/host/parse
mkdir -p "$out" || out=''
n=0 bad=0
for f in "$@"; do
	rel=${f#"$dir"/}
	echo "VFPGA-PARSE-BEGIN $rel"
	xl create -n "$f" >/tmp/parse.out 2>&1
	rc=$?
	cat /tmp/parse.out
	echo "VFPGA-PARSE $rel rc=$rc"
	if [ -n "$out" ]; then
		cp /tmp/parse.out "$out/$rel.out"
		echo "$rc" >"$out/$rel.rc"
	fi
	n=$((n + 1))
	[ "$rc" = 0 ] || bad=$((bad + 1))
done
echo "parse: $n file(s) tried, xl refused $bad"
