"""Errors on the real daemons: the statuses and messages of the Rust library (the
``vfpga`` CLI, built from the same workspace, prints them as ``vfpga: MESSAGE``)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest

import vfpga
from conftest import MAX_REQUEST, tls_options
from servers import Vfpgad, cli


def rust_cli_error(*args: str) -> str:
    """What the Rust CLI says when it fails."""
    out = subprocess.run(
        [cli(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False,
        env={"VFPGA_RECONNECT_SECS": "0", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode != 0, out
    text = out.stderr.decode().strip()
    assert text.startswith("vfpga: "), text
    return text[len("vfpga: "):]


def test_an_unknown_kernel_lists_the_others_as_the_rust_library_does(daemon: Vfpgad) -> None:
    with vfpga.Device.open(daemon.unix()) as dev:
        with pytest.raises(vfpga.UnknownKernelError) as e:
            dev.session("nope")
    assert e.value.status == vfpga.Status.UNKNOWN_KERNEL
    assert str(e.value) == rust_cli_error("-d", daemon.unix(), "run", "nope")
    assert "available: vadd_u32, vadd_f32, mmult, fir, sha256, sobel" in str(e.value)


def test_nothing_listening_is_explained_as_the_rust_library_does(tmp_path: Path) -> None:
    where = "unix:{}/nothing.sock".format(tmp_path)
    with pytest.raises(vfpga.ConnectError) as e:
        vfpga.Device.open(where)
    assert str(e.value) == rust_cli_error("-d", where, "info")
    assert "nothing listens there" in str(e.value)


def test_a_closed_tcp_port_fails_at_once(pki: Path) -> None:
    from servers import free_port

    where = "tls://127.0.0.1:{}".format(free_port())
    t = time.monotonic()
    with pytest.raises(vfpga.ConnectError) as e:
        vfpga.Device.open(where, tls_options(pki))  # reconnect window: the default 30 s
    assert time.monotonic() - t < 5, "refused connections are not retried"
    assert "nothing listens there" in str(e.value) and "Connection refused" in str(e.value)


def test_an_operation_the_device_lacks(daemon: Vfpgad) -> None:
    with vfpga.Device.open(daemon.unix()) as dev:
        with pytest.raises(vfpga.DeviceError) as e:
            dev.load_bitstream("base")
        assert e.value.status == vfpga.Status.UNSUPPORTED
        assert str(e.value) == rust_cli_error("-d", daemon.unix(), "load", "base")
        # Board agents only: vfpgad answers UNSUPPORTED, and the stream stays in step.
        with pytest.raises(vfpga.DeviceError) as up:
            dev.upload_bitstream("base", "[bitstream]\nname = \"base\"\n", b"bits")
        assert up.value.status == vfpga.Status.UNSUPPORTED
        assert str(up.value) == "upload bitstream `base`: operation not supported by this device"
        dev.nop()  # raises unless the stream is still in step


def test_a_bad_argument_names_it_with_the_signature(daemon: Vfpgad) -> None:
    a = np.arange(8, dtype=np.uint32)
    c = np.zeros(8, dtype=np.uint32)
    with vfpga.Device.open(daemon.unix()) as dev, dev.session("vadd_u32") as s:
        with pytest.raises(vfpga.DeviceError) as e:
            s.run(a, a, c, 9)  # n says 9 elements, the buffers hold 8
        assert e.value.status == vfpga.Status.BAD_ARGUMENT
        assert str(e.value) == (
            "run `vadd_u32`: arguments do not match the kernel signature (argument 0 `a` of "
            "vadd_u32(in a: u32[n], in b: u32[n], out c: u32[n], n: u32))"
        )
        # Typed wrappers send what they say; the device checks them.
        with pytest.raises(vfpga.DeviceError) as kind:
            s.run(a, a, vfpga.In(c, vfpga.ElemType.U32), 8)
        assert "argument 2 `c`" in str(kind.value)
        s.run(a, a, c, 8)
        assert np.array_equal(c, a * 2)


def test_closed_and_foreign_sessions_are_bad_sessions(daemon: Vfpgad) -> None:
    with vfpga.Device.open(daemon.unix()) as one, vfpga.Device.open(daemon.unix()) as two:
        s = one.session("sha256")
        sid = one._conn.server_id(s.id)  # vfpgad's id of the session on `one`
        assert sid is not None
        theirs = vfpga.Session(two, sid, s.signature)  # sent as is on another stream
        with pytest.raises(vfpga.DeviceError) as e:
            theirs.call(b"x")
        assert e.value.status == vfpga.Status.BAD_SESSION
        assert str(e.value) == "run `sha256`: unknown or closed session"
        s.close()
        with pytest.raises(vfpga.DeviceError) as closed:
            vfpga.Session(one, sid, s.signature).call(b"x")
        assert closed.value.status == vfpga.Status.BAD_SESSION


def test_a_request_over_the_limit_is_too_large_and_the_stream_stays_in_step(daemon: Vfpgad) -> None:
    n = MAX_REQUEST // 8  # 3 buffers of 4 bytes per element: 1.5 times the limit
    a = np.ones(n, dtype=np.uint32)
    with vfpga.Device.open(daemon.unix()) as dev, dev.session("vadd_u32") as s:
        assert dev.limits().max_request_bytes == MAX_REQUEST
        with pytest.raises(vfpga.DeviceError) as e:
            s.call(a, a)
        assert e.value.status == vfpga.Status.TOO_LARGE
        assert str(e.value) == "run `vadd_u32`: request exceeds a device limit"
        assert list(s.call(a[:4], a[:4])) == [2, 2, 2, 2]


def test_mistakes_are_caught_before_anything_is_sent(daemon: Vfpgad) -> None:
    with vfpga.Device.open(daemon.unix()) as dev, dev.session("vadd_u32") as s:
        before = dev.stats().requests
        cases: List[object] = [
            lambda: dev.session("x" * 32),
            lambda: s.call(np.arange(4, dtype=np.float64), np.arange(4, dtype=np.uint32)),
            lambda: s.run(np.zeros(4, np.uint32), np.zeros(4, np.uint32), b"read-only", 4),
            lambda: s.run(*([1] * 9)),
            lambda: s.call(np.zeros(4, np.uint32)),
            lambda: s.call(np.zeros(4, np.uint32), np.zeros(4, np.uint32), n=-1),
            lambda: s.call([1, 2], [1, 2.5]),
            lambda: s.call(np.zeros(4, np.uint32), np.zeros(4, np.uint32), bogus=1),
            lambda: s.run(np.zeros(4, np.uint32), np.zeros(4, np.uint32), np.zeros(4, np.uint32), 1 << 40),
            lambda: s.run(b"12345", b"12345", bytearray(5), 1),
        ]
        messages = []
        for case in cases:
            with pytest.raises(vfpga.UsageError) as e:
                case()  # type: ignore[operator]
            messages.append(str(e.value))
        # Nothing reached vfpgad: only the stats request itself is counted.
        assert dev.stats().requests == before + 1
    assert messages[0] == "name `{}` must be 1 to 31 bytes without NUL".format("x" * 32)
    assert "is u32: got a numpy array of float64 (convert with .astype(numpy.uint32))" in messages[1]
    assert "argument 2 `c` is an output: give a writable buffer" in messages[2]
    assert messages[3] == "vadd_u32: at most 8 arguments"
    assert "give `b`" in messages[4]
    assert "-1 is negative" in messages[5]
    assert "not all u32 values" in messages[6]
    assert "no input or scalar `bogus`" in messages[7]
    assert "argument 3 `n` is u32: 1099511627776 does not fit in 32 bits" in messages[8]
    assert "5 bytes are not a whole number of 4-byte elements" in messages[9]


def test_tls_refusals_are_explained(daemon: Vfpgad, pki: Path, stranger: Path, tmp_path: Path) -> None:
    # A client certificate of another CA: vfpgad refuses it in the handshake.
    with pytest.raises(vfpga.ConnectError) as other_ca:
        vfpga.Device.open(daemon.tls(), tls_options(stranger))
    assert str(other_ca.value).startswith(
        "cannot connect to {} (certificate name '127.0.0.1'; server_name sets another): ".format(daemon.tls())
    )
    assert "not signed by our CA" in str(other_ca.value)
    # A valid certificate naming no guest on that port: closed right after the handshake.
    with pytest.raises(vfpga.ConnectError) as nobody:
        vfpga.Device.open(daemon.tls(), tls_options(pki, "runner"))
    assert "the server closed the connection right after the TLS handshake: vfpgad serves no guest" in str(nobody.value)
    # vfpgad's certificate does not carry the name asked for.
    with pytest.raises(vfpga.ConnectError) as name:
        vfpga.Device.open(daemon.tls(), tls_options(pki, server_name="elsewhere.example"))
    assert "does not carry the name 'elsewhere.example'" in str(name.value)
    # Without certificates, or with missing files: said before connecting.
    with pytest.raises(vfpga.UsageError) as none:
        vfpga.Device.open(daemon.tls(), vfpga.Options())
    assert "TLS needs this client's certificate" in str(none.value)
    with pytest.raises(vfpga.UsageError) as missing:
        vfpga.Device.open(daemon.tls(), vfpga.Options(tls=vfpga.TlsFiles.from_dir(str(tmp_path))))
    assert "cannot use the certificates" in str(missing.value)


def test_endpoints_this_client_does_not_speak(tmp_path: Path) -> None:
    for uri, why in [
        ("/dev/vfpga0", "ioctls"),
        ("vchan://", "vchan is not spoken"),
        ("http://x:1", "unknown scheme"),
        ("tls://host:0", "1 to 65535"),
    ]:
        with pytest.raises(vfpga.UsageError) as e:
            vfpga.Device.open(uri)
        assert why in str(e.value), str(e.value)


def test_a_vsock_endpoint_nobody_serves_fails_to_connect() -> None:
    # Whatever this machine has (no vsock at all, or no listener on the port), the
    # failure names the endpoint and comes within the connect timeout.
    with pytest.raises(vfpga.ConnectError) as e:
        vfpga.Device.open("vsock://1:47999", vfpga.Options(connect_timeout=5))
    assert str(e.value).startswith("cannot connect to vsock://1:47999: ")
