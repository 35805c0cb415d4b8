"""A board's vfpga-agent, as a PYNQ owner or a host's script reaches it: the same
stream protocol over mutual TLS, plus bitstream upload; what a certificate may do is
the agent's to decide (``cert client --role run|admin``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import vfpga
from conftest import tls_options
from servers import Agent, agent_cli

#: A bitstream for the agent's sim engine: one kernel, `digest`, computed as sha256.
HASHES = """[bitstream]
name = "hashes"
file = "hashes.bit.bin"
[[kernel]]
name = "digest"
sim = "sha256"
args = [
  { name = "data", kind = "in", type = "u8", dims = ["n"] },
  { name = "digest", kind = "out", type = "u8", count = 32 },
  { name = "n", kind = "scalar", type = "u64" },
]
"""


@pytest.fixture
def board(tmp_path: Path, pki: Path) -> Iterator[Agent]:
    a = Agent(pki, tmp_path, ["hashes"])
    yield a
    a.stop()


def test_an_admin_uploads_loads_and_runs_a_bitstream(board: Agent, pki: Path, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 40
    with vfpga.Device.open(board.tls(), tls_options(pki)) as admin:
        assert admin.upload_bitstream("hashes", HASHES, blob) == len(blob)
        assert (tmp_path / "hashes.bit.bin").read_bytes() == blob
        assert (tmp_path / "hashes.toml").read_text() == HASHES
        with admin.session("vadd_u32") as before:
            assert admin.load_bitstream("hashes") == 1
            # The old catalogue's sessions refuse to run after a load.
            with pytest.raises(vfpga.DeviceError) as gone:
                before.call(np.zeros(2, np.uint32), np.zeros(2, np.uint32))
            assert gone.value.status == vfpga.Status.UNKNOWN_KERNEL
        assert admin.info().bitstream == "hashes"
        assert [k.render() for k in admin.kernels()] == ["digest(in data: u8[n], out digest: u8[32], n: u64)"]
        data = np.random.default_rng(7).integers(0, 256, 77_777, dtype=np.uint8)
        with admin.session("digest") as digest:
            assert bytes(digest.call(data)) == hashlib.sha256(data.tobytes()).digest()


def test_a_run_only_certificate_runs_but_neither_uploads_nor_loads(board: Agent, pki: Path, tmp_path: Path) -> None:
    with vfpga.Device.open(board.tls(), tls_options(pki, "runner")) as runner:
        with pytest.raises(vfpga.DeviceError) as up:
            runner.upload_bitstream("hashes", HASHES, b"bits")
        assert up.value.status == vfpga.Status.PERMISSION
        assert str(up.value) == "upload bitstream `hashes`: not permitted by device policy"
        assert not (tmp_path / "hashes.toml").exists()
        with pytest.raises(vfpga.DeviceError) as load:
            runner.load_bitstream("hashes")
        assert load.value.status == vfpga.Status.PERMISSION
        with runner.session("sha256") as s:
            assert bytes(s.call(b"pynq")) == hashlib.sha256(b"pynq").digest()


def test_an_upload_the_board_refuses(board: Agent, pki: Path) -> None:
    with vfpga.Device.open(board.tls(), tls_options(pki)) as admin:
        with pytest.raises(vfpga.DeviceError) as other:
            admin.upload_bitstream("other", HASHES.replace('name = "hashes"', 'name = "other"'), b"x")
        assert other.value.status == vfpga.Status.BAD_ARGUMENT
        with pytest.raises(vfpga.DeviceError) as garbage:
            admin.upload_bitstream("hashes", "not toml [", b"x")
        assert garbage.value.status == vfpga.Status.BAD_ARGUMENT
        admin.nop()  # refused, and still in step (raises otherwise)


def test_a_certificate_of_another_ca_is_refused(board: Agent, stranger: Path) -> None:
    with pytest.raises(vfpga.ConnectError) as e:
        vfpga.Device.open(board.tls(), tls_options(stranger))
    assert "the peer's certificate is not signed by our CA (ca.pem)" in str(e.value)


def test_a_revoked_certificate_is_refused_by_the_board(tmp_path: Path, pki: Path) -> None:
    revoked = tmp_path / "revoked.txt"
    agent_cli("cert", "revoke", "--cert", str(pki / "runner.pem"), "--list", str(revoked))
    board = Agent(pki, tmp_path, [], ["--revoked", str(revoked)])
    try:
        with pytest.raises(vfpga.ConnectError) as e:
            vfpga.Device.open(board.tls(), tls_options(pki, "runner"))
        assert "right after the TLS handshake" in str(e.value) and "revoked" in str(e.value)
        with vfpga.Device.open(board.tls(), tls_options(pki)) as admin:  # not revoked
            admin.nop()  # raises unless still in step
    finally:
        board.stop()
