"""The Prometheus side: metric definitions, publishing a worker's sums, the exposition.

Imported only once ``PROMETHEUS_MULTIPROC_DIR`` is set (``gicap.obs.metrics``).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from gicap.obs.metrics import MULTIPROC_ENV, TxnCounts, TxnKey

__all__ = ["CONTENT_TYPE_LATEST", "Exporter", "render"]

#: ICAP transactions: sub-millisecond echoes up to CDR jobs near the 30 s timeout.
TXN_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
)  # fmt: skip
CDR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _ensure_multiprocess() -> None:
    # prometheus-client picks its value class when first imported. Should a plugin have
    # imported it before the master set the directory, switch to the multiprocess
    # class now: metrics created afterwards look ``values.ValueClass`` up at creation.
    if not os.environ.get(MULTIPROC_ENV):
        raise RuntimeError(f"{MULTIPROC_ENV} is not set: metrics are off")
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()


def _observe_many(child: Any, seconds: list[float]) -> None:
    """Histogram.observe() for many values with one mmap write per bucket, not two per
    value. Relies on Histogram's ``_upper_bounds``/``_buckets``/``_sum`` (stable since
    0.4); falls back to observe() should they ever change."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in seconds:
            child.observe(value)
        return
    counts = [0] * len(bounds)
    for value in seconds:
        counts[bisect_left(bounds, value)] += 1  # the first bound >= value; +Inf is last
    for bucket, n in zip(buckets, counts, strict=True):
        if n:
            bucket.inc(n)
    total.inc(sum(seconds))


class Exporter:
    """This process's metrics (registered nowhere: the master reads the files)."""

    def __init__(self) -> None:
        _ensure_multiprocess()
        self.transactions = Counter(
            "gicap_transactions",
            "ICAP transactions answered",
            ["service", "method", "outcome", "file_type", "status"],
            registry=None,
        )
        self.bytes_received = Counter(
            "gicap_bytes_received", "Body bytes received", ["service"], registry=None
        )
        self.bytes_sent = Counter("gicap_bytes_sent", "Body bytes sent", ["service"], registry=None)
        self.transaction_seconds = Histogram(
            "gicap_transaction_seconds",
            "ICAP transaction duration, from request head to the end of the response",
            ["service", "method"],
            buckets=TXN_BUCKETS,
            registry=None,
        )
        self.cdr_seconds = Histogram(
            "gicap_cdr_seconds",
            "Time to disarm one message (detection, engine, policy)",
            ["service", "file_type"],
            buckets=CDR_BUCKETS,
            registry=None,
        )
        # livesum: a dead worker's connections are gone, so its value must not count.
        self.connections = Gauge(
            "gicap_connections_active",
            "Open ICAP connections",
            ["listener"],
            multiprocess_mode="livesum",
            registry=None,
        )
        self.events = {
            "connections_refused": Counter(
                "gicap_connections_refused",
                "Connections answered 503 at once (connection limit or draining)",
                ["reason"],
                registry=None,
            ),
            "tls_handshake_failures": Counter(
                "gicap_tls_handshake_failures",
                "Secure ICAP handshakes that failed",
                ["reason"],
                registry=None,
            ),
            "reloads": Counter(
                "gicap_reloads", "SIGHUP reloads of the settings", ["result"], registry=None
            ),
            "cdr_worker_restarts": Counter(
                "gicap_cdr_worker_restarts",
                "CDR worker processes replaced (crashed, killed, timed out, out of memory)",
                registry=None,
            ),
            "cdr_timeouts": Counter(
                "gicap_cdr_timeouts", "CDR jobs stopped by the time or CPU limit", registry=None
            ),
        }
        self._not_after: Gauge | None = None
        self._published_connections: dict[str, int] = {}
        self._published_not_after: float | None = None

    def publish(
        self,
        txns: Mapping[TxnKey, TxnCounts],
        cdr: Mapping[tuple[str, str], list[float]],
        events: Mapping[tuple[str, tuple[str, ...]], float],
        connections: Mapping[str, int],
        not_after: float | None,
    ) -> None:
        bytes_in: dict[str, int] = {}
        bytes_out: dict[str, int] = {}
        durations: dict[tuple[str, str], list[float]] = {}
        for (service, method, outcome, file_type, status), c in txns.items():
            self.transactions.labels(service, method, outcome, file_type, str(status)).inc(c.count)
            bytes_in[service] = bytes_in.get(service, 0) + c.bytes_in
            bytes_out[service] = bytes_out.get(service, 0) + c.bytes_out
            durations.setdefault((service, method), []).extend(c.seconds)
        for service, n in bytes_in.items():
            self.bytes_received.labels(service).inc(n)
        for service, n in bytes_out.items():
            self.bytes_sent.labels(service).inc(n)
        for key, seconds in durations.items():
            _observe_many(self.transaction_seconds.labels(*key), seconds)
        for key, seconds in cdr.items():
            _observe_many(self.cdr_seconds.labels(*key), seconds)
        for (name, labels), amount in events.items():
            metric = self.events[name]
            (metric.labels(*labels) if labels else metric).inc(amount)
        for listener, open_now in connections.items():
            if self._published_connections.get(listener) != open_now:
                self.connections.labels(listener).set(open_now)
                self._published_connections[listener] = open_now
        if not_after is not None and not_after != self._published_not_after:
            self._published_not_after = not_after
            if self._not_after is None:
                # Created on first use: without a certificate there is no value to show.
                # livemax: every worker loads the same set; a dead worker's stale date
                # must not outlive it.
                self._not_after = Gauge(
                    "gicap_certificate_not_after_seconds",
                    "Expiry (notAfter, Unix time) of the Secure ICAP server certificate",
                    multiprocess_mode="livemax",
                    registry=None,
                )
            self._not_after.set(not_after)


def render(path: str | None = None) -> bytes:
    """The exposition of every process's metrics, summed (for ``/metrics``)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return generate_latest(registry)
