"""A client the new certificate set no longer trusts loses its established
connections; every other client keeps its own (the same connection goes on)."""

from __future__ import annotations

import signal
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gicap.tls import CertificateSettings, load_certificate_set
from gicap.tls.recheck import ClientRecheck
from tests.tls.pki import PKI, Issued, pem

from .conftest import StartSecure
from .support import (
    RELOAD_WITHIN,
    Clients,
    SecureGicap,
    install,
    open_tls,
    options_over,
    write_atomic,
)


def _served(tls: ssl.SSLSocket, port: int) -> bool:
    return options_over(tls, port).startswith(b"ICAP/1.0 200")


def _closed_by_server(tls: ssl.SSLSocket) -> bool:
    """The server closes the connection within the reload time, unasked."""
    tls.settimeout(RELOAD_WITHIN * 2)
    try:
        return tls.recv(1) == b""
    except TimeoutError:
        return False
    except (ssl.SSLError, ConnectionError):
        return True


def _with_crl_check(start_secure: StartSecure, pki: PKI, crl: Path) -> SecureGicap:
    """A server checking client certificates against ``crl`` (revoking none yet)."""
    crl.write_bytes(pki.crl([]))
    return start_secure(
        {"GICAP_CERTIFICATE__CRLFILE": str(crl), "CERTIFICATE__VerificationFlags": "CRL_CHECK"}
    )


def test_a_client_revoked_by_a_new_crl_is_disconnected(
    start_secure: StartSecure, clients: Clients, pki: PKI, client_a: Issued, tmp_path: Path
) -> None:
    revoked = pki.client("soon-revoked")
    crl = tmp_path / "crl.pem"
    gicap = _with_crl_check(start_secure, pki, crl)
    port = gicap.secure_port
    with (
        open_tls(port, clients.context(revoked)) as gone,
        open_tls(port, clients.context(client_a)) as kept,
    ):
        assert _served(gone, port) and _served(kept, port)
        mark = gicap.mark()
        write_atomic(crl, pki.crl([revoked]))
        assert _closed_by_server(gone)
        gicap.wait_log(
            r"client .* \(soon-revoked\) is no longer trusted .*: its certificate is revoked "
            r"by the CRL; its connection is closed$",
            since=mark,
        )
        assert _served(kept, port)  # the same connection, still served


def test_a_client_whose_ca_is_removed_is_disconnected(
    start_secure: StartSecure,
    clients: Clients,
    pki: PKI,
    other_pki: PKI,
    client_a: Issued,
) -> None:
    other = other_pki.client("other-client")
    gicap = start_secure(ca=pem(pki.root, other_pki.root))
    port = gicap.secure_port
    with (
        open_tls(port, clients.context(other)) as gone,
        open_tls(port, clients.context(client_a)) as kept,
    ):
        assert _served(gone, port) and _served(kept, port)
        mark = gicap.mark()
        write_atomic(gicap.certdir / "tls-cafile", pki.root.cert_pem())
        assert _closed_by_server(gone)
        gicap.wait_log(
            r"client .* \(other-client\) is no longer trusted .*Other Root CA", since=mark
        )
        assert _served(kept, port)


def test_a_renewed_server_certificate_keeps_every_client(
    start_secure: StartSecure, clients: Clients, pki: PKI, client_a: Issued, server_cert: Issued
) -> None:
    gicap = start_secure()
    port = gicap.secure_port
    with open_tls(port, clients.context(client_a)) as tls:
        assert _served(tls, port)
        mark = gicap.mark()
        install(gicap.certdir, pki.server(), pki.root.cert_pem())
        gicap.wait_log("Secure ICAP certificate loaded", since=mark)
        assert _served(tls, port)
        assert not gicap.lines("no longer trusted", since=mark)


