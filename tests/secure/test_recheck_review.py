"""Review of the re-check of established Secure ICAP clients (``gicap.tls.recheck``):
clients a new handshake still accepts keep their connection, and the answer in
progress of a client that loses it reaches that client."""

from __future__ import annotations

import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from gicap.tls import CertificateSettings, load_certificate_set
from gicap.tls.recheck import ClientRecheck
from tests.tls.pki import PKI, Issued, Key, name, new_key, pem

from .conftest import StartSecure
from .support import RELOAD_WITHIN, Clients, install, open_tls, options_over, write_atomic


def _served(tls: ssl.SSLSocket, port: int) -> bool:
    return options_over(tls, port).startswith(b"ICAP/1.0 200")


def _certificate(
    subject: x509.Name, key: Key, issuer: Issued | None, *, ca: bool, serial: int | None = None
) -> x509.Certificate:
    """A CA or client certificate, with the serial number asked for."""
    now = datetime.now(UTC)
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
    )
    if not ca:
        cn = subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False
        ).add_extension(x509.SubjectAlternativeName([x509.DNSName(str(cn))]), False)
    return builder.sign(signer, hashes.SHA256())


def _root(common_name: str, key: Key | None = None) -> Issued:
    key = key or new_key()
    return Issued(_certificate(name(common_name), key, None, ca=True), key)


def _closed_by_server(tls: ssl.SSLSocket) -> bool:
    tls.settimeout(RELOAD_WITHIN * 2)
    try:
        return tls.recv(1) == b""
    except TimeoutError:
        return False
    except (ssl.SSLError, ConnectionError):
        return True


def test_a_client_sending_a_cross_signed_intermediate_keeps_its_connection(
    start_secure: StartSecure, clients: Clients, pki: PKI, client_a: Issued
) -> None:
    """A root rollover: the clients' intermediate CA is cross-signed by the new root and
    the clients send that copy. The old root and the old copy of the intermediate
    leave the CA file: a new handshake still verifies (client -> cross-signed
    intermediate -> new root), so the connection must stay."""
    old_root, new_root = _root("Rollover Old Root CA"), _root("Rollover New Root CA")
    key = new_key()
    subject = name("Rollover Intermediate CA")
    old_copy = Issued(_certificate(subject, key, old_root, ca=True), key)
    cross = Issued(_certificate(subject, key, new_root, ca=True), key)
    leaf_key = new_key()
    client = Issued(
        _certificate(name("rollover-client"), leaf_key, old_copy, ca=False),
        leaf_key,
        [cross.cert],
    )
    gicap = start_secure(ca=pem(pki.root, old_root, old_copy, new_root))
    port = gicap.secure_port
    with open_tls(port, clients.context(client)) as tls:
        assert _served(tls, port)
        mark = gicap.mark()
        write_atomic(gicap.certdir / "tls-cafile", pem(pki.root, new_root))
        gicap.wait_log("Secure ICAP certificate loaded", since=mark)
        # (a new handshake accepts the client: the new set still trusts it)
        with open_tls(port, clients.context(client)) as fresh:
            assert _served(fresh, port)
        assert _served(tls, port), gicap.log()[mark:]
        assert not gicap.lines("no longer trusted", since=mark)


def test_a_client_sending_its_intermediate_loses_its_connection_with_its_root(
    start_secure: StartSecure, clients: Clients, pki: PKI, client_a: Issued
) -> None:
    """The common set-up (the CA file holds roots only, clients send their
    intermediate): the root taken out of the CA file, its clients are disconnected."""
    other = PKI("Sent Chain")
    intermediate = other.intermediate("Sent Chain Intermediate CA")
    client = other.client("sends-its-chain", issuer=intermediate)
    assert client.chain == [intermediate.cert]
    gicap = start_secure(ca=pem(pki.root, other.root))
    port = gicap.secure_port
    with (
        open_tls(port, clients.context(client)) as gone,
        open_tls(port, clients.context(client_a)) as kept,
    ):
        assert _served(gone, port) and _served(kept, port)
        mark = gicap.mark()
        write_atomic(gicap.certdir / "tls-cafile", pki.root.cert_pem())
        assert _closed_by_server(gone)
        gicap.wait_log(r"\(sends-its-chain\) is no longer trusted .*Sent Chain Root CA", since=mark)
        assert _served(kept, port)


