#!/usr/bin/env bash
# Usage: clients/python/tests/guest/runtime.sh DIR
#
# Puts a Python that runs in the test guests (a busybox initramfs with no shared
# libraries) into DIR, for tests/vm/guest/scenarios/python.sh: Debian's python3.11,
# the shared libraries it and its extension modules load (run through DIR's own
# ld-linux), its standard library without the test suites and GUI parts, and the
# vfpga client from clients/python/src. Run it in the guest as
#   PYTHONHOME=DIR DIR/lib/ld-linux-x86-64.so.2 --library-path DIR/lib DIR/bin/python3 -S SCRIPT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=SCRIPTDIR/../../../../scripts/lib.sh
. "$here/../../../../scripts/lib.sh"

[ $# -eq 1 ] || die "usage: $0 DIR"
out=$1
py=/usr/bin/python3.11
std=/usr/lib/python3.11
if [ ! -x "$py" ] || [ ! -d "$std/lib-dynload" ]; then
	die "$py and $std not found: install Debian's python3 (clients/python/test.sh does)"
fi

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib/python3.11" "$out/client"
cp "$py" "$out/bin/python3"
# The standard library, less what no client needs (about 20 MB instead of 58).
(cd "$std" && find . \( -name test -o -name tests -o -name idlelib -o -name tkinter -o -name turtledemo \
	-o -name ensurepip -o -name lib2to3 -o -name __pycache__ -o -name pydoc_data -o -name 'dist-packages' \
	-o -name 'site-packages' -o -name 'config-3.*' \) -prune -o -type f -print | cpio --quiet -pdm "$out/lib/python3.11")
# Every shared library python3 and the extension modules need, and the loader.
{
	ldd "$py"
	for so in "$std"/lib-dynload/*.so; do ldd "$so"; done
} | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' | sort -u | while read -r lib; do
	cp -L "$lib" "$out/lib/"
done
cp -r "$here/../../src/vfpga" "$out/client/"
cp "$here/kernels.py" "$out/"
find "$out/client" -name __pycache__ -prune -exec rm -rf {} +
[ -x "$out/lib/ld-linux-x86-64.so.2" ] || die "no ld-linux-x86-64.so.2 found by ldd"
echo "$out"
