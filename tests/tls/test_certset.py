"""Loading and checking certificate sets, and building contexts from them."""

from __future__ import annotations

import os
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization

from gicap.tls.certset import CertificateError, build_server_context, load_certificate_set
from gicap.tls.settings import DEFAULT_CIPHERS, CertificateSettings

from .pki import PKI, Issued, pem
from .tlsutil import client_context, connect, write_set


def test_good_set_is_described(pki: PKI, server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root), crl=pki.crl())
    certset = load_certificate_set(settings)

    assert certset.subject == "CN=localhost,O=gicap tests"
    assert certset.not_after == server_cert.cert.not_valid_after_utc
    assert certset.not_after.tzinfo is not None
    assert certset.cert_sha256 == server_cert.cert.fingerprint(hashes.SHA256()).hex()
    assert certset.dns_names == ("localhost",)
    assert certset.ca_subjects == ("CN=Test Root CA,O=gicap tests",)
    assert certset.crl_count == 1 and certset.crl_next_update is not None
    assert certset.sources == tuple(
        os.path.realpath(p)
        for p in (settings.certfile, settings.keyfile, settings.cafile, settings.crlfile)
    )
    assert b"PRIVATE KEY" not in repr(certset).encode()
    assert len(certset.fingerprint()) == 64
    assert load_certificate_set(settings).fingerprint() == certset.fingerprint()


def test_fingerprint_covers_every_file(pki: PKI, server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    before = load_certificate_set(settings).fingerprint()
    Path(settings.cafile).write_bytes(pem(pki.root, PKI("Extra").root))
    assert load_certificate_set(settings).fingerprint() != before


def test_comments_around_pem_blocks_are_ignored(
    pki: PKI, server_cert: Issued, tmp_path: Path
) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    Path(settings.cafile).write_bytes(b"# our client CA\n" + pem(pki.root) + b"\n# end\n")
    assert load_certificate_set(settings).ca_subjects == ("CN=Test Root CA,O=gicap tests",)


def test_combined_certificate_and_key_file(pki: PKI, server_cert: Issued, tmp_path: Path) -> None:
    combined = tmp_path / "server.pem"
    combined.write_bytes(server_cert.cert_pem() + server_cert.key_pem())
    settings = CertificateSettings(certfile=str(combined), keyfile=str(combined), cafile="")
    assert load_certificate_set(settings).subject == "CN=localhost,O=gicap tests"


@pytest.mark.parametrize(
    ("role", "field", "message"),
    [
        ("cert", "certfile", "server certificate {path}: file not found"),
        ("key", "keyfile", "server key {path}: file not found"),
        ("ca", "cafile", "client CA file {path}: file not found"),
        ("crl", "crlfile", "CRL file {path}: file not found"),
    ],
)
def test_missing_file_is_named(
    pki: PKI, server_cert: Issued, tmp_path: Path, role: str, field: str, message: str
) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root), crl=pki.crl())
    path = getattr(settings, field)
    os.unlink(path)
    with pytest.raises(CertificateError) as info:
        load_certificate_set(settings)
    assert str(info.value) == message.format(path=path)


def test_default_settings_without_files_explain_themselves() -> None:
    with pytest.raises(CertificateError, match="/etc/gicap/tls/tls-server-cert: file not found"):
        load_certificate_set(CertificateSettings())


def test_empty_cafile_means_no_client_certificates(server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=None)
    assert settings.cafile == "" and not settings.mutual
    context = build_server_context(settings, load_certificate_set(settings))
    assert context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"\n \n", "file is empty"),
        (b"not a certificate\n", "no PEM CERTIFICATE block"),
    ],
)
def test_unusable_certificate_file(
    server_cert: Issued, tmp_path: Path, content: bytes, message: str
) -> None:
    settings = write_set(tmp_path, server_cert, ca=None)
    Path(settings.certfile).write_bytes(content)
    with pytest.raises(CertificateError, match=f"server certificate .*: {message}"):
        load_certificate_set(settings)


