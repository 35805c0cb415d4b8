"""A vfpga device reached on a stream: the API of the Rust guest library
(``guest-driver/src/lib.rs``) in Python."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import abi, buffers, endpoint
from .abi import ArgKind, DeviceInfo, ElemType, KernelSig, Limits, Opcode, Response, Stats, Status
from .buffers import In, Out, Scalar
from .connection import ArgEntry, Connection, Options, connect
from .errors import (
    ConnectError,
    DeviceError,
    LinkError,
    ProtocolError,
    UnknownKernelError,
    UsageError,
    VfpgaError,
)

#: The endpoint the Rust library opens when none is given (a device node: this client
#: needs ``VFPGA_DEVICE`` to name a stream).
DEFAULT_DEVICE = "/dev/vfpga0"
#: The environment variable naming the endpoint.
DEVICE_ENV = "VFPGA_DEVICE"
#: A bound on the catalogue this client reads (a server announcing more lies).
MAX_KERNELS = 1 << 16
#: The largest request any vfpgad accepts (``max_request_bytes`` is at most 4 GiB).
MAX_OUTPUT = 1 << 32


@dataclass(frozen=True)
class RunStats:
    """Outcome of a successful run."""

    #: Bytes the device wrote into the output buffers.
    written: int
    #: Engine time, in seconds.
    engine_seconds: float


def _status(raw: int) -> Tuple[Status, str]:
    try:
        return Status(raw), ""
    except ValueError:
        # As the Rust library: a status this ABI version does not define is an engine error.
        return Status.ENGINE_ERROR, "status {} unknown to this client".format(raw)


def _check(op: str, resp: Response) -> None:
    status, extra = _status(resp.status)
    if status != Status.OK:
        raise DeviceError(op, status, extra)


def _name(name: str) -> bytes:
    raw = abi.name_field(name)
    if raw is None:
        raise UsageError("name `{}` must be 1 to 31 bytes without NUL".format(name))
    return raw


class Device:
    """An open vfpga device: a stream to vfpgad (``unix:PATH``, ``vsock://CID:PORT``,
    ``tls://HOST:PORT``) or to a board's ``vfpga-agent`` (``tls://BOARD:7447``).

    Opening does one round trip, so a refused certificate or something else listening
    there shows at once, as :class:`ConnectError`. Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, conn: Connection, ep: endpoint.Endpoint) -> None:
        self._conn = conn
        self.endpoint = ep

    @classmethod
    def open(cls, uri: str, options: Optional[Options] = None) -> "Device":
        """Opens ``uri`` with ``options`` (default: :meth:`Options.from_env`)."""
        ep = endpoint.parse(uri)
        opts = options if options is not None else Options.from_env()
        conn = connect(ep, opts)
        dev = cls(conn, ep)
        try:
            conn.hello()
        except ProtocolError as e:
            conn.close()
            raise ConnectError(conn.endpoint, "{} (is this vfpgad or a vfpga-agent?)".format(e.why), e) from None
        except LinkError as e:
            conn.close()
            why = e.why
            if isinstance(ep, endpoint.Tls) and e.lost:
                why = (
                    "the server closed the connection right after the TLS handshake: vfpgad "
                    "serves no guest on that port whose name this certificate carries ([[guest]] "
                    "tls_name, default the guest's name), or the certificate is revoked "
                    "(vfpga-agent serve --revoked); the server's log says which ({})".format(why)
                )
            raise ConnectError(conn.endpoint, why, e.cause) from None
        except BaseException:
            conn.close()
            raise
        return dev

    @classmethod
    def open_default(cls, options: Optional[Options] = None) -> "Device":
        """The endpoint ``VFPGA_DEVICE`` names (as the Rust library and the CLI)."""
        return cls.open(os.environ.get(DEVICE_ENV, DEFAULT_DEVICE), options)

    def close(self) -> None:
        """Closes the connection; vfpgad closes its sessions."""
        self._conn.close()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Device({!r})".format(str(self.endpoint))

    @property
    def reconnects(self) -> int:
        """How often the connection was made again after it broke (a vfpgad restart)."""
        return self._conn.reconnects

    def _call(
        self,
        op: str,
        opcode: Opcode,
        session: int = 0,
        args: Sequence[ArgEntry] = (),
        inputs: Sequence[memoryview] = (),
        outputs: Sequence[memoryview] = (),
    ) -> Response:
        return self._conn.exchange(op, opcode, session, args, inputs, outputs)

    def _read_struct(self, op: str, opcode: Opcode, size: int, session: int = 0) -> bytes:
        raw = bytearray(size)
        resp = self._call(
            op, opcode, session, [(ArgKind.OUT, ElemType.U8, size)], outputs=[memoryview(raw)]
        )
        _check(op, resp)
        if resp.written != size:
            raise ProtocolError(op, "{} bytes of answer where {} belong".format(resp.written, size))
        return bytes(raw)

    def info(self) -> DeviceInfo:
        """What ``GET_INFO`` says: the guest's name, the engine, the bitstream..."""
        return DeviceInfo.decode(self._read_struct("info", Opcode.GET_INFO, abi.INFO.size))

    def kernels(self) -> List[KernelSig]:
        """The kernel catalogue with signatures."""
        page = 16
        out: List[KernelSig] = []
        while True:
            raw = bytearray(page * abi.KERNEL_DESC.size)
            resp = self._call(
                "list kernels",
                Opcode.LIST_KERNELS,
                0,
                [(ArgKind.SCALAR, ElemType.U32, len(out)), (ArgKind.OUT, ElemType.U8, len(raw))],
                outputs=[memoryview(raw)],
            )
            _check("list kernels", resp)
            if resp.written % abi.KERNEL_DESC.size:
                raise ProtocolError(
                    "list kernels", "{} bytes are no whole kernel records".format(resp.written)
                )
            n = resp.written // abi.KERNEL_DESC.size
            for i in range(n):
                rec = bytes(raw[i * abi.KERNEL_DESC.size:(i + 1) * abi.KERNEL_DESC.size])
                try:
                    out.append(abi.decode_kernel(rec))
                except abi.SigError as e:
                    raise DeviceError(
                        "list kernels", Status.BAD_REQUEST, "unreadable kernel descriptor: {}".format(e)
                    ) from None
            if len(out) > MAX_KERNELS:
                raise ProtocolError("list kernels", "more than {} kernels".format(MAX_KERNELS))
            if n == 0 or len(out) >= resp.value:
                return out

    def kernel(self, name: str) -> KernelSig:
        """The signature of kernel ``name``; :class:`UnknownKernelError` lists the others."""
        all_ = self.kernels()
        for k in all_:
            if k.name == name:
                return k
        raise UnknownKernelError(name, [k.name for k in all_])

    def session(self, name: str) -> "Session":
        """Opens a session on kernel ``name`` (``BITSTREAM/KERNEL`` for a time-shared one)."""
        raw = _name(name)
        sig = self.kernel(name)
        op = "open session on `{}`".format(name)
        resp, handle = self._conn.open_session(op, raw)
        _check(op, resp)
        return Session(self, handle, sig)

    def load_bitstream(self, name: str) -> int:
        """Loads bitstream ``name`` from the server's library; returns its kernel count.
        Sessions opened before on the old catalogue's kernels refuse to run afterwards."""
        raw = _name(name)
        op = "load bitstream `{}`".format(name)
        resp = self._call(
            op, Opcode.LOAD_BITSTREAM, 0, [(ArgKind.IN, ElemType.U8, len(raw))], [memoryview(raw)]
        )
        _check(op, resp)
        return resp.value

    def upload_bitstream(self, name: str, manifest: str, data: Union[bytes, bytearray, memoryview]) -> int:
        """Stores bitstream ``name`` (its TOML manifest and the file the manifest names) in
        a board agent's library (``vfpga-agent serve --library``; an admin certificate).
        vfpgad answers ``UNSUPPORTED``. Returns the bytes stored."""
        raw = _name(name)
        if not isinstance(manifest, str):
            raise UsageError("upload bitstream `{}`: the manifest is TOML text (a str)".format(name))
        text = manifest.encode("utf-8")
        try:
            body = memoryview(data).cast("B")
        except TypeError:
            raise UsageError(
                "upload bitstream `{}`: the bitstream is bytes, not {}".format(name, type(data).__name__)
            ) from None
        op = "upload bitstream `{}`".format(name)
        resp = self._call(
            op,
            Opcode.UPLOAD_BITSTREAM,
            0,
            [(ArgKind.IN, ElemType.U8, len(raw)), (ArgKind.IN, ElemType.U8, len(text)), (ArgKind.IN, ElemType.U8, len(body))],
            [memoryview(raw), memoryview(text), body],
        )
        _check(op, resp)
        return resp.value

    def stats(self) -> Stats:
        """Device-wide statistics (all of this guest's streams)."""
        return Stats.decode(self._read_struct("stats", Opcode.GET_STATS, abi.STATS.size))

    def limits(self) -> Limits:
        """The policy this guest runs under and its use now (``UNSUPPORTED`` from a
        server without per-guest policy)."""
        return Limits.decode(self._read_struct("limits", Opcode.GET_LIMITS, abi.LIMITS.size))

    def nop(self) -> float:
        """One round trip; returns its time in seconds as this process measured it."""
        t = time.monotonic()
        _check("nop", self._call("nop", Opcode.NOP))
        return time.monotonic() - t


