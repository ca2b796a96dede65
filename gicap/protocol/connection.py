"""One ICAP connection, server side, without any I/O.

Feed received bytes with :meth:`ICAPConnection.receive_data`, pull events with
:meth:`ICAPConnection.next_event`, and turn responses into bytes with the ``send_*``
methods. The receiving side (the client's request) and the sending side (our
response) have separate states; a new request cycle starts when both are done, so
pipelined bytes simply wait in the buffer.
"""

from __future__ import annotations

import enum
import time
from email.utils import formatdate

from gicap.protocol.encapsulated import format_encapsulated, parse_encapsulated
from gicap.protocol.errors import ICAPProtocolError, LocalProtocolError
from gicap.protocol.events import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ConnectionClosed,
    EndOfMessage,
    ICAPResponse,
    PreviewEnd,
    RequestHead,
)
from gicap.protocol.headers import Headers, parse_header_lines, split_lines
from gicap.protocol.http import (
    parse_request_head,
    parse_response_head,
)

KNOWN_METHODS = frozenset({"OPTIONS", "REQMOD", "RESPMOD"})

REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "ICAP Service Not Found",
    405: "Method Not Allowed For Service",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    500: "Server Error",
    501: "Method Not Implemented",
    502: "Bad Gateway",
    503: "Service Overloaded",
    505: "ICAP Version Not Supported",
}


class RecvState(enum.Enum):
    HEAD = "head"  # waiting for a request line and headers
    ENCAP = "encap"  # ICAP head read, waiting for the encapsulated HTTP headers
    BODY = "body"  # reading chunks
    PREVIEW_WAIT = "preview-wait"  # preview over, the client waits for 100 or a response
    DONE = "done"  # request complete
    CLOSED = "closed"
    ERROR = "error"


class SendState(enum.Enum):
    IDLE = "idle"  # no request to answer yet
    WAIT = "wait"  # request head received, nothing sent
    BODY = "body"  # response head sent, body chunks follow
    DONE = "done"


