"""vfpgad restarting under a running program (a crash, an upgrade): as with the Rust
library, the next request connects again, reopens the sessions and is sent once more."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import vfpga
from conftest import MAX_REQUEST
from reference import vadd_u32
from servers import Vfpgad


@pytest.fixture
def own(tmp_path: Path, pki: Path) -> Iterator[Vfpgad]:
    d = Vfpgad(tmp_path, pki, MAX_REQUEST)
    yield d
    d.stop()


def test_a_crash_and_restart_is_invisible_to_the_program(own: Vfpgad) -> None:
    a = np.arange(1000, dtype=np.uint32)
    b = np.full(1000, 0xFFFFFFF0, dtype=np.uint32)
    with vfpga.Device.open(own.unix()) as dev:
        vadd, sha = dev.session("vadd_u32"), dev.session("sha256")
        assert np.array_equal(vadd.call(a, b), vadd_u32(a, b))
        own.crash()
        own.start()
        # The request meets the dead connection, connects again, reopens both sessions
        # and is sent once more.
        assert np.array_equal(vadd.call(b, b), vadd_u32(b, b))
        assert bytes(sha.call(b"after")) == hashlib.sha256(b"after").digest()
        assert dev.reconnects == 1
        assert dev.info().open_sessions == 2


def test_a_vfpgad_that_stays_away_is_reported_after_the_window(own: Vfpgad) -> None:
    with vfpga.Device.open(own.unix(), vfpga.Options(reconnect=1.0)) as dev:
        own.crash()
        t = time.monotonic()
        with pytest.raises(vfpga.LinkError) as e:
            dev.nop()
        assert time.monotonic() - t < 10  # tried for about the window, then gave up
    assert str(e.value).startswith(
        "nop: the connection to vfpgad failed: vfpgad did not come back within 1 s: cannot connect to {}: "
        "nothing listens there".format(own.unix())
    )


def test_without_reconnecting_a_broken_connection_fails_every_request(own: Vfpgad) -> None:
    with vfpga.Device.open(own.unix(), vfpga.Options(reconnect=0)) as dev:
        own.crash()
        own.start()
        with pytest.raises(vfpga.LinkError) as first:
            dev.nop()
        assert first.value.lost
        with pytest.raises(vfpga.LinkError) as then:
            dev.nop()
        assert "reconnecting is off" in str(then.value)
        assert dev.reconnects == 0
