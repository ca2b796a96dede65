"""The central directory counted from the raw headers, before ``zipfile`` builds an
object per entry (a few hundred KB of gzip-encoded download can list millions)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from gicap.cdr import detect
from gicap.cdr.zipdir import count_entries


def _many_entries(n: int, declared: tuple[int, int] = (0xFFFF, 0xFFFF)) -> bytes:
    """A zip whose directory lists ``n`` entries, all of one 1-byte member; the end
    record declares ``declared`` (entries on this disk, in all)."""
    crc = zlib.crc32(b"x")
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, 1, 1, 1, 0)
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc, 1, 1, 1, 0, 0, 0, 0, 0, 0
    )
    local += b"a" + b"x"
    central += b"a"
    directory = central * n
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, *declared, len(directory), len(local), 0)
    return local + directory + end


def _count(data: bytes, limit: int) -> int:
    return count_entries(io.BytesIO(data), len(data), limit)


def test_entries_are_counted_up_to_the_limit() -> None:
    assert _count(_many_entries(5, (5, 5)), 10) == 5
    assert _count(_many_entries(50, (5, 5)), 10) == 11  # (the record lies: counted)


def test_an_end_record_holding_its_own_signature_is_read() -> None:
    """The entry counts of the end record spell "PK\\x05\\x06": the last signature
    found is inside the record, but zipfile reads the record at the end (22 bytes,
    no comment), and so is it counted."""
    data = _many_entries(2000, (0x4B50, 0x0605))
    assert data[-22:].count(b"PK\x05\x06") == 2
    assert _count(data, 1000) > 1000


def test_detection_does_not_read_a_huge_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond an Office package's size a zip is a zip: zipfile is not asked."""
    path = tmp_path / "many.zip"
    path.write_bytes(_many_entries(detect.MAX_PACKAGE_ENTRIES + 1))
    opened: list[object] = []
    real = zipfile.ZipFile

    def spy(*args: object, **kwargs: object) -> zipfile.ZipFile:
        opened.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(detect.zipfile, "ZipFile", spy)
    found = detect.detect(path.read_bytes()[:4096], str(path), None)
    assert found is not None and found.name == "zip"
    assert opened == []
    small = tmp_path / "small.zip"
    small.write_bytes(_many_entries(3, (3, 3)))
    assert detect.detect(small.read_bytes()[:4096], str(small), None).name == "zip"
    assert len(opened) == 1  # (a usual zip is read, for Office packages)


def test_an_end_record_as_far_from_the_end_as_zipfile_looks_is_counted() -> None:
    """zipfile looks for the end record in the last 64 KiB and 22 bytes, one byte
    more than a comment can hold: an archive padded by 65,536 bytes was counted as
    empty while zipfile read its whole directory."""
    data = _many_entries(2000, (2000, 2000)) + bytes(1 << 16)
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()  # (zipfile finds it)
    assert _count(data, 1000) > 1000
