"""Opening a stream to vfpgad or a board agent (unix, vsock, TLS), and exchanging
requests on it (docs/protocol.md section 10):

    request:  vfpga_req_hdr | vfpga_arg x n_args | input buffers
    answer:   vfpga_resp | output buffers (resp.written bytes, only when status is OK)

Every exchange ends by a deadline: a peer that stalls, trickles or lies about lengths
raises :class:`LinkError` or :class:`ProtocolError`, never hangs.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Dict, NoReturn, Optional, Sequence, Tuple, Union

from . import abi
from .abi import ArgKind, ElemType, Opcode, Response, Status
from .endpoint import DeviceNode, Endpoint, Tls, Unix, Vchan, Vsock
from .errors import (
    ConnectError,
    DeviceError,
    LinkError,
    ProtocolError,
    UsageError,
    connect_hint,
    os_text,
)

#: Default bound on one request (plus one second per MiB it moves), in seconds.
DEFAULT_TIMEOUT = 120.0
#: How long a connect and TLS handshake may take, in seconds.
CONNECT_TIMEOUT = 10.0
#: How long a broken connection is tried again (vfpgad restarting), in seconds.
DEFAULT_RECONNECT = 30.0


@dataclass(frozen=True)
class TlsFiles:
    """For ``tls://``: the CA that signed the server's certificate, and this client's
    certificate and key (``vfpga-agent cert`` makes them)."""

    ca: str
    cert: str
    key: str

    @classmethod
    def from_dir(cls, directory: str) -> "TlsFiles":
        """``ca.pem``, ``client.pem`` and ``client.key`` in ``directory`` (``--tls-dir``)."""
        return cls(
            os.path.join(directory, "ca.pem"),
            os.path.join(directory, "client.pem"),
            os.path.join(directory, "client.key"),
        )


@dataclass(frozen=True)
class Options:
    """How to reach the server and how long to wait for it."""

    #: Certificates for ``tls://`` endpoints.
    tls: Optional[TlsFiles] = None
    #: The name the server's certificate must carry (default: the host of the endpoint).
    server_name: Optional[str] = None
    #: Longest one request may take, in seconds, plus one second per MiB of inputs and
    #: outputs; ``None`` waits for ever (a kernel on real hardware may run long).
    timeout: Optional[float] = DEFAULT_TIMEOUT
    #: Longest a connect and TLS handshake may take, in seconds.
    connect_timeout: float = CONNECT_TIMEOUT
    #: When the connection breaks (vfpgad restarted or upgraded): how long to keep
    #: trying to reach the server again, in seconds. The sessions are reopened and a
    #: request the break interrupted is sent once more (a run's outputs depend only on
    #: its inputs); 0 turns this off: a broken connection then fails every request.
    reconnect: float = DEFAULT_RECONNECT

    @classmethod
    def from_env(cls) -> "Options":
        """``VFPGA_TLS_DIR``, ``VFPGA_TLS_SERVER_NAME``, ``VFPGA_RECONNECT_SECS`` (as the
        Rust library and the CLI read them) and ``VFPGA_TIMEOUT_SECS`` (0: no bound);
        an unreadable number keeps the default."""
        tls_dir = os.environ.get("VFPGA_TLS_DIR")
        timeout: Optional[float] = DEFAULT_TIMEOUT
        raw = os.environ.get("VFPGA_TIMEOUT_SECS")
        if raw is not None:
            try:
                secs = float(raw.strip())
                timeout = secs if secs > 0 else None
            except ValueError:
                pass
        reconnect = DEFAULT_RECONNECT
        try:
            reconnect = max(0.0, float(os.environ.get("VFPGA_RECONNECT_SECS", "").strip()))
        except ValueError:
            pass
        return cls(
            tls=TlsFiles.from_dir(tls_dir) if tls_dir else None,
            server_name=os.environ.get("VFPGA_TLS_SERVER_NAME"),
            timeout=timeout,
            reconnect=reconnect,
        )


#: One entry of an argument table: kind, element type, value (scalar bits or length).
ArgEntry = Tuple[ArgKind, ElemType, int]


class _Eof(Exception):
    def __init__(self, got: int, want: int) -> None:
        super().__init__(got, want)
        self.got = got
        self.want = want


class _Expired(Exception):
    pass


def _tls_why(e: BaseException, name: str) -> str:
    """A TLS failure with what to do about it (as ``vfpga_transport::explain``)."""
    if isinstance(e, ssl.SSLCertVerificationError):
        code = getattr(e, "verify_code", 0)
        msg = getattr(e, "verify_message", "") or str(e)
        if code in (2, 7, 18, 19, 20, 21):
            why = (
                "the peer's certificate is not signed by our CA (ca.pem): the two sides hold "
                "certificates of different `vfpga-agent cert init` runs"
            )
        elif code == 62:
            why = (
                "the server's certificate does not carry the name {!r}: connect with a name it "
                "carries (server_name, VFPGA_TLS_SERVER_NAME), or issue it one (`vfpga-agent cert "
                "server --name`)".format(name)
            )
        elif code == 10:
            why = "the peer's certificate has expired: issue a new one"
        elif code == 26:
            why = (
                "the peer's certificate is of the wrong kind (a client certificate where a server "
                "one belongs): use `cert server` for servers and `cert client` for clients"
            )
        else:
            why = "the peer's certificate is refused"
        return "{}: {}".format(msg, why)
    if isinstance(e, ssl.SSLError):
        reason = getattr(e, "reason", None) or str(e)
        if any(k in str(reason).upper() for k in ("CERTIFICATE", "UNKNOWN_CA", "BAD_CERT")):
            return (
                "{}: the server refused our certificate: it must be a client certificate "
                "(`vfpga-agent cert client`) signed by the server's CA; the server's log says "
                "more".format(reason)
            )
        return str(reason)
    if isinstance(e, (ConnectionResetError, BrokenPipeError, _Eof)):
        return (
            "the server closed the connection during the TLS handshake: it probably refused our "
            "certificate (a server certificate used as a client one, or one of another CA); the "
            "server's log says why"
        )
    if isinstance(e, OSError):
        return os_text(e)
    return str(e)


def _tls_context(ep: Tls, files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(cafile=files.ca)
        ctx.load_cert_chain(certfile=files.cert, keyfile=files.key)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(
            "{}: cannot use the certificates ({}, {}, {}): {}".format(
                ep, files.ca, files.cert, files.key, os_text(e) if isinstance(e, OSError) else e
            )
        ) from e
    return ctx


def _dial(ep: Endpoint, options: Options) -> Tuple[socket.socket, str, Optional[str]]:
    """Connects to ``ep``: the socket, the endpoint as messages show it, the TLS name."""
    shown = str(ep)
    if isinstance(ep, DeviceNode):
        raise UsageError(
            "{}: a device node is driven through the virtio_vfpga module's ioctls, which this "
            "client does not speak; reach vfpgad on a stream instead (unix:PATH, "
            "vsock://CID:PORT or tls://HOST:PORT; docs/transports.md)".format(ep)
        )
    if isinstance(ep, Vchan):
        raise UsageError(
            "{}: Xen vchan is not spoken by this client; use tls://HOST:PORT on the domU's "
            "network, or the Rust library (docs/transports.md)".format(ep)
        )
    if isinstance(ep, Tls):
        if options.tls is None:
            raise UsageError(
                "{}: TLS needs this client's certificate: give Options(tls=TlsFiles.from_dir(DIR)) "
                "or VFPGA_TLS_DIR (ca.pem, client.pem, client.key)".format(ep)
            )
        ctx = _tls_context(ep, options.tls)
        name = options.server_name or ep.host
        shown = "{} (certificate name {!r}; server_name sets another)".format(ep, name)
        try:
            raw = socket.create_connection((ep.host, ep.port), timeout=options.connect_timeout)
        except OSError as e:
            raise ConnectError(shown, connect_hint(str(ep), e), e) from e
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock: socket.socket = ctx.wrap_socket(raw, server_hostname=name)
        except (OSError, ValueError) as e:
            raw.close()
            raise ConnectError(shown, _tls_why(e, name), e) from e
        return sock, shown, name
    if isinstance(ep, Unix):
        family, address = socket.AF_UNIX, ep.path  # type: Tuple[int, Union[str, Tuple[int, int]]]
    else:
        assert isinstance(ep, Vsock)
        vsock = getattr(socket, "AF_VSOCK", None)
        if vsock is None:
            raise ConnectError(
                shown,
                "no vsock transport in this guest (this Python has no AF_VSOCK: Linux only)",
            )
        family, address = vsock, (ep.cid, ep.port)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise ConnectError(shown, connect_hint(shown, e), e) from e
    try:
        sock.settimeout(options.connect_timeout)
        sock.connect(address)
    except OSError as e:
        sock.close()
        raise ConnectError(shown, connect_hint(shown, e), e) from e
    return sock, shown, None


#: Failures that mean the peer went away (worth a reconnection), as opposed to nothing
#: listening there or nonsense answered.
_LOST = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)

#: How long a new connection after a restart may take to answer its first request: it
#: waits in a supervisor's listen queue until the new daemon takes it.
RESUME_TIME = 10.0


def connect(ep: Endpoint, options: Options) -> "Connection":
    """Connects to ``ep`` (no request yet). A connection cut before the server answered
    it (a daemon restarting under a supervisor, whose listener takes connections
    meanwhile) is tried again within the reconnect window; nothing listening fails at
    once."""
    deadline = time.monotonic() + options.reconnect
    pause = 0.02
    while True:
        try:
            sock, shown, name = _dial(ep, options)
            return Connection(ep, options, sock, shown, name)
        except ConnectError as e:
            if not isinstance(e.cause, _LOST) or time.monotonic() + pause >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


class _Session:
    """A session as the server knows it on the current connection."""

    def __init__(self, kernel: bytes, sid: Optional[int]) -> None:
        self.kernel = kernel
        #: The server's id; ``None`` when a reconnection found the kernel gone.
        self.sid = sid


class Connection:
    """A stream to the server, one request at a time (a lock serialises threads). When
    the connection breaks (vfpgad restarted), the next request connects again within
    :attr:`Options.reconnect`, reopens the sessions and is sent; a request interrupted
    by the break is sent once more, never a third time. Sessions are known to callers
    by handles that survive reconnections."""

    def __init__(
        self, ep: Endpoint, options: Options, sock: socket.socket, shown: str, tls_name: Optional[str]
    ) -> None:
        self._ep = ep
        self._sock: Optional[socket.socket] = sock
        self.endpoint = shown
        self._options = options
        self._tls_name = tls_name
        self._tag = 0
        self._lock = threading.RLock()
        self._closed = False
        self._sessions: Dict[int, _Session] = {}
        self._last_handle = 0
        #: Times the connection was made again after it broke.
        self.reconnects = 0

    def close(self) -> None:
        """Closes the stream (vfpgad closes its sessions)."""
        with self._lock:
            self._closed = True
            self._drop()

    @property
    def closed(self) -> bool:
        return self._closed

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def server_id(self, handle: int) -> Optional[int]:
        """The server's id of session ``handle`` on the current connection (a value no
        handle names is passed through as it is)."""
        s = self._sessions.get(handle)
        return handle if s is None else s.sid

    def _deadline(self, moved: int, timeout: Optional[float] = None) -> Optional[float]:
        t = self._options.timeout if timeout is None else timeout
        if t is None:
            return None
        return time.monotonic() + t + moved / float(1 << 20)

    def _wait(self, sock: socket.socket, deadline: Optional[float]) -> None:
        if deadline is None:
            sock.settimeout(None)
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Expired()
        sock.settimeout(left)

    def _send(self, sock: socket.socket, data: memoryview, deadline: Optional[float]) -> None:
        while len(data):
            self._wait(sock, deadline)
            n = sock.send(data)
            data = data[n:]

    def _recv(self, sock: socket.socket, into: memoryview, deadline: Optional[float]) -> None:
        done = 0
        while done < len(into):
            self._wait(sock, deadline)
            n = sock.recv_into(into[done:], len(into) - done)
            if n == 0:
                raise _Eof(done, len(into))
            done += n

    def exchange(
        self,
        op: str,
        opcode: Opcode,
        session: int,
        args: Sequence[ArgEntry],
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
    ) -> Response:
        """Sends one request with its inputs (``session``: a handle from
        :meth:`open_session`, or 0); reads the answer and, when it is OK, its outputs
        straight into ``outputs`` (byte views, in argument order)."""
        with self._lock:
            interrupted = False
            while True:
                if self._closed:
                    raise LinkError(op, "the device was closed")
                if self._sock is None:
                    self._reconnect(op)
                sid = self.server_id(session)
                if sid is None:
                    raise DeviceError(
                        op, Status.UNKNOWN_KERNEL, "vfpgad restarted and no longer offers this session's kernel"
                    )
                assert self._sock is not None
                try:
                    return self._once(self._sock, op, opcode, sid, args, inputs, outputs, None)
                except LinkError as e:
                    # Whatever failed, the stream may be out of step: never reuse it.
                    self._drop()
                    if interrupted:
                        raise LinkError(
                            op,
                            "{} (again after reconnecting; not tried a third time)".format(e.why),
                            e.cause,
                            e.lost,
                            e.timed_out,
                        ) from None
                    if not e.lost or self._options.reconnect <= 0:
                        raise
                    interrupted = True

    def hello(self) -> None:
        """The first round trip on a new connection, never retried: a refused
        certificate or something else listening there shows at once."""
        with self._lock:
            assert self._sock is not None
            try:
                self._once(self._sock, "nop", Opcode.NOP, 0, [], [], [], None)
            except LinkError:
                self.close()
                raise

    def open_session(self, op: str, kernel: bytes) -> Tuple[Response, int]:
        """``OPEN_SESSION`` on ``kernel``: the answer, and the handle the caller keeps
        across reconnections (0 when the answer is an error)."""
        with self._lock:
            resp = self.exchange(
                op, Opcode.OPEN_SESSION, 0, [(ArgKind.IN, ElemType.U8, len(kernel))], [memoryview(kernel)], []
            )
            if resp.status != 0:
                return resp, 0
            self._last_handle += 1
            self._sessions[self._last_handle] = _Session(kernel, resp.value)
            return resp, self._last_handle

    def close_session(self, handle: int) -> Optional[Response]:
        """``CLOSE_SESSION``; never reconnects (a session dies with its connection).
        ``None`` when there was nothing to close on the current connection."""
        with self._lock:
            s = self._sessions.pop(handle, None)
            sid = handle if s is None else s.sid
            if sid is None or self._sock is None or self._closed:
                return None
            try:
                return self._once(self._sock, "close session", Opcode.CLOSE_SESSION, sid, [], [], [], None)
            except LinkError:
                self._drop()
                return None

    def _reconnect(self, op: str) -> None:
        """Connects again, for up to :attr:`Options.reconnect`, and reopens the sessions."""
        window = self._options.reconnect
        if window <= 0:
            raise LinkError(
                op, "an earlier request on this connection failed half-way (reconnecting is off)"
            )
        deadline = time.monotonic() + window
        pause = 0.02
        while True:
            try:
                sock, _shown, _name = _dial(self._ep, self._options)
            except ConnectError as e:
                why = str(e)
            else:
                try:
                    # Never waits past the window for an answer (nor longer than RESUME_TIME).
                    self._resume(sock, max(0.1, min(RESUME_TIME, deadline - time.monotonic())))
                    self.reconnects += 1
                    return
                except LinkError as e:
                    sock.close()
                    if not e.lost and not e.timed_out:
                        raise LinkError(op, "reopening the sessions after reconnecting: {}".format(e.why), e.cause) from None
                    why = e.why
            if time.monotonic() + pause >= deadline:
                raise LinkError(op, "vfpgad did not come back within {:g} s: {}".format(window, why))
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _resume(self, sock: socket.socket, wait: float) -> None:
        """On a new connection: one round trip (is the server really there?), then every
        session reopened; the connection is kept only if all of it went through."""
        self._once(sock, "nop", Opcode.NOP, 0, [], [], [], wait)
        for s in self._sessions.values():
            resp = self._once(
                sock, "open session", Opcode.OPEN_SESSION, 0,
                [(ArgKind.IN, ElemType.U8, len(s.kernel))], [memoryview(s.kernel)], [], RESUME_TIME,
            )
            # A kernel no longer offered (or allowed): its runs say so.
            s.sid = resp.value if resp.status == 0 else None
        self._sock = sock

    def _once(
        self,
        sock: socket.socket,
        op: str,
        opcode: Opcode,
        sid: int,
        args: Sequence[ArgEntry],
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        timeout: Optional[float],
    ) -> Response:
        """One exchange on ``sock``; every failure a :class:`LinkError`."""
        self._tag = (self._tag + 1) & 0xFFFFFFFFFFFFFFFF
        tag = self._tag
        head = bytearray(abi.request_header(opcode, tag, sid, len(args)))
        for kind, ty, value in args:
            head += abi.arg_entry(kind, ty, value)
        room = sum(len(o) for o in outputs)
        deadline = self._deadline(sum(len(i) for i in inputs) + room, timeout)
        shown_timeout = timeout if timeout is not None else self._options.timeout
        try:
            return self._exchange(sock, op, tag, head, inputs, outputs, room, deadline)
        except (_Expired, socket.timeout) as e:
            raise LinkError(
                op,
                "no complete answer within {:g} s (VFPGA_TIMEOUT_SECS, Options.timeout)".format(shown_timeout or 0),
                e,
                timed_out=True,
            ) from None
        except _Eof as e:
            if e.got == 0 and e.want == abi.RESPONSE.size:
                why = "vfpgad closed the connection"
            else:
                why = "vfpgad closed the connection in the middle of its answer ({} of {} bytes)".format(
                    e.got, e.want
                )
            raise LinkError(op, why, e, lost=True) from None
        except ssl.SSLError as e:
            lost = isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
            raise LinkError(op, _tls_why(e, self._tls_name or ""), e, lost) from None
        except OSError as e:
            raise LinkError(op, os_text(e), e, isinstance(e, _LOST)) from None

    def _refused(self, op: str, resp: Response) -> NoReturn:
        """A tag-0 answer: the server could not trust the request's header or table,
        answered it and closes the stream (docs/protocol.md section 10)."""
        try:
            meaning = abi.Status(resp.status).describe()
        except ValueError:
            meaning = "status {}".format(resp.status)
        detail = " (argument {})".format(resp.detail) if resp.status in (1, 6) else ""
        raise LinkError(
            op,
            "vfpgad refused the request as unreadable ({}{}) and closed the connection".format(
                meaning, detail
            ),
        )

    def _exchange(
        self,
        sock: socket.socket,
        op: str,
        tag: int,
        head: bytearray,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        room: int,
        deadline: Optional[float],
    ) -> Response:
        try:
            self._send(sock, memoryview(head), deadline)
            for i in inputs:
                self._send(sock, i, deadline)
        except (BrokenPipeError, ConnectionResetError):
            # The server may have refused the request and closed: its answer says why.
            raw = bytearray(abi.RESPONSE.size)
            self._recv(sock, memoryview(raw), deadline)
            self._refused(op, Response.decode(bytes(raw)))
        raw = bytearray(abi.RESPONSE.size)
        self._recv(sock, memoryview(raw), deadline)
        resp = Response.decode(bytes(raw))
        if resp.tag == 0 and resp.status != 0:
            self._refused(op, resp)
        if resp.tag != tag:
            raise ProtocolError(
                op, "an answer for tag {} while waiting for {}".format(resp.tag, tag)
            )
        if resp.status != 0:
            return resp
        if resp.written > room:
            raise ProtocolError(
                op, "vfpgad announced {} output bytes for {}".format(resp.written, room)
            )
        left = resp.written
        for o in outputs:
            n = min(left, len(o))
            if n == 0:
                break
            try:
                self._recv(sock, o[:n], deadline)
            except _Eof as e:
                raise _Eof(resp.written - left + e.got, resp.written) from None
            left -= n
        return resp

