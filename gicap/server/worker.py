"""One worker process: gevent StreamServers on the shared listening sockets.

Connections beyond the limit get a 503 at once (never a hang), and SIGTERM drains:
stop accepting, close idle keep-alive connections, let transactions in progress
finish within ``drain_timeout``, then stop.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import gevent
import gevent.event
import gevent.socket
from gevent.server import StreamServer

from gicap.obs import sdnotify
from gicap.obs.health import SECURE_NOT_SERVING
from gicap.protocol import http_date
from gicap.server.handler import SERVER_ISTAG, ConnectionHandler, ServerContext
from gicap.server.secure import SecureListener
from gicap.server.shared_count import SharedCount
from gicap.tls import CertificateSettings

log = logging.getLogger("gicap.server")

OVERLOADED = (
    "ICAP/1.0 503 Service Overloaded\r\nISTag: {istag}\r\nDate: {date}\r\nServer: gicap\r\n"
    "X-Error: too many connections\r\nConnection: close\r\nEncapsulated: null-body=0\r\n\r\n"
)


def gevent_socket(sock: socket.socket) -> gevent.socket.socket:
    return gevent.socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())


def no_delay(sock: Any) -> None:
    """Send small writes at once: with Nagle on, a response split over two writes waits
    for the client's delayed acknowledgement (about 40 ms) before its second part."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def _stop_all(services: list[Any]) -> None:
    for service in services:
        try:
            service.stop()
        except Exception:
            log.exception("service %s failed to stop", service.name)


