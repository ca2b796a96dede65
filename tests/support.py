"""Start a real gicap server process for tests and talk to it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ROOT / "settings.toml"


def require_tool(name: str, packages: str = "") -> str:
    """Path of the program ``name``: the test is skipped without it, and fails instead
    with ``GICAP_REQUIRE_INTEROP=1`` (CI installs every tool the tests use)."""
    path = shutil.which(name)
    if path is None:
        what = f"interop prerequisite missing: binary {name!r} not found on PATH"
        if packages:
            what += f" (apt packages {packages})"
        if os.environ.get("GICAP_REQUIRE_INTEROP", "") == "1":
            pytest.fail(what + " (GICAP_REQUIRE_INTEROP=1)", pytrace=False)
        pytest.skip(what)
    return path


_given: set[int] = set()


def free_port() -> int:
    """A port nothing listens on now, and never one this test run was given before:
    the servers bind them later, so two picks in a row could otherwise coincide (a
    metrics port equal to the ICAP port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port


class GicapProcess:
    """``gicap serve`` in a subprocess with environment overrides."""

    def __init__(
        self, tmp: Path, env: dict[str, str] | None = None, settings: Path = SETTINGS
    ) -> None:
        self.port = free_port()
        self.log_path = tmp / f"gicap-{self.port}.log"
        self.env = {
            **os.environ,
            "GICAP_SERVER__HOST": "127.0.0.1",
            "GICAP_SERVER__PORT": str(self.port),
            "GICAP_SERVER__SECURE_PORT": "0",
            "GICAP_SERVER__WORKERS": "1",
            "GICAP_SERVER__SPOOL_DIR": str(tmp),
            # Off unless a test asks: the default port 9090 would clash between servers.
            "GICAP_METRICS__PORT": "0",
            **(env or {}),
        }
        self.port = int(self.env["GICAP_SERVER__PORT"])
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> GicapProcess:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gicap", "serve", "--settings", str(self.settings)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        if wait and self.port:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"gicap exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(
                        f"OPTIONS icap://127.0.0.1:{self.port}/echo ICAP/1.0\r\n\r\n".encode()
                    )
                    if s.recv(100).startswith(b"ICAP/1.0 200"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gicap did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def url(self) -> str:
        return f"icap://127.0.0.1:{self.port}"


def disarm_job(tmp_path: Path, data: bytes, declared: str | None) -> tuple[dict, bytes | None]:
    """``data`` through gicap's job (detection, then the engine) under the default
    profile, saved as ``declared``: the answer, and the delivered bytes if any."""
    from gicap.cdr import job
    from gicap.cdr.policy import build_profile

    job.init_worker()
    source, dest = tmp_path / "in", tmp_path / "out"
    source.write_bytes(data)
    dest.unlink(missing_ok=True)
    profile = build_profile("default", {}).as_dict()
    answer = job.disarm_file(source, dest, profile, "default", declared, 1 << 26)
    return answer, dest.read_bytes() if dest.exists() else None
