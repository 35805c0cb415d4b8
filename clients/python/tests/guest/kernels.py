"""Run in a test guest by tests/vm/guest/scenarios/python.sh: every kernel through the
Python client (no numpy there: array.array and bytes) on the inputs the host's test
wrote under in/ (tests/vm/tests/common: kernel_inputs), outputs to out/NAME.bin for the
host to check against its references; then the errors a user meets, to out/py-*.err.

Usage: python3 kernels.py ENDPOINT (cwd: the share)
"""

import array
import os
import sys
from typing import Any, Dict

import vfpga


def read(name: str, code: str) -> "array.array[Any]":
    a = array.array(code)
    with open(os.path.join("in", name), "rb") as f:
        a.frombytes(f.read())
    return a


def write(name: str, data: Any) -> None:
    with open(os.path.join("out", name), "wb") as f:
        f.write(bytes(data))


def main() -> None:
    ep = sys.argv[1]
    params: Dict[str, int] = {}
    with open("params.sh") as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            params[k] = int(v)
    os.makedirs("out", exist_ok=True)
    with vfpga.Device.open(ep) as dev:
        info = dev.info()
        print("python: {} is {} on the {} engine, {} kernels".format(ep, info.name, info.engine, len(dev.kernels())))
        with dev.session("vadd_u32") as s:
            write("vadd_u32.bin", s.call(read("a_u32.bin", "I"), read("b_u32.bin", "I")))
        with dev.session("vadd_f32") as s:
            write("vadd_f32.bin", s.call(read("a_f32.bin", "f"), read("b_f32.bin", "f")))
        with dev.session("mmult") as s:
            write("mmult.bin", s.call(read("ma.bin", "f"), read("mb.bin", "f"), m=params["M"], k=params["K"]))
        with dev.session("fir") as s:
            write("fir.bin", s.call(read("x.bin", "h"), read("taps.bin", "i")))
        with dev.session("sha256") as s:
            with open("in/data.bin", "rb") as f:
                write("sha256.bin", s.call(f.read()))
        with dev.session("sobel") as s:
            with open("in/img.bin", "rb") as f:
                write("sobel.bin", s.call(f.read(), w=params["W"]))
        try:
            dev.session("nope")
        except vfpga.UnknownKernelError as e:
            write("py-unknown.err", str(e).encode())
    try:
        vfpga.Device.open("vsock://2:7999")
    except vfpga.ConnectError as e:
        write("py-noport.err", str(e).encode())
    print("python: OK")


main()
