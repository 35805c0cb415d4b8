#!/bin/sh
# Scenario `errors`: commands that must fail with a clear message and a non-zero exit
# status. Each one's stdout, stderr and exit status go to /host/out/<name>.* for the
# host to check.
set -u
mkdir -p out
check() {
	name=$1
	shift
	"$@" >"out/$name.out" 2>"out/$name.err"
	echo $? >"out/$name.rc"
	echo "--- $name: rc $(cat "out/$name.rc"): $(cat "out/$name.err")"
}
check unknown vfpga run no_such_kernel --in in/a_u32.bin
check short vfpga run vadd_u32 --in in/a_u32.bin --in in/short.bin
check toomanytaps vfpga run fir --in in/x.bin --in in/taps300.bin
check notascalar vfpga run vadd_u32 --arg m=3 --in in/a_u32.bin --in in/b_u32.bin
check badvalue vfpga run mmult --arg m=-1 --arg k=2 --arg n=2 --in in/ma.bin --in in/mb.bin
check nodevice vfpga -d /dev/vfpga7 info
exit 0
