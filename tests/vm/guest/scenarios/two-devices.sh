#!/bin/sh
# Scenario `two-devices`: a guest with two vfpga devices on two sockets uses both.
set -eu
mkdir -p out
vfpga -d /dev/vfpga0 info >out/dev0.info
vfpga -d /dev/vfpga1 info >out/dev1.info
cat out/dev0.info out/dev1.info
vfpga -d /dev/vfpga0 run vadd_u32 --in in/a_u32.bin --in in/b_u32.bin --out out/dev0.bin
vfpga -d /dev/vfpga1 run sha256 --in in/data.bin --out out/dev1.bin
echo 'two-devices: OK'
