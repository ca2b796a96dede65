"""Disarm jobs run outside the event loop, in a bounded pool of worker processes.

Parsing hostile files may hang, crash or exhaust memory, so each job runs in a worker
process under resource limits while the gevent side only waits on a socket. A worker
that times out, dies or runs out of memory is replaced; jobs on other workers carry on.
Workers are "spawn"ed (a fresh interpreter), never forks of the process holding the
gevent hub. A runner belongs to the process (and thread) that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import math
import multiprocessing
import os
import pickle
import resource
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.queue
import gevent.socket

_HEADER = struct.Struct("!Q")
#: A spawned worker maps 25-55 MiB before its first job (more when the parent's main
#: module, which spawn re-imports, pulls in a lot); below this RLIMIT_AS leaves no room.
MIN_MEMORY_MB = 128


@dataclass(frozen=True)
class RunnerLimits:
    timeout: float = 30.0  # wall-clock seconds per job
    memory_mb: int = 1024  # RLIMIT_AS of each worker process (0 = no limit)
    cpu_seconds: int = 60  # CPU seconds per job, via RLIMIT_CPU re-armed per job (0 = none)

    def __post_init__(self) -> None:
        if self.memory_mb and self.memory_mb < MIN_MEMORY_MB:
            raise ValueError(f"memory_mb must be 0 or at least {MIN_MEMORY_MB}")


@dataclass(frozen=True)
class JobResult:
    ok: bool
    value: Any = None  # what the job function returned, when ok
    failure: str = ""  # "timeout" | "crashed" | "memory" | "error" when not ok
    detail: str = ""  # human-readable, for the log / report


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _recv(sock: socket.socket) -> Any:
    def exactly(n: int) -> bytearray:
        buf, got = bytearray(n), 0
        while got < n:
            if not (step := sock.recv_into(memoryview(buf)[got:])):
                raise EOFError("connection closed")
            got += step
        return buf

    return pickle.loads(exactly(_HEADER.unpack(exactly(_HEADER.size))[0]))


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ----------------------------------------------------------------- worker process
def _worker_main(sock: socket.socket, job: str, init: str | None, limits: RunnerLimits) -> None:
    # Ctrl-C reaches the whole process group, but the parent decides when workers stop;
    # everything else goes back to the defaults, whatever the parent's event loop set.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGXCPU):  # SIGXCPU's default kills: the CPU limit
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:  # "gicap-cdr" in ps/top (PR_SET_NAME); Linux only, so best effort
        ctypes.CDLL(None).prctl(15, b"gicap-cdr", 0, 0, 0)
    except (OSError, AttributeError):
        pass
    try:
        if limits.memory_mb:
            size = limits.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))
        function = _resolve(job)
        if init:
            _resolve(init)()
    except BaseException as exc:  # reported to the parent, then exit
        with contextlib.suppress(OSError):
            sock.sendall(_frame(("fatal", f"worker failed to start: {_describe(exc)}")))
        return
    try:
        sock.sendall(_frame(("ready", os.getpid())))
    except OSError:
        return  # stopped while starting: the parent is gone or no longer wants us
    while True:
        try:
            payload = _recv(sock)
        except (EOFError, OSError):
            return  # the parent closed our socket or died: nothing more to do
        if limits.cpu_seconds:
            # RLIMIT_CPU counts the whole life of this long-lived process: re-arm it
            # relative to now. Only the soft limit, since a lowered hard one is final.
            usage = resource.getrusage(resource.RUSAGE_SELF)
            soft = math.ceil(usage.ru_utime + usage.ru_stime) + limits.cpu_seconds
            hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
            soft = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        try:
            reply = _frame(("ok", function(payload)))
        except MemoryError as exc:
            reply = _frame(("memory", _describe(exc)))
        except Exception as exc:  # the job's (or pickling's) failure, reported
            reply = _frame(("error", _describe(exc)))
        try:
            sock.sendall(reply)
        except OSError:
            return  # the parent is gone


# ----------------------------------------------------------------- parent side
class _Worker:
    def __init__(self, ctx: Any, job: str, init: str | None, limits: RunnerLimits) -> None:
        ours, theirs = socket.socketpair()
        self.proc = ctx.Process(
            target=_worker_main, args=(theirs, job, init, limits), name="gicap-cdr", daemon=True
        )
        self.proc.start()
        theirs.close()  # the child has its own copy; EOF on ours must mean "worker gone"
        self.sock = gevent.socket.socket(ours.family, ours.type, fileno=ours.detach())
        self.ready = False

    def reap(self, timeout: float, kill: bool = False) -> bool:
        """Close our end (and SIGKILL the process if asked), wait cooperatively for it to
        exit (its sentinel fd becomes readable), then collect its status: no zombie."""
        self.sock.close()
        if kill and self.proc.is_alive():
            self.proc.kill()
        try:
            gevent.socket.wait_read(self.proc.sentinel, timeout)
        except TimeoutError:
            return False
        self.proc.join()
        return True

    def death(self) -> str:
        self.reap(2)
        if (code := self.proc.exitcode) is None:
            return "worker died (exit status unknown)"
        if code < 0:
            return f"worker killed by {signal.Signals(-code).name}"
        return f"worker exited with status {code}"


class CDRRunner:
    def __init__(
        self,
        job: str,
        workers: int,
        limits: RunnerLimits,
        *,
        initializer: str | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.job, self.initializer, self.limits, self.size = job, initializer, limits, workers
        self._ctx = multiprocessing.get_context("spawn")
        self._all: set[_Worker] = set()
        self._idle: gevent.queue.Queue[_Worker] = gevent.queue.Queue()
        self._running, self._restarts, self._timeouts = False, 0, 0
        #: Told "timeout" and "restart" as they happen (the metrics count them).
        self.on_event = on_event

    def _event(self, kind: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind)
            except Exception:
                pass  # an observer's failure must not fail the job

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def timeouts(self) -> int:
        return self._timeouts

    def start(self) -> None:
        if not self._running:
            self._running = True
            for _ in range(self.size):
                self._spawn()

    def _spawn(self) -> None:
        worker = _Worker(self._ctx, self.job, self.initializer, self.limits)
        self._all.add(worker)
        self._idle.put(worker)

    def submit(self, payload: Any) -> JobResult:
        """Run the job on ``payload`` in a worker. Blocks only the calling greenlet (or,
        outside gevent, the caller while the hub runs). An unpicklable payload raises here."""
        if not self._running:
            raise RuntimeError("CDRRunner is not running")
        request = _frame(payload)
        worker = self._idle.get()  # cooperative: only this greenlet waits for a free worker
        result = None
        try:
            result = self._run(worker, request)
            if result.failure == "timeout":
                self._timeouts += 1
                self._event("timeout")
            return result
        finally:
            # Only a worker whose job merely raised is kept: after a MemoryError its heap
            # may be fragmented or half-built, and every other failure leaves it dead or stuck.
            if result is not None and (result.ok or result.failure == "error") and self._running:
                self._idle.put(worker)
            else:
                worker.reap(5, kill=True)
                self._all.discard(worker)
                if self._running:
                    self._restarts += 1
                    self._event("restart")
                    self._spawn()

    def _run(self, worker: _Worker, request: bytes) -> JobResult:
        if not worker.ready:
            # A fresh interpreter takes a moment to start: not counted against the job.
            try:
                with gevent.Timeout(max(self.limits.timeout, 30)):
                    status, info = _recv(worker.sock)
            except (gevent.Timeout, EOFError, OSError):
                status, info = "fatal", f"worker did not start: {worker.death()}"
            if status == "fatal":
                return JobResult(False, None, "crashed", info)
            worker.ready = True
        timer = gevent.Timeout(self.limits.timeout)
        timer.start()
        try:
            worker.sock.sendall(request)
            status, value = _recv(worker.sock)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            return JobResult(False, None, "timeout", f"no answer within {timer.seconds:g} s")
        except (EOFError, OSError):  # the worker died (or stop() closed its socket)
            if not self._running:
                return JobResult(False, None, "crashed", "runner stopped")
            death = worker.death()
            if worker.proc.exitcode == -signal.SIGXCPU:
                return JobResult(False, None, "timeout", f"CPU limit exceeded ({death})")
            return JobResult(False, None, "crashed", death)
        finally:
            timer.close()
        if status == "ok":
            return JobResult(True, value)
        return JobResult(False, None, status, value)

    def stop(self, timeout: float = 5) -> None:
        """Idle workers exit when their socket closes; busy ones are killed at once (their
        answer could no longer be delivered). Whatever is left after ``timeout`` seconds
        is killed too, and every process is reaped. Safe to call twice."""
        self._running = False
        idle = {self._idle.get_nowait() for _ in range(self._idle.qsize())}
        # Close every socket first so all idle workers start exiting together. A worker
        # that never said it was ready may still be importing the engines (seconds on a
        # loaded machine) and holds no job: it is killed at once, like a busy one.
        gentle = {w for w in idle if w.ready}
        for worker in self._all:
            worker.sock.close()
            if worker not in gentle and worker.proc.is_alive():
                worker.proc.kill()
        deadline = time.monotonic() + timeout
        for worker in list(self._all):
            if not worker.reap(max(0.0, deadline - time.monotonic())):
                worker.reap(5, kill=True)
            self._all.discard(worker)