def test_a_transaction_in_progress_is_answered_before_the_close(
    start_secure: StartSecure, clients: Clients, pki: PKI, tmp_path: Path
) -> None:
    revoked = pki.client("busy-client")
    crl = tmp_path / "crl.pem"
    gicap = _with_crl_check(start_secure, pki, crl)
    port = gicap.secure_port
    url = f"icaps://localhost:{port}/echo"
    with open_tls(port, clients.context(revoked)) as tls:
        # (served once first: the server has completed its side of the handshake)
        assert _served(tls, port)
        # The body is half sent when the client's certificate is revoked.
        tls.sendall(
            f"RESPMOD {url} ICAP/1.0\r\nHost: localhost\r\n"
            "Encapsulated: res-hdr=0, res-body=19\r\n\r\n"
            "HTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n".encode()
        )
        mark = gicap.mark()
        write_atomic(crl, pki.crl([revoked]))
        gicap.wait_log(r"\(busy-client\) .* closed after the transaction in progress", since=mark)
        tls.sendall(b"0\r\n\r\n")
        tls.settimeout(5)
        answer = b""
        # (read to the end: the server closes the connection once it has answered;
        # a connection left open would time out here)
        while chunk := tls.recv(65536):
            answer += chunk
    assert answer.startswith(b"ICAP/1.0 200"), answer[:300]
    assert answer.endswith(b"5\r\nhello\r\n0\r\n\r\n")


# ------------------------------------------------------------------ the judgement


def _settings(tmp_path: Path, flags: str = "", allowed: str = "") -> CertificateSettings:
    return CertificateSettings.from_mapping(
        {
            "certfile": str(tmp_path / "tls-server-cert"),
            "keyfile": str(tmp_path / "tls-server-key"),
            "cafile": str(tmp_path / "tls-cafile"),
            "crlfile": str(tmp_path / "crl.pem") if flags else "",
            "verification_flags": flags,
            "allowed_clients": allowed,
        }
    )


def test_recheck_keeps_clients_that_a_new_handshake_would_accept(
    tmp_path: Path, pki: PKI, other_pki: PKI, server_cert: Issued
) -> None:
    intermediate = pki.intermediate("Recheck Intermediate")
    via_intermediate = pki.client("via-intermediate", issuer=intermediate)
    direct = pki.client("direct")
    other = other_pki.client("other")
    settings = _settings(tmp_path)
    install(tmp_path, server_cert, pem(pki.root, other_pki.root, intermediate))
    earlier = load_certificate_set(settings)
    # The intermediate leaves the CA file (its clients send it themselves), the other
    # root goes, and the file is written again with the same root re-encoded.
    install(tmp_path, server_cert, pem(pki.root))
    check = ClientRecheck.between(settings, load_certificate_set(settings), earlier)
    now = datetime.now(UTC)
    assert check.refusal(direct.der(), ("direct",), now) is None
    assert check.refusal(via_intermediate.der(), ("via-intermediate",), now) is None
    assert "Other Root CA" in (check.refusal(other.der(), ("other",), now) or "")
    assert check.refusal(direct.der(), ("direct",), now + timedelta(days=3650)) is not None


def test_recheck_follows_the_earlier_intermediates_to_a_dropped_root(
    tmp_path: Path, pki: PKI, other_pki: PKI, server_cert: Issued
) -> None:
    intermediate = other_pki.intermediate("Other Intermediate")
    client = other_pki.client("under-intermediate", issuer=intermediate)
    settings = _settings(tmp_path)
    install(tmp_path, server_cert, pem(pki.root, other_pki.root, intermediate))
    earlier = load_certificate_set(settings)
    now = datetime.now(UTC)
    for kept, refused in ((pem(pki.root), True), (pem(pki.root, intermediate), False)):
        install(tmp_path, server_cert, kept)
        check = ClientRecheck.between(settings, load_certificate_set(settings), earlier)
        reason = check.refusal(client.der(), ("under-intermediate",), now)
        # (the intermediate still in the file: a cross-signed one may lead elsewhere)
        assert (reason is not None and "Other Root CA" in reason) is refused


def test_recheck_follows_allowed_clients_and_the_crl_flags(
    tmp_path: Path, pki: PKI, server_cert: Issued
) -> None:
    revoked = pki.client("revoked")
    install(tmp_path, server_cert, pki.root.cert_pem())
    (tmp_path / "crl.pem").write_bytes(pki.crl([revoked]))
    now = datetime.now(UTC)
    for flags, expected in (("CRL_CHECK", "revoked by the CRL"), ("X509_STRICT", None)):
        settings = _settings(tmp_path, flags)
        certset = load_certificate_set(settings)
        reason = ClientRecheck.between(settings, certset, certset).refusal(
            revoked.der(), ("revoked",), now
        )
        assert (reason and expected in reason) if expected else reason is None
    settings = _settings(tmp_path, allowed="squid-1")
    certset = load_certificate_set(settings)
    check = ClientRecheck.between(settings, certset, certset)
    assert check.refusal(revoked.der(), ("squid-1",), now) is None
    assert "allowed_clients" in (check.refusal(revoked.der(), ("squid-2",), now) or "")


