"""The device ABI as the stream form carries it (docs/protocol.md): codes, and the
fixed-size little-endian structures, encoded and decoded with :mod:`struct`.

The Rust definitions are in ``proto/src``; every size, offset and value here is theirs.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

ABI_VERSION = 1
REQUEST_MAGIC = 0x51524656  # "VFRQ"
MAX_ARGS = 8
MAX_NAME_LEN = 31
DIM_NONE = 0xFF

CAP_OUT_OF_ORDER = 1 << 0
CAP_LIMITS = 1 << 1
CAP_ENGINE_SIM = 1 << 8
CAP_ENGINE_PL = 1 << 9
CAP_ENGINE_REMOTE = 1 << 10
LIMIT_F_LOAD = 1 << 0
LIMIT_F_ALL_KERNELS = 1 << 1


class Opcode(enum.IntEnum):
    """Operations (docs/protocol.md section 5)."""

    GET_INFO = 1
    LIST_KERNELS = 2
    OPEN_SESSION = 3
    CLOSE_SESSION = 4
    RUN = 5
    LOAD_BITSTREAM = 6
    GET_STATS = 7
    NOP = 8
    UPLOAD_BITSTREAM = 9
    GET_LIMITS = 10


_DESCRIBE = {
    0: "success",
    1: "malformed request",
    2: "unsupported ABI version",
    3: "operation not supported by this device",
    4: "no such kernel",
    5: "unknown or closed session",
    6: "arguments do not match the kernel signature",
    7: "not permitted by device policy",
    8: "device busy, retry later",
    9: "request exceeds a device limit",
    10: "accelerator engine failure",
    11: "kernel timed out",
    12: "link to the remote board is down",
}


class Status(enum.IntEnum):
    """Outcome of a request (docs/protocol.md section 6)."""

    OK = 0
    BAD_REQUEST = 1
    BAD_VERSION = 2
    UNSUPPORTED = 3
    UNKNOWN_KERNEL = 4
    BAD_SESSION = 5
    BAD_ARGUMENT = 6
    PERMISSION = 7
    BUSY = 8
    TOO_LARGE = 9
    ENGINE_ERROR = 10
    TIMEOUT = 11
    LINK_DOWN = 12

    def describe(self) -> str:
        """The short meaning the Rust library prints (``Status::describe``)."""
        return _DESCRIBE[int(self)]

    def __str__(self) -> str:
        return self.name


class ArgKind(enum.IntEnum):
    """Role of an argument."""

    SCALAR = 1
    IN = 2
    OUT = 3


class ElemType(enum.IntEnum):
    """Element type of a scalar or a buffer."""

    U8 = 1
    I16 = 2
    I32 = 3
    U32 = 4
    F32 = 5
    U64 = 6
    I64 = 7
    F64 = 8

    @property
    def size(self) -> int:
        """Bytes per element."""
        return _SIZES[self]

    @property
    def type_name(self) -> str:
        """Lower-case name, as manifests and the CLI write it (``u32``)."""
        return self.name.lower()

    @property
    def code(self) -> str:
        """The :mod:`struct` / :mod:`array` format character of one element."""
        return _CODES[self]


_SIZES = {
    ElemType.U8: 1,
    ElemType.I16: 2,
    ElemType.I32: 4,
    ElemType.U32: 4,
    ElemType.F32: 4,
    ElemType.U64: 8,
    ElemType.I64: 8,
    ElemType.F64: 8,
}
_CODES = {
    ElemType.U8: "B",
    ElemType.I16: "h",
    ElemType.I32: "i",
    ElemType.U32: "I",
    ElemType.F32: "f",
    ElemType.U64: "Q",
    ElemType.I64: "q",
    ElemType.F64: "d",
}

# struct vfpga_req_hdr (48): magic, version, opcode, flags, n_args, tag, session, reserved[2]
REQUEST_HEADER = struct.Struct("<IHHIIQQQQ")
# struct vfpga_arg (16): kind, ty, flags, reserved, value
ARG_ENTRY = struct.Struct("<BBHIQ")
# struct vfpga_resp (40): status, reserved, detail, tag, value, written, duration_ns
RESPONSE = struct.Struct("<HHIQQQQ")
# struct vfpga_info (160)
INFO = struct.Struct("<HHIQQII32s32s32s32s")
# struct vfpga_stats (64)
STATS = struct.Struct("<QQQQQQQII")
# struct vfpga_limits (64)
LIMITS = struct.Struct("<IIQQQQIIIIQ")
# struct vfpga_kernel_desc (232): name, doc, n_args, flags, reserved0, reserved1, args[8]
KERNEL_DESC = struct.Struct("<32s64sBBHI128s")
# struct vfpga_arg_desc (16): name, kind, ty, dims[2], count
ARG_DESC = struct.Struct("<10sBBBBH")

assert REQUEST_HEADER.size == 48 and ARG_ENTRY.size == 16 and RESPONSE.size == 40
assert INFO.size == 160 and STATS.size == 64 and LIMITS.size == 64
assert KERNEL_DESC.size == 232 and ARG_DESC.size == 16


def request_header(opcode: Opcode, tag: int, session: int, n_args: int) -> bytes:
    """A request header."""
    return REQUEST_HEADER.pack(REQUEST_MAGIC, ABI_VERSION, int(opcode), 0, n_args, tag, session, 0, 0)


def arg_entry(kind: ArgKind, ty: ElemType, value: int) -> bytes:
    """One entry of the argument table."""
    return ARG_ENTRY.pack(int(kind), int(ty), 0, 0, value)


@dataclass(frozen=True)
class Response:
    """``struct vfpga_resp``."""

    status: int
    detail: int
    tag: int
    value: int
    written: int
    duration_ns: int

    @classmethod
    def decode(cls, raw: bytes) -> "Response":
        status, _reserved, detail, tag, value, written, duration = RESPONSE.unpack(raw)
        return cls(status, detail, tag, value, written, duration)


def text(field: bytes) -> Optional[str]:
    """A NUL-padded name field as text; ``None`` if it has no NUL or is not UTF-8."""
    end = field.find(b"\0")
    if end < 0:
        return None
    try:
        return field[:end].decode("utf-8")
    except UnicodeDecodeError:
        return None


def name_field(name: str) -> Optional[bytes]:
    """``name`` as the bytes of a 32-byte name field (without padding), if it fits."""
    raw = name.encode("utf-8")
    if not raw or len(raw) > MAX_NAME_LEN or b"\0" in raw:
        return None
    return raw


@dataclass(frozen=True)
class DeviceInfo:
    """``struct vfpga_info``: what ``GET_INFO`` says."""

    abi_version: int
    num_request_queues: int
    num_kernels: int
    capabilities: int
    features: int
    max_sessions: int
    open_sessions: int
    engine: str
    daemon_version: str
    name: str
    bitstream: str

    @classmethod
    def decode(cls, raw: bytes) -> "DeviceInfo":
        f = INFO.unpack(raw)
        names = [text(x) or "?" for x in f[7:11]]
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], f[6], names[0], names[1], names[2], names[3])


@dataclass(frozen=True)
class Stats:
    """``struct vfpga_stats``: counters of the device (all of this guest's streams) or of
    one session."""

    requests: int
    errors: int
    runs: int
    bytes_in: int
    bytes_out: int
    engine_ns: int
    busy: int
    open_sessions: int

    @classmethod
    def decode(cls, raw: bytes) -> "Stats":
        f = STATS.unpack(raw)
        return cls(*f[:8])


@dataclass(frozen=True)
class Limits:
    """``struct vfpga_limits``: the policy this guest runs under, and its use now."""

    max_sessions: int
    max_inflight: int
    max_inflight_bytes: int
    max_request_bytes: int
    rate_runs: int
    rate_bytes: int
    weight: int
    flags: int
    inflight: int
    inflight_bytes: int

    @classmethod
    def decode(cls, raw: bytes) -> "Limits":
        f = LIMITS.unpack(raw)
        return cls(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[10])


@dataclass(frozen=True)
class ArgSig:
    """One argument of a kernel signature."""

    name: str
    kind: ArgKind
    ty: ElemType
    #: Buffers: indices of the scalar arguments whose values multiply the element count.
    dims: Tuple[Optional[int], Optional[int]]
    #: Buffers: constant factor of the element count (at least 1); scalars: 0.
    count: int


@dataclass(frozen=True)
class KernelSig:
    """A kernel's name, description and arguments, as ``LIST_KERNELS`` publishes them."""

    name: str
    doc: str
    args: Tuple[ArgSig, ...]

    def render(self) -> str:
        """``vadd_u32(in a: u32[n], in b: u32[n], out c: u32[n], n: u32)``, as the Rust
        library writes it."""
        parts = []
        for a in self.args:
            if a.kind == ArgKind.SCALAR:
                parts.append("{}: {}".format(a.name, a.ty.type_name))
                continue
            factors: List[str] = []
            if a.count != 1 or all(d is None for d in a.dims):
                factors.append(str(a.count))
            factors.extend(self.args[d].name for d in a.dims if d is not None)
            parts.append(
                "{} {}: {}[{}]".format(a.kind.name.lower(), a.name, a.ty.type_name, "*".join(factors))
            )
        return "{}({})".format(self.name, ", ".join(parts))

    def buffer_elems(self, index: int, scalars: List[Optional[int]]) -> Optional[int]:
        """Elements buffer argument ``index`` holds, given the scalar values by position
        (``None`` where unknown)."""
        a = self.args[index]
        n = a.count
        for d in a.dims:
            if d is None:
                continue
            v = scalars[d]
            if v is None:
                return None
            n *= v
        return n


class SigError(ValueError):
    """A ``LIST_KERNELS`` record that is not a valid signature."""


def decode_kernel(raw: bytes) -> KernelSig:
    """Parses and checks one ``struct vfpga_kernel_desc`` (as ``KernelSig::from_desc``)."""
    name_raw, doc_raw, n_args, _flags, _r0, _r1, args_raw = KERNEL_DESC.unpack(raw)
    name = text(name_raw)
    if name is None or not name:
        raise SigError("kernel name {!r} is empty, too long or not text".format(name_raw))
    doc = text(doc_raw)
    if doc is None:
        raise SigError("kernel `{}`: description is too long or not text".format(name))
    if n_args > MAX_ARGS:
        raise SigError("kernel `{}` has more than {} arguments".format(name, MAX_ARGS))
    args: List[ArgSig] = []
    for i in range(n_args):
        a_name, kind, ty, d0, d1, count = ARG_DESC.unpack_from(args_raw, i * ARG_DESC.size)
        a_text = text(a_name)
        if not a_text:
            raise SigError("kernel `{}`: argument {} has no readable name".format(name, i))
        try:
            k, t = ArgKind(kind), ElemType(ty)
        except ValueError:
            raise SigError("kernel descriptor has an undefined kind or type code") from None
        dims = tuple(None if d == DIM_NONE else d for d in (d0, d1))
        args.append(ArgSig(a_text, k, t, (dims[0], dims[1]), count))
    for a in args:
        if a.kind == ArgKind.SCALAR and (a.count != 0 or a.dims != (None, None)):
            raise SigError("kernel `{}`: argument `{}` has an inconsistent count".format(name, a.name))
        if a.kind != ArgKind.SCALAR and a.count == 0:
            raise SigError("kernel `{}`: argument `{}` has an inconsistent count".format(name, a.name))
        for d in a.dims:
            if d is None:
                continue
            ok = d < len(args) and args[d].kind == ArgKind.SCALAR and args[d].ty in (ElemType.U32, ElemType.U64)
            if not ok:
                raise SigError(
                    "kernel `{}`: argument `{}` has a dimension that is not a u32/u64 scalar argument".format(
                        name, a.name
                    )
                )
    return KernelSig(name, doc, tuple(args))