def test_recheck_keeps_a_client_whose_sent_chain_is_not_known(
    tmp_path: Path, pki: PKI, server_cert: Issued
) -> None:
    """A resumed session sends no chain: a client whose root was dropped could have
    sent a cross-signed copy leading to a root still trusted, so it is kept."""
    other = PKI("Unknown Chain")
    client = other.client("resumed")
    settings = CertificateSettings.from_mapping(
        {
            "certfile": str(tmp_path / "tls-server-cert"),
            "keyfile": str(tmp_path / "tls-server-key"),
            "cafile": str(tmp_path / "tls-cafile"),
        }
    )
    install(tmp_path, server_cert, pem(pki.root, other.root))
    earlier = load_certificate_set(settings)
    install(tmp_path, server_cert, pem(pki.root))
    check = ClientRecheck.between(settings, load_certificate_set(settings), earlier)
    now = datetime.now(UTC)
    assert check.refusal(client.der(), ("resumed",), now, None) is None
    assert "Unknown Chain Root CA" in (check.refusal(client.der(), ("resumed",), now, ()) or "")


def _crl(issuer: Issued, serials: tuple[int, ...]) -> bytes:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - timedelta(hours=1))
        .next_update(now + timedelta(days=7))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
        .add_extension(x509.CRLNumber(1), False)
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - timedelta(minutes=5))
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_crl_of_a_namesake_ca_does_not_disconnect_a_client(
    start_secure: StartSecure, clients: Clients, pki: PKI, tmp_path: Path
) -> None:
    """Two CAs with one name (a CA set up again with a new key, numbering its
    certificates from 1 again): the old one's CRL revokes serial 7, a client of the
    new one has serial 7 too. OpenSSL checks the client against the CRL its own CA
    signed, so a new handshake accepts it: its connection must stay."""
    old_ca, new_ca = _root("Twin CA"), _root("Twin CA")
    key = new_key()
    client = Issued(_certificate(name("twin-client"), key, new_ca, ca=False, serial=7), key)
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl([]) + _crl(new_ca, ()))
    gicap = start_secure(
        {"GICAP_CERTIFICATE__CRLFILE": str(crl), "CERTIFICATE__VerificationFlags": "CRL_CHECK"},
        ca=pem(pki.root, old_ca, new_ca),
    )
    port = gicap.secure_port
    with open_tls(port, clients.context(client)) as tls:
        assert _served(tls, port)
        mark = gicap.mark()
        write_atomic(crl, pki.crl([]) + _crl(new_ca, ()) + _crl(old_ca, (7,)))
        gicap.wait_log("Secure ICAP certificate loaded", since=mark)
        with open_tls(port, clients.context(client)) as fresh:
            assert _served(fresh, port)
        assert _served(tls, port), gicap.log()[mark:]
        assert not gicap.lines("no longer trusted", since=mark)


def test_recheck_finds_a_client_revoked_by_the_crl_of_the_intermediate_it_sent(
    tmp_path: Path, pki: PKI, server_cert: Issued
) -> None:
    intermediate = pki.intermediate("CRL Intermediate CA")
    client = pki.client("revoked-below", issuer=intermediate)
    settings = CertificateSettings.from_mapping(
        {
            "certfile": str(tmp_path / "tls-server-cert"),
            "keyfile": str(tmp_path / "tls-server-key"),
            "cafile": str(tmp_path / "tls-cafile"),
            "crlfile": str(tmp_path / "crl.pem"),
            "verification_flags": "CRL_CHECK",
        }
    )
    install(tmp_path, server_cert, pem(pki.root))
    (tmp_path / "crl.pem").write_bytes(pki.crl([]) + pki.crl([client], issuer=intermediate))
    certset = load_certificate_set(settings)
    check = ClientRecheck.between(settings, certset, certset)
    now = datetime.now(UTC)
    for sent in ((intermediate.der(),), None):
        reason = check.refusal(client.der(), ("revoked-below",), now, sent)
        assert reason is not None and "revoked" in reason


