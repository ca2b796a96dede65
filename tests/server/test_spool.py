"""Bodies stay in memory up to the threshold, then go to a file that leaves no trace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def test_a_body_past_its_limit_is_counted_not_kept(tmp_path: Path) -> None:
    spool = Spool(64 * 1024, str(tmp_path))
    spool.limit = 200_000
    for _ in range(10):
        spool.write(b"x" * 50_000)
        if spool.size <= 200_000:
            assert not spool.overflowed
    assert spool.overflowed and spool.size == 500_000
    assert not spool.spooled  # (the file and its disk space are gone)
    with pytest.raises(RuntimeError, match="not kept"):
        spool.getvalue()
    spool.close()


def test_a_body_past_its_limit_is_kept_when_the_service_says_so(tmp_path: Path) -> None:
    """Asked with the body's first bytes once the limit is passed (a page the policy
    relays must go out whole), the service may keep it after all."""
    asked: list[bytes] = []
    spool = Spool(64 * 1024, str(tmp_path))
    spool.limit = 100_000
    spool.over_limit = lambda first: asked.append(first) is not None  # (keep it)
    data = os.urandom(300_000)
    for i in range(0, len(data), 30_000):
        spool.write(data[i : i + 30_000])
    assert len(asked) == 1 and asked[0] == data[:65536]
    assert not spool.overflowed and spool.getvalue() == data
    spool.close()
