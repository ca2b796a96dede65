"""A loopback HTTP server for the tests that open delivered files in a real reader
(LibreOffice, Chromium): it serves the files it is given and records every path a
reader asks for. Only 127.0.0.1 is ever used."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: What any other path gets: the start of a PNG (a reader fetching a picture asks
#: no further).
_PNG = b"\x89PNG\r\n\x1a\n"


class Recorder(ThreadingHTTPServer):
    """Serves ``files`` (path -> (body, Content-Type)) and records every path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, tuple[bytes, str]] = {}
        self.paths: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def hits(self) -> list[str]:
        """The paths asked for that start with /hit (what the test files call back)."""
        return [p for p in self.paths if p.startswith("/hit")]


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        body, kind = self.server.files.get(self.path, (_PNG, "image/png"))
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # (quiet)


@contextmanager
def recording() -> Iterator[Recorder]:
    """A running :class:`Recorder`, shut down afterwards."""
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
