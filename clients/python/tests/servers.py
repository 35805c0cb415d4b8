"""The real daemons, started for the tests: vfpgad and vfpga-agent built from this
workspace (``VFPGAD``, ``VFPGA_AGENT``, ``VFPGA_CLI`` name the binaries; default
``target/release``), with certificates made by ``vfpga-agent cert``. Readiness is an
event: vfpgad's ``READY=1`` on a notify socket, the agent's "agent listening" log line.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[3]
RELEASE = ROOT / "target" / "release"


def binary(env: str, name: str) -> str:
    path = os.environ.get(env) or str(RELEASE / name)
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            "{} not found: build it with `cargo build --release -p vfpgad -p vfpga-agent -p vfpga` "
            "or set {}".format(path, env)
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_cli(*args: str) -> str:
    out = subprocess.run(
        [binary("VFPGA_AGENT", "vfpga-agent"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=60,
        check=False,
    )
    text = out.stdout.decode()
    if out.returncode != 0:
        raise RuntimeError("vfpga-agent {}: {}".format(" ".join(args), text))
    return text


def make_pki(directory: Path, client_name: str) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client one named ``client_name``."""
    agent_cli(
        "cert", "init", "--dir", str(directory), "--server-name", "127.0.0.1",
        "--server-name", "localhost", "--client-name", client_name,
    )
    return directory


class LogTail:
    """Reads a child's stderr in a thread, keeping the last lines; ``wait_for`` waits
    until a line holds a text."""

    def __init__(self, stream: "IO[bytes]") -> None:
        self.lines: List[str] = []
        self._cond = threading.Condition()
        self._stream = stream
        self._done = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self._stream:
            with self._cond:
                self.lines.append(raw.decode(errors="replace"))
                del self.lines[:-200]
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if self._done or left <= 0:
                    raise RuntimeError("no {!r} in the log:\n{}".format(text, "".join(self.lines)))
                self._cond.wait(left)

    def text(self) -> str:
        with self._cond:
            return "".join(self.lines)


class Process:
    def __init__(self, argv: List[str], env: Optional[Dict[str, str]] = None) -> None:
        full = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
        full.pop("NOTIFY_SOCKET", None)
        full.update(env or {})
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full
        )
        assert self.proc.stderr is not None
        self.log = LogTail(self.proc.stderr)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Vfpgad(Process):
    """vfpgad with guest ``g0`` on a unix socket and ``g1`` on a TLS port (and a unix one,
    ``g1.sock``), requests limited to ``max_request_bytes``."""

    def __init__(self, directory: Path, pki: Path, max_request_bytes: int) -> None:
        self.dir = directory
        self.pki = pki
        self.port = free_port()
        config = directory / "vfpgad.toml"
        config.write_text(
            "[device]\nmax_request_bytes = {max}\n"
            "[tls]\nca = \"{pki}/ca.pem\"\ncert = \"{pki}/server.pem\"\nkey = \"{pki}/server.key\"\n"
            "[[guest]]\nname = \"g0\"\nlisten = [\"unix:{d}/g0.sock\"]\n"
            "[[guest]]\nname = \"g1\"\nlisten = [\"tls:127.0.0.1:{port}\", \"unix:{d}/g1.sock\"]\n".format(
                max=max_request_bytes, pki=pki, d=directory, port=self.port
            )
        )
        self.config = config
        self.start()

    def start(self) -> None:
        """Starts vfpgad and waits for its READY=1."""
        notify = self.dir / "notify"
        if notify.exists():
            notify.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ready:
            ready.bind(str(notify))
            Process.__init__(
                self, [binary("VFPGAD", "vfpgad"), "--config", str(self.config)], {"NOTIFY_SOCKET": str(notify)}
            )
            ready.settimeout(60)
            try:
                while ready.recv(256) != b"READY=1":
                    pass
            except socket.timeout:
                self.stop()
                raise RuntimeError("vfpgad did not report READY=1:\n" + self.log.text()) from None

    def crash(self) -> None:
        """SIGKILL, as a crash: no cleanup, connections reset."""
        self.proc.kill()
        self.proc.wait()

    def unix(self, guest: str = "g0") -> str:
        return "unix:{}/{}.sock".format(self.dir, guest)

    def tls(self) -> str:
        return "tls://127.0.0.1:{}".format(self.port)


class Agent(Process):
    """``vfpga-agent serve`` (sim engine) on a loopback port, with a bitstream library."""

    def __init__(self, pki: Path, library: Path, allow: List[str], extra: Optional[List[str]] = None) -> None:
        self.port = free_port()
        argv = [
            binary("VFPGA_AGENT", "vfpga-agent"), "serve", "--pki", str(pki),
            "--listen", "127.0.0.1:{}".format(self.port), "--library", str(library),
        ] + (extra or [])
        for a in allow:
            argv += ["--allow", a]
        super().__init__(argv)
        try:
            self.log.wait_for("agent listening", 60)
        except RuntimeError:
            self.stop()
            raise

    def tls(self) -> str:
        return "tls://127.0.0.1:{}".format(self.port)


def cli() -> str:
    return binary("VFPGA_CLI", "vfpga")


def which(name: str) -> Optional[str]:
    return shutil.which(name)
