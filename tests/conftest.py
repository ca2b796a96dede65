from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.secure.support import Clients
from tests.support import GicapProcess
from tests.tls.pki import PKI, Issued


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


# One test PKI for every suite that needs certificates (generated, never checked in).
@pytest.fixture(scope="session")
def pki() -> PKI:
    return PKI("Test")


@pytest.fixture(scope="session")
def other_pki() -> PKI:
    return PKI("Other")


@pytest.fixture(scope="session")
def server_cert(pki: PKI) -> Issued:
    return pki.server()


@pytest.fixture(scope="session")
def client_a(pki: PKI) -> Issued:
    return pki.client("client-a")


@pytest.fixture(scope="session")
def expired(pki: PKI) -> Issued:
    now = datetime.now(UTC)
    return pki.client(
        "expired-client", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )


@pytest.fixture(scope="session")
def clients(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Clients:
    """Client certificates and TLS contexts signed by the test PKI."""
    return Clients(tmp_path_factory.mktemp("clients"), pki)
