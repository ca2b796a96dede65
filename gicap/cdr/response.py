"""Built-in plugin: the preview decision and the HTTP message returned for a file.

Registered through the ``gicap`` entry point like any other plugin; a plugin can
answer these hooks first to change the block page or the relay rules.
"""

from __future__ import annotations

import os
import re
from typing import Any

from gicap import hookimpl
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
            else _fresh_headers(original.headers, size, report)
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
    varies = headers.get_list("Vary")
    if report.vary and report.vary.lower() not in varies and "*" not in varies:
        headers.add("Vary", report.vary)
    if report.file_id_header:
        headers.set(FILE_ID_HEADER, report.file_id)
    return headers


def _fresh_headers(original: Headers, size: int, report: FileReport) -> Headers:
    headers = original.copy()
    for name in STALE_HEADERS:
        headers.remove(name)
    headers.add("Content-Length", str(size))
    if report.content_type:
        headers.remove("Content-Type")  # (every one: browsers take the last)
        headers.set("Content-Type", report.content_type)
    if report.nosniff:
        headers.set("X-Content-Type-Options", "nosniff")
    varies = headers.get_list("Vary")
    if report.vary and report.vary.lower() not in varies and "*" not in varies:
        headers.add("Vary", report.vary)
    if report.new_extension:
        disposition = headers.get("Content-Disposition")
        if disposition:
            headers.set(
                "Content-Disposition",
                _replace_extension(disposition, report.old_extension, report.new_extension),
            )
    if report.file_id_header:
        headers.set(FILE_ID_HEADER, report.file_id)
    return headers


def _replace_extension(disposition: str, old: str, new: str) -> str:
    """``attachment; filename="report.docm"`` -> ``...report.docx"`` when the type changed."""
    if not old:
        return disposition
    pattern = r"""(filename\*?=(?:[\w-]*'[\w-]*')?"?[^";]*\.)""" + re.escape(old) + r'(?=["; ]|$)'
    return re.sub(pattern, lambda m: m.group(1) + new, disposition, flags=re.IGNORECASE)


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
