"""Errors, with the messages of the Rust guest library (``guest-driver/src/error.rs``).

Every exception is a :class:`VfpgaError`; :attr:`VfpgaError.status` is the device's
status when the device answered, as ``Error::status()`` is in Rust.
"""

from __future__ import annotations

import errno as _errno
import socket
from typing import Optional, Sequence

from .abi import Status


class VfpgaError(Exception):
    """Why an operation failed."""

    @property
    def status(self) -> Optional[Status]:
        """The device status, if the device answered."""
        return None


class UsageError(VfpgaError, ValueError):
    """The caller's request cannot be expressed (a bad endpoint or name, a buffer of the
    wrong type, too many arguments...). Nothing was sent."""


class ConnectError(VfpgaError):
    """vfpgad (or a board agent) could not be reached on the endpoint, or refused the
    connection: ``cannot connect to ENDPOINT: WHY``."""

    def __init__(self, endpoint: str, why: str, cause: Optional[BaseException] = None) -> None:
        super().__init__("cannot connect to {}: {}".format(endpoint, why))
        self.endpoint = endpoint
        self.why = why
        self.cause = cause


class LinkError(VfpgaError):
    """The connection failed in the middle of a request: ``OP: the connection to vfpgad
    failed: WHY``. The request's outcome is unknown and the connection is not used
    again: open the device anew."""

    def __init__(
        self,
        op: str,
        why: str,
        cause: Optional[BaseException] = None,
        lost: bool = False,
        timed_out: bool = False,
    ) -> None:
        super().__init__("{}: the connection to vfpgad failed: {}".format(op, why))
        self.op = op
        self.why = why
        self.cause = cause
        #: Whether the peer went away (closed or reset the connection), rather than
        #: answering nonsense or too slowly.
        self.lost = lost
        #: Whether no complete answer came within the timeout.
        self.timed_out = timed_out


class ProtocolError(LinkError):
    """The peer answered something the protocol does not allow (an answer for another
    request, more output bytes than asked for, garbage): ``vfpgad broke the protocol``."""

    def __init__(self, op: str, what: str) -> None:
        super().__init__(op, "vfpgad broke the protocol: {}".format(what))


class DeviceError(VfpgaError):
    """The device answered with an error status: ``OP: MEANING (DETAIL)``."""

    def __init__(self, op: str, status: Status, detail: str = "") -> None:
        msg = "{}: {}".format(op, status.describe())
        if detail:
            msg += " ({})".format(detail)
        super().__init__(msg)
        self.op = op
        self._status = status
        self.detail = detail

    @property
    def status(self) -> Optional[Status]:
        return self._status


class UnknownKernelError(DeviceError):
    """No kernel of that name: ``no kernel `NAME` on this device; available: ...``."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        VfpgaError.__init__(
            self, "no kernel `{}` on this device; available: {}".format(name, ", ".join(available))
        )
        self.op = "open session on `{}`".format(name)
        self._status = Status.UNKNOWN_KERNEL
        self.detail = ""
        self.name = name
        self.available = list(available)


def os_text(e: OSError) -> str:
    """An OS error as Rust's ``io::Error`` prints it: ``Connection refused (os error 111)``."""
    if e.errno is not None and e.strerror:
        return "{} (os error {})".format(e.strerror, e.errno)
    return str(e) or type(e).__name__


def connect_hint(endpoint: str, e: OSError) -> str:
    """Why a connection failed, with what to check (``connect_hint`` in Rust)."""
    code = e.errno
    what = ""
    if code in (_errno.ECONNREFUSED, _errno.ENOENT):
        what = "nothing listens there (is vfpgad running with a listen entry for this guest?)"
    elif code in (_errno.ENODEV, _errno.EAFNOSUPPORT) and endpoint.startswith("vsock:"):
        what = (
            "no vsock transport in this guest (load vmw_vsock_virtio_transport; "
            "does the VM have a vsock device?)"
        )
    elif code == _errno.ETIMEDOUT or isinstance(e, socket.timeout):
        what = "no answer (is the host reachable, and does vfpgad listen there?)"
    elif code in (_errno.EACCES, _errno.EPERM):
        what = "permission denied"
    if not what:
        return os_text(e)
    return "{} ({})".format(what, os_text(e) if code is not None else "timed out")
