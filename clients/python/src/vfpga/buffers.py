"""Arguments of a run: Python and numpy values as the bytes and bits the device takes.

numpy is optional: without it, buffers are ``bytes``, ``bytearray``, ``memoryview``,
``array.array`` or lists of numbers, and outputs come back as ``array.array``.
"""

from __future__ import annotations

import array
import operator
import struct
from typing import Any, Optional, Tuple

from .abi import ArgKind, ElemType
from .errors import UsageError

_np: Any
try:  # numpy is optional
    import numpy as _np
except ImportError:  # pragma: no cover - exercised where numpy is absent
    _np = None


def have_numpy() -> bool:
    """Whether numpy can be imported (outputs are numpy arrays then)."""
    return _np is not None


class In:
    """An input buffer, its element type given explicitly (any bytes-like object)."""

    def __init__(self, data: Any, ty: ElemType) -> None:
        self.data = data
        self.ty = ElemType(ty)


class Out:
    """An output buffer written in place, its element type given explicitly."""

    def __init__(self, data: Any, ty: ElemType) -> None:
        self.data = data
        self.ty = ElemType(ty)


class Scalar:
    """A scalar of an explicit type: an int, or a float for ``F32``/``F64``."""

    def __init__(self, value: Any, ty: ElemType) -> None:
        self.value = value
        self.ty = ElemType(ty)


# struct format letter -> (kind, size): kind "i" signed, "u" unsigned, "f" float.
_FMT = {
    "b": "i", "h": "i", "i": "i", "l": "i", "q": "i", "n": "i",
    "B": "u", "H": "u", "I": "u", "L": "u", "Q": "u", "N": "u",
    "f": "f", "d": "f", "e": "f",
}
_TYPE_KIND = {
    ElemType.U8: "u", ElemType.I16: "i", ElemType.I32: "i", ElemType.U32: "u",
    ElemType.F32: "f", ElemType.U64: "u", ElemType.I64: "i", ElemType.F64: "f",
}
_NUMPY_NAMES = {
    ElemType.U8: "uint8", ElemType.I16: "int16", ElemType.I32: "int32", ElemType.U32: "uint32",
    ElemType.F32: "float32", ElemType.U64: "uint64", ElemType.I64: "int64", ElemType.F64: "float64",
}


def numpy_dtype_name(ty: ElemType) -> str:
    """numpy's name for the element type (``uint32``)."""
    return _NUMPY_NAMES[ty]


def _fmt_kind(fmt: str) -> Optional[Tuple[str, int]]:
    f = fmt.lstrip("@=<>!")
    if len(f) != 1 or f not in _FMT:
        return None
    if fmt[:1] == ">" or fmt[:1] == "!":
        return None  # big-endian: the device is little-endian
    return _FMT[f], struct.calcsize(("@" if fmt[:1] in ("", "@") else "<") + f)


def _is_numpy(x: Any) -> bool:
    return _np is not None and isinstance(x, _np.ndarray)


def input_bytes(data: Any, ty: ElemType, what: str) -> memoryview:
    """``data`` as the bytes of an input buffer of ``ty`` elements (copied only when it
    is a list, or a non-contiguous numpy array)."""
    if isinstance(data, (list, tuple)):
        try:
            data = array.array(ty.code, data)
        except (TypeError, OverflowError) as e:
            raise _usage("{}: a list that is not all {} values: {}".format(what, ty.type_name, e)) from None
    if _is_numpy(data):
        _numpy_check(data, ty, what)
        data = _np.ascontiguousarray(data)
    return _bytes_view(data, ty, what, writable=False)


def output_bytes(data: Any, ty: ElemType, what: str) -> memoryview:
    """``data`` (written in place) as the bytes of an output buffer of ``ty`` elements."""
    if _is_numpy(data):
        _numpy_check(data, ty, what)
        if not data.flags.c_contiguous or not data.flags.writeable:
            raise _usage(
                "{}: an output numpy array must be C-contiguous and writable "
                "(numpy.empty(n, dtype=numpy.{}))".format(what, _NUMPY_NAMES[ty])
            )
    return _bytes_view(data, ty, what, writable=True)


