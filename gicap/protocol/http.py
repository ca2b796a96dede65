"""Encapsulated HTTP header blocks (``req-hdr`` and ``res-hdr``).

gicap never speaks HTTP itself; it only reads and rewrites the header blocks the
proxy encapsulates, so a start line plus headers is all that is modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from gicap.protocol.errors import ICAPProtocolError
from gicap.protocol.headers import Headers, parse_header_lines, split_lines


@dataclass
class HTTPRequestHead:
    method: str
    target: str
    version: str
    headers: Headers

    def encode(self) -> bytes:
        start = f"{self.method} {self.target} {self.version}\r\n".encode("latin-1")
        return start + self.headers.encode() + b"\r\n"


@dataclass
class HTTPResponseHead:
    version: str
    status: int
    reason: str
    headers: Headers

    def encode(self) -> bytes:
        start = f"{self.version} {self.status} {self.reason}\r\n".encode("latin-1")
        return start + self.headers.encode() + b"\r\n"


def _check_block(block: bytes, what: str) -> list[bytes]:
    if not block.endswith(b"\r\n\r\n"):
        raise ICAPProtocolError(f"encapsulated {what} does not end with CRLFCRLF")
    lines = split_lines(block)
    if not lines:
        raise ICAPProtocolError(f"encapsulated {what} is empty")
    return lines


def parse_request_head(block: bytes) -> HTTPRequestHead:
    lines = _check_block(block, "req-hdr")
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[0] or not parts[2].startswith("HTTP/"):
        raise ICAPProtocolError(f"malformed encapsulated HTTP request line: {lines[0][:80]!r}")
    return HTTPRequestHead(parts[0], parts[1], parts[2], parse_header_lines(lines[1:]))


def parse_response_head(block: bytes) -> HTTPResponseHead:
    lines = _check_block(block, "res-hdr")
    parts = lines[0].decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ICAPProtocolError(f"malformed encapsulated HTTP status line: {lines[0][:80]!r}")
    reason = parts[2] if len(parts) == 3 else ""
    return HTTPResponseHead(parts[0], int(parts[1]), reason, parse_header_lines(lines[1:]))
