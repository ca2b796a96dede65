"""A throw-away PKI for trying Secure ICAP locally (never for production).

Files carry the names a Kubernetes TLS Secret mounts, so the default settings or a
``certificate.*`` override pointing at the directory work unchanged.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_CN = "gicap-dev-client"

# RSA 2048 rather than ECDSA: accepted by every Squid/OpenSSL build still in service.
_KEY_BITS = 2048


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gicap development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in hosts:
        host = host.strip()
        if not host or host.lower() in seen:
            continue
        seen.add(host.lower())
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def _write(path: Path, data: bytes, private: bool) -> Path:
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    # O_CREAT's mode does not apply to a file that already existed.
    os.chmod(path, mode)
    return path


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    days: int,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Tolerates clocks of nearby machines running slightly behind.
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def generate_dev_set(
    directory: Path, hosts: list[str] | None = None, days: int = 825
) -> dict[str, Path]:
    """Write a development CA, server and client certificate into ``directory``.

    Returns the paths keyed ``cafile``, ``certfile``, ``keyfile`` (as in the
    certificate settings), ``client_cert`` and ``client_key``. The CA key is not kept.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    ca_key = _key()
    ca_name = _name("gicap development CA")
    ca_usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    ca_cert = _issue(
        ca_name,
        ca_key,
        ca_name,
        ca_key,
        days,
        [(x509.BasicConstraints(ca=True, path_length=0), True), (ca_usage, True)],
    )

    server_key = _key()
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *(hosts or [])]
    server_cert = _issue(
        _name("localhost"),
        server_key,
        ca_name,
        ca_key,
        days,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_leaf_usage(), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (_san(names), False),
        ],
    )

    client_key = _key()
    client_cert = _issue(
        _name(CLIENT_CN),
        client_key,
        ca_name,
        ca_key,
        days,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_leaf_usage(), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
            (_san([CLIENT_CN]), False),
        ],
    )

    return {
        "cafile": _write(directory / "tls-cafile", _pem(ca_cert), private=False),
        "certfile": _write(directory / "tls-server-cert", _pem(server_cert), private=False),
        "keyfile": _write(directory / "tls-server-key", _key_pem(server_key), private=True),
        "client_cert": _write(directory / "client-cert.pem", _pem(client_cert), private=False),
        "client_key": _write(directory / "client-key.pem", _key_pem(client_key), private=True),
    }


def squid_service_line(
    directory: Path, host: str = "localhost", port: int = 11344, service: str = "echo"
) -> str:
    """A squid.conf ``icap_service`` line using the development client certificate."""
    base = Path(directory).resolve()
    authority = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return (
        f"icap_service gicap_resp respmod_precache icaps://{authority}:{port}/{service} "
        f"tls-cert={base / 'client-cert.pem'} tls-key={base / 'client-key.pem'} "
        f"tls-cafile={base / 'tls-cafile'} bypass=off"
    )


def squid_config(
    directory: Path, host: str = "localhost", port: int = 11344, service: str = "resp-cdr-service"
) -> list[str]:
    """The squid.conf lines that send downloads to ``service`` over Secure ICAP with
    the development client certificate (the service line and its access rule)."""
    return [
        "icap_enable on",
        squid_service_line(directory, host, port, service),
        "adaptation_access gicap_resp allow all",
    ]
