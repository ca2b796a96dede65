from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest

from gicap.tls.certset import build_server_context, load_certificate_set
from gicap.tls.settings import CertificateSettings

from .tlsutil import TLSServer


@pytest.fixture
def serve() -> Iterator[Callable[..., TLSServer]]:
    """Start a loopback TLS server from settings (loaded for real) or a context source."""
    servers: list[TLSServer] = []

    def start(source: CertificateSettings | Callable[[], ssl.SSLContext]) -> TLSServer:
        if isinstance(source, CertificateSettings):
            context = build_server_context(source, load_certificate_set(source))
            server = TLSServer(lambda: context)
        else:
            server = TLSServer(source)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
