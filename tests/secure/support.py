"""Secure ICAP against real gicap processes: certificate files, clients, log checks."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gicap.client import ICAPClient, ICAPClientError
from tests.support import GicapProcess, free_port
from tests.tls.pki import PKI, Issued

TIMEOUT = 5.0
#: How long a certificate change may take to show (watch interval 0.2 s in these tests).
RELOAD_WITHIN = 2.5
KEYS = ("tls-server-cert", "tls-server-key", "tls-cafile")


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file the way careful tools do: a temporary file renamed over the target."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def install(directory: Path, server: Issued, ca: bytes) -> None:
    """Write a server certificate set with the names a Kubernetes TLS Secret mounts."""
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / "tls-cafile", ca)
    write_atomic(directory / "tls-server-key", server.key_pem())
    write_atomic(directory / "tls-server-cert", server.cert_pem(with_chain=True))


def sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def cert_sha(issued: Issued) -> str:
    return sha256(issued.der())


class Clients:
    """Client certificates written to disk once, and contexts/ICAP clients using them."""

    def __init__(self, directory: Path, pki: PKI) -> None:
        self.directory = directory
        self.pki = pki
        directory.mkdir(parents=True, exist_ok=True)
        #: What clients trust to verify the *server* (every server cert comes from this root).
        self.server_ca = directory / "server-ca.pem"
        self.server_ca.write_bytes(pki.root.cert_pem())

    def files(self, client: Issued) -> tuple[str, str]:
        stem = f"client-{client.cert.serial_number:x}"
        cert, key = self.directory / f"{stem}-cert.pem", self.directory / f"{stem}-key.pem"
        if not cert.exists():
            client.write(self.directory, stem, with_chain=True)
        return str(cert), str(key)

    def context(
        self,
        client: Issued | None = None,
        *,
        minimum: ssl.TLSVersion | None = None,
        maximum: ssl.TLSVersion | None = None,
        seclevel0: bool = False,
    ) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.server_ca))
        if seclevel0:
            # Let this OpenSSL actually offer TLS 1.0/1.1, so the *server* has to refuse.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
        if client is not None:
            ctx.load_cert_chain(*self.files(client))
        return ctx

    def icap(self, port: int, client: Issued | None, scheme: str = "icaps") -> ICAPClient:
        """An ICAPClient speaking TLS to ``port``; the request line says ``scheme``."""
        cert, key = self.files(client) if client is not None else (None, None)
        icap = ICAPClient(
            f"icaps://localhost:{port}/echo",
            cert=cert,
            key=key,
            cafile=str(self.server_ca),
            timeout=TIMEOUT,
        )
        icap.url = f"{scheme}://localhost:{port}/echo"
        return icap


def open_tls(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def options_over(tls: ssl.SSLSocket, port: int) -> bytes:
    """Send an OPTIONS on an open TLS connection; return what came back ("" = closed)."""
    tls.sendall(
        f"OPTIONS icaps://localhost:{port}/echo ICAP/1.0\r\nHost: localhost\r\n\r\n".encode()
    )
    return tls.recv(4096)


def presented(port: int, ctx: ssl.SSLContext) -> str:
    """SHA-256 of the certificate the server presents on a new connection, after
    checking that the connection really serves ICAP (OPTIONS answered 200)."""
    with open_tls(port, ctx) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        answer = options_over(tls, port)
        assert answer.startswith(b"ICAP/1.0 200"), answer[:200]
        return sha256(der)


def assert_refused(port: int, ctx: ssl.SSLContext) -> BaseException | None:
    """The server must refuse this client at the TLS level: never an ICAP answer.

    With TLS 1.2 the handshake itself fails; with TLS 1.3 the client's side of the
    handshake completes first and the refusal (an alert, or the connection closing)
    arrives on the first read, so an OPTIONS is sent and must get no response.
    A timeout is a failure: a refused client must learn it promptly.
    """
    try:
        tls = open_tls(port, ctx)
    except ssl.SSLError as exc:
        return exc
    with tls:
        try:
            answer = options_over(tls, port)
        except (ssl.SSLError, ConnectionError) as exc:
            return exc
    assert answer == b"", f"server answered a client it should refuse: {answer[:200]!r}"
    return None


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns a truthy value; the last error or value on failure."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except (AssertionError, OSError, ICAPClientError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not within {timeout}s (last: {last!r})")
        time.sleep(0.05)


def listening_processes(port: int, family: tuple[int, ...]) -> set[int]:
    """Which of the processes ``family`` hold a socket listening on TCP ``port`` (Linux).

    Every worker listens on its own SO_REUSEPORT socket, so this tells whether all of
    them opened the Secure ICAP listener; the master's reserved socket never listens.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    found: set[int] = set()
    for pid in family:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                found.add(pid)
        except OSError:
            continue
    return found