@pytest.mark.parametrize("field", ["certfile", "keyfile", "cafile", "crlfile"])
def test_half_written_file_is_refused(
    pki: PKI, server_cert: Issued, tmp_path: Path, field: str
) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root), crl=pki.crl())
    path = Path(getattr(settings, field))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CertificateError, match="half-written"):
        load_certificate_set(settings)


def test_corrupted_base64_is_refused(server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=None)
    lines = server_cert.cert_pem().splitlines(keepends=True)
    lines[3] = b"!!!!" + lines[3][4:]
    Path(settings.certfile).write_bytes(b"".join(lines))
    with pytest.raises(CertificateError, match="unreadable certificate"):
        load_certificate_set(settings)


def test_mismatched_key_is_refused(pki: PKI, server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    Path(settings.keyfile).write_bytes(pki.server().key_pem())
    with pytest.raises(CertificateError, match="does not match the server certificate"):
        load_certificate_set(settings)


def test_encrypted_key_is_refused(server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=None)
    Path(settings.keyfile).write_bytes(
        server_cert.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertificateError, match="encrypted"):
        load_certificate_set(settings)


def test_key_file_without_key(server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=None)
    Path(settings.keyfile).write_bytes(server_cert.cert_pem())
    with pytest.raises(CertificateError, match="expected one PEM private key, found no"):
        load_certificate_set(settings)


def test_expired_and_future_server_certificates(pki: PKI, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    expired = pki.server(not_before=now - timedelta(days=10), not_after=now - timedelta(days=1))
    settings = write_set(tmp_path / "expired", expired, ca=None)
    with pytest.raises(CertificateError, match="expired on"):
        load_certificate_set(settings)

    current = pki.server()
    settings = write_set(tmp_path / "current", current, ca=None)
    with pytest.raises(CertificateError, match="expired on"):
        load_certificate_set(settings, now=now + timedelta(days=400))
    with pytest.raises(CertificateError, match="not valid before .*check the clock"):
        load_certificate_set(settings, now=now - timedelta(days=5))


def test_server_certificate_for_clients_only_is_refused(pki: PKI, tmp_path: Path) -> None:
    settings = write_set(tmp_path, pki.client("not-a-server"), ca=None)
    with pytest.raises(CertificateError, match="without serverAuth"):
        load_certificate_set(settings)


def test_server_certificate_need_not_chain_to_the_client_ca(
    other_pki: PKI, server_cert: Issued, tmp_path: Path
) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(other_pki.root))
    assert load_certificate_set(settings).ca_subjects == ("CN=Other Root CA,O=gicap tests",)


def test_ca_file_without_a_ca(pki: PKI, server_cert: Issued, tmp_path: Path) -> None:
    leaf_only = pem(pki.client("pinned"))
    settings = write_set(tmp_path / "a", server_cert, ca=leaf_only)
    with pytest.raises(CertificateError, match="is a CA.*PARTIAL_CHAIN"):
        load_certificate_set(settings)
    settings = write_set(tmp_path / "b", server_cert, ca=leaf_only, verification_flags=0x80000)
    load_certificate_set(settings)


def test_unreadable_crl(pki: PKI, server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root), crl=b"\x30\x03\x02\x01\x00")
    with pytest.raises(CertificateError, match="CRL file .*unreadable CRL"):
        load_certificate_set(settings)
    Path(settings.crlfile).write_bytes(pem(pki.root))
    with pytest.raises(CertificateError, match="no PEM X509 CRL block"):
        load_certificate_set(settings)


def test_bad_cipher_string(server_cert: Issued, tmp_path: Path) -> None:
    """Refused with the settings (it would never serve), naming the key."""
    with pytest.raises(ValueError, match="certificate.ciphers 'NO-SUCH-CIPHER'"):
        write_set(tmp_path, server_cert, ca=None, ciphers="NO-SUCH-CIPHER")