class Session:
    """A kernel bound to this connection: :meth:`run` with buffers you own, or
    :meth:`call` for outputs made for you. Closed by :meth:`close` or at the end of a
    ``with`` block (and with the connection)."""

    def __init__(self, dev: Device, sid: int, sig: KernelSig) -> None:
        # Made by Device.session; a value no handle names is sent as a raw session id.
        self._dev = dev
        #: The session's handle on its device (the server's id may change when the
        #: connection is made again).
        self.id = sid
        self.signature = sig
        self._op = "run `{}`".format(sig.name)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # As the Rust library's drop: a session on a connection that is gone is gone
        # with it, and an error on the way out must not hide the one that got us here.
        try:
            self.close()
        except LinkError:
            pass
        except VfpgaError:
            if exc_type is None:
                raise

    def __repr__(self) -> str:
        return "Session({})".format(self.signature.render())

    def close(self) -> None:
        """Closes the session now."""
        if self.id == 0 or self._dev._conn.closed:
            return
        handle, self.id = self.id, 0
        resp = self._dev._conn.close_session(handle)
        if resp is not None:
            _check("close session", resp)

    def stats(self) -> Stats:
        """This session's statistics."""
        return Stats.decode(self._dev._read_struct("stats", Opcode.GET_STATS, abi.STATS.size, self.id))

    def _what(self, i: int) -> str:
        sig = self.signature
        if i < len(sig.args):
            return "{}: argument {} `{}`".format(self._op, i, sig.args[i].name)
        return "{}: argument {}".format(self._op, i)

    def run(self, *args: Any) -> RunStats:
        """Runs the kernel on ``args``, in signature order: buffers (numpy arrays,
        ``array.array``, ``bytes``/``bytearray``/``memoryview``, lists for inputs) and
        scalars (``int``, or ``float`` for f32/f64). Outputs are written in place. An
        argument wrapped in :class:`In`, :class:`Out` or :class:`Scalar` is sent as it
        says, whatever the signature (the device then checks it)."""
        sig = self.signature
        if len(args) > abi.MAX_ARGS:
            raise UsageError("{}: at most {} arguments".format(sig.name, abi.MAX_ARGS))
        table: List[ArgEntry] = []
        ins: List[memoryview] = []
        outs: List[memoryview] = []
        for i, a in enumerate(args):
            what = self._what(i)
            kind = buffers.kind_of(a)
            if kind is None:
                if i >= len(sig.args):
                    raise UsageError(
                        "{}: {} takes {} arguments; wrap extra ones in In, Out or Scalar".format(
                            what, sig.render(), len(sig.args)
                        )
                    )
                kind, ty, value = sig.args[i].kind, sig.args[i].ty, a
            else:
                ty, value = a.ty, (a.value if isinstance(a, Scalar) else a.data)
            if kind == ArgKind.SCALAR:
                table.append((kind, ty, buffers.scalar_bits(value, ty, what)))
            elif kind == ArgKind.IN:
                view = buffers.input_bytes(value, ty, what)
                ins.append(view)
                table.append((kind, ty, len(view)))
            else:
                view = buffers.output_bytes(value, ty, what)
                outs.append(view)
                table.append((kind, ty, len(view)))
        resp = self._dev._call(self._op, Opcode.RUN, self.id, table, ins, outs)
        status, extra = _status(resp.status)
        if status == Status.OK:
            return RunStats(resp.written, resp.duration_ns / 1e9)
        detail = extra
        if status == Status.BAD_ARGUMENT:
            if resp.detail < len(sig.args):
                detail = "argument {} `{}` of {}".format(resp.detail, sig.args[resp.detail].name, sig.render())
            else:
                detail = "argument {}".format(resp.detail)
        raise DeviceError(self._op, status, detail)

    def call(self, *inputs: Any, **named: Any) -> Any:
        """Runs the kernel on its inputs and scalars (in signature order, outputs left
        out, or by name) and returns its output, made to the size the signature gives:
        a numpy array (``array.array`` without numpy), or a tuple of them for kernels
        with several outputs. A scalar that sizes an input may be left out: ``n`` of
        ``vadd_u32`` is the length of ``a``.

        ``sha256.call(data)`` gives the 32-byte digest; ``vadd.call(a, b)`` gives ``c``.
        """
        sig = self.signature
        given: Dict[int, Any] = {}
        slots = [i for i, a in enumerate(sig.args) if a.kind != ArgKind.OUT]
        if len(inputs) > len(slots):
            raise UsageError(
                "call `{}`: {} inputs and scalars given, it takes {}: {}".format(
                    sig.name, len(inputs), len(slots), sig.render()
                )
            )
        for i, v in zip(slots, inputs):
            given[i] = v
        for k, v in named.items():
            idx = next((i for i, a in enumerate(sig.args) if a.name == k), None)
            if idx is None or sig.args[idx].kind == ArgKind.OUT:
                raise UsageError("call `{}`: no input or scalar `{}` in {}".format(sig.name, k, sig.render()))
            if idx in given:
                raise UsageError("call `{}`: `{}` given twice".format(sig.name, k))
            given[idx] = v
        scalars: List[Optional[int]] = [None] * len(sig.args)
        for i, a in enumerate(sig.args):
            if a.kind == ArgKind.SCALAR and i in given and a.ty in (ElemType.U32, ElemType.U64):
                try:
                    scalars[i] = int(given[i])
                except (TypeError, ValueError):
                    pass
        self._infer(given, scalars)
        missing = [a.name for i, a in enumerate(sig.args) if a.kind != ArgKind.OUT and i not in given]
        if missing:
            raise UsageError(
                "call `{}`: give {} ({})".format(sig.name, ", ".join("`{}`".format(m) for m in missing), sig.render())
            )
        for i, a in enumerate(sig.args):
            if a.kind == ArgKind.SCALAR:
                buffers.scalar_bits(given[i], a.ty, self._what(i))  # a clear error before sizing
        args: List[Any] = []
        results: List[Any] = []
        for i, a in enumerate(sig.args):
            if a.kind != ArgKind.OUT:
                args.append(given[i])
                continue
            n = sig.buffer_elems(i, scalars)
            if n is None:
                raise UsageError("call `{}`: cannot size output `{}`".format(sig.name, a.name))
            if n * a.ty.size > MAX_OUTPUT:
                raise UsageError(
                    "call `{}`: output `{}` would be {} bytes, more than any device accepts".format(
                        sig.name, a.name, n * a.ty.size
                    )
                )
            out = buffers.new_output(a.ty, n)
            results.append(out)
            args.append(out)
        self.run(*args)
        return results[0] if len(results) == 1 else tuple(results)

    def _infer(self, given: Dict[int, Any], scalars: List[Optional[int]]) -> None:
        """Fills scalars left out that an input's length determines."""
        sig = self.signature
        progress = True
        while progress:
            progress = False
            for i, a in enumerate(sig.args):
                if a.kind != ArgKind.IN or i not in given:
                    continue
                unknown = [d for d in a.dims if d is not None and d not in given]
                if len(unknown) != 1:
                    continue
                elems = buffers.elements(given[i], a.ty)
                if elems is None:
                    continue
                known = a.count
                for d in a.dims:
                    if d is not None and d != unknown[0]:
                        v = scalars[d]
                        if v is None:
                            break
                        known *= v
                else:
                    d = unknown[0]
                    if known == 0 or elems % known:
                        raise UsageError(
                            "call `{}`: `{}` has {} elements, not a multiple of {}: give `{}`".format(
                                sig.name, a.name, elems, known, sig.args[d].name
                            )
                        )
                    given[d] = elems // known
                    scalars[d] = elems // known
                    progress = True
