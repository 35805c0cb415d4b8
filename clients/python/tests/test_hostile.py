"""A server that lies, truncates, stalls or sends garbage: a fake one on a unix socket
(the real daemons do not misbehave on purpose). Each case ends in a clear exception
within the request timeout, never a hang; the connection is then not used again."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import pytest

import vfpga
from conftest import tls_options
from vfpga import abi

#: An argument table entry: kind, type, flags, reserved, value.
Entry = Tuple[int, int, int, int, int]

#: A misbehaviour: gets the connection and the request's (opcode, tag, args), and
#: answers (or not). Returns normally to serve the next request.
Behaviour = Callable[[socket.socket, int, int, List[Entry]], None]

TIMEOUT = 3.0


def answer(conn: socket.socket, tag: int, status: int = 0, value: int = 0, written: int = 0,
           detail: int = 0) -> None:
    conn.sendall(abi.RESPONSE.pack(status, 0, detail, tag, value, written, 0))


def read_exact(conn: socket.socket, n: int) -> Optional[bytes]:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class FakeServer:
    """Answers NOP correctly (so the client's open succeeds), and the other requests
    with ``behaviour``."""

    def __init__(self, path: Path, behaviour: Behaviour, nop_too: bool = False) -> None:
        self.path = path
        self.behaviour = behaviour
        self.nop_too = nop_too
        self.stop = threading.Event()
        self.conn: Optional[socket.socket] = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.conn = conn
        with conn:
            conn.settimeout(30)
            try:
                while not self.stop.is_set():
                    head = read_exact(conn, abi.REQUEST_HEADER.size)
                    if head is None:
                        return
                    f = abi.REQUEST_HEADER.unpack(head)
                    opcode, n_args, tag = f[2], f[4], f[5]
                    args: List[Entry] = [
                        abi.ARG_ENTRY.unpack(read_exact(conn, 16) or b"\0" * 16) for _ in range(n_args)
                    ]
                    inputs = sum(a[4] for a in args if a[0] == 2)
                    if inputs:
                        read_exact(conn, inputs)
                    if opcode == abi.Opcode.NOP and not self.nop_too:
                        answer(conn, tag)
                        continue
                    self.behaviour(conn, opcode, tag, args)
            except OSError:
                return

    def uri(self) -> str:
        return "unix:" + str(self.path)

    def close(self) -> None:
        self.stop.set()
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.listener.close()
        self.thread.join(timeout=10)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[..., FakeServer]]:
    made: List[FakeServer] = []

    def make(behaviour: Behaviour, nop_too: bool = False) -> FakeServer:
        s = FakeServer(tmp_path / "fake{}.sock".format(len(made)), behaviour, nop_too)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def opened(server: FakeServer) -> vfpga.Device:
    return vfpga.Device.open(server.uri(), vfpga.Options(timeout=TIMEOUT, reconnect=0))


def bounded(fn: Callable[[], object], exc: type, within: float = 10 * TIMEOUT) -> str:
    """Runs ``fn``; it must raise ``exc`` within ``within`` seconds. Returns the message."""
    t = time.monotonic()
    with pytest.raises(exc) as e:
        fn()
    assert time.monotonic() - t < within
    return str(e.value)


def held(conn: socket.socket, opcode: int, tag: int, args: List[Entry]) -> None:
    """A stalled server: holds the connection until the test ends (FakeServer.close)."""
    conn.recv(1)


def test_garbage_is_a_protocol_error_and_the_connection_is_not_reused(fake: Callable[..., FakeServer]) -> None:
    s = fake(lambda c, op, tag, args: c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 40))
    dev = opened(s)
    msg = bounded(dev.info, vfpga.ProtocolError)
    assert msg.startswith("info: the connection to vfpgad failed: vfpgad broke the protocol: an answer for tag ")
    again = bounded(dev.nop, vfpga.LinkError)
    assert again == "nop: the connection to vfpgad failed: an earlier request on this connection failed half-way (reconnecting is off)"


def test_garbage_at_open_is_a_connect_error(fake: Callable[..., FakeServer]) -> None:
    s = fake(lambda c, op, tag, args: c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" + b"\0" * 40), nop_too=True)
    msg = bounded(lambda: opened(s), vfpga.ConnectError)
    assert msg.startswith("cannot connect to {}: vfpgad broke the protocol".format(s.uri()))
    assert "is this vfpgad or a vfpga-agent?" in msg


def test_a_close_before_the_answer(fake: Callable[..., FakeServer]) -> None:
    def close(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        c.shutdown(socket.SHUT_RDWR)
    dev = opened(fake(close))
    assert bounded(dev.info, vfpga.LinkError) == "info: the connection to vfpgad failed: vfpgad closed the connection"


def test_half_an_answer_then_close(fake: Callable[..., FakeServer]) -> None:
    def half(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        c.sendall(abi.RESPONSE.pack(0, 0, 0, tag, 0, 0, 0)[:17])
        c.shutdown(socket.SHUT_RDWR)
    dev = opened(fake(half))
    assert "in the middle of its answer (17 of 40 bytes)" in bounded(dev.info, vfpga.LinkError)


def test_a_server_that_never_answers_is_cut_by_the_timeout(fake: Callable[..., FakeServer]) -> None:
    dev = opened(fake(held))
    t = time.monotonic()
    msg = bounded(dev.info, vfpga.LinkError)
    assert time.monotonic() - t >= TIMEOUT * 0.9
    assert f"no complete answer within {TIMEOUT:g} s" in msg


def test_a_trickling_server_is_cut_by_the_deadline_not_per_read(fake: Callable[..., FakeServer]) -> None:
    def trickle(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        # The 40-byte answer, then the 160 info bytes, a byte every 50 ms: 10 s in all,
        # each read well within any per-call timeout.
        for b in abi.RESPONSE.pack(0, 0, 0, tag, 0, 160, 0) + bytes(160):
            c.sendall(bytes([b]))
            time.sleep(0.05)
    dev = opened(fake(trickle))
    assert f"no complete answer within {TIMEOUT:g} s" in bounded(dev.info, vfpga.LinkError, within=4 * TIMEOUT)


def test_lying_about_the_output_length(fake: Callable[..., FakeServer]) -> None:
    def liar(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        answer(c, tag, written=1 << 40)
    dev = opened(fake(liar))
    msg = bounded(dev.info, vfpga.ProtocolError)
    assert msg == (
        "info: the connection to vfpgad failed: vfpgad broke the protocol: "
        "vfpgad announced 1099511627776 output bytes for 160"
    )


def test_fewer_output_bytes_than_announced(fake: Callable[..., FakeServer]) -> None:
    def short(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        answer(c, tag, written=160)
        c.sendall(bytes(100))
        held(c, op, tag, args)
    dev = opened(fake(short))
    assert f"no complete answer within {TIMEOUT:g} s" in bounded(dev.info, vfpga.LinkError)

    def short_close(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        answer(c, tag, written=160)
        c.sendall(bytes(100))
        c.shutdown(socket.SHUT_RDWR)
    dev = opened(fake(short_close))
    assert "in the middle of its answer (100 of 160 bytes)" in bounded(dev.info, vfpga.LinkError)


def test_an_answer_shorter_than_its_structure(fake: Callable[..., FakeServer]) -> None:
    def few(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        answer(c, tag, written=12)
        c.sendall(bytes(12))
    dev = opened(fake(few))
    assert "12 bytes of answer where 160 belong" in bounded(dev.info, vfpga.ProtocolError)


def test_an_unknown_status_is_an_engine_error(fake: Callable[..., FakeServer]) -> None:
    dev = opened(fake(lambda c, op, tag, args: answer(c, tag, status=999)))
    with pytest.raises(vfpga.DeviceError) as e:
        dev.info()
    assert e.value.status == vfpga.Status.ENGINE_ERROR
    assert str(e.value) == "info: accelerator engine failure (status 999 unknown to this client)"
    with pytest.raises(vfpga.DeviceError):
        dev.info()  # the stream is in step: the next request is answered as well


def test_a_tag_0_refusal_is_explained(fake: Callable[..., FakeServer]) -> None:
    dev = opened(fake(lambda c, op, tag, args: answer(c, 0, status=1)))
    msg = bounded(dev.info, vfpga.LinkError)
    assert "vfpgad refused the request as unreadable (malformed request (argument 0)) and closed the connection" in msg


def kernel_records(n: int, name: bytes = b"k", n_args: int = 0, arg: bytes = b"") -> bytes:
    rec = abi.KERNEL_DESC.pack(name.ljust(32, b"\0"), b"doc".ljust(64, b"\0"), n_args, 0, 0, 0,
                               arg.ljust(128, b"\0"))
    return rec * n


def catalogue(records: Callable[[int], bytes], total: int) -> Behaviour:
    def serve(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        room = args[1][4] if len(args) > 1 else 0
        body = records(room)[:room]
        answer(c, tag, value=total, written=len(body))
        c.sendall(body)
    return serve


def test_a_catalogue_that_never_ends_is_refused(fake: Callable[..., FakeServer]) -> None:
    # Announces 2^64-1 kernels and sends a full page every time.
    dev = opened(fake(catalogue(lambda room: kernel_records(room // 232), (1 << 64) - 1)))
    assert "more than 65536 kernels" in bounded(dev.kernels, vfpga.ProtocolError, within=60)


def test_unreadable_kernel_records(fake: Callable[..., FakeServer]) -> None:
    bad_arg = struct.pack("<10sBBBBH", b"x", 9, 1, 0xFF, 0xFF, 0)  # kind 9: undefined
    dev = opened(fake(catalogue(lambda room: kernel_records(1, n_args=1, arg=bad_arg), 1)))
    with pytest.raises(vfpga.DeviceError) as e:
        dev.kernels()
    assert e.value.status == vfpga.Status.BAD_REQUEST
    assert str(e.value) == (
        "list kernels: malformed request (unreadable kernel descriptor: "
        "kernel descriptor has an undefined kind or type code)"
    )
    dev = opened(fake(catalogue(lambda room: b"\xff" * 232, 1)))
    with pytest.raises(vfpga.DeviceError):
        dev.kernels()
    dev = opened(fake(catalogue(lambda room: kernel_records(1)[:100], 1)))
    assert "100 bytes are no whole kernel records" in bounded(dev.kernels, vfpga.ProtocolError)


def test_a_tls_endpoint_that_speaks_no_tls(pki: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def garbage() -> None:
        c, _ = listener.accept()
        with c:
            c.sendall(b"220 not TLS at all\r\n" * 10)
            c.recv(1)  # until the client gives up

    t = threading.Thread(target=garbage, daemon=True)
    t.start()
    uri = "tls://127.0.0.1:{}".format(port)
    msg = bounded(lambda: vfpga.Device.open(uri, tls_options(pki, timeout=TIMEOUT)), vfpga.ConnectError)
    assert msg.startswith("cannot connect to {} (certificate name '127.0.0.1'".format(uri))
    listener.close()
    t.join(timeout=10)
    assert not t.is_alive()


def test_leaving_a_session_block_keeps_the_error_that_ended_it(fake: Callable[..., FakeServer]) -> None:
    sig = abi.KernelSig("k", "", ())
    dev = opened(fake(held))
    with pytest.raises(vfpga.LinkError) as e:
        with vfpga.Session(dev, 5, sig):
            dev.info()  # times out; leaving the block must not replace that error
    assert f"no complete answer within {TIMEOUT:g} s" in str(e.value)


def test_a_listener_that_takes_connections_but_never_answers_them(fake: Callable[..., FakeServer]) -> None:
    # As a dying server's listen queue: the first connection breaks, the new ones are
    # taken by the kernel and never answered. Reconnecting gives up after its window.
    def close(c: socket.socket, op: int, tag: int, args: List[Entry]) -> None:
        c.shutdown(socket.SHUT_RDWR)

    s = fake(close)
    dev = vfpga.Device.open(s.uri(), vfpga.Options(timeout=TIMEOUT, reconnect=1.0))
    msg = bounded(dev.info, vfpga.LinkError)
    assert msg.startswith("info: the connection to vfpgad failed: vfpgad did not come back within 1 s: ")
    assert "no complete answer" in msg
    assert dev.reconnects == 0