@pytest.mark.parametrize("moved", [False, True], ids=["same-files", "files-not-there-yet"])
def test_a_client_taken_out_of_allowed_clients_by_a_sighup_is_disconnected(
    tmp_path: Path, pki: PKI, server_cert: Issued, clients: Clients, client_a: Issued, moved: bool
) -> None:
    """Also when the new settings name certificate files that are not there yet (the
    current set keeps serving; its clients are judged by the new settings)."""
    from tests.support import SETTINGS

    from .support import KEYS

    certdir = tmp_path / "tls"
    install(certdir, server_cert, pki.root.cert_pem())
    settings = tmp_path / "settings.toml"

    def write(allowed: str) -> None:
        text = SETTINGS.read_text()
        directory = tmp_path / "later" if moved and allowed != "[]" else certdir
        for key in KEYS:
            text = text.replace(f'"/etc/gicap/tls/{key}"', f'"{directory / key}"')
        settings.write_text(text.replace("allowed_clients = []", f"allowed_clients = {allowed}"))

    write("[]")
    gicap = SecureGicap(tmp_path, certdir, probe=clients.context(client_a))
    for key in ("CERTFILE", "KEYFILE", "CAFILE"):
        del gicap.env[f"GICAP_CERTIFICATE__{key}"]
    gicap.settings = settings
    gicap.start()
    try:
        port = gicap.secure_port
        other = pki.client("client-x")
        with (
            open_tls(port, clients.context(other)) as gone,
            open_tls(port, clients.context(client_a)) as kept,
        ):
            assert _served(gone, port) and _served(kept, port)
            mark = gicap.mark()
            write('["client-a"]')
            assert gicap.proc is not None
            gicap.proc.send_signal(signal.SIGHUP)
            assert _closed_by_server(gone)
            gicap.wait_log(r"\(client-x\) is no longer trusted .*allowed_clients", since=mark)
            assert _served(kept, port)
    finally:
        gicap.stop()


def test_recheck_closes_clients_without_a_certificate_once_one_is_required(
    tmp_path: Path, pki: PKI, server_cert: Issued
) -> None:
    """require_client_cert turned on (by a SIGHUP): a client let in without a
    certificate is refused by a new handshake, and lost its connection only when it
    closed it."""
    install(tmp_path, server_cert, pki.root.cert_pem())
    now = datetime.now(UTC)
    for required in (True, False):
        settings = CertificateSettings.from_mapping(
            {
                "certfile": str(tmp_path / "tls-server-cert"),
                "keyfile": str(tmp_path / "tls-server-key"),
                "cafile": str(tmp_path / "tls-cafile"),
                "require_client_cert": required,
            }
        )
        certset = load_certificate_set(settings)
        reason = ClientRecheck.between(settings, certset, certset).refusal(None, (), now)
        assert (reason is not None and "no client certificate" in reason) is required


def test_recheck_finds_a_revoked_intermediate_with_crl_check_all(
    tmp_path: Path, pki: PKI, server_cert: Issued
) -> None:
    """CRL_CHECK_ALL: a new handshake refuses a client whose intermediate CA (sent
    with its certificate) a CRL of the root revokes; only its own certificate was
    judged."""
    intermediate = pki.intermediate("Revoked Intermediate")
    client = pki.client("under-revoked-intermediate", issuer=intermediate)
    install(tmp_path, server_cert, pki.root.cert_pem())
    (tmp_path / "crl.pem").write_bytes(pki.crl([intermediate]) + pki.crl([], issuer=intermediate))
    now = datetime.now(UTC)
    sent = (intermediate.der(),)
    for flags, refused in (("CRL_CHECK_ALL", True), ("CRL_CHECK", False)):
        settings = _settings(tmp_path, flags)
        certset = load_certificate_set(settings)
        check = ClientRecheck.between(settings, certset, certset)
        reason = check.refusal(client.der(), ("under-revoked-intermediate",), now, sent)
        assert (reason is not None and "Revoked Intermediate" in reason) is refused, reason
    # (a client of another intermediate of the same root is kept)
    other = pki.intermediate("Good Intermediate")
    fine = pki.client("under-good-intermediate", issuer=other)
    settings = _settings(tmp_path, "CRL_CHECK_ALL")
    certset = load_certificate_set(settings)
    check = ClientRecheck.between(settings, certset, certset)
    assert check.refusal(fine.der(), ("x",), now, (other.der(),)) is None
