"""The CDR services end to end: a real gicap server process, real disarm workers, the
real gicap-text engine, spoken to over ICAP with gicap's own client.

``resp-cdr-service`` (RESPMOD) and ``req-cdr-service`` (REQMOD): rebuilt files, files
passed unmodified, block pages, relays decided at preview, policy profiles,
Content-Encoding, size limits, multipart uploads, and engines that raise, hang or crash
(a test plugin installed with pip, see ``engine_plugin/``).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gicap.client import ICAPClient, ICAPResult
from gicap.protocol.headers import Headers, parse_header_lines, split_lines
from tests.cdr.test_job_polyglot import _bmp_holding
from tests.support import GicapProcess

Start = Callable[..., GicapProcess]

HERE = Path(__file__).resolve().parent
KIB = 1024
MIB = 1024 * KIB
MAX_FILE_SIZE = MIB
PREVIEW = 4096
#: Every server here: one disarm worker (enough, and quick to start), a 1 MiB file limit,
#: and a strict profile that disallows csv formulas (the default profile neutralises them).
BASE_ENV = {
    "GICAP_CDR__WORKERS": "1",
    "GICAP_CDR__MAX_FILE_SIZE": str(MAX_FILE_SIZE),
    "GICAP_POLICY__STRICT__TEXT__FORMULAS": "disallow",
}
RELAY_ENV = {
    **BASE_ENV,
    "GICAP_POLICY__DEFAULT__UNSUPPORTED": "relay",
    "GICAP_POLICY__DEFAULT__OVERSIZE": "relay",
    "GICAP_POLICY__DEFAULT__UNPROCESSABLE": "relay",
}

# ------------------------------------------------------------------------- test files

CSV_FORMULAS = (
    b"name,amount,note\r\n"
    b"alice,10,plain\r\n"
    b'bob,=1+2,"=HYPERLINK(""http://evil.example"")"\r\n'
    b"carol,@SUM(A1),-3\r\n"
)
CSV_FORMULAS_REBUILT = (
    b"name,amount,note\r\n"
    b"alice,10,plain\r\n"
    b'bob,\'=1+2,"\'=HYPERLINK(""http://evil.example"")"\r\n'
    b"carol,'@SUM(A1),'-3\r\n"
)


def big_csv(rows: int) -> tuple[bytes, bytes]:
    """A csv with a formula every 10th row, and the same csv neutralised."""
    original, rebuilt = [b"id,value,comment\n"], [b"id,value,comment\n"]
    for i in range(rows):
        if i % 10 == 3:
            original.append(b"%d,=A%d*2,row %d\n" % (i, i, i))
            rebuilt.append(b"%d,'=A%d*2,row %d\n" % (i, i, i))
        else:
            line = b"%d,%d,row %d\n" % (i, i * 7, i)
            original.append(line)
            rebuilt.append(line)
    return b"".join(original), b"".join(rebuilt)


BIG_CSV, BIG_CSV_REBUILT = big_csv(400)  # ~7 KiB: more than a preview
CLEAN_CSV = b"id,name,city\n1,alice,Paris\n2,bob,Lyon\n" * 200  # ~8 KiB
PLAIN_TEXT = ("Hello, world.\nNothing active here: just text, été.\n" * 150).encode()
#: A file no engine handles: an executable (CDR never rebuilds programs), so the policy's
#: "unsupported" rule applies whatever engine plugins are installed.
EXE_SECRET = b"SECRET-PROGRAM-CONTENT-1234"
EXE = b"\x7fELF\x02\x01\x01" + bytes(57) + EXE_SECRET + bytes(6000)
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>page</title></head><body>\n"
    + b"<p>Some paragraph of a web page.</p>\n" * 200
    + b"</body></html>\n"
)
TRIGGER = b"TEST-ENGINE-TRIGGER"  # the test engine plugin misbehaves on csv files with it
CSV_TRIGGER = b"a,b\n=1+1," + TRIGGER + b"\n"


def res_head(
    body: bytes | None,
    content_type: str,
    *,
    status: str = "200 OK",
    extra: str = "",
) -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body is not None else ""
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{length}{extra}\r\n").encode()


def saved_as(name: str) -> str:
    """The extra header of a download saved under ``name``."""
    return f'Content-Disposition: attachment; filename="{name}"\r\n'


def page_request(url: str, destination: str) -> bytes:
    """The request of what a page uses (``Sec-Fetch-Dest``: script, image...)."""
    host = url.split("/")[2]
    return f"GET {url} HTTP/1.1\r\nHost: {host}\r\nSec-Fetch-Dest: {destination}\r\n\r\n".encode()


def req_head(body: bytes, content_type: str, *, method: str = "POST") -> bytes:
    return (
        f"{method} http://origin.example/upload HTTP/1.1\r\nHost: origin.example\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()


STALE = 'ETag: "abc123"\r\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\nDigest: sha-256=AAAA\r\n'

# ------------------------------------------------------------------------- helpers


def http(raw: bytes) -> tuple[str, Headers]:
    """The start line and headers of an encapsulated HTTP head."""
    lines = split_lines(raw)
    assert lines, "no encapsulated HTTP head"
    return lines[0].decode("latin-1"), parse_header_lines(lines[1:])


def file_id_of(headers: Headers) -> str:
    value = headers.get("X-Adaptation-File-Id") or ""
    assert str(uuid.UUID(value)) == value, f"not a UUID: {value!r}"
    return value


def assert_rebuilt(r: ICAPResult, expected: bytes, content_type: str = "text/csv") -> str:
    assert r.status == 200, (r.status, r.reason, r.headers.get("X-Error"))
    assert not r.http_request
    start, h = http(r.http_response)
    assert start == "HTTP/1.1 200 OK"
    assert r.body == expected
    assert h.get("Content-Length") == str(len(expected))
    for stale in ("ETag", "Content-MD5", "Digest", "Content-Encoding", "Transfer-Encoding"):
        assert h.get(stale) is None, stale
    assert h.get("Content-Type") == content_type
    assert "ICAP/1.0 gicap" in (h.get("Via") or "")
    return file_id_of(h)


def assert_blocked(
    r: ICAPResult, *reasons: str, original: bytes = EXE_SECRET, reqmod: bool = False
) -> str:
    """An HTTP 403 block page naming the file id (the header's) and the reason."""
    assert r.status == 200, (r.status, r.reason, r.headers.get("X-Error"))
    assert not r.http_request, "a blocked message is answered with a response only"
    start, h = http(r.http_response)
    assert start.split(" ", 2)[1] == "403", start
    assert (h.get("Content-Type") or "").startswith("text/html")
    assert r.body is not None and h.get("Content-Length") == str(len(r.body))
    page = r.body.decode()
    file_id = file_id_of(h)
    assert f"File id: <code>{file_id}</code>" in page
    for reason in reasons:
        assert reason in page, (reason, page)
    assert original not in r.body
    return file_id


def assert_untouched(r: ICAPResult, head: bytes, body: bytes, allow_204: bool) -> None:
    """ICAP 204, or (when 204 is not allowed) the original message unchanged."""
    if allow_204:
        assert r.status == 204, (r.status, r.http_response, (r.body or b"")[:300])
        return
    assert r.status == 200, (r.status, r.reason, r.headers.get("X-Error"))
    assert r.http_response == head
    assert r.body == body


def log_line(proc: GicapProcess, file_id: str, timeout: float = 3) -> str:
    """The transaction log line naming ``file_id`` (the log is flushed every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        for line in proc.log().splitlines():
            if "gicap.transaction:" in line and f"file_id={file_id}" in line:
                return line
        if time.monotonic() > deadline:
            pytest.fail(f"no transaction log line with file_id={file_id}:\n{proc.log()}")
        time.sleep(0.1)


def leftovers(spool: Path) -> list[str]:
    """What the server left in its spool directory besides its own log."""
    return sorted(p.name for p in spool.iterdir() if not p.name.endswith(".log"))


def start_module_server(
    factory: pytest.TempPathFactory, name: str, env: dict[str, str]
) -> Iterator[GicapProcess]:
    proc = GicapProcess(factory.mktemp(name), env).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GicapProcess]:
    """The default policy: unsupported, unprocessable and oversize files are blocked."""
    yield from start_module_server(tmp_path_factory, "cdr-default", BASE_ENV)


@pytest.fixture(scope="module")
def relay_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GicapProcess]:
    """Unsupported, unprocessable and oversize files relayed instead."""
    yield from start_module_server(tmp_path_factory, "cdr-relay", RELAY_ENV)


def resp(proc: GicapProcess, query: str = "") -> ICAPClient:
    return ICAPClient(f"{proc.url}/resp-cdr-service{query}", timeout=30)


def req(proc: GicapProcess, query: str = "") -> ICAPClient:
    return ICAPClient(f"{proc.url}/req-cdr-service{query}", timeout=30)


# ------------------------------------------------------------------------- RESPMOD


@pytest.mark.parametrize("allow_204", [True, False], ids=["allow204", "no204"])
@pytest.mark.parametrize(
    ("body", "expected", "preview", "continued"),
    [
        (CSV_FORMULAS, CSV_FORMULAS_REBUILT, None, False),
        (CSV_FORMULAS, CSV_FORMULAS_REBUILT, PREVIEW, False),  # all of it in the preview
        (BIG_CSV, BIG_CSV_REBUILT, PREVIEW, True),  # 100 Continue, then the rest
        (BIG_CSV, BIG_CSV_REBUILT, 0, True),
    ],
    ids=["small-nopreview", "small-preview-ieof", "big-preview", "preview0"],
)
def test_csv_with_formulas_is_rebuilt(
    srv: GicapProcess,
    body: bytes,
    expected: bytes,
    preview: int | None,
    continued: bool,
    allow_204: bool,
) -> None:
    head = res_head(body, "text/csv", extra=STALE + "Cache-Control: max-age=60\r\n")
    with resp(srv) as c:
        r = c.respmod(body, res_head=head, preview=preview, allow_204=allow_204)
    file_id = assert_rebuilt(r, expected)
    assert r.continued is continued
    assert http(r.http_response)[1].get("Cache-Control") == "max-age=60"
    line = log_line(srv, file_id)
    assert "outcome=rebuilt" in line and "type=csv" in line
    assert "actions=formulas:neutralised" in line


@pytest.mark.parametrize("allow_204", [True, False], ids=["allow204", "no204"])
@pytest.mark.parametrize("preview", [None, PREVIEW, 0], ids=["nopreview", "preview", "preview0"])
@pytest.mark.parametrize(
    ("body", "content_type"),
    [(CLEAN_CSV, "text/csv"), (PLAIN_TEXT, "text/plain; charset=utf-8"), (b"x,y\n1,2\n", "")],
    ids=["csv", "text", "tiny-csv"],
)
def test_clean_file_passes_unmodified(
    srv: GicapProcess, body: bytes, content_type: str, preview: int | None, allow_204: bool
) -> None:
    head = res_head(body, content_type or "application/octet-stream", extra=STALE)
    with resp(srv) as c:
        r = c.respmod(body, res_head=head, preview=preview, allow_204=allow_204)
    # A 204 is allowed by Allow: 204, or while still in the preview (the whole body in it).
    in_preview = preview is not None and len(body) <= preview
    assert_untouched(r, head, body, allow_204 or in_preview)
    assert r.continued is (preview is not None and not in_preview)


@pytest.mark.parametrize("preview", [None, PREVIEW], ids=["nopreview", "preview"])
def test_file_without_an_engine_is_blocked(srv: GicapProcess, preview: int | None) -> None:
    head = res_head(EXE, "application/octet-stream", extra=saved_as("x"))
    with resp(srv) as c:
        r = c.respmod(EXE, res_head=head, preview=preview)
    file_id = assert_blocked(r, "unsupported", "no engine handles elf files")
    assert "Detected type: <code>elf</code>" in (r.body or b"").decode()
    line = log_line(srv, file_id)
    assert "outcome=blocked" in line and "type=elf" in line and "engine=unsupported" in line


@pytest.mark.parametrize("allow_204", [True, False], ids=["allow204", "no204"])
def test_unsupported_file_relayed_when_the_policy_says_so(
    relay_srv: GicapProcess, allow_204: bool
) -> None:
    head = res_head(EXE, "application/octet-stream")
    with resp(relay_srv) as c:
        # Known at preview: relayed at once, without 100 Continue and without the rest.
        r = c.respmod(EXE, res_head=head, preview=PREVIEW, allow_204=allow_204)
        assert r.status == 204 and not r.continued
        r = c.respmod(EXE, res_head=head, allow_204=allow_204)
        assert_untouched(r, head, EXE, allow_204)


SCRIPT = b'var s = new ActiveXObject("WScript.Shell"); s.Run("calc.exe");\n'


def test_script_saved_under_a_script_name_is_blocked(srv: GicapProcess) -> None:
    """Windows Script Host runs a downloaded .js when it is opened; a page loads its
    scripts by Content-Type, and those pass."""
    download = res_head(SCRIPT, "application/octet-stream", extra=saved_as("invoice.js"))
    with resp(srv) as c:
        r = c.respmod(SCRIPT, res_head=download, preview=PREVIEW)
        file_id = assert_blocked(r, "a script a desktop runs", original=b"ActiveXObject")
        page_script = c.respmod(SCRIPT, res_head=res_head(SCRIPT, "text/javascript"))
        assert page_script.status == 204
    assert "type=script" in log_line(srv, file_id)


@pytest.mark.parametrize(
    ("content_type", "disposition", "url"),
    [
        # (found by review) what browsers save under a script's name
        ("text/plain", "download; filename=invoice.js", "/d?id=1"),
        ("application/octet-stream", "inline; filename=invoice.js", "/d?id=1"),
        ("application/octet-stream", "", "/files/invoice.js"),
        ("text/plain", "attachment", "/files/invoice.js?x=1"),
        ("text/javascript", "attachment; filename=invoice", "/d?id=1"),
        # (found by a second review) as browsers read headers and URLs
        ("text/plain", "attachment, filename=invoice.js", "/d?id=1"),
        ("application/octet-stream", "filename=invoice.js", "/d?id=1"),
        ("text/plain", 'attachment; filename="invoice.js" (Q3)', "/d?id=1"),
        ("text/plain", "attachment; filename*=UTF-8''invoice.js%00.txt", "/d?id=1"),
        ("text/plain, application/octet-stream", "", "/files/invoice.js"),
        ("application/x-unknown", "", "/files/invoice.js"),
        ("application/octet-stream", "", "/dl/invoice.js;jsessionid=ABC"),
        # (found by a fourth review) types a browser cannot show: it saves them
        ("image/x-foo", "", "/files/invoice.js"),
        ("image/tiff", "", "/files/invoice.js"),
        ("font/ttf", "", "/files/invoice.js"),
        ("application/wasm", "", "/files/invoice.js"),
        ("application/vnd.ms-fontobject", "", "/files/invoice.js"),
        ("text/rtf", "", "/files/invoice.js"),
        ("text/x-vcalendar", "", "/files/invoice.js"),
        ("audio/x-foo", "", "/files/invoice.js"),
    ],
)
def test_downloads_saved_as_scripts_are_blocked(
    srv: GicapProcess, content_type: str, disposition: str, url: str
) -> None:
    extra = f"Content-Disposition: {disposition}\r\n" if disposition else ""
    head = res_head(SCRIPT, content_type, extra=extra)
    request = f"GET http://origin.example{url} HTTP/1.1\r\nHost: origin.example\r\n\r\n"
    with resp(srv) as c:
        r = c.respmod(SCRIPT, res_head=head, req_head=request.encode(), preview=PREVIEW)
    assert_blocked(r, "a script a desktop runs", original=b"ActiveXObject")


@pytest.mark.parametrize("url", ["http://[::1/files/invoice.js", "//a]/files/invoice.js"])
def test_a_url_with_an_unbalanced_bracket_still_names_the_file(srv: GicapProcess, url: str) -> None:
    """(found by a review) A URL the URL parser refuses (an unbalanced "[" or "]" in
    its host) was a traceback and an ICAP 500; its path still names the file."""
    head = res_head(SCRIPT, "application/octet-stream")
    request = f"GET {url} HTTP/1.1\r\nHost: origin.example\r\n\r\n".encode()
    with resp(srv) as c:
        r = c.respmod(SCRIPT, res_head=head, req_head=request, preview=PREVIEW)
    assert_blocked(r, "a script a desktop runs", original=b"ActiveXObject")
    assert "Traceback" not in srv.log()


def test_what_a_page_uses_is_never_a_saved_file(srv: GicapProcess) -> None:
    """A script a page loads (Sec-Fetch-Dest: script) runs in the page, whatever
    Content-Type a misconfigured server gives it: it is not a download to block. But
    a navigation to that address would save it, and a cache may serve this answer to
    one: it is sent again varying by Sec-Fetch-Dest (a review cached the original of
    update.hta fetched as a script, then navigated to it)."""
    body = gzip.compress(SCRIPT)
    extra = 'Cache-Control: max-age=86400\r\nETag: "v1"\r\nContent-Encoding: gzip\r\n'
    extra += "Vary: Accept-Encoding\r\n"
    head = res_head(body, "binary/octet-stream", extra=extra)
    request = page_request("http://bucket.example/static/app.js", "script")
    with resp(srv) as c:
        r = c.respmod(body, res_head=head, req_head=request, preview=PREVIEW)
    assert r.status == 200, (r.status, r.http_response)
    _, h = http(r.http_response)
    # the original as it came, with its own headers (validators, encoding)
    assert r.body == body and h.get("Content-Length") == str(len(body))
    assert h.get("ETag") == '"v1"' and h.get("Content-Encoding") == "gzip"
    assert h.get_list("Vary") == ["accept-encoding", "sec-fetch-dest"]
    # served as a script, it would be shown: nothing to vary
    head = res_head(SCRIPT, "text/javascript")
    with resp(srv) as c:
        r = c.respmod(SCRIPT, res_head=head, req_head=request, preview=PREVIEW)
    assert r.status == 204, (r.status, r.http_response)


def test_an_upload_is_a_file_whatever_its_type(srv: GicapProcess) -> None:
    """An upload's body was relayed as a web page when it was HTML served as
    text/html or text/plain: the server stored run.hta with its script."""
    page = b"<html><body><script>new ActiveXObject('WScript.Shell')</script></body></html>"
    for content_type in ("text/html", "text/plain"):
        head = req_head(page, content_type, method="PUT").replace(b"/upload", b"/share/run.hta")
        with req(srv) as c:
            r = c.reqmod(page, req_head=head, preview=PREVIEW)
        assert r.status == 200, (r.status, r.http_request)
        assert b"ActiveXObject" not in (r.body or b"")
    # an API's message that holds HTML is no HTML file (a webmail's, an editor's)
    message = b'{"subject": "hi", "html": "<html><body><p>Hello</p></body></html>"}'
    for method, path in (("POST", b"/api/send"), ("PUT", b"/api/items/7")):
        head = req_head(message, "application/json", method=method).replace(b"/upload", path)
        with req(srv) as c:
            r = c.reqmod(message, req_head=head, preview=PREVIEW)
        assert r.status == 204, (method, r.status, r.http_request)
    # a POST's address names the program that takes it, not a file
    form = b"name=alice&comment=hello"
    head = req_head(form, "application/x-www-form-urlencoded").replace(
        b"/upload", b"/cgi-bin/form.pl"
    )
    with req(srv) as c:
        r = c.reqmod(form, req_head=head, preview=PREVIEW)
    assert r.status == 204, (r.status, r.http_response)


def test_file_saved_as_csv_is_neutralised_whatever_its_content_type(srv: GicapProcess) -> None:
    """Excel opens a saved .csv as CSV: the name decides, not text/plain (one column
    of formulas is not CSV to a sniffer)."""
    body = b"=cmd|' /C calc'!A0\r\n=1+1\r\n"
    head = res_head(body, "text/plain", extra=saved_as("report.csv"))
    with resp(srv) as c:
        r = c.respmod(body, res_head=head)
    assert_rebuilt(r, b"'=cmd|' /C calc'!A0\r\n'=1+1\r\n", "text/plain")


def test_a_file_shown_inline_goes_by_its_content_type(srv: GicapProcess) -> None:
    """Shown inline, a browser renders text served as text/html as HTML whatever
    file name the disposition gives: the HTML engine cleans it."""
    page = b"Quarterly figures <script>alert(1)</script> <b>bold</b>\n"
    head = res_head(
        page, "text/html", extra='Content-Disposition: inline; filename="report.csv"\r\n'
    )
    with resp(srv) as c:
        r = c.respmod(page, res_head=head, allow_204=False)
    assert r.status == 200, (r.status, r.reason)
    assert b"<script" not in (r.body or b"") and b"<b>bold</b>" in (r.body or b"")


@pytest.mark.parametrize(
    ("content_type", "url"),
    [("application/octet-stream", "/page.html"), ("application/hta", "/update")],
)
def test_a_page_a_browser_saves_is_a_file(srv: GicapProcess, content_type: str, url: str) -> None:
    """Served as application/octet-stream, page.html is saved, then opened from disk
    with its scripts (as application/hta, Windows saves update.hta, which mshta
    runs): not relayed as a page, cleaned as a file."""
    page = HTML_PAGE.replace(b"</body>", b"<script>alert(1)</script></body>")
    head = res_head(page, content_type)
    request = f"GET http://origin.example{url} HTTP/1.1\r\nHost: origin.example\r\n\r\n"
    with resp(srv) as c:
        r = c.respmod(
            page, res_head=head, req_head=request.encode(), preview=PREVIEW, allow_204=False
        )
    assert r.status == 200, (r.status, r.reason)
    assert b"<script" not in (r.body or b"") and b"Some paragraph" in (r.body or b"")


_DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.mark.parametrize(
    ("disposition", "url"),
    [
        ('attachment; filename="report.docm"', "/d?id=1"),
        ('attachment; filename = "report.docm"', "/d?id=1"),
        ("attachment; filename*=UTF-8''report%2Edocm", "/d?id=1"),
        ("", "/files/report.docm"),
    ],
    ids=["plain", "spaces", "encoded", "address"],
)
def test_a_macro_file_rebuilt_macro_free_is_renamed(
    srv: GicapProcess, disposition: str, url: str
) -> None:
    """The rebuilt .docm is a .docx: saved as .docm, Word refuses to open it. The
    name is rewritten however the header writes it, or given when the address
    named the file."""
    from tests.plugins.test_office import build_docx

    body = build_docx(True)
    extra = f"Content-Disposition: {disposition}\r\n" if disposition else ""
    head = res_head(body, "application/vnd.ms-word.document.macroEnabled.12", extra=extra)
    request = f"GET http://origin.example{url} HTTP/1.1\r\nHost: origin.example\r\n\r\n"
    with resp(srv) as c:
        r = c.respmod(body, res_head=head, req_head=request.encode(), allow_204=False)
    assert r.status == 200, (r.status, r.reason)
    _, h = http(r.http_response)
    assert h.get("Content-Type") == _DOCX_TYPE
    names = h.get("Content-Disposition") or ""
    assert 'filename="report.docx"' in names and "docm" not in names.lower()


def test_a_relayed_type_saved_as_text_is_not_relayed_at_preview(relay_srv: GicapProcess) -> None:
    """With unsupported files relayed, an executable holding a script, saved as
    update.hta (mshta runs the script among the bytes), was relayed at preview by
    its type: it is a polyglot, judged whole and blocked, as without a preview."""
    hta = b"MZ" + bytes(100) + b"<script>new ActiveXObject('WScript.Shell')</script>\n"
    head = res_head(hta, "application/octet-stream")
    request = b"GET http://cdn.example/update.hta HTTP/1.1\r\nHost: cdn.example\r\n\r\n"
    with resp(relay_srv) as c:
        r = c.respmod(hta, res_head=head, req_head=request, preview=PREVIEW)
    assert_blocked(r, original=b"ActiveXObject")
    # named as what it is, it is relayed by the policy as before
    request = request.replace(b"update.hta", b"update.bin")
    with resp(relay_srv) as c:
        r = c.respmod(hta, res_head=head, req_head=request, preview=PREVIEW)
    assert r.status == 204, (r.status, r.http_response)


def test_a_relayed_subresource_a_navigation_would_save_varies(relay_srv: GicapProcess) -> None:
    """With unsupported files relayed, update.hta (an executable holding a script)
    fetched by a page as a script was relayed with a 204: a cache then served the
    original to a navigation, which saves it (and gicap blocks). It is sent again,
    varying by Sec-Fetch-Dest."""
    hta = b"MZ" + bytes(100) + b"<script>new ActiveXObject('WScript.Shell')</script>\n"
    head = res_head(hta, "application/octet-stream", extra='ETag: "v1"\r\n')
    request = page_request("http://cdn.example/update.hta", "script")
    with resp(relay_srv) as c:
        r = c.respmod(hta, res_head=head, req_head=request, preview=PREVIEW)
    assert r.status == 200, (r.status, r.http_response)
    _, h = http(r.http_response)
    assert r.body == hta and h.get("ETag") == '"v1"'
    assert h.get_list("Vary") == ["sec-fetch-dest"]
    # the navigation the cache no longer answers
    request = b"GET http://cdn.example/update.hta HTTP/1.1\r\nHost: cdn.example\r\n\r\n"
    with resp(relay_srv) as c:
        r = c.respmod(hta, res_head=head, req_head=request, preview=PREVIEW)
    assert_blocked(r, original=b"ActiveXObject")
    # named as what it is, a navigation is relayed too: nothing to vary
    request = page_request("http://cdn.example/update.bin", "script")
    with resp(relay_srv) as c:
        r = c.respmod(hta, res_head=head, req_head=request, preview=PREVIEW)
    assert r.status == 204, (r.status, r.http_response)


def test_html_page_is_relayed_at_preview(srv: GicapProcess) -> None:
    head = res_head(HTML_PAGE, "text/html; charset=utf-8")
    with resp(srv) as c:
        r = c.respmod(HTML_PAGE, res_head=head, preview=PREVIEW)
        assert r.status == 204 and not r.continued
        r = c.respmod(HTML_PAGE, res_head=head, allow_204=False)
        assert_untouched(r, head, HTML_PAGE, False)
        # A page downloaded as an attachment is a file.
        download = res_head(HTML_PAGE, "text/html", extra=saved_as("p.html"))
        r = c.respmod(HTML_PAGE, res_head=download, preview=PREVIEW)
        assert r.continued  # not relayed as a page: the whole file goes to the engines


@pytest.mark.parametrize("preview", [0, 1, 100])
def test_a_short_preview_does_not_relay_what_it_cannot_show(
    srv: GicapProcess, preview: int
) -> None:
    """(found by a review) An executable served as text/html was relayed as a page at
    Preview: 0 or 1 (the headers alone), blocked with the preview Squid sends: a
    shorter preview than asked for is not enough to relay a file, whole or not."""
    head = res_head(EXE, "text/html")
    with resp(srv) as c:
        r = c.respmod(EXE, res_head=head, preview=preview)
        assert r.continued
        assert_blocked(r, "named or served as html")
        r = c.respmod(EXE, res_head=head, preview=PREVIEW)
        assert_blocked(r, "named or served as html")
        # (a whole page in a short preview is relayed as before)
        page = b"<!DOCTYPE html><p>hi</p>"
        r = c.respmod(page, res_head=res_head(page, "text/html"), preview=preview + 4096)
        assert r.status == 204 and not r.continued


def test_a_preview_longer_than_asked_for_is_read_as_a_body(srv: GicapProcess) -> None:
    """(found by a review) A preview was held in memory whole, twice, however long (a
    client may send Preview: 1000000000000): now its first 64 KiB are kept, the rest
    spooled as any body is; the file is judged whole all the same."""
    original, rebuilt = big_csv(12_000)
    assert 64 * 1024 < len(original) < MAX_FILE_SIZE
    head = res_head(original, "text/csv", extra=saved_as("data.csv"))
    with resp(srv) as c:
        r = c.respmod(original, res_head=head, preview=len(original) - 100)
    assert_rebuilt(r, rebuilt)


def test_rebuilt_html_is_declared_utf8_whatever_the_origin_said(srv: GicapProcess) -> None:
    # A browser takes the HTTP charset before the document's own: left as ISO-2022-JP,
    # its escape sequences would turn the rebuilt text back into attributes.
    page = (
        b'<html><body><p title="\x1b$B">\x1b(B" onmouseover="alert(1)" x=</p>'
        b"<script>alert(2)</script></body></html>"
    )
    head = res_head(page, "text/html; charset=ISO-2022-JP", extra=saved_as("p.html"))
    with resp(srv) as c:
        r = c.respmod(page, res_head=head, allow_204=False)
    assert r.status == 200, (r.status, r.reason)
    _, h = http(r.http_response)
    assert h.get("Content-Type") == "text/html; charset=utf-8"
    assert b"<script" not in (r.body or b"")


def test_profile_strict_is_applied(srv: GicapProcess) -> None:
    head = res_head(CSV_FORMULAS, "text/csv")
    with resp(srv, "?profile=strict") as c:
        r = c.respmod(CSV_FORMULAS, res_head=head, preview=PREVIEW)
        file_id = assert_blocked(r, "formula cells are disallowed", original=b"HYPERLINK")
        assert "policy profile: <code>strict</code>" in (r.body or b"").decode()
        clean = c.respmod(CLEAN_CSV, res_head=res_head(CLEAN_CSV, "text/csv"), preview=PREVIEW)
        assert clean.status == 204
    line = log_line(srv, file_id)
    assert "profile=strict" in line and "outcome=blocked" in line
    with resp(srv, "?profile=default") as c:
        assert_rebuilt(c.respmod(CSV_FORMULAS, res_head=head), CSV_FORMULAS_REBUILT)


@pytest.mark.parametrize("method", ["OPTIONS", "RESPMOD", "REQMOD"])
def test_unknown_profile_is_refused(srv: GicapProcess, method: str) -> None:
    service = "req-cdr-service" if method == "REQMOD" else "resp-cdr-service"
    with ICAPClient(f"{srv.url}/{service}?profile=nope", timeout=10) as c:
        if method == "OPTIONS":
            r = c.options()
        elif method == "RESPMOD":
            r = c.respmod(CSV_FORMULAS, res_head=res_head(CSV_FORMULAS, "text/csv"), preview=0)
        else:
            r = c.reqmod(CSV_FORMULAS, req_head=req_head(CSV_FORMULAS, "text/csv"))
    assert r.status == 400
    error = r.headers.get("X-Error") or ""
    assert "'nope'" in error and "default" in error and "strict" in error
    with resp(srv) as c:
        assert c.options().status == 200


@pytest.mark.parametrize(
    ("service", "status"),
    [("resp-cdr-service?profile=nope", 400), ("req-cdr-service", 405), ("no-such", 404)],
)
def test_refused_before_the_preview_is_read_keeps_the_server_alive(
    srv: GicapProcess, service: str, status: int
) -> None:
    """Regression: an error answered before a (non-ieof) preview had been read made the
    server worker spin forever on the paused connection."""
    with ICAPClient(f"{srv.url}/{service}", timeout=5) as c:
        r = c.respmod(BIG_CSV, res_head=res_head(BIG_CSV, "text/csv"), preview=PREVIEW)
    assert r.status == status and not r.continued
    with ICAPClient(f"{srv.url}/echo", timeout=5) as c:
        assert c.options().status == 200


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate", "br"])
@pytest.mark.parametrize("preview", [None, PREVIEW], ids=["nopreview", "preview"])
def test_content_encoded_csv_is_decoded_and_rebuilt(
    srv: GicapProcess, encoding: str, preview: int | None
) -> None:
    if encoding in ("gzip", "x-gzip"):
        body = gzip.compress(BIG_CSV)
    elif encoding == "deflate":
        body = zlib.compress(BIG_CSV)
    else:
        import brotli

        body = brotli.compress(BIG_CSV)
    head = res_head(body, "text/csv", extra=f"Content-Encoding: {encoding}\r\n{STALE}")
    with resp(srv) as c:
        r = c.respmod(body, res_head=head, preview=preview)
    assert_rebuilt(r, BIG_CSV_REBUILT)


@pytest.mark.parametrize(
    "trailer", ["member", "cut", "brotli-cut"], ids=["second-member", "cut-short", "brotli-cut"]
)
def test_a_gzip_body_some_clients_read_further_is_refused(srv: GicapProcess, trailer: str) -> None:
    """Python, Go and .NET decode a second gzip member, browsers do not: only the
    first was disarmed, and the original (with the formula in the second) relayed."""
    import brotli

    encoding = "gzip"
    first = gzip.compress(CLEAN_CSV)
    if trailer == "member":
        body = first + gzip.compress(b"carol,=cmd|' /C calc'!A0\r\n")
    elif trailer == "cut":
        body = first[: len(first) // 2]
    else:
        encoding, whole = "br", brotli.compress(CLEAN_CSV)
        body = whole[: len(whole) // 2]
    head = res_head(body, "text/csv", extra=f"Content-Encoding: {encoding}\r\n")
    with resp(srv) as c:
        r = c.respmod(body, res_head=head, preview=PREVIEW)
    reason = "data after the end" if trailer == "member" else "cut short"
    assert_blocked(r, reason, original=body)


def test_every_content_encoding_header_counts(srv: GicapProcess) -> None:
    """ "identity" then "deflate" in two headers: Firefox decodes the deflate, the
    first header alone said identity, and the encoded bytes were judged."""
    body = zlib.compress(CSV_FORMULAS)
    extra = "Content-Encoding: identity\r\nContent-Encoding: deflate\r\n"
    with resp(srv) as c:
        r = c.respmod(body, res_head=res_head(body, "text/csv", extra=extra))
    assert_rebuilt(r, CSV_FORMULAS_REBUILT)
    extra = "Content-Encoding: gzip\r\nContent-Encoding: deflate\r\n"
    with resp(srv) as c:
        r = c.respmod(body, res_head=res_head(body, "text/csv", extra=extra))
    assert_blocked(r, "Content-Encoding", original=body)


def test_zero_bytes_padding_a_gzip_body_are_no_trailer(srv: GicapProcess) -> None:
    body = gzip.compress(CSV_FORMULAS) + bytes(512)
    head = res_head(body, "text/csv", extra="Content-Encoding: gzip\r\n")
    with resp(srv) as c:
        r = c.respmod(body, res_head=head)
    assert_rebuilt(r, CSV_FORMULAS_REBUILT)


def test_gzip_bomb_is_blocked_as_oversize_quickly(srv: GicapProcess) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    bomb = b"".join(packer.compress(zeros) for _ in range(200)) + packer.flush()  # 200 MiB
    assert len(bomb) < MAX_FILE_SIZE  # the limit is on the decoded size
    head = res_head(bomb, "text/csv", extra="Content-Encoding: gzip\r\n")
    started = time.monotonic()
    with resp(srv) as c:
        r = c.respmod(bomb, res_head=head, preview=PREVIEW)
    elapsed = time.monotonic() - started
    file_id = assert_blocked(r, "oversize", f"larger than {MAX_FILE_SIZE} bytes once decoded")
    assert elapsed < 5, f"the bomb took {elapsed:.1f} s"
    assert "engine=oversize" in log_line(srv, file_id)


def test_partial_content_is_unprocessable(srv: GicapProcess, relay_srv: GicapProcess) -> None:
    extra = f"Content-Range: bytes 0-{len(BIG_CSV) - 1}/99999\r\n"
    head = res_head(BIG_CSV, "text/csv", status="206 Partial Content", extra=extra)
    with resp(srv) as c:
        r = c.respmod(BIG_CSV, res_head=head, preview=PREVIEW)
    assert_blocked(r, "unprocessable", "206", original=b"=A3*2")
    with resp(relay_srv) as c:
        r = c.respmod(BIG_CSV, res_head=head, preview=PREVIEW)
        assert r.status == 204 and not r.continued
        r = c.respmod(BIG_CSV, res_head=head, allow_204=False)
        assert_untouched(r, head, BIG_CSV, False)


HEAD_REQUEST = b"HEAD http://origin.example/tool HTTP/1.1\r\nHost: origin.example\r\n\r\n"
GET_REQUEST = b"GET http://origin.example/tool HTTP/1.1\r\nHost: origin.example\r\n\r\n"


@pytest.mark.parametrize(
    ("request_head", "status", "body"),
    [
        (HEAD_REQUEST, "200 OK", None),
        (HEAD_REQUEST, "200 OK", EXE),  # whatever a HEAD answer carries is not a file
        (GET_REQUEST, "304 Not Modified", None),
        (GET_REQUEST, "304 Not Modified", EXE),
        (GET_REQUEST, "204 No Content", None),
        (GET_REQUEST, "200 OK", b""),  # an empty body
    ],
    ids=["head", "head-with-body", "304", "304-with-body", "204", "empty-body"],
)
@pytest.mark.parametrize("preview", [None, PREVIEW], ids=["nopreview", "preview"])
def test_nothing_to_disarm_passes_untouched(
    srv: GicapProcess, request_head: bytes, status: str, body: bytes | None, preview: int | None
) -> None:
    head = res_head(EXE, "application/octet-stream", status=status)  # Content-Length of the file
    with resp(srv) as c:
        r = c.respmod(body, res_head=head, req_head=request_head, preview=preview)
        assert r.status == 204, (r.status, r.http_response)
        assert not r.continued
        assert c.options().status == 200  # the connection is still usable


def test_oversize_file_is_blocked_or_relayed(srv: GicapProcess, relay_srv: GicapProcess) -> None:
    body = b"id,value\n" + b"1,2\n" * (MAX_FILE_SIZE // 4 + 100)
    head = res_head(body, "text/csv")
    with resp(srv) as c:
        r = c.respmod(body, res_head=head, preview=PREVIEW)
    assert r.continued
    file_id = assert_blocked(r, "oversize", f"larger than {MAX_FILE_SIZE} bytes", original=b"1,2")
    assert "engine=oversize" in log_line(srv, file_id)
    with resp(relay_srv) as c:
        r = c.respmod(body, res_head=head, preview=PREVIEW, allow_204=False)
        assert_untouched(r, head, body, False)
        r = c.respmod(body, res_head=head, preview=PREVIEW)
        assert_untouched(r, head, body, True)


def _spooled_files(proc: GicapProcess) -> list[str]:
    """Files in the server's spool directory its processes hold open (a spooled body
    is an unnamed file: it shows only there)."""
    assert proc.proc is not None
    spool = proc.env["GICAP_SERVER__SPOOL_DIR"]
    pids = [proc.proc.pid]
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == proc.proc.pid:
            pids.append(int(entry))
    held = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(spool) and not target.endswith(".log"):
                held.append(target)
    return held


def _streamed_respmod(
    srv: GicapProcess,
    req: bytes,
    res_head: bytes,
    pieces: Iterator[bytes],
    before_end: Callable[[], None] = lambda: None,
) -> bytes:
    """A RESPMOD to resp-cdr-service without preview, its body sent chunk by chunk
    (``before_end`` runs before the last chunk): the whole answer."""
    import socket

    head = (
        f"RESPMOD {srv.url}/resp-cdr-service ICAP/1.0\r\nHost: 127.0.0.1\r\n"
        f"Encapsulated: req-hdr=0, res-hdr={len(req)}, res-body={len(req) + len(res_head)}"
        "\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(head + req + res_head)
        for piece in pieces:
            s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        before_end()
        s.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n0\r\n\r\n" not in answer:
            data = s.recv(65536)
            if not data:
                break
            answer += data
    return answer


def test_a_body_over_the_limit_is_not_kept_while_it_arrives(srv: GicapProcess) -> None:
    """A body over cdr.max_file_size was written to the spool directory to its end
    before the refusal: a client sending 50 GB filled the disk. Past the limit (when
    the policy blocks oversize files) it is read and counted, not kept."""
    piece = b"1,2\n" * (64 * KIB // 4)

    def nothing_spooled() -> None:
        time.sleep(0.5)
        assert _spooled_files(srv) == []

    answer = _streamed_respmod(
        srv,
        b"GET http://origin.example/big.csv HTTP/1.1\r\nHost: origin.example\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\n",
        iter([piece] * (3 * MAX_FILE_SIZE // len(piece))),  # three times the limit
        nothing_spooled,
    )
    assert answer.startswith(b"ICAP/1.0 200 "), answer[:200]
    assert b"HTTP/1.1 403 Forbidden" in answer and b"oversize" in answer


def test_a_web_page_over_the_limit_is_still_relayed(srv: GicapProcess) -> None:
    """Past the limit a body is dropped only when it would be refused whatever it
    holds: a page being browsed, which the policy relays (web_pages = "relay"), went
    out as the block page once the limit dropped it."""
    first = b"<!DOCTYPE html><html><head><title>t</title></head><body>"
    piece = b"<p>hello</p>\n" * (64 * KIB // 13)
    answer = _streamed_respmod(
        srv,
        b"GET http://origin.example/page HTTP/1.1\r\nHost: origin.example\r\n"
        b"Sec-Fetch-Dest: document\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
        iter([first] + [piece] * (2 * MAX_FILE_SIZE // len(piece))),
    )
    assert answer.startswith(b"ICAP/1.0 200 "), answer[:300]
    assert b"HTTP/1.1 200 OK" in answer[:2000] and b"403" not in answer[:2000], answer[:400]
    assert len(answer) > 2 * MAX_FILE_SIZE - len(piece)  # (the page itself, relayed)


# ------------------------------------------------------------------------- REQMOD


def test_uploaded_csv_is_rebuilt(srv: GicapProcess) -> None:
    head = req_head(CSV_FORMULAS, "text/csv")
    with req(srv) as c:
        r = c.reqmod(CSV_FORMULAS, req_head=head, preview=PREVIEW)
        assert r.status == 200, (r.status, r.headers.get("X-Error"))
        assert not r.http_response
        start, h = http(r.http_request)
        assert start == "POST http://origin.example/upload HTTP/1.1"
        assert r.body == CSV_FORMULAS_REBUILT
        assert h.get("Content-Length") == str(len(CSV_FORMULAS_REBUILT))
        assert h.get("Host") == "origin.example"
        assert "ICAP/1.0 gicap" in (h.get("Via") or "")
        file_id = file_id_of(h)
        # A clean upload goes as it is.
        clean = c.reqmod(CLEAN_CSV, req_head=req_head(CLEAN_CSV, "text/csv"), allow_204=False)
        assert clean.status == 200 and clean.body == CLEAN_CSV
        assert clean.http_request == req_head(CLEAN_CSV, "text/csv")
    assert "outcome=rebuilt" in log_line(srv, file_id)


@pytest.mark.parametrize("preview", [None, PREVIEW], ids=["nopreview", "preview"])
def test_uploaded_unsupported_file_is_blocked_with_a_response(
    srv: GicapProcess, preview: int | None
) -> None:
    with req(srv) as c:
        r = c.reqmod(EXE, req_head=req_head(EXE, "application/octet-stream"), preview=preview)
    assert r.http_response.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert_blocked(r, "unsupported")


BOUNDARY = "----gicapTestBoundary7MA4YWxkTrZu0gW"


def multipart(*parts: tuple[str, bytes]) -> bytes:
    """A form body; each part is (its header block, its content)."""
    out = [
        f"--{BOUNDARY}\r\n{headers}\r\n\r\n".encode() + content + b"\r\n"
        for headers, content in parts
    ]
    return b"".join(out) + f"--{BOUNDARY}--\r\n".encode()


TEXT_FIELD = ('Content-Disposition: form-data; name="comment"', b"=1+1 is just a form field")
CSV_PART = (
    'Content-Disposition: form-data; name="sheet"; filename="data.csv"\r\nContent-Type: text/csv'
)
TEXT_PART = (
    'Content-Disposition: form-data; name="notes"; filename="notes.txt"\r\n'
    "Content-Type: text/plain",
    PLAIN_TEXT,
)
EXE_PART = (
    'Content-Disposition: form-data; name="tool"; filename="setup.bin"\r\n'
    "Content-Type: application/octet-stream",
    EXE,
)


def test_multipart_upload_rebuilds_only_the_csv_part(srv: GicapProcess) -> None:
    body = multipart(TEXT_FIELD, (CSV_PART, CSV_FORMULAS), TEXT_PART)
    expected = multipart(TEXT_FIELD, (CSV_PART, CSV_FORMULAS_REBUILT), TEXT_PART)
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    with req(srv) as c:
        r = c.reqmod(body, req_head=req_head(body, content_type), preview=PREVIEW)
    assert r.status == 200 and not r.http_response
    _, h = http(r.http_request)
    assert r.body == expected  # the other parts and the boundary byte for byte
    assert h.get("Content-Type") == content_type
    assert h.get("Content-Length") == str(len(expected))
    file_id_of(h)
    # Without formulas nothing changes.
    clean = multipart(TEXT_FIELD, (CSV_PART, CLEAN_CSV), TEXT_PART)
    with req(srv) as c:
        r = c.reqmod(clean, req_head=req_head(clean, content_type), preview=PREVIEW)
    assert r.status == 204


def test_multipart_upload_of_a_script_is_blocked(srv: GicapProcess) -> None:
    part = (
        'Content-Disposition: form-data; name="f"; filename="run.vbs"\r\n'
        "Content-Type: application/octet-stream",
        SCRIPT,
    )
    body = multipart(TEXT_FIELD, part)
    head = req_head(body, f"multipart/form-data; boundary={BOUNDARY}")
    with req(srv) as c:
        r = c.reqmod(body, req_head=head, preview=PREVIEW)
    assert_blocked(r, "run.vbs", "a script a desktop runs", original=b"ActiveXObject")


def test_multipart_upload_with_an_unsupported_file_is_blocked_whole(srv: GicapProcess) -> None:
    body = multipart(TEXT_FIELD, (CSV_PART, CSV_FORMULAS), EXE_PART)
    head = req_head(body, f'multipart/form-data; boundary="{BOUNDARY}"')
    with req(srv) as c:
        r = c.reqmod(body, req_head=head, preview=PREVIEW)
    file_id = assert_blocked(r, "setup.bin", "unsupported")
    assert b"HYPERLINK" not in (r.body or b"")
    assert "outcome=blocked" in log_line(srv, file_id)


@pytest.mark.parametrize(
    "parameters",
    [
        "xboundary=AAA; boundary={b}",
        'x="boundary=AAA;"; boundary={b}',
        "boundary=AAA; boundary={b}",
        "boundary=AAA; boundary*0={b}",
    ],
    ids=["longer-name", "in-a-quoted-value", "twice", "continuation"],
)
def test_an_upload_whose_boundary_servers_may_read_otherwise_is_refused(
    srv: GicapProcess, parameters: str
) -> None:
    """The first "boundary=" in the header was taken: split on AAA, the form was one
    text field, and a server reading the parameters stored the HTML file."""
    page = b"<html><body><script>alert(document.cookie)</script></body></html>"
    part = ('Content-Disposition: form-data; name="f"; filename="evil.html"', page)
    # read with AAA, the whole form is one text field
    body = b'--AAA\r\nContent-Disposition: form-data; name="x"\r\n\r\n'
    body += multipart(part) + b"\r\n--AAA--\r\n"
    head = req_head(body, "multipart/form-data; " + parameters.format(b=BOUNDARY))
    with req(srv) as c:
        r = c.reqmod(body, req_head=head, preview=PREVIEW)
    assert_blocked(r, "boundar", original=b"<script>")


@pytest.mark.parametrize(
    "headers",
    [
        # servers keep the last Content-Disposition (Starlette, FastAPI): a file
        'Content-Disposition: form-data; name="f"\r\n'
        'Content-Disposition: form-data; name="f"; filename="evil.html"',
        # a header line that does not read (PHP skips it): was an ICAP 400, which a
        # proxy with bypass=on answers by forwarding the upload
        'Content-Disposition: form-data; name="f"; filename="evil.html"\r\nBad Header',
        ' folded: x\r\nContent-Disposition: form-data; name="f"; filename="evil.html"',
    ],
    ids=["two-dispositions", "line-without-colon", "first-line-folded"],
)
def test_a_part_whose_headers_servers_read_otherwise_is_refused(
    srv: GicapProcess, headers: str
) -> None:
    page = b"<html><body><script>alert(document.cookie)</script></body></html>"
    body = multipart(TEXT_FIELD, (headers, page))
    head = req_head(body, f"multipart/form-data; boundary={BOUNDARY}")
    with req(srv) as c:
        r = c.reqmod(body, req_head=head, preview=PREVIEW)
    assert_blocked(r, "unprocessable", original=b"<script>")


@pytest.mark.parametrize("nested", [False, True])
def test_an_upload_of_too_many_parts_is_refused(srv: GicapProcess, nested: bool) -> None:
    """(found by a review) 500,000 empty parts in 7 MB were parsed in the event loop:
    7 s in which no other connection of the process was served, and 238 MB. Past
    10,000 parts (nested ones counted) the upload is refused as they are met."""
    from gicap.cdr import multipart as parts

    empty = ("Content-Disposition: name=a", b"")  # (short: a body within the limit)
    if nested:
        inner = multipart(*[empty] * 6_000).replace(BOUNDARY.encode(), b"inner")
        form = 'Content-Disposition: name="m"\r\nContent-Type: multipart/mixed; boundary=inner'
        body = multipart(*[empty] * 5_000, (form, inner))
    else:
        body = multipart(*[empty] * 12_000)
    with req(srv) as c:
        r = c.reqmod(body, req_head=req_head(body, f"multipart/form-data; boundary={BOUNDARY}"))
    assert len(body) < MAX_FILE_SIZE
    assert_blocked(r, "more than 10000 parts")
    # (what a form holds at most is read)
    form = parts.parse(multipart(*[empty] * 10_000), BOUNDARY.encode())
    assert len(form.parts) == 10_000


def test_a_compressed_multipart_upload_is_refused(srv: GicapProcess) -> None:
    """Its parts were split from the compressed bytes: a server inflating the body
    (ASP.NET Core, Apache's DEFLATE filter) read a file gicap never saw."""
    page = b"<html><body><script>alert(document.cookie)</script></body></html>"
    part = ('Content-Disposition: form-data; name="f"; filename="evil.html"', page)
    body = gzip.compress(multipart(TEXT_FIELD, part))
    head = req_head(body, f"multipart/form-data; boundary={BOUNDARY}").replace(
        b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n", 1
    )
    with req(srv) as c:
        r = c.reqmod(body, req_head=head, preview=PREVIEW)
    assert_blocked(r, "Content-Encoding")


@pytest.mark.parametrize(
    "name",
    [
        "invoice.js%09",
        "invoice.j\ts",
        "invoice.js%0A",
        "invoice.js%C2%A0",
        "invoice.j%E2%80%A8s",
        "invoice.j%20s",
        "invoice.%20js",
        "invoice.j%EF%BB%BFs",
    ],
    ids=[
        "tab",
        "tab-inside",
        "line-feed",
        "no-break-space",
        "line-separator",
        "space-in-extension",
        "space-before-extension",
        "bom-in-extension",
    ],
)
def test_a_script_name_with_characters_browsers_drop_is_a_script(
    srv: GicapProcess, name: str
) -> None:
    """Firefox drops control characters and separators from a name and trims
    trailing spaces: saved as invoice.js, which Windows Script Host runs."""
    disposition = f"Content-Disposition: attachment; filename*=UTF-8''{name}\r\n"
    head = res_head(SCRIPT, "application/octet-stream", extra=disposition)
    with resp(srv) as c:
        r = c.respmod(SCRIPT, res_head=head, preview=PREVIEW)
    assert_blocked(r, "a script a desktop runs", original=b"ActiveXObject")


def test_a_file_part_named_by_continuations_only_is_a_file(srv: GicapProcess) -> None:
    """filename*0= alone names a file to Go: the part was skipped as a form field.
    (A trailing ";" after the boundary is read as servers read it.)"""
    part = (
        'Content-Disposition: form-data; name="f"; filename*0="data"; filename*1=".csv"\r\n'
        "Content-Type: text/csv",
        CSV_FORMULAS,
    )
    body = multipart(part)
    expected = multipart((part[0], CSV_FORMULAS_REBUILT))
    head = req_head(body, f"multipart/form-data; boundary={BOUNDARY};")
    with req(srv) as c:
        r = c.reqmod(body, req_head=head)
    assert r.status == 200 and not r.http_response, (r.status, r.http_response)
    assert r.body == expected


def test_multipart_mixed_uploads_are_split_too(srv: GicapProcess) -> None:
    """Servers split any multipart/ body (commons-fileupload, cgi): it went through
    detection as one text blob."""
    body = multipart(TEXT_FIELD, (CSV_PART, CSV_FORMULAS))
    expected = multipart(TEXT_FIELD, (CSV_PART, CSV_FORMULAS_REBUILT))
    with req(srv) as c:
        r = c.reqmod(body, req_head=req_head(body, f"multipart/mixed; boundary={BOUNDARY}"))
    assert r.status == 200 and not r.http_response, (r.status, r.http_response)
    assert r.body == expected


def test_files_in_a_nested_multipart_part_are_disarmed(srv: GicapProcess) -> None:
    """A form part holding multipart/mixed (RFC 2388's several files for one field)
    has no file name of its own: its files went through unseen."""
    inner_boundary = "innerBoundary42"
    inner = (
        (
            f'--{inner_boundary}\r\nContent-Disposition: file; filename="data.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + CSV_FORMULAS
        + f"\r\n--{inner_boundary}--".encode()
    )
    outer_part = (
        'Content-Disposition: form-data; name="files"\r\n'
        f"Content-Type: multipart/mixed; boundary={inner_boundary}",
        inner,
    )
    body = multipart(TEXT_FIELD, outer_part)
    with req(srv) as c:
        r = c.reqmod(body, req_head=req_head(body, f"multipart/form-data; boundary={BOUNDARY}"))
    assert r.status == 200 and not r.http_response, (r.status, r.http_response)
    assert CSV_FORMULAS_REBUILT in (r.body or b"") and CSV_FORMULAS not in (r.body or b"")


def test_a_file_part_in_a_transfer_encoding_is_refused(srv: GicapProcess) -> None:
    """Go's multipart reader decodes quoted-printable parts: the server stored a
    formula the engine never saw (it judged "x=0D=0A=3Dcmd...")."""
    part = (
        'Content-Disposition: form-data; name="f"; filename="report.csv"\r\n'
        "Content-Type: text/csv\r\nContent-Transfer-Encoding: quoted-printable",
        b"name,amount\r\nbob,x=0D=0A=3Dcmd|' /C calc'!A0\r\n",
    )
    body = multipart(part)
    with req(srv) as c:
        r = c.reqmod(body, req_head=req_head(body, f"multipart/form-data; boundary={BOUNDARY}"))
    assert_blocked(r, "transfer encoding", original=b"=3Dcmd")


# ------------------------------------------------------------------------- misbehaving engines


@pytest.fixture(scope="session")
def engine_plugin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``engine_plugin/`` installed with pip into a directory of its own: put it on the
    server's PYTHONPATH and its entry point is loaded there (and in the spawned disarm
    workers, which inherit the environment)."""
    base = tmp_path_factory.mktemp("engine-plugin")
    source = base / "src"
    shutil.copytree(HERE / "engine_plugin", source)  # the build writes next to its source
    target = base / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, timeout=300)
    assert list(target.glob("gicap_test_engine-*.dist-info"))
    return str(target)


def engine_env(plugin: str, mode: str, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (plugin, os.environ.get("PYTHONPATH")) if p)
    return {**BASE_ENV, "PYTHONPATH": path, "GICAP_TEST_ENGINE": mode, **extra}


@pytest.mark.parametrize("fallback", ["block", "relay"])
@pytest.mark.parametrize("mode", ["raise", "crash"])
def test_a_failing_engine_gets_the_policy_outcome(
    start_gicap: Start, engine_plugin: str, tmp_path: Path, mode: str, fallback: str
) -> None:
    env = engine_env(engine_plugin, mode, GICAP_POLICY__DEFAULT__UNPROCESSABLE=fallback)
    proc = start_gicap(env)
    head = res_head(CSV_TRIGGER, "text/csv")
    with resp(proc) as c:
        for _ in range(2):  # twice: a crashed worker has been replaced
            r = c.respmod(CSV_TRIGGER, res_head=head, allow_204=False)
            if fallback == "relay":
                assert_untouched(r, head, CSV_TRIGGER, False)
            else:
                reason = "engine failed" if mode == "raise" else "crashed"
                file_id = assert_blocked(r, "unprocessable", reason, original=TRIGGER)
                line = log_line(proc, file_id)
                assert "outcome=blocked" in line
                assert f"engine={'unprocessable' if mode == 'raise' else 'crashed'}" in line
            # Same connection, next file: the real engine, in a working worker.
            r = c.respmod(CSV_FORMULAS, res_head=res_head(CSV_FORMULAS, "text/csv"))
            assert_rebuilt(r, CSV_FORMULAS_REBUILT)
    assert leftovers(tmp_path) == []


def test_a_hanging_engine_times_out_while_the_server_serves_others(
    start_gicap: Start, engine_plugin: str, tmp_path: Path
) -> None:
    proc = start_gicap(engine_env(engine_plugin, "hang", GICAP_CDR__TIMEOUT="2"))
    with resp(proc) as c:  # a first file, so the disarm worker has started
        assert_rebuilt(
            c.respmod(CSV_FORMULAS, res_head=res_head(CSV_FORMULAS, "text/csv")),
            CSV_FORMULAS_REBUILT,
        )
    hanging = resp(proc)
    hanging.connect()
    outcome: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        outcome["result"] = hanging.respmod(
            CSV_TRIGGER, res_head=res_head(CSV_TRIGGER, "text/csv"), preview=PREVIEW
        )
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)  # the disarm is under way
        started = time.monotonic()
        with resp(proc) as other:
            assert other.options().status == 200
        with ICAPClient(f"{proc.url}/echo", timeout=10) as echo:
            assert echo.respmod(b"hello", allow_204=False).body == b"hello"
        assert time.monotonic() - started < 1
        assert thread.is_alive(), "the hanging disarm answered too early"
        thread.join(15)
        assert not thread.is_alive()
        r = outcome["result"]
        assert isinstance(r, ICAPResult)
        file_id = assert_blocked(r, "unprocessable", "timeout", original=TRIGGER)
        assert 1.9 < float(outcome["seconds"]) < 8  # type: ignore[arg-type]
        assert "engine=timeout" in log_line(proc, file_id)
        # The same connection goes on, and the next file gets a fresh worker.
        r = hanging.respmod(CSV_FORMULAS, res_head=res_head(CSV_FORMULAS, "text/csv"))
        assert_rebuilt(r, CSV_FORMULAS_REBUILT)
    finally:
        hanging.close()
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------- work files


def test_work_files_are_deleted(srv: GicapProcess) -> None:
    """After rebuilt, blocked, oversize, decoded and multipart files, the spool directory
    holds no work directory (gicap-cdr-*) and no spooled body."""
    with resp(srv) as c:
        assert_rebuilt(c.respmod(BIG_CSV, res_head=res_head(BIG_CSV, "text/csv")), BIG_CSV_REBUILT)
        assert_blocked(
            c.respmod(EXE, res_head=res_head(EXE, "application/octet-stream")), "unsupported"
        )
        gz = gzip.compress(BIG_CSV)
        head = res_head(gz, "text/csv", extra="Content-Encoding: gzip\r\n")
        assert_rebuilt(c.respmod(gz, res_head=head), BIG_CSV_REBUILT)
        large = b"a,b\n" + b"1,2\n" * (MAX_FILE_SIZE // 2)
        assert_blocked(c.respmod(large, res_head=res_head(large, "text/csv")), "oversize")
    body = multipart(TEXT_FIELD, (CSV_PART, CSV_FORMULAS), TEXT_PART)
    with req(srv) as c:
        head = req_head(body, f"multipart/form-data; boundary={BOUNDARY}")
        assert c.reqmod(body, req_head=head).status == 200
    spool = Path(srv.env["GICAP_SERVER__SPOOL_DIR"])
    assert [p for p in spool.iterdir() if re.match(r"gicap-cdr-", p.name)] == []
    assert leftovers(spool) == []


# ------------------------------------------------- what a download is opened as


POLYGLOT = _bmp_holding(b"\r\n<script>alert(document.domain)</script>\r\n")


@pytest.mark.parametrize(
    "extra",
    [
        # browsers save under filename* when there is one
        "Content-Disposition: attachment; filename=\"x.bmp\"; filename*=UTF-8''x.hta\r\n",
        "Content-Disposition: attachment; filename*=UTF-8''x.svg; filename=\"x.bmp\"\r\n",
        # a name that holds "filename=" is a name, not a disposition
        'Content-Disposition: attachment; filename="filename=x.bmp;.hta"\r\n',
        # the last Content-Type is the one browsers take
        "Content-Type: text/html\r\n",
        # ... the last that is a type: "*/*" and what does not parse are skipped, and
        # a comma in a quoted parameter splits nothing
        "Content-Type: text/html, */*\r\n",
        'Content-Type: text/html; charset="utf-8,image/bmp"\r\n',
        # a second disposition names the file too
        "Content-Disposition: inline\r\nContent-Disposition: attachment; filename=x.hta\r\n",
    ],
)
def test_a_picture_saved_or_shown_as_a_page_is_blocked(srv: GicapProcess, extra: str) -> None:
    head = res_head(POLYGLOT, "image/bmp", extra=extra)
    with resp(srv) as c:
        r = c.respmod(POLYGLOT, res_head=head, preview=PREVIEW)
    assert_blocked(r, "opened as", original=b"<script>alert")


def test_a_picture_a_page_shows_is_not_a_page(srv: GicapProcess) -> None:
    """An image a script sends with PHP's default text/html, fetched by an <img>
    (Sec-Fetch-Dest: image), is shown as an image: rebuilt, not blocked."""
    picture = _bmp_holding(b"plain pixels")
    head = res_head(picture, "text/html")
    request = page_request("http://origin.example/captcha.php", "image")
    with resp(srv) as c:
        r = c.respmod(picture, res_head=head, req_head=request, preview=PREVIEW)
    assert r.status == 200 and r.http_response is not None
    start, h = http(r.http_response)
    assert start.split(" ", 2)[1] == "200", start
    # (a cache may serve it to a later navigation: it says what it is)
    assert h.get_all("Content-Type") == ["image/bmp"]
    assert h.get("X-Content-Type-Options") == "nosniff"


def test_an_upload_is_judged_by_every_name_it_has(srv: GicapProcess) -> None:
    """A server may store the file under ``filename`` or ``filename*``."""
    part = (
        'Content-Disposition: form-data; name="f"; filename="x.html"; '
        "filename*=UTF-8''x.bmp\r\nContent-Type: image/bmp",
        POLYGLOT,
    )
    body = multipart(part)
    content_type = f"multipart/form-data; boundary={BOUNDARY}"
    with req(srv) as c:
        r = c.reqmod(body, req_head=req_head(body, content_type), preview=PREVIEW)
    assert_blocked(r, "opened as", original=b"<script>alert", reqmod=True)


def test_brotli_is_decoded_in_bounded_steps(tmp_path: Path) -> None:
    """One brotli call made 1 GiB of an 809-byte body before the size limit was
    looked at (a worker's whole memory)."""
    import tracemalloc

    import brotli

    from gicap.cdr.job import _TooLarge, decode_content

    bomb = tmp_path / "bomb.br"
    bomb.write_bytes(brotli.compress(bytes(256 << 20), quality=5))
    assert bomb.stat().st_size < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(_TooLarge):
            decode_content(bomb, tmp_path / "out", "br", 8 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak
    # ordinary bodies, of more than one step of output, decode whole (a first version
    # stopped at the first step and refused them as cut short)
    for body in (os.urandom(3 << 20), b"function f(a) { return a + 1; }\n" * 100_000):
        for quality in (0, 11):
            source = tmp_path / "body.br"
            source.write_bytes(brotli.compress(body, quality=quality))
            decode_content(source, tmp_path / "body", "br", 100 << 20)
            assert (tmp_path / "body").read_bytes() == body


def test_a_report_keeps_a_bounded_number_of_short_actions() -> None:
    """999 archive members with 45,000-character names made a 45 MB block page
    (from 109 KB sent gzip-encoded), held in the server for each connection."""
    from gicap.services.cdr import MAX_ACTIONS, MAX_DETAIL, _bounded

    actions = [{"switch": "unsafe_name", "action": "removed", "detail": "x" * 45_000}] * 999
    kept = _bounded(actions)
    assert len(kept) == MAX_ACTIONS + 1 and kept[-1]["detail"] == "899 more"
    assert all(len(a["detail"]) <= MAX_DETAIL + 1 for a in kept)


def test_an_upload_of_too_many_files_is_refused(srv: GicapProcess) -> None:
    """Each file part is a job of its own: 15,000 parts in 990 KB took 8.6 s."""
    from gicap.services.cdr import MAX_FILE_PARTS

    part = ('Content-Disposition: form-data; name="f"; filename="a.txt"', b"hello\n")
    body = multipart(*[part] * (MAX_FILE_PARTS + 1))
    head = req_head(body, f"multipart/form-data; boundary={BOUNDARY}")
    with req(srv) as c:
        r = c.reqmod(body, req_head=head, preview=PREVIEW)
    assert_blocked(r, "files in one upload")
