"""Start-up: reserve the listening ports once, then run one worker per process.

The ports are reserved before forking (bound, not listening); each worker then
listens on its own SO_REUSEPORT socket for the same address, so one machine's
cores are all used. The master only forwards signals
and replaces workers that die; it never touches a client connection.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable

from gicap.config import Settings, load_settings
from gicap.obs import metrics, sdnotify
from gicap.obs.health import SECURE_NOT_SERVING
from gicap.plugins import PluginHost
from gicap.server.shared_count import SharedCount

log = logging.getLogger("gicap.server")


def reserve(host: str, port: int) -> socket.socket:
    """Bind the port without listening: it is ours, and a busy port fails start-up.

    Without SO_REUSEADDR: a bound, non-listening SO_REUSEADDR socket lets any other
    program bind the port with SO_REUSEADDR too (Python's create_server, most servers)
    and listen on it, after which our workers' listeners fail with EADDRINUSE. The
    secure port stays unlistened until certificates arrive, so that window can be long.
    Only SO_REUSEPORT sockets of our own user (the workers) may join.

    That also lets another gicap of the same user join, and the two would share the
    connections unseen: a port another program listens on, or reserves as this
    function does, is refused first (see :func:`_in_use`).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if _in_use(family, host, port):
        raise OSError(
            errno.EADDRINUSE, "Address already in use (by another program: another gicap?)"
        )
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


def _in_use(family: socket.AddressFamily, host: str, port: int) -> bool:
    """Whether another socket holds the address: a bind without SO_REUSEPORT (so no
    joining anyone's group) but with SO_REUSEADDR (so connections lingering in
    TIME_WAIT do not count) fails only on a socket that listens there, or that is
    bound there without SO_REUSEADDR (a reserved port of another gicap)."""
    if not port:
        return False  # (an ephemeral port: the kernel picks a free one)
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return True
        raise
    finally:
        probe.close()
    return False


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


def _describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def run_worker(
    settings: Settings,
    host: PluginHost,
    plain: socket.socket | None,
    secure: socket.socket | None,
    index: int = 0,
    on_ready: Callable[[], None] | None = None,
    health: socket.socket | None = None,
    shared: SharedCount | None = None,
    on_listening: Callable[[], None] | None = None,
    on_secure: Callable[[str | None], None] | None = None,
) -> int:
    """One worker process. ``health``: the metrics endpoint's socket, when this process
    is the only one (with several, the master serves the endpoint)."""
    # gevent is imported here, after any fork, so each worker has its own hub.
    from gicap.obs.logging import log_stream
    from gicap.obs.txlog import TransactionLog
    from gicap.server.handler import ServerContext
    from gicap.server.worker import Worker

    s = settings.server
    # Installed before the services start: the CDR runners report to it.
    recorder = metrics.Recorder() if settings.metrics.port else None
    metrics.install(recorder)
    services = host.services(settings)
    ctx = ServerContext(
        s,
        services,
        s.max_connections,  # (one process may hold them all: see SharedCount)
        s.max_connections,
        accept_icap_scheme_on_tls=settings.certificate.accept_icap_scheme,
        txlog=TransactionLog(
            enabled=settings.logging.level in ("DEBUG", "INFO"),
            stream=log_stream(),
            json_format=settings.logging.format == "json",
        ),
        metrics=recorder,
    )
    worker = Worker(ctx, plain, secure, settings.certificate, index=index)
    worker.shared = shared
    worker.on_ready = on_ready
    worker.on_listening = on_listening
    worker.on_secure = on_secure
    worker.hangup_pending = lambda: bool(_early_hangups)
    worker.settings_loader = lambda: load_settings(settings.source or None)
    worker.plugins = host
    worker.started_with = settings
    if health is not None:
        from gicap.obs.health import serve_gevent

        worker.background.append(lambda: serve_gevent(health, worker.not_ready))
    worker.serve_forever()
    return 0


#: SIGHUPs that arrived before the server could act on them (see remember_hangups).
_early_hangups: list[int] = []


def _remember_hangup(signum: int, _frame: object) -> None:
    _early_hangups.append(signum)


def remember_hangups() -> None:
    """Called first thing by ``gicap serve`` (and by each worker process as it starts):
    a SIGHUP (``systemctl reload``) during start-up must not kill the process (the
    default action); it is remembered and carried out once the process is up."""
    signal.signal(signal.SIGHUP, _remember_hangup)


def serve(settings: Settings, host: PluginHost) -> int:
    # Chosen before any fork and before prometheus-client is imported: every worker
    # then writes its metric files there.
    metrics_dir = metrics.create_multiprocess_dir() if settings.metrics.port else None
    try:
        return _serve(settings, host)
    finally:
        if metrics_dir is not None:
            metrics.remove_multiprocess_dir(metrics_dir)


def _serve(settings: Settings, host: PluginHost) -> int:
    s = settings.server
    plain = _reserve(s.host, s.port, "server.port") if s.port else None
    if plain is not None:
        log.info("plain ICAP listening on %s:%d", s.host, plain.getsockname()[1])
    # Bound now so the port is ours; a worker listens once a certificate set loads.
    secure = _reserve(s.host, s.secure_port, "server.secure_port") if s.secure_port else None
    if secure is not None:
        _announce_secure(settings)
    else:
        log.info("Secure ICAP is off: server.secure_port is 0")
    health = None
    if settings.metrics.port:
        from gicap.obs.health import listen

        health = listen(settings.metrics.host, settings.metrics.port)
        log.info(
            "metrics and health checks on http://%s:%d/ (/metrics, /healthz, /readyz)",
            settings.metrics.host,
            health.getsockname()[1],
        )
    else:
        log.info("metrics are off: metrics.port is 0")
    count = s.worker_count
    if count == 1:
        notifier = _SingleNotifier(settings)
        return run_worker(
            settings,
            host,
            plain,
            secure,
            on_ready=notifier.ready,
            health=health,
            on_secure=notifier.secure,
        )
    return _supervise(settings, host, plain, secure, count, health)


def _reserve(host: str, port: int, setting: str) -> socket.socket:
    """:func:`reserve`, its error naming the setting (server.host too when the name
    does not resolve)."""
    try:
        return reserve(host, port)
    except socket.gaierror as exc:
        raise OSError(f"server.host {host!r}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise OSError(f"{setting} {host}:{port}: {exc.strerror or exc}") from None


def _status(settings: Settings, secure_problem: str | None = None) -> str:
    """systemd's STATUS= line; it says so while a configured Secure ICAP listener does
    not serve (as /readyz does)."""
    s = settings.server
    ports = [f"icap {s.port}" if s.port else "", f"icaps {s.secure_port}" if s.secure_port else ""]
    status = f"STATUS=serving ({', '.join(p for p in ports if p)}; {s.worker_count} worker(s))"
    if secure_problem is not None:
        status += "; " + " ".join((SECURE_NOT_SERVING + secure_problem).split())
    return status


class _SingleNotifier:
    """What systemd hears from a single-process server: READY=1 once it has started
    (Secure ICAP serving or not), and its STATUS= line again whenever the Secure ICAP
    listener starts or stops serving."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.problem: str | None = None
        self.started = False

    def secure(self, problem: str | None) -> None:
        self.problem = problem
        if self.started:
            sdnotify.notify(_status(self.settings, problem))

    def ready(self) -> None:
        import gevent

        self.started = True
        sdnotify.notify("READY=1", _status(self.settings, self.problem))
        interval = sdnotify.watchdog_interval()
        if interval:

            def ping() -> None:
                while True:
                    gevent.sleep(interval)
                    sdnotify.notify("WATCHDOG=1")

            gevent.spawn(ping)


def _watchdog_thread() -> None:
    interval = sdnotify.watchdog_interval()
    if not interval:
        return

    def ping() -> None:
        while True:
            time.sleep(interval)
            sdnotify.notify("WATCHDOG=1")

    threading.Thread(target=ping, name="watchdog", daemon=True).start()


#: What a worker writes to the readiness pipe: its pid, one of the kinds below and
#: the length of the UTF-8 text that follows (SECURE_DOWN's reason; else empty).
_REPORT = struct.Struct("=iBH")
#: The most text a report carries: a report stays one write under PIPE_BUF (4096
#: bytes), which a pipe never splits nor mixes with another process's.
_TEXT_MAX = 2048
#: Its services (the CDR workers) are started and its listeners set up.
STARTED = 1
#: An ICAP listener accepts connections: at once with a plain port; on a server with
#: only Secure ICAP, when its certificates are installed and the port opens.
LISTENING = 2
#: Its Secure ICAP listener serves, or Secure ICAP is off (nothing to wait for).
SECURE_UP = 3
#: Its configured Secure ICAP listener does not serve; the text says why.
SECURE_DOWN = 4


def report_bytes(pid: int, kind: int, text: str = "") -> bytes:
    """One report, as a worker writes it to the readiness pipe."""
    data = text.encode()[:_TEXT_MAX]
    return _REPORT.pack(pid, kind, len(data)) + data


class Readiness:
    """Which worker processes serve: each writes its pid to a pipe once its services
    are started (systemd hears READY=1 when all have), once it accepts connections,
    and whenever its Secure ICAP listener starts or stops serving (``/readyz`` says
    ready when all are started, listening and serving Secure ICAP if configured).

    The pipe stays open for the master's whole life, so a replacement worker reports
    in the same way; a report is one write under PIPE_BUF, which a pipe never splits.
    """

    def __init__(self, count: int, on_secure: Callable[[str | None], None] | None = None) -> None:
        self.count = count
        self.stopping = False
        self._live: set[int] = set()
        self._ready: set[int] = set()
        self._listening: set[int] = set()
        #: Each worker's last Secure ICAP report: None when it serves (or is off), else why not.
        self._secure: dict[int, str | None] = {}
        #: Told the workers' Secure ICAP problem (None: all serve) when it changes.
        self.on_secure = on_secure
        self._told: str | None = None
        self._cond = threading.Condition()

    def spawned(self, pid: int) -> None:
        with self._cond:
            self._live.add(pid)

    def exited(self, pid: int) -> None:
        with self._cond:
            self._live.discard(pid)
            self._ready.discard(pid)
            self._listening.discard(pid)
            self._secure.pop(pid, None)

    def reported(self, pid: int, kind: int = STARTED, text: str = "") -> None:
        with self._cond:
            if pid not in self._live:  # one that has died since writing
                return
            if kind == SECURE_UP:
                self._secure[pid] = None
            elif kind == SECURE_DOWN:
                self._secure[pid] = text
            else:
                (self._listening if kind == LISTENING else self._ready).add(pid)
            self._cond.notify_all()
            problem = self._secure_problem()
            changed, self._told = problem != self._told, problem
        if changed and self.on_secure is not None:
            self.on_secure(problem)

    def _secure_problem(self) -> str | None:
        """The first live worker's reason for not serving Secure ICAP (lock held)."""
        for pid in sorted(self._live):
            problem = self._secure.get(pid)
            if problem is not None:
                return problem
        return None

    def secure_problem(self) -> str | None:
        """Why a configured Secure ICAP listener does not serve in some worker; None
        when it serves in all that have reported (or Secure ICAP is off)."""
        with self._cond:
            return self._secure_problem()

    def serving(self) -> int:
        with self._cond:
            return len(self._ready)

    def not_ready(self) -> str | None:
        """For /readyz: why the server is not ready, None once every worker has
        started, serves Secure ICAP when that is configured, and accepts connections."""
        with self._cond:
            if self.stopping:
                return "draining"
            # (a worker tells where its Secure ICAP stands before it reports STARTED)
            started = sum(pid in self._ready and pid in self._secure for pid in self._live)
            if started < self.count:
                return f"starting: {started} of {self.count} worker processes started"
            problem = self._secure_problem()
            if problem is not None:
                return SECURE_NOT_SERVING + problem
            if len(self._listening) < self.count:
                return "no ICAP listener accepts connections yet"
            return None

    def wait_all(self, timeout: float) -> int:
        """Wait until every worker has reported (or ``timeout``); how many have."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._ready) >= self.count, timeout)
            return len(self._ready)

    def read(self, fd: int) -> None:
        """Thread body: turn what the workers write into :meth:`reported` calls."""
        pending = b""
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            pending += data
            while len(pending) >= _REPORT.size:
                pid, kind, length = _REPORT.unpack(pending[: _REPORT.size])
                end = _REPORT.size + length
                if len(pending) < end:
                    break
                text = pending[_REPORT.size : end].decode(errors="replace")
                self.reported(pid, kind, text)
                pending = pending[end:]


def _announce_ready(readiness: Readiness, settings: Settings, timeout: float = 120) -> None:
    """Thread body: READY=1 to systemd once every worker serves (or after ``timeout``)."""
    seen = readiness.wait_all(timeout)
    if readiness.stopping:
        return
    if seen < readiness.count:
        log.warning("only %d of %d workers reported ready", seen, readiness.count)
    sdnotify.notify("READY=1", _status(settings, readiness.secure_problem()))
    _watchdog_thread()


def _announce_secure(settings: Settings) -> None:
    from gicap.tls import CertificateWatcher

    # (the workers report what the set says: this probe writes nothing, not even
    # through Python's last-resort handler, raw and outside the log's format)
    quiet = logging.getLogger("gicap.tls.probe")
    quiet.propagate = False
    quiet.setLevel(logging.CRITICAL + 1)
    certset, reason = CertificateWatcher(settings.certificate, quiet).initial()
    port = settings.server.secure_port
    cert = settings.certificate
    if certset is None:
        log.warning(
            "Secure ICAP is off: %s. Port %d opens as soon as a valid certificate set is installed",
            reason,
            port,
        )
        plain_only = settings.server.port and not cert.server_files_present()
        if cert.certfile and cert.keyfile and settings.metrics.port and not plain_only:
            log.warning(
                "/readyz answers 503 until Secure ICAP serves (server.secure_port = 0 "
                "turns Secure ICAP off)"
            )
    else:
        log.info("Secure ICAP on port %d with %s", port, certset.describe())
    if not cert.cafile or not cert.require_client_cert:
        why = "certificate.cafile is empty" if not cert.cafile else "require_client_cert = false"
        log.warning(
            "Secure ICAP does not require client certificates (%s): any client that reaches "
            "port %d is served",
            why,
            port,
        )


def _supervise(
    settings: Settings,
    host: PluginHost,
    plain: socket.socket | None,
    secure: socket.socket | None,
    count: int,
    health: socket.socket | None = None,
) -> int:
    children: dict[int, int] = {}
    stopping = False
    # Each worker writes its pid here once its listeners are up and its services
    # started; systemd hears READY=1 only when all have, and /readyz says so.
    readiness = Readiness(count, lambda problem: sdnotify.notify(_status(settings, problem)))
    shared = SharedCount(count)
    ready_r, ready_w = os.pipe()
    server = None
    if health is not None:
        from gicap.obs.health import HealthServer

        server = HealthServer(health, readiness.not_ready)

    signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    #: The settings a new worker starts with: the last ones a SIGHUP loaded (the
    #: workers reload their own; a replacement must not go back to the first ones).
    current = [settings]
    #: Signals that arrived while a worker was being forked, handled right after.
    deferred: list[int] = []
    forking = False

    def spawn(slot: int) -> None:
        # Signals wait while we fork: the parent forwards them only once the new pid is
        # in ``children`` (``forward`` defers them meanwhile; another thread may take
        # the OS signal), and the child gets them only once its own handlers are set.
        nonlocal forking
        forking = True
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            pid = os.fork()
        except BaseException:
            forking = False
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            raise
        if pid == 0:
            code = 1
            os.close(ready_r)
            if health is not None:
                health.close()  # the master's endpoint; a worker must not hold the port
            os.environ.pop("NOTIFY_SOCKET", None)  # only the master speaks to systemd

            def report(kind: int, text: str = "") -> None:
                try:
                    os.write(ready_w, report_bytes(os.getpid(), kind, text))
                except OSError:
                    pass

            def report_secure(problem: str | None) -> None:
                if problem is None:
                    report(SECURE_UP)
                else:
                    report(SECURE_DOWN, problem)

            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                # The master's early SIGHUPs are its own (it forwards them to us).
                _early_hangups.clear()
                remember_hangups()
                # Anything the master had deferred when we forked was meant for it, not us;
                # the master forwards it to us once we are in its list.
                deferred.clear()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
                code = run_worker(
                    current[0],
                    host,
                    plain,
                    secure,
                    slot,
                    lambda: report(STARTED),
                    shared=shared,
                    on_listening=lambda: report(LISTENING),
                    on_secure=report_secure,
                )
            except BaseException:
                log.exception("worker %d crashed", slot)
            finally:
                os._exit(code)
        children[pid] = slot
        readiness.spawned(pid)
        forking = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        while deferred:
            forward(deferred.pop(0), None)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if forking:
            deferred.append(signum)
            return
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            readiness.stopping = True  # /readyz: 503 while the workers drain
            sdnotify.notify("STOPPING=1", "STATUS=draining")
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            except ProcessLookupError:
                pass
        if signum == signal.SIGHUP:
            current[0] = _reloaded(settings, current[0])

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    for slot in range(count):
        spawn(slot)
    if _early_hangups:
        forward(signal.SIGHUP, None)
    log.info("started %d worker processes", count)
    # Threads only after the first forks; later forks (replacements) happen while they
    # wait in os.read/select/wait, holding no lock a child could inherit.
    # They start with our signals blocked, and so do the threads they start (a thread
    # inherits its creator's mask): the kernel then hands SIGTERM/SIGHUP to this main
    # thread, whose os.wait() it interrupts so that ``forward`` runs at once. (Taken by
    # another thread, the signal would wait for os.wait() to return: for the next
    # worker to exit, which without SIGTERM never comes.)
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        threading.Thread(target=readiness.read, args=(ready_r,), name="ready", daemon=True).start()
        threading.Thread(
            target=_announce_ready, args=(readiness, settings), name="announce", daemon=True
        ).start()
        if server is not None:
            server.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    failures: list[float] = []
    gave_up = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        readiness.exited(pid)
        metrics.process_exited(pid)
        slot = children.pop(pid, None)
        if slot is None or stopping:
            continue
        log.error("worker %d (pid %d) %s; starting a new one", slot, pid, _describe_exit(status))
        now = time.monotonic()
        failures = [t for t in failures if now - t < 10] + [now]
        if len(failures) > 5 * count:
            log.critical("workers keep dying; giving up")
            forward(signal.SIGTERM, None)
            stopping = gave_up = True
            continue
        time.sleep(0.1 * len(failures))
        if stopping:  # SIGTERM came while we waited: no new worker
            continue
        shared.set(slot, 0)  # (its connections died with it)
        spawn(slot)
    return 1 if gave_up else 0


def _reloaded(started: Settings, running: Settings) -> Settings:
    """The settings a SIGHUP loads, as the workers apply them: listeners, metrics and
    the log's file and format stay as started. ``running`` when they are refused (the
    workers log why)."""
    from dataclasses import replace

    try:
        new = load_settings(started.source or None)
    except Exception:  # (SettingsError, or a file gone: the workers report it)
        return running
    return replace(
        new,
        server=replace(
            new.server,
            host=started.server.host,
            port=started.server.port,
            secure_port=started.server.secure_port,
            workers=started.server.workers,
        ),
        metrics=started.metrics,
        logging=replace(new.logging, file=started.logging.file, format=started.logging.format),
    )
