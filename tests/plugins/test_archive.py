"""The gicap-archive plugin: ZIP archives checked before expanding, unsafe entries
dropped, members disarmed by their own engines (recursively), a new archive written.

The corpus is generated here. The independent detector of the results is the
standard library's ``zipfile`` listing and ``csv`` reader, and Info-ZIP ``unzip``
(``unzip -Z1`` / ``unzip -tq``) where installed. CSV members are disarmed by the
installed gicap-text plugin through gicap's real pipeline (``gicap.cdr.job``).
"""

from __future__ import annotations

import csv
import io
import shutil
import stat
import struct
import subprocess
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import gicap_archive
import pytest

from gicap.cdr import job
from gicap.cdr.policy import FALLBACKS, build_profile
from gicap.cdr.types import Action, DisarmRequest, DisarmResult, FileType
from tests.support import require_tool

ZIP = FileType("zip", "archive", "application/zip", "zip")
DOCX = FileType("docx", "office", "application/vnd.openxmlformats", "docx")
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
MAX_FILE_SIZE = 100 * 1024 * 1024
WHEN = (2021, 3, 4, 5, 6, 8)
FORMULA_CSV = b"name,value\nx,=cmd|' /C calc'!A0\ny,@SUM(1,1)\nz,3\n"
#: Not recognised by any detector: NULs rule out text, no magic number.
OPAQUE = b"\x00\x01\x02GICAP-TEST-BLOB\x00" * 64


# --------------------------------------------------------------------------- tools


def _require_tool(name: str) -> str:
    return require_tool(name, "zip, unzip")


# --------------------------------------------------------------------------- corpus


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], comment: bytes = b"") -> bytes:
    """A zip made by ``zipfile`` (deflated), entries in this order."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names on purpose
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in entries:
                info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name, WHEN)
                if info.compress_type == zipfile.ZIP_STORED and not info.is_dir():
                    info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
            zf.comment = comment
    return buf.getvalue()


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, WHEN)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


@dataclass
class Raw:
    """A member of a hand-made zip: the declared fields are whatever we say."""

    name: bytes
    payload: bytes  # the stored (already compressed) bytes
    file_size: int
    crc: int = 0
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0
    at: int | None = None  # point the directory entry at member #at's local header


def _raw_zip(members: list[Raw], declared_total: int | None = None) -> bytes:
    """A zip written byte by byte (zipfile cannot write lies or overlaps)."""
    body = b""
    offsets = []
    for m in members:
        offsets.append(len(body))
        body += struct.pack(
            "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, m.flags, m.method, 0, 0x5263,
            m.crc, len(m.payload), m.file_size, len(m.name), 0,
        ) + m.name + m.payload  # fmt: skip
    directory = b""
    for i, m in enumerate(members):
        offset = offsets[m.at if m.at is not None else i]
        directory += struct.pack(
            "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, m.flags, m.method, 0, 0x5263,
            m.crc, len(m.payload), m.file_size, len(m.name), 0, 0, 0, 0, 0o100644 << 16, offset,
        ) + m.name  # fmt: skip
    total = len(members) if declared_total is None else declared_total
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, total, total, len(directory), len(body), 0)
    return body + directory + end


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _nested(levels: int, innermost: bytes = FORMULA_CSV) -> bytes:
    """``levels`` zips, each holding the next; the innermost holds ``data.csv``."""
    data = _zip([("data.csv", innermost)])
    for level in range(levels - 1, 0, -1):
        data = _zip([(f"level{level}.zip", data)])
    return data


# --------------------------------------------------------------------------- calls


def _profile(**raw: Any) -> dict[str, Any]:
    return build_profile("default", raw).as_dict()


def _pipeline(profile: dict[str, Any]) -> Any:
    """``request.disarm_member`` as the job gives it: detection + engine + policy."""

    def member(src: Path, dst: Path, depth: int) -> DisarmResult:
        answer = job.disarm_file(src, dst, profile, "default", src.name, MAX_FILE_SIZE, depth)
        return job._result_from_dict(answer)

    return member


def _request(
    tmp_path: Path,
    data: bytes,
    *,
    profile: dict[str, Any] | None = None,
    member: Any = None,
    limits: dict[str, int] | None = None,
    fallbacks: dict[str, str] | None = None,
) -> DisarmRequest:
    """A request as the job builds it: the profile's limits, fallbacks and pipeline."""
    profile = profile or _profile()
    source = tmp_path / "in.zip"
    source.write_bytes(data)
    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return DisarmRequest(
        file_type=ZIP,
        source=source,
        destination=out / "rebuilt.zip",
        switches={},
        limits={**profile["archive"], "max_file_size": MAX_FILE_SIZE, **(limits or {})},
        disarm_member=member if member is not None else _pipeline(profile),
        fallbacks=fallbacks if fallbacks is not None else {k: profile[k] for k in FALLBACKS},
    )


