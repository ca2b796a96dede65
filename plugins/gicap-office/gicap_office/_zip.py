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

import io
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    #: member name -> CRC-32 of its data (checked when read)
    crcs: dict[str, int] = field(default_factory=dict)


def _check_name(name: str) -> None:
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        raise ZipRefused(f"unsafe member name {name!r}")
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
        raise ZipRefused(f"unsafe member name {name!r}")


def read(path: Path, limits: Mapping[str, int]) -> ZipContent:
    max_expanded = int(limits.get("max_expanded_bytes") or MAX_EXPANDED)
    max_ratio = int(limits.get("max_ratio") or MAX_RATIO)
    try:
        # one read of the whole file (its size is bounded by max_file_size): the members
        # are then cut out of this buffer, with no seek and read per member
        buf = path.read_bytes()
        zf = zipfile.ZipFile(io.BytesIO(buf))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ZipRefused(f"not a readable zip: {exc}") from None
    size = len(buf)
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
        crcs: dict[str, int] = {}
        for info in infos:
            if not info.is_dir():
                members[info.filename] = _read_member(buf, info)
                crcs[info.filename] = info.CRC
        tight = _is_tight(buf, zf, infos) and not directories
    return ZipContent(members, tight, directories, crcs)


def _read_member(buf: bytes, info: zipfile.ZipInfo) -> bytes:
    """A member's data, inflated at most to its declared size and checked against its
    CRC. (Never its compressed stream: every member written is deflated anew, so no
    bit of the original encoding reaches the output.)"""
    name = info.filename
    offset = info.header_offset
    header = buf[offset : offset + 30]
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise ZipRefused(f"corrupt member: bad local header for {name!r}")
    (flags,) = struct.unpack_from("<H", header, 6)
    nlen, xlen = struct.unpack_from("<HH", header, 26)
    if flags & 0x61 or info.flag_bits & 0x60:  # encrypted, patched or strongly encrypted
        raise ZipRefused(f"corrupt member: unsupported flags on {name!r}")
    try:
        local_name = buf[offset + 30 : offset + 30 + nlen].decode(
            "utf-8" if flags & 0x800 else "cp437"
        )
    except UnicodeDecodeError:
        local_name = None
    if local_name != info.orig_filename:
        raise ZipRefused(f"corrupt member: local and central names differ for {name!r}")
    start = offset + 30 + nlen + xlen
    raw = buf[start : start + info.compress_size]
    if len(raw) != info.compress_size:
        raise ZipRefused(f"corrupt member: {name!r} is truncated")
    # as zipfile reads: never more than the declared size, less only where the data
    # ends (the CRC then decides)
    if info.compress_type == zipfile.ZIP_STORED:
        data = raw[: info.file_size]
    else:
        inflater = zlib.decompressobj(-15)
        try:
            # Never more than the declared size (the size checks bound the memory
            # used); zlib reads a limit of 0 as "no limit", hence the extra byte, cut.
            data = inflater.decompress(raw, info.file_size + 1)[: info.file_size]
        except zlib.error as exc:
            raise ZipRefused(f"corrupt member: {name!r}: {exc}") from None
        if len(data) < info.file_size and not inflater.eof:
            raise ZipRefused(f"corrupt member: {name!r} ends before its end of stream")
    if zlib.crc32(data) != info.CRC:
        raise ZipRefused(f"corrupt member: bad CRC-32 for {name!r}")
    return data


