"""Endpoint strings, as the Rust library and the ``vfpga`` CLI take them
(``transport/src/uri.rs``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from .errors import UsageError

_FORMS = "use /dev/vfpgaN, vsock://CID:PORT, unix:PATH, tls://HOST:PORT or vchan://[DOMID][/PATH]"


@dataclass(frozen=True)
class Unix:
    """A unix stream socket (vfpgad on this machine, or a VM's userspace vsock socket)."""

    path: str

    def __str__(self) -> str:
        return "unix:" + self.path


@dataclass(frozen=True)
class Vsock:
    """AF_VSOCK to ``cid`` (2 is the host) on ``port``."""

    cid: int
    port: int

    def __str__(self) -> str:
        return "vsock://{}:{}".format(self.cid, self.port)


@dataclass(frozen=True)
class Tls:
    """TCP with mutual TLS."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return "tls://[{}]:{}".format(self.host, self.port)
        return "tls://{}:{}".format(self.host, self.port)


@dataclass(frozen=True)
class DeviceNode:
    """A ``/dev/vfpgaN`` node (the kernel module's ioctls: not spoken by this client)."""

    path: str

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class Vchan:
    """A Xen vchan (not spoken by this client)."""

    domid: int
    path: str

    def __str__(self) -> str:
        return "vchan://{}/{}".format(self.domid, self.path)


Endpoint = Union[Unix, Vsock, Tls, DeviceNode, Vchan]


def _bad(uri: str, reason: str) -> UsageError:
    return UsageError("{!r}: {} ({})".format(uri, reason, _FORMS))


def _number(s: str) -> int:
    if not s.isdigit() or not s.isascii():
        raise ValueError(s)
    return int(s)


def parse(uri: str) -> Endpoint:
    """Parses an endpoint; :class:`UsageError` names the mistake and the forms."""
    if uri.startswith("vsock://"):
        rest = uri[len("vsock://"):]
        if ":" not in rest:
            raise _bad(uri, "vsock needs CID:PORT")
        cid_s, port_s = rest.rsplit(":", 1)
        try:
            cid = _number(cid_s)
        except ValueError:
            raise _bad(uri, "the CID is not a number") from None
        try:
            port = _number(port_s)
        except ValueError:
            raise _bad(uri, "the port is not a number") from None
        if cid >= 1 << 32 or port >= 1 << 32:
            raise _bad(uri, "the CID or port is larger than 32 bits")
        return Vsock(cid, port)
    if uri.startswith("unix:"):
        path = uri[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise _bad(uri, "unix needs a socket path")
        return Unix(path)
    if uri.startswith("tls://"):
        rest = uri[len("tls://"):].rstrip("/")
        if ":" not in rest:
            raise _bad(uri, "tls needs HOST:PORT")
        host, port_s = rest.rsplit(":", 1)
        try:
            port = _number(port_s)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise _bad(uri, "the port is not a number from 1 to 65535")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise _bad(uri, "tls needs a host")
        return Tls(host, port)
    if uri.startswith("vchan:"):
        rest = uri[len("vchan:"):]
        if rest.startswith("//"):
            rest = rest[2:]
        dom, _, path = rest.partition("/")
        try:
            domid = _number(dom) if dom else 0
        except ValueError:
            raise _bad(uri, "the domain id is not a number") from None
        path = path or "vfpga"
        if not re.fullmatch(r"[A-Za-z0-9/_\-@]+", path) or "//" in path or path.endswith("/"):
            raise _bad(uri, "the xenstore path has characters xenstore refuses")
        return Vchan(domid, path)
    if "://" in uri:
        raise _bad(uri, "unknown scheme")
    if not uri:
        raise _bad(uri, "empty")
    return DeviceNode(uri)
