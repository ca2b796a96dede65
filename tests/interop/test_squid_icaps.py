"""curl -> Squid -> icaps:// (Secure ICAP, mutual TLS) -> gicap echo -> origin.

Squid (squid-openssl) presents a client certificate to gicap's secure port; without one,
or with one from a CA gicap does not trust, the handshake is refused and Squid (bypass=off)
answers with its ERR_ICAP_FAILURE page.  Squid's icaps URIs use the host name
`localhost`: with an IP address as the host Squid aborts the TLS handshake.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from gicap.tls.devcerts import generate_dev_set

from .harness import (
    KIB,
    MIB,
    IcapServer,
    Origin,
    ServerFactory,
    Squid,
    SquidFactory,
    curl,
    curl_upload,
    free_port,
    icap_service_line,
    payload_sha256,
    require_tool,
    sha256_file,
    write_payload,
)

pytestmark = pytest.mark.interop

FETCH_TIMEOUT = 30.0
LOG_WAIT = 3.0  # gicap flushes its transaction log every 0.5 s
SQUID_PREVIEW = {"preview": [], "nopreview": ["icap_preview_enable off"]}
DOWNLOAD_SIZES = (0, KIB, 100 * KIB, 20 * MIB)
UPLOAD_SIZE = MIB


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    require_tool("squid")
    require_tool("curl")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """gicap's CA, server certificate and a client certificate it trusts."""
    return generate_dev_set(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Another CA with its own client certificate, which gicap does not trust."""
    return generate_dev_set(tmp_path_factory.mktemp("foreign-pki"))


@dataclass
class SecureGicap:
    server: IcapServer
    secure_port: int

    def url(self, service: str) -> str:
        return f"icaps://localhost:{self.secure_port}/{service}"

    def wait_for_log(self, found: Callable[[str], bool], timeout: float = LOG_WAIT) -> str:
        """Poll gicap's log until `found(text)` holds; returns the log (asserts on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.server.log_path.read_text("utf-8", "replace")
            if found(text) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert found(text), text[-5000:]
        return text


@pytest.fixture
def secure_gicap(gicap_server: ServerFactory, pki: dict[str, Path]) -> SecureGicap:
    """gicap with its plain port (for the readiness check) and a secure port requiring
    client certificates from `pki`'s CA."""
    secure_port = free_port()
    server = gicap_server(
        {
            "GICAP_SERVER__SECURE_PORT": str(secure_port),
            "GICAP_CERTIFICATE__CERTFILE": str(pki["certfile"]),
            "GICAP_CERTIFICATE__KEYFILE": str(pki["keyfile"]),
            "GICAP_CERTIFICATE__CAFILE": str(pki["cafile"]),
        }
    )
    gicap = SecureGicap(server, secure_port)
    gicap.wait_for_log(lambda text: f"Secure ICAP listening on port {secure_port}" in text)
    return gicap


def start_icaps_squid(
    squid: SquidFactory,
    gicap: SecureGicap,
    ca: Path,
    client: Mapping[str, Path] | None,
    extra_conf: Sequence[str] = (),
) -> Squid:
    """Squid with icaps:// RESPMOD and REQMOD echo services (bypass=off) trusting `ca`
    for gicap's server certificate and presenting `client` ({"client_cert",
    "client_key"}) as its certificate, if given."""
    files = {"icap-ca.pem": ca}
    tls = {"tls-cafile": "{files}/icap-ca.pem"}
    if client is not None:
        files |= {"client-cert.pem": client["client_cert"], "client-key.pem": client["client_key"]}
        tls |= {"tls-cert": "{files}/client-cert.pem", "tls-key": "{files}/client-key.pem"}
    services = [
        icap_service_line("svc_resp", "respmod_precache", gicap.url("echo"), **tls),
        icap_service_line("svc_req", "reqmod_precache", gicap.url("echo-req"), **tls),
    ]
    return squid(services, extra_conf=extra_conf, files=files)


def size_id(size: int) -> str:
    return (
        f"{size // MIB}MiB" if size >= MIB else f"{size // KIB}KiB" if size >= KIB else f"{size}B"
    )


@pytest.mark.parametrize("preview", SQUID_PREVIEW)
def test_squid_over_mutual_tls_is_byte_identical(
    preview: str,
    secure_gicap: SecureGicap,
    squid: SquidFactory,
    pki: dict[str, Path],
    origin: Origin,
    tmp_path: Path,
) -> None:
    sq = start_icaps_squid(squid, secure_gicap, pki["cafile"], pki, SQUID_PREVIEW[preview])

    for size in DOWNLOAD_SIZES:
        out = tmp_path / f"out-{size}.bin"
        result = curl(origin.file_url(size), proxy=sq.proxy_url, output=out, timeout=FETCH_TIMEOUT)
        assert result.returncode == 0, (size_id(size), result.stderr)
        assert result.status == 200, (size_id(size), result.headers)
        assert "x-squid-error" not in result.headers
        assert out.stat().st_size == size, size_id(size)
        assert sha256_file(out) == payload_sha256(size), size_id(size)

    data = write_payload(tmp_path, UPLOAD_SIZE)
    uploaded = curl_upload(origin.upload_url, data, proxy=sq.proxy_url, timeout=FETCH_TIMEOUT)
    assert uploaded.returncode == 0, uploaded.stderr
    assert uploaded.status == 200, (uploaded.headers, uploaded.body[:500])
    received = json.loads(uploaded.body)
    assert received["length"] == UPLOAD_SIZE
    assert received["sha256"] == payload_sha256(UPLOAD_SIZE)

    # The transactions reached gicap's secure listener as icaps:// requests.
    wanted = [f"REQMOD {secure_gicap.url('echo-req')} ->", f"RESPMOD {secure_gicap.url('echo')} ->"]
    secure_gicap.wait_for_log(lambda text: all(w in text for w in wanted))


@pytest.mark.parametrize("client", ["no-certificate", "foreign-ca"])
def test_squid_without_a_trusted_client_certificate_gets_no_service(
    client: str,
    secure_gicap: SecureGicap,
    squid: SquidFactory,
    pki: dict[str, Path],
    foreign_pki: dict[str, Path],
    origin: Origin,
    tmp_path: Path,
) -> None:
    """No client certificate, or one from another CA: gicap refuses the handshake and
    Squid (bypass=off) answers with ERR_ICAP_FAILURE instead of the file."""
    certificate = None if client == "no-certificate" else foreign_pki
    sq = start_icaps_squid(squid, secure_gicap, pki["cafile"], certificate)

    result = curl(origin.file_url(KIB), proxy=sq.proxy_url, output=tmp_path / "out.bin")
    assert result.status == 500, result.headers
    assert result.headers.get("x-squid-error", "").startswith("ERR_ICAP_FAILURE"), result.headers

    def refused(text: str) -> bool:
        return any("TLS handshake with" in ln and "refused" in ln for ln in text.splitlines())

    text = secure_gicap.wait_for_log(refused)
    assert " icaps://" not in text, "a transaction got through the secure port"
