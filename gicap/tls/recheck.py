"""Established Secure ICAP connections, judged again when the certificate set changes.

A client's certificate is verified once, in its handshake; a proxy then keeps the
connection for as long as it has traffic. When a new set takes a client's trust away
(its certificate revoked by a new CRL, its CA removed from the CA file, its name
taken out of ``allowed_clients``, or its certificate expired meanwhile), its
connections are closed: a new handshake would be refused, so keeping them would
serve, for hours, a proxy the operator meant to lock out.

Only what the client's certificate, and the certificates it sent with it, tell is
judged: a client whose trust cannot be told from them is kept, so that a change that
leaves a client trusted never drops its connections.
"""

from __future__ import annotations

import _ssl
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from gicap.tls.certset import CertificateSet, is_client_allowed
from gicap.tls.flags import FLAGS
from gicap.tls.settings import CertificateSettings

_CRL_FLAGS = FLAGS["CRL_CHECK"] | FLAGS["CRL_CHECK_ALL"]
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", re.DOTALL)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _canonical(name: x509.Name) -> tuple[tuple[tuple[str, str], ...], ...]:
    """``name`` compared as OpenSSL compares names when it looks for an issuer (case and
    runs of spaces do not count), or more loosely: a looser match keeps a client."""
    return tuple(
        tuple(sorted((a.oid.dotted_string, " ".join(str(a.value).casefold().split())) for a in rdn))
        for rdn in name.rdns
    )


def sent_chain(tls: Any) -> tuple[bytes, ...] | None:
    """The certificates (DER) a client sent after its own in its TLS handshake, to
    be verified with: its intermediates, a cross-signed copy of one. ``None`` when
    not known: a resumed session sends none (its verification is the earlier one's).
    """
    leaf = tls.getpeercert(binary_form=True)
    if leaf is None or tls.session_reused:
        return None
    # (SSLSocket.get_unverified_chain from Python 3.13 on; before, on the _ssl object)
    get = getattr(tls, "get_unverified_chain", None)
    if get is None:
        get = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if get is None:
        return None
    try:
        chain = get()
        if chain is None:
            return None
        # (the server's side adds the client's own certificate first: None without one)
        ders = [
            c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER)
            for c in chain
            if c is not None
        ]
    except (ValueError, TypeError, AttributeError, OSError):
        # (a private interface before 3.13: whatever it does, the connection is served)
        return None
    return tuple(der for der in ders if der != leaf)


def _key_id(item: x509.Certificate | x509.CertificateRevocationList) -> bytes | None:
    """The key identifier of the CA that signed ``item``, when it names one."""
    try:
        return item.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    if leaf.issuer != ca.subject:
        return False
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert)


