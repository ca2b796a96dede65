"""Reading an OOXML zip safely, and writing the rebuilt one.

Everything is checked from the central directory *before* anything is inflated: the
number of members, each member's declared size, the total, the compression ratio,
the names (no absolute paths, ``..``, backslashes or drive letters, no two names equal
ignoring case: OPC part names are case-insensitive), the compression method (stored or
deflate, what Office writes) and zip encryption (never used by Office). ``zipfile``
then stops inflating a member at its declared size and checks its CRC, so the declared
sizes bound the memory used.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Most members an Office package may have (large decks have a few thousand parts).
MAX_MEMBERS = 20_000
#: Default bound on the inflated size of all members (``max_expanded_bytes`` wins).
MAX_EXPANDED = 1024 * 1024 * 1024
#: Default ratio bound (``max_ratio`` wins), checked on the whole package and on each
#: member bigger than :data:`RATIO_FLOOR` (small XML parts legitimately reach high
#: ratios; only big ones can make a bomb).
MAX_RATIO = 100
RATIO_FLOOR = 1024 * 1024

#: zlib level of the rebuilt zip's deflated (XML) parts: zlib's fastest level.
COMPRESS_LEVEL = 1

# A fixed timestamp makes the output reproducible (and leaks no clock).
_EPOCH = (1980, 1, 1, 0, 0, 0)


class ZipRefused(ValueError):
    """The zip is unsafe or malformed; ``bomb`` tells a bomb from a broken file."""

    def __init__(self, message: str, bomb: bool = False) -> None:
        super().__init__(message)
        self.bomb = bomb


@dataclass
class ZipContent:
    #: member name -> bytes, in the zip's order (directory entries left out)
    members: dict[str, bytes]
    #: whether the file holds exactly its entries and directory and nothing else
    tight: bool
    #: directory entries found (dropped from the rebuilt zip)
    directories: int


def _check_name(name: str) -> None:
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        raise ZipRefused(f"unsafe member name {name!r}")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
        raise ZipRefused(f"unsafe member name {name!r}")


def read(path: Path, limits: Mapping[str, int]) -> ZipContent:
    max_expanded = int(limits.get("max_expanded_bytes") or MAX_EXPANDED)
    max_ratio = int(limits.get("max_ratio") or MAX_RATIO)
    size = path.stat().st_size
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ZipRefused(f"not a readable zip: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ZipRefused(f"{len(infos)} members, more than {MAX_MEMBERS}", bomb=True)
        seen: set[str] = set()
        total = 0
        directories = 0
        for info in infos:
            _check_name(info.filename)
            key = info.filename.lower()
            if key in seen:
                raise ZipRefused(f"duplicate member name {info.filename!r}")
            seen.add(key)
            if info.is_dir():
                directories += 1
                continue
            if info.flag_bits & 0x1:
                raise ZipRefused(f"member {info.filename!r} is zip-encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ZipRefused(
                    f"member {info.filename!r} uses compression method {info.compress_type}"
                )
            total += info.file_size
            if total > max_expanded:
                raise ZipRefused(f"expands to more than {max_expanded} bytes", bomb=True)
            if info.file_size > RATIO_FLOOR and info.file_size > max_ratio * max(
                info.compress_size, 1
            ):
                raise ZipRefused(
                    f"member {info.filename!r} has a compression ratio over {max_ratio}",
                    bomb=True,
                )
        if total > RATIO_FLOOR and total > max_ratio * max(size, 1):
            raise ZipRefused(f"compression ratio over {max_ratio}", bomb=True)
        members: dict[str, bytes] = {}
        try:
            for info in infos:
                if not info.is_dir():
                    members[info.filename] = zf.read(info)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
            raise ZipRefused(f"corrupt member: {exc}") from None
        tight = _is_tight(path, zf, infos, size) and not directories
    return ZipContent(members, tight, directories)


def _is_tight(path: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], size: int) -> bool:
    """Whether the entries follow each other from offset 0 up to the central directory,
    with the local names equal to the central ones, and the file ends with the end
    record (no comment). Anything else (prepended or appended data, gaps between the
    entries, names that differ between the two directories) can make readers disagree
    on the content, so such a file is always rewritten."""
    if zf.comment:
        return False
    ordered = sorted(infos, key=lambda i: i.header_offset)
    pos = 0
    try:
        with open(path, "rb") as fh:
            for info in ordered:
                if info.header_offset != pos:
                    return False
                fh.seek(pos)
                header = fh.read(30)
                if len(header) != 30 or header[:4] != b"PK\x03\x04":
                    return False
                nlen, xlen = struct.unpack_from("<HH", header, 26)
                name = fh.read(nlen)
                if (
                    name.decode("utf-8" if info.flag_bits & 0x800 else "cp437")
                    != info.orig_filename
                ):
                    return False
                pos += 30 + nlen + xlen + info.compress_size
                if info.flag_bits & 0x8:  # data descriptor after the data
                    fh.seek(pos)
                    desc = fh.read(24)
                    zip64 = info.file_size >= 0xFFFFFFFF or info.compress_size >= 0xFFFFFFFF
                    length = 20 if zip64 else 12
                    if desc[:4] == b"PK\x07\x08":
                        length += 4
                    pos += length
            start_dir = getattr(zf, "start_dir", None)
            if start_dir is None or start_dir != pos:
                return False
            # the end record follows the central directory (zip64 records allowed)
            fh.seek(max(size - 22, 0))
            end = fh.read(22)
            if end[:4] != b"PK\x05\x06":
                return False
            cd_size = struct.unpack_from("<I", end, 12)[0]
            tail = size - (start_dir + cd_size)
            return tail in (22, 22 + 56 + 20)
    except (OSError, UnicodeDecodeError, struct.error):
        return False


def write(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    """A new zip with only these members, deflated (already compressed media stored)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o600 << 16
            stored = _precompressed(name, data)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=None if stored else COMPRESS_LEVEL)


_COMPRESSED_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"PK\x03\x04", b"RIFF")


def _precompressed(name: str, data: bytes) -> bool:
    # Deflating JPEG/PNG/GIF/zip data costs time and gains nothing; Office reads stored
    # members as well as deflated ones.
    return len(data) > 4096 and data.startswith(_COMPRESSED_MAGIC)
