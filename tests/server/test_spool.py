"""Bodies stay in memory up to the threshold, then go to a file that leaves no trace."""

from __future__ import annotations

import os
from pathlib import Path

from gicap.server.spool import Spool


def test_small_body_stays_in_memory(tmp_path: Path) -> None:
    with Spool(1024, str(tmp_path)) as spool:
        spool.write(b"a" * 1000)
        assert not spool.spooled
        assert spool.getvalue() == b"a" * 1000
    assert os.listdir(tmp_path) == []


def test_large_body_spools_to_an_unnamed_file_in_the_spool_dir(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    spool = Spool(64 * 1024, str(tmp_path))
    for i in range(0, len(data), 7000):
        spool.write(data[i : i + 7000])
    assert spool.spooled and spool.size == len(data)
    pieces = list(spool.chunks(65536))
    assert max(len(p) for p in pieces) <= 65536
    assert b"".join(pieces) == data
    assert b"".join(spool.chunks()) == data  # readable again from the start
    # Unnamed temporary file: nothing to clean up even if the process dies.
    assert os.listdir(tmp_path) == []
    spool.close()