@dataclass(frozen=True)
class ClientRecheck:
    """What a new handshake would say of an established client, under ``settings``
    and the set just installed, as far as the client's certificate tells."""

    settings: CertificateSettings
    #: The CA file's certificates.
    cas: tuple[x509.Certificate, ...]
    #: The CRLs, when the verification flags check CRLs (else a CRL file changes
    #: nothing for handshakes).
    crls: tuple[x509.CertificateRevocationList, ...]
    #: Root CAs of the earlier set that the new one no longer holds (same subject and
    #: key): a chain ending in one of them cannot be verified any more.
    dropped_roots: tuple[x509.Certificate, ...]
    #: The earlier set's other CA certificates (intermediates): the path from a
    #: client's certificate to a dropped root.
    earlier_intermediates: tuple[x509.Certificate, ...] = ()

    @classmethod
    def between(
        cls, settings: CertificateSettings, new: CertificateSet, earlier: CertificateSet
    ) -> ClientRecheck:
        cas = tuple(x509.load_pem_x509_certificates(new.ca_pem)) if new.ca_pem else ()
        crls: tuple[x509.CertificateRevocationList, ...] = ()
        if settings.verification_flags & _CRL_FLAGS:
            crls = tuple(x509.load_pem_x509_crl(block) for block in _PEM_CRL.findall(new.crl_pem))
        kept = {(ca.subject.public_bytes(), _spki(ca)) for ca in cas}
        before = x509.load_pem_x509_certificates(earlier.ca_pem) if earlier.ca_pem else []
        roots = [ca for ca in before if _self_signed(ca)]
        dropped = tuple(ca for ca in roots if (ca.subject.public_bytes(), _spki(ca)) not in kept)
        others = tuple(ca for ca in before if ca not in roots)
        return cls(settings, cas, crls, dropped, others)

    def refusal(
        self,
        der: bytes | None,
        identity: tuple[str, ...],
        now: datetime,
        sent: tuple[bytes, ...] | None = (),
    ) -> str | None:
        """Why a client whose handshake presented ``der`` (its certificate; None
        without one), followed by ``sent`` (None: not known), and whose names are
        ``identity`` would now be refused; ``None`` when it would not, or when what it
        presented does not tell."""
        if not self.settings.mutual:
            return None  # (no client certificate is verified any more)
        if not is_client_allowed(self.settings, identity):
            return "not in certificate.allowed_clients any more"
        if der is None:
            if self.settings.require_client_cert:
                return "no client certificate, which the settings now require"
            return None
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError:
            return None
        if now > leaf.not_valid_after_utc:
            return f"its certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        chain = tuple(x509.load_der_x509_certificate(item) for item in sent or ())
        if self._revoked(leaf, chain):
            return "its certificate is revoked by the CRL"
        revoked_ca = self._revoked_intermediate(leaf, chain)
        if revoked_ca is not None:
            return (
                f"its intermediate CA ({revoked_ca.subject.rfc4514_string()}) is revoked by "
                "the CRL (CRL_CHECK_ALL)"
            )
        if any(ca.public_bytes(serialization.Encoding.DER) == der for ca in self.cas):
            return None  # (trusted itself, with PARTIAL_CHAIN)
        if sent is None:
            return None  # (a cross-signed copy it sent could lead to a root still trusted)
        if self._may_chain(leaf, chain):
            return None
        root = self._dropped_root(leaf, chain)
        if root is not None:
            return f"its root CA ({root.subject.rfc4514_string()}) is no longer in the CA file"
        return None

    def _revoked(self, leaf: x509.Certificate, sent: tuple[x509.Certificate, ...]) -> bool:
        """Whether a CRL of ``leaf``'s issuer revokes it. Of the CRLs bearing the
        issuer's name, only those its issuer signed count, as for OpenSSL: two CAs
        may bear one name (one set up again with a new key, numbering from 1 again)."""
        issuers = [ca for ca in (*self.cas, *sent) if _issued_by(leaf, ca)]
        name = _canonical(leaf.issuer)
        for crl in self.crls:
            if _canonical(crl.issuer) != name:
                continue
            if issuers:
                ours = any(crl.is_signature_valid(ca.public_key()) for ca in issuers)
            else:
                # (the issuer not at hand: the key identifiers tell, when both bear one)
                crl_key, leaf_key = _key_id(crl), _key_id(leaf)
                ours = crl_key is None or leaf_key is None or crl_key == leaf_key
            if (
                ours
                and crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
            ):
                return True
        return False

    def _revoked_intermediate(
        self, leaf: x509.Certificate, sent: tuple[x509.Certificate, ...]
    ) -> x509.Certificate | None:
        """With CRL_CHECK_ALL, the CA above ``leaf`` (up to the root, which no CRL
        judges) that a CRL of its own issuer revokes. Followed only while each step
        has one issuer among what the client sent and the CA file: where there is a
        choice, OpenSSL's path is not told, and the client is kept."""
        chain_flag = FLAGS["CRL_CHECK_ALL"]  # (the leaf's flag with the chain's)
        if self.settings.verification_flags & chain_flag != chain_flag:
            return None
        pool = list(
            {
                cert.public_bytes(serialization.Encoding.DER): cert for cert in (*sent, *self.cas)
            }.values()
        )
        cert = leaf
        for _ in range(len(pool)):
            issuers = [ca for ca in pool if _issued_by(cert, ca)]
            if len(issuers) != 1 or _self_signed(issuers[0]):
                return None
            if self._revoked(issuers[0], sent):
                return issuers[0]
            cert = issuers[0]
        return None

    def _may_chain(self, leaf: x509.Certificate, sent: tuple[x509.Certificate, ...]) -> bool:
        """Whether a new handshake may find a path from ``leaf``, through the
        certificates the client sent, to a certificate of the new CA file: by names
        alone, so that a path OpenSSL would take is never missed."""
        trusted = {_canonical(ca.subject) for ca in self.cas}
        left = list(sent)
        todo = [leaf]
        while todo:
            issuer = _canonical(todo.pop().issuer)
            if issuer in trusted:
                return True
            found = [cert for cert in left if _canonical(cert.subject) == issuer]
            left = [cert for cert in left if cert not in found]
            todo.extend(found)
        return False

    def _dropped_root(
        self, leaf: x509.Certificate, sent: tuple[x509.Certificate, ...]
    ) -> x509.Certificate | None:
        """The dropped root ``leaf`` chains to, through the certificates the client
        sent and the earlier CA file's intermediates (called when no path leads to a
        certificate of the new file)."""
        if not self.dropped_roots:
            return None
        steps = (*sent, *self.earlier_intermediates)
        cert = leaf
        for _ in range(len(steps) + 1):
            root = next((r for r in self.dropped_roots if _issued_by(cert, r)), None)
            if root is not None:
                return root
            step = next((c for c in steps if c is not cert and _issued_by(cert, c)), None)
            if step is None:
                return None
            cert = step
        return None
