"""Real loopback handshakes against contexts from build_server_context."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gicap.tls.certset import client_identity, is_client_allowed
from gicap.tls.settings import CertificateSettings

from .pki import PKI, Issued, pem
from .tlsutil import client_context, connect, write_set


def _refused(server_outcome, client_outcome) -> None:  # type: ignore[no-untyped-def]
    assert not server_outcome.ok, "server accepted a handshake it should have refused"
    assert not client_outcome.ok


def test_good_client_is_accepted_over_tls13(serve, pki: PKI, server_cert: Issued, tmp_path: Path):
    settings = write_set(tmp_path / "set", server_cert, ca=pem(pki.root))
    server = serve(settings)
    client = client_context(pem(pki.root), pki.client("squid-1"), tmp=tmp_path)

    result = connect(server.port, client)
    outcome = server.outcome()

    assert outcome.ok, outcome.reason
    assert result.ok, result.error
    assert outcome.version == result.version == "TLSv1.3"
    assert result.server_der == server_cert.der()
    assert client_identity(outcome.peercert) == ["squid-1"]


def test_good_client_is_accepted_over_tls12_with_forward_secret_aead(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    client = client_context(
        pem(pki.root), pki.client(), tmp=tmp_path, maximum=ssl.TLSVersion.TLSv1_2
    )
    raw = connect(server.port, client)
    assert server.outcome().ok
    assert raw.ok and raw.version == "TLSv1.2"


def test_tls12_client_offering_only_cbc_ciphers_is_refused(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    client = client_context(
        pem(pki.root),
        pki.client(),
        tmp=tmp_path,
        maximum=ssl.TLSVersion.TLSv1_2,
        ciphers="ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA",
    )
    result = connect(server.port, client)
    outcome = server.outcome()
    _refused(outcome, result)
    assert "no shared cipher" in str(outcome.error).lower()


def test_client_without_certificate_is_refused(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    result = connect(server.port, client_context(pem(pki.root)))
    outcome = server.outcome()
    _refused(outcome, result)
    assert "peer did not return a certificate" in str(outcome.error)


def test_client_from_another_ca_is_refused(
    serve, pki: PKI, other_pki: PKI, server_cert: Issued, tmp_path: Path
):
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    result = connect(server.port, client_context(pem(pki.root), other_pki.client(), tmp=tmp_path))
    outcome = server.outcome()
    _refused(outcome, result)
    assert isinstance(outcome.error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in outcome.reason


@pytest.mark.parametrize(
    ("not_before", "not_after", "message"),
    [
        (timedelta(days=-30), timedelta(days=-1), "certificate has expired"),
        (timedelta(days=2), timedelta(days=30), "certificate is not yet valid"),
    ],
)
def test_client_outside_validity_is_refused(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path, not_before, not_after, message
):
    now = datetime.now(UTC)
    client = pki.client(not_before=now + not_before, not_after=now + not_after)
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    result = connect(server.port, client_context(pem(pki.root), client, tmp=tmp_path))
    outcome = server.outcome()
    _refused(outcome, result)
    assert message in outcome.reason


def test_client_issued_by_intermediate_sending_its_chain_is_accepted(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    intermediate = pki.intermediate()
    client = pki.client("via-intermediate", issuer=intermediate)
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    result = connect(server.port, client_context(pem(pki.root), client, tmp=tmp_path))
    assert server.outcome().ok
    assert result.ok


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    "maximum", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
def test_legacy_protocol_clients_are_refused(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path, maximum
):
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    # SECLEVEL=0 lets this client really offer the old protocol, so the refusal is ours.
    client = client_context(
        pem(pki.root),
        pki.client(),
        tmp=tmp_path,
        minimum=ssl.TLSVersion.TLSv1,
        maximum=maximum,
        ciphers="DEFAULT:@SECLEVEL=0",
    )
    result = connect(server.port, client)
    outcome = server.outcome()
    _refused(outcome, result)
    assert "unsupported protocol" in str(outcome.error).lower()


def test_min_version_13_refuses_tls12_client_and_accepts_tls13(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    settings = write_set(tmp_path / "set", server_cert, ca=pem(pki.root), min_version="1.3")
    server = serve(settings)
    old = client_context(pem(pki.root), pki.client(), tmp=tmp_path, maximum=ssl.TLSVersion.TLSv1_2)
    result = connect(server.port, old)
    outcome = server.outcome()
    _refused(outcome, result)
    assert "unsupported protocol" in str(outcome.error).lower()

    new = client_context(pem(pki.root), pki.client(), tmp=tmp_path)
    assert connect(server.port, new).ok
    assert server.outcome().ok


def test_optional_client_certificate(
    serve, pki: PKI, other_pki: PKI, server_cert: Issued, tmp_path: Path
):
    settings = write_set(tmp_path / "set", server_cert, ca=pem(pki.root), require_client_cert=False)
    server = serve(settings)

    assert connect(server.port, client_context(pem(pki.root))).ok
    anonymous = server.outcome()
    assert anonymous.ok and client_identity(anonymous.peercert) == []

    assert connect(server.port, client_context(pem(pki.root), pki.client(), tmp=tmp_path)).ok
    assert client_identity(server.outcome().peercert) == ["squid-client"]

    # An offered certificate is still verified.
    bad = client_context(pem(pki.root), other_pki.client(), tmp=tmp_path)
    result = connect(server.port, bad)
    _refused(server.outcome(), result)


def test_without_cafile_no_client_certificate_is_requested(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    server = serve(write_set(tmp_path / "set", server_cert, ca=None))
    assert connect(server.port, client_context(pem(pki.root))).ok
    outcome = server.outcome()
    assert outcome.ok and not outcome.peercert


def test_client_hostname_check_against_server_certificate(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    client = client_context(pem(pki.root), pki.client(), tmp=tmp_path)
    result = connect(server.port, client, hostname="not-the-server.example")
    assert isinstance(result.error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(result.error)


def test_allowed_clients_match_verified_identities(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    server = serve(write_set(tmp_path / "set", server_cert, ca=pem(pki.root)))
    client = pki.client("squid-7", hosts=["proxy-7.example", "proxy-7b.example"])
    assert connect(server.port, client_context(pem(pki.root), client, tmp=tmp_path)).ok
    identities = client_identity(server.outcome().peercert)
    assert identities == ["squid-7", "proxy-7.example", "proxy-7b.example"]

    def allowed(*names: str) -> bool:
        return is_client_allowed(CertificateSettings(allowed_clients=names), identities)

    assert allowed()
    assert allowed("PROXY-7B.example")
    assert allowed("other", "squid-7")
    assert not allowed("squid")
    assert not allowed("*.example")
    assert not is_client_allowed(CertificateSettings(allowed_clients=("squid-7",)), [])
