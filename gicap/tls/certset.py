"""Loading, checking and installing the Secure ICAP certificate set."""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from gicap.tls.flags import FLAGS
from gicap.tls.settings import CertificateSettings


class CertificateError(Exception):
    """The certificate set cannot be used; the message tells an operator why."""


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----\r?\n?", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----")
_CRL_FLAGS = FLAGS["CRL_CHECK"] | FLAGS["CRL_CHECK_ALL"]
_READ_ATTEMPTS = 3


@dataclass(frozen=True)
class CertificateSet:
    """A consistent, checked set of Secure ICAP certificate material.

    The ``*_pem`` fields hold the PEM blocks read from the files (comments and foreign
    blocks dropped; a DER CRL converted to PEM). ``ca_pem``/``crl_pem`` are empty when
    not configured.
    """

    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    ca_pem: bytes = field(repr=False)
    crl_pem: bytes = field(repr=False)
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    cert_sha256: str
    dns_names: tuple[str, ...]
    ca_subjects: tuple[str, ...]
    crl_count: int
    crl_next_update: datetime | None
    sources: tuple[str, ...]

    def fingerprint(self) -> str:
        """SHA-256 over all the material: equal fingerprints mean nothing to reload."""
        digest = hashlib.sha256()
        for blob in (self.cert_pem, self.key_pem, self.ca_pem, self.crl_pem):
            digest.update(len(blob).to_bytes(8, "big"))
            digest.update(blob)
        return digest.hexdigest()

    def days_left(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (self.not_after - now).total_seconds() / 86400

    def describe(self) -> str:
        return (
            f"subject {self.subject!r}, expires {self.not_after:%Y-%m-%d %H:%M:%S} UTC, "
            f"SHA-256 {self.cert_sha256[:16]}..."
        )


def _roles(settings: CertificateSettings) -> list[tuple[str, str]]:
    roles = [("server certificate", settings.certfile), ("server key", settings.keyfile)]
    if settings.cafile:
        roles.append(("client CA file", settings.cafile))
    if settings.crlfile:
        roles.append(("CRL file", settings.crlfile))
    return roles


def watched_paths(settings: CertificateSettings) -> list[str]:
    """The configured files of the set, in a stable order."""
    return [path for _, path in _roles(settings)]


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_once(roles: list[tuple[str, str]]) -> tuple[list[bytes], list[str]] | None:
    """Read every file through its resolved path; None if a path moved meanwhile."""
    real = [os.path.realpath(path) for _, path in roles]
    blobs: list[bytes] = []
    for (role, path), resolved in zip(roles, real, strict=True):
        try:
            with open(resolved, "rb") as handle:
                before = _stat_key(os.fstat(handle.fileno()))
                blob = handle.read()
                after = _stat_key(os.fstat(handle.fileno()))
        except FileNotFoundError:
            if os.path.realpath(path) != resolved:
                return None
            raise CertificateError(f"{role} {path}: file not found") from None
        except OSError as exc:
            raise CertificateError(f"{role} {path}: cannot read: {exc.strerror}") from None
        if before != after:
            return None
        blobs.append(blob)
    # A Kubernetes ..data swap between two reads would mix old and new files.
    if [os.path.realpath(path) for _, path in roles] != real:
        return None
    return blobs, real


def _read_consistent(roles: list[tuple[str, str]]) -> tuple[list[bytes], list[str]]:
    for _ in range(_READ_ATTEMPTS):
        result = _read_once(roles)
        if result is not None:
            return result
    raise CertificateError(
        "certificate files kept changing while being read "
        f"({', '.join(path for _, path in roles)}); the next change will be retried"
    )


def _pem_blocks(role: str, path: str, data: bytes) -> list[tuple[str, bytes]]:
    if not data.strip():
        raise CertificateError(f"{role} {path}: file is empty")
    blocks = [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]
    if len(_PEM_BEGIN.findall(data)) != len(blocks):
        raise CertificateError(
            f"{role} {path}: PEM block without its END line (file truncated or half-written)"
        )
    return blocks


def _normalize(block: bytes) -> bytes:
    return block if block.endswith(b"\n") else block + b"\n"


def _load_certs(role: str, path: str, data: bytes) -> tuple[list[x509.Certificate], bytes]:
    pems = [_normalize(b) for kind, b in _pem_blocks(role, path, data) if kind == "CERTIFICATE"]
    if not pems:
        raise CertificateError(f"{role} {path}: no PEM CERTIFICATE block found")
    try:
        certs = [x509.load_pem_x509_certificate(pem) for pem in pems]
    except ValueError as exc:
        raise CertificateError(f"{role} {path}: unreadable certificate: {exc}") from None
    return certs, b"".join(pems)


def _load_key(path: str, data: bytes) -> tuple[Any, bytes]:
    role = "server key"
    pems = [_normalize(b) for kind, b in _pem_blocks(role, path, data) if "PRIVATE KEY" in kind]
    if len(pems) != 1:
        found = "no" if not pems else str(len(pems))
        raise CertificateError(f"{role} {path}: expected one PEM private key, found {found}")
    try:
        key = serialization.load_pem_private_key(pems[0], password=None)
    except TypeError:
        raise CertificateError(
            f"{role} {path}: the private key is encrypted; install it without a passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{role} {path}: unreadable private key: {exc}") from None
    return key, pems[0]


def _load_crls(path: str, data: bytes) -> tuple[list[x509.CertificateRevocationList], bytes]:
    role = "CRL file"
    try:
        if _PEM_BEGIN.search(data) is None and data.strip():
            crl = x509.load_der_x509_crl(data)
            pems = [crl.public_bytes(serialization.Encoding.PEM)]
        else:
            pems = [
                _normalize(b) for kind, b in _pem_blocks(role, path, data) if kind == "X509 CRL"
            ]
        crls = [x509.load_pem_x509_crl(pem) for pem in pems]
    except ValueError as exc:
        raise CertificateError(f"{role} {path}: unreadable CRL: {exc}") from None
    if not crls:
        raise CertificateError(f"{role} {path}: no PEM X509 CRL block found")
    return crls, b"".join(pems)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_server_cert(
    path: str, cert: x509.Certificate, key: Any, keypath: str, now: datetime
) -> None:
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise CertificateError(
            f"server key {keypath} does not match the server certificate {path} "
            "(one of them was replaced without the other?)"
        )
    if now < cert.not_valid_before_utc:
        raise CertificateError(
            f"server certificate {path} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC (check the clock)"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            f"server certificate {path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise CertificateError(
            f"server certificate {path} has an extendedKeyUsage without serverAuth; "
            "ICAP clients would refuse it"
        )


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.DNSName))


