"""c-icap-client (the reference C client) against the echo services.

Every test runs against gicap and, as a reference proving the harness, c-icap's own echo
(which offers REQMOD and RESPMOD on /echo; gicap has RESPMOD on echo, REQMOD on echo-req).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from .harness import (
    KIB,
    MIB,
    CicapClientResult,
    IcapServer,
    ServerFactory,
    cicap_client,
    payload_sha256,
    require_tool,
    sha256_file,
    write_payload,
)

pytestmark = pytest.mark.interop

# 2 MiB is above gicap's default spool_threshold (1 MiB): the body goes through a file.
SIZES = (0, 1, KIB, 100 * KIB, 2 * MIB)

# name -> (c-icap-client flags, whether a 204 is acceptable)
MODES: dict[str, tuple[tuple[str, ...], bool]] = {
    "preview": (("-w", "1024"), True),
    "preview-no204": (("-w", "1024", "-no204"), True),  # 204 inside preview is always allowed
    "nopreview": (("-nopreview",), True),
    "nopreview-no204": (("-nopreview", "-no204"), False),  # must be 200 with the body
}

_counter = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    require_tool("c-icap-client")


def size_id(size: int) -> str:
    return (
        f"{size // MIB}MiB" if size >= MIB else f"{size // KIB}KiB" if size >= KIB else f"{size}B"
    )


def fresh_output(tmp_path: Path) -> Path:
    """c-icap-client opens -o with O_EXCL: every run needs a path that does not exist."""
    return tmp_path / f"out-{next(_counter)}.bin"


def methods(result: CicapClientResult) -> list[str]:
    return [m.strip() for m in (result.icap_header("Methods") or "").split(",") if m.strip()]


def assert_options(result: CicapClientResult, server: IcapServer, method: str) -> None:
    assert result.returncode == 0, result.output
    assert result.status_line.startswith("ICAP/1.0 200"), result.output
    assert method in methods(result), result.output
    istag = result.icap_header("ISTag") or ""
    assert len(istag) >= 3 and istag[0] == istag[-1] == '"', result.output
    assert len(istag) - 2 <= 32, f"ISTag longer than 32 characters: {istag}"
    assert (result.icap_header("Preview") or "").isdigit(), result.output
    assert "204" in [a.strip() for a in (result.icap_header("Allow") or "").split(",")]
    assert result.icap_header("Transfer-Preview") == "*", result.output
    assert int(result.icap_header("Options-TTL") or "0") > 0, result.output
    assert result.icap_header("Encapsulated") == "null-body=0", result.output
    assert "Allow 204: Yes" in result.sections.get("OPTIONS", []), result.output
    if server.kind == "gicap":  # c-icap sends neither Max-Connections nor one method only
        assert methods(result) == [method], result.output
        assert int(result.icap_header("Max-Connections") or "0") > 0, result.output
        assert result.icap_header("Date"), result.output


def test_options_respmod_service(server: IcapServer) -> None:
    result = cicap_client(server.port, server.respmod_service)
    assert_options(result, server, "RESPMOD")


def test_options_reqmod_service(server: IcapServer) -> None:
    result = cicap_client(server.port, server.reqmod_service)
    assert_options(result, server, "REQMOD")


def assert_echoed(
    result: CicapClientResult, out: Path, size: int, allow_204: bool, start: str
) -> None:
    assert result.returncode == 0, result.output
    if result.status == 204:
        assert allow_204, f"204 although the client did not allow it:\n{result.output}"
        assert not out.exists() or out.stat().st_size == 0
        return
    assert result.status == 200, result.output
    head = result.http_head()
    assert head and head[0].startswith(start), result.output
    assert out.exists(), result.output
    assert out.stat().st_size == size
    assert sha256_file(out) == payload_sha256(size)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_respmod_echo(server: IcapServer, tmp_path: Path, size: int, mode: str) -> None:
    flags, allow_204 = MODES[mode]
    data, out = write_payload(tmp_path, size), fresh_output(tmp_path)
    result = cicap_client(
        server.port,
        server.respmod_service,
        "-f",
        str(data),
        "-o",
        str(out),
        "-resp",
        "http://origin.test/file.bin",
        *flags,
    )
    assert_echoed(result, out, size, allow_204, "HTTP/1.")


def test_respmod_istag_matches_options(server: IcapServer, tmp_path: Path) -> None:
    options = cicap_client(server.port, server.respmod_service)
    data, out = write_payload(tmp_path, KIB), fresh_output(tmp_path)
    result = cicap_client(
        server.port, server.respmod_service, "-f", str(data), "-o", str(out), "-nopreview"
    )
    assert result.icap_header("ISTag") == options.icap_header("ISTag"), result.output


def test_respmod_without_response_headers(server: IcapServer, tmp_path: Path) -> None:
    """-noreshdr: Encapsulated is just `res-body=0`, no res-hdr."""
    data, out = write_payload(tmp_path, 3 * KIB), fresh_output(tmp_path)
    result = cicap_client(
        server.port,
        server.respmod_service,
        "-f",
        str(data),
        "-o",
        str(out),
        "-noreshdr",
        "-nopreview",
        "-no204",
    )
    assert result.returncode == 0, result.output
    assert result.status == 200, result.output
    assert sha256_file(out) == payload_sha256(3 * KIB)


@pytest.mark.parametrize("mode", ["preview", "nopreview-no204"])
@pytest.mark.parametrize("size", [0, KIB, 2 * MIB], ids=size_id)
def test_reqmod_echo(server: IcapServer, tmp_path: Path, size: int, mode: str) -> None:
    flags, allow_204 = MODES[mode]
    data, out = write_payload(tmp_path, size), fresh_output(tmp_path)
    url = "http://origin.test/upload"
    result = cicap_client(
        server.port,
        server.reqmod_service,
        "-req",
        url,
        "-method",
        "POST",
        "-f",
        str(data),
        "-o",
        str(out),
        "-hx",
        "Content-Type: application/octet-stream",
        *flags,
    )
    assert_echoed(result, out, size, allow_204, f"POST {url} HTTP/1.")


def test_unknown_service_is_404(server: IcapServer) -> None:
    result = cicap_client(server.port, "no-such-service")
    assert result.status_line.startswith("ICAP/1.0 404"), result.output


# (gicap only: c-icap's echo offers REQMOD and RESPMOD on the same service)
@pytest.mark.parametrize("server", ["gicap"], indirect=True)
def test_method_not_offered_is_405(server: IcapServer, tmp_path: Path) -> None:
    data = write_payload(tmp_path, KIB)
    # c-icap-client prints error responses only in its debug output (-d 3)
    respmod_to_reqmod_service = cicap_client(
        server.port,
        server.reqmod_service,
        "-f",
        str(data),
        "-o",
        str(fresh_output(tmp_path)),
        "-d",
        "3",
    )
    assert respmod_to_reqmod_service.status == 405, respmod_to_reqmod_service.output
    reqmod_to_respmod_service = cicap_client(
        server.port,
        server.respmod_service,
        "-req",
        "http://origin.test/upload",
        "-f",
        str(data),
        "-o",
        str(fresh_output(tmp_path)),
        "-nopreview",
        "-d",
        "3",
        # c-icap-client waits for the server to close after an error status without preview
        timeout=10.0,
    )
    assert reqmod_to_respmod_service.status == 405, reqmod_to_respmod_service.output


def test_gicap_istag_is_stable_across_workers_and_restarts(gicap_server: ServerFactory) -> None:
    """Squid caches by ISTag: it must not change per worker, connection or restart."""
    tags: set[str | None] = set()
    for _ in range(2):
        srv = gicap_server(workers=2)
        for _ in range(6):  # new connection each time: spreads over both workers
            tags.add(cicap_client(srv.port, srv.respmod_service).icap_header("ISTag"))
        assert srv.stop() == 0
    assert len(tags) == 1 and None not in tags, tags
