"""A small test PKI built with ``cryptography``: CAs, leaves, proxy certificates, CRLs."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, ObjectIdentifier

Key = ec.EllipticCurvePrivateKey

# RFC 3820 proxyCertInfo: SEQUENCE { ProxyPolicy SEQUENCE { id-ppl-inheritAll } }.
PROXY_CERT_INFO = ObjectIdentifier("1.3.6.1.5.5.7.1.14")
PROXY_INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str, organization: str = "gicap tests") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Issued:
    cert: x509.Certificate
    key: Key
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def subject(self) -> x509.Name:
        return self.cert.subject

    def cert_pem(self, with_chain: bool = False) -> bytes:
        certs = [self.cert, *(self.chain if with_chain else [])]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def write(self, directory: Path, stem: str, with_chain: bool = False) -> tuple[Path, Path]:
        cert_path = directory / f"{stem}-cert.pem"
        key_path = directory / f"{stem}-key.pem"
        cert_path.write_bytes(self.cert_pem(with_chain))
        key_path.write_bytes(self.key_pem())
        key_path.chmod(0o600)
        return cert_path, key_path


def pem(*certs: Issued | x509.Certificate) -> bytes:
    out = b""
    for item in certs:
        cert = item.cert if isinstance(item, Issued) else item
        out += cert.public_bytes(serialization.Encoding.PEM)
    return out


def _issue(
    subject: x509.Name,
    key: Key,
    issuer: Issued | None,
    *,
    not_before: datetime | None,
    not_after: datetime | None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
    akid: bool = True,
    skid: bool = True,
) -> x509.Certificate:
    now = datetime.now(UTC)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
    )
    if skid:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    if akid:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(signer_key, hashes.SHA256())


class PKI:
    """One root CA (optionally lax for X509_STRICT tests) and helpers to issue from it."""

    def __init__(self, label: str = "Test", *, strict_root: bool = True) -> None:
        self.root = self.ca(f"{label} Root CA", issuer=None, bcons_critical=strict_root)

    def ca(
        self,
        common_name: str,
        issuer: Issued | None,
        *,
        bcons_critical: bool = True,
        path_length: int | None = None,
    ) -> Issued:
        key = new_key()
        cert = _issue(
            name(common_name),
            key,
            issuer,
            not_before=None,
            not_after=None,
            extensions=[
                (x509.BasicConstraints(ca=True, path_length=path_length), bcons_critical),
                (_usage(cert_sign=True), True),
            ],
        )
        chain = [issuer.cert, *issuer.chain] if issuer else []
        return Issued(cert, key, chain)

    def intermediate(self, common_name: str = "Test Intermediate CA") -> Issued:
        return self.ca(common_name, self.root)

    def leaf(
        self,
        common_name: str,
        *,
        issuer: Issued | None = None,
        server: bool = False,
        hosts: Sequence[str] = (),
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        akid: bool = True,
        key_usage: bool = True,
    ) -> Issued:
        issuer = issuer or self.root
        key = new_key()
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([eku]), False),
        ]
        if key_usage:
            extensions.append((_usage(cert_sign=False), True))
        sans: list[x509.GeneralName] = []
        for host in hosts or [common_name]:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        extensions.append((x509.SubjectAlternativeName(sans), False))
        cert = _issue(
            name(common_name),
            key,
            issuer,
            not_before=not_before,
            not_after=not_after,
            extensions=extensions,
            akid=akid,
        )
        # The issuing CA(s) below the root travel with the leaf, as clients send them.
        chain = [issuer.cert, *issuer.chain][:-1] if issuer.chain else []
        return Issued(cert, key, chain)

    def server(self, common_name: str = "localhost", **kwargs: object) -> Issued:
        kwargs.setdefault("hosts", ["localhost", "127.0.0.1"])
        return self.leaf(common_name, server=True, **kwargs)  # type: ignore[arg-type]

    def client(self, common_name: str = "squid-client", **kwargs: object) -> Issued:
        return self.leaf(common_name, server=False, **kwargs)  # type: ignore[arg-type]

    def malformed(self, common_name: str = "localhost") -> Issued:
        """A certificate whose basicConstraints extension is not valid DER (cryptography
        raises when its extensions are first read)."""
        key = new_key()
        bad = x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x30\x03\x01\x01")
        cert = _issue(
            name(common_name),
            key,
            self.root,
            not_before=None,
            not_after=None,
            extensions=[(bad, False)],
        )
        return Issued(cert, key, [self.root.cert])

    def proxy(self, owner: Issued, common_name: str = "proxy") -> Issued:
        """An RFC 3820 proxy certificate issued by the end-entity ``owner``."""
        key = new_key()
        subject = x509.Name(
            [
                *owner.subject.rdns,
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
                ),
            ]
        )
        cert = _issue(
            subject,
            key,
            owner,
            not_before=None,
            not_after=None,
            extensions=[
                (x509.UnrecognizedExtension(PROXY_CERT_INFO, PROXY_INHERIT_ALL), True),
                (_usage(cert_sign=False), True),
            ],
            skid=False,
        )
        return Issued(cert, key, [owner.cert, *owner.chain])

    def crl(
        self,
        revoked: Sequence[Issued] = (),
        *,
        issuer: Issued | None = None,
        next_update: datetime | None = None,
    ) -> bytes:
        issuer = issuer or self.root
        now = datetime.now(UTC)
        next_update = next_update or now + timedelta(days=7)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(min(now - timedelta(hours=1), next_update - timedelta(days=1)))
            .next_update(next_update)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                False,
            )
            .add_extension(x509.CRLNumber(1), False)
        )
        for item in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(item.cert.serial_number)
                .revocation_date(now - timedelta(minutes=5))
                .build()
            )
        return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
