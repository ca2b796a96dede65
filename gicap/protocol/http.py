"""Encapsulated HTTP header blocks (``req-hdr`` and ``res-hdr``).

gicap never speaks HTTP itself; it only reads and rewrites the header blocks the
proxy encapsulates, so a start line plus headers is all that is modelled. The
header lines are parsed on first use: a message passed through untouched goes back
byte for byte as the proxy sent it, and costs no parsing.
"""

from __future__ import annotations

from gicap.protocol.errors import ICAPProtocolError
from gicap.protocol.headers import Headers, parse_header_lines, split_lines


class _HTTPHead:
    __slots__ = ("_headers", "_raw")

    def __init__(self, headers: Headers | None, raw: bytes | None) -> None:
        self._headers = headers
        self._raw = raw

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            assert self._raw is not None
            self._headers = parse_header_lines(split_lines(self._raw)[1:])
        return self._headers

    @headers.setter
    def headers(self, value: Headers) -> None:
        self._headers = value

    def _start_line(self) -> str:
        raise NotImplementedError

    def encode(self) -> bytes:
        if self._headers is None and self._raw is not None:
            return self._raw
        return (self._start_line() + "\r\n").encode("latin-1") + self.headers.encode() + b"\r\n"


class HTTPRequestHead(_HTTPHead):
    __slots__ = ("method", "target", "version")

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: Headers | None = None,
        *,
        raw: bytes | None = None,
    ) -> None:
        super().__init__(headers if headers is not None or raw else Headers(), raw)
        self.method = method
        self.target = target
        self.version = version

    def _start_line(self) -> str:
        return f"{self.method} {self.target} {self.version}"

    def __repr__(self) -> str:
        return f"HTTPRequestHead({self._start_line()!r})"


class HTTPResponseHead(_HTTPHead):
    __slots__ = ("version", "status", "reason")

    def __init__(
        self,
        version: str,
        status: int,
        reason: str,
        headers: Headers | None = None,
        *,
        raw: bytes | None = None,
    ) -> None:
        super().__init__(headers if headers is not None or raw else Headers(), raw)
        self.version = version
        self.status = status
        self.reason = reason

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"HTTPResponseHead({self._start_line()!r})"


def _first_line(block: bytes, what: str) -> bytes:
    if not block.endswith(b"\r\n\r\n"):
        raise ICAPProtocolError(f"encapsulated {what} does not end with CRLFCRLF")
    line = block[: block.find(b"\n")].rstrip(b"\r")
    if not line:
        raise ICAPProtocolError(f"encapsulated {what} is empty")
    return line


def parse_request_head(block: bytes) -> HTTPRequestHead:
    line = _first_line(block, "req-hdr")
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[0] or not parts[2].startswith("HTTP/"):
        raise ICAPProtocolError(f"malformed encapsulated HTTP request line: {line[:80]!r}")
    return HTTPRequestHead(parts[0], parts[1], parts[2], raw=block)


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() takes "²" (read from latin-1), which int()
    refuses."""
    return text.isascii() and text.isdigit()


def parse_response_head(block: bytes) -> HTTPResponseHead:
    line = _first_line(block, "res-hdr")
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _digits(parts[1]):
        raise ICAPProtocolError(f"malformed encapsulated HTTP status line: {line[:80]!r}")
    reason = parts[2] if len(parts) == 3 else ""
    return HTTPResponseHead(parts[0], int(parts[1]), reason, raw=block)
