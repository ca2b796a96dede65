"""Everyday files the detection of the review commits must still pass as they are:
Japanese text in ISO-2022-JP."""

from __future__ import annotations

from pathlib import Path

import pytest

from gicap.cdr import job
from gicap.cdr.detect import detect
from gicap.cdr.policy import build_profile


def _disarm(tmp_path: Path, data: bytes, declared: str | None) -> tuple[dict, bytes | None]:
    job.init_worker()
    source, dest = tmp_path / "in", tmp_path / "out"
    source.write_bytes(data)
    dest.unlink(missing_ok=True)
    profile = build_profile("default", {}).as_dict()
    answer = job.disarm_file(source, dest, profile, "default", declared, 1 << 26)
    return answer, dest.read_bytes() if dest.exists() else None


# -- Japanese text in ISO-2022-JP --------------------------------------------------------

#: Plain Japanese text whose first kanji, 釈, is the bytes "<a" after ESC "$B", and the
#: next one a hiragana ("$N"): "<a$N" once the escape sequences are dropped.
_JAPANESE = "釈の話\nこれは日本語の文書です。\n".encode("iso-2022-jp") * 3


@pytest.mark.parametrize("name", [None, "memo.txt", "memo"])
def test_iso_2022_jp_text_is_not_markup(tmp_path: Path, name: str | None) -> None:
    """The bytes of kanji are not ASCII to any ISO-2022-JP decoder: Japanese text that
    starts with 釈 was rebuilt as an HTML page holding nothing of it."""
    assert _JAPANESE.startswith(b"\x1b$B<a$N")
    found = detect(_JAPANESE, None, name)
    assert found is None or found.name not in ("html", "svg"), found
    answer, _ = _disarm(tmp_path, _JAPANESE, name)
    assert answer["outcome"] != "rebuilt", answer


def test_markup_split_by_an_empty_kanji_run_is_still_markup() -> None:
    """ESC "$B" at once followed by ESC "(B" shows no character: "<s..vg" is an SVG
    root as the escape sequences alone are dropped."""
    data = (
        b'<?xml version="1.0" encoding="ISO-2022-JP"?>\n<s\x1b$B\x1b(Bvg '
        b'xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'
    )
    found = detect(data, None, "data.xml")
    assert found is not None and found.name == "svg", found