class Worker:
    def __init__(
        self,
        ctx: ServerContext,
        plain: socket.socket | None,
        secure: socket.socket | None = None,
        certificate: CertificateSettings | None = None,
        *,
        index: int = 0,
    ) -> None:
        self.ctx = ctx
        self.plain = plain
        self.index = index
        self.secure: SecureListener | None = None
        if secure is not None and certificate is not None:
            self.secure = SecureListener(self, secure, certificate, announce=index == 0)
        self.servers: list[StreamServer] = []
        self.stopped = gevent.event.Event()
        self.handlers: dict[ConnectionHandler, gevent.Greenlet] = {}
        #: TLS handshakes in progress, oldest first (their sockets): at most
        #: ``max_handshakes``, apart from the connections served (see full()).
        self.handshakes: dict[object, Any] = {}
        #: Extra greenlets started with the worker (e.g. the certificate watcher).
        self.background: list[Callable[[], None]] = []
        #: Services a reload replaced, still finishing their transactions; drain stops them.
        self.retired: list[Any] = []
        #: Called once the listeners are up and the services started.
        self.on_ready: Callable[[], None] | None = None
        #: Called once an ICAP listener accepts connections: at start with a plain
        #: port, else when the Secure ICAP port opens (its certificates installed).
        self.on_listening: Callable[[], None] | None = None
        self.listening = False
        #: Called with why the configured Secure ICAP listener does not serve (None:
        #: it serves, or Secure ICAP is off on purpose): at start, then at each change.
        self.on_secure: Callable[[str | None], None] | None = None
        #: What on_secure was last told ("" before the first call).
        self.secure_reported: str | None = ""
        #: True when a SIGHUP arrived before the worker's handler was installed.
        self.hangup_pending: Callable[[], bool] | None = None
        self.ready = False
        #: For SIGHUP: how to read the settings again, and the plugins to rebuild from.
        self.settings_loader: Callable[[], Any] | None = None
        self.plugins: Any = None
        #: The settings at start (logging and metrics only change at a restart).
        self.started_with: Any = None
        #: With several worker processes: every process's connections (see full()).
        self.shared: SharedCount | None = None

    # ----------------------------------------------------------------- connections
    def _handle_plain(self, sock: Any, address: Any) -> None:
        no_delay(sock)
        self.serve_connection(sock, address)

    def serve_connection(self, sock: Any, address: Any, **options: Any) -> None:
        if self._refuse_if_full(sock):
            return
        self._run(ConnectionHandler(sock, address, self.ctx, **options))

    def _run(self, handler: ConnectionHandler) -> None:
        self.handlers[handler] = gevent.getcurrent()
        self.publish()
        metrics = self.ctx.metrics
        listener = "icaps" if handler.secure else "icap"
        if metrics is not None:
            metrics.connections[listener] += 1
        try:
            handler.run()
        finally:
            self.handlers.pop(handler, None)
            self.publish()
            if metrics is not None:
                metrics.connections[listener] -= 1

    def publish(self) -> None:
        """Write this process's connections where the others read them."""
        if self.shared is not None:
            self.shared.set(self.index, len(self.handlers))

    @property
    def max_handshakes(self) -> int:
        """TLS handshakes in progress at most (per process): a quarter of the
        connection limit, 16 at least. Past it the oldest one is closed."""
        return max(16, self.ctx.max_connections // 4)

    def full(self) -> bool:
        """Whether the connection limit is reached: connections served, in every
        worker process when there are several. Connections still in their TLS
        handshake are not counted: they have their own budget (``max_handshakes``),
        so that silent connections to the TLS port, which need no certificate, take
        no proxy's place on either port."""
        mine = len(self.handlers)
        if mine >= self.ctx.max_connections:
            return True
        if self.shared is None:
            return False
        self.publish()
        return self.shared.total() >= self.ctx.advertised_connections

    def _refuse_if_full(self, sock: Any) -> bool:
        if not self.full() and not self.ctx.draining:
            return False
        if self.ctx.metrics is not None:
            self.ctx.metrics.refused("draining" if self.ctx.draining else "limit")
        log.warning("connection limit (%d) reached: answering 503", self.ctx.advertised_connections)
        try:
            sock.settimeout(2)
            sock.sendall(OVERLOADED.format(istag=SERVER_ISTAG, date=http_date()).encode())
            sock.shutdown(socket.SHUT_WR)
            # Read what the client already sent so closing does not reset the connection
            # before it has read our answer.
            end = time.monotonic() + 1
            while time.monotonic() < end and sock.recv(65536):
                pass
        except OSError:
            pass
        finally:
            sock.close()
        return True

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        for service in self.ctx.services.values():
            service.start()
        if self.plain is not None:
            from gicap.server.master import open_listener

            srv = StreamServer(gevent_socket(open_listener(self.plain)), self._handle_plain)
            srv.start()
            self.servers.append(srv)
            self.listener_opened()
        if self.secure is not None:
            self.secure.start()  # (tells on_secure where it stands)
        else:
            self.secure_changed()
        for fn in self.background:
            gevent.spawn(fn)
        gevent.spawn(self._flush_logs)
        gevent.signal_handler(signal.SIGTERM, self.drain)
        gevent.signal_handler(signal.SIGINT, self.drain)
        gevent.signal_handler(signal.SIGHUP, self.reload)
        if self.hangup_pending is not None and self.hangup_pending():
            self.reload()  # a SIGHUP arrived while this worker was starting

    def _flush_logs(self) -> None:
        """The transaction log and the metrics reach their files at most 0.5 s late."""
        while not self.stopped.is_set():
            self.stopped.wait(0.5)
            self.ctx.txlog.flush()
            if self.ctx.metrics is not None:
                self.ctx.metrics.flush()

    def _count_reload(self, ok: bool) -> None:
        # Every worker reloads on the same SIGHUP; the first one counts it, so the
        # sum over processes is the number of reloads (as it logs certificate events).
        if self.ctx.metrics is not None and self.index == 0:
            self.ctx.metrics.reload(ok)

    def listener_opened(self) -> None:
        """An ICAP listener accepts connections (the first one tells /readyz)."""
        if not self.listening:
            self.listening = True
            if self.on_listening is not None:
                self.on_listening()

    def secure_problem(self) -> str | None:
        """Why the configured Secure ICAP listener does not serve; None when it
        serves, and when Secure ICAP is off (server.secure_port = 0, no server
        certificate configured, or, beside a plain port, none installed)."""
        return self.secure.problem(plain=bool(self.servers)) if self.secure is not None else None

    def secure_changed(self) -> None:
        """Tell on_secure when what secure_problem() says has changed."""
        problem = self.secure_problem()
        if problem != self.secure_reported:
            self.secure_reported = problem
            if self.on_secure is not None:
                self.on_secure(problem)

    def not_ready(self) -> str | None:
        """For /readyz in single-process mode: why the worker is not ready, None once
        it is started, serves Secure ICAP when that is configured, accepts connections
        on some ICAP port and is not draining."""
        if self.ctx.draining:
            return "draining"
        if not self.ready:
            return "starting"
        problem = self.secure_problem()
        if problem is not None:
            return SECURE_NOT_SERVING + problem
        if not self.listening:
            return "no ICAP listener accepts connections yet"
        return None

    def reload(self) -> None:
        gevent.spawn(self._reload)

    def _say(self, level: int, message: str, *args: object) -> None:
        """A SIGHUP line every worker process would write alike (each reads the same
        files): written by the first one; the others' go to DEBUG."""
        log.log(level if self.index == 0 else logging.DEBUG, message, *args)

    def _reload(self) -> None:
        """SIGHUP: re-read settings, policy and certificates; keep the old on error."""
        self._say(logging.INFO, "SIGHUP: reloading certificates and settings")
        if self.settings_loader is None or self.plugins is None:
            if self.secure is not None:
                self.secure.reload()
            return
        try:
            new = self.settings_loader()
            services = self.plugins.services(new)
        except Exception as exc:
            self._say(logging.ERROR, "SIGHUP: new settings refused, the running ones stay: %s", exc)
            self._count_reload(False)
            if self.secure is not None:
                self.secure.reload()
            return
        old_server = self.ctx.settings
        for key in ("host", "port", "secure_port", "workers"):
            if getattr(old_server, key) != getattr(new.server, key):
                self._say(
                    logging.WARNING,
                    "SIGHUP: server.%s changed; it takes effect at the next restart",
                    key,
                )
        for section in ("logging", "metrics") if self.started_with is not None else ():
            for key, value in vars(getattr(new, section)).items():
                if key != "level" and getattr(getattr(self.started_with, section), key) != value:
                    self._say(
                        logging.WARNING,
                        "SIGHUP: %s.%s changed; it takes effect at the next restart",
                        section,
                        key,
                    )
        started = []
        try:
            for service in services.values():
                service.start()
                started.append(service)
        except Exception as exc:
            log.error("SIGHUP: a service failed to start, the running ones stay: %s", exc)
            self._count_reload(False)
            for service in started:
                service.stop()
            return
        old_services = self.ctx.services
        # Listener addresses stay; every other server setting applies to new requests.
        self.ctx.settings = replace(
            new.server,
            host=old_server.host,
            port=old_server.port,
            secure_port=old_server.secure_port,
            workers=old_server.workers,
        )
        self.ctx.services = services
        self.ctx.accept_icap_scheme_on_tls = new.certificate.accept_icap_scheme
        self.ctx.txlog.enabled = new.logging.level in ("DEBUG", "INFO")
        logging.getLogger().setLevel(new.logging.level)
        if self.secure is not None:
            self.secure.update(new.certificate)
        self._say(logging.INFO, "SIGHUP: settings reloaded from %s", new.describe_source())
        self._count_reload(True)
        # Transactions already running keep the old services until they finish.
        grace = max(self.ctx.settings.drain_timeout, new.cdr.timeout + 5)
        retired = list(old_services.values())
        self.retired.extend(retired)
        gevent.spawn_later(grace, self._stop_retired, retired)

    def _stop_retired(self, services: list[Any]) -> None:
        for service in services:
            if service in self.retired:
                self.retired.remove(service)
        _stop_all(services)

    def serve_forever(self) -> None:
        self.start()
        self.ready = True
        if self.on_ready is not None:
            self.on_ready()
        self.stopped.wait()

    def drain(self) -> None:
        if self.ctx.draining:
            return
        self.ctx.draining = True
        sdnotify.notify("STOPPING=1", "STATUS=draining")
        log.info("draining: no new connections, finishing transactions in progress")
        for srv in self.servers:
            srv.close()
        if self.secure is not None:
            self.secure.close()
        gevent.spawn(self._finish_drain)

    def _finish_drain(self) -> None:
        deadline = time.monotonic() + self.ctx.settings.drain_timeout
        while True:
            for handler, greenlet in list(self.handlers.items()):
                if not self.ctx.connections.get(handler, False):
                    greenlet.kill(block=False)
            busy = [h for h in self.handlers if self.ctx.connections.get(h, False)]
            if not busy:
                break
            if time.monotonic() >= deadline:
                log.warning(
                    "drain timeout: closing %d connection(s) with a transaction still in progress",
                    len(busy),
                )
                break
            gevent.sleep(0.05)
        gevent.killall(list(self.handlers.values()), timeout=2)
        # The services (and those a reload retired) stop side by side: each may wait a
        # little for its CDR worker processes to exit.
        services = [*self.ctx.services.values(), *self.retired]
        self.retired.clear()
        gevent.joinall([gevent.spawn(_stop_all, [service]) for service in services])
        self.ctx.txlog.flush()
        if self.ctx.metrics is not None:
            self.ctx.metrics.flush()
        log.info("drained")
        self.stopped.set()
