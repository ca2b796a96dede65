"""Secure ICAP: ICAP over mutual TLS (icaps://, port 11344)."""

from gicap.tls.certset import (
    CertificateError,
    CertificateSet,
    build_server_context,
    client_identity,
    is_ca_certificate,
    is_client_allowed,
    load_certificate_set,
)
from gicap.tls.flags import describe_flags, parse_verification_flags
from gicap.tls.settings import CertificateSettings
from gicap.tls.watcher import CertificateWatcher

__all__ = [
    "CertificateError",
    "CertificateSet",
    "CertificateSettings",
    "CertificateWatcher",
    "build_server_context",
    "client_identity",
    "describe_flags",
    "is_ca_certificate",
    "is_client_allowed",
    "load_certificate_set",
    "parse_verification_flags",
]