class SecureGicap(GicapProcess):
    """``gicap serve`` with a Secure ICAP port and certificate files in ``certdir``.

    ``wait_ready`` probes the plain port (unless it is 0) and then, when
    ``expect_secure``, waits until every worker process listens on the secure port
    and a TLS connection is served.
    """

    def __init__(
        self,
        tmp: Path,
        certdir: Path,
        env: dict[str, str] | None = None,
        *,
        expect_secure: bool = True,
        probe: ssl.SSLContext | None = None,
    ) -> None:
        self.secure_port = free_port()
        self.certdir = certdir
        self.expect_secure = expect_secure
        self.probe = probe
        base = {
            "GICAP_SERVER__SECURE_PORT": str(self.secure_port),
            "GICAP_CERTIFICATE__CERTFILE": str(certdir / "tls-server-cert"),
            "GICAP_CERTIFICATE__KEYFILE": str(certdir / "tls-server-key"),
            "GICAP_CERTIFICATE__CAFILE": str(certdir / "tls-cafile"),
            "GICAP_CERTIFICATE__WATCH_INTERVAL": "0.2",
            "GICAP_SERVER__HANDSHAKE_TIMEOUT": "5",
        }
        super().__init__(tmp, {**base, **(env or {})})
        self.log_path = tmp / f"gicap-{self.secure_port}.log"

    def wait_ready(self, timeout: float = 20) -> None:
        if self.port:
            wait_until(self._plain_ready, timeout, f"plain ICAP on {self.port}")
        if self.expect_secure:
            wait_until(self._secure_ready, timeout, f"TLS listener on {self.secure_port}")

    @property
    def workers(self) -> int:
        return int(self.env["GICAP_SERVER__WORKERS"])

    def processes(self) -> tuple[int, ...]:
        """The master and its worker processes."""
        assert self.proc is not None
        master = self.proc.pid
        children = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    stat = handle.read()
            except (OSError, ValueError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                children.append(int(entry))
        return (master, *children)

    def secure_listeners(self) -> int:
        """How many processes listen on the secure port."""
        return len(listening_processes(self.secure_port, self.processes()))

    def _check_running(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"gicap exited early with status {code}:\n{self.log()}")

    def _plain_ready(self) -> bool:
        self._check_running()
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(f"OPTIONS icap://127.0.0.1:{self.port}/echo ICAP/1.0\r\n\r\n".encode())
            return s.recv(100).startswith(b"ICAP/1.0 200")

    def _secure_ready(self) -> bool:
        self._check_running()
        if self.secure_listeners() < self.workers:
            return False
        if self.probe is None:
            # Any TCP connection accepted: the port only listens once a set is loaded.
            with socket.create_connection(("127.0.0.1", self.secure_port), timeout=1):
                return True
        with open_tls(self.secure_port, self.probe) as tls:
            return options_over(tls, self.secure_port).startswith(b"ICAP/1.0 200")

    def start(self, wait: bool = True) -> SecureGicap:
        super().start(wait=False)
        if wait:
            self.wait_ready()
        return self

    # ------------------------------------------------------------------ logs
    def mark(self) -> int:
        """Position in the log: pass to ``wait_log(since=...)`` to see only what follows."""
        return len(self.log())

    def lines(self, pattern: str, since: int = 0) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.log()[since:].splitlines() if regex.search(line)]

    def wait_log(self, pattern: str, since: int = 0, timeout: float = TIMEOUT) -> str:
        found = wait_until(
            lambda: self.lines(pattern, since), timeout, f"log line matching {pattern!r}"
        )
        return str(found[0])
