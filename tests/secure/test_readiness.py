"""/readyz of a real gicap whose Secure ICAP listener is configured but not serving:
not ready, with the reason, until valid certificates arrive; the plain port serves
meanwhile, and /healthz stays 200 (the process is alive: no restart helps)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gicap.client import ICAPClient
from tests.obs.support import get, wait_for
from tests.support import free_port
from tests.tls.pki import PKI, Issued

from .conftest import StartSecure
from .support import Clients, SecureGicap, install, write_atomic

NOT_SERVING = "not ready\nSecure ICAP configured but not serving: "


def _metrics(proc: SecureGicap) -> int:
    return int(proc.env["GICAP_METRICS__PORT"])


def _env(workers: str = "1", **extra: str) -> dict[str, str]:
    return {
        "GICAP_SERVER__WORKERS": workers,
        "GICAP_CDR__WORKERS": "1",
        "GICAP_METRICS__PORT": str(free_port()),
        **extra,
    }


def _wait_not_serving(proc: SecureGicap, reason: str) -> str:
    """The /readyz body once it says Secure ICAP does not serve, checked to hold ``reason``."""
    port = _metrics(proc)

    def said() -> str | None:
        status, body = get(port, "/readyz")
        return body if status == 503 and body.startswith(NOT_SERVING) and reason in body else None

    body: str = wait_for(said, f"/readyz: Secure ICAP not serving ({reason})")
    assert body.count("\n") == 2, body  # "not ready" and one line saying why
    return body


def _plain_serves(proc: SecureGicap) -> None:
    with ICAPClient(f"{proc.url}/echo") as plain:
        assert plain.respmod(b"still served", allow_204=False).body == b"still served"


def _ready_once_installed(
    proc: SecureGicap, pki: PKI, server_cert: Issued, clients: Clients, client_a: Issued
) -> None:
    install(proc.certdir, server_cert, pki.root.cert_pem())
    wait_for(lambda: get(_metrics(proc), "/readyz") == (200, "ready\n"), "ready with certificates")
    # (a server ready on its plain port stays ready: wait for the listeners themselves)
    wait_for(lambda: proc.secure_listeners() == proc.workers, "Secure ICAP listening")
    assert get(_metrics(proc), "/readyz") == (200, "ready\n")
    with clients.icap(proc.secure_port, client_a) as icap:
        assert icap.options().status == 200


@pytest.mark.parametrize("workers", ["1", "2"])
def test_not_ready_while_the_secret_is_half_mounted(
    start_secure: StartSecure,
    pki: PKI,
    server_cert: Issued,
    clients: Clients,
    client_a: Issued,
    workers: str,
) -> None:
    # The server certificate is there, its key not yet: a set being installed (or a
    # Secret missing a key), which proxies already expect to be served.
    proc = start_secure(_env(workers), installed=False)
    write_atomic(proc.certdir / "tls-server-cert", server_cert.cert_pem())
    body = _wait_not_serving(proc, f"{proc.certdir / 'tls-server-key'}: file not found")
    assert get(_metrics(proc), "/healthz") == (200, "ok\n")
    _plain_serves(proc)
    # Still not ready a while later: nothing changed.
    assert get(_metrics(proc), "/readyz") == (503, body)

    _ready_once_installed(proc, pki, server_cert, clients, client_a)
    _plain_serves(proc)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_plain_server_without_certificates_is_ready_and_opens_secure_icap_when_installed(
    start_secure: StartSecure,
    pki: PKI,
    server_cert: Issued,
    clients: Clients,
    client_a: Issued,
    workers: str,
) -> None:
    # No certificate installed (the default paths, nothing there): a plain ICAP
    # server, ready; Secure ICAP opens, without a restart, once a set is installed.
    proc = start_secure(_env(workers), installed=False)
    wait_for(lambda: get(_metrics(proc), "/readyz") == (200, "ready\n"), "ready on plain")
    _plain_serves(proc)
    _ready_once_installed(proc, pki, server_cert, clients, client_a)


def _key_of_another(pki: PKI, server: Issued, certdir: Path) -> None:
    install(certdir, server, pki.root.cert_pem())
    write_atomic(certdir / "tls-server-key", pki.server().key_pem())


def _expired(pki: PKI, server: Issued, certdir: Path) -> None:
    now = datetime.now(UTC)
    old = pki.server(not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    install(certdir, old, pki.root.cert_pem())


def _no_ca_file(pki: PKI, server: Issued, certdir: Path) -> None:
    install(certdir, server, pki.root.cert_pem())
    os.unlink(certdir / "tls-cafile")


def _unreadable_key(pki: PKI, server: Issued, certdir: Path) -> None:
    install(certdir, server, pki.root.cert_pem())
    (certdir / "tls-server-key").unlink()
    (certdir / "tls-server-key").mkdir()  # (unreadable whoever runs the tests, root too)


def _bad_key(pki: PKI, server: Issued, certdir: Path) -> None:
    install(certdir, server, pki.root.cert_pem())
    write_atomic(certdir / "tls-server-key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n")


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        (_key_of_another, "does not match"),
        (_expired, "expired"),
        (_no_ca_file, "client CA file"),
        (_unreadable_key, "cannot read"),
        (_bad_key, "without its END line"),
    ],
)
def test_not_ready_while_the_certificate_set_does_not_load(
    start_secure: StartSecure,
    tmp_path: Path,
    pki: PKI,
    server_cert: Issued,
    clients: Clients,
    client_a: Issued,
    broken: Callable[[PKI, Issued, Path], None],
    reason: str,
) -> None:
    certdir = tmp_path / "broken"
    certdir.mkdir()
    broken(pki, server_cert, certdir)
    proc = start_secure(_env(), installed=False, certdir=certdir)
    _wait_not_serving(proc, reason)
    _plain_serves(proc)
    if (certdir / "tls-server-key").is_dir():
        (certdir / "tls-server-key").rmdir()
    _ready_once_installed(proc, pki, server_cert, clients, client_a)


def test_not_ready_once_the_served_certificate_expires(
    start_secure: StartSecure,
    pki: PKI,
    server_cert: Issued,
    clients: Clients,
    client_a: Issued,
) -> None:
    """A set that expires while it serves: clients refuse it, as they would after a
    restart, so the pod is taken out of the Service until a renewed set arrives."""
    short = pki.server(not_after=datetime.now(UTC) + timedelta(seconds=10))
    proc = start_secure(_env("2"), server=short)
    wait_for(lambda: get(_metrics(proc), "/readyz") == (200, "ready\n"), "ready")
    _wait_not_serving(proc, "expired on")
    _plain_serves(proc)
    _ready_once_installed(proc, pki, server_cert, clients, client_a)


def test_secure_icap_off_on_purpose_keeps_the_plain_port_ready(
    start_secure: StartSecure, tmp_path: Path
) -> None:
    """Without a server certificate in the settings, or with server.secure_port = 0,
    there is no Secure ICAP to wait for: ready on the plain port. A Secure-ICAP-only
    server (server.port = 0) waits for its certificates, and says why."""
    off = start_secure(_env(GICAP_SERVER__SECURE_PORT="0"), installed=False, expect_secure=False)
    unset = start_secure(
        _env(GICAP_CERTIFICATE__CERTFILE="", GICAP_CERTIFICATE__KEYFILE=""),
        installed=False,
        expect_secure=False,
    )
    only = start_secure(_env(GICAP_SERVER__PORT="0"), installed=False, wait=False)
    for proc in (off, unset):
        wait_for(lambda p=proc: get(_metrics(p), "/readyz") == (200, "ready\n"), "ready")
        _plain_serves(proc)
    _wait_not_serving(only, "file not found")
