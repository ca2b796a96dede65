"""Reading a file whole (or its head) in one go, for engines and the CDR job.

A buffered file object costs more to set up than a small file costs to read: most
files a CDR worker sees are small, and each is read once.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_bytes(path: Path, size: int | None = None) -> bytes:
    """The file's bytes, or its first ``size`` of them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        parts = []
        left = size
        while left is None or left > 0:
            # (a read allocates what it asks: the file's size, one byte more to see
            # its end, or what is left of ``size``)
            part = os.read(fd, os.fstat(fd).st_size + 1 if left is None else left)
            if not part:
                break
            parts.append(part)
            if left is not None:
                left -= len(part)
        return b"".join(parts)
    finally:
        os.close(fd)
