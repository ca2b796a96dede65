"""curl -> Squid 5 -> gicap's CDR services -> an origin server: what a user sees.

Squid adapts downloads with ``resp-cdr-service`` (respmod_precache) and uploads with
``req-cdr-service`` (reqmod_precache), bypass=off, preview as gicap's OPTIONS offers it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.interop.harness import (
    LOOPBACK,
    IcapServer,
    Squid,
    curl,
    icap_service_line,
    log_tail,
    require_tool,
    start_gicap,
    start_squid,
)

pytestmark = pytest.mark.interop

FETCH_TIMEOUT = 20.0

CSV_FORMULAS = b"name,amount\r\nalice,10\r\nbob,=1+2\r\ncarol,@SUM(A1)\r\n"
CSV_REBUILT = b"name,amount\r\nalice,10\r\nbob,'=1+2\r\ncarol,'@SUM(A1)\r\n"
#: No engine rebuilds programs: blocked as "unsupported" whatever plugins are installed.
EXE_SECRET = b"SECRET-PROGRAM-CONTENT-5678"
EXE = b"MZ\x90\x00" + bytes(60) + EXE_SECRET + bytes(30000)  # ~30 KiB
TEXT = ("A plain text file, nothing active in it: ünïcödé.\n" * 800).encode()  # ~40 KiB


def large_csv() -> tuple[bytes, bytes]:
    """About 1 MiB of csv with a formula every 100th row, and the same neutralised."""
    original, rebuilt = [b"id,value,comment\n"], [b"id,value,comment\n"]
    for i in range(30000):
        line = b"%d,%d,row number %d of the large file\n" % (i, i * 3, i)
        if i % 100 == 7:
            original.append(b"%d,=B%d+1,row number %d of the large file\n" % (i, i, i))
            rebuilt.append(b"%d,'=B%d+1,row number %d of the large file\n" % (i, i, i))
        else:
            original.append(line)
            rebuilt.append(line)
    return b"".join(original), b"".join(rebuilt)


LARGE_CSV, LARGE_CSV_REBUILT = large_csv()

#: path -> (Content-Type, extra headers, body)
FILES: dict[str, tuple[str, dict[str, str], bytes]] = {
    "/report.csv": (
        "text/csv",
        {"Content-Disposition": 'attachment; filename="report.csv"'},
        CSV_FORMULAS,
    ),
    "/large.csv": ("text/csv", {}, LARGE_CSV),
    "/setup.exe": ("application/octet-stream", {}, EXE),
    "/notes.txt": ("text/plain; charset=utf-8", {"ETag": '"v1"'}, TEXT),
}


# --------------------------------------------------------------------------- origin


@dataclass
class CDROrigin:
    port: int
    #: Bodies of the POST requests received, in order.
    uploads: list[bytes] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gicap-cdr-origin/1"
    timeout = 30
    origin: CDROrigin

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _reply(self, status: int, content_type: str, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path in FILES:
            content_type, headers, body = FILES[self.path]
            self._reply(200, content_type, body, headers)
        else:
            self._reply(404, "text/plain", b"not found\n", {})

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.origin.uploads.append(body)
        answer = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        self._reply(200, "application/json", json.dumps(answer).encode(), {})


@contextlib.contextmanager
def start_cdr_origin() -> Iterator[CDROrigin]:
    origin = CDROrigin(0)
    handler = type("Handler", (_Handler,), {"origin": origin})
    httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    httpd.daemon_threads = True
    origin.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, name="cdr-origin", daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[IcapServer, Squid, CDROrigin]]:
    require_tool("squid")
    require_tool("curl")
    env = {"GICAP_CDR__WORKERS": "1"}
    with (
        start_gicap(tmp_path_factory.mktemp("gicap-cdr"), env) as gicap,
        start_cdr_origin() as origin,
        start_squid(
            [
                icap_service_line("cdr_resp", "respmod_precache", gicap.url("resp-cdr-service")),
                icap_service_line("cdr_req", "reqmod_precache", gicap.url("req-cdr-service")),
            ]
        ) as squid,
    ):
        yield gicap, squid, origin


def fetch(squid: Squid, url: str, *extra: str) -> Any:
    return curl(url, proxy=squid.proxy_url, extra=extra, timeout=FETCH_TIMEOUT)


def upload(squid: Squid, url: str, path: Path, content_type: str) -> Any:
    extra = ["--data-binary", f"@{path}", "-H", f"Content-Type: {content_type}", "-H", "Expect:"]
    return fetch(squid, url, *extra)


def file_id(headers: dict[str, str]) -> str:
    value = headers.get("x-adaptation-file-id", "")
    assert str(uuid.UUID(value)) == value, headers
    return value


def assert_block_page(result: Any, reason: str, original: bytes) -> None:
    assert result.returncode == 0, result.stderr
    assert result.status == 403, (result.headers, result.body[:300])
    assert result.headers.get("content-type", "").startswith("text/html")
    assert "x-squid-error" not in result.headers
    page = result.body.decode()
    assert f"File id: <code>{file_id(result.headers)}</code>" in page
    assert reason in page
    assert original not in result.body


# --------------------------------------------------------------------------- tests


def test_csv_download_is_rebuilt(stack: tuple[IcapServer, Squid, CDROrigin]) -> None:
    _, squid, origin = stack
    result = fetch(squid, origin.url("/report.csv"))
    assert result.returncode == 0, result.stderr
    assert result.status == 200, result.headers
    assert result.body == CSV_REBUILT
    assert result.headers["content-length"] == str(len(CSV_REBUILT))
    assert result.headers["content-disposition"] == 'attachment; filename="report.csv"'
    file_id(result.headers)


def test_program_download_is_blocked(stack: tuple[IcapServer, Squid, CDROrigin]) -> None:
    _, squid, origin = stack
    assert_block_page(fetch(squid, origin.url("/setup.exe")), "unsupported", EXE_SECRET)


def test_clean_text_download_is_byte_identical(stack: tuple[IcapServer, Squid, CDROrigin]) -> None:
    _, squid, origin = stack
    result = fetch(squid, origin.url("/notes.txt"))
    assert result.returncode == 0, result.stderr
    assert result.status == 200, result.headers
    assert result.body == TEXT
    assert result.headers.get("etag") == '"v1"'
    assert "x-adaptation-file-id" not in result.headers  # passed untouched (ICAP 204)


def test_program_upload_is_blocked(
    stack: tuple[IcapServer, Squid, CDROrigin], tmp_path: Path
) -> None:
    _, squid, origin = stack
    path = tmp_path / "setup.exe"
    path.write_bytes(EXE)
    before = len(origin.uploads)
    result = upload(squid, origin.url("/upload"), path, "application/octet-stream")
    assert_block_page(result, "unsupported", EXE_SECRET)
    assert len(origin.uploads) == before, "the blocked upload reached the origin"


def test_csv_upload_reaches_the_origin_rebuilt(
    stack: tuple[IcapServer, Squid, CDROrigin], tmp_path: Path
) -> None:
    _, squid, origin = stack
    path = tmp_path / "report.csv"
    path.write_bytes(CSV_FORMULAS)
    result = upload(squid, origin.url("/upload"), path, "text/csv")
    assert result.returncode == 0, result.stderr
    assert result.status == 200, (result.headers, result.body[:300])
    assert origin.uploads[-1] == CSV_REBUILT
    assert json.loads(result.body)["length"] == len(CSV_REBUILT)


def test_multipart_upload_has_its_csv_part_rebuilt(
    stack: tuple[IcapServer, Squid, CDROrigin], tmp_path: Path
) -> None:
    _, squid, origin = stack
    sheet, notes = tmp_path / "report.csv", tmp_path / "notes.txt"
    sheet.write_bytes(CSV_FORMULAS)
    notes.write_bytes(TEXT)
    form = ["-F", "comment==1+1 stays", "-F", f"sheet=@{sheet};type=text/csv"]
    form += ["-F", f"notes=@{notes};type=text/plain", "-H", "Expect:"]
    result = fetch(squid, origin.url("/upload"), *form)
    assert result.returncode == 0, result.stderr
    assert result.status == 200, (result.headers, result.body[:300])
    received = origin.uploads[-1]
    assert CSV_REBUILT in received and CSV_FORMULAS not in received
    assert TEXT in received and b"=1+1 stays" in received


@pytest.mark.xfail(
    strict=False,
    reason="Squid 5.7 bug 5352 (fixed in later Squid, PRs #1777/#2065): with preview, the "
    "64 KiB virgin BodyPipe fills while Squid waits for the 100 Continue; Squid then stops "
    "reading from the origin for good (do_next_read stays false), so gicap never receives "
    "more than ~64 KiB of a file it must see whole",
)
def test_large_csv_download_is_rebuilt(stack: tuple[IcapServer, Squid, CDROrigin]) -> None:
    gicap, squid, origin = stack
    started = time.monotonic()
    # A short timeout: when Squid stalls, only its read_timeout (15 min) would end it.
    result = curl(origin.url("/large.csv"), proxy=squid.proxy_url, timeout=8)
    seconds = time.monotonic() - started
    context = (
        f"after {seconds:.1f} s: curl rc={result.returncode} {result.stderr}\n"
        f"--- cache.log ---\n{log_tail(squid.cache_log, 4000)}\n"
        f"--- gicap ---\n{log_tail(gicap.log_path, 4000)}"
    )
    assert result.returncode == 0, context
    assert result.status == 200, context
    assert result.body == LARGE_CSV_REBUILT, context
    file_id(result.headers)
