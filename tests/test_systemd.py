"""The systemd unit verifies, and the notify protocol tells systemd the truth."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.obs.support import get, wait_for
from tests.secure.support import Clients, SecureGicap, install
from tests.support import ROOT, GicapProcess, free_port, require_tool
from tests.tls.pki import PKI, Issued

Start = Callable[..., GicapProcess]


def _require(tool: str) -> str:
    return require_tool(tool, "systemd")


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = _require("systemd-analyze")
    unit = (ROOT / "systemd" / "gicap.service").read_text()
    # Point ExecStart at this checkout's gicap so verify can check the command exists.
    gicap_bin = Path(sys.executable).parent / "gicap"
    unit = unit.replace("/opt/gicap/venv/bin/gicap", str(gicap_bin))
    unit = unit.replace("User=gicap", "User=root").replace("Group=gicap", "Group=root")
    path = tmp_path / "gicap.service"
    path.write_text(unit)
    out = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    # verify warns about unknown or misspelled keys without failing: none allowed.
    problems = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert out.returncode == 0, out.stdout + out.stderr
    assert not problems, problems
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    for directive in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
        "Restart=on-failure",
    ):
        assert directive in unit


class _NotifySocket:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.path = path

    def messages(self, until: str, timeout: float = 30) -> list[str]:
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            got.append(data)
            if until in data:
                return got
        raise AssertionError(f"no {until!r} from gicap; got {got!r}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ready_after_listening_stopping_on_sigterm_and_watchdog(
    tmp_path: Path, start_gicap: Start, workers: str
) -> None:
    notify = _NotifySocket(tmp_path / "notify.sock")
    proc = start_gicap(
        {
            "NOTIFY_SOCKET": str(notify.path),
            "GICAP_SERVER__WORKERS": workers,
            "WATCHDOG_USEC": "400000",
            "GICAP_CDR__WORKERS": "1",
        },
        wait=False,
    )
    ready = notify.messages("READY=1")
    # READY=1 only once the port serves.
    with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as s:
        s.sendall(f"OPTIONS icap://127.0.0.1:{proc.port}/echo ICAP/1.0\r\n\r\n".encode())
        assert s.recv(100).startswith(b"ICAP/1.0 200")
    assert any("STATUS=serving" in m for m in ready)
    notify.messages("WATCHDOG=1", timeout=5)
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    notify.messages("STOPPING=1", timeout=10)
    assert proc.proc.wait(20) == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_secure_only_server_is_ready_for_clients_once_its_certificates_are_in(
    tmp_path: Path, pki: PKI, server_cert: Issued, clients: Clients, client_a: Issued, workers: str
) -> None:
    """With no plain port nothing accepts connections until the certificate set is
    installed. systemd hears READY=1 as soon as the workers have started (the unit
    must not time out waiting for a Secret), but /readyz says not ready (a load
    balancer must not send clients yet) until every worker listens on the Secure
    ICAP port."""
    notify = _NotifySocket(tmp_path / "notify.sock")
    certdir = tmp_path / "tls"
    metrics_port = free_port()
    proc = SecureGicap(
        tmp_path,
        certdir,
        {
            "NOTIFY_SOCKET": str(notify.path),
            "GICAP_SERVER__PORT": "0",
            "GICAP_SERVER__WORKERS": workers,
            "GICAP_CDR__WORKERS": "1",
            "GICAP_METRICS__PORT": str(metrics_port),
        },
        expect_secure=False,
    ).start()
    try:
        notify.messages("READY=1")
        assert get(metrics_port, "/healthz")[0] == 200
        status, body = get(metrics_port, "/readyz")
        assert status == 503, proc.log()
        assert body.startswith("not ready\nSecure ICAP configured but not serving: "), body
        install(certdir, server_cert, pki.root.cert_pem())
        wait_for(lambda: get(metrics_port, "/readyz")[0] == 200, "ready with certificates")
        assert proc.secure_listeners() == int(workers)
        with clients.icap(proc.secure_port, client_a) as icap:
            assert icap.options().status == 200
    finally:
        proc.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ready_without_secure_icap_says_so_in_the_status(
    tmp_path: Path, pki: PKI, server_cert: Issued, workers: str
) -> None:
    """READY=1 does not wait for Secure ICAP (the unit must not time out waiting for a
    Secret, and the plain port serves); like /readyz, the STATUS line systemctl shows
    says that Secure ICAP is configured but not serving, and why, until it serves."""
    notify = _NotifySocket(tmp_path / "notify.sock")
    certdir = tmp_path / "tls"
    # (the server certificate installed, its key not yet: a set being installed; with
    # neither file there, the server is a plain one and its status says nothing)
    certdir.mkdir()
    (certdir / "tls-server-cert").write_bytes(server_cert.cert_pem())
    proc = SecureGicap(
        tmp_path,
        certdir,
        {
            "NOTIFY_SOCKET": str(notify.path),
            "GICAP_SERVER__WORKERS": workers,
            "GICAP_CDR__WORKERS": "1",
        },
        expect_secure=False,
    ).start()
    try:
        ready = [m for m in notify.messages("READY=1") if "READY=1" in m]
        assert "Secure ICAP configured but not serving: server key" in ready[0], ready
        assert "file not found" in ready[0]
        install(certdir, server_cert, pki.root.cert_pem())
        deadline = time.monotonic() + 10
        while "not serving" in notify.messages("STATUS=serving", timeout=10)[-1]:
            assert time.monotonic() < deadline, "no STATUS line without the Secure ICAP problem"
    finally:
        proc.stop()


def test_no_notify_socket_is_a_no_op() -> None:
    from gicap.obs import sdnotify

    env = os.environ.pop("NOTIFY_SOCKET", None)
    try:
        assert sdnotify.notify("READY=1") is False
    finally:
        if env is not None:
            os.environ["NOTIFY_SOCKET"] = env
