"""The README's examples run as shown, against the real servers (only the endpoints
and folders are replaced by the test's)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from servers import Agent, Vfpgad
from test_agent import HASHES

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> List[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_quick_start(daemon: Vfpgad) -> None:
    code = blocks()[0]
    assert '"unix:/run/vfpga/vm0.stream"' in code
    scope: Dict[str, Any] = {}
    exec(code.replace("unix:/run/vfpga/vm0.stream", daemon.unix()), scope)
    a = np.arange(1024, dtype=np.uint32)
    assert np.array_equal(scope["c"], a * 2)
    assert scope["digest"] == hashlib.sha256(b"hello").digest()


def test_the_board_owners_upload(tmp_path: Path, pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = tmp_path / "library"
    library.mkdir()
    board = Agent(pki, library, ["base"])
    try:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "base.toml").write_text(HASHES.replace("hashes", "base"))
        (tmp_path / "base.bit.bin").write_bytes(b"\x01\x02\x03")
        code = "import vfpga\n" + blocks()[1]
        code = code.replace("tls://127.0.0.1:7447", board.tls()).replace("/etc/vfpga/pki", str(pki))
        exec(code, {})
        assert (library / "base.bit.bin").read_bytes() == b"\x01\x02\x03"
        import vfpga
        from conftest import tls_options

        with vfpga.Device.open(board.tls(), tls_options(pki)) as dev:
            assert dev.info().bitstream == "base"
    finally:
        board.stop()
