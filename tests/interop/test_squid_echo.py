"""curl -> Squid -> (ICAP echo services) -> origin, with real Squid and curl.

Every test runs against gicap and, as a reference proving the harness, c-icap's echo.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import (
    FILE_SIZES,
    KIB,
    MIB,
    SERVER_KINDS,
    IcapServer,
    Origin,
    ServerFactory,
    Squid,
    SquidFactory,
    curl,
    curl_upload,
    icap_service_line,
    payload_sha256,
    require_tool,
    sha256_file,
    start_squid,
    write_payload,
)

pytestmark = pytest.mark.interop

FETCH_TIMEOUT = 30.0  # a 20 MiB fetch takes about a second when all is well


def echo_services(server: IcapServer) -> list[str]:
    return [
        icap_service_line("svc_resp", "respmod_precache", server.url(server.respmod_service)),
        icap_service_line("svc_req", "reqmod_precache", server.url(server.reqmod_service)),
    ]


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    require_tool("squid")
    require_tool("curl")


# Squid previews only when OPTIONS offers it, and then gets 204s from the echo services.
# Without preview it allows 204 only for bodies under 64 KiB: larger ones must come back
# whole in a 200 -- the streaming path.
SQUID_PREVIEW = {"preview": [], "nopreview": ["icap_preview_enable off"]}


@pytest.fixture(scope="module", params=SQUID_PREVIEW)
def proxy(request: pytest.FixtureRequest, server: IcapServer, origin: Origin) -> Iterator[Squid]:
    """One Squid per server kind and preview setting, using both echo services, bypass=off."""
    with start_squid(echo_services(server), extra_conf=SQUID_PREVIEW[request.param]) as sq:
        yield sq


def size_id(size: int) -> str:
    return (
        f"{size // MIB}MiB" if size >= MIB else f"{size // KIB}KiB" if size >= KIB else f"{size}B"
    )


@pytest.mark.parametrize("size", FILE_SIZES, ids=size_id)
def test_download_through_squid_is_byte_identical(
    proxy: Squid, origin: Origin, tmp_path: Path, size: int
) -> None:
    out = tmp_path / "out.bin"
    result = curl(origin.file_url(size), proxy=proxy.proxy_url, output=out, timeout=FETCH_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.status == 200, result.headers
    assert "x-squid-error" not in result.headers
    assert out.stat().st_size == size
    assert sha256_file(out) == payload_sha256(size)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [KIB, 5 * MIB], ids=size_id)
def test_upload_through_squid_is_byte_identical(
    proxy: Squid, origin: Origin, tmp_path: Path, size: int, chunked: bool
) -> None:
    data = write_payload(tmp_path, size)
    result = curl_upload(
        origin.upload_url, data, proxy=proxy.proxy_url, chunked=chunked, timeout=FETCH_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    assert result.status == 200, (result.headers, result.body[:500])
    received = json.loads(result.body)
    assert received["length"] == size
    assert received["sha256"] == payload_sha256(size)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_squid_really_uses_the_icap_service(
    kind: str,
    gicap_server: ServerFactory,
    cicap_server: ServerFactory,
    squid: SquidFactory,
    origin: Origin,
    tmp_path: Path,
) -> None:
    """Works while the ICAP server runs; with it stopped (bypass=off) Squid answers with
    ERR_ICAP_FAILURE; Squid's icap.log shows the REQMOD and RESPMOD transactions."""
    server = gicap_server() if kind == "gicap" else cicap_server()
    sq = squid(echo_services(server))
    url = origin.file_url(KIB)

    ok = curl(url, proxy=sq.proxy_url, output=tmp_path / "ok.bin", timeout=FETCH_TIMEOUT)
    assert ok.status == 200, ok.headers
    assert sha256_file(tmp_path / "ok.bin") == payload_sha256(KIB)

    rc = server.stop()  # Squid still holds an idle persistent ICAP connection here
    if kind == "gicap":
        assert rc == 0, f"gicap exit status {rc} after SIGTERM ({server.stop_seconds:.1f}s)"

    failed = curl(url, proxy=sq.proxy_url, output=tmp_path / "failed.bin", timeout=FETCH_TIMEOUT)
    assert failed.status == 500, failed.headers
    assert failed.headers.get("x-squid-error", "").startswith("ERR_ICAP_FAILURE"), failed.headers

    sq.stop()  # flushes icap.log
    icap_log = sq.icap_log.read_text()
    for method, service in (("REQMOD", server.reqmod_service), ("RESPMOD", server.respmod_service)):
        assert any(
            method in line and server.url(service) in line for line in icap_log.splitlines()
        ), icap_log
