"""Archives found by an adversarial review of the ZIP engine: members whose names
Windows reads otherwise, an SVG hidden from detection, structures that made the
engine raise, and members overlapping through their local extra field."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import gicap_archive
import pytest

from gicap.cdr.types import DisarmResult
from gicap.cdr.zipdir import count_entries
from tests.plugins.test_archive import DANGEROUS, _cells, _disarm, _members_of, _request, _zip

FORMULAS = b"=1+1,=2*3\nhello\nworld,foo,bar\n"


# fmt: off
def _cd(name: bytes, data: bytes, offset: int) -> bytes:
    """A central directory entry for a stored member."""
    crc, size, attrs = zlib.crc32(data), len(data), 0o100644 << 16
    return struct.pack(
        "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0x5263, crc, size, size,
        len(name), 0, 0, 0, 0, attrs, offset,
    ) + name


def _local(name: bytes, data: bytes, extra: bytes = b"") -> bytes:
    """A local header and the stored data."""
    crc, size = zlib.crc32(data), len(data)
    return struct.pack(
        "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0x5263, crc, size, size,
        len(name), len(extra),
    ) + name + extra + data
# fmt: on


def _end(n: int, directory: bytes, offset: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(directory), offset, 0)


@pytest.mark.parametrize(
    "name",
    [
        "evil.csv.",
        "evil.csv ",
        "docs/evil.csv. ",
        "a. /b.csv",
        "evil.csv::$DATA",
        "a:b.csv",
        # (a review: extractors drop a last "." or empty segment; names that read as
        # another extension once mapped to ASCII)
        "evil.csv/.",
        "evil.csv\\",
        "evil.ｃｓｖ",
        "evil.csv．",
    ],
)
def test_names_windows_extracts_otherwise_are_removed(tmp_path: Path, name: str) -> None:
    # Windows drops trailing dots and spaces: "evil.csv." is written as evil.csv
    request = _request(tmp_path, _zip([(name, FORMULAS), ("ok.txt", b"fine\n")]))
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    names = [n for n, _ in _members_of(request.destination.read_bytes())]
    assert names == ["ok.txt"]
    assert any(a.switch == "unsafe_name" and a.action == "removed" for a in result.actions)


@pytest.mark.parametrize("name", [".csv", "docs/.csv"])
def test_a_name_that_is_only_an_extension_keeps_its_type(tmp_path: Path, name: str) -> None:
    request = _request(tmp_path, _zip([(name, FORMULAS)]))
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    data = dict(_members_of(request.destination.read_bytes()))[name]
    assert not any(c.startswith(DANGEROUS) for c in _cells(data))


def test_svg_behind_a_long_comment_is_disarmed_as_svg(tmp_path: Path) -> None:
    svg = (
        b"<!--" + b"x" * 9000 + b'-->\n<s:svg xmlns:s="http://www.w3.org/2000/svg" '
        b'onload="alert(1)"><s:script>alert(2)</s:script><s:rect width="1"/></s:svg>'
    )
    request = _request(tmp_path, _zip([("pic.svg", svg)]))
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    out = dict(_members_of(request.destination.read_bytes()))["pic.svg"]
    assert b"alert" not in out and b"onload" not in out and b"script" not in out


def test_text_named_as_svg_is_not_delivered_as_text(tmp_path: Path) -> None:
    # a browser renders it as SVG: the SVG engine judges it (not an SVG: refused)
    request = _request(tmp_path, _zip([("notes.svg", b"plain words, not markup\n")]))
    result = _disarm(request)
    assert result.outcome in ("blocked", "unprocessable"), result


def test_member_with_an_empty_name_is_answered(tmp_path: Path) -> None:
    body = _local(b"", b"x")
    directory = _cd(b"", b"x", 0)
    request = _request(tmp_path, body + directory + _end(1, directory, len(body)))
    result = gicap_archive.gicap_disarm(request=request)
    assert isinstance(result, DisarmResult)
    assert result.outcome in ("unprocessable", "rebuilt"), result


def test_directory_offset_off_by_one_is_answered(tmp_path: Path) -> None:
    good = _zip([("a.txt", b"hello\n")])
    at = good.rfind(b"PK\x05\x06")
    offset = struct.unpack_from("<L", good, at + 16)[0]
    bad = good[: at + 16] + struct.pack("<L", offset + 1) + good[at + 20 :]
    result = gicap_archive.gicap_disarm(request=_request(tmp_path, bad))
    assert result is not None and result.outcome == "unprocessable", result


def test_members_overlapping_through_the_local_extra_field_are_refused(tmp_path: Path) -> None:
    b_local = _local(b"b.txt", b"hello from b\n")
    extra = struct.pack("<HH", 0xCAFE, 60) + b"\0" * 60
    a_local = _local(b"a.txt", b_local, extra)  # A's data is B's whole record
    directory = _cd(b"a.txt", b_local, 0) + _cd(
        b"b.txt", b"hello from b\n", len(a_local) - len(b_local)
    )
    data = a_local + directory + _end(2, directory, len(a_local))
    result = gicap_archive.gicap_disarm(request=_request(tmp_path, data))
    assert result is not None and result.outcome == "unprocessable", result
    assert "overlap" in result.reason


def test_entries_counted_from_a_zip64_end_record_zipfile_reads(tmp_path: Path) -> None:
    """The 32-bit end record says 1 entry, the zip64 one (which zipfile uses whenever
    its locator is there) 45,000: the count before zipfile reads the directory sees
    the zip64 figure."""
    n = 45_000
    directory = b"".join(_cd(b"%d" % i, b"", 0) for i in range(n))
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(directory), 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(directory), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 47, len(directory) - 47, 0)
    data = directory + end64 + locator + end
    path = tmp_path / "z64.zip"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        assert count_entries(fh, len(data), 1000) > 1000
    result = gicap_archive.gicap_disarm(request=_request(tmp_path, data))
    assert result is not None and result.outcome == "unprocessable", result


def test_members_that_expand_too_much_together_are_refused(tmp_path: Path) -> None:
    """40 members of 1 MiB each, just at the floor of the ratio check (400:1 each):
    840 bytes sent gzip-encoded kept the engines busy for half a minute."""
    members = [
        (f"page{i}.html", b"<p>" + b"a" * (gicap_archive.RATIO_FLOOR - 3)) for i in range(40)
    ]
    result = _disarm(_request(tmp_path, _zip(members)))
    assert result.outcome == "unprocessable" and "in all" in result.reason, result
    # (a member stored as it is, padding, does not dilute the ratio of the others)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
        zf.writestr("padding.txt", b"\n" * (480 << 10), zipfile.ZIP_STORED)
    result = _disarm(_request(tmp_path, buf.getvalue()))
    assert result.outcome == "unprocessable" and "in all" in result.reason, result


def test_archives_nested_under_the_ratio_floor_each_count_together(tmp_path: Path) -> None:
    """Each archive's expansion was held to max_ratio only above a floor of 1 MiB:
    80 inner archives, each of one CSV member just under it, passed every check from
    16 KB and took 28 s of engines' time (the job timeout is 30 s). The archives of
    a file count together against the file sent, the floor granted once."""
    member = b"=1," * (gicap_archive.RATIO_FLOOR // 3 - 10)
    inner = _zip([("data.csv", member)])
    outer = _zip([(f"part{i}.zip", inner) for i in range(80)])
    assert len(outer) < 20_000
    result = _disarm(_request(tmp_path, outer))
    assert result.outcome == "unprocessable", result
    assert "the archives of this file expand" in result.reason


def test_a_few_nested_archives_of_ordinary_text_pass(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    words = ["report", "gateway", "proxy", "file", "policy", "page", "alpha", "beta"]
    text = "".join(
        " ".join(rng.choice(words) for _ in range(8)) + f" {rng.random()}\n" for _ in range(20_000)
    ).encode()
    inner = _zip([("notes.txt", text)])
    outer = _zip([("a.zip", inner), ("b.zip", inner)])
    assert _disarm(_request(tmp_path, outer)).outcome == "rebuilt"


@pytest.mark.parametrize("space", ["\u00a0", "\u3000", "\u2028", "\ufeff"])
def test_a_member_named_with_a_space_after_its_extension_is_judged_by_it(
    tmp_path: Path, space: str
) -> None:
    """A member named "report.csv" and a no-break space (or U+3000, U+2028, U+FEFF)
    had no extension in the archive engine, which judged it as text: its formula went
    out as it came. Saved by a browser, or named so at the top level, it is a CSV."""
    data = b'a,"=WEBSERVICE(""http://127.0.0.1:9/x"")"\n'
    request = _request(tmp_path, _zip([(f"report.csv{space}", data)]))
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    ((name, out),) = _members_of(request.destination.read_bytes())
    assert name == f"report.csv{space}" and b"'=WEBSERVICE" in out
