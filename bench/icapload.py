"""A fast ICAP load client (stdlib only): RESPMOD to an echo service, keep-alive or not.

P worker processes each drive C connections with an epoll event loop (one thread per
process: threads would only fight over the GIL; raw epoll rather than `selectors` because
its per-event bookkeeping is measurable at 20k+ requests a second). Each request is a
RESPMOD without Preview and without `Allow: 204`, so an echo service has to answer `200`
with the whole body; the response is parsed (status line, Encapsulated, chunked body up to
the last chunk) and the returned body length is checked against the sent one.

Usage as a module: `run_load(LoadConfig(port=1344, body_size=65536))` returns a
`LoadResult`. As a CLI: `python -m bench.icapload icap://127.0.0.1:1344/echo --body 64k`.

Numbers are measured over a window that starts after a warm-up, on the same monotonic clock
in every process; MB/s counts the body bytes echoed (one direction) in 10^6 bytes.
"""

from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import os
import re
import select
import socket
import ssl
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

READ = select.EPOLLIN
WRITE = select.EPOLLOUT
# Errors and hang-ups are reported whether asked for or not: treat them as readable, the
# read then tells what happened.
READISH = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP
ENCAPSULATED = re.compile(rb"\r\nencapsulated:[ \t]*([^\r]*)", re.IGNORECASE)
CONNECTION_CLOSE = re.compile(rb"\r\nconnection:[^\r]*\bclose\b", re.IGNORECASE)
RECV_SIZE = 256 * 1024
# How many error messages a run keeps (the count is always complete).
MAX_ERROR_SAMPLES = 8
# Seconds in-flight requests get to finish after a duration-bounded window closes, so the
# server does not see connections torn down mid-transaction (they are not counted).
END_GRACE = 1.0


@dataclass(frozen=True)
class LoadConfig:
    """What to send, where, how hard and for how long."""

    port: int
    host: str = "127.0.0.1"
    service: str = "echo"
    tls: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    server_hostname: str = "localhost"
    tls_max: str | None = None  # "1.2" pins TLS 1.2; None lets the peers pick (1.3)
    body_size: int = 1024
    chunk_size: int = 16384
    processes: int = 2
    connections: int = 4  # per process
    seconds: float = 5.0
    warmup: float = 1.0
    requests: int = 0  # > 0: count-bounded, `seconds` is ignored
    new_connection: bool = False
    verify_content: bool = False
    timeout: float = 10.0  # seconds without progress before a request counts as failed

    @property
    def url(self) -> str:
        scheme = "icaps" if self.tls else "icap"
        return f"{scheme}://{self.host}:{self.port}/{self.service}"

    @property
    def mode(self) -> str:
        return "new-conn" if self.new_connection else "keep-alive"


@dataclass
class LoadResult:
    """Outcome of one run; `ok` is false when anything failed."""

    url: str
    mode: str
    body_size: int
    processes: int
    connections: int
    requests: int
    errors: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    client_cpu: float  # cores' worth of CPU the load workers used during the window
    connects: int
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mbps(self) -> float:
        return self.rps * self.body_size / 1e6

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.requests > 0

    def summary(self) -> str:
        return (
            f"{self.url} {self.mode} body={self.body_size} P={self.processes} "
            f"C={self.connections}: {self.rps:,.0f} req/s {self.mbps:,.1f} MB/s "
            f"p50={self.p50_ms:.2f}ms p99={self.p99_ms:.2f}ms errors={self.errors} "
            f"requests={self.requests} connects={self.connects} "
            f"client_cpu={self.client_cpu:.2f} cores"
        )


# --------------------------------------------------------------------------- request


