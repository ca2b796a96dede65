"""Helpers shared by the server harnesses: free ports, readiness polling, CPU accounting."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from bench.icapload import options
from bench.pki import Pki

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerFailed(RuntimeError):
    """A server under test did not start or answer."""


def free_port() -> int:
    """A loopback port nobody listens on right now (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tls_client_context(pki: Pki) -> ssl.SSLContext:
    """What a Squid with `tls-cert=`/`tls-key=`/`tls-cafile=` presents: our client cert."""
    ctx = ssl.create_default_context(cafile=str(pki.cafile))
    ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def log_excerpt(path: Path, lines: int = 20) -> str:
    """The last warning/error/traceback lines of a server log (the tail if there are none)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    marks = ("WARN", "ERROR", "CRIT", "Traceback", "Error", "error")
    picked = [line for line in text if any(m in line for m in marks)]
    return "\n".join((picked or text)[-lines:])


def wait_ready(
    proc: subprocess.Popen[bytes],
    port: int,
    service: str,
    log: Path,
    *,
    tls_context: ssl.SSLContext | None = None,
    timeout: float = 20.0,
) -> None:
    """Poll OPTIONS until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(
                f"exited with status {proc.returncode} before answering; log:\n{log_tail(log)}"
            )
        try:
            status = options("127.0.0.1", port, service, tls_context=tls_context)
            if status == 200:
                return
            last = f"OPTIONS answered {status}"
        except (OSError, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise ServerFailed(f"not ready after {timeout:.0f}s ({last}); log:\n{log_tail(log)}")


def launch(
    cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, output to ``log``."""
    with open(log, "wb") as out:
        # Output goes to a file: an unread pipe would eventually block the server.
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )


def wait_listeners(
    proc: subprocess.Popen[bytes], port: int, tls_port: int | None, pki: Pki | None, log: Path
) -> None:
    """Wait until the plain port and, when set, the mTLS port answer OPTIONS on echo."""
    wait_ready(proc, port, "echo", log)
    if tls_port is not None and pki is not None:
        wait_ready(proc, tls_port, "echo", log, tls_context=tls_client_context(pki))


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the server we started, then SIGKILL its own process group if it lingers.

    The servers are started with start_new_session=True, so the group holds only the
    processes of this server (its pre-forked workers), never anything else.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


def machine_busy(interval: float = 0.5) -> float:
    """Fraction of all CPUs busy over `interval` (anything else running skews a benchmark)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return idle, sum(fields[:8])  # steal counts as busy: it is time we do not get

    idle0, total0 = sample()
    time.sleep(interval)
    idle1, total1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of `pid` and all its live descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; the fields after its ')' are fixed.
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid = int(fields[1])
        children.setdefault(ppid, []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total
