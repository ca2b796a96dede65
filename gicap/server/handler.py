"""One client connection: socket reads and writes around the sans-IO core.

Deadlines are separate: ``idle_timeout`` while a keep-alive connection waits for its
next request, ``header_timeout`` for a whole request head once it has started, and
``body_timeout`` for each silence while a body arrives.
"""

from __future__ import annotations

import logging
import select
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent

from gicap import __version__
from gicap.obs.txlog import TransactionLog
from gicap.protocol import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ConnectionClosed,
    EndOfMessage,
    Headers,
    ICAPConnection,
    ICAPProtocolError,
    ICAPResponse,
    PreviewEnd,
    RequestHead,
)
from gicap.server.spool import Spool
from gicap.services.base import (
    PREVIEW_KEPT,
    Modified,
    Outcome,
    Refused,
    Service,
    Transaction,
    Unmodified,
)

if TYPE_CHECKING:
    from gicap.config import ServerSettings
    from gicap.obs.metrics import Recorder

log = logging.getLogger("gicap.server")

SERVER_ISTAG = '"gicap-server"'
WRITE_BATCH = 256 * 1024
RECV_SIZE = 256 * 1024
#: Events handled before the connection gives the others a turn.
YIELD_EVERY = 256


class _Timeout(Exception):
    def __init__(self, phase: str) -> None:
        self.phase = phase


@dataclass
class ServerContext:
    """What every connection of one worker process shares."""

    settings: ServerSettings
    services: dict[str, Service]
    #: Connections this process accepts at once; beyond it, 503.
    max_connections: int
    #: The number the OPTIONS answer advertises (the whole server's).
    advertised_connections: int
    txlog: TransactionLog = field(default_factory=lambda: TransactionLog(enabled=False))
    draining: bool = False
    #: Whether requests saying icap:// are served on the TLS listener.
    accept_icap_scheme_on_tls: bool = True
    #: Live connections: id -> True while a transaction is in progress.
    connections: dict[object, bool] = field(default_factory=dict)
    #: This process's metrics (None when metrics.port is 0).
    metrics: Recorder | None = None


