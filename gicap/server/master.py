"""Start-up: reserve the listening ports once, then run one worker per process.

The ports are reserved before forking (bound, not listening); each worker then
listens on its own SO_REUSEPORT socket for the same address, so one machine's
cores are all used. The master only forwards signals
and replaces workers that die; it never touches a client connection.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable

from gicap.config import Settings, load_settings
from gicap.obs import sdnotify
from gicap.plugins import PluginHost

log = logging.getLogger("gicap.server")


def reserve(host: str, port: int) -> socket.socket:
    """Bind the port without listening: it is ours, and a busy port fails start-up.

    Without SO_REUSEADDR: a bound, non-listening SO_REUSEADDR socket lets any other
    program bind the port with SO_REUSEADDR too (Python's create_server, most servers)
    and listen on it, after which our workers' listeners fail with EADDRINUSE. The
    secure port stays unlistened until certificates arrive, so that window can be long.
    Only SO_REUSEPORT sockets of our own user (the workers) may join.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        # Connections of a previous server without SO_REUSEPORT lingering in TIME_WAIT
        # block the bind above for a minute; SO_REUSEADDR gets past them (a listener
        # still makes this fail).
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
    return sock


def open_listener(reserved: socket.socket, backlog: int = 1024) -> socket.socket:
    """A worker's own listening socket on the reserved address.

    Every worker listens on its own SO_REUSEPORT socket, so the kernel spreads new
    connections evenly over the processes; with one shared accept queue a single
    busy gevent loop tends to accept nearly all of them.
    """
    sock = socket.socket(reserved.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(reserved.getsockname()[:2])
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def run_worker(
    settings: Settings,
    host: PluginHost,
    plain: socket.socket | None,
    secure: socket.socket | None,
    index: int = 0,
    on_ready: Callable[[], None] | None = None,
) -> int:
    # gevent is imported here, after any fork, so each worker has its own hub.
    from gicap.obs.txlog import TransactionLog
    from gicap.server.handler import ServerContext
    from gicap.server.worker import Worker

    s = settings.server
    services = host.services(settings)
    per_process = max(1, math.ceil(s.max_connections / s.worker_count))
    ctx = ServerContext(
        s,
        services,
        per_process,
        s.max_connections,
        accept_icap_scheme_on_tls=settings.certificate.accept_icap_scheme,
        txlog=TransactionLog(enabled=settings.logging.level in ("DEBUG", "INFO")),
    )
    worker = Worker(ctx, plain, secure, settings.certificate, index=index)
    worker.on_ready = on_ready
    worker.settings_loader = lambda: load_settings(settings.source or None)
    worker.plugins = host
    worker.serve_forever()
    return 0


def serve(settings: Settings, host: PluginHost) -> int:
    s = settings.server
    plain = reserve(s.host, s.port) if s.port else None
    if plain is not None:
        log.info("plain ICAP listening on %s:%d", s.host, plain.getsockname()[1])
    # Bound now so the port is ours; a worker listens once a certificate set loads.
    secure = reserve(s.host, s.secure_port) if s.secure_port else None
    if secure is not None:
        _announce_secure(settings)
    else:
        log.info("Secure ICAP is off: server.secure_port is 0")
    count = s.worker_count
    if count == 1:
        return run_worker(settings, host, plain, secure, on_ready=_ready_single(settings))
    return _supervise(settings, host, plain, secure, count)


def _status(settings: Settings) -> str:
    s = settings.server
    ports = [f"icap {s.port}" if s.port else "", f"icaps {s.secure_port}" if s.secure_port else ""]
    return f"STATUS=serving ({', '.join(p for p in ports if p)}; {s.worker_count} worker(s))"


def _ready_single(settings: Settings) -> Callable[[], None]:
    def ready() -> None:
        import gevent

        sdnotify.notify("READY=1", _status(settings))
        interval = sdnotify.watchdog_interval()
        if interval:

            def ping() -> None:
                while True:
                    gevent.sleep(interval)
                    sdnotify.notify("WATCHDOG=1")

            gevent.spawn(ping)

    return ready


def _watchdog_thread() -> None:
    interval = sdnotify.watchdog_interval()
    if not interval:
        return

    def ping() -> None:
        while True:
            time.sleep(interval)
            sdnotify.notify("WATCHDOG=1")

    threading.Thread(target=ping, name="watchdog", daemon=True).start()


def _wait_ready(fd: int, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < count and time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        data = os.read(fd, 64)
        if not data:
            break  # every worker closed its end: some died before being ready
        seen += len(data)
    os.close(fd)
    if seen < count:
        log.warning("only %d of %d workers reported ready", seen, count)


def _announce_secure(settings: Settings) -> None:
    from gicap.tls import CertificateWatcher

    quiet = logging.getLogger("gicap.tls.probe")
    quiet.propagate = False
    certset, reason = CertificateWatcher(settings.certificate, quiet).initial()
    port = settings.server.secure_port
    if certset is None:
        log.warning(
            "Secure ICAP is off: %s. Port %d opens as soon as a valid certificate set is installed",
            reason,
            port,
        )
    else:
        log.info("Secure ICAP on port %d with %s", port, certset.describe())


def _supervise(
    settings: Settings,
    host: PluginHost,
    plain: socket.socket | None,
    secure: socket.socket | None,
    count: int,
) -> int:
    children: dict[int, int] = {}
    stopping = False
    # Each worker writes one byte here once its listeners are up and its services
    # started; systemd hears READY=1 only when all have.
    ready_r, ready_w = os.pipe()

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            os.close(ready_r)
            os.environ.pop("NOTIFY_SOCKET", None)  # only the master speaks to systemd

            def ready() -> None:
                try:
                    os.write(ready_w, b"r")
                    os.close(ready_w)
                except OSError:
                    pass

            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                code = run_worker(settings, host, plain, secure, slot, ready)
            except BaseException:
                log.exception("worker %d crashed", slot)
            finally:
                os._exit(code)
        children[pid] = slot

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            sdnotify.notify("STOPPING=1", "STATUS=draining")
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    for slot in range(count):
        spawn(slot)
    os.close(ready_w)
    log.info("started %d worker processes", count)
    _wait_ready(ready_r, count)
    sdnotify.notify("READY=1", _status(settings))
    _watchdog_thread()
    failures: list[float] = []
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid, None)
        if slot is None or stopping:
            continue
        log.error(
            "worker %d (pid %d) exited with status %d; starting a new one",
            slot,
            pid,
            os.waitstatus_to_exitcode(status),
        )
        now = time.monotonic()
        failures = [t for t in failures if now - t < 10] + [now]
        if len(failures) > 5 * count:
            log.critical("workers keep dying; giving up")
            forward(signal.SIGTERM, None)
            stopping = True
            continue
        time.sleep(0.1 * len(failures))
        spawn(slot)
    return 0