def _read_to_close(tls: ssl.SSLSocket) -> bytes:
    tls.settimeout(5)
    answer = b""
    try:
        while chunk := tls.recv(65536):
            answer += chunk
    except (ssl.SSLError, ConnectionError) as exc:
        answer += f"<{type(exc).__name__}>".encode()
    return answer


def test_a_pipelined_request_does_not_cost_the_answer_in_progress(
    start_secure: StartSecure, clients: Clients, pki: PKI, tmp_path: Path
) -> None:
    """The client revoked while a transaction is in progress has sent its next request
    already: the answer in progress must still reach it (a close with the next request
    unread resets the connection, and the reset discards what the client had not read
    yet)."""
    revoked = pki.client("pipelining-client")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl([]))
    gicap = start_secure(
        {"GICAP_CERTIFICATE__CRLFILE": str(crl), "CERTIFICATE__VerificationFlags": "CRL_CHECK"}
    )
    port = gicap.secure_port
    url = f"icaps://localhost:{port}/echo"
    body = b"x" * 200_000
    with open_tls(port, clients.context(revoked)) as tls:
        # (served once first: the server has completed its side of the handshake)
        assert _served(tls, port)
        tls.sendall(
            f"RESPMOD {url} ICAP/1.0\r\nHost: localhost\r\n"
            "Encapsulated: res-hdr=0, res-body=19\r\n\r\n"
            "HTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n".encode()
        )
        mark = gicap.mark()
        write_atomic(crl, pki.crl([revoked]))
        gicap.wait_log(r"\(pipelining-client\) .* after the transaction in progress", since=mark)
        # The end of the first request, and a second one right behind it.
        second = (
            f"RESPMOD {url} ICAP/1.0\r\nHost: localhost\r\n"
            "Encapsulated: res-hdr=0, res-body=19\r\n\r\n"
            f"HTTP/1.1 200 OK\r\n\r\n{len(body):x}\r\n".encode()
            + body
            + b"\r\n0\r\n\r\n"
        )
        tls.sendall(b"0\r\n\r\n" + second)
        answer = _read_to_close(tls)
    assert answer.startswith(b"ICAP/1.0 200"), answer[:300]
    # (its head had gone out when the client was judged: no Connection: close in it)
    assert answer.endswith(b"5\r\nhello\r\n0\r\n\r\n"), answer[-300:]


def test_a_request_begun_when_the_client_is_judged_is_answered(
    start_secure: StartSecure, clients: Clients, pki: PKI, tmp_path: Path
) -> None:
    """A request whose head has begun to arrive is in progress: it is answered (with
    Connection: close), not cut off unanswered."""
    revoked = pki.client("starting-client")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl([]))
    gicap = start_secure(
        {"GICAP_CERTIFICATE__CRLFILE": str(crl), "CERTIFICATE__VerificationFlags": "CRL_CHECK"}
    )
    port = gicap.secure_port
    with open_tls(port, clients.context(revoked)) as tls:
        # (served once first: the server has completed its side of the handshake)
        assert _served(tls, port)
        tls.sendall(f"OPTIONS icaps://localhost:{port}/echo ICAP/1.0\r\n".encode())
        mark = gicap.mark()
        write_atomic(crl, pki.crl([revoked]))
        gicap.wait_log(r"\(starting-client\) is no longer trusted", since=mark)
        try:
            tls.sendall(b"Host: localhost\r\n\r\n")
        except (ssl.SSLError, ConnectionError):
            pass
        answer = _read_to_close(tls)
    assert answer.startswith(b"ICAP/1.0 200"), answer[:300]
    assert b"Connection: close" in answer


