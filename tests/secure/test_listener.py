"""The Secure ICAP listener of a real gicap process: when it opens and what it serves."""

from __future__ import annotations

import os
import re
import socket
import ssl
import time
from pathlib import Path

import pytest

from gicap.client import ICAPClient
from tests.tls.pki import PKI, Issued

from .conftest import StartSecure
from .support import RELOAD_WITHIN, Clients, cert_sha, install, presented, wait_until


def test_listener_opens_by_default_and_serves_options_and_respmod(
    start_secure: StartSecure, clients: Clients, client_a: Issued, server_cert: Issued
) -> None:
    gicap = start_secure()
    assert presented(gicap.secure_port, clients.context(client_a)) == cert_sha(server_cert)
    body = os.urandom(200_000)
    with clients.icap(gicap.secure_port, client_a) as icap:
        opts = icap.options()
        assert opts.status == 200
        assert opts.headers.get("Methods") == "RESPMOD"
        # Same TLS connection, kept alive: without Allow: 204 the body comes back whole.
        mod = icap.respmod(body, allow_204=False)
        assert mod.status == 200
        assert mod.http_response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert mod.body == body
        # A second transaction on the same connection.
        assert icap.respmod(b"second", allow_204=False).body == b"second"
    assert gicap.lines(rf"Secure ICAP listening on port {gicap.secure_port}")
    # The plain port keeps serving next to it.
    with ICAPClient(f"{gicap.url}/echo") as plain:
        assert plain.options().status == 200


def test_client_certificates_not_required_is_said_in_the_log(
    start_secure: StartSecure, clients: Clients, client_a: Issued
) -> None:
    """An empty certificate.cafile (an unset shell variable, say) served clients with
    no certificate, and the log said nothing of it."""
    gicap = start_secure({"GICAP_CERTIFICATE__CAFILE": ""}, probe=False)
    assert gicap.lines("Secure ICAP does not require client certificates")
    assert gicap.lines("certificate.cafile is empty")
    quiet = start_secure()
    assert not quiet.lines("does not require client certificates")


def test_icap_scheme_on_the_tls_port_is_accepted_by_default(
    start_secure: StartSecure, clients: Clients, client_a: Issued
) -> None:
    gicap = start_secure()
    with clients.icap(gicap.secure_port, client_a, scheme="icap") as icap:
        assert icap.options().status == 200
        assert icap.respmod(b"abc", allow_204=False).body == b"abc"


def test_icap_scheme_on_the_tls_port_refused_with_403_when_disabled(
    start_secure: StartSecure, clients: Clients, client_a: Issued
) -> None:
    gicap = start_secure({"GICAP_CERTIFICATE__ACCEPT_ICAP_SCHEME": "false"})
    with clients.icap(gicap.secure_port, client_a, scheme="icap") as icap:
        refused = icap.options()
    assert refused.status == 403
    # icaps:// on the same listener still works.
    with clients.icap(gicap.secure_port, client_a) as icap:
        assert icap.options().status == 200


def test_tls_only_server(start_secure: StartSecure, clients: Clients, client_a: Issued) -> None:
    gicap = start_secure({"GICAP_SERVER__PORT": "0"})
    assert gicap.port == 0
    with clients.icap(gicap.secure_port, client_a) as icap:
        assert icap.options().status == 200
        assert icap.respmod(b"x" * 10_000, allow_204=False).body == b"x" * 10_000
    assert not gicap.lines("plain ICAP listening")


