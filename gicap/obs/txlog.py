"""The transaction log: one line per ICAP transaction.

Written through a small buffer flushed at least every ``flush_interval`` seconds
(and at shutdown) instead of through ``logging``: a formatted, locked, unbuffered
write per transaction cost more than the whole ICAP exchange of a small file.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


class TransactionLog:
    def __init__(
        self, enabled: bool = True, stream: TextIO | None = None, max_buffer: int = 64 * 1024
    ) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.max_buffer = max_buffer
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
        self, peer: str, method: str, uri: str, status: int, millis: float, detail: str = ""
    ) -> None:
        if not self.enabled:
            return
        line = (
            f"{self._timestamp()} INFO gicap[{self._pid}] gicap.transaction: {peer} "
            f"{method} {uri} -> {status} ({millis:.1f} ms){detail}\n"
        )
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.max_buffer:
            self.flush()

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