def _disarm(request: DisarmRequest) -> DisarmResult:
    result = gicap_archive.gicap_disarm(request=request)
    assert result is not None
    if result.outcome == "rebuilt":
        assert request.destination.is_file()
    else:
        assert not request.destination.exists()  # nothing delivered, not even partly
    # Members were only ever written under the destination's directory, and cleaned up.
    assert [p.name for p in request.destination.parent.iterdir()] == (
        ["rebuilt.zip"] if result.outcome == "rebuilt" else []
    )
    return result


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _cells(data: bytes) -> list[str]:
    return [c for row in csv.reader(io.StringIO(data.decode(), newline="")) for c in row]


def _fixed(outcome: str, **kw: Any) -> Any:
    """A stand-in for the pipeline: every member gets the same result."""

    def member(src: Path, dst: Path, depth: int) -> DisarmResult:
        if outcome == "rebuilt":
            dst.write_bytes(b"rebuilt:" + src.read_bytes())
        return DisarmResult(outcome, **kw)

    return member


# --------------------------------------------------------------------------- plugin


def test_claims_zip_only(tmp_path: Path) -> None:
    assert gicap_archive.gicap_file_types() == ["zip"]
    request = _request(tmp_path, _zip([("a.txt", b"a")]))
    request.file_type = DOCX
    assert gicap_archive.gicap_disarm(request=request) is None
    found = {ep.name: ep.value for ep in entry_points(group="gicap")}
    assert found.get("archive") == "gicap_archive"


# --------------------------------------------------------------------------- members


