"""Reading the metrics endpoint of a running gicap."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.secure.support import Clients, SecureGicap, install
from tests.tls.pki import PKI, Issued

Samples = list[tuple[str, dict[str, str], float]]


@contextmanager
def two_worker_server(
    tmp: Path,
    pki: PKI,
    server_cert: Issued,
    clients: Clients,
    client_a: Issued,
    env: dict[str, str],
) -> Iterator[SecureGicap]:
    """gicap with two workers, plain and Secure ICAP, one CDR worker each, plus ``env``."""
    install(tmp / "tls", server_cert, pki.root.cert_pem())
    proc = SecureGicap(
        tmp,
        tmp / "tls",
        {"GICAP_SERVER__WORKERS": "2", "GICAP_CDR__WORKERS": "1", **env},
        probe=clients.context(client_a),
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of GET http://127.0.0.1:port/path (errors are answers too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200, text
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    return sum(
        v for n, lab, v in samples if n == name and all(lab.get(k) == x for k, x in labels.items())
    )


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    """Poll until ``check()`` is truthy (metrics reach the files within 0.5 s)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


class Delta:
    """Metric changes since construction: the servers are shared by several tests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.before = scrape(port)

    def __call__(self, name: str, **labels: str) -> float:
        return value(scrape(self.port), name, **labels) - value(self.before, name, **labels)

    def wait(self, expected: float, name: str, **labels: str) -> None:
        wait_for(lambda: self(name, **labels) == expected, f"{name}{labels} +{expected}")
        # Counted once: nothing arrives later from another process.
        time.sleep(0.6)
        assert self(name, **labels) == expected, (name, labels)


def held_transaction(port: int, service: str = "echo") -> socket.socket:
    """A RESPMOD whose body is still arriving: a transaction in progress."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    res = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    sock.sendall(
        f"RESPMOD icap://127.0.0.1:{port}/{service} ICAP/1.0\r\nHost: x\r\n"
        f"Encapsulated: res-hdr=0, res-body={len(res)}\r\n\r\n".encode()
        + res
        + b"5\r\nhello\r\n"
    )
    return sock


def finish_held(sock: socket.socket) -> bytes:
    """Send the last chunk; the whole answer (the connection closes after a drain)."""
    sock.sendall(b"0\r\n\r\n")
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data