def load_certificate_set(
    settings: CertificateSettings, now: datetime | None = None
) -> CertificateSet:
    """Read and check the whole certificate set, or raise ``CertificateError``.

    Files are read through their resolved paths, and the read is repeated if a path
    resolves elsewhere afterwards, so a Kubernetes ``..data`` swap never yields a set
    mixing old and new files. The set is refused when a file is missing, empty or
    truncated, the key does not match the certificate, the server certificate is
    expired or not yet valid, the CA file holds no CA certificate, a CRL is
    unreadable, CRL checking is enabled without a CRL, or OpenSSL rejects the result.
    The server certificate is not required to chain to the CA file: that file
    authenticates *clients*.
    """
    try:
        return _load_certificate_set(settings, now)
    except CertificateError:
        raise
    except Exception as exc:
        # cryptography reads a certificate's extensions when they are first asked
        # for: a malformed or duplicated one raises there (ValueError,
        # DuplicateExtension...). Any such failure is a set that cannot be used.
        raise CertificateError(f"unreadable certificate set: {type(exc).__name__}: {exc}") from None


def _load_certificate_set(settings: CertificateSettings, now: datetime | None) -> CertificateSet:
    """``load_certificate_set``, raising what the parsers raise."""
    now = now or datetime.now(UTC)
    if not settings.certfile or not settings.keyfile:
        raise CertificateError("certificate.certfile and certificate.keyfile must both be set")
    if settings.verification_flags & _CRL_FLAGS and not settings.crlfile:
        raise CertificateError(
            "verification flags include CRL checking but certificate.crlfile is not set; "
            "every client would be refused"
        )
    roles = _roles(settings)
    blobs, real = _read_consistent(roles)
    data = dict(zip((role for role, _ in roles), blobs, strict=True))

    certs, cert_pem = _load_certs(
        "server certificate", settings.certfile, data["server certificate"]
    )
    key, key_pem = _load_key(settings.keyfile, data["server key"])
    leaf = certs[0]
    _check_server_cert(settings.certfile, leaf, key, settings.keyfile, now)

    ca_pem = b""
    ca_subjects: tuple[str, ...] = ()
    if settings.cafile:
        cas, ca_pem = _load_certs("client CA file", settings.cafile, data["client CA file"])
        partial = settings.verification_flags & FLAGS["PARTIAL_CHAIN"]
        if not any(_is_ca(ca) for ca in cas) and not partial:
            raise CertificateError(
                f"client CA file {settings.cafile}: none of its {len(cas)} certificate(s) "
                "is a CA (basicConstraints CA:TRUE); trusting a non-CA needs PARTIAL_CHAIN"
            )
        if not any(ca.subject == ca.issuer for ca in cas) and not partial:
            # (OpenSSL builds a chain up to a self-signed root of the trust store: with
            # an intermediate alone every client was refused, "unable to get issuer
            # certificate", while the server said it was ready)
            raise CertificateError(
                f"client CA file {settings.cafile}: it holds no root (self-signed) "
                "certificate, so no client chain can be verified; add the root, or set "
                "PARTIAL_CHAIN in certificate.VerificationFlags to trust an intermediate "
                "alone"
            )
        ca_subjects = tuple(ca.subject.rfc4514_string() for ca in cas)

    crl_pem = b""
    crls: list[x509.CertificateRevocationList] = []
    if settings.crlfile:
        crls, crl_pem = _load_crls(settings.crlfile, data["CRL file"])
    next_updates = [crl.next_update_utc for crl in crls if crl.next_update_utc is not None]

    certset = CertificateSet(
        cert_pem=cert_pem,
        key_pem=key_pem,
        ca_pem=ca_pem,
        crl_pem=crl_pem,
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        cert_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        dns_names=_dns_names(leaf),
        ca_subjects=ca_subjects,
        crl_count=len(crls),
        crl_next_update=min(next_updates) if next_updates else None,
        sources=tuple(real),
    )
    # OpenSSL has the last word (key too weak for its security level, bad cipher string…).
    build_server_context(settings, certset)
    return certset


