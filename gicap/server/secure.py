"""The Secure ICAP listener: TLS 1.2/1.3 with client certificates on server.secure_port.

The master binds the port without listening; a worker starts listening as soon as a
valid certificate set is loaded (at start-up, or later when the files appear), so a
client never waits on a port that cannot complete a handshake. The certificate
watcher swaps a new SSL context in for new handshakes; connections already
established keep theirs, but for those of clients the new set no longer trusts
(``gicap.tls.recheck``), which are closed.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import gevent
import gevent.ssl
from gevent.server import StreamServer

from gicap.tls import (
    CertificateSet,
    CertificateSettings,
    CertificateWatcher,
    build_server_context,
    client_identity,
    is_ca_certificate,
    is_client_allowed,
)
from gicap.tls.recheck import ClientRecheck, sent_chain

if TYPE_CHECKING:
    from gicap.server.worker import Worker

log = logging.getLogger("gicap.tls")

# Handshake failures as a few classes, the label of gicap_tls_handshake_failures_total.
# OpenSSL's verify codes (X509_V_ERR_*) for a client certificate we refused:
_VERIFY_CLASSES = {
    2: "unknown_ca",  # unable to get issuer certificate
    10: "expired",  # certificate has expired
    18: "unknown_ca",  # self-signed certificate
    19: "unknown_ca",  # self-signed certificate in chain
    20: "unknown_ca",  # unable to get local issuer certificate
    21: "unknown_ca",  # unable to verify the first certificate
    23: "revoked",  # certificate revoked
    9: "not_yet_valid",  # certificate is not yet valid
    26: "wrong_purpose",  # unsuitable certificate purpose (its extended key usage)
    24: "wrong_purpose",  # invalid CA certificate (a leaf signing another)
    3: "crl",  # unable to get certificate CRL
    12: "crl",  # CRL has expired
    11: "crl",  # CRL is not yet valid
    22: "chain_too_long",  # certificate chain too long
}
# OpenSSL's reason names: our own refusals, and alerts a client sent about us.
_REASON_CLASSES = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "no_certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "unknown_ca",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "expired",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "revoked",
    "UNSUPPORTED_PROTOCOL": "protocol_version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version",
    "NO_PROTOCOLS_AVAILABLE": "protocol_version",
    "VERSION_TOO_LOW": "protocol_version",
    # Not TLS at all, mostly (plain ICAP sent to the TLS port): no version we speak.
    "WRONG_VERSION_NUMBER": "protocol_version",
}


#: Alerts a client sends when it does not accept the server's certificate (Squid sends
#: an internal error when the name it expects is not in it).
_CERTIFICATE_ALERTS = {
    "BAD_CERTIFICATE",
    "UNSUPPORTED_CERTIFICATE",
    "CERTIFICATE_REVOKED",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_UNKNOWN",
    "UNKNOWN_CA",
    "INTERNAL_ERROR",
}
_ALERT = re.compile(r"^(?:SSLV3|TLSV1|TLSV13)_ALERT_(\w+)$")


def refusal(exc: BaseException) -> str:
    """What the log says after "TLS handshake with <peer> refused". OpenSSL names an
    alert the client sent TLSV1_ALERT_..., which reads as if gicap had refused: said
    as the client's, with what to check when it is about gicap's certificate."""
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc
    alert = _ALERT.match(str(reason))
    if alert is None:
        return f": {reason}"
    if alert[1] in _CERTIFICATE_ALERTS:
        return (
            f" by the client (alert {reason}): it does not accept gicap's server "
            "certificate; check the CA it trusts (Squid's tls-cafile=) and the name it "
            "expects (the host of the icaps:// URI, or tls-domain=)"
        )
    return f" by the client (alert {reason})"


def failure_class(exc: BaseException) -> str:
    """no_certificate, unknown_ca, expired, revoked, protocol_version or other."""
    code = getattr(exc, "verify_code", None)
    if isinstance(code, int) and code in _VERIFY_CLASSES:
        return _VERIFY_CLASSES[code]
    reason = getattr(exc, "reason", None)
    return _REASON_CLASSES.get(reason, "other") if isinstance(reason, str) else "other"


class _Throttle:
    """At most ``burst`` lines per ``period`` seconds: handshakes that fail need no
    certificate, and 388 warnings in 5 s came from one client looping. The lines
    left out are counted, and said with the next one written."""

    def __init__(self, burst: int = 20, period: float = 10.0) -> None:
        self.burst, self.period = burst, period
        self._start = 0.0
        self._written = 0
        self.skipped = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._start >= self.period:
            self._start, self._written = now, 0
        if self._written < self.burst:
            self._written += 1
            return True
        self.skipped += 1
        return False

    def suffix(self) -> str:
        """What to add to a line written: how many were left out before it."""
        skipped, self.skipped = self.skipped, 0
        return f" ({skipped} more not logged)" if skipped else ""


#: A handshake in progress is closed to make room for a new one only once it has
#: had this long (seconds); before, the new connection is closed instead.
MIN_HANDSHAKE_AGE = 1.0


#: The answer, in clear, to plain ICAP sent to the TLS port.
_PLAIN_ON_TLS_PORT = (
    b"ICAP/1.0 400 Bad Request\r\n"
    b"X-Error: this port speaks Secure ICAP (ICAP over TLS): use an icaps:// URI, or the "
    b"plain ICAP port for icap://\r\n"
    b"Connection: close\r\nEncapsulated: null-body=0\r\n\r\n"
)


class SecureListener:
    def __init__(
        self, worker: Worker, sock: socket.socket, settings: CertificateSettings, *, announce: bool
    ) -> None:
        self.worker = worker
        self.sock = sock
        self.settings = settings
        # Only one worker reports certificate events, so each is logged once.
        logger = log if announce else logging.getLogger("gicap.tls.quiet")
        if not announce:
            logger.setLevel(logging.CRITICAL + 1)
            logger.propagate = False
        self._logger = logger
        self.watcher = CertificateWatcher(settings, logger)
        self.context: ssl.SSLContext | None = None
        #: The set the context serves (the one established connections were judged by).
        self.certset: CertificateSet | None = None
        self.server: StreamServer | None = None
        self.announce = announce
        self._throttle = _Throttle()
        #: Handshakes closed to make room (see _handle): their failure is not theirs.
        self._evicted: set[tuple[str, float, object]] = set()
        #: Why a set the watcher loaded does not serve (OpenSSL refused it, or the
        #: listener did not open); None once it serves.
        self._refused: str | None = None

    def problem(self, plain: bool = True, now: datetime | None = None) -> str | None:
        """Why this listener does not serve clients, for /readyz: None when it serves
        with a valid certificate, and when Secure ICAP is off: no server certificate
        configured (certificate.certfile or keyfile empty), or, while the plain port
        serves (``plain``), none installed (neither file there: the listener opens
        whenever one is; a plain-only server is ready)."""
        if self.server is not None and self.certset is not None:
            if self.certset.not_after <= (now or datetime.now(UTC)):
                expired = (
                    f"server certificate {self.settings.certfile} expired on "
                    f"{self.certset.not_after:%Y-%m-%d %H:%M:%S} UTC; clients refuse it"
                )
                if self.watcher.last_error:
                    expired += f" (the files now installed do not load: {self.watcher.last_error})"
                return expired
            return None
        if not self.settings.certfile or not self.settings.keyfile:
            return None
        if plain and not self.installed():
            return None
        return self.watcher.last_error or self._refused or "no certificate set loaded yet"

    def installed(self) -> bool:
        """Whether a server certificate is installed: a set was loaded, or the server
        certificate or key file is there (a half-installed set is one that fails)."""
        return self.certset is not None or self.settings.server_files_present()

    def start(self) -> None:
        certset, _reason = self.watcher.initial()
        if certset is not None:
            self._install(certset)
        self.worker.secure_changed()
        gevent.spawn(self._watch)

    def reload(self) -> None:
        """SIGHUP: re-read the files whatever their timestamps say."""
        certset = self.watcher.force()
        if certset is not None:
            self._install(certset)

    def update(self, settings: CertificateSettings) -> None:
        """New certificate settings (SIGHUP): the set they name is loaded, and watched
        from then on. When it does not load yet (its files are installed after the
        SIGHUP, say), the current context keeps serving until it does: the watch
        follows the new paths, not the old ones."""
        if settings == self.settings:
            self.reload()
            return
        watcher = CertificateWatcher(settings, self._logger)
        certset, reason = watcher.initial()
        self.settings = settings
        self.watcher = watcher
        if certset is None:
            self._logger.error(
                "SIGHUP: the certificate set the new settings name is not loaded (%s); %s "
                "until it is (its files are watched)",
                reason,
                "the current one keeps serving"
                if self.context is not None
                else "Secure ICAP stays off",
            )
            if self.certset is not None:
                # (the new settings judge its clients all the same: allowed_clients)
                self._recheck(self.certset, self.certset)
            return
        self._install(certset)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def _watch(self) -> None:
        while not self.worker.ctx.draining:
            gevent.sleep(self.watcher.interval)
            try:
                certset = self.watcher.poll()
                if certset is not None:
                    self._install(certset)
                elif self.server is None:
                    self._open()
            except Exception:
                # Whatever a set of files does, the watch goes on: the current set
                # keeps serving and the next change is picked up.
                log.exception("Secure ICAP certificate watch: unexpected error, watching on")
            # (what this tick, or a SIGHUP since the last one, changed)
            self.worker.secure_changed()

    def _install(self, certset: CertificateSet) -> None:
        try:
            context = build_server_context(
                self.settings, certset, context_class=gevent.ssl.SSLContext
            )
        except (ssl.SSLError, ValueError, OSError) as exc:
            log.error("certificate set %s refused: %s", certset.describe(), exc)
            self._refused = f"certificate set {certset.describe()} refused: {exc}"
            return
        self._refused = None
        self.context = context
        earlier, self.certset = self.certset, certset
        if earlier is not None:
            self._recheck(earlier, certset)
        if self.worker.ctx.metrics is not None:
            self.worker.ctx.metrics.certificate(certset.not_after.timestamp())
        self._open()

    def _recheck(self, earlier: CertificateSet, certset: CertificateSet) -> None:
        """Close the connections of clients the new set (or settings) no longer
        trusts: at once when idle, after their answer when a request has begun to
        arrive (it says Connection: close)."""
        now = datetime.now(UTC)
        check = self._check(earlier, certset)
        if check is None:
            return
        # A proxy opens many connections with one certificate: each client is judged
        # once. (A judgement verifies CRL signatures and looks its serial up: 20 ms
        # with a CRL of 50,000 entries, so 200 connections held the worker's loop,
        # and every transaction in it, for 4 s at each certificate change.)
        judged: dict[tuple[Any, ...], str | None] = {}
        for handler, greenlet in list(self.worker.handlers.items()):
            if not handler.secure or handler.untrusted is not None:
                continue
            client = (handler.client_certificate, handler.client_identity, handler.client_chain)
            if client not in judged:
                judged[client] = _judge(check, *client, now, handler.peer)
            reason = judged[client]
            if reason is None:
                continue
            handler.untrusted = reason
            busy = not handler.waiting()
            _say_untrusted(handler.peer, handler.client_identity, reason, busy)
            if not busy:
                greenlet.kill(block=False)

    def _check(self, earlier: CertificateSet, certset: CertificateSet) -> ClientRecheck | None:
        """The judgement of clients verified by ``earlier`` under ``certset``; None
        (logged) when it cannot be made."""
        try:
            return ClientRecheck.between(self.settings, certset, earlier)
        except Exception:
            # (the set loaded and OpenSSL took it: not expected; the new handshakes
            # are judged by the new set whatever happens here)
            log.exception("established clients not re-checked against the new set")
            return None

    def _open(self) -> None:
        if self.server is not None or self.context is None or self.worker.ctx.draining:
            return
        from gicap.server.master import open_listener
        from gicap.server.worker import gevent_socket

        try:
            listener = open_listener(self.sock)
        except OSError as exc:
            # Retried by the watch loop; the plain listener keeps serving meanwhile.
            log.error("cannot open the Secure ICAP listener: %s", exc)
            self._refused = f"cannot open the listener: {exc}"
            return
        self._refused = None
        self.server = StreamServer(gevent_socket(listener), self._handle)
        self.server.start()
        self.worker.listener_opened()
        if self.announce:
            log.info("Secure ICAP listening on port %d", self.server.server_port)

    def _failed(self, reason: str) -> None:
        if self.worker.ctx.metrics is not None:
            self.worker.ctx.metrics.tls_failure(reason)

    def _handle(self, sock: Any, address: Any) -> None:
        context, certset = self.context, self.certset
        assert context is not None
        s = self.worker.ctx.settings
        peer = f"{address[0]}:{address[1]}"
        from gicap.server.worker import no_delay

        worker = self.worker
        if worker.full() or worker.ctx.draining:
            # (no TLS yet to answer 503 over: closed before the handshake costs anything)
            log.warning(
                "connection limit (%d per process) reached: TLS connection from %s closed",
                worker.ctx.max_connections,
                peer,
            )
            if worker.ctx.metrics is not None:
                worker.ctx.metrics.refused("draining" if worker.ctx.draining else "limit")
            sock.close()
            return
        no_delay(sock)
        pending = worker.handshakes
        if len(pending) >= worker.max_handshakes:
            # The oldest handshake in progress makes room when it has had a second: a
            # silent client holds its place for handshake_timeout, a proxy completes
            # its handshake in milliseconds. Younger all, the new connection waits.
            oldest = next(iter(pending))
            if time.monotonic() - oldest[1] < MIN_HANDSHAKE_AGE:
                if self._throttle.allow():
                    log.warning(
                        "%d TLS handshakes in progress (the most per process): the "
                        "connection from %s closed%s",
                        len(pending),
                        peer,
                        self._throttle.suffix(),
                    )
                self._failed("crowded")
                sock.close()
                return
            if self._throttle.allow():
                log.warning(
                    "%d TLS handshakes in progress (the most per process): the oldest "
                    "one, from %s, closed%s",
                    len(pending),
                    oldest[0],
                    self._throttle.suffix(),
                )
            self._failed("crowded")
            self._evicted.add(oldest)
            pending.pop(oldest).close()
        key = (peer, time.monotonic(), object())
        pending[key] = sock
        tls = None
        try:
            with gevent.Timeout(s.handshake_timeout):
                first = sock.recv(1, socket.MSG_PEEK)
                if first and first != b"\x16":
                    # Not a TLS record: plain ICAP (an icap:// client) on this port.
                    # Told so in clear, rather than a reset with no answer.
                    log.warning("%s sent plain ICAP to the Secure ICAP port: answering 400", peer)
                    self._failed("protocol_version")
                    sock.sendall(_PLAIN_ON_TLS_PORT)
                    sock.close()
                    return
                # (wrapping reads what the client has sent already: a reset there
                # raised outside the handling below, and gevent printed its traceback)
                tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                if key in pending:
                    pending[key] = tls
                tls.do_handshake()
        except gevent.Timeout:
            if key in self._evicted:
                self._evicted.discard(key)  # (said, and counted, as crowded)
                return
            if self._throttle.allow():
                log.warning(
                    "TLS handshake with %s: no handshake within %ss%s",
                    peer,
                    s.handshake_timeout,
                    self._throttle.suffix(),
                )
            self._failed("timeout")
            (tls or sock).close()
            return
        except (ssl.SSLError, OSError) as exc:
            if key in self._evicted:
                self._evicted.discard(key)  # (said, and counted, as crowded)
                (tls or sock).close()
                return
            if self._throttle.allow():
                log.warning(
                    "TLS handshake with %s refused%s%s", peer, refusal(exc), self._throttle.suffix()
                )
            self._failed(failure_class(exc))
            (tls or sock).close()
            return
        finally:
            pending.pop(key, None)
            self._evicted.discard(key)
        assert tls is not None
        identity = client_identity(tls.getpeercert())
        der = tls.getpeercert(binary_form=True)
        chain = sent_chain(tls)
        allowed = is_client_allowed(self.settings, identity)
        if certset is not None and self.certset is not certset and allowed:
            # The set changed during the handshake, which the earlier set verified: the
            # re-check did not see this connection, so it is judged here (a name out
            # of allowed_clients is answered 403 below, as in any handshake).
            check = self._check(certset, self.certset)
            reason = None
            if check is not None:
                reason = _judge(check, der, tuple(identity), chain, datetime.now(UTC), peer)
            if reason is not None:
                _say_untrusted(peer, tuple(identity), reason, busy=False)
                tls.close()
                return
        refuse = None
        if is_ca_certificate(der):
            log.warning(
                "client %s presented certificate %s, a CA certificate (basicConstraints "
                "CA:TRUE), not a client's: answering 403",
                peer,
                ", ".join(identity) or "(no name)",
            )
            refuse = (403, "a CA certificate is no client certificate")
        elif not allowed:
            log.warning(
                "client %s presented certificate %s, which is not in "
                "certificate.allowed_clients: answering 403",
                peer,
                ", ".join(identity) or "(none)",
            )
            refuse = (403, "client certificate not allowed: " + (", ".join(identity) or "none"))
        self.worker.serve_connection(
            tls,
            address,
            secure=True,
            client_identity=tuple(identity),
            client_certificate=der,
            client_chain=chain,
            refuse=refuse,
        )


def _judge(
    check: ClientRecheck,
    der: bytes | None,
    identity: tuple[str, ...],
    chain: tuple[bytes, ...] | None,
    now: datetime,
    peer: str,
) -> str | None:
    """``check``'s judgement of a client (see ``ClientRecheck.refusal``); a failure is
    logged, and the client kept."""
    try:
        return check.refusal(der, identity, now, chain)
    except Exception:
        log.exception("re-checking the client of %s failed: connection kept", peer)
        return None


def _say_untrusted(peer: str, identity: tuple[str, ...], reason: str, busy: bool) -> None:
    log.warning(
        "client %s (%s) is no longer trusted by the new certificate settings: %s; "
        "its connection is closed%s",
        peer,
        ", ".join(identity) or "no name",
        reason,
        " after the transaction in progress" if busy else "",
    )