def test_a_connection_with_a_request_in_its_socket_is_not_waiting() -> None:
    """The bytes of a request that has arrived, not read yet by the connection's
    greenlet: the request has begun, and closing the connection would lose it."""
    from gicap.config import ServerSettings
    from gicap.server.handler import ConnectionHandler, ServerContext

    ours, client = socket.socketpair()
    with ours, client:
        handler = ConnectionHandler(
            ours, ("127.0.0.1", 1), ServerContext(ServerSettings(), {}, 1, 1)
        )
        assert handler.waiting()
        client.sendall(b"OPTIONS icaps://localhost/echo ICAP/1.0\r\n")
        assert not handler.waiting()


def test_every_worker_process_judges_its_own_connections(
    start_secure: StartSecure, clients: Clients, pki: PKI, client_a: Issued, tmp_path: Path
) -> None:
    revoked = pki.client("revoked-everywhere")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl([]))
    gicap = start_secure(
        {
            "GICAP_SERVER__WORKERS": "2",
            "GICAP_CERTIFICATE__CRLFILE": str(crl),
            "CERTIFICATE__VerificationFlags": "CRL_CHECK",
        }
    )
    port = gicap.secure_port
    gone = [open_tls(port, clients.context(revoked)) for _ in range(6)]
    kept = [open_tls(port, clients.context(client_a)) for _ in range(6)]
    try:
        assert all(_served(tls, port) for tls in gone + kept)
        write_atomic(crl, pki.crl([revoked]))
        assert all(_closed_by_server(tls) for tls in gone)
        assert all(_served(tls, port) for tls in kept)
    finally:
        for tls in gone + kept:
            tls.close()


def test_a_client_without_a_certificate_keeps_its_connection(
    start_secure: StartSecure, clients: Clients, pki: PKI, other_pki: PKI
) -> None:
    """require_client_cert = false: a client that sent no certificate is not judged
    by a new CA file (and its handshake, with no certificate to list, is served)."""
    gicap = start_secure(
        {"GICAP_CERTIFICATE__REQUIRE_CLIENT_CERT": "false"}, ca=pem(pki.root, other_pki.root)
    )
    port = gicap.secure_port
    with open_tls(port, clients.context()) as tls:
        assert _served(tls, port)
        mark = gicap.mark()
        write_atomic(gicap.certdir / "tls-cafile", pki.root.cert_pem())
        gicap.wait_log("Secure ICAP certificate loaded", since=mark)
        assert _served(tls, port)
        assert not gicap.lines("no longer trusted", since=mark)


def test_a_handshake_under_way_when_the_set_changes_is_judged_by_the_new_set(
    start_secure: StartSecure, clients: Clients, pki: PKI, tmp_path: Path
) -> None:
    """A connection accepted before the CRL changes and whose handshake completes
    after it (with the context of its accept) is no established connection yet when
    the re-check runs: it must not be served once the new set revokes its client."""
    revoked = pki.client("late-handshake")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl([]))
    gicap = start_secure(
        {"GICAP_CERTIFICATE__CRLFILE": str(crl), "CERTIFICATE__VerificationFlags": "CRL_CHECK"}
    )
    port = gicap.secure_port
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with raw:
        time.sleep(0.3)  # (accepted: its greenlet waits for the ClientHello)
        mark = gicap.mark()
        write_atomic(crl, pki.crl([revoked]))
        gicap.wait_log("Secure ICAP certificate loaded", since=mark)
        try:
            tls = clients.context(revoked).wrap_socket(raw, server_hostname="localhost")
        except (ssl.SSLError, ConnectionError):
            return  # (refused in the handshake: right)
        with tls:
            try:
                answer = options_over(tls, port)
            except (ssl.SSLError, ConnectionError):
                answer = b""
    assert answer == b"", answer[:200]
