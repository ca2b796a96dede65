"""Settings of the Secure ICAP (ICAP over mutual TLS) listener."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from gicap.tls.flags import parse_verification_flags

# Forward secrecy and AEAD only. TLS 1.3 suites are not governed by this string:
# OpenSSL's TLS 1.3 defaults are all acceptable.
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS"

TLS_VERSIONS = ("1.2", "1.3")


@dataclass(frozen=True)
class CertificateSettings:
    """Where the Secure ICAP certificate set lives and how clients are verified.

    The three default file names are the keys of a Kubernetes TLS Secret mounted at
    ``/etc/gicap/tls``.

    ``certfile`` (the server certificate, optionally followed by its intermediates) and
    ``keyfile`` (its unencrypted private key) must exist: without them Secure ICAP
    stays off. They may name the same file.

    ``cafile`` holds the CA certificate(s) that *client* certificates must chain to:

    * ``cafile = ""`` deliberately turns client authentication off: the listener is
      plain server-authenticated TLS and asks no client for a certificate.
    * ``cafile`` set (the default) but missing, empty or unparsable makes the whole
      set unloadable, so Secure ICAP stays off with that reason logged. A missing CA
      file never silently downgrades mutual TLS to one-sided TLS.

    With a CA, ``require_client_cert`` chooses between refusing clients without a
    valid certificate at the handshake (``True``) and merely verifying one when
    offered (``False``). ``crlfile`` (PEM or DER, may hold several CRLs) is loaded
    alongside the CA; it is only consulted with the ``CRL_CHECK``/``CRL_CHECK_ALL``
    flags, and those flags require it.

    ``allowed_clients`` further restricts verified clients by certificate identity
    (subject common name or DNS subject alternative name, exact, case-insensitive);
    empty allows every client holding a valid certificate.
    """

    certfile: str = "/etc/gicap/tls/tls-server-cert"
    keyfile: str = "/etc/gicap/tls/tls-server-key"
    cafile: str = "/etc/gicap/tls/tls-cafile"
    crlfile: str = ""
    require_client_cert: bool = True
    min_version: str = "1.2"
    ciphers: str = DEFAULT_CIPHERS
    verification_flags: int = 0
    allowed_clients: tuple[str, ...] = ()
    accept_icap_scheme: bool = True
    watch_interval: float = 0.5
    expiry_warning_days: int = 30

    def __post_init__(self) -> None:
        if self.min_version not in TLS_VERSIONS:
            raise ValueError(
                f"certificate.min_version must be one of {', '.join(TLS_VERSIONS)}, "
                f"not {self.min_version!r}"
            )
        if not self.ciphers.strip():
            raise ValueError("certificate.ciphers must not be empty")
        try:  # (refused here, at load: no certificate set would ever fix it)
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(self.ciphers)
        except ssl.SSLError:
            raise ValueError(
                f"certificate.ciphers {self.ciphers!r} selects no cipher OpenSSL knows"
            ) from None
        # Validates the mask (unknown bits) as well as normalising it.
        object.__setattr__(
            self, "verification_flags", parse_verification_flags(self.verification_flags)
        )
        object.__setattr__(
            self, "allowed_clients", tuple(name.strip() for name in self.allowed_clients)
        )
        if self.watch_interval <= 0:
            raise ValueError("certificate.watch_interval must be positive")
        if self.expiry_warning_days < 0:
            raise ValueError("certificate.expiry_warning_days must not be negative")

    @property
    def mutual(self) -> bool:
        """Whether client certificates are requested at all."""
        return bool(self.cafile)

    def server_files_present(self) -> bool:
        """Whether the server certificate or its key file is there (a dangling link
        counts): a set is installed, perhaps only in part. With neither, Secure ICAP
        is simply not installed yet (its listener opens whenever one is)."""
        return any(os.path.lexists(path) for path in (self.certfile, self.keyfile) if path)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CertificateSettings:
        """Build from a configuration section, accepting the loose forms files use.

        ``verification_flags`` may be a flag list string or a mask; ``allowed_clients``
        a list or a comma-separated string. Unknown keys raise ``ValueError``.
        """
        known = {field.name for field in fields(cls)}
        lowered = {str(key).lower(): value for key, value in values.items()}
        unknown = sorted(set(lowered) - known)
        if unknown:
            raise ValueError(f"unknown certificate setting(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = dict(lowered)
        if "verification_flags" in kwargs:
            kwargs["verification_flags"] = parse_verification_flags(kwargs["verification_flags"])
        if "allowed_clients" in kwargs:
            kwargs["allowed_clients"] = _names(kwargs["allowed_clients"])
        if "min_version" in kwargs:
            kwargs["min_version"] = str(kwargs["min_version"])
        return cls(**kwargs)


def _names(value: str | Iterable[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(item).strip() for item in items if str(item).strip())
