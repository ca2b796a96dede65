"""Run gicap (`python -m gicap serve`) with its echo service on loopback, for the benchmark.

`with Gicap(pki=pki) as srv:` starts `<this python> -m gicap serve --settings <repo
settings.toml>` with the listeners overridden from the environment (GICAP_SERVER__HOST,
GICAP_SERVER__PORT, GICAP_SERVER__SECURE_PORT, GICAP_SERVER__WORKERS and, for TLS,
GICAP_CERTIFICATE__CERTFILE/KEYFILE/CAFILE), waits until OPTIONS on /echo answers 200 (over
mTLS too when asked) and stops it with SIGTERM on exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from bench import _proc
from bench.pki import Pki

REPO = Path(__file__).resolve().parent.parent
# Two workers: one per core of the reference machine, like c-icap's two children.
DEFAULT_WORKERS = 2


class Gicap:
    """Context manager around one gicap server; `port`, `tls_port`, `pid` once entered."""

    name = "gicap"

    def __init__(
        self,
        port: int | None = None,
        pki: Pki | None = None,
        tls_port: int | None = None,
        workers: int = DEFAULT_WORKERS,
        settings: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or _proc.free_port()
        self.pki = pki
        self.tls_port = (tls_port or _proc.free_port()) if pki else None
        self.workers = workers
        self.settings = settings or REPO / "settings.toml"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = Path()
        self.log = Path()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GICAP_", "CERTIFICATE__"))}
        env.update(
            GICAP_SERVER__HOST="127.0.0.1",
            GICAP_SERVER__PORT=str(self.port),
            GICAP_SERVER__SECURE_PORT=str(self.tls_port or 0),
            GICAP_SERVER__WORKERS=str(self.workers),
            # Metrics on (the default configuration) on a port of its own.
            GICAP_METRICS__PORT=str(_proc.free_port()),
            # The benchmark closes its connections before stopping the server; a short
            # drain keeps a stuck shutdown from eating the time budget.
            GICAP_SERVER__DRAIN_TIMEOUT="5",
            PYTHONUNBUFFERED="1",
        )
        if self.pki is not None:
            env.update(
                GICAP_CERTIFICATE__CERTFILE=str(self.pki.server_cert),
                GICAP_CERTIFICATE__KEYFILE=str(self.pki.server_key),
                GICAP_CERTIFICATE__CAFILE=str(self.pki.cafile),
            )
        env.update(self.extra_env)
        return env

    def __enter__(self) -> Gicap:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-gicap-")
        self.workdir = Path(self._tmp.name)
        log = self.log = self.workdir / "gicap.log"
        # cwd for gicap: `-m gicap` finds the working tree even if not installed.
        self.proc = _proc.launch(
            [sys.executable, "-m", "gicap", "serve", "--settings", str(self.settings)],
            log,
            cwd=REPO,
            env=self.environment(),
        )
        try:
            _proc.wait_listeners(self.proc, self.port, self.tls_port, self.pki, log)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            _proc.stop(self.proc)
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