class _Chunk(enum.Enum):
    SIZE = 0
    DATA = 1
    DATA_END = 2
    TRAILERS = 3


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """RFC 1123 date, cached per second since every response carries one."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class ICAPConnection:
    """Server side of an ICAP/1.0 connection.

    Limits are constructor arguments so tests and deployments can tighten them; a
    violation raises :class:`ICAPProtocolError` with the status to answer (413 for
    sizes, 400 for syntax) and the connection must then be closed.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = 262144,
        max_line_bytes: int = 8192,
        max_chunk_size: int = 64 * 1024 * 1024,
        server_name: str = "gicap",
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_line_bytes = max_line_bytes
        self.max_chunk_size = max_chunk_size
        self.server_name = server_name
        self._buf = bytearray()
        self._eof = False
        self.recv_state = RecvState.HEAD
        self.send_state = SendState.IDLE
        #: False once either side asked to close after the current exchange.
        self.keep_alive = True
        self.request: RequestHead | None = None
        self._head: RequestHead | None = None
        self._encap_len = 0
        self._chunk = _Chunk.SIZE
        self._chunk_left = 0
        self._in_preview = False
        self._preview_bytes = 0
        self._preview_ieof = False
        self._trailer_lines: list[bytes] = []
        self._trailer_bytes = 0
        self._pending: list[object] = []
        #: Body bytes (de-chunked) received and sent over the connection's life.
        self.body_bytes_received = 0
        self.body_bytes_sent = 0

    # ------------------------------------------------------------------ receiving
    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed its side."""
        if data:
            if self._eof:
                raise LocalProtocolError("data received after end of file")
            self._buf += data
        else:
            self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events."""
        return len(self._buf)

    def next_event(self) -> object:
        """The next event, or ``NEED_DATA`` / ``PAUSED``."""
        if self.recv_state is RecvState.DONE and self.send_state is SendState.DONE:
            self._start_next_cycle()
        if self._pending:
            return self._pending.pop(0)
        try:
            event = self._next()
        except ICAPProtocolError:
            self.recv_state = RecvState.ERROR
            self.keep_alive = False
            raise
        return event

    def _next(self) -> object:
        state = self.recv_state
        if state is RecvState.HEAD:
            return self._read_head()
        if state is RecvState.ENCAP:
            return self._read_encap()
        if state is RecvState.BODY:
            return self._read_body()
        if state in (RecvState.PREVIEW_WAIT, RecvState.DONE):
            return PAUSED
        if state is RecvState.CLOSED:
            return ConnectionClosed(clean=True)
        raise LocalProtocolError(f"next_event() called in state {state.value}")

    def _start_next_cycle(self) -> None:
        if not self.keep_alive:
            self.recv_state = RecvState.CLOSED
            return
        self.recv_state = RecvState.HEAD
        self.send_state = SendState.IDLE
        self.request = None
        self._head = None
        # Events of the finished request the server chose not to read.
        self._pending.clear()

    def _closed(self) -> object:
        clean = not self._buf and self.recv_state is RecvState.HEAD
        self.recv_state = RecvState.CLOSED
        self.keep_alive = False
        return ConnectionClosed(clean=clean)

    def _read_head(self) -> object:
        buf = self._buf
        # Tolerate stray CRLFs between pipelined requests (RFC 7230 §3.5 leniency).
        while buf[:2] == b"\r\n":
            del buf[:2]
        if buf[:1] == b"\x16":
            # A TLS record (a ClientHello): an icaps:// client on a port that speaks
            # ICAP without TLS. Said at once, not after header_timeout.
            raise ICAPProtocolError(
                "a TLS handshake on a port that speaks ICAP without TLS: icaps:// clients "
                "connect to the Secure ICAP port (server.secure_port)"
            )
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.max_header_bytes:
                raise ICAPProtocolError("ICAP header block too large", 413)
            nl = buf.find(b"\n")
            if (nl < 0 and len(buf) > self.max_line_bytes) or nl > self.max_line_bytes:
                raise ICAPProtocolError("ICAP request line too long", 413)
            if b"\n\n" in buf:
                # A head ended by bare LFs (a hand-written client, printf): answered
                # at once, not left waiting for a CRLF CRLF until header_timeout.
                raise ICAPProtocolError("ICAP header lines must end with CRLF, not a bare LF")
            if self._eof:
                return self._closed()
            return NEED_DATA
        if end + 4 > self.max_header_bytes:
            raise ICAPProtocolError("ICAP header block too large", 413)
        block = bytes(buf[: end + 4])
        del buf[: end + 4]
        lines = split_lines(block)
        for line in lines:
            if len(line) > self.max_line_bytes:
                raise ICAPProtocolError("ICAP header line too long", 413)
        head = self._parse_head(lines)
        self._head = head
        enc = head.encapsulated
        self._encap_len = enc.body_offset if enc is not None else 0
        self.keep_alive = self.keep_alive and not head.headers.has_token("Connection", "close")
        if len(block) + self._encap_len > self.max_header_bytes:
            raise ICAPProtocolError("encapsulated HTTP headers too large", 413)
        self.recv_state = RecvState.ENCAP
        return self._read_encap()

    def _parse_head(self, lines: list[bytes]) -> RequestHead:
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not all(parts):
            raise ICAPProtocolError(f"malformed ICAP request line: {lines[0][:80]!r}")
        method_b, uri_b, version_b = parts
        try:
            method = method_b.decode("ascii")
            uri = uri_b.decode("ascii")
            version = version_b.decode("ascii")
        except UnicodeDecodeError:
            raise ICAPProtocolError("non-ASCII bytes in the ICAP request line") from None
        if not version.startswith("ICAP/"):
            raise ICAPProtocolError(f"malformed ICAP version {version!r}")
        if version != "ICAP/1.0":
            raise ICAPProtocolError(f"ICAP version {version} not supported", 505)
        if not method.isalpha() or not method.isupper():
            raise ICAPProtocolError(f"malformed ICAP method {method!r}")
        if method not in KNOWN_METHODS:
            raise ICAPProtocolError(f"method {method} not implemented", 501)
        headers = parse_header_lines(lines[1:])
        enc_values = headers.get_all("Encapsulated")
        if len(enc_values) > 1:
            raise ICAPProtocolError("more than one Encapsulated header")
        if enc_values:
            enc = parse_encapsulated(enc_values[0], method)
        elif method == "OPTIONS":
            # Squid's OPTIONS carries no Encapsulated header (RFC 3507 erratum).
            enc = None
        else:
            raise ICAPProtocolError(f"{method} request without an Encapsulated header")
        preview: int | None = None
        raw_preview = headers.get("Preview")
        if raw_preview is not None and method != "OPTIONS":
            if not (raw_preview.strip().isascii() and raw_preview.strip().isdigit()):
                raise ICAPProtocolError(f"malformed Preview header {raw_preview!r}")
            preview = int(raw_preview)
        return RequestHead(method, uri, version, headers, enc, preview=preview)

    def _read_encap(self) -> object:
        head = self._head
        assert head is not None
        n = self._encap_len
        if len(self._buf) < n:
            if self._eof:
                return self._closed()
            return NEED_DATA
        block = bytes(self._buf[:n])
        del self._buf[:n]
        enc = head.encapsulated
        if enc is not None:
            for name, start, end in enc.slices():
                piece = block[start:end]
                if name == "req-hdr":
                    head.http_request = parse_request_head(piece)
                else:
                    head.http_response = parse_response_head(piece)
        self.request = head
        self.send_state = SendState.WAIT
        if head.has_body:
            self.recv_state = RecvState.BODY
            self._chunk = _Chunk.SIZE
            self._in_preview = head.preview is not None
            self._preview_bytes = 0
        else:
            # null-body (Preview: 0 included) arrives with no chunks at all.
            self.recv_state = RecvState.DONE
            if head.preview is not None:
                self._pending.append(PreviewEnd(ieof=True))
            self._pending.append(EndOfMessage())
        return head

    def _read_line(self) -> bytes | None:
        buf = self._buf
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) > self.max_line_bytes:
                raise ICAPProtocolError("chunk line too long", 413)
            return None
        if nl > self.max_line_bytes:
            raise ICAPProtocolError("chunk line too long", 413)
        line = bytes(buf[:nl])
        del buf[: nl + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _read_body(self) -> object:
        while True:
            chunk = self._chunk
            if chunk is _Chunk.DATA:
                if not self._buf:
                    return self._need_body_data()
                take = min(self._chunk_left, len(self._buf))
                data = bytes(self._buf[:take])
                del self._buf[:take]
                self._chunk_left -= take
                self.body_bytes_received += take
                if self._chunk_left == 0:
                    self._chunk = _Chunk.DATA_END
                if self._in_preview:
                    self._preview_bytes += take
                    assert self.request is not None and self.request.preview is not None
                    if self._preview_bytes > self.request.preview:
                        raise ICAPProtocolError("more preview data than the Preview header said")
                return BodyData(data, self._in_preview)
            if chunk is _Chunk.DATA_END:
                if len(self._buf) < 2:
                    if self._buf[:1] == b"\n":
                        del self._buf[:1]
                        self._chunk = _Chunk.SIZE
                        continue
                    return self._need_body_data()
                if self._buf[:2] == b"\r\n":
                    del self._buf[:2]
                elif self._buf[:1] == b"\n":
                    del self._buf[:1]
                else:
                    raise ICAPProtocolError("chunk data not followed by CRLF")
                self._chunk = _Chunk.SIZE
                continue
            if chunk is _Chunk.SIZE:
                line = self._read_line()
                if line is None:
                    return self._need_body_data()
                size, ieof = self._parse_chunk_size(line)
                if size:
                    self._chunk = _Chunk.DATA
                    self._chunk_left = size
                    continue
                self._preview_ieof = ieof
                self._chunk = _Chunk.TRAILERS
                self._trailer_lines = []
                self._trailer_bytes = 0
                continue
            # Trailers: header lines after the last chunk, up to an empty line.
            line = self._read_line()
            if line is None:
                return self._need_body_data()
            if line:
                self._trailer_bytes += len(line)
                if self._trailer_bytes > self.max_header_bytes:
                    raise ICAPProtocolError("trailers too large", 413)
                self._trailer_lines.append(line)
                continue
            return self._end_of_chunks()

    def _need_body_data(self) -> object:
        if self._eof:
            self.recv_state = RecvState.CLOSED
            self.keep_alive = False
            return ConnectionClosed(clean=False)
        return NEED_DATA

    def _parse_chunk_size(self, line: bytes) -> tuple[int, bool]:
        size_part, _, ext = line.partition(b";")
        size_part = size_part.strip(b" \t")
        try:
            if not size_part or size_part.strip(b"0123456789abcdefABCDEF"):
                raise ValueError
            size = int(size_part, 16)
        except ValueError:
            raise ICAPProtocolError(f"bad chunk size {line[:40]!r}") from None
        if size > self.max_chunk_size:
            raise ICAPProtocolError(f"chunk of {size} bytes exceeds the limit", 413)
        # Unknown extensions are ignored on every chunk; ieof counts only on the last.
        ieof = size == 0 and any(
            e.strip(b" \t").split(b"=")[0].strip().lower() == b"ieof" for e in ext.split(b";")
        )
        return size, ieof

    def _end_of_chunks(self) -> object:
        trailers = parse_header_lines(self._trailer_lines) if self._trailer_lines else Headers()
        if self._in_preview:
            self._in_preview = False
            if self._preview_ieof:
                self.recv_state = RecvState.DONE
                self._pending.append(EndOfMessage(trailers))
            elif self.send_state in (SendState.BODY, SendState.DONE):
                # We answered before the preview was over: the client waits for that
                # answer, not for a 100, and sends nothing more.
                self.recv_state = RecvState.DONE
            else:
                self.recv_state = RecvState.PREVIEW_WAIT
            return PreviewEnd(ieof=self._preview_ieof)
        self.recv_state = RecvState.DONE
        return EndOfMessage(trailers)

    # ------------------------------------------------------------------ sending
    def send_continue(self) -> bytes:
        """Ask for the rest of the body after a preview that did not end in ieof."""
        if self.recv_state is not RecvState.PREVIEW_WAIT or self.send_state is not SendState.WAIT:
            raise LocalProtocolError("100 Continue is only allowed after a preview without ieof")
        self.recv_state = RecvState.BODY
        self._chunk = _Chunk.SIZE
        return b"ICAP/1.0 100 Continue\r\n\r\n"

    def send_response(self, response: ICAPResponse) -> bytes:
        """Serialise a final response head (and the encapsulated HTTP headers)."""
        if self.send_state not in (SendState.WAIT, SendState.IDLE):
            raise LocalProtocolError(f"cannot send a response in state {self.send_state.value}")
        if response.status < 200:
            raise LocalProtocolError("use send_continue() for 100")
        data = self.serialise(response)
        if self.recv_state is RecvState.PREVIEW_WAIT:
            # The client waits for us after a preview: a final answer ends its request.
            self.recv_state = RecvState.DONE
        if self.send_state is SendState.IDLE:
            # An answer to a request we could not parse: nothing can follow it.
            self.keep_alive = False
        self.send_state = SendState.BODY if response.has_body else SendState.DONE
        return data

    def serialise(self, response: ICAPResponse) -> bytes:
        headers = response.headers
        if "Date" not in headers:
            headers.add("Date", http_date())
        if "Server" not in headers:
            headers.add("Server", self.server_name)
        if not self.keep_alive or self.send_state is SendState.IDLE:
            headers.set("Connection", "close")
        elif headers.has_token("Connection", "close"):
            self.keep_alive = False
        parts: list[tuple[str, bytes]] = []
        for name, part in (("req-hdr", response.http_request), ("res-hdr", response.http_response)):
            if part is None:
                continue
            raw = part if isinstance(part, bytes) else part.encode()
            parts.append((name, raw))
        if response.has_body:
            if response.options:
                body_name = "opt-body"
            else:
                # (a RESPMOD answered without an HTTP response head still answers with
                # a response body)
                respmod = self._head is not None and self._head.method == "RESPMOD"
                body_name = (
                    "res-body" if response.http_response is not None or respmod else "req-body"
                )
        else:
            body_name = "null-body"
        value, _ = format_encapsulated([(n, len(p)) for n, p in parts], body_name)
        headers.set("Encapsulated", value)
        reason = response.reason or REASONS.get(response.status, "Unknown")
        out = [f"ICAP/1.0 {response.status} {reason}\r\n".encode("latin-1"), headers.encode()]
        out.append(b"\r\n")
        out.extend(p for _, p in parts)
        return b"".join(out)

    def send_data(self, data: bytes) -> bytes:
        """One chunk of the response body."""
        if self.send_state is not SendState.BODY:
            raise LocalProtocolError("no response body is being sent")
        if not data:
            return b""
        self.body_bytes_sent += len(data)
        return b"%x\r\n%b\r\n" % (len(data), data)

    def send_end(self) -> bytes:
        """The last chunk of the response body."""
        if self.send_state is not SendState.BODY:
            raise LocalProtocolError("no response body is being sent")
        self.send_state = SendState.DONE
        return b"0\r\n\r\n"

    @property
    def request_done(self) -> bool:
        return self.recv_state is RecvState.DONE

    @property
    def response_done(self) -> bool:
        return self.send_state is SendState.DONE
