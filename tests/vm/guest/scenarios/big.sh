#!/bin/sh
# Scenario `big`: a vadd_u32 on 16 MiB vectors (4M elements, spread over thousands of
# guest pages), then the guest-side benchmark of a null op and a 16 MiB vadd.
set -eu
mkdir -p out
# Ordinary 4 KiB pages: no transparent huge pages to make the buffers contiguous.
thp=/sys/kernel/mm/transparent_hugepage/enabled
[ ! -w "$thp" ] || echo never >"$thp"
vfpga run vadd_u32 --in in/big_a.bin --in in/big_b.bin --out out/big_c.bin
vfpga bench --nops 1000 --size 16M --runs 5
echo 'big: OK'
