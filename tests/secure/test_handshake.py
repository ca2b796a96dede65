"""Who the real server lets in: client certificates, TLS versions, CRLs, flags, names."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.tls.pki import PKI, Issued

from .conftest import StartSecure
from .support import Clients, SecureGicap, assert_refused


def _accepted(gicap: SecureGicap, clients: Clients, client: Issued) -> None:
    with clients.icap(gicap.secure_port, client) as icap:
        assert icap.options().status == 200


@pytest.fixture
def gicap(start_secure: StartSecure) -> SecureGicap:
    return start_secure()


def test_good_client_accepted_over_tls_1_2_and_1_3(
    gicap: SecureGicap, clients: Clients, client_a: Issued
) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = clients.context(client_a, minimum=version, maximum=version)
        with socket.create_connection(("127.0.0.1", gicap.secure_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.version() == version.name.replace("_", ".")
                tls.sendall(b"OPTIONS icaps://localhost/echo ICAP/1.0\r\n\r\n")
                assert tls.recv(100).startswith(b"ICAP/1.0 200")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_client_without_certificate_refused(
    gicap: SecureGicap, clients: Clients, version: ssl.TLSVersion
) -> None:
    mark = gicap.mark()
    assert_refused(gicap.secure_port, clients.context(None, maximum=version))
    line = gicap.wait_log("TLS handshake with .* refused", since=mark)
    assert "certificate" in line.lower()


def test_client_from_another_ca_refused(
    gicap: SecureGicap, clients: Clients, other_pki: PKI
) -> None:
    mark = gicap.mark()
    assert_refused(gicap.secure_port, clients.context(other_pki.client("client-a")))
    gicap.wait_log("TLS handshake with .* refused: unable to get local issuer certificate", mark)


def test_expired_client_certificate_refused(
    gicap: SecureGicap, clients: Clients, expired: Issued
) -> None:
    mark = gicap.mark()
    assert_refused(gicap.secure_port, clients.context(expired))
    gicap.wait_log("TLS handshake with .* refused: certificate has expired", since=mark)


def test_tls_1_1_client_refused(gicap: SecureGicap, clients: Clients, client_a: Issued) -> None:
    # The client really offers TLS 1.0/1.1 (security level 0), so the refusal is the server's.
    with pytest.warns(DeprecationWarning):
        ctx = clients.context(
            client_a,
            minimum=ssl.TLSVersion.TLSv1,
            maximum=ssl.TLSVersion.TLSv1_1,
            seclevel0=True,
        )
    mark = gicap.mark()
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", gicap.secure_port), timeout=5) as raw:
            ctx.wrap_socket(raw, server_hostname="localhost").close()
    gicap.wait_log("TLS handshake with .* refused: .*(UNSUPPORTED_PROTOCOL|VERSION)", mark)


def test_min_version_1_3_refuses_a_tls_1_2_client(
    start_secure: StartSecure, clients: Clients, client_a: Issued
) -> None:
    gicap = start_secure({"GICAP_CERTIFICATE__MIN_VERSION": "1.3"})
    mark = gicap.mark()
    ctx = clients.context(client_a, maximum=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", gicap.secure_port), timeout=5) as raw:
            ctx.wrap_socket(raw, server_hostname="localhost").close()
    gicap.wait_log("TLS handshake with .* refused: .*(UNSUPPORTED_PROTOCOL|VERSION)", mark)
    _accepted(gicap, clients, client_a)  # a TLS 1.3 client is served


@pytest.fixture(scope="module")
def revoked(pki: PKI) -> Issued:
    return pki.client("revoked-client")


def _with_crl(pki: PKI, revoked: Issued, tmp_path: Path) -> dict[str, str]:
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl([revoked]))
    return {"GICAP_CERTIFICATE__CRLFILE": str(crl)}


def test_revoked_client_refused_with_crl_check(
    start_secure: StartSecure,
    clients: Clients,
    pki: PKI,
    revoked: Issued,
    client_a: Issued,
    tmp_path: Path,
) -> None:
    # The variable name operators know from the product documentation, unprefixed.
    env = {**_with_crl(pki, revoked, tmp_path), "CERTIFICATE__VerificationFlags": "CRL_CHECK"}
    gicap = start_secure(env)
    mark = gicap.mark()
    assert_refused(gicap.secure_port, clients.context(revoked))
    gicap.wait_log("TLS handshake with .* refused: certificate revoked", since=mark)
    _accepted(gicap, clients, client_a)  # not revoked: still served


def test_revoked_client_accepted_without_crl_check(
    start_secure: StartSecure, clients: Clients, pki: PKI, revoked: Issued, tmp_path: Path
) -> None:
    gicap = start_secure(_with_crl(pki, revoked, tmp_path))
    _accepted(gicap, clients, revoked)


@pytest.fixture(scope="module")
def intermediate(pki: PKI) -> Issued:
    return pki.intermediate("Secure ICAP Test Intermediate")


def test_partial_chain_accepts_a_client_when_only_the_intermediate_is_trusted(
    start_secure: StartSecure, clients: Clients, pki: PKI, intermediate: Issued
) -> None:
    client = pki.client("via-intermediate", issuer=intermediate)
    only_intermediate = intermediate.cert_pem()

    # Without the flag every client was refused ("unable to get issuer certificate")
    # by a server that said it was ready: the set is refused at load, saying why.
    strict = start_secure(ca=only_intermediate, probe=False, expect_secure=False)
    strict.wait_log("Secure ICAP is off: client CA file .* holds no root")
    with pytest.raises(ConnectionRefusedError):  # (the port stays closed)
        socket.create_connection(("127.0.0.1", strict.secure_port), timeout=2)

    partial = start_secure(
        {"GICAP_CERTIFICATE__VERIFICATIONFLAGS": "PARTIAL_CHAIN"},
        ca=only_intermediate,
        probe=False,
    )
    _accepted(partial, clients, client)


def _stops_start_up(gicap: SecureGicap, what: str) -> str:
    """The log of a gicap that exited 2 at start-up because of ``what``."""
    assert gicap.proc is not None
    try:
        code = gicap.proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gicap kept running with {what}")
    assert code == 2
    return gicap.log()


def test_unknown_flag_stops_start_up(start_secure: StartSecure) -> None:
    gicap = start_secure(
        {"GICAP_CERTIFICATE__VERIFICATIONFLAGS": "CRL_CHECK|NO_SUCH_FLAG"}, wait=False
    )
    log = _stops_start_up(gicap, "an unknown verification flag")
    assert "NO_SUCH_FLAG" in log
    for name in ("X509_STRICT", "PARTIAL_CHAIN", "CRL_CHECK", "CRL_CHECK_ALL"):
        assert name in log.split("valid names:", 1)[1]


def test_allowed_clients_answers_403_to_other_names(
    start_secure: StartSecure, clients: Clients, client_a: Issued, client_b: Issued
) -> None:
    gicap = start_secure({"GICAP_CERTIFICATE__ALLOWED_CLIENTS": '["client-a"]'})
    _accepted(gicap, clients, client_a)
    mark = gicap.mark()
    with clients.icap(gicap.secure_port, client_b) as icap:
        refused = icap.options()
    assert refused.status == 403
    assert "client-b" in (refused.headers.get("X-Error") or refused.raw_head.decode())
    line = gicap.wait_log("not in certificate.allowed_clients", since=mark)
    assert "client-b" in line


def test_allowed_clients_as_a_comma_list(
    start_secure: StartSecure, clients: Clients, client_a: Issued, client_b: Issued, pki: PKI
) -> None:
    gicap = start_secure({"GICAP_CERTIFICATE__ALLOWED_CLIENTS": "client-a, client-b"})
    _accepted(gicap, clients, client_a)
    _accepted(gicap, clients, client_b)
    with clients.icap(gicap.secure_port, pki.client("client-c")) as icap:
        assert icap.options().status == 403


def test_a_cipher_string_openssl_refuses_stops_start_up(start_secure: StartSecure) -> None:
    """It started with Secure ICAP off, saying the port would open once a valid
    certificate set was installed, which would never help."""
    gicap = start_secure({"GICAP_CERTIFICATE__CIPHERS": "NO-SUCH-CIPHER"}, wait=False)
    log = _stops_start_up(gicap, "a cipher string OpenSSL refuses")
    assert "certificate.ciphers 'NO-SUCH-CIPHER'" in log


def test_a_ca_certificate_as_the_client_certificate_is_answered_403(
    start_secure: StartSecure, clients: Clients, client_a: Issued, pki: PKI
) -> None:
    """A CA certificate (CA:TRUE, usable for signatures and client authentication)
    used as a client's: OpenSSL's purpose check took it, and it was served as a client
    identity."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from tests.tls.pki import _issue, name, new_key

    key = new_key()
    usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    cert = _issue(
        name("CA Acting As Client"),
        key,
        pki.root,
        not_before=None,
        not_after=None,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (usage, True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ],
    )
    gicap = start_secure()
    mark = gicap.mark()
    with clients.icap(gicap.secure_port, Issued(cert, key, [])) as icap:
        assert icap.options().status == 403
    line = gicap.wait_log("a CA certificate .* not a client's: answering 403", since=mark)
    assert "CA Acting As Client" in line
    _accepted(gicap, clients, client_a)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_client_refusing_the_server_certificate_is_logged_as_the_clients_refusal(
    gicap: SecureGicap,
    clients: Clients,
    client_a: Issued,
    other_pki: PKI,
    tmp_path: Path,
    version: ssl.TLSVersion,
) -> None:
    """A proxy that does not trust gicap's certificate ends the handshake with an
    alert, which OpenSSL names TLSV1_ALERT_UNKNOWN_CA: the log read as if gicap had
    refused the proxy."""
    distrust = tmp_path / "other-ca.pem"
    distrust.write_bytes(other_pki.root.cert_pem())
    ctx = ssl.create_default_context(cafile=str(distrust))
    ctx.minimum_version = ctx.maximum_version = version
    ctx.load_cert_chain(*clients.files(client_a))
    mark = gicap.mark()
    with socket.create_connection(("127.0.0.1", gicap.secure_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    line = gicap.wait_log("TLS handshake with .* refused by the client", since=mark)
    assert "UNKNOWN_CA" in line and "does not accept gicap's server certificate" in line, line
