"""Parts that need no server: endpoint strings (the Rust parser's cases), scalar
encoding (against struct), signatures as the Rust library renders them."""

from __future__ import annotations

import struct

import pytest

import vfpga
from vfpga import abi, buffers, endpoint


@pytest.mark.parametrize(
    "uri, want",
    [
        ("vsock://2:7000", endpoint.Vsock(2, 7000)),
        ("unix:/run/vfpga/vm0.vsock_7000", endpoint.Unix("/run/vfpga/vm0.vsock_7000")),
        ("unix://tmp/x", endpoint.Unix("tmp/x")),
        ("tls://10.0.0.1:7000", endpoint.Tls("10.0.0.1", 7000)),
        ("tls://[::1]:7000", endpoint.Tls("::1", 7000)),
        ("vchan://", endpoint.Vchan(0, "vfpga")),
        ("vchan://3/data/vfpga", endpoint.Vchan(3, "data/vfpga")),
        ("/dev/vfpga1", endpoint.DeviceNode("/dev/vfpga1")),
    ],
)
def test_every_form_parses_and_prints_back(uri: str, want: endpoint.Endpoint) -> None:
    got = vfpga.parse_endpoint(uri)
    assert got == want
    assert vfpga.parse_endpoint(str(got)) == want


@pytest.mark.parametrize(
    "uri, why",
    [
        ("vsock://2", "CID:PORT"),
        ("vsock://host:7000", "CID is not a number"),
        ("vsock://2:x", "port is not a number"),
        ("tls://host", "HOST:PORT"),
        ("tls://host:0", "1 to 65535"),
        ("tls://:7000", "needs a host"),
        ("unix:", "socket path"),
        ("vchan://dom0", "domain id"),
        ("vchan://0/a b", "xenstore refuses"),
        ("http://x:1", "unknown scheme"),
        ("", "empty"),
    ],
)
def test_mistakes_are_named(uri: str, why: str) -> None:
    with pytest.raises(vfpga.UsageError) as e:
        vfpga.parse_endpoint(uri)
    assert why in str(e.value)
    assert "vsock://CID:PORT" in str(e.value)


def test_scalars_are_encoded_as_the_device_reads_them() -> None:
    bits = buffers.scalar_bits
    assert bits(-1, vfpga.ElemType.I32, "x") == 0xFFFFFFFF
    assert bits(-2, vfpga.ElemType.I16, "x") == 0xFFFE
    assert bits(-(2**63), vfpga.ElemType.I64, "x") == 1 << 63
    assert bits(2**64 - 1, vfpga.ElemType.U64, "x") == 2**64 - 1
    assert bits(1.5, vfpga.ElemType.F32, "x") == struct.unpack("<I", struct.pack("<f", 1.5))[0]
    assert bits(-0.1, vfpga.ElemType.F64, "x") == struct.unpack("<Q", struct.pack("<d", -0.1))[0]
    for value, ty in [(2**32, vfpga.ElemType.U32), (-1, vfpga.ElemType.U8), (-(2**15) - 1, vfpga.ElemType.I16),
                      (True, vfpga.ElemType.U32), (1.0, vfpga.ElemType.U32), ("3", vfpga.ElemType.U64),
                      (1e300, vfpga.ElemType.F32)]:
        with pytest.raises(vfpga.UsageError):
            bits(value, ty, "x")


def test_statuses_say_what_the_rust_library_says() -> None:
    assert [s.name for s in vfpga.Status] == [
        "OK", "BAD_REQUEST", "BAD_VERSION", "UNSUPPORTED", "UNKNOWN_KERNEL", "BAD_SESSION", "BAD_ARGUMENT",
        "PERMISSION", "BUSY", "TOO_LARGE", "ENGINE_ERROR", "TIMEOUT", "LINK_DOWN",
    ]
    assert [int(s) for s in vfpga.Status] == list(range(13))
    assert vfpga.Status.BUSY.describe() == "device busy, retry later"
    assert str(vfpga.DeviceError("run `x`", vfpga.Status.TIMEOUT)) == "run `x`: kernel timed out"


def test_request_encoding_matches_the_protocol_example() -> None:
    # docs/protocol.md section 8: a RUN of vadd_u32 with n = 2 on session S, tag 7.
    s = 0x1122334455667788
    head = abi.request_header(abi.Opcode.RUN, 7, s, 4)
    assert head[:16] == bytes.fromhex("56465251 0100 0500 00000000 04000000".replace(" ", ""))
    assert head[16:24] == bytes.fromhex("0700000000000000")
    assert head[24:32] == s.to_bytes(8, "little")
    assert head[32:] == bytes(16)
    assert abi.arg_entry(abi.ArgKind.IN, abi.ElemType.U32, 8) == bytes.fromhex("0204000000000000" "0800000000000000")
    assert abi.arg_entry(abi.ArgKind.SCALAR, abi.ElemType.U32, 2) == bytes.fromhex("0104000000000000" "0200000000000000")