def test_without_certificates_secure_is_off_until_the_files_appear(
    start_secure: StartSecure,
    tmp_path: Path,
    pki: PKI,
    clients: Clients,
    client_a: Issued,
    server_cert: Issued,
) -> None:
    certdir = tmp_path / "later"
    gicap = start_secure({"GICAP_SERVER__WORKERS": "2"}, installed=False, certdir=certdir)
    off = gicap.lines("Secure ICAP is off")
    assert len(off) == 1, gicap.log()
    # The reason names the missing file.
    assert "file not found" in off[0] and str(certdir / "tls-server-cert") in off[0]
    assert gicap.secure_listeners() == 0
    # Nothing listens on the secure port yet: a client is refused at once, never left hanging.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gicap.secure_port), timeout=2).close()
    # ...yet the port is gicap's: another server cannot take it meanwhile.
    with pytest.raises(OSError, match="in use"):
        socket.create_server(("127.0.0.1", gicap.secure_port)).close()
    with ICAPClient(f"{gicap.url}/echo") as plain:
        assert plain.options().status == 200

    pid = gicap.proc.pid if gicap.proc else None
    installed_at = time.monotonic()
    install(certdir, server_cert, pki.root.cert_pem())
    sha = wait_until(
        lambda: presented(gicap.secure_port, clients.context(client_a)),
        RELOAD_WITHIN,
        "TLS listener after the certificate files were written",
    )
    assert sha == cert_sha(server_cert)
    # Both workers open their listener.
    wait_until(lambda: gicap.secure_listeners() == 2, RELOAD_WITHIN, "both workers listening")
    assert time.monotonic() - installed_at < RELOAD_WITHIN
    assert gicap.proc is not None and gicap.proc.pid == pid and gicap.proc.poll() is None
    assert gicap.wait_log(rf"Secure ICAP listening on port {gicap.secure_port}")
    assert len(gicap.lines("Secure ICAP is off")) == 1


def test_a_malformed_certificate_at_start_leaves_plain_icap_serving(
    start_secure: StartSecure, tmp_path: Path, pki: PKI
) -> None:
    """A certificate whose extension does not parse stopped gicap at start-up (a
    ValueError from cryptography), plain ICAP with it: a crash loop under Kubernetes."""
    certdir = tmp_path / "bad"
    install(certdir, pki.malformed(), pki.root.cert_pem())
    gicap = start_secure(installed=False, certdir=certdir)
    off = gicap.lines("Secure ICAP is off")
    assert len(off) == 1 and "unreadable certificate set" in off[0], gicap.log()
    with ICAPClient(f"{gicap.url}/echo") as plain:
        assert plain.options().status == 200


def test_silent_tls_connections_take_no_proxys_place(
    start_secure: StartSecure, clients: Clients, client_a: Issued
) -> None:
    """Connections in their TLS handshake counted toward max_connections: as many
    silent ones (no certificate needed) locked every proxy out of both ports, 503 on
    the plain one, for as long as they were renewed. They have a budget of their own
    now (a quarter of the limit, 16 at least): past it the oldest is closed once it
    has had a second (before, the new connection is), and a proxy's handshake, done
    in milliseconds, gets through."""
    gicap = start_secure({"GICAP_SERVER__MAX_CONNECTIONS": "2"})
    held = [socket.create_connection(("127.0.0.1", gicap.secure_port)) for _ in range(20)]
    assert gicap.wait_log("TLS handshakes in progress .* the connection from .* closed")
    time.sleep(1.2)
    try:
        with socket.create_connection(("127.0.0.1", gicap.port), timeout=5) as s:
            s.sendall(f"OPTIONS {gicap.url}/echo ICAP/1.0\r\n\r\n".encode())
            assert s.recv(65536).startswith(b"ICAP/1.0 200 ")
        with clients.icap(gicap.secure_port, client_a) as icap:
            assert icap.options().status == 200
        line = gicap.wait_log("TLS handshakes in progress .* the oldest one, from .* closed")
        evicted = line.split(" from ", 1)[1].split(" closed", 1)[0]
        time.sleep(0.3)
        # (said once, as crowded: not again as a refused handshake)
        assert not gicap.lines(f"TLS handshake with {re.escape(evicted)} refused")
        closed = 0
        for s in held:
            s.settimeout(0.2)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed >= 20 - 16, closed  # (the budget held; the oldest went)
    finally:
        for s in held:
            s.close()


