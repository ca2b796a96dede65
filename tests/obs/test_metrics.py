"""Metrics and health checks of real gicap processes, summed over their workers."""

from __future__ import annotations

import re
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from gicap.client import ICAPClient
from gicap.server.secure import failure_class
from tests.secure.support import Clients, SecureGicap, assert_refused
from tests.support import SETTINGS, GicapProcess, free_port
from tests.tls.pki import PKI, Issued

from .support import (
    Delta,
    finish_held,
    get,
    held_transaction,
    scrape,
    two_worker_server,
    value,
    wait_for,
)

CSV = b"name,amount\nalice,=1+2\nbob,3\n"
EXE = b"MZ" + bytes(4000)
CSV_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\n"
EXE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    pki: PKI,
    server_cert: Issued,
    clients: Clients,
    client_a: Issued,
) -> Iterator[SecureGicap]:
    """Two workers, plain and Secure ICAP, metrics on a port of their own."""
    tmp = tmp_path_factory.mktemp("metrics")
    with two_worker_server(
        tmp, pki, server_cert, clients, client_a, {"GICAP_METRICS__PORT": str(free_port())}
    ) as proc:
        yield proc


def mport(proc: GicapProcess) -> int:
    return int(proc.env["GICAP_METRICS__PORT"])


def test_health_and_readiness(server: SecureGicap) -> None:
    assert get(mport(server), "/healthz") == (200, "ok\n")
    assert get(mport(server), "/readyz")[0] == 200
    assert get(mport(server), "/nope")[0] == 404


def test_echo_transactions_are_summed_over_both_workers(server: SecureGicap) -> None:
    delta = Delta(mport(server))
    mark = server.mark()
    n = 24
    for _ in range(n):  # a new connection each: the kernel spreads them over the workers
        with ICAPClient(f"{server.url}/echo") as c:
            assert c.respmod(b"x" * 1024, allow_204=False).status == 200
    labels = {"service": "echo", "method": "RESPMOD"}
    delta.wait(n, "gicap_transactions_total", **labels, outcome="ok", file_type="none")
    assert delta("gicap_transactions_total", **labels, status="200") == n
    assert delta("gicap_bytes_received_total", service="echo") == n * 1024
    assert delta("gicap_bytes_sent_total", service="echo") == n * 1024
    assert delta("gicap_transaction_seconds_count", **labels) == n
    assert delta("gicap_transaction_seconds_bucket", **labels, le="+Inf") == n
    assert 0 < delta("gicap_transaction_seconds_sum", **labels) < n
    # Both workers answered some of them (each logs its own lines).
    pids = {
        int(m.group(1))
        for line in server.lines(r"gicap\.transaction: .* RESPMOD \S+/echo ", mark)
        if (m := re.search(r"gicap\[(\d+)\]", line))
    }
    assert len(pids) == 2 and pids <= set(server.processes()[1:]), pids


def test_cdr_outcomes_and_durations(server: SecureGicap) -> None:
    delta = Delta(mport(server))
    with ICAPClient(f"{server.url}/resp-cdr-service", timeout=30) as c:
        assert c.respmod(CSV, res_head=CSV_HEAD).status == 200
        assert c.respmod(EXE, res_head=EXE_HEAD).status == 200  # a block page
    cdr = {"service": "resp-cdr-service", "method": "RESPMOD", "status": "200"}
    delta.wait(1, "gicap_transactions_total", **cdr, outcome="rebuilt", file_type="csv")
    assert delta("gicap_transactions_total", **cdr, outcome="blocked", file_type="exe") == 1
    for file_type in ("csv", "exe"):
        labels = {"service": "resp-cdr-service", "file_type": file_type}
        assert delta("gicap_cdr_seconds_count", **labels) == 1
        assert delta("gicap_cdr_seconds_sum", **labels) > 0
    assert delta("gicap_bytes_received_total", service="resp-cdr-service") == len(CSV + EXE)
    assert delta("gicap_cdr_timeouts_total") == 0


def test_refused_handshakes_by_reason(
    server: SecureGicap, clients: Clients, other_pki: PKI, expired: Issued
) -> None:
    delta = Delta(mport(server))
    port = server.secure_port
    assert_refused(port, clients.context(None, maximum=ssl.TLSVersion.TLSv1_2))
    assert_refused(port, clients.context(None))  # TLS 1.3: refused after the client's side
    assert_refused(port, clients.context(other_pki.client("client-a")))
    assert_refused(port, clients.context(expired))
    name = "gicap_tls_handshake_failures_total"
    delta.wait(2, name, reason="no_certificate")
    assert delta(name, reason="unknown_ca") == 1
    assert delta(name, reason="expired") == 1
    assert delta(name) == 4


def test_certificate_expiry_gauge(server: SecureGicap, server_cert: Issued) -> None:
    expected = server_cert.cert.not_valid_after_utc.timestamp()
    samples = scrape(mport(server))
    assert value(samples, "gicap_certificate_not_after_seconds") == expected


def test_open_connections_gauge(server: SecureGicap) -> None:
    port = mport(server)
    name, labels = "gicap_connections_active", {"listener": "icap"}
    wait_for(lambda: value(scrape(port), name, **labels) == 0, "no connection open")
    held = [ICAPClient(f"{server.url}/echo") for _ in range(6)]
    for c in held:
        assert c.options().status == 200
    wait_for(lambda: value(scrape(port), name, **labels) == 6, "6 connections open")
    for c in held:
        c.close()
    wait_for(lambda: value(scrape(port), name, **labels) == 0, "all closed")