def _is_tight(buf: bytes, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> bool:
    """Whether the entries follow each other from offset 0 up to the central directory,
    with the local names equal to the central ones, and the file ends with the end
    record (no comment). Anything else (prepended or appended data, gaps between the
    entries, names that differ between the two directories) can make readers disagree
    on the content, so such a file is always rewritten."""
    if zf.comment:
        return False
    size = len(buf)
    ordered = sorted(infos, key=lambda i: i.header_offset)
    pos = 0
    try:
        for info in ordered:
            if info.header_offset != pos:
                return False
            header = buf[pos : pos + 30]
            if len(header) != 30 or header[:4] != b"PK\x03\x04":
                return False
            nlen, xlen = struct.unpack_from("<HH", header, 26)
            name = buf[pos + 30 : pos + 30 + nlen]
            if name.decode("utf-8" if info.flag_bits & 0x800 else "cp437") != info.orig_filename:
                return False
            pos += 30 + nlen + xlen + info.compress_size
            if info.flag_bits & 0x8:  # data descriptor after the data
                desc = buf[pos : pos + 24]
                zip64 = info.file_size >= 0xFFFFFFFF or info.compress_size >= 0xFFFFFFFF
                length = 20 if zip64 else 12
                if desc[:4] == b"PK\x07\x08":
                    length += 4
                pos += length
        start_dir = getattr(zf, "start_dir", None)
        if start_dir is None or start_dir != pos:
            return False
        # the end record follows the central directory (zip64 records allowed)
        end = buf[max(size - 22, 0) :]
        if end[:4] != b"PK\x05\x06":
            return False
        cd_size = struct.unpack_from("<I", end, 12)[0]
        tail = size - (start_dir + cd_size)
        return tail in (22, 22 + 56 + 20)
    except (UnicodeDecodeError, struct.error):
        return False


#: Local header, central directory entry and end record (no zip64: see :func:`write`).
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s4B4H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_DOS_DATE = (_EPOCH[0] - 1980) << 9 | _EPOCH[1] << 5 | _EPOCH[2]
_DOS_TIME = _EPOCH[3] << 11 | _EPOCH[4] << 5 | _EPOCH[5] // 2
#: Sizes and offsets past this need zip64 records: written by :mod:`zipfile` instead.
_ZIP32_LIMIT = 0x7FFFFFFF
#: Central directory: signature, made by version 2.0 on Unix, needs version 2.0.
_CENTRAL_HEAD = (b"PK\x01\x02", 20, 3, 20, 0)
_ATTRIBUTES = 0o600 << 16  # -rw-------


def write(
    path: Path, members: Iterable[tuple[str, bytes]], source: ZipContent | None = None
) -> None:
    """A new zip with only these members, each deflated anew (already compressed media
    stored). ``source``: the zip the members come from; a member that is still the very
    bytes read from it keeps the CRC-32 checked then."""
    items = list(members)
    known = source.members if source is not None else {}
    if len(items) > 0xFFFF or sum(len(d) for _, d in items) > _ZIP32_LIMIT:
        _write_zip64(path, items)
        return
    entries: list[tuple[bytes, int, int, int, int, int, bytes]] = []
    offset = 0
    for name, data in items:
        name_bytes, flags = _encode_name(name)
        if source is not None and known.get(name) is data:
            crc = source.crcs[name]
        else:
            crc = zlib.crc32(data)
        if _precompressed(name, data):
            method, payload = zipfile.ZIP_STORED, data
        else:
            method, payload = zipfile.ZIP_DEFLATED, zlib.compress(data, COMPRESS_LEVEL, -15)
        entries.append((name_bytes, flags, method, crc, len(data), offset, payload))
        offset += _LOCAL.size + len(name_bytes) + len(payload)
        if offset > _ZIP32_LIMIT:  # deflated bigger than the data: rare
            _write_zip64(path, items)
            return
    directory = []
    with open(path, "wb") as fh:
        for name_bytes, flags, method, crc, size, at, payload in entries:
            fields = (flags, method, _DOS_TIME, _DOS_DATE, crc, len(payload), size)
            fh.write(_LOCAL.pack(b"PK\x03\x04", 20, *fields, len(name_bytes), 0))
            fh.write(name_bytes)
            fh.write(payload)
            extra = (len(name_bytes), 0, 0, 0, 0, _ATTRIBUTES, at)
            directory.append(_CENTRAL.pack(*_CENTRAL_HEAD, *fields, *extra))
            directory.append(name_bytes)
        central = b"".join(directory)
        fh.write(central)
        count = len(entries)
        fh.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, len(central), offset, 0))


def _encode_name(name: str) -> tuple[bytes, int]:
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), 0x800  # the "language encoding" flag: UTF-8 name


def _write_zip64(path: Path, items: list[tuple[str, bytes]]) -> None:
    """The same package written by :mod:`zipfile`, with zip64 records where needed
    (every member deflated anew): for packages too big for plain zip records."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in items:
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
