from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import GicapProcess


@pytest.fixture
def start_gicap(tmp_path: Path) -> Iterator[Callable[..., GicapProcess]]:
    """Start gicap processes with environment overrides; all are stopped afterwards."""
    started: list[GicapProcess] = []

    def start(env: dict[str, str] | None = None, wait: bool = True) -> GicapProcess:
        proc = GicapProcess(tmp_path, env).start(wait=wait)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def gicap(start_gicap: Callable[..., GicapProcess]) -> GicapProcess:
    return start_gicap()