@contextmanager
def _private_paths(*blobs: bytes) -> Iterator[list[str]]:
    """Expose in-memory PEM to OpenSSL, which only loads keys and CRLs from paths.

    On Linux the bytes live in anonymous memory files reached through /proc, so the
    key never touches a file system; elsewhere in a 0700 temporary directory that is
    removed as soon as OpenSSL has read it.
    """
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fds: list[int] = []
        try:
            for blob in blobs:
                fd = os.memfd_create("gicap-tls", os.MFD_CLOEXEC)
                fds.append(fd)
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
            yield [f"/proc/self/fd/{fd}" for fd in fds]
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="gicap-tls-") as directory:
        paths = []
        for index, blob in enumerate(blobs):
            path = os.path.join(directory, f"{index}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
            paths.append(path)
        yield paths


def build_server_context(
    settings: CertificateSettings,
    certset: CertificateSet,
    context_class: type[ssl.SSLContext] = ssl.SSLContext,
) -> ssl.SSLContext:
    """A server context for new Secure ICAP handshakes, built from the in-memory set.

    Pass ``gevent.ssl.SSLContext`` as ``context_class`` under gevent. Raises
    ``CertificateError`` when OpenSSL refuses the material or the settings.
    """
    context = context_class(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if settings.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= (
        ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    )
    try:
        context.set_ciphers(settings.ciphers)
    except ssl.SSLError:
        raise CertificateError(
            f"certificate.ciphers {settings.ciphers!r} selects no usable cipher"
        ) from None
    try:
        with _private_paths(certset.cert_pem, certset.key_pem) as (certpath, keypath):
            context.load_cert_chain(certpath, keypath)
    except ssl.SSLError as exc:
        raise CertificateError(f"OpenSSL refused the server certificate or key: {exc}") from None
    if not settings.cafile:
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        context.load_verify_locations(cadata=certset.ca_pem.decode("ascii"))
        if certset.crl_pem:
            # cadata= skips CRL blocks; only a file lookup loads CRLs into the store.
            with _private_paths(certset.crl_pem) as (crlpath,):
                context.load_verify_locations(cafile=crlpath)
    except (ssl.SSLError, UnicodeDecodeError) as exc:
        raise CertificateError(f"OpenSSL refused the client CA file or CRL: {exc}") from None
    context.verify_mode = ssl.CERT_REQUIRED if settings.require_client_cert else ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VerifyFlags(settings.verification_flags)
    return context


def client_identity(peercert: dict[str, Any] | None) -> list[str]:
    """Subject common names, then DNS subject alternative names, of a verified peer.

    ``peercert`` is ``SSLSocket.getpeercert()`` (empty or None without a certificate).
    """
    if not peercert:
        return []
    names: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(value)
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "DNS":
            names.append(value)
    return list(dict.fromkeys(names))


def is_ca_certificate(der: bytes | None) -> bool:
    """Whether a verified peer's certificate (DER) is a CA's (basicConstraints
    CA:TRUE): OpenSSL's default purpose check accepts one as a client certificate."""
    if not der:
        return False
    try:
        return _is_ca(x509.load_der_x509_certificate(der))
    except ValueError:
        return False


def is_client_allowed(settings: CertificateSettings, identities: Iterable[str]) -> bool:
    """Whether a verified client may talk ICAP: empty ``allowed_clients`` allows all.

    Matching is exact and case-insensitive; a client without identities is refused as
    soon as ``allowed_clients`` is set.
    """
    if not settings.allowed_clients:
        return True
    allowed = {name.lower() for name in settings.allowed_clients}
    return any(identity.lower() in allowed for identity in identities)
