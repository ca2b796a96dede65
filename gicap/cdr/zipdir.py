"""The central directory of a zip file, read from its raw headers.

``zipfile`` builds a Python object for every entry of the central directory before
anything can be asked of it, and a few MB of directory (a few hundred KB once
gzip-encoded in transit) can describe millions of entries: seconds of CPU and
hundreds of MB. Detection and the archive engine count the entries here first.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_HEADER_SIZE = 46
_END_SIGNATURE = b"PK\x05\x06"


def count_entries(fp: BinaryIO, size: int, limit: int) -> int:
    """Entries of the central directory of the zip file ``fp`` (``size`` bytes),
    counted up to ``limit + 1`` from the raw headers (the declared total when it is
    already larger). 0 when there is no end record that ``zipfile`` would read: it
    then reports the archive as malformed.

    The end record is found as ``zipfile`` finds it: the last 22 bytes when they are
    one with no comment (its own fields may hold the signature bytes), else the last
    signature in the final 64 KiB and 22 bytes (zipfile reads one byte more than a
    comment can hold: so does this, or an end record there escaped the count)."""
    tail_len = min(size, _EOCD.size + (1 << 16))
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    last = tail[-_EOCD.size :]
    if len(last) == _EOCD.size and last.startswith(_END_SIGNATURE) and last[-2:] == b"\0\0":
        pos = tail_len - _EOCD.size
    else:
        pos = tail.rfind(_END_SIGNATURE)
        if pos < 0 or tail_len - pos < _EOCD.size:
            return 0
    _sig, _disk, _cd_disk, _n_disk, total, cd_size, _cd_offset, _clen = _EOCD.unpack_from(tail, pos)
    end = size - tail_len + pos  # where the directory ends (a zip64 record may follow)
    # A zip64 end record is read whenever its locator comes just before the end
    # record, as zipfile reads it (not only when the fields above are saturated).
    at = end - _EOCD64_LOCATOR.size - _EOCD64.size
    if at >= 0:
        fp.seek(at)
        rec = fp.read(_EOCD64.size + _EOCD64_LOCATOR.size)
        if rec[:4] == b"PK\x06\x06" and rec[_EOCD64.size : _EOCD64.size + 4] == b"PK\x06\x07":
            total, cd_size = _EOCD64.unpack(rec[: _EOCD64.size])[7:9]
            end = at
    if total > limit:
        return total
    # The directory ends where the end record starts, even with data prepended to the
    # archive (zipfile finds it the same way).
    start = end - cd_size
    if start < 0:
        return 0
    count = 0
    fp.seek(start)
    while count <= limit:
        header = fp.read(_CENTRAL_HEADER_SIZE)
        if len(header) < _CENTRAL_HEADER_SIZE or header[:4] != b"PK\x01\x02":
            break
        name_len, extra_len, comment_len = struct.unpack_from("<3H", header, 28)
        fp.seek(name_len + extra_len + comment_len, 1)
        count += 1
    return count
