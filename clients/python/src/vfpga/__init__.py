"""Run vfpga accelerator kernels from Python, over the stream form of the protocol.

    import numpy, vfpga

    with vfpga.Device.open("unix:/run/vfpga/vm0.sock_7000") as dev:
        with dev.session("vadd_u32") as vadd:
            c = vadd.call(numpy.arange(4, dtype=numpy.uint32), numpy.full(4, 7, numpy.uint32))

The endpoint names the transport: ``unix:PATH``, ``vsock://CID:PORT`` or
``tls://HOST:PORT`` (vfpgad's stream listeners, docs/transports.md, or a board's
``vfpga-agent``). Errors are those of the Rust guest library, with its messages.
"""

from .abi import ArgKind, ArgSig, DeviceInfo, ElemType, KernelSig, Limits, Opcode, Stats, Status
from .buffers import In, Out, Scalar, have_numpy
from .connection import DEFAULT_TIMEOUT, Options, TlsFiles
from .device import DEFAULT_DEVICE, DEVICE_ENV, Device, RunStats, Session
from .endpoint import parse as parse_endpoint
from .errors import (
    ConnectError,
    DeviceError,
    LinkError,
    ProtocolError,
    UnknownKernelError,
    UsageError,
    VfpgaError,
)

__version__ = "0.1.0"

__all__ = [
    "ArgKind",
    "ArgSig",
    "ConnectError",
    "DEFAULT_DEVICE",
    "DEFAULT_TIMEOUT",
    "DEVICE_ENV",
    "Device",
    "DeviceError",
    "DeviceInfo",
    "ElemType",
    "In",
    "KernelSig",
    "Limits",
    "LinkError",
    "Opcode",
    "Options",
    "Out",
    "ProtocolError",
    "RunStats",
    "Scalar",
    "Session",
    "Stats",
    "Status",
    "TlsFiles",
    "UnknownKernelError",
    "UsageError",
    "VfpgaError",
    "have_numpy",
    "parse_endpoint",
]
