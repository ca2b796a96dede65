"""The metrics and health endpoint: ``/metrics``, ``/healthz`` and ``/readyz``.

With several worker processes the master serves it from a thread (the master is a
plain process: it never runs gevent). With one worker process that process is the
master and runs gevent, so the endpoint is a gevent WSGI server there instead. Both
answer through :func:`respond`.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("gicap.metrics")

TEXT = "text/plain; charset=utf-8"

#: Why the server is not ready (one line), or None when it is.
Ready = Callable[[], str | None]

#: The /readyz reason while a configured Secure ICAP listener does not serve.
SECURE_NOT_SERVING = "Secure ICAP configured but not serving: "


def respond(path: str, ready: Ready) -> tuple[int, str, bytes]:
    """Status, content type and body for a GET of ``path``."""
    route = path.split("?", 1)[0]
    if route == "/metrics":
        try:
            from gicap.obs.exporter import CONTENT_TYPE_LATEST, render

            return 200, CONTENT_TYPE_LATEST, render()
        except Exception:
            log.exception("cannot collect the metrics")
            return 500, TEXT, b"cannot collect the metrics\n"
    if route == "/healthz":
        return 200, TEXT, b"ok\n"
    if route == "/readyz":
        why = ready()
        if why is None:
            return 200, TEXT, b"ready\n"
        line = " ".join(why.split())  # (one line, whatever a reason holds)
        return 503, TEXT, f"not ready\n{line}\n".encode()
    return 404, TEXT, b"not found: try /metrics, /healthz or /readyz\n"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen(host: str, port: int) -> socket.socket:
    """The endpoint's listening socket, bound at start-up so a busy port stops gicap."""
    try:
        return socket.create_server((host, port), family=_family(host), backlog=64)
    except OSError as exc:
        raise OSError(exc.errno, f"metrics.port {host}:{port}: {exc.strerror}") from None


# --------------------------------------------------------------------- master: threads
class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    protocol_version = "HTTP/1.1"
    #: Seconds a silent keep-alive connection may hold its thread.
    timeout = 30

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status, content_type, body = respond(self.path, self.server.ready)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log: say nothing."""


class HealthServer(ThreadingHTTPServer):
    """The endpoint in a daemon thread of the master."""

    daemon_threads = True

    def __init__(self, sock: socket.socket, ready: Ready) -> None:
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # already bound and listening (see listen())
        self.ready = ready

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="metrics-http", daemon=True).start()


# --------------------------------------------------------------------- one process: gevent
def serve_gevent(sock: socket.socket, ready: Ready) -> None:
    """Serve the endpoint from the worker's gevent loop (single-process mode); blocks."""
    from gevent.pywsgi import WSGIServer

    from gicap.server.worker import gevent_socket

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start("405 Method Not Allowed", [("Content-Type", TEXT), ("Allow", "GET, HEAD")])
            return [b"GET only\n"]
        path = environ.get("PATH_INFO", "/")
        status, content_type, body = respond(path, ready)
        reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(
            status, "Service Unavailable"
        )
        start(
            f"{status} {reason}",
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
        )
        return [body]

    WSGIServer(gevent_socket(sock), app, log=None, error_log=log).serve_forever()
