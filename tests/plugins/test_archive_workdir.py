"""The archive engine's work directory is removed when the archive is done, whether
the members' files left it empty or an engine left a file of its own in it."""

from __future__ import annotations

from pathlib import Path

from gicap.cdr.types import DisarmResult
from tests.plugins.test_archive import FORMULA_CSV, _disarm, _members, _request, _zip


def test_work_directory_is_removed_with_what_an_engine_left_in_it(tmp_path: Path) -> None:
    left: list[Path] = []

    def member(src: Path, dst: Path, depth: int) -> DisarmResult:
        stray = dst.parent / f"{dst.name}.tmp"  # an engine's own temporary file
        stray.write_bytes(b"left behind")
        left.append(stray)
        dst.write_bytes(src.read_bytes().upper())
        return DisarmResult("rebuilt")

    request = _request(
        tmp_path, _zip([("a.csv", FORMULA_CSV), ("b.txt", b"text\n")]), member=member
    )
    # ``_disarm`` checks that the destination's directory holds the archive alone.
    assert _disarm(request).outcome == "rebuilt"
    assert len(left) == 2 and not any(p.exists() for p in left)
    assert not left[0].parent.exists()
    assert _members(request.destination) == [("a.csv", FORMULA_CSV.upper()), ("b.txt", b"TEXT\n")]


def test_work_directory_is_removed_when_members_leave_it_empty(tmp_path: Path) -> None:
    seen: list[Path] = []

    def member(src: Path, dst: Path, depth: int) -> DisarmResult:
        seen.append(src)
        return DisarmResult("unmodified")

    request = _request(tmp_path, _zip([("a.csv", FORMULA_CSV)]), member=member)
    assert _disarm(request).outcome == "rebuilt"
    assert len(seen) == 1 and not seen[0].parent.exists()
    assert _members(request.destination) == [("a.csv", FORMULA_CSV)]