def test_a_reset_before_the_handshake_is_one_log_line(
    start_secure: StartSecure, clients: Clients, client_a: Issued
) -> None:
    """A client that sent the start of a ClientHello and reset the connection made
    gevent print a traceback to stderr (outside the log's format, uncounted), one per
    connection: anyone reaching the port could flood the log."""
    import struct

    gicap = start_secure()
    mark = gicap.mark()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", gicap.secure_port))
        s.sendall(bytes.fromhex("160301020001"))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(1)
    with clients.icap(gicap.secure_port, client_a) as icap:
        assert icap.options().status == 200
    log = gicap.log()[mark:]
    assert "Traceback" not in log, log
    assert len(gicap.lines("TLS handshake with .* refused")) >= 3, log


def test_a_certificate_near_expiry_is_said_in_the_log_format(
    start_secure: StartSecure, pki: PKI
) -> None:
    """The master's look at the certificate set wrote its expiry warning raw, through
    Python's last-resort handler: a line outside the JSON log, and twice."""
    from datetime import UTC, datetime, timedelta

    soon = pki.server(not_after=datetime.now(UTC) + timedelta(days=20))
    gicap = start_secure({"GICAP_LOGGING__FORMAT": "json"}, server=soon)
    lines = [line for line in gicap.log().splitlines() if line.strip()]
    assert [line for line in lines if not line.startswith("{")] == [], gicap.log()
    assert len([line for line in lines if "expires on" in line]) == 1, gicap.log()


def test_each_port_says_at_once_which_protocol_it_speaks(
    start_secure: StartSecure, clients: Clients, client_a: Issued
) -> None:
    """Plain ICAP to the TLS port was reset with no answer; a TLS handshake on the
    plain port waited header_timeout for a head and then got a 408."""
    gicap = start_secure({"GICAP_SERVER__HEADER_TIMEOUT": "30"})
    with socket.create_connection(("127.0.0.1", gicap.secure_port), timeout=5) as s:
        s.sendall(f"OPTIONS icap://127.0.0.1:{gicap.secure_port}/echo ICAP/1.0\r\n\r\n".encode())
        answer = s.recv(65536)
    assert answer.startswith(b"ICAP/1.0 400 ") and b"icaps://" in answer, answer
    started = time.monotonic()
    with pytest.raises(ssl.SSLError):
        with clients.icap(gicap.port, client_a) as icap:
            icap.options()
    assert time.monotonic() - started < 5
    assert gicap.wait_log("a TLS handshake on a port that speaks ICAP without TLS")
    # (the TLS port still serves its clients)
    with clients.icap(gicap.secure_port, client_a) as icap:
        assert icap.options().status == 200


def test_refused_handshakes_are_logged_a_bounded_number_of_times(
    start_secure: StartSecure, clients: Clients, client_a: Issued
) -> None:
    """Handshakes that fail need no certificate: one client looping wrote 388
    warnings in 5 s. At most 20 lines per 10 s are written; the next one written says
    how many were left out."""
    from gicap.server.secure import _Throttle

    throttle = _Throttle(burst=2, period=3600)
    assert [throttle.allow() for _ in range(5)] == [True, True, False, False, False]
    assert throttle.suffix() == " (3 more not logged)" and throttle.suffix() == ""

    gicap = start_secure()
    mark = gicap.mark()
    for _ in range(40):
        with socket.create_connection(("127.0.0.1", gicap.secure_port), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello")  # (a TLS record that is no ClientHello)
            try:
                s.recv(100)
            except OSError:
                pass
    time.sleep(0.5)
    refused = gicap.lines("TLS handshake with .* refused", since=mark)
    assert 1 <= len(refused) <= 20, len(refused)
    with clients.icap(gicap.secure_port, client_a) as icap:
        assert icap.options().status == 200
