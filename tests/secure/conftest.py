"""Fixtures: gicap processes with their own certificate files (the PKI is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tls.pki import PKI, Issued

from .support import Clients, SecureGicap, install

StartSecure = Callable[..., SecureGicap]


@pytest.fixture(scope="session")
def client_b(pki: PKI) -> Issued:
    return pki.client("client-b")


@pytest.fixture
def start_secure(
    tmp_path: Path, pki: PKI, server_cert: Issued, clients: Clients, client_a: Issued
) -> Iterator[StartSecure]:
    """Start gicap with a Secure ICAP port; every process is stopped afterwards.

    By default a certificate set (``server_cert``, client CA = the test root) is
    installed first and the start waits until client-a completes an OPTIONS over TLS.
    """
    started: list[SecureGicap] = []

    def start(
        env: dict[str, str] | None = None,
        *,
        server: Issued | None = None,
        ca: bytes | None = None,
        installed: bool = True,
        expect_secure: bool | None = None,
        wait: bool = True,
        probe: bool = True,
        certdir: Path | None = None,
    ) -> SecureGicap:
        directory = certdir or tmp_path / f"tls-{len(started)}"
        directory.mkdir(parents=True, exist_ok=True)
        if installed:
            install(directory, server or server_cert, pki.root.cert_pem() if ca is None else ca)
        proc = SecureGicap(
            tmp_path,
            directory,
            env,
            expect_secure=installed if expect_secure is None else expect_secure,
            probe=clients.context(client_a) if probe else None,
        )
        started.append(proc)
        return proc.start(wait=wait)

    yield start
    for proc in started:
        proc.stop()
