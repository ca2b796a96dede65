"""How the master sums up its workers' readiness reports for /readyz and systemd."""

from __future__ import annotations

import os

from gicap.server.master import (
    LISTENING,
    SECURE_DOWN,
    SECURE_UP,
    STARTED,
    Readiness,
    report_bytes,
)

WHY = "server certificate /etc/gicap/tls/tls-server-cert: file not found"


def _feed(readiness: Readiness, *reports: bytes) -> None:
    """The reports through a pipe, as the workers write them."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"".join(reports))
    os.close(write_fd)
    readiness.read(read_fd)
    os.close(read_fd)


def test_ready_only_when_every_worker_serves_its_configured_secure_icap() -> None:
    told: list[str | None] = []
    readiness = Readiness(2, told.append)
    for pid in (10, 11):
        readiness.spawned(pid)
    _feed(readiness, report_bytes(10, SECURE_DOWN, WHY), report_bytes(10, STARTED))
    assert readiness.not_ready() == "starting: 1 of 2 worker processes started"
    _feed(
        readiness,
        report_bytes(10, LISTENING),
        report_bytes(11, SECURE_DOWN, WHY),
        report_bytes(11, STARTED),
        report_bytes(11, LISTENING),
    )
    assert readiness.not_ready() == f"Secure ICAP configured but not serving: {WHY}"
    assert told == [WHY]  # (said once: the second worker says the same)
    _feed(readiness, report_bytes(10, SECURE_UP))
    assert readiness.not_ready() == f"Secure ICAP configured but not serving: {WHY}"
    _feed(readiness, report_bytes(11, SECURE_UP))
    assert readiness.not_ready() is None
    assert told == [WHY, None]
    # A replacement worker is waited for, Secure ICAP included.
    readiness.exited(11)
    readiness.spawned(12)
    _feed(readiness, report_bytes(12, STARTED), report_bytes(12, LISTENING))
    assert readiness.not_ready() == "starting: 1 of 2 worker processes started"
    _feed(readiness, report_bytes(12, SECURE_UP))
    assert readiness.not_ready() is None
    readiness.stopping = True
    assert readiness.not_ready() == "draining"


def test_a_long_reason_is_cut_to_one_pipe_write() -> None:
    readiness = Readiness(1)
    readiness.spawned(10)
    report = report_bytes(10, SECURE_DOWN, "é" * 5000)
    assert len(report) < 4096  # PIPE_BUF: never split, never mixed with another's
    _feed(readiness, report, report_bytes(10, STARTED), report_bytes(10, LISTENING))
    why = readiness.not_ready()
    assert why is not None and why.startswith("Secure ICAP configured but not serving: éé")
