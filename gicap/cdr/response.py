"""Built-in plugin: the preview decision and the HTTP message returned for a file.

Registered through the ``gicap`` entry point like any other plugin; a plugin can
answer these hooks first to change the block page or the relay rules.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import quote

from gicap import hookimpl
from gicap.cdr.detect import file_names, saved_name, url_segment
from gicap.cdr.report import BLOCKED, REBUILT, FileReport, block_page
from gicap.cdr.types import FileType
from gicap.protocol import Headers, HTTPRequestHead, HTTPResponseHead
from gicap.services.base import Modified, Outcome, Transaction, Unmodified

#: Headers that described the original bytes and are wrong for a rebuilt file.
STALE_HEADERS = (
    "Content-Length",
    "ETag",
    "Content-MD5",
    "Digest",
    "Repr-Digest",
    "Content-Digest",
    "Content-Encoding",
    "Transfer-Encoding",
    "Content-Range",
    "Accept-Ranges",
    "Last-Modified",
)
FILE_ID_HEADER = "X-Adaptation-File-Id"


@hookimpl(trylast=True)
def gicap_preview_decision(
    service: str,
    file_type: FileType | None,
    policy: Any,
    http_status: int | None,
    attachment: bool,
    supported_types: frozenset[str],
) -> str | None:
    if http_status == 206 and policy.fallback("unprocessable") == "relay":
        return "relay"
    if file_type is None:
        return None
    if file_type.family == "html" and not attachment:
        return "relay" if policy.fallback("web_pages") == "relay" else None
    if file_type.name not in supported_types and policy.fallback("unsupported") == "relay":
        return "relay"
    return None


@hookimpl(trylast=True)
def gicap_build_response(report: FileReport, transaction: Transaction) -> Outcome:
    head = transaction.head
    if report.outcome == BLOCKED:
        return blocked_response(report, transaction)
    if report.outcome != REBUILT:
        return Unmodified()
    body = report.body
    assert body is not None
    size = os.fstat(body.fileno()).st_size
    if head.method == "RESPMOD":
        original = head.http_response
        assert original is not None
        headers = (
            _echo_headers(original.headers, size, report)
            if report.echo
            else _fresh_headers(original.headers, size, report, response=True)
        )
        new = HTTPResponseHead(original.version, original.status, original.reason, headers)
        return Modified(http_response=new, body=body)
    request = head.http_request
    assert request is not None
    new_req = HTTPRequestHead(
        request.method,
        request.target,
        request.version,
        _fresh_headers(request.headers, size, report),
    )
    return Modified(http_request=new_req, body=body)


def _echo_headers(original: Headers, size: int, report: FileReport) -> Headers:
    """The original's headers for its own bytes sent again: its framing set to the
    bytes, ``report.vary`` added to its Vary (unless there already, or "*")."""
    headers = original.copy()
    headers.remove("Transfer-Encoding")
    headers.remove("Content-Length")
    headers.add("Content-Length", str(size))
    _add_vary(headers, report.vary)
    if report.file_id_header:
        headers.set(FILE_ID_HEADER, report.file_id)
    return headers


def _add_vary(headers: Headers, name: str) -> None:
    """Add ``name`` to what ``headers`` vary by (unless there already, or "*")."""
    varies = headers.get_list("Vary")
    if name and name.lower() not in varies and "*" not in varies:
        headers.add("Vary", name)


def _fresh_headers(
    original: Headers, size: int, report: FileReport, response: bool = False
) -> Headers:
    headers = original.copy()
    for name in STALE_HEADERS:
        headers.remove(name)
    headers.add("Content-Length", str(size))
    if report.content_type:
        headers.remove("Content-Type")  # (every one: browsers take the last)
        headers.set("Content-Type", report.content_type)
    if report.nosniff:
        headers.set("X-Content-Type-Options", "nosniff")
    _add_vary(headers, report.vary)
    if report.new_extension:
        dispositions = headers.get_all("Content-Disposition")
        if dispositions:
            renamed = [
                _replace_extension(d, report.old_extension, report.new_extension)
                for d in dispositions
            ]
            headers.remove("Content-Disposition")
            for value in renamed:
                headers.add("Content-Disposition", value)
        elif response:
            # saved under the address's name: give it the new type's
            segment = url_segment(report.name)
            name = _renamed(segment, report.old_extension, report.new_extension)
            if name is not None:
                headers.add("Content-Disposition", _disposition("attachment", name))
    if report.file_id_header:
        headers.set(FILE_ID_HEADER, report.file_id)
    return headers


def _replace_extension(disposition: str, old: str, new: str) -> str:
    """``disposition`` with the file name it gives renamed to the new type when it
    names the old one (``report.docm`` -> ``report.docx``), however it is written
    (``filename = "a.docm"``, ``filename*=UTF-8''a%2Edocm``, ``a.DOCM.``): rewritten
    whole, as ``filename`` and ``filename*``."""
    for name in file_names(disposition):
        renamed = _renamed(name, old, new)
        if renamed is not None:
            kind = re.split(r"[;,]", disposition, maxsplit=1)[0].strip()
            if not kind or "=" in kind:
                kind = "attachment"
            return _disposition(kind, renamed)
    return disposition


def _renamed(name: str, old: str, new: str) -> str | None:
    """``name`` with the extension ``new`` when it ends in ``old`` (any case, as the
    name is saved: see ``saved_name``), else None."""
    stem = saved_name(name)
    if not old or not stem.lower().endswith("." + old.lower()):
        return None
    return f"{stem[: -len(old)]}{new}"


def _disposition(kind: str, name: str) -> str:
    """A Content-Disposition naming ``name``: an ASCII ``filename`` and the exact
    ``filename*`` (RFC 6266)."""
    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"{kind}; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


def blocked_response(report: FileReport, transaction: Transaction) -> Modified:
    page = block_page(report)
    version = "HTTP/1.1"
    if transaction.head.http_response is not None:
        version = transaction.head.http_response.version
    headers = Headers(
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(page))),
            ("Cache-Control", "no-store"),
        ]
    )
    if report.file_id_header:
        headers.add(FILE_ID_HEADER, report.file_id)
    return Modified(http_response=HTTPResponseHead(version, 403, "Forbidden", headers), body=page)
