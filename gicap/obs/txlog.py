"""The transaction log: one line per ICAP transaction.

Written through a small buffer flushed at least every ``flush_interval`` seconds
(and at shutdown) instead of through ``logging``: a formatted, locked, unbuffered
write per transaction cost more than the whole ICAP exchange of a small file.

A line is a summary (client, method, ICAP URI, status, duration) followed by the
transaction's fields: ``key=value`` in the text format, keys of one JSON object per
line in the JSON format (``logging.format = "json"``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol

from gicap.obs.logging import iso_time


class Writable(Protocol):
    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


#: What makes a value quoted: white space, a quote, a backslash, a control character.
_NEEDS_QUOTES = re.compile(r'[\s"\\\x00-\x1f\x7f-\x9f\u2028\u2029]')
#: What is escaped in a quoted value: a client's Host header once wrote
#: ``" outcome=unmodified`` into a line whose outcome was blocked.
_ESCAPED = re.compile(r'["\\\x00-\x1f\x7f-\x9f\u2028\u2029]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quoted(text: str) -> str:
    """``text`` quoted, its quotes, backslashes and control characters escaped: one
    token, whatever a client put in it."""
    return '"' + _ESCAPED.sub(lambda m: _ESCAPES.get(m[0]) or f"\\x{ord(m[0]):02x}", text) + '"'


def _text(value: Any) -> str:
    """A field as one token of a text line: quoted when it is empty or holds white
    space, a quote, a backslash or a control character (see _quoted)."""
    if isinstance(value, Mapping):
        # Actions per switch, e.g. javascript:sanitise;metadata:sanitise
        value = ";".join(f"{k}:{v}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    text = str(value)
    return _quoted(text) if (not text or _NEEDS_QUOTES.search(text)) else text


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, Mapping | list | tuple) and not value)


def _fields_text(fields: Mapping[str, Any]) -> str:
    """`` key=value`` for each field that is not empty (what :func:`_text` and
    :func:`_empty` say, with plain strings and integers, most fields, taken directly)."""
    parts = []
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            if not value:
                continue
            if _NEEDS_QUOTES.search(value):
                value = _quoted(value)
        elif kind is not int:
            if _empty(value):
                continue
            value = _text(value)
        parts.append(f" {key}={value}")
    return "".join(parts)


class TransactionLog:
    def __init__(
        self,
        enabled: bool = True,
        stream: Writable | None = None,
        max_buffer: int = 64 * 1024,
        *,
        json_format: bool = False,
    ) -> None:
        self.enabled = enabled
        self.stream: Writable = stream or sys.stderr
        self.max_buffer = max_buffer
        self.json_format = json_format
        self._lines: list[str] = []
        self._size = 0
        self._second = -1
        self._prefix = ""
        self._pid = os.getpid()

    def _timestamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._pid = os.getpid()
        return f"{self._prefix},{int((now - second) * 1000):03d}"

    def record(
        self,
        peer: str,
        method: str,
        uri: str,
        status: int,
        millis: float,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """One transaction; ``fields`` in the order they should appear, empty ones left out."""
        if not self.enabled:
            return
        if self.json_format:
            line = self._json(peer, method, uri, status, millis, fields or {})
        else:
            detail = _fields_text(fields) if fields else ""
            line = (
                f"{self._timestamp()} INFO gicap[{self._pid}] gicap.transaction: {peer} "
                f"{method} {uri} -> {status} ({millis:.1f} ms){detail}\n"
            )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.max_buffer:
            self.flush()

    def _json(
        self,
        peer: str,
        method: str,
        uri: str,
        status: int,
        millis: float,
        fields: Mapping[str, Any],
    ) -> str:
        # The same leading keys as ordinary records (gicap.obs.logging.JSONFormatter).
        out: dict[str, Any] = {
            "time": iso_time(time.time()),
            "level": "INFO",
            "logger": "gicap.transaction",
            "pid": os.getpid(),
            "client": peer,
            "method": method,
            "icap_uri": uri,
            "status": status,
            "ms": round(millis, 1),
        }
        out.update((k, v) for k, v in fields.items() if not _empty(v))
        return json.dumps(out, ensure_ascii=False, default=str) + "\n"

    def flush(self) -> None:
        if not self._lines:
            return
        data = "".join(self._lines)
        self._lines.clear()
        self._size = 0
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):
            pass
