"""Request bodies: kept in memory up to a threshold, then spooled to a file, so
memory use does not grow with the size of the files passing through."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

READ_SIZE = 64 * 1024
#: The first bytes of a body a service is shown when it passes its limit.
HEAD_SIZE = 64 * 1024


class Spool:
    def __init__(self, threshold: int, directory: str = "") -> None:
        self.threshold = threshold
        self.directory = directory or None
        self.size = 0
        #: Bytes kept at most (None: all): past it the body is dropped, memory and
        #: file, and only counted (``overflowed``); the service answers without it.
        self.limit: int | None = None
        #: Asked once the limit is passed, with the body's first bytes: drop it?
        self.over_limit: Callable[[bytes], bool] | None = None
        self.overflowed = False
        self._parts: list[bytes] = []
        self._file: BinaryIO | None = None

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.overflowed:
            return
        if self.limit is not None and self.size > self.limit:
            if self.over_limit is None or self.over_limit(self.head(HEAD_SIZE)):
                self.overflowed = True
                self.close()  # (what was kept goes: its disk space with it)
                return
            self.limit = None  # (kept whole after all: a page relayed, say)
        if self._file is not None:
            self._file.write(data)
            return
        self._parts.append(data)
        if self.size > self.threshold:
            # Unnamed temporary file: nothing is left behind even if we crash.
            f = tempfile.TemporaryFile(prefix="gicap-body-", dir=self.directory)
            for part in self._parts:
                f.write(part)
            self._parts = []
            self._file = f  # type: ignore[assignment]

    def chunks(self, size: int = READ_SIZE) -> Iterator[bytes]:
        """The body from the start, in pieces of at most about ``size`` bytes."""
        if self.overflowed:
            raise RuntimeError(f"the body was not kept: {self.size} bytes, over {self.limit}")
        if self._file is None:
            yield from self._parts
            return
        self._file.flush()
        fd = self._file.fileno()
        offset = 0
        while True:
            data = os.pread(fd, size, offset)
            if not data:
                return
            offset += len(data)
            yield data

    def head(self, n: int) -> bytes:
        """The body's first ``n`` bytes (all of it when shorter)."""
        out: list[bytes] = []
        size = 0
        for piece in self.chunks():
            out.append(piece[: n - size])
            size += len(out[-1])
            if size >= n:
                break
        return b"".join(out)

    def getvalue(self) -> bytes:
        return b"".join(self.chunks())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._parts = []

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
