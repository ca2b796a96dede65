"""Metrics of one worker process, summed over all of them by prometheus-client.

prometheus-client's multiprocess mode keeps every process's samples in memory-mapped
files of one directory (``PROMETHEUS_MULTIPROC_DIR``), which the master reads to
answer ``/metrics``. Writing one such sample costs a lock, a ``getpid()`` and an
mmap write (1.5-2.5 µs); a transaction touches half a dozen, a measurable share of a
1 KiB echo exchange. So the hot path only adds to plain dicts here, and
:meth:`Recorder.flush` publishes the sums, every 0.5 s and at shutdown (see
``gicap.obs.exporter``). This module does not import prometheus-client: it must not be
loaded before the master has chosen the directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gicap.obs.exporter import Exporter

log = logging.getLogger("gicap.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: (service, method, outcome, file type, ICAP status)
TxnKey = tuple[str, str, str, str, int]


@dataclass
class TxnCounts:
    count: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: list[float] = field(default_factory=list)


class Recorder:
    """What happened since the last flush, in plain dicts."""

    def __init__(self) -> None:
        self.txns: dict[TxnKey, TxnCounts] = {}
        #: (service, file type) -> CDR durations in seconds
        self.cdr: dict[tuple[str, str], list[float]] = {}
        #: (metric, labels) -> increment, for rare events
        self.events: dict[tuple[str, tuple[str, ...]], float] = {}
        #: Open ICAP connections per listener ("icap", "icaps"); published as is.
        self.connections: dict[str, int] = {"icap": 0, "icaps": 0}
        self.not_after: float | None = None
        self._exporter: Exporter | None = None

    # ------------------------------------------------------------------ hot path
    def transaction(
        self,
        service: str,
        method: str,
        outcome: str,
        file_type: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
    ) -> None:
        key = (service, method, outcome, file_type, status)
        counts = self.txns.get(key)
        if counts is None:
            counts = self.txns[key] = TxnCounts()
        counts.count += 1
        counts.bytes_in += bytes_in
        counts.bytes_out += bytes_out
        counts.seconds.append(seconds)

    def cdr_done(self, service: str, file_type: str, seconds: float) -> None:
        self.cdr.setdefault((service, file_type), []).append(seconds)

    # ------------------------------------------------------------------ events
    def _count(self, name: str, *labels: str) -> None:
        key = (name, labels)
        self.events[key] = self.events.get(key, 0) + 1

    def refused(self, reason: str) -> None:
        """A connection answered 503 at once: "limit" (too many) or "draining"."""
        self._count("connections_refused", reason)

    def tls_failure(self, reason: str) -> None:
        self._count("tls_handshake_failures", reason)

    def reload(self, ok: bool) -> None:
        self._count("reloads", "ok" if ok else "failed")

    def cdr_event(self, kind: str) -> None:
        """From the CDR runner: "restart" (a worker replaced) or "timeout"."""
        self._count("cdr_worker_restarts" if kind == "restart" else "cdr_timeouts")

    def certificate(self, not_after: float) -> None:
        self.not_after = not_after

    # ------------------------------------------------------------------ publishing
    def flush(self) -> None:
        if self._exporter is None:
            from gicap.obs.exporter import Exporter

            self._exporter = Exporter()
        txns, self.txns = self.txns, {}
        cdr, self.cdr = self.cdr, {}
        events, self.events = self.events, {}
        try:
            self._exporter.publish(txns, cdr, events, self.connections, self.not_after)
        except Exception:
            # Metrics must never take the server down (e.g. a full temporary directory).
            log.exception("metrics could not be published")


_recorder: Recorder | None = None


def install(recorder: Recorder | None) -> None:
    """Make ``recorder`` this process's recorder (None: metrics off)."""
    global _recorder
    _recorder = recorder


def recorder() -> Recorder | None:
    """This process's recorder, or None when metrics are off."""
    return _recorder


# ---------------------------------------------------------------------- master side
def create_multiprocess_dir() -> str:
    """A fresh private directory for the worker processes' metric files.

    Set in the environment before any fork (and before prometheus-client is
    imported), so every worker writes there. Values left by an earlier run must not
    be summed in: hence a new directory rather than a fixed path.
    """
    path = tempfile.mkdtemp(prefix="gicap-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == path:
        del os.environ[MULTIPROC_ENV]


def process_exited(pid: int) -> None:
    """A worker is gone: drop its live gauges (its counters keep counting in the sums)."""
    if not os.environ.get(MULTIPROC_ENV):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
