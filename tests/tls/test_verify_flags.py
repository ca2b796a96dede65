"""Each verification flag changes the outcome of a real handshake."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from gicap.tls.certset import CertificateError, build_server_context, load_certificate_set
from gicap.tls.flags import parse_verification_flags

from .pki import PKI, Issued, pem
from .tlsutil import client_context, connect, write_set


def _handshake(serve, settings, client: Issued, server_ca: bytes, tmp_path: Path):  # type: ignore[no-untyped-def]
    server = serve(settings)
    result = connect(server.port, client_context(server_ca, client, tmp=tmp_path))
    outcome = server.outcome()
    assert outcome.ok == result.ok, (outcome, result)
    return outcome


def test_partial_chain_trusts_an_intermediate_without_its_root(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    intermediate = pki.intermediate("Partial Intermediate")
    client = pki.client("partial", issuer=intermediate)
    ca = pem(intermediate)

    # Without the flag no client chain can be verified ("unable to get issuer
    # certificate" for every one): the set is refused, saying why.
    plain = write_set(tmp_path / "plain", server_cert, ca=ca)
    with pytest.raises(CertificateError, match="holds no root .* PARTIAL_CHAIN"):
        load_certificate_set(plain)

    flagged = write_set(
        tmp_path / "flagged",
        server_cert,
        ca=ca,
        verification_flags=parse_verification_flags("PARTIAL_CHAIN"),
    )
    assert _handshake(serve, flagged, client, pem(pki.root), tmp_path).ok


def test_crl_check_refuses_a_revoked_client(serve, pki: PKI, server_cert: Issued, tmp_path: Path):
    revoked = pki.client("revoked")
    good = pki.client("good")
    crl = pki.crl([revoked])

    unchecked = write_set(tmp_path / "unchecked", server_cert, ca=pem(pki.root), crl=crl)
    assert _handshake(serve, unchecked, revoked, pem(pki.root), tmp_path).ok

    checked = write_set(
        tmp_path / "checked",
        server_cert,
        ca=pem(pki.root),
        crl=crl,
        verification_flags=parse_verification_flags("X509_V_FLAG_CRL_CHECK"),
    )
    outcome = _handshake(serve, checked, revoked, pem(pki.root), tmp_path)
    assert not outcome.ok
    assert "certificate revoked" in outcome.reason
    assert _handshake(serve, checked, good, pem(pki.root), tmp_path).ok


def test_crl_check_accepts_a_der_crl(serve, pki: PKI, server_cert: Issued, tmp_path: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    revoked = pki.client("revoked-der")
    der = x509.load_pem_x509_crl(pki.crl([revoked])).public_bytes(serialization.Encoding.DER)
    settings = write_set(
        tmp_path / "der",
        server_cert,
        ca=pem(pki.root),
        crl=der,
        verification_flags=parse_verification_flags("CRL_CHECK"),
    )
    assert not _handshake(serve, settings, revoked, pem(pki.root), tmp_path).ok


def test_crl_check_all_also_checks_the_intermediate(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    intermediate = pki.intermediate("Revoked Intermediate")
    client = pki.client("under-revoked-intermediate", issuer=intermediate)
    # The root revokes the intermediate; the intermediate revokes nobody.
    crls = pki.crl([intermediate]) + pki.crl(issuer=intermediate)

    leaf_only = write_set(
        tmp_path / "leaf",
        server_cert,
        ca=pem(pki.root),
        crl=crls,
        verification_flags=parse_verification_flags("CRL_CHECK"),
    )
    assert _handshake(serve, leaf_only, client, pem(pki.root), tmp_path).ok

    whole_chain = write_set(
        tmp_path / "all",
        server_cert,
        ca=pem(pki.root),
        crl=crls,
        verification_flags=parse_verification_flags("crl_check_all"),
    )
    outcome = _handshake(serve, whole_chain, client, pem(pki.root), tmp_path)
    assert not outcome.ok
    assert "certificate revoked" in outcome.reason


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("root basicConstraints not critical", "Basic Constraints of CA cert not marked critical"),
        ("leaf without AKID", "Missing Authority Key Identifier"),
    ],
)
def test_x509_strict_refuses_what_lax_verification_accepts(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path, defect: str, message: str
):
    lax = PKI("Lax", strict_root=defect != "root basicConstraints not critical")
    client = lax.client("lax-client", akid=defect != "leaf without AKID")

    plain = write_set(tmp_path / "plain", server_cert, ca=pem(lax.root))
    assert _handshake(serve, plain, client, pem(pki.root), tmp_path).ok

    strict = write_set(
        tmp_path / "strict",
        server_cert,
        ca=pem(lax.root),
        verification_flags=parse_verification_flags("VERIFY_X509_STRICT"),
    )
    outcome = _handshake(serve, strict, client, pem(pki.root), tmp_path)
    assert not outcome.ok
    assert isinstance(outcome.error, ssl.SSLCertVerificationError)
    assert message in outcome.reason


def test_proxy_certificates_need_allow_proxy_certs(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path
):
    owner = pki.client("proxy-owner")
    proxy = pki.proxy(owner)

    plain = write_set(tmp_path / "plain", server_cert, ca=pem(pki.root))
    outcome = _handshake(serve, plain, proxy, pem(pki.root), tmp_path)
    assert not outcome.ok
    assert "proxy certificates not allowed" in outcome.reason

    allowed = write_set(
        tmp_path / "allowed",
        server_cert,
        ca=pem(pki.root),
        verification_flags=parse_verification_flags("ALLOW_PROXY_CERTS"),
    )
    assert _handshake(serve, allowed, proxy, pem(pki.root), tmp_path).ok


def test_configured_flags_reach_the_context(pki: PKI, server_cert: Issued, tmp_path: Path):
    mask = parse_verification_flags("TRUSTED_FIRST|X509_STRICT|PARTIAL_CHAIN")
    settings = write_set(tmp_path / "set", server_cert, ca=pem(pki.root), verification_flags=mask)
    context = build_server_context(settings, load_certificate_set(settings))
    assert context.verify_flags & mask == mask
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_crl_check_without_a_crl_is_refused_at_load(pki: PKI, server_cert: Issued, tmp_path: Path):
    settings = write_set(
        tmp_path / "set",
        server_cert,
        ca=pem(pki.root),
        verification_flags=parse_verification_flags("CRL_CHECK"),
    )
    with pytest.raises(CertificateError, match="crlfile"):
        load_certificate_set(settings)
