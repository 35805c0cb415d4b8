from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import Agent, Vfpgad, agent_cli, make_pki  # noqa: E402

import vfpga  # noqa: E402

#: vfpgad's request limit in these tests: a vadd of 512 Ki elements (6 MiB) fits.
MAX_REQUEST = 8 << 20


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates: the server's for 127.0.0.1, ``client.*`` named g1 (vfpgad's TLS
    guest; an admin on the agent), ``runner.*`` (run only), and a stranger's CA."""
    d = make_pki(tmp_path_factory.mktemp("pki"), "g1")
    agent_cli("cert", "client", "--dir", str(d), "--prefix", "runner", "--name", "runner")
    return d


@pytest.fixture(scope="session")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates of another deployment (another CA)."""
    return make_pki(tmp_path_factory.mktemp("stranger"), "g1")


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Vfpgad]:
    d = Vfpgad(tmp_path_factory.mktemp("vfpgad"), pki, MAX_REQUEST)
    yield d
    d.stop()


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Agent]:
    """An agent whose catalogue no test changes (uploads go to their own agent)."""
    a = Agent(pki, tmp_path_factory.mktemp("agent-lib"), [])
    yield a
    a.stop()


def tls_options(pki: Path, prefix: str = "client", **kw: object) -> vfpga.Options:
    files = vfpga.TlsFiles(str(pki / "ca.pem"), str(pki / (prefix + ".pem")), str(pki / (prefix + ".key")))
    return vfpga.Options(tls=files, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["vfpgad-unix", "vfpgad-tls", "agent-tls"])
def device(request: pytest.FixtureRequest, pki: Path) -> Iterator[vfpga.Device]:
    """The same client on each transport and server."""
    if request.param == "vfpgad-unix":
        dev = vfpga.Device.open(request.getfixturevalue("daemon").unix(), vfpga.Options())
    elif request.param == "vfpgad-tls":
        dev = vfpga.Device.open(request.getfixturevalue("daemon").tls(), tls_options(pki))
    else:
        dev = vfpga.Device.open(request.getfixturevalue("agent").tls(), tls_options(pki))
    with dev:
        yield dev