def _numpy_check(data: Any, ty: ElemType, what: str) -> None:
    want = _np.dtype(_NUMPY_NAMES[ty]).newbyteorder("<")
    if data.dtype != want:
        raise _usage(
            "{} is {}: got a numpy array of {} (convert with .astype(numpy.{}))".format(
                what, ty.type_name, data.dtype, _NUMPY_NAMES[ty]
            )
        )


def _bytes_view(data: Any, ty: ElemType, what: str, writable: bool) -> memoryview:
    try:
        view = memoryview(data)
    except TypeError:
        raise _usage(
            "{} is a {} buffer: got {} (give a numpy array, array.array, bytes or bytearray{})".format(
                what, ty.type_name, type(data).__name__, "" if writable else ", or a list"
            )
        ) from None
    if writable and view.readonly:
        raise _usage(
            "{} is an output: give a writable buffer (a numpy array, array.array or bytearray), "
            "not {}".format(what, type(data).__name__)
        )
    if not view.c_contiguous:
        raise _usage("{}: the buffer is not contiguous".format(what))
    if view.format not in ("B", "b", "c") or view.itemsize != 1:
        kind = _fmt_kind(view.format)
        if kind != (_TYPE_KIND[ty], ty.size):
            raise _usage(
                "{} is {}: got a buffer of format {!r} ({}-byte elements)".format(
                    what, ty.type_name, view.format, view.itemsize
                )
            )
    if view.nbytes % ty.size:
        # A framing error on a stream (the connection would end): said here instead.
        raise _usage(
            "{} is {}: {} bytes are not a whole number of {}-byte elements".format(
                what, ty.type_name, view.nbytes, ty.size
            )
        )
    return view.cast("B") if view.ndim != 1 or view.format != "B" else view


def scalar_bits(value: Any, ty: ElemType, what: str) -> int:
    """A scalar's 64-bit ``value`` field: floats as their IEEE bits, negative integers of
    signed types in two's complement at the type's width. Bits above the width are the
    device's to refuse (``BAD_ARGUMENT``), as in the Rust library."""
    if ty in (ElemType.F32, ElemType.F64):
        try:
            f = float(value)
            if ty == ElemType.F32:
                return int(struct.unpack("<I", struct.pack("<f", f))[0])
            return int(struct.unpack("<Q", struct.pack("<d", f))[0])
        except (TypeError, ValueError, OverflowError) as e:
            raise _usage("{} is {}: {!r} is not one ({})".format(what, ty.type_name, value, e)) from None
    if isinstance(value, bool) or isinstance(value, float):
        raise _usage("{} is {}: {!r} is not an integer".format(what, ty.type_name, value))
    try:
        v = operator.index(value)
    except TypeError:
        raise _usage("{} is {}: {!r} is not an integer".format(what, ty.type_name, value)) from None
    width = ty.size * 8
    if v < 0:
        if _TYPE_KIND[ty] != "i":
            raise _usage("{} is {}: {} is negative".format(what, ty.type_name, v))
        if v < -(1 << (width - 1)):
            raise _usage("{} is {}: {} does not fit".format(what, ty.type_name, v))
        return v & ((1 << width) - 1)
    if v >= 1 << width:
        # The device would refuse it too, but on a stream as a framing error that ends
        # the connection: said here instead.
        raise _usage("{} is {}: {} does not fit in {} bits".format(what, ty.type_name, v, width))
    return v


def new_output(ty: ElemType, elems: int) -> Any:
    """A zeroed output of ``elems`` elements: a numpy array, or ``array.array``."""
    if _np is not None:
        return _np.zeros(elems, dtype=_NUMPY_NAMES[ty])
    return array.array(ty.code, bytes(elems * ty.size))


def elements(data: Any, ty: ElemType) -> Optional[int]:
    """How many ``ty`` elements an input holds (``None`` if it is no buffer)."""
    if isinstance(data, (list, tuple)):
        return len(data)
    if _is_numpy(data):
        return int(data.size)
    try:
        n = memoryview(data).nbytes
    except TypeError:
        return None
    return n // ty.size if n % ty.size == 0 else None


def kind_of(x: Any) -> Optional[ArgKind]:
    """The kind an explicit wrapper says (``None`` for plain values)."""
    if isinstance(x, In):
        return ArgKind.IN
    if isinstance(x, Out):
        return ArgKind.OUT
    if isinstance(x, Scalar):
        return ArgKind.SCALAR
    return None


def _usage(msg: str) -> UsageError:
    return UsageError(msg)
