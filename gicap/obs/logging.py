"""Log set-up: one line per event, as text or JSON, on stderr or in a file.

stderr is the default because journald collects it under systemd. With
``logging.file`` the log goes to that file *instead* (not as well: a copy in the
journal would double the volume the file was chosen to take out of it).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from typing import Any, TextIO

FORMAT = "%(asctime)s %(levelname)s gicap[%(process)d] %(name)s: %(message)s"

#: Where the transaction log writes: the same destination as the other records.
_stream: TextIO | AppendFile = sys.stderr


def iso_time(now: float) -> str:
    """Local time with milliseconds and UTC offset: 2025-05-01T12:00:00.123+02:00."""
    local = time.localtime(now)
    offset = time.strftime("%z", local)
    return (
        f"{time.strftime('%Y-%m-%dT%H:%M:%S', local)}.{int((now % 1) * 1000):03d}"
        f"{offset[:3]}:{offset[3:]}"
    )


class JSONFormatter(logging.Formatter):
    """One JSON object per record, with the keys the transaction log uses too."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class AppendFile:
    """A log file shared by all processes, for the buffered transaction log.

    Each flush is one ``write()`` on an O_APPEND descriptor, so lines of several
    processes never interleave. The path is checked at each flush (at most twice a
    second) and reopened when logrotate has moved it away.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._id: tuple[int, int] | None = None
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        st = os.fstat(self._fd)
        self._id = (st.st_dev, st.st_ino)

    def write(self, text: str) -> int:
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self._id
        except FileNotFoundError:
            moved = True
        if moved:
            os.close(self._fd)
            self._open()
        data = memoryview(text.encode("utf-8", "replace"))
        while data:
            data = data[os.write(self._fd, data) :]
        return len(text)

    def flush(self) -> None:
        """Nothing to do: every write goes straight to the file."""


def setup_logging(level: str, format: str = "text", file: str = "") -> None:
    """Configure the root logger; raises OSError when ``file`` cannot be opened."""
    global _stream
    handler: logging.Handler
    if file:
        # WatchedFileHandler reopens the file after logrotate moved it (no SIGHUP needed).
        handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
        _stream = AppendFile(file)
    else:
        handler = logging.StreamHandler(sys.stderr)
        _stream = sys.stderr
    handler.setFormatter(JSONFormatter() if format == "json" else logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_stream() -> TextIO | AppendFile:
    """The destination chosen by :func:`setup_logging`, for the transaction log."""
    return _stream
