"""Fixtures: a test PKI and client certificates (as in tests/secure), and a metrics reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.secure.support import Clients
from tests.tls.pki import PKI, Issued


@pytest.fixture(scope="session")
def pki() -> PKI:
    return PKI("Observability Test")


@pytest.fixture(scope="session")
def other_pki() -> PKI:
    return PKI("Unrelated")


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
    return Clients(tmp_path_factory.mktemp("obs-clients"), pki)
