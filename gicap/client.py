"""A small blocking ICAP client: ``gicap client`` and the tests use it.

It speaks ``icap://`` and ``icaps://`` (with a client certificate, which
c-icap-client cannot present), sends OPTIONS, REQMOD and RESPMOD with or without
preview, and parses the response into its parts.
"""

from __future__ import annotations

import select
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gicap.protocol.encapsulated import parse_encapsulated
from gicap.protocol.headers import Headers, parse_header_lines, split_lines


class ICAPClientError(Exception):
    pass


@dataclass
class ICAPResult:
    status: int
    reason: str
    headers: Headers
    http_request: bytes = b""
    http_response: bytes = b""
    body: bytes | None = None
    #: Whether a 100 Continue preceded the final answer.
    continued: bool = False
    raw_head: bytes = b""
    peer_certificate: dict = field(default_factory=dict)


class ICAPClient:
    def __init__(
        self,
        url: str,
        *,
        cert: str | None = None,
        key: str | None = None,
        cafile: str | None = None,
        timeout: float = 30,
        server_hostname: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("icap", "icaps"):
            raise ICAPClientError(f"not an icap:// or icaps:// URL: {url}")
        self.url = url
        self.secure = parts.scheme == "icaps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (11344 if self.secure else 1344)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._buf = b""
        self.context: ssl.SSLContext | None = None
        self.server_hostname = server_hostname or self.host
        if self.secure:
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if cert:
                ctx.load_cert_chain(cert, key)
            self.context = ctx

    # ------------------------------------------------------------ connection
    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.context is not None:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.server_hostname)
        else:
            self.sock = raw
        self._buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> ICAPClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self) -> bytes:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise ICAPClientError("connection closed by the server")
        return data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            self._buf += self._recv()
        head, _, self._buf = self._buf.partition(marker)
        return head + marker

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._buf += self._recv()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    # ------------------------------------------------------------ requests
    def options(self) -> ICAPResult:
        self._send(f"OPTIONS {self.url} ICAP/1.0\r\nHost: {self.host}\r\n\r\n".encode())
        return self._read_response("OPTIONS")

    def respmod(
        self,
        body: bytes | None,
        *,
        res_head: bytes | None = None,
        req_head: bytes | None = None,
        preview: int | None = None,
        allow_204: bool = True,
        extra: str = "",
    ) -> ICAPResult:
        if res_head is None:
            length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
            res_head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n{length}\r\n"
            ).encode()
        if req_head is None:
            req_head = b"GET http://origin.example/file HTTP/1.1\r\nHost: origin.example\r\n\r\n"
        return self._modify(
            "RESPMOD",
            [("req-hdr", req_head), ("res-hdr", res_head)],
            "res-body",
            body,
            preview,
            allow_204,
            extra,
        )

    def reqmod(
        self,
        body: bytes | None,
        *,
        req_head: bytes | None = None,
        preview: int | None = None,
        allow_204: bool = True,
        extra: str = "",
    ) -> ICAPResult:
        if req_head is None:
            length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
            req_head = (
                f"POST http://origin.example/upload HTTP/1.1\r\nHost: origin.example\r\n"
                f"{length}\r\n"
            ).encode()
        return self._modify(
            "REQMOD", [("req-hdr", req_head)], "req-body", body, preview, allow_204, extra
        )

    def _modify(
        self,
        method: str,
        parts: list[tuple[str, bytes]],
        body_name: str,
        body: bytes | None,
        preview: int | None,
        allow_204: bool,
        extra: str,
    ) -> ICAPResult:
        enc, offset = [], 0
        for name, data in parts:
            enc.append(f"{name}={offset}")
            offset += len(data)
        enc.append(f"{body_name if body is not None else 'null-body'}={offset}")
        lines = [
            f"{method} {self.url} ICAP/1.0",
            f"Host: {self.host}",
            f"Encapsulated: {', '.join(enc)}",
        ]
        if allow_204:
            lines.append("Allow: 204")
        if preview is not None:
            lines.append(f"Preview: {preview}")
        head = ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()
        head += b"".join(d for _, d in parts)
        if body is None:
            self._send(head)
            return self._read_response(method)
        if preview is None:
            self._send(head + _chunks(body) + b"0\r\n\r\n")
            return self._read_response(method)
        first, rest = body[:preview], body[preview:]
        ieof = not rest
        self._send(head + _chunks(first) + (b"0; ieof\r\n\r\n" if ieof else b"0\r\n\r\n"))
        result = self._read_response(method)
        if result.status != 100:
            return result
        if ieof:
            raise ICAPClientError("server sent 100 Continue after ieof")
        self._send(_chunks(rest) + b"0\r\n\r\n")
        final = self._read_response(method)
        final.continued = True
        return final

    def _send(self, data: bytes) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        if len(data) < 256 * 1024:
            self.sock.sendall(data)
            return
        # A server may answer while we still send (streaming echo): read as we write
        # so neither side blocks on a full socket buffer.
        view = memoryview(data)
        sock = self.sock
        sock.setblocking(False)
        try:
            while view:
                readable, writable, _ = select.select([sock], [sock], [], self.timeout)
                if not readable and not writable:
                    raise ICAPClientError("timed out sending the request")
                if readable:
                    try:
                        chunk = sock.recv(65536)
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        chunk = None
                    if chunk == b"":
                        raise ICAPClientError("connection closed by the server")
                    if chunk:
                        self._buf += chunk
                if writable:
                    try:
                        sent = sock.send(view[:65536])
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        continue
                    view = view[sent:]
        finally:
            sock.settimeout(self.timeout)

    def _read_response(self, method: str) -> ICAPResult:
        raw = self._read_until(b"\r\n\r\n")
        lines = split_lines(raw)
        status_line = lines[0].decode("latin-1").split(" ", 2)
        if len(status_line) < 2 or status_line[0] != "ICAP/1.0":
            raise ICAPClientError(f"bad status line {lines[0]!r}")
        status = int(status_line[1])
        reason = status_line[2] if len(status_line) > 2 else ""
        headers = parse_header_lines(lines[1:])
        result = ICAPResult(status, reason, headers, raw_head=raw)
        if status == 100:
            return result
        enc_value = headers.get("Encapsulated")
        if enc_value is None:
            return result
        enc = parse_encapsulated(enc_value, "")
        block = self._read_exact(enc.body_offset)
        for name, start, end in enc.slices():
            if name == "req-hdr":
                result.http_request = block[start:end]
            elif name == "res-hdr":
                result.http_response = block[start:end]
        if enc.has_body:
            result.body = self._read_chunked()
        if headers.has_token("Connection", "close"):
            self.close()
        return result

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self._read_until(b"\r\n")[:-2]
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while self._read_until(b"\r\n") != b"\r\n":
                    pass
                return bytes(out)
            out += self._read_exact(size)
            self._read_exact(2)


def _chunks(data: bytes, size: int = 65536) -> bytes:
    return b"".join(
        b"%x\r\n%b\r\n" % (len(data[i : i + size]), data[i : i + size])
        for i in range(0, len(data), size)
    )