class ConnectionHandler:
    def __init__(
        self,
        sock: Any,
        address: Any,
        ctx: ServerContext,
        *,
        secure: bool = False,
        client_identity: tuple[str, ...] = (),
        client_certificate: bytes | None = None,
        client_chain: tuple[bytes, ...] | None = None,
        refuse: tuple[int, str] | None = None,
    ) -> None:
        self.sock = sock
        self.peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        self.ctx = ctx
        self.secure = secure
        self.client_identity = client_identity
        #: The certificate (DER) the client presented in its TLS handshake.
        self.client_certificate = client_certificate
        #: The certificates it sent after its own (None: not known; see
        #: ``gicap.tls.recheck.sent_chain``).
        self.client_chain = client_chain
        #: Why the client is no longer trusted (see ``gicap.tls.recheck``): the
        #: connection closes after the transaction in progress.
        self.untrusted: str | None = None
        #: Answer every request with this status and reason (e.g. a client not allowed).
        self.refuse = refuse
        s = ctx.settings
        self.conn = ICAPConnection(
            max_header_bytes=s.max_header_bytes,
            max_line_bytes=s.max_line_bytes,
            max_chunk_size=s.max_chunk_size,
        )
        self._deadline = 0.0
        self._events = 0
        self._timeout: float | None = None
        #: The transaction being served and when it began (see _log_aborted).
        self._in_flight: tuple[RequestHead, float] | None = None

    # ----------------------------------------------------------------- reading
    def _next_event(self, phase: str) -> object:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is not NEED_DATA:
                self._events += 1
                if not self._events % YIELD_EVERY:
                    # Events already buffered come without a recv that would let the
                    # other connections run: a million one-byte chunks held them 4 s.
                    gevent.sleep(0)
                return event
            s = self.ctx.settings
            now = time.monotonic()
            if phase != "head":
                timeout, current = s.body_timeout, "body"
            elif self._deadline:
                timeout, current = max(0.001, self._deadline - now), "header"
            elif conn.buffered:
                self._deadline = now + s.header_timeout
                timeout, current = s.header_timeout, "header"
            else:
                timeout, current = s.idle_timeout, "idle"
            if timeout != self._timeout:
                self.sock.settimeout(timeout)
                self._timeout = timeout
            try:
                data = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                raise _Timeout(current) from None
            except OSError:
                data = b""
            if current == "idle" and data:
                self._deadline = time.monotonic() + s.header_timeout
            conn.receive_data(data)

    def _read_ready(self) -> bool:
        """Feed whatever has already arrived, without waiting. True if anything did."""
        self.sock.settimeout(0.0)
        self._timeout = 0.0
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, TimeoutError):
            return False
        except OSError:
            data = b""
        self.conn.receive_data(data)
        return True

    def waiting(self) -> bool:
        """Whether the connection waits for a request of which nothing has arrived, so
        that closing it now costs the client no answer. A request whose first bytes
        are here (parsed in part, decrypted and not read yet, or waiting in the
        socket) has begun: it is answered first."""
        if self.ctx.connections.get(self, False) or self.conn.buffered:
            return False
        pending = getattr(self.sock, "pending", None)
        try:
            if pending is not None and pending():
                return False
            # (poll rather than select: a busy worker's descriptors pass 1024)
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return True  # (closed already)

    # ----------------------------------------------------------------- writing
    def _send(self, data: bytes) -> None:
        timeout = self.ctx.settings.body_timeout
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout
        self.sock.sendall(data)

    def _response_head(self, resp: ICAPResponse) -> bytes:
        """``resp``'s head. While the server drains, or once the client is no longer
        trusted, it says Connection: close: the connection closes after it, and a
        client that pooled it would race the close."""
        if self.ctx.draining or self.untrusted is not None:
            self.conn.keep_alive = False
        return self.conn.send_response(resp)

    def _send_error(self, status: int, reason: str, istag: str = SERVER_ISTAG) -> None:
        # After an error the rest of the request is read and the connection closed, as
        # c-icap does: some clients (c-icap-client) wait for the close.
        self.conn.keep_alive = False
        headers = Headers([("ISTag", istag)])
        if reason:
            # Tells the client (and whoever reads its log) what was wrong.
            # (ASCII: a header is Latin-1 at most, and a client may have sent the rest)
            text = reason.replace("\r", " ").replace("\n", " ")
            headers.add("X-Error", text.encode("ascii", "backslashreplace").decode()[:200])
        self._send(self._response_head(ICAPResponse(status, headers)))

    # ----------------------------------------------------------------- the loop
    def run(self) -> None:
        key = self
        self.ctx.connections[key] = False
        try:
            self._loop(key)
        except OSError as exc:
            log.debug("connection %s: %s", self.peer, exc)
            self._log_aborted(f"connection lost: {exc.strerror or exc}", 0)
        except Exception:
            # A bug of ours: answer what can still be answered, never kill the worker.
            log.exception("internal error on the connection from %s", self.peer)
            if self.conn.send_state.value in ("idle", "wait"):
                try:
                    self._send_error(500, "internal server error")
                except Exception:
                    pass
        finally:
            self.ctx.connections.pop(key, None)
            try:
                self.sock.close()
            except OSError:
                pass

    def _loop(self, key: object) -> None:
        while True:
            self._deadline = 0.0
            try:
                event = self._next_event("head")
            except _Timeout as t:
                if t.phase == "header":
                    log.warning(
                        "%s: request head not complete within %ss, closing",
                        self.peer,
                        self.ctx.settings.header_timeout,
                    )
                    self._send_error(408, "request headers not received in time")
                return
            except ICAPProtocolError as exc:
                log.warning("%s: bad request: %s -> %d", self.peer, exc.message, exc.status)
                self._send_error(exc.status, exc.message)
                return
            if isinstance(event, ConnectionClosed) or event is PAUSED:
                return
            assert isinstance(event, RequestHead)
            self.ctx.connections[key] = True
            self._in_flight = (event, time.monotonic())
            try:
                self._transaction(event)
            except _Timeout as t:
                log.warning(
                    "%s: %s timed out while reading the %s, closing", self.peer, event.uri, t.phase
                )
                # (an answer already streaming can only be cut short)
                status = 0
                if not self.conn.response_done and self.conn.send_state.value == "wait":
                    self._send_error(408, f"{t.phase} not received in time")
                    status = 408
                self._log_aborted(f"{t.phase} not received in time", status)
                return
            except ICAPProtocolError as exc:
                log.warning(
                    "%s: bad request %s: %s -> %d", self.peer, event.uri, exc.message, exc.status
                )
                status = 0
                if not self.conn.response_done and self.conn.send_state.value == "wait":
                    self._send_error(exc.status, exc.message)
                    status = exc.status
                self._log_aborted(exc.message, status)
                return
            finally:
                self.ctx.connections[key] = False
            self._in_flight = None
            if not self.conn.keep_alive or self.ctx.draining or self.untrusted is not None:
                return

    def _log_aborted(self, why: str, status: int) -> None:
        """The transaction-log line of a transaction that did not end as ICAP ends one
        (a timeout, a protocol error in its body, a lost connection): status 0 when
        no answer, or only part of one, went out."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None or not self.ctx.txlog.enabled:
            return
        head, started = in_flight
        service = head.service if head.service in self.ctx.services else "unknown"
        fields = {
            "service": service,
            "identity": self.client_identity,
            "http_url": _http_url(head),
            "outcome": "aborted",
            "reason": why,
        }
        millis = (time.monotonic() - started) * 1000
        self.ctx.txlog.record(self.peer, head.method, head.uri, status, millis, fields)

    def _transaction(self, head: RequestHead) -> None:
        started = time.monotonic()
        conn = self.conn
        received, sent = conn.body_bytes_received, conn.body_bytes_sent
        self._txn: Transaction | None = None
        status = self._dispatch(head)
        # Whatever we answered, read the rest of the request so the connection stays usable.
        while not self.conn.request_done:
            event = self._next_event("body")
            if isinstance(event, ConnectionClosed):
                self.conn.keep_alive = False
                break
        seconds = time.monotonic() - started
        received = conn.body_bytes_received - received
        sent = conn.body_bytes_sent - sent
        extra = self._txn.log_fields if self._txn is not None else _NO_FIELDS
        # Client input never becomes a label value: unknown services count as one.
        service = head.service if head.service in self.ctx.services else "unknown"
        outcome = extra.get("outcome") or ("error" if status >= 400 else "ok")
        metrics = self.ctx.metrics
        if metrics is not None:
            file_type = extra.get("type") or "none"
            if file_type == "-":
                file_type = "none"
            metrics.transaction(
                service, head.method, outcome, file_type, status, received, sent, seconds
            )
            cdr_ms = extra.get("cdr_ms")
            if cdr_ms is not None:
                metrics.cdr_done(service, file_type, cdr_ms / 1000)
        txlog = self.ctx.txlog
        if txlog.enabled:
            fields: dict[str, object] = {
                "service": service,
                "identity": self.client_identity,
                "http_url": _http_url(head),
            }
            fields.update(extra)
            fields["outcome"] = outcome
            fields["bytes_in"] = received
            fields["bytes_out"] = sent
            txlog.record(self.peer, head.method, head.uri, status, seconds * 1000, fields)

    def _dispatch(self, head: RequestHead) -> int:
        if head.scheme == "icaps" and not self.secure:
            self._send_error(
                403,
                "the client expected a secure connection (icaps://) "
                "but connected to the plain ICAP port",
            )
            return 403
        if head.scheme == "icap" and self.secure and not self.ctx.accept_icap_scheme_on_tls:
            self._send_error(403, "this listener serves icaps:// requests only")
            return 403
        if self.refuse is not None:
            self._send_error(*self.refuse)
            return self.refuse[0]
        service = self.ctx.services.get(head.service)
        if service is None:
            self._send_error(404, f"no service named {head.service!r}")
            return 404
        refused = service.check_request(head)
        if refused is not None:
            self._send_error(refused.status, refused.reason, service.istag())
            return refused.status
        if head.method == "OPTIONS":
            self._send(self._response_head(self._options(service)))
            return 200
        if head.method != service.method:
            self._send_error(
                405, f"service {service.name} supports {service.method} only", service.istag()
            )
            return 405
        spool = Spool(self.ctx.settings.spool_threshold, self.ctx.settings.spool_dir)
        try:
            return self._modify(head, service, spool)
        finally:
            spool.close()

    def _options(self, service: Service) -> ICAPResponse:
        s = self.ctx.settings
        h = Headers(
            [
                ("Methods", service.method),
                ("Service", service.description or f"gicap {service.name}"),
                ("ISTag", service.istag()),
                ("Max-Connections", str(self.ctx.advertised_connections)),
                ("Options-TTL", str(s.options_ttl)),
                ("Allow", "204"),
            ]
        )
        if service.wants_preview:
            h.add("Preview", str(s.preview_size))
            h.add("Transfer-Preview", "*")
        return ICAPResponse(200, h)

    def _modify(self, head: RequestHead, service: Service, spool: Spool) -> int:
        txn = Transaction(
            head, client_address=self.peer, secure=self.secure, client_identity=self.client_identity
        )
        self._txn = txn
        if head.has_body:
            spool.limit = service.body_limit(txn)
            spool.over_limit = lambda first: service.body_over_limit(txn, first)
        in_preview = head.preview is not None
        if not in_preview and head.has_body and not head.allow_204:
            # Without a preview Squid 5 sends only about 64 KiB of body and then waits for
            # our answer to begin: a service that already knows the message passes
            # unchanged must stream it back as it arrives.
            early = self._call(service.early, txn)
            if isinstance(early, int):
                return early
            if isinstance(early, Unmodified):
                return self._stream_back(head, service)
        preview_parts: list[bytes] = []
        kept = 0  # (of the preview: the rest is in the spool, whatever size it has)
        while True:
            event = self._next_event("body")
            if isinstance(event, BodyData):
                spool.write(event.data)
                if event.preview and kept < PREVIEW_KEPT:
                    preview_parts.append(event.data[: PREVIEW_KEPT - kept])
                    kept += len(preview_parts[-1])
            elif isinstance(event, PreviewEnd):
                txn.preview = b"".join(preview_parts)
                txn.preview_complete = event.ieof
                outcome = self._call(service.on_preview, txn)
                if isinstance(outcome, int):
                    return outcome
                if outcome is not None:
                    return self._answer(head, service, outcome, spool, allow_204=True)
                if not event.ieof:
                    self._send(self.conn.send_continue())
                    in_preview = False
            elif isinstance(event, EndOfMessage):
                break
            elif isinstance(event, ConnectionClosed):
                self.conn.keep_alive = False
                raise OSError("client closed the connection before the request was complete")
        txn.body = spool if head.has_body else None
        outcome = self._call(service.respond, txn)
        if isinstance(outcome, int):
            return outcome
        return self._answer(head, service, outcome, spool, allow_204=head.allow_204 or in_preview)

    def _stream_back(self, head: RequestHead, service: Service) -> int:
        """Answer 200 with the original message, echoing body chunks as they arrive."""
        http_req = head.http_request if head.method == "REQMOD" else None
        http_res = head.http_response if head.method == "RESPMOD" else None
        resp = ICAPResponse(
            200,
            Headers([("ISTag", service.istag())]),
            http_request=http_req,
            http_response=http_res,
            has_body=True,
        )
        # The body read so far is framed only as it is written: until the head goes
        # out (with the first body bytes written), a malformed chunk still gets its
        # 400 instead of a cut-off 200 (or, read with a good one, no answer at all).
        pending: list[bytes] = []
        pending_bytes = 0
        started = False

        def framed() -> list[bytes]:
            nonlocal started, pending_bytes
            out = [] if started else [self._response_head(resp)]
            started = True
            out += [self.conn.send_data(data) for data in pending]
            pending.clear()
            pending_bytes = 0
            return out

        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                if pending and not self._read_ready():
                    # Write what is ready before waiting for more of the body.
                    self._send(b"".join(framed()))
                event = self._next_event("body")
            if isinstance(event, BodyData):
                pending.append(event.data)
                pending_bytes += len(event.data)
                if pending_bytes >= WRITE_BATCH:
                    # (a client sending faster than it reads had the whole body held
                    # here, three times over: 400 MiB took 1.2 GiB)
                    self._send(b"".join(framed()))
            elif isinstance(event, EndOfMessage):
                self._send(b"".join([*framed(), self.conn.send_end()]))
                return 200
            elif isinstance(event, ConnectionClosed):
                self.conn.keep_alive = False
                raise OSError("client closed the connection before the request was complete")

    def _call(self, fn: Any, txn: Transaction) -> Outcome | None | int:
        try:
            return fn(txn)
        except ICAPProtocolError as exc:
            # Malformed input the service was first to read (encapsulated HTTP headers
            # are parsed when first used): the client's error, not the service's.
            log.warning("bad request to %s: %s", txn.head.service, exc)
            self._send_error(exc.status, str(exc))
            return exc.status
        except Exception:
            # A service failure is answered, never a dropped connection.
            log.exception("service %s failed on %s", txn.head.service, txn.head.uri)
            self._send_error(500, "the service failed to process the message")
            return 500

    def _answer(
        self,
        head: RequestHead,
        service: Service,
        outcome: Outcome,
        spool: Spool,
        *,
        allow_204: bool,
    ) -> int:
        istag = service.istag()
        if isinstance(outcome, Refused):
            self._send_error(outcome.status, outcome.reason, istag)
            return outcome.status
        if isinstance(outcome, Unmodified):
            if allow_204:
                self._send(self._response_head(ICAPResponse(204, Headers([("ISTag", istag)]))))
                return 204
            return self._send_message(head, istag, None, None, spool if head.has_body else None)
        assert isinstance(outcome, Modified)
        return self._send_message(head, istag, outcome, outcome.extra_headers, outcome.body)

    def _send_message(
        self,
        head: RequestHead,
        istag: str,
        outcome: Modified | None,
        extra: dict[str, str] | None,
        body: Any,
    ) -> int:
        http_req = outcome.http_request if outcome else None
        http_res = outcome.http_response if outcome else None
        if head.method == "RESPMOD":
            http_res = http_res or head.http_response
            http_req = None
        else:
            http_req = http_req if (http_req or http_res) else head.http_request
        if outcome is not None:
            # RFC 3507 §4.9: a modified message says so in its Via header.
            target = http_res if http_res is not None else http_req
            if target is not None:
                add_via(target.headers)
        headers = Headers([("ISTag", istag)])
        for name, value in (extra or {}).items():
            headers.add(name, value)
        has_body = body is not None
        resp = ICAPResponse(
            200, headers, http_request=http_req, http_response=http_res, has_body=has_body
        )
        out = [self._response_head(resp)]
        if has_body:
            pending = len(out[0])
            for piece in _pieces(body):
                out.append(self.conn.send_data(piece))
                pending += len(piece)
                if pending >= WRITE_BATCH:
                    self._send(b"".join(out))
                    out, pending = [], 0
            out.append(self.conn.send_end())
            if hasattr(body, "close") and not isinstance(body, Spool):
                body.close()
        self._send(b"".join(out))
        return 200


VIA = f"ICAP/1.0 gicap (gicap/{__version__})"


def add_via(headers: Headers) -> None:
    current = headers.get("Via")
    headers.set("Via", f"{current}, {VIA}" if current else VIA)


_NO_FIELDS: dict[str, Any] = {}


def _http_url(head: RequestHead) -> str:
    """The encapsulated HTTP request's URL: as sent when absolute (a proxy's request),
    else ``//host/path`` from the Host header (the scheme is not known here)."""
    request = head.http_request
    if request is None:
        return ""
    target = request.target
    if "://" in target or not target.startswith("/"):
        return target
    try:
        host = request.headers.get("Host")
    except ICAPProtocolError:  # (headers the answer never needed: read for the log only)
        host = None
    return f"//{host}{target}" if host else target


def _pieces(body: Any) -> Iterable[bytes]:
    if isinstance(body, bytes | bytearray):
        yield bytes(body)
    elif isinstance(body, Spool):
        yield from body.chunks()
    elif hasattr(body, "read"):
        while True:
            data = body.read(64 * 1024)
            if not data:
                return
            yield data
    else:
        yield from body


__all__ = ["ConnectionHandler", "ServerContext"]