def test_limit_reload_and_drain(tmp_path: Path) -> None:
    """503s over the connection limit, SIGHUP counted once per reload, /readyz 503 while
    draining and /healthz 200 until the master exits."""
    settings = tmp_path / "settings.toml"
    settings.write_text(SETTINGS.read_text())
    proc = GicapProcess(
        tmp_path,
        {
            "GICAP_SERVER__WORKERS": "2",
            "GICAP_CDR__WORKERS": "1",
            "GICAP_SERVER__MAX_CONNECTIONS": "4",  # 2 per worker process
            "GICAP_SERVER__DRAIN_TIMEOUT": "20",
            "GICAP_METRICS__PORT": str(free_port()),
            "GICAP_LOGGING__LEVEL": "DEBUG",  # (worker 1's SIGHUP lines are DEBUG lines)
        },
        settings=settings,
    ).start()
    port = mport(proc)
    try:
        wait_for(lambda: get(port, "/readyz")[0] == 200, "ready")
        delta = Delta(port)
        # Over the limit: at most 2 connections per worker are served, the rest get 503.
        socks, refused = [], 0
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
            s.sendall(f"OPTIONS {proc.url}/echo ICAP/1.0\r\n\r\n".encode())
            refused += s.recv(4096).startswith(b"ICAP/1.0 503")
            socks.append(s)
        assert refused >= 4
        delta.wait(refused, "gicap_connections_refused_total", reason="limit")
        for s in socks:
            s.close()

        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        # Worker 1 too has read the file before it changes again.
        wait_for(lambda: proc.log().count("SIGHUP: settings reloaded") == 2, "both reloaded")
        delta.wait(1, "gicap_reloads_total", result="ok")  # counted once, by worker 0
        settings.write_text(settings.read_text().replace("\ntimeout = 30", "\ntimeout = -1"))
        proc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: proc.log().count("new settings refused") == 2, "both refused")
        delta.wait(1, "gicap_reloads_total", result="failed")

        _drain(proc, port)
    finally:
        proc.stop()


def _drain(proc: GicapProcess, port: int) -> None:
    wait_for(lambda: get(port, "/readyz")[0] == 200, "ready before SIGTERM")
    held = held_transaction(proc.port)
    assert held.recv(4096).startswith(b"ICAP/1.0 200")  # the echo streams back at once
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    try:
        wait_for(lambda: get(port, "/readyz")[0] == 503, "not ready while draining")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{proc.log()}") from None
    assert get(port, "/healthz")[0] == 200
    assert proc.proc.poll() is None  # still draining: the transaction is not over
    assert finish_held(held).endswith(b"0\r\n\r\n")
    assert proc.proc.wait(20) == 0


def test_single_process_serves_the_endpoint_itself(tmp_path: Path) -> None:
    proc = GicapProcess(
        tmp_path,
        {"GICAP_CDR__WORKERS": "1", "GICAP_METRICS__PORT": str(free_port())},
    ).start()
    port = mport(proc)
    try:
        assert get(port, "/healthz") == (200, "ok\n")
        wait_for(lambda: get(port, "/readyz")[0] == 200, "ready")
        delta = Delta(port)
        with ICAPClient(f"{proc.url}/echo") as c:
            assert c.respmod(b"y" * 100, allow_204=False).status == 200
        delta.wait(1, "gicap_transactions_total", service="echo", method="RESPMOD")
        assert delta("gicap_bytes_sent_total", service="echo") == 100
        _drain(proc, port)
    finally:
        proc.stop()


def test_metrics_port_zero_turns_metrics_off(tmp_path: Path) -> None:
    proc = GicapProcess(tmp_path, {"GICAP_SERVER__WORKERS": "2"}).start()  # port 0
    try:
        with ICAPClient(f"{proc.url}/echo") as c:
            assert c.respmod(b"z", allow_204=False).status == 200
        assert "metrics are off: metrics.port is 0" in proc.log()
    finally:
        assert proc.stop() == 0


class _FakeSSLError(Exception):
    def __init__(self, reason: str | None = None, verify_code: int | None = None) -> None:
        self.reason = reason
        self.verify_code = verify_code


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_FakeSSLError("PEER_DID_NOT_RETURN_A_CERTIFICATE"), "no_certificate"),
        (_FakeSSLError("CERTIFICATE_VERIFY_FAILED", 20), "unknown_ca"),
        (_FakeSSLError("CERTIFICATE_VERIFY_FAILED", 10), "expired"),
        (_FakeSSLError("CERTIFICATE_VERIFY_FAILED", 23), "revoked"),
        (_FakeSSLError("UNSUPPORTED_PROTOCOL"), "protocol_version"),
        (_FakeSSLError("TLSV1_ALERT_UNKNOWN_CA"), "unknown_ca"),
        (_FakeSSLError("CERTIFICATE_VERIFY_FAILED", 12), "crl"),  # CRL expired
        (_FakeSSLError("CERTIFICATE_VERIFY_FAILED", 9), "not_yet_valid"),
        (_FakeSSLError("CERTIFICATE_VERIFY_FAILED", 26), "wrong_purpose"),  # (its EKU)
        (_FakeSSLError("CERTIFICATE_VERIFY_FAILED", 50), "other"),
        (ConnectionResetError(), "other"),
    ],
)
def test_handshake_failure_classes(exc: BaseException, expected: str) -> None:
    assert failure_class(exc) == expected
