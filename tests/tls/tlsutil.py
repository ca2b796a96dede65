"""Real loopback TLS: a threaded server using gicap's context, and a stdlib client."""

from __future__ import annotations

import queue
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gicap.tls.settings import CertificateSettings

from .pki import Issued

TIMEOUT = 10.0


@dataclass
class ServerOutcome:
    error: BaseException | None
    peercert: dict[str, Any] | None
    version: str | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def reason(self) -> str:
        if isinstance(self.error, ssl.SSLCertVerificationError):
            return f"{self.error.verify_message} ({self.error})"
        return str(self.error)


@dataclass
class ClientOutcome:
    greeting: bytes
    error: BaseException | None
    server_der: bytes | None
    version: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.greeting.startswith(b"OK")


class TLSServer:
    """Accepts connections on 127.0.0.1 and handshakes each with ``context()``."""

    def __init__(self, context: Callable[[], ssl.SSLContext]) -> None:
        self.context = context
        self.outcomes: queue.Queue[ServerOutcome] = queue.Queue()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(TIMEOUT)
            self._serve(raw)

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self.context().wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            raw.close()
            self.outcomes.put(ServerOutcome(exc, None, None))
            return
        with tls:
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                self.outcomes.put(ServerOutcome(exc, None, None))
                return
            peercert = tls.getpeercert()
            self.outcomes.put(ServerOutcome(None, peercert, tls.version()))
            try:
                tls.sendall(b"OK\n")
                tls.recv(1)
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass

    def outcome(self) -> ServerOutcome:
        return self.outcomes.get(timeout=TIMEOUT)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(TIMEOUT)


def client_context(
    server_ca: bytes,
    client: Issued | None = None,
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    tmp: Path | None = None,
    client_files: tuple[Path, Path] | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=server_ca.decode())
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if client_files is not None:
        context.load_cert_chain(*client_files)
    elif client is not None:
        assert tmp is not None, "client certificates need a directory to be written to"
        context.load_cert_chain(*client.write(tmp, "client", with_chain=True))
    return context


def connect(port: int, context: ssl.SSLContext, hostname: str = "localhost") -> ClientOutcome:
    """Handshake, then read the greeting: under TLS 1.3 a refused client certificate
    only surfaces on the first read, after the client's handshake has completed."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    except OSError as exc:
        return ClientOutcome(b"", exc, None, None)
    try:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            der = tls.getpeercert(binary_form=True)
            version = tls.version()
            greeting = tls.recv(16)
            try:
                tls.sendall(b"x")
            except (ssl.SSLError, OSError):
                pass
            return ClientOutcome(greeting, None, der, version)
    except (ssl.SSLError, OSError) as exc:
        return ClientOutcome(b"", exc, None, None)
    finally:
        raw.close()


def write_set(
    directory: Path,
    server: Issued,
    *,
    ca: bytes | None,
    crl: bytes | None = None,
    **overrides: Any,
) -> CertificateSettings:
    """Write server material (and client CA / CRL) and return settings pointing at it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls-server-cert").write_bytes(server.cert_pem(with_chain=True))
    (directory / "tls-server-key").write_bytes(server.key_pem())
    values: dict[str, Any] = {
        "certfile": str(directory / "tls-server-cert"),
        "keyfile": str(directory / "tls-server-key"),
        "cafile": "",
    }
    if ca is not None:
        (directory / "tls-cafile").write_bytes(ca)
        values["cafile"] = str(directory / "tls-cafile")
    if crl is not None:
        (directory / "crl.pem").write_bytes(crl)
        values["crlfile"] = str(directory / "crl.pem")
    values.update(overrides)
    return CertificateSettings(**values)
