"""The OLE directory reader of the detector against olefile, file by file.

The detector lists an OLE file's top-level names and root CLSID straight from the
header, FAT and directory, and leaves every file it is not sure of to olefile. Here
olefile is the reference: on every file the reader answers for, olefile must give the
same names and CLSID and record no defect; and the detector's answer (reader or
olefile) must always be olefile's. The files are built here (both sector sizes, mini
and regular streams, storages, several tree shapes) and then damaged, field by field
and at random.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from gicap.cdr import detect as detect_module
from gicap.cdr.detect import detect
from tests.ole import END, FATSECT, FREE, MSI_CLSID, build

olefile = pytest.importorskip("olefile")


def olefile_listing(data: bytes) -> tuple[tuple[set[str], str] | None, list]:
    """What the detector read with olefile alone: top-level names and root CLSID (or
    ``None`` when olefile fails), and the defects olefile recorded."""
    try:
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            names = {e[0].lower() for e in ole.listdir(streams=True, storages=True) if len(e) == 1}
            return (names, ole.root.clsid or ""), list(ole.parsing_issues)
    except Exception:
        return None, []


def check(data: bytes, tmp_path: Path) -> tuple[set[str], str] | None:
    """The reader agrees with olefile whenever it answers; the detector always does."""
    fast = detect_module._ole_directory_plain(data.__getitem__, len(data))
    expected, issues = olefile_listing(data)
    if fast is not None:
        assert fast == expected
        assert issues == []
    path = tmp_path / "sample.ole"
    path.write_bytes(data)
    # the file read whole from the head, or from the disk (no head, a 4 KiB one)
    for head in (data, b"", data[:4096]):
        assert detect_module._ole_directory_from_file(str(path), head) == expected
    return fast


def samples() -> dict[str, bytes]:
    word = {"WordDocument": b"W" * 5000, "1Table": b"T" * 300, "\x05SummaryInformation": b"S" * 90}
    many = {f"Stream {i:03d}": bytes([i]) * (i * 37 % 5000) for i in range(60)}
    nested = {
        "Workbook": b"B" * 700,
        "_VBA_PROJECT_CUR": {"VBA": {"dir": b"d" * 100, "Module1": b"m" * 4200}, "PROJECT": b"p"},
        "MBD0001": {"\x01Ole10Native": b"x" * 64, "empty": {}},
    }
    out = {}
    for shape in ("balanced", "right", "left"):
        for shift in (9, 12):
            tag = f"{shape}-{shift}"
            out[f"doc-{tag}"] = build(word, shift=shift, shape=shape)
            out[f"many-{tag}"] = build(many, shift=shift, shape=shape)
            out[f"nested-{tag}"] = build(nested, shift=shift, shape=shape)
            out[f"msi-{tag}"] = build({"\u4840\u3b3f": b"t" * 10}, shift=shift, clsid=MSI_CLSID)
            out[f"encrypted-{tag}"] = build(
                {"EncryptionInfo": b"i" * 200, "EncryptedPackage": b"e" * 9000},
                shift=shift,
                shape=shape,
            )
    out["empty"] = build({})
    out["ppt"] = build({"PowerPoint Document": b"p" * 100, "Current User": b"u" * 40})
    return out


SAMPLES = samples()


@pytest.mark.parametrize("name", list(SAMPLES))
def test_well_formed_files_are_read_without_olefile(tmp_path: Path, name: str) -> None:
    fast = check(SAMPLES[name], tmp_path)
    assert fast is not None  # the reader answered: olefile was not needed


def test_the_kind_is_told_from_the_reader(tmp_path: Path) -> None:
    def kind(name: str) -> str | None:
        path = tmp_path / "f.bin"
        path.write_bytes(SAMPLES[name])
        found = detect(SAMPLES[name][:4096], str(path))
        return found.name if found else None

    assert kind("doc-balanced-9") == "doc"
    assert kind("doc-left-12") == "doc"
    assert kind("msi-right-9") == "msi"
    assert kind("msi-balanced-12") == "msi"
    assert kind("encrypted-right-9") == "ooxml_encrypted"
    assert kind("encrypted-left-12") == "ooxml_encrypted"
    assert kind("nested-balanced-9") == "xls"
    assert kind("ppt") == "ppt"
    assert kind("empty") == "ole"


def test_the_files_of_the_office_tests(tmp_path: Path) -> None:
    test_office = pytest.importorskip("tests.plugins.test_office")
    test_office_legacy = pytest.importorskip("tests.plugins.test_office_legacy")
    files = {**test_office.LEGACY, **test_office_legacy.CASES}
    for streams, _ in files.values():
        assert check(test_office.make_ole(streams), tmp_path) is not None
    for cfb in (test_office_legacy.LINK_STORAGE, test_office_legacy.LINK_STORAGE_WITH_FILE):
        assert check(cfb, tmp_path) is not None


def _u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<I", value) + data[at + 4 :]


def _u16(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<H", value) + data[at + 2 :]


def _dir_entry(data: bytes, sid: int) -> int:
    """Offset of directory entry ``sid`` in a file from :func:`build` (v3, one FAT
    sector, the directory right after it)."""
    first_dir = struct.unpack_from("<I", data, 48)[0]
    return 512 * (first_dir + 1) + 128 * sid


def _fat(data: bytes, sid: int) -> int:
    return 512 + 4 * sid


BASE = build({"WordDocument": b"W" * 5000, "1Table": b"T" * 300, "Data": b"D" * 64}, shape="right")
#: sid 1: "Data", 2: "1Table", 3: "WordDocument" (the build order), sids 4-7 unused
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "header clsid": lambda d: d[:8] + b"\x01" + d[9:],
    "version 4 with 512-byte sectors": lambda d: _u16(d, 26, 4),
    "byte order": lambda d: _u16(d, 28, 0xFEFF),
    "sector shift 10": lambda d: _u16(d, 30, 10),
    "mini sector shift": lambda d: _u16(d, 32, 7),
    "reserved": lambda d: _u16(d, 34, 1),
    "directory sectors in v3": lambda d: _u32(d, 40, 1),
    "FAT sector count": lambda d: _u32(d, 44, 2),
    "transaction signature": lambda d: _u32(d, 52, 1),
    "mini stream cutoff": lambda d: _u32(d, 56, 2048),
    "DIFAT": lambda d: _u32(_u32(d, 72, 1), 68, 0),
    "FAT sector out of the file": lambda d: _u32(d, 76, 5000),
    "FAT sector is FATSECT": lambda d: _u32(d, 76, FATSECT),
    "no FAT": lambda d: _u32(d, 76, END),
    "directory starts out of the FAT": lambda d: _u32(d, 48, 4000),
    "directory starts at the end": lambda d: _u32(d, 48, END),
    "directory chain loops": lambda d: _u32(d, _fat(d, 1), 1),
    "directory chain to a free sector": lambda d: _u32(d, _fat(d, 1), FREE),
    "directory chain runs on": lambda d: _u32(d, _fat(d, 1), 2),
    "directory sector past the end": lambda d: d[: 512 * 3 - 100],
    "root is a storage": lambda d: (
        d[: _dir_entry(d, 0) + 66] + b"\x01" + d[_dir_entry(d, 0) + 67 :]
    ),
    "second root": lambda d: d[: _dir_entry(d, 1) + 66] + b"\x05" + d[_dir_entry(d, 1) + 67 :],
    "unknown type in the tree": lambda d: (
        d[: _dir_entry(d, 2) + 66] + b"\x03" + d[_dir_entry(d, 2) + 67 :]
    ),
    "unused entry in the tree": lambda d: _u32(d, _dir_entry(d, 3) + 72, 4),
    "entry referenced twice": lambda d: _u32(d, _dir_entry(d, 3) + 68, 1),
    "root referenced": lambda d: _u32(d, _dir_entry(d, 3) + 72, 0),
    "child out of range": lambda d: _u32(d, _dir_entry(d, 3) + 72, 400),
    "stream with children": lambda d: _u32(d, _dir_entry(d, 1) + 76, 2),
    "duplicate names": lambda d: (
        d[: _dir_entry(d, 1)]
        + "1TABLE".encode("utf-16-le").ljust(64, b"\x00")
        + _u16(d, _dir_entry(d, 1) + 64, 14)[_dir_entry(d, 1) + 64 :]
    ),
    "name too long": lambda d: _u16(d, _dir_entry(d, 1) + 64, 66),
    "odd name length": lambda d: _u16(d, _dir_entry(d, 1) + 64, 9),
    "empty name length": lambda d: _u16(d, _dir_entry(d, 1) + 64, 0),
    "size high word": lambda d: _u32(d, _dir_entry(d, 3) + 124, 1),
    "storage with a size": lambda d: (
        d[: _dir_entry(d, 1) + 66]
        + b"\x01"
        + _u32(d, _dir_entry(d, 1) + 120, 10)[_dir_entry(d, 1) + 67 :]
    ),
    "two streams share a start": lambda d: _u32(
        d, _dir_entry(d, 2) + 116, struct.unpack_from("<I", d, _dir_entry(d, 1) + 116)[0]
    ),
    "stream starts at the directory": lambda d: _u32(
        _u32(d, _dir_entry(d, 3) + 116, struct.unpack_from("<I", d, 48)[0]),
        _dir_entry(d, 3) + 120,
        5000,
    ),
    "root stream at the directory": lambda d: _u32(
        d, _dir_entry(d, 0) + 116, struct.unpack_from("<I", d, 48)[0]
    ),
    "truncated": lambda d: d[:1000],
    "trailing partial sector": lambda d: d + b"x" * 100,
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_files(tmp_path: Path, name: str) -> None:
    check(DAMAGE[name](BASE), tmp_path)


def test_deep_trees_are_left_to_olefile(tmp_path: Path) -> None:
    """olefile walks the tree recursively: a long chain of siblings is read by olefile,
    whatever it makes of it."""
    chained = build({f"s{i}": b"x" for i in range(120)}, shape="right")
    assert detect_module._ole_directory_plain(chained.__getitem__, len(chained)) is None
    check(chained, tmp_path)
    assert check(build({f"s{i}": b"x" for i in range(120)}), tmp_path) is not None


def test_random_damage(tmp_path: Path) -> None:
    """Bytes of the header, FAT and directory changed at random."""
    rng = random.Random(1234)
    bases = [BASE, SAMPLES["nested-balanced-9"], SAMPLES["encrypted-right-12"]]
    answered = 0
    for _ in range(1500):
        data = bytearray(rng.choice(bases))
        region = 512 * 4 if data[30] == 9 else 4096 * 3
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(min(region, len(data)))
            data[at] = rng.choice((0, 1, 2, 0xFF, 0xFE, rng.randrange(256)))
        answered += check(bytes(data), tmp_path) is not None
    assert answered  # some damage is harmless (unused bytes): those are still answered


def test_a_well_formed_file_is_not_parsed_by_olefile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = SAMPLES["nested-balanced-12"]
    path = tmp_path / "f.ole"
    path.write_bytes(data)
    expected, _ = olefile_listing(data)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("olefile was used")

    monkeypatch.setattr(olefile, "OleFileIO", refuse)
    for head in (data, b"", data[:4096]):
        assert detect_module._ole_directory_from_file(str(path), head) == expected
