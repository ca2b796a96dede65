from __future__ import annotations

import ipaddress
import socket
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gicap.tls.certset import client_identity, load_certificate_set
from gicap.tls.devcerts import CLIENT_CN, generate_dev_set, squid_service_line
from gicap.tls.settings import CertificateSettings

from .tlsutil import client_context, connect


def test_generated_set_loads_and_handshakes(serve, tmp_path: Path) -> None:
    directory = tmp_path / "dev"
    paths = generate_dev_set(directory, hosts=["icap.example", "10.1.2.3"])

    assert {p.name for p in paths.values()} == {
        "tls-cafile",
        "tls-server-cert",
        "tls-server-key",
        "client-cert.pem",
        "client-key.pem",
    }
    for key in ("keyfile", "client_key"):
        assert stat.S_IMODE(paths[key].stat().st_mode) == 0o600

    server = x509.load_pem_x509_certificate(paths["certfile"].read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", socket.gethostname(), "icap.example"} <= set(
        san.get_values_for_type(x509.DNSName)
    )
    assert {ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "10.1.2.3")} <= set(
        san.get_values_for_type(x509.IPAddress)
    )
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    client = x509.load_pem_x509_certificate(paths["client_cert"].read_bytes())
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    settings = CertificateSettings(
        certfile=str(paths["certfile"]),
        keyfile=str(paths["keyfile"]),
        cafile=str(paths["cafile"]),
        verification_flags="X509_STRICT",  # type: ignore[arg-type]
    )
    assert load_certificate_set(settings).dns_names[0] == "localhost"
    tls_server = serve(settings)

    context = client_context(
        paths["cafile"].read_bytes(), client_files=(paths["client_cert"], paths["client_key"])
    )
    assert context.check_hostname
    result = connect(tls_server.port, context, hostname="localhost")
    outcome = tls_server.outcome()
    assert outcome.ok, outcome.reason
    assert result.ok, result.error
    assert client_identity(outcome.peercert) == [CLIENT_CN]

    # Without the client certificate the same server refuses.
    anonymous = client_context(paths["cafile"].read_bytes())
    assert not connect(tls_server.port, anonymous).ok
    assert not tls_server.outcome().ok


def test_regeneration_overwrites_and_keeps_key_private(tmp_path: Path) -> None:
    first = generate_dev_set(tmp_path)
    first["keyfile"].chmod(0o644)
    old = first["certfile"].read_bytes()
    second = generate_dev_set(tmp_path)
    assert second["certfile"].read_bytes() != old
    assert stat.S_IMODE(second["keyfile"].stat().st_mode) == 0o600


def test_squid_service_line(tmp_path: Path) -> None:
    d = tmp_path.resolve()
    assert squid_service_line(tmp_path) == (
        "icap_service gicap_resp respmod_precache icaps://localhost:11344/echo "
        f"tls-cert={d}/client-cert.pem tls-key={d}/client-key.pem tls-cafile={d}/tls-cafile "
        "bypass=off"
    )
    line = squid_service_line(tmp_path, host="::1", port=21344, service="cdr")
    assert "icaps://[::1]:21344/cdr " in line
