"""Large downloads through Squid 5.7 -> gicap ``resp-cdr-service``, with the delay-pool
workaround for Squid's RESPMOD read stall.

Debian 12's Squid 5.7 (with its security backports) parks its origin read as a
"deferred read" whenever the 64 KiB virgin body pipe to the ICAP service is full, and
only two things ever resume such a read: a store client reading more of the (adapted)
response, or a delay pool's once-a-second refill.  A CDR service answers only once it
has the whole file, and while the preview is pending Squid itself keeps every byte, so
nothing reads the adapted response and the download stalls after ~64 KiB for good
(Squid bug 5352; see the xfail in test_squid_cdr.py).

A delay pool that every client belongs to, with a rate high enough never to throttle,
makes the deferred read go to the pool's queue, which Squid kicks every second: the
transfer resumes after at most one second.  These tests run the configuration the
README recommends and prove that 1 MiB and 20 MiB csv downloads come back rebuilt and
that a large program is still blocked.
"""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.interop.harness import (
    LOOPBACK,
    MIB,
    IcapServer,
    Squid,
    curl,
    icap_service_line,
    log_tail,
    require,
    require_tool,
    start_gicap,
    start_squid,
)

pytestmark = pytest.mark.interop

#: The squid.conf lines of the workaround (README, "Squid 5.7"): one class-1 pool that
#: every client is in, 100 MB/s (800 Mbit/s) for all clients together.
DELAY_POOL_WORKAROUND = (
    "delay_pools 1",
    "delay_class 1 1",
    "delay_parameters 1 100000000/100000000",
    "delay_access 1 allow all",
)

FETCH_TIMEOUT = 90.0
EXE_SECRET = b"SECRET-PROGRAM-CONTENT-5678"


def large_csv(size: int) -> tuple[bytes, bytes]:
    """About `size` bytes of csv with a formula every 100th row, and the same neutralised."""
    original, rebuilt = [b"id,value,comment\n"], [b"id,value,comment\n"]
    total, i = len(original[0]), 0
    while total < size:
        if i % 100 == 7:
            original.append(b"%d,=B%d+1,row number %d of the large file\n" % (i, i, i))
            rebuilt.append(b"%d,'=B%d+1,row number %d of the large file\n" % (i, i, i))
        else:
            line = b"%d,%d,row number %d of the large file\n" % (i, i * 3, i)
            original.append(line)
            rebuilt.append(line)
        total += len(original[-1])
        i += 1
    return b"".join(original), b"".join(rebuilt)


CSV_1M = large_csv(MIB)
CSV_20M = large_csv(20 * MIB)
EXE_20M = b"MZ\x90\x00" + bytes(60) + EXE_SECRET + bytes(20 * MIB)

#: path -> (Content-Type, body)
FILES: dict[str, tuple[str, bytes]] = {
    "/1m.csv": ("text/csv", CSV_1M[0]),
    "/20m.csv": ("text/csv", CSV_20M[0]),
    "/20m.exe": ("application/octet-stream", EXE_20M),
}


@dataclass
class Origin:
    port: int

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        content_type, body = FILES.get(self.path, ("text/plain", b"not found\n"))
        self.send_response(200 if self.path in FILES else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def start_large_origin() -> Iterator[Origin]:
    httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="cdr-large-origin", daemon=True)
    thread.start()
    try:
        yield Origin(int(httpd.server_address[1]))
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def squid_has_delay_pools(squid: str) -> bool:
    version = subprocess.run([squid, "-v"], capture_output=True, text=True, timeout=10).stdout
    return "--enable-delay-pools" in version


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[IcapServer, Squid, Origin]]:
    squid = require_tool("squid")
    require_tool("curl")
    require(squid_has_delay_pools(squid), "Squid built with delay pools (--enable-delay-pools)")
    with (
        start_gicap(tmp_path_factory.mktemp("gicap-cdr-large"), {"GICAP_CDR__WORKERS": "1"}) as g,
        start_large_origin() as origin,
        start_squid(
            [icap_service_line("cdr_resp", "respmod_precache", g.url("resp-cdr-service"))],
            extra_conf=DELAY_POOL_WORKAROUND,
        ) as sq,
    ):
        yield g, sq, origin


def fetch(stack: tuple[IcapServer, Squid, Origin], path: str) -> tuple[Any, str]:
    gicap, squid, origin = stack
    started = time.monotonic()
    result = curl(origin.url(path), proxy=squid.proxy_url, timeout=FETCH_TIMEOUT)
    context = (
        f"{path} after {time.monotonic() - started:.1f} s: curl rc={result.returncode} "
        f"{result.stderr}\n--- cache.log ---\n{log_tail(squid.cache_log, 4000)}\n"
        f"--- gicap ---\n{log_tail(gicap.log_path, 4000)}"
    )
    return result, context


def file_id(headers: dict[str, str]) -> str:
    value = headers.get("x-adaptation-file-id", "")
    assert str(uuid.UUID(value)) == value, headers
    return value


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/1m.csv", CSV_1M[1]), ("/20m.csv", CSV_20M[1])],
    ids=["1MiB", "20MiB"],
)
def test_large_csv_download_is_rebuilt(
    stack: tuple[IcapServer, Squid, Origin], path: str, expected: bytes
) -> None:
    result, context = fetch(stack, path)
    assert result.returncode == 0, context
    assert result.status == 200, context
    assert result.body == expected, context
    assert result.headers["content-length"] == str(len(expected))
    file_id(result.headers)


def test_repeated_downloads_on_reused_icap_connections(
    stack: tuple[IcapServer, Squid, Origin],
) -> None:
    """Later transactions run on Squid's persistent ICAP connections, where Squid keeps
    the whole preview-time body for a possible retry: they must not stall either."""
    ids = set()
    for _ in range(3):
        result, context = fetch(stack, "/1m.csv")
        assert result.returncode == 0, context
        assert result.status == 200, context
        assert result.body == CSV_1M[1], context
        ids.add(file_id(result.headers))
    assert len(ids) == 3


def test_large_program_download_is_blocked(stack: tuple[IcapServer, Squid, Origin]) -> None:
    result, context = fetch(stack, "/20m.exe")
    assert result.returncode == 0, context
    assert result.status == 403, context
    assert result.headers.get("content-type", "").startswith("text/html")
    assert "unsupported" in result.body.decode()
    assert EXE_SECRET not in result.body
    file_id(result.headers)