def test_csv_members_are_neutralised_recursively(tmp_path: Path) -> None:
    inner = _zip([("deep.csv", FORMULA_CSV)])
    source = _zip(
        [
            ("data.csv", FORMULA_CSV),
            ("short.csv", b"a,=1+1\n"),  # too short to sniff: the .csv name breaks the tie
            ("docs/", b""),
            ("docs/readme.txt", b"plain text\n"),
            ("inner.zip", inner),
        ]
    )
    request = _request(tmp_path, source)
    result = _disarm(request)
    assert result.outcome == "rebuilt", result.reason
    assert Action("formulas", "neutralised", "data.csv: 2 cells") in result.actions
    assert Action("formulas", "neutralised", "inner.zip: deep.csv: 2 cells") in result.actions

    members = dict(_members(request.destination))
    assert list(members) == ["data.csv", "short.csv", "docs/", "docs/readme.txt", "inner.zip"]
    for data in (members["data.csv"], members["short.csv"]):
        assert not any(c.startswith(DANGEROUS) for c in _cells(data))
    assert "'=cmd|' /C calc'!A0" in _cells(members["data.csv"])
    assert members["docs/readme.txt"] == b"plain text\n"  # unmodified member: same bytes
    deep = dict(_members_of(members["inner.zip"]))
    assert not any(c.startswith(DANGEROUS) for c in _cells(deep["deep.csv"]))
    with zipfile.ZipFile(request.destination) as zf:
        for info in zf.infolist():
            assert info.date_time == WHEN
            # compressed already (a nested zip): stored, not deflated a second time
            stored = info.is_dir() or info.filename.endswith(".zip")
            assert info.compress_type == (zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
            assert stat.S_IMODE(info.external_attr >> 16) in (0o644, 0o755)


def test_members_are_deflated_at_the_documented_level(tmp_path: Path) -> None:
    """The README's level: a third of the default level's time for a little more size."""
    text = b"".join(b"line %d of a plain text member, some words repeat\n" % i for i in range(5000))
    request = _request(tmp_path, _zip([("notes.txt", text)]))
    assert _disarm(request).outcome == "rebuilt"
    packer = zlib.compressobj(gicap_archive.COMPRESS_LEVEL, zlib.DEFLATED, -15)
    expected = len(packer.compress(text) + packer.flush())
    assert expected != len(zlib.compress(text, 6)) - 6  # (the levels differ on this text)
    with zipfile.ZipFile(request.destination) as zf:
        assert zf.getinfo("notes.txt").compress_size == expected


def _members_of(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


@pytest.mark.parametrize("policy", ["allow", "sanitise", "disallow"])
def test_the_members_own_policy_applies(tmp_path: Path, policy: str) -> None:
    request = _request(
        tmp_path, _zip([("data.csv", FORMULA_CSV)]), profile=_profile(text={"formulas": policy})
    )
    result = _disarm(request)
    if policy == "disallow":
        assert result.outcome == "blocked"
        assert "'data.csv'" in result.reason and "formula" in result.reason
        return
    assert result.outcome == "rebuilt"
    data = dict(_members(request.destination))["data.csv"]
    if policy == "allow":
        assert data == FORMULA_CSV
        assert Action("formulas", "kept", "data.csv: 2 cells") in result.actions
    else:
        assert not any(c.startswith(DANGEROUS) for c in _cells(data))


def test_comments_and_extra_fields_are_not_carried_over(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("a.txt", WHEN)
    info.comment = b"member comment"
    info.extra = struct.pack("<HHBL", 0x5455, 5, 1, 1_600_000_000)  # extended timestamp
    request = _request(tmp_path, _zip([(info, b"hello\n")], comment=b"archive comment"))
    result = _disarm(request)
    assert result.outcome == "rebuilt"
    assert Action("archive_comment", "removed", "15 bytes") in result.actions
    assert Action("member_comments", "removed", "1 members") in result.actions
    with zipfile.ZipFile(request.destination) as zf:
        assert zf.comment == b""
        (out,) = zf.infolist()
        assert (out.filename, out.comment, out.extra, out.date_time) == ("a.txt", b"", b"", WHEN)


def test_empty_archive_is_rebuilt_empty(tmp_path: Path) -> None:
    request = _request(tmp_path, _zip([]))
    assert _disarm(request) == DisarmResult("rebuilt")
    assert _members(request.destination) == []


# --------------------------------------------------------------------------- names


TRAVERSAL = [
    "../evil.sh",
    "a/../../evil.sh",
    "/etc/cron.d/evil",
    "C:/Windows/evil.dll",
    "c:evil.bat",
    "..\\..\\evil.bat",
    "\\\\server\\share\\evil",
    "dir\\..\\..\\evil",
    "new\nline.txt",
]


def test_unsafe_entries_are_dropped(tmp_path: Path) -> None:
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [("ok.txt", b"first\n")]
    entries += [(name, b"x\n") for name in TRAVERSAL]
    entries += [
        (_entry("link", stat.S_IFLNK | 0o777), b"/etc/passwd"),
        (_entry("fifo", stat.S_IFIFO | 0o644), b""),
        ("ok.txt", b"second\n"),  # exact duplicate
        ("OK.TXT", b"third\n"),  # the same file on Windows and macOS
        ("win\\name.txt", b"backslash, but no traversal\n"),
    ]
    request = _request(tmp_path, _zip(entries))
    result = _disarm(request)
    assert result.outcome == "rebuilt"
    assert _members(request.destination) == [
        ("ok.txt", b"first\n"),
        ("win\\name.txt", b"backslash, but no traversal\n"),
    ]
    removed = [(a.switch, a.detail.rsplit(": ", 1)[0]) for a in result.actions]
    assert removed == [("unsafe_name", repr(n)) for n in TRAVERSAL] + [
        ("symlink", "'link'"),
        ("special_file", "'fifo'"),
        ("duplicate_name", "'ok.txt'"),
        ("duplicate_name", "'OK.TXT'"),
    ]
    assert all(a.action == "removed" for a in result.actions)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("CON", "a Windows device name"),
        ("aux.txt", "a Windows device name"),
        ("d/NUL.csv", "a Windows device name"),
        ("com1 .log", "a Windows device name"),
        ("LPT\u00b9.txt", "a Windows device name"),
        ("invoice\u202egpj.exe", "a bidirectional control character in the name"),
        ("\uff0e\uff0e\uff0fevil.txt", "parent directory (..) in the path once mapped"),
        ("a\uff3c..\uff3cb.txt", "parent directory (..) in the path once mapped"),
        ("..\u00a5..\u00a5evil.exe", "parent directory (..) in the path once mapped"),
        ("a\u2215..\u2215b.exe", "parent directory (..) in the path once mapped"),
        ("COM0.txt", "a Windows device name"),
        ("\uff43\uff4f\uff4e.txt", "a Windows device name once mapped"),
    ],
)
def test_names_windows_reads_otherwise_are_dropped(tmp_path: Path, name: str, why: str) -> None:
    """Device names open a device, bidirectional controls disguise the extension, and
    fullwidth dots and slashes become "../" where names are mapped to a code page."""
    request = _request(tmp_path, _zip([("ok.txt", b"ok\n"), (name, b"x\n")]))
    result = _disarm(request)
    assert result.outcome == "rebuilt"
    assert _members(request.destination) == [("ok.txt", b"ok\n")]
    (action,) = result.actions
    assert action.switch == "unsafe_name" and why in action.detail


@pytest.mark.parametrize(
    "name",
    [
        "\u7b2c\u4e00\u7ae0\uff1a\u6982\u8ff0.txt",
        "\u4f1a\u8b70\uff0f2024.xlsx",
        "Q\uff06A\uff0edocx",
        "Report\u2026 final.docx",
    ],
)
def test_names_with_fullwidth_punctuation_are_kept(tmp_path: Path, name: str) -> None:
    """Japanese and Chinese names use the fullwidth colon, slash and full stop (the
    ASCII ones are not allowed in names): only what maps to a way out is refused."""
    request = _request(tmp_path, _zip([(name, b"x\n")]))
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    assert _members(request.destination) == [(name, b"x\n")]


@pytest.mark.parametrize(
    "twin",
    ["cafe\u0301.txt", "d//caf\u00e9.txt", "./d/caf\u00e9.txt", "d/./CAF\u00c9.txt"],
)
def test_names_one_file_system_folds_together_are_duplicates(tmp_path: Path, twin: str) -> None:
    """Unicode forms (macOS stores NFD), empty and "." segments land on one file."""
    first = "d/caf\u00e9.txt" if "/" in twin else "caf\u00e9.txt"
    request = _request(tmp_path, _zip([(first, b"first\n"), (twin, b"second\n")]))
    result = _disarm(request)
    assert result.outcome == "rebuilt"
    assert _members(request.destination) == [(first, b"first\n")]
    assert [a.switch for a in result.actions] == ["duplicate_name"]


def test_unzip_sees_only_the_kept_entries(tmp_path: Path) -> None:
    unzip = _require_tool("unzip")
    entries: list[tuple[str | zipfile.ZipInfo, bytes]] = [(n, b"x\n") for n in TRAVERSAL]
    entries += [
        (_entry("link", stat.S_IFLNK | 0o777), b"../../etc/passwd"),
        ("data.csv", FORMULA_CSV),
        ("data.csv", b"a,=2+2\n"),
    ]
    request = _request(tmp_path, _zip(entries))
    assert _disarm(request).outcome == "rebuilt"
    listed = subprocess.run(
        [unzip, "-Z1", str(request.destination)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert listed == ["data.csv"]
    subprocess.run([unzip, "-tq", str(request.destination)], check=True, capture_output=True)
    extract = tmp_path / "x"
    subprocess.run(
        [unzip, "-q", str(request.destination), "-d", str(extract)], check=True, timeout=30
    )
    assert [p.name for p in extract.rglob("*")] == ["data.csv"]
    data = (extract / "data.csv").read_bytes()
    assert not any(c.startswith(DANGEROUS) for c in _cells(data))


# --------------------------------------------------------------------------- bombs


def _assert_refused_fast(tmp_path: Path, data: bytes, words: str, **limits: int) -> None:
    calls: list[Path] = []

    def member(src: Path, dst: Path, depth: int) -> DisarmResult:
        calls.append(src)
        return DisarmResult("unmodified")

    request = _request(tmp_path, data, member=member, limits=limits)
    started = time.monotonic()
    result = _disarm(request)
    assert time.monotonic() - started < 1.0
    assert result.outcome == "unprocessable"
    assert words in result.reason
    assert calls == []  # refused before a single member was expanded


def test_bomb_by_ratio_is_refused_before_expanding(tmp_path: Path) -> None:
    zeros = bytes(64 * 1024 * 1024)  # deflates about 1000:1
    _assert_refused_fast(tmp_path, _zip([("zeros.bin", zeros)]), "more than max_ratio 100")


def test_bomb_by_declared_size_is_refused(tmp_path: Path) -> None:
    # A 42.zip-style leaf: a few bytes that claim to expand to 3 GiB.
    member = Raw(b"huge.bin", _deflate(bytes(1024)), 3 * 1024**3, zlib.crc32(bytes(1024)))
    data = _raw_zip([member])
    _assert_refused_fast(tmp_path, data, "more than max_expanded_bytes 1073741824")


def test_many_members_are_refused(tmp_path: Path) -> None:
    data = _zip([(f"f{i}.txt", b"") for i in range(1001)])
    _assert_refused_fast(tmp_path, data, "more than max_members 1000")


def test_a_lying_member_count_is_counted(tmp_path: Path) -> None:
    # The end record says 1 member; the directory holds 20.
    members = [Raw(f"f{i}.txt".encode(), b"\x03\x00", 0, 0) for i in range(20)]
    data = _raw_zip(members, declared_total=1)
    _assert_refused_fast(tmp_path, data, "more than max_members 10 members", max_members=10)


def test_overlapping_members_are_refused(tmp_path: Path) -> None:
    # The "overlapped" bomb: many directory entries share one compressed kernel.
    kernel = bytes(1024 * 1024 - 1)
    payload, crc = _deflate(kernel), zlib.crc32(kernel)
    members = [Raw(b"k", payload, len(kernel), crc)]
    members += [Raw(b"k", payload, len(kernel), crc, at=0) for _ in range(50)]
    _assert_refused_fast(tmp_path, _raw_zip(members), "overlap")


def test_declared_sizes_that_lie_small_are_caught(tmp_path: Path) -> None:
    data = bytes(10 * 1024 * 1024)
    member = Raw(b"small.txt", _deflate(data), 10, zlib.crc32(data[:10]) ^ 1)
    request = _request(tmp_path, _raw_zip([member]))
    result = _disarm(request)
    assert result.outcome == "unprocessable"
    assert "malformed zip" in result.reason


def test_expansion_budget_is_shared_by_nested_archives(tmp_path: Path) -> None:
    # Each nested zip alone is within the limit; together they are not.
    inner = _zip([("a.txt", b"x" * 40 * 1024)])
    source = _zip([(f"inner{i}.zip", inner) for i in range(3)])
    request = _request(tmp_path, source, limits={"max_expanded_bytes": 100 * 1024})
    result = _disarm(request)
    assert result.outcome == "unprocessable"
    assert "member 'inner2.zip' unprocessable" in result.reason
    assert "bytes left of max_expanded_bytes 102400" in result.reason
    request = _request(tmp_path, source, limits={"max_expanded_bytes": 200 * 1024})
    assert _disarm(request).outcome == "rebuilt"


def test_member_count_is_shared_by_nested_archives(tmp_path: Path) -> None:
    # Each archive is within max_members; together they hold more than
    # max_total_members: every member is a disarm, however small.
    inner = _zip([(f"f{i}.txt", b"") for i in range(40)])
    source = _zip([(f"inner{i}.zip", inner) for i in range(3)])
    request = _request(tmp_path, source, limits={"max_total_members": 100})
    result = _disarm(request)
    assert result.outcome == "unprocessable"
    assert "member 'inner2.zip' unprocessable" in result.reason
    assert "more than max_total_members 100 members" in result.reason
    request = _request(tmp_path, source, limits={"max_total_members": 123})
    assert _disarm(request).outcome == "rebuilt"


def test_bytes_really_expanded_are_counted(tmp_path: Path) -> None:
    # The declared sizes fit, but the nested archive spends the budget first: the next
    # member is stopped while it expands.
    inner = _zip([("a.txt", b"x" * 60 * 1024)])
    source = _zip([("inner.zip", inner), ("b.txt", b"y" * 50 * 1024)])
    request = _request(tmp_path, source, limits={"max_expanded_bytes": 100 * 1024})
    result = _disarm(request)
    assert result.outcome == "unprocessable"
    assert result.reason == "member 'b.txt' expands beyond max_expanded_bytes 102400"


@pytest.mark.parametrize("levels,ok", [(4, True), (5, False)])
def test_nesting_beyond_max_depth_is_unprocessable(tmp_path: Path, levels: int, ok: bool) -> None:
    # max_depth 3: the archive and 3 nested levels; a 4th nested level is too deep.
    request = _request(tmp_path, _nested(levels))
    result = _disarm(request)
    if ok:
        assert result.outcome == "rebuilt"
        assert result.actions[0].detail.endswith("data.csv: 2 cells")
        return
    assert result.outcome == "unprocessable"
    assert "nested 4 levels deep, more than max_depth 3" in result.reason
    assert result.reason.startswith("member 'level1.zip' unprocessable: member 'level2.zip'")


def test_too_deep_archive_relayed_by_the_unprocessable_fallback(tmp_path: Path) -> None:
    profile = _profile(unprocessable="relay")
    source = _nested(5)
    request = _request(tmp_path, source, profile=profile)
    result = _disarm(request)
    assert result.outcome == "rebuilt"
    assert any(a.switch == "unprocessable" and a.action == "kept" for a in result.actions)
    # The innermost zip (4 levels down) is kept as it was: its csv is untouched.
    data = request.destination.read_bytes()
    for name in ("level1.zip", "level2.zip", "level3.zip", "level4.zip"):
        data = dict(_members_of(data))[name]
    assert dict(_members_of(data))["data.csv"] == FORMULA_CSV


def test_member_over_max_file_size_follows_the_oversize_fallback(tmp_path: Path) -> None:
    source = _zip([("zeros.txt", bytes(20_000))])
    request = _request(tmp_path, source, limits={"max_file_size": 10_000})
    result = _disarm(request)
    assert result.outcome == "blocked"
    assert "member 'zeros.txt' oversize" in result.reason
    request = _request(
        tmp_path,
        source,
        limits={"max_file_size": 10_000},
        fallbacks={"oversize": "relay"},
    )
    assert _disarm(request).outcome == "rebuilt"
    assert _members(request.destination) == [("zeros.txt", bytes(20_000))]
    request = _request(tmp_path, source, limits={"max_file_size": 100})
    assert _disarm(request).outcome == "unprocessable"  # the archive itself


# --------------------------------------------------------------------------- encrypted


def test_encrypted_flag_makes_the_archive_encrypted(tmp_path: Path) -> None:
    # Python cannot write encrypted zips: the flag bit 0 is set by hand (the data is
    # not even encrypted: the flag alone decides).
    raw = Raw(b"secret.csv", _deflate(FORMULA_CSV), len(FORMULA_CSV), zlib.crc32(FORMULA_CSV))
    data = _raw_zip([Raw(b"plain.txt", b"\x03\x00", 0), Raw(**{**raw.__dict__, "flags": 1})])
    request = _request(tmp_path, data)
    result = _disarm(request)
    assert result.outcome == "encrypted"
    assert "'secret.csv'" in result.reason


def test_zip_cli_password_is_encrypted(tmp_path: Path) -> None:
    zip_tool = _require_tool("zip")
    (tmp_path / "secret.csv").write_bytes(FORMULA_CSV)
    target = tmp_path / "enc.zip"
    subprocess.run(
        [zip_tool, "-q", "-P", "password", str(target), "secret.csv"],
        cwd=tmp_path,
        check=True,
    )
    result = _disarm(_request(tmp_path, target.read_bytes()))
    assert result.outcome == "encrypted"


# --------------------------------------------------------------------------- fallbacks


def test_unsupported_member_blocks_by_default(tmp_path: Path) -> None:
    request = _request(tmp_path, _zip([("a.txt", b"a\n"), ("blob.dat", OPAQUE)]))
    result = _disarm(request)
    assert result.outcome == "blocked"
    assert result.reason == "member 'blob.dat' unsupported: file type not recognised"
    assert Action("unsupported", "blocked", "blob.dat: file type not recognised") in (
        result.actions
    )


@pytest.mark.parametrize(
    "name",
    [
        "tools/run.js",
        "Invoice.pdf.vbs",
        "setup.bat",
        "open.url",
        "s.searchConnector-ms",
        "run.py",
        "app.jnlp",
        "box.wsb",
        "open.terminal",
    ],
)
def test_script_members_are_blocked(tmp_path: Path, name: str) -> None:
    """Text a desktop runs when it is opened from the archive: not a text file.
    Blocked under the default policy; ``scripts = "allow"`` keeps it."""
    script = b'var s = new ActiveXObject("WScript.Shell"); s.Run("calc.exe");\n'
    request = _request(tmp_path, _zip([("a.txt", b"a\n"), (name, script)]))
    result = _disarm(request)
    assert result.outcome == "blocked"
    assert result.reason.startswith(f"member {name!r}: a script a desktop runs")
    allowed = _profile(script={"scripts": "allow"})
    request = _request(tmp_path, _zip([("a.txt", b"a\n"), (name, script)]), profile=allowed)
    assert _disarm(request).outcome == "rebuilt"
    assert dict(_members(request.destination))[name] == script


def test_unsupported_member_relayed_with_unsupported_relay(tmp_path: Path) -> None:
    profile = _profile(unsupported="relay")
    request = _request(
        tmp_path,
        _zip([("a.txt", b"a\n"), ("blob.dat", OPAQUE)]),
        profile=profile,
    )
    result = _disarm(request)
    assert result.outcome == "rebuilt"
    assert _members(request.destination) == [("a.txt", b"a\n"), ("blob.dat", OPAQUE)]
    assert (
        Action(
            "unsupported",
            "kept",
            "blob.dat: file type not recognised (the unsupported fallback relays it)",
        )
        in result.actions
    )


@pytest.mark.parametrize(
    "case,outcome", [("unprocessable", "unprocessable"), ("encrypted", "encrypted")]
)
def test_member_that_cannot_be_disarmed(tmp_path: Path, case: str, outcome: str) -> None:
    source = _zip([("m.docx", b"whatever")])
    result = _disarm(_request(tmp_path, source, member=_fixed(case, reason="r")))
    assert (result.outcome, result.reason) == (outcome, f"member 'm.docx' {case}: r")
    request = _request(tmp_path, source, member=_fixed(case, reason="r"), fallbacks={case: "relay"})
    assert _disarm(request).outcome == "rebuilt"
    assert _members(request.destination) == [("m.docx", b"whatever")]


def test_blocked_member_blocks_the_archive(tmp_path: Path) -> None:
    member = _fixed("blocked", reason="macros present", actions=[Action("macros", "blocked")])
    request = _request(tmp_path, _zip([("a.docm", b"x")]), member=member)
    result = _disarm(request)
    assert result == DisarmResult(
        "blocked",
        actions=[Action("macros", "blocked", "a.docm")],
        reason="member 'a.docm': macros present",
    )


def test_type_change_renames_the_member(tmp_path: Path) -> None:
    member = _fixed("rebuilt", actions=[Action("macros", "removed", "1 module")], output_type=DOCX)
    source = _zip([("report.docm", b"1"), ("report.docx", b"2"), ("notes", b"3")])
    request = _request(tmp_path, source, member=member)
    result = _disarm(request)
    assert result.outcome == "rebuilt"
    assert _members(request.destination) == [
        ("report-1.docx", b"rebuilt:1"),  # report.docx is taken by the next member
        ("report.docx", b"rebuilt:2"),
        ("notes.docx", b"rebuilt:3"),
    ]
    assert Action("macros", "removed", "report.docm: 1 module") in result.actions
    assert Action("file_name", "neutralised", "'notes' -> 'notes.docx'") in result.actions


def test_members_are_disarmed_one_level_deeper(tmp_path: Path) -> None:
    depths: list[int] = []

    def member(src: Path, dst: Path, depth: int) -> DisarmResult:
        depths.append(depth)
        assert src.parent.parent == dst.parent.parent == tmp_path / "out"
        assert src.suffix == ".csv"  # the member's extension, for the detector's hint
        return DisarmResult("unmodified")

    request = _request(tmp_path, _zip([("../../x.csv", b"a"), ("a.csv", b"a")]), member=member)
    request.depth = 2
    assert _disarm(request).outcome == "rebuilt"
    assert depths == [3]


def test_nested_archives_extract_into_the_outermost_work_directory(tmp_path: Path) -> None:
    # One private directory per file, whatever the nesting: members of the inner
    # archives are extracted next to the outer ones, under other names.
    made: list[str] = []
    seen: list[Path] = []
    real_mkdtemp = gicap_archive.tempfile.mkdtemp
    real_disarm = job._disarm  # every file of the job, nested members included

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    def disarm(source: Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(source)
        return real_disarm(source, *args, **kwargs)

    inner = _zip([("deep.csv", FORMULA_CSV), ("n.zip", _zip([("deeper.csv", FORMULA_CSV)]))])
    request = _request(tmp_path, _zip([("a.csv", FORMULA_CSV), ("inner.zip", inner)]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gicap_archive.tempfile, "mkdtemp", mkdtemp)
        mp.setattr(job, "_disarm", disarm)
        assert _disarm(request).outcome == "rebuilt"
    assert len(made) == 1
    assert {p.parent for p in seen} == {Path(made[0])}
    assert len({p.name for p in seen}) == len(seen) == 5  # a.csv, inner.zip and its three
    assert not Path(made[0]).exists()
    with zipfile.ZipFile(request.destination) as zf, zf.open("inner.zip") as fh:
        with zipfile.ZipFile(io.BytesIO(fh.read())) as z2:
            assert _cells(z2.read("deep.csv")).count("'=cmd|' /C calc'!A0") == 1


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d[: len(d) // 2],  # truncated: no central directory
        lambda d: d.replace(b"PK\x01\x02", b"PK\x01\x09"),  # broken directory
        lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:],  # corrupt data (CRC)
        lambda d: b"PK\x03\x04" + bytes(100),
    ],
    ids=["truncated", "directory", "crc", "junk"],
)
def test_malformed_is_unprocessable(tmp_path: Path, mangle: Any) -> None:
    data = mangle(_zip([("a.csv", FORMULA_CSV * 20)]))
    result = _disarm(_request(tmp_path, data))
    assert result.outcome == "unprocessable"
    assert result.reason


def test_unhandled_compression_method(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("a.txt", b"hello\n")
    result = _disarm(_request(tmp_path, buf.getvalue()))
    assert result.outcome == "unprocessable"
    assert "compression method 12" in result.reason


# --------------------------------------------------------------------------- end to end


def _run_job(tmp_path: Path, data: bytes, **raw: Any) -> tuple[dict[str, Any], Path]:
    source, dest = tmp_path / "upload", tmp_path / "rebuilt"
    source.write_bytes(data)
    answer = job.run_job(
        {
            "source": str(source),
            "dest": str(dest),
            "max_file_size": MAX_FILE_SIZE,
            "profile": _profile(**raw),
            "profile_name": "default",
            "declared": "files.zip",
        }
    )
    return answer, dest


def test_run_job_end_to_end(tmp_path: Path) -> None:
    data = _zip([("../up.csv", b"x"), ("data.csv", FORMULA_CSV), ("blob.dat", OPAQUE)])
    answer, dest = _run_job(tmp_path, data)
    assert answer["file_type"]["name"] == "zip"
    assert answer["outcome"] == "blocked"  # default profile: unsupported members block
    assert not dest.exists()

    answer, dest = _run_job(tmp_path, data, unsupported="relay")
    assert answer["outcome"] == "rebuilt"
    names = [n for n, _ in _members(dest)]
    assert names == ["data.csv", "blob.dat"]
    assert not any(c.startswith(DANGEROUS) for c in _cells(dict(_members(dest))["data.csv"]))
    switches = [(a["switch"], a["action"]) for a in answer["actions"]]
    assert switches == [
        ("unsafe_name", "removed"),
        ("formulas", "neutralised"),
        ("unsupported", "kept"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rebuilt", "upload"]

    answer, dest = _run_job(tmp_path, _nested(6))
    assert answer["outcome"] == "unprocessable"
    assert "more than max_depth 3" in answer["reason"]