def make_body(size: int) -> bytes:
    """A non-trivial, deterministic body (no run of zeros a server could shortcut)."""
    pattern = bytes(range(256)) * ((size // 256) + 1)
    return pattern[:size]


def build_request(cfg: LoadConfig) -> bytes:
    """The exact bytes of one RESPMOD request, built once per run."""
    body = make_body(cfg.body_size)
    req_hdr = b"GET http://bench.invalid/object HTTP/1.1\r\nHost: bench.invalid\r\n\r\n"
    res_hdr = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % cfg.body_size
    )
    head = (
        f"RESPMOD {cfg.url} ICAP/1.0\r\n"
        f"Host: {cfg.host}:{cfg.port}\r\n"
        + ("Connection: close\r\n" if cfg.new_connection else "")
        + f"Encapsulated: req-hdr=0, res-hdr={len(req_hdr)}, "
        f"res-body={len(req_hdr) + len(res_hdr)}\r\n\r\n"
    ).encode("ascii")
    parts = [head, req_hdr, res_hdr]
    step = max(1, cfg.chunk_size)
    for off in range(0, len(body), step):
        piece = body[off : off + step]
        parts += [b"%x\r\n" % len(piece), piece, b"\r\n"]
    parts.append(b"0\r\n\r\n")
    return b"".join(parts)


def client_context(cfg: LoadConfig) -> ssl.SSLContext:
    """TLS 1.2+ client context verifying the server as `server_hostname`, with our cert."""
    ctx = ssl.create_default_context(cafile=cfg.cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if cfg.certfile:
        ctx.load_cert_chain(cfg.certfile, cfg.keyfile)
    return ctx


def options(
    host: str,
    port: int,
    service: str = "echo",
    *,
    tls_context: ssl.SSLContext | None = None,
    server_hostname: str = "localhost",
    timeout: float = 2.0,
) -> int:
    """Send one OPTIONS and return the ICAP status code (raises OSError if unreachable)."""
    scheme = "icaps" if tls_context else "icap"
    request = (
        f"OPTIONS {scheme}://{host}:{port}/{service} ICAP/1.0\r\n"
        f"Host: {host}:{port}\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if tls_context:
            sock = tls_context.wrap_socket(sock, server_hostname=server_hostname)
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                break
            data += more
        line = data.split(b"\r\n", 1)[0].split()
        if len(line) < 2 or not line[0].startswith(b"ICAP/"):
            raise OSError(f"not an ICAP response: {data[:80]!r}")
        return int(line[1])
    finally:
        sock.close()


# --------------------------------------------------------------------------- worker

# Connection states.
CONNECTING, HANDSHAKE, ACTIVE, IDLE, CLOSED = range(5)
# Response parser phases.
P_HEAD, P_SIZE, P_DATA, P_DONE = range(4)


class ResponseError(Exception):
    """The server's answer was wrong (status, framing or body)."""


class _Conn:
    __slots__ = (
        "sock", "state", "events", "out", "outpos", "buf", "scan", "phase", "pos", "chunk",
        "body_start", "body_len", "close_after", "t0", "t_issue", "last", "retry_at",
    )  # fmt: skip

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.state = CLOSED
        self.events = 0
        self.out = memoryview(b"")
        self.outpos = 0
        self.buf = bytearray()
        self.scan = 0
        self.phase = P_HEAD
        self.pos = 0
        self.chunk = 0
        self.body_start = 0
        self.body_len = 0
        self.close_after = False
        self.t0 = 0.0
        self.t_issue = 0.0
        self.last = 0.0
        self.retry_at = 0.0


class _Worker:
    """One process's event loop over `cfg.connections` connections."""

    def __init__(self, cfg: LoadConfig, quota: int, t_start: float) -> None:
        self.cfg = cfg
        self.request = memoryview(build_request(cfg))
        self.body = make_body(cfg.body_size)
        self.verify = cfg.verify_content
        self.addr = (cfg.host, cfg.port)
        self.tls = client_context(cfg) if cfg.tls else None
        self.epoll = select.epoll()
        self.by_fd: dict[int, _Conn] = {}
        self.rbuf = bytearray(RECV_SIZE)
        self.rview = memoryview(self.rbuf)
        self.quota = quota
        self.t_measure = t_start + cfg.warmup
        self.t_end = self.t_measure + cfg.seconds if cfg.requests <= 0 else float("inf")
        self.latencies = array("d")
        self.count = 0
        self.issued = 0
        self.errors = 0
        self.samples: list[str] = []
        self.connects = 0
        self.t_last = self.t_measure
        self.stopping = False
        self.conns = [_Conn() for _ in range(cfg.connections)]

    # -- bookkeeping

    def _error(self, c: _Conn, msg: str) -> None:
        self.errors += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(msg)
        self._close(c)
        # A short pause keeps a refused or crashing server from turning into a busy loop.
        c.retry_at = time.monotonic() + 0.05

    def _close(self, c: _Conn) -> None:
        if c.sock is not None:
            if c.events:
                self.epoll.unregister(c.sock.fileno())
                del self.by_fd[c.sock.fileno()]
            c.sock.close()
        c.sock = None
        c.events = 0
        c.state = CLOSED
        c.buf.clear()

    def _want(self, c: _Conn, events: int) -> None:
        if events == c.events:
            return
        assert c.sock is not None
        fd = c.sock.fileno()
        if not c.events:
            self.epoll.register(fd, events)
            self.by_fd[fd] = c
        elif events:
            self.epoll.modify(fd, events)
        else:
            self.epoll.unregister(fd)
            del self.by_fd[fd]
        c.events = events

    def _may_issue(self, now: float) -> bool:
        if self.stopping:
            return False
        if self.cfg.requests > 0:
            return self.issued < self.quota or now < self.t_measure
        return now < self.t_end

    # -- connection setup

    def _open(self, c: _Conn, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        c.sock = sock
        c.state = CONNECTING
        c.t0 = now  # in new-connection mode the latency includes connect and handshake
        c.t_issue = now
        c.last = now
        self.connects += 1
        if self.cfg.requests > 0 and now >= self.t_measure:
            self.issued += 1
        err = sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            self._error(c, f"connect: {os.strerror(err)}")
            return
        self._want(c, WRITE)

    def _connected(self, c: _Conn) -> None:
        assert c.sock is not None
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._error(c, f"connect: {os.strerror(err)}")
            return
        try:
            # A stale event for a previous socket that had the same fd number would land
            # here too: only go on once the connection is really established.
            c.sock.getpeername()
        except OSError:
            return
        if self.tls is None:
            self._send_request(c, fresh=False)
            return
        # wrap_socket takes over the same fd, so the epoll registration stays valid.
        c.sock = self.tls.wrap_socket(
            c.sock,
            server_hostname=self.cfg.server_hostname,
            do_handshake_on_connect=False,
        )
        c.state = HANDSHAKE
        self._handshake(c)

    def _handshake(self, c: _Conn) -> None:
        assert isinstance(c.sock, ssl.SSLSocket)
        try:
            c.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(c, READ)
            return
        except ssl.SSLWantWriteError:
            self._want(c, WRITE)
            return
        self._send_request(c, fresh=False)

    # -- request / response

    def _send_request(self, c: _Conn, fresh: bool) -> None:
        """Start a transaction on an open connection (`fresh`: a new issue, not a connect)."""
        now = time.monotonic()
        if fresh:
            c.t0 = now
            c.t_issue = now
            if self.cfg.requests > 0 and now >= self.t_measure:
                self.issued += 1
        c.state = ACTIVE
        c.last = now
        c.out = self.request
        c.outpos = 0
        c.phase = P_HEAD
        c.scan = 0
        c.body_len = 0
        c.close_after = False
        self._write(c)

    def _write(self, c: _Conn) -> None:
        assert c.sock is not None
        out = c.out
        try:
            while c.outpos < len(out):
                c.outpos += c.sock.send(out[c.outpos :])
        except (BlockingIOError, ssl.SSLWantWriteError):
            self._want(c, READ | WRITE)
            return
        except ssl.SSLWantReadError:
            self._want(c, READ)
            return
        self._want(c, READ)

    def _read(self, c: _Conn) -> None:
        assert c.sock is not None
        sock = c.sock
        view = self.rview
        eof = False
        while True:
            try:
                n = sock.recv_into(view, RECV_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                self._want(c, READ | WRITE)
                break
            if n == 0:
                eof = True
                break
            c.buf += view[:n]
            # A plain socket gets one recv per readiness event; TLS may hold decrypted
            # records back, so it is drained until it would block (or the peer closes).
            if self.tls is None:
                break
        if c.state != ACTIVE:
            if c.buf:
                self._error(c, f"unsolicited bytes from the server: {bytes(c.buf[:60])!r}")
            elif eof:
                self._close(c)
            return
        c.last = time.monotonic()
        try:
            # Parse before acting on EOF: a server that closes right after the last chunk
            # (Connection: close) has still delivered a complete response.
            done = self._parse(c)
        except ResponseError as exc:
            self._error(c, str(exc))
            return
        except ValueError as exc:
            self._error(c, f"unparsable response: {exc}")
            return
        if done:
            c.close_after = c.close_after or eof
            self._complete(c)
        elif eof:
            what = "mid-response" if c.buf else "before the response"
            self._error(c, f"connection closed by the server {what}")

    def _parse(self, c: _Conn) -> bool:
        """Advance the response parser over `c.buf`; True once the response is complete.

        Kept lean (locals, no per-line splitting) because at 1 KiB the client spends a good
        part of its CPU here and every microsecond is taken from the server under test.
        """
        buf = c.buf
        if c.phase == P_HEAD:
            end = buf.find(b"\r\n\r\n", c.scan)
            if end < 0:
                c.scan = max(0, len(buf) - 3)
                return False
            if not (buf.startswith(b"ICAP/1.0 200") and buf[12] in (32, 13)):
                line = bytes(buf[: buf.find(b"\r\n")])
                raise ResponseError(f"status line {line[:80]!r} (200 expected)")
            head = bytes(buf[: end + 2])
            match = ENCAPSULATED.search(head)
            if match is None:
                raise ResponseError("200 without Encapsulated")
            c.close_after = CONNECTION_CLOSE.search(head) is not None
            offsets = {}
            for item in match.group(1).split(b","):
                key, _, value = item.partition(b"=")
                offsets[key.strip()] = int(value)
            if b"res-hdr" not in offsets:
                raise ResponseError(f"RESPMOD 200 without res-hdr: {match.group(1)!r}")
            if b"res-body" in offsets:
                c.body_start = end + 4 + offsets[b"res-body"]
                c.phase = P_SIZE
            elif b"null-body" in offsets:
                c.body_start = end + 4 + offsets[b"null-body"]
                c.phase = P_DONE
            else:
                raise ResponseError(f"no body token in Encapsulated: {match.group(1)!r}")
            c.pos = c.body_start
        pos = c.pos
        phase = c.phase
        size = c.chunk
        body_len = c.body_len
        have = len(buf)
        while phase != P_DONE:
            if phase == P_SIZE:
                nl = buf.find(b"\r\n", pos)
                if nl < 0:
                    break
                line = buf[pos:nl]
                # Chunk extensions are legal (and ignored); int() tolerates the whitespace.
                size = int(line.split(b";", 1)[0] if b";" in line else line, 16)
                if size == 0:
                    # Last chunk: the message ends at the first empty line (after trailers).
                    term = buf.find(b"\r\n\r\n", nl)
                    if term < 0:
                        break
                    pos = term + 4
                    phase = P_DONE
                    break
                pos = nl + 2
                phase = P_DATA
            else:
                stop = pos + size
                if have < stop + 2:
                    break
                if buf[stop] != 13 or buf[stop + 1] != 10:
                    raise ResponseError(f"chunk of {size} bytes not followed by CRLF")
                if self.verify and buf[pos:stop] != self.body[body_len : body_len + size]:
                    raise ResponseError(f"body differs in the chunk at offset {body_len}")
                body_len += size
                pos = stop + 2
                phase = P_SIZE
        c.pos = pos
        c.phase = phase
        c.chunk = size
        c.body_len = body_len
        if phase != P_DONE or have < pos:
            return False
        start = c.body_start
        if buf[start - 4 : start] != b"\r\n\r\n":
            raise ResponseError("encapsulated HTTP header does not end with CRLFCRLF")
        if body_len != self.cfg.body_size:
            raise ResponseError(f"body length {body_len}, sent {self.cfg.body_size}")
        return True

    def _complete(self, c: _Conn) -> None:
        now = time.monotonic()
        if self.cfg.requests > 0:
            counted = c.t_issue >= self.t_measure
        else:
            counted = self.t_measure <= now <= self.t_end
        if counted:
            self.count += 1
            self.latencies.append(now - c.t0)
            self.t_last = now
        del c.buf[: c.pos]
        if c.buf:
            self._error(c, f"{len(c.buf)} unexpected bytes after the response")
            return
        if self.cfg.new_connection or c.close_after:
            self._close(c)
            if self._may_issue(now):
                self._open(c, now)
            return
        if self._may_issue(now):
            self._send_request(c, fresh=True)
        else:
            c.state = IDLE
            self._want(c, 0)

    # -- loop

    def _on_event(self, c: _Conn, mask: int) -> None:
        try:
            if c.state == CONNECTING:
                self._connected(c)
            elif c.state == HANDSHAKE:
                self._handshake(c)
            else:
                # Pending output is retried on any event: a TLS write may have been waiting
                # for the socket to turn readable (SSLWantReadError).
                if c.outpos < len(c.out):
                    self._write(c)
                elif mask & WRITE:
                    # Only a TLS read that wanted to write asks for WRITE with nothing queued.
                    self._want(c, READ)
                    mask |= READ
                if mask & READISH and c.sock is not None:
                    self._read(c)
        except (OSError, ssl.SSLError) as exc:
            self._error(c, f"{type(exc).__name__}: {exc}")

    def _check_stalls(self, now: float) -> None:
        for c in self.conns:
            if c.state in (CONNECTING, HANDSHAKE, ACTIVE) and now - c.last > self.cfg.timeout:
                where = ("connecting", "in the TLS handshake", "mid-transaction")[c.state]
                self._error(c, f"no progress for {self.cfg.timeout:g}s {where}")

    def run(self, t_start: float) -> dict[str, Any]:
        time.sleep(max(0.0, t_start - time.monotonic()))
        now = time.monotonic()
        for c in self.conns:
            self._open(c, now)
        cpu0 = cpu_measure = cpu_end = time.process_time()
        measuring = False
        next_check = now + 0.5
        deadline = float("inf")
        while True:
            now = time.monotonic()
            if not measuring and now >= self.t_measure:
                measuring = True
                cpu_measure = time.process_time()
            if not self.stopping and not self._may_issue(now) and now >= self.t_measure:
                self.stopping = True
                cpu_end = time.process_time()
                # Count-bounded: the requests still in flight are part of the count.
                deadline = now + (END_GRACE if self.cfg.requests <= 0 else self.cfg.timeout)
            if self.stopping:
                busy = [c for c in self.conns if c.state not in (IDLE, CLOSED)]
                if not busy or now >= deadline:
                    break
            else:
                for c in self.conns:
                    if c.state == CLOSED and now >= c.retry_at:
                        self._open(c, now)
            if now >= next_check:
                self._check_stalls(now)
                next_check = now + 0.5
            by_fd = self.by_fd
            for fd, mask in self.epoll.poll(0.05):
                c = by_fd.get(fd)
                if c is not None:
                    self._on_event(c, mask)
        for c in self.conns:
            self._close(c)
        self.epoll.close()
        return {
            "count": self.count,
            "errors": self.errors,
            "samples": self.samples,
            "latencies": self.latencies.tobytes(),
            "cpu": cpu_end - (cpu_measure if measuring else cpu0),
            "t_last": self.t_last,
            "connects": self.connects,
        }


def _worker_main(cfg: LoadConfig, quota: int, t_start: float, pipe: Connection) -> None:
    try:
        result = _Worker(cfg, quota, t_start).run(t_start)
    except BaseException as exc:  # report, never hang the parent
        result = {"fatal": f"{type(exc).__name__}: {exc}"}
    pipe.send(result)
    pipe.close()


# --------------------------------------------------------------------------- driver


def _percentile(sorted_values: array[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_load(cfg: LoadConfig, probe: Callable[[str], None] | None = None) -> LoadResult:
    """Run the load and merge the workers' figures.

    `probe("start")` / `probe("end")` are called in this process when a duration-bounded
    measuring window opens and closes (e.g. to sample the server's CPU time).
    """
    ctx = multiprocessing.get_context("fork")
    processes = max(1, cfg.processes)
    # Every worker starts at the same instant, after all have forked.
    t_start = time.monotonic() + 0.1 + 0.02 * processes
    pipes: list[Connection] = []
    procs = []
    for i in range(processes):
        quota = cfg.requests // processes + (1 if i < cfg.requests % processes else 0)
        here, there = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker_main, args=(cfg, quota, t_start, there), daemon=True)
        proc.start()
        there.close()
        pipes.append(here)
        procs.append(proc)

    t_measure = t_start + cfg.warmup
    if probe is not None and cfg.requests <= 0:
        time.sleep(max(0.0, t_measure - time.monotonic()))
        probe("start")
        time.sleep(max(0.0, t_measure + cfg.seconds - time.monotonic()))
        probe("end")

    budget = cfg.warmup + cfg.timeout + END_GRACE + 10
    budget += cfg.seconds if cfg.requests <= 0 else 600
    results: list[dict[str, Any]] = []
    for pipe, proc in zip(pipes, procs, strict=True):
        remaining = t_start + budget - time.monotonic()
        if pipe.poll(max(0.0, remaining)):
            try:
                results.append(pipe.recv())
            except EOFError:
                results.append({"fatal": f"worker exited with {proc.exitcode}"})
        else:
            results.append({"fatal": "worker did not report in time"})
            proc.kill()
        proc.join(5)

    latencies = array("d")
    count = errors = connects = 0
    cpu = 0.0
    samples: list[str] = []
    t_last = t_measure
    for r in results:
        if "fatal" in r:
            errors += 1
            samples.append("worker failed: " + r["fatal"])
            continue
        count += r["count"]
        errors += r["errors"]
        connects += r["connects"]
        cpu += r["cpu"]
        t_last = max(t_last, r["t_last"])
        samples.extend(r["samples"])
        part = array("d")
        part.frombytes(r["latencies"])
        latencies.extend(part)
    elapsed = cfg.seconds if cfg.requests <= 0 else t_last - t_measure
    ordered = array("d", sorted(latencies))
    return LoadResult(
        url=cfg.url,
        mode=cfg.mode,
        body_size=cfg.body_size,
        processes=processes,
        connections=cfg.connections,
        requests=count,
        errors=errors,
        elapsed=elapsed,
        p50_ms=_percentile(ordered, 0.50) * 1000,
        p99_ms=_percentile(ordered, 0.99) * 1000,
        mean_ms=(sum(ordered) / len(ordered) * 1000) if ordered else 0.0,
        client_cpu=cpu / elapsed if elapsed > 0 else 0.0,
        connects=connects,
        error_samples=samples[:MAX_ERROR_SAMPLES],
    )


# --------------------------------------------------------------------------- CLI


def parse_size(text: str) -> int:
    """`1024`, `1k`, `64KiB`, `1m` → bytes."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = {"k": 1024, "m": 1024 * 1024}.get(t[-1:], 1)
    return int(t[:-1] if scale > 1 else t) * scale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="icap://127.0.0.1:1344/echo or icaps://127.0.0.1:11344/echo")
    ap.add_argument("--body", type=parse_size, default=1024, help="body size (1k, 64k, ...)")
    ap.add_argument("--chunk", type=parse_size, default=16384, help="chunk size of the body")
    ap.add_argument("-P", "--processes", type=int, default=2)
    ap.add_argument("-C", "--connections", type=int, default=4, help="per process")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("-n", "--requests", type=int, default=0, help="count-bounded run")
    ap.add_argument("--new-connection", action="store_true", help="one connection per request")
    ap.add_argument("--verify-content", action="store_true", help="compare body bytes too")
    ap.add_argument("--cert", help="client certificate (icaps)")
    ap.add_argument("--key", help="client key (icaps)")
    ap.add_argument("--cafile", help="CA that signed the server certificate (icaps)")
    ap.add_argument("--server-hostname", default="localhost", help="TLS name to verify")
    ap.add_argument("--tls-max", choices=["1.2", "1.3"])
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)

    url = urlsplit(args.url)
    if url.scheme not in ("icap", "icaps"):
        ap.error("the URL scheme must be icap or icaps")
    tls = url.scheme == "icaps"
    cfg = LoadConfig(
        port=url.port or (11344 if tls else 1344),
        host=url.hostname or "127.0.0.1",
        service=url.path.lstrip("/") or "echo",
        tls=tls,
        certfile=args.cert,
        keyfile=args.key,
        cafile=args.cafile,
        server_hostname=args.server_hostname,
        tls_max=args.tls_max,
        body_size=args.body,
        chunk_size=args.chunk,
        processes=args.processes,
        connections=args.connections,
        seconds=args.seconds,
        warmup=args.warmup,
        requests=args.requests,
        new_connection=args.new_connection,
        verify_content=args.verify_content,
        timeout=args.timeout,
    )
    result = run_load(cfg)
    if args.json:
        print(json.dumps(asdict(result) | {"rps": result.rps, "mbps": result.mbps}, indent=2))
    else:
        print(result.summary())
        for sample in result.error_samples:
            print("  error:", sample, file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