def test_context_options(pki: PKI, server_cert: Issued, tmp_path: Path) -> None:
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    context = build_server_context(settings, load_certificate_set(settings))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.verify_mode == ssl.CERT_REQUIRED
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["kea"] == "kx-ecdhe" and c["aead"] for c in tls12)

    optional = write_set(tmp_path / "o", server_cert, ca=pem(pki.root), require_client_cert=False)
    assert build_server_context(optional, load_certificate_set(optional)).verify_mode == (
        ssl.CERT_OPTIONAL
    )


def test_gevent_context_class(pki: PKI, server_cert: Issued, tmp_path: Path) -> None:
    gevent_ssl = pytest.importorskip("gevent.ssl")
    settings = write_set(tmp_path, server_cert, ca=pem(pki.root))
    context = build_server_context(
        settings, load_certificate_set(settings), context_class=gevent_ssl.SSLContext
    )
    assert isinstance(context, gevent_ssl.SSLContext)


def test_key_material_without_memfd_leaves_no_file(
    serve, pki: PKI, server_cert: Issued, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.delattr(os, "memfd_create")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    settings = write_set(tmp_path / "set", server_cert, ca=pem(pki.root), crl=pki.crl())
    server = serve(settings)
    assert list(scratch.iterdir()) == []
    assert connect(server.port, client_context(pem(pki.root), pki.client(), tmp=tmp_path)).ok
    assert server.outcome().ok


class TestSettings:
    def test_defaults(self) -> None:
        settings = CertificateSettings()
        assert settings.cafile == "/etc/gicap/tls/tls-cafile"
        assert settings.require_client_cert and settings.min_version == "1.2"
        assert settings.ciphers == DEFAULT_CIPHERS and settings.verification_flags == 0

    @pytest.mark.parametrize("version", ["1.0", "1.1", "TLSv1.2", "1.4", ""])
    def test_min_version_is_12_or_13(self, version: str) -> None:
        with pytest.raises(ValueError, match="min_version"):
            CertificateSettings(min_version=version)

    def test_from_mapping(self) -> None:
        settings = CertificateSettings.from_mapping(
            {
                "CAFILE": "",
                "verification_flags": "crl_check|x509_strict",
                "allowed_clients": "squid-1, squid-2",
                "min_version": 1.3,
                "crlfile": "/x.crl",
            }
        )
        assert settings.cafile == "" and settings.crlfile == "/x.crl"
        assert settings.verification_flags == int(
            ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
        )
        assert settings.allowed_clients == ("squid-1", "squid-2")
        assert settings.min_version == "1.3"
        assert CertificateSettings.from_mapping({"allowed_clients": ["a"]}).allowed_clients == (
            "a",
        )

    def test_from_mapping_refuses_unknown_keys_and_flags(self) -> None:
        with pytest.raises(ValueError, match="unknown certificate setting"):
            CertificateSettings.from_mapping({"cafiel": ""})
        with pytest.raises(ValueError, match="valid names"):
            CertificateSettings.from_mapping({"verification_flags": "STRICT"})


def test_a_certificate_with_a_malformed_extension_is_refused(
    pki: PKI, server_cert: Issued, tmp_path: Path
) -> None:
    """cryptography reads extensions when first asked: a malformed one raised a
    ValueError that stopped gicap at start-up, and the certificate watch for good."""
    settings = write_set(tmp_path / "a", pki.malformed(), ca=pem(pki.root))
    with pytest.raises(CertificateError, match="unreadable certificate set: ValueError"):
        load_certificate_set(settings)
    # in the client CA file too
    settings = write_set(tmp_path / "b", server_cert, ca=pki.malformed().cert_pem() + pem(pki.root))
    with pytest.raises(CertificateError, match="unreadable certificate set"):
        load_certificate_set(settings)
