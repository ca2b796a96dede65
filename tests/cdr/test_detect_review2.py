"""Everyday files the detection of the review commits must still pass as they are:
Japanese text in ISO-2022-JP, XML feeds that only write about entities."""

from __future__ import annotations

from pathlib import Path

import pytest

from gicap.cdr.detect import detect
from tests.support import disarm_job

_disarm = disarm_job


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


# -- XML that writes about entities without declaring any -------------------------------


def _feed(description: bytes) -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        b"<title>Security notes</title><item><title>XXE</title><description>"
        + description
        + b"</description></item></channel></rss>\n"
    )


_FEEDS = {
    "escaped": _feed(b'Test with &lt;!ENTITY xxe SYSTEM "file:///etc/passwd"&gt; in a DTD'),
    "cdata": _feed(b'<![CDATA[Test with <!ENTITY xxe SYSTEM "file:///etc/passwd"> in a DTD]]>'),
}


@pytest.mark.parametrize("kind", sorted(_FEEDS))
def test_a_feed_quoting_an_entity_declaration_is_passed_as_it_is(tmp_path: Path, kind: str) -> None:
    """Entities are declared in a DOCTYPE's internal subset, nowhere else: an RSS feed
    whose article quotes one (escaped, or in CDATA) was rebuilt as an HTML page."""
    answer, _ = _disarm(tmp_path, _FEEDS[kind], "feed.xml")
    assert answer["outcome"] == "unmodified", answer
    assert answer["file_type"]["name"] == "text", answer


def test_a_long_feed_quoting_an_entity_declaration_is_passed_as_it_is(tmp_path: Path) -> None:
    """The same past the 64 KiB detection reads (the text engine looks at the rest)."""
    items = b"<item><title>News</title><description>Nothing new.</description></item>\n"
    data = _FEEDS["escaped"].replace(b"<item>", items * 1200 + b"<item>", 1)
    assert len(data) > 64 * 1024 and data.find(b"ENTITY") > 64 * 1024
    answer, _ = _disarm(tmp_path, data, "feed.xml")
    assert answer["outcome"] == "unmodified", answer


def test_xml_declaring_an_entity_after_its_doctype_is_never_passed(tmp_path: Path) -> None:
    """(An internal subset whose "]" comes early, in a comment, hides nothing.)"""
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE r [ <!-- ] --> <!ENTITY a "http://www.w3.org/1999/">'
        b']>\n<r><h:script xmlns:h="&a;xhtml">alert(1)</h:script></r>\n'
    )
    answer, out = _disarm(tmp_path, data, "data.xml")
    assert answer["outcome"] in ("rebuilt", "unprocessable", "blocked", "unsupported"), answer
    assert out is None or b"<h:script" not in out, answer


# -- "%!" that is no PostScript --------------------------------------------------------

_TEX = b"%!TEX program = xelatex\n\\documentclass{article}\n\\begin{document}x\\end{document}\n"
_PS = b"%!PS-Adobe-3.0\n/Helvetica findfont 12 scalefont setfont 72 72 moveto (x) show showpage\n"


@pytest.mark.parametrize(
    ("data", "name", "delivered"),
    [
        (_TEX, "paper.tex", True),  # (TeX editors' magic comment: opened by its name)
        (_TEX, "paper.sty", True),
        (_PS, "page.tex", True),  # (opened in a TeX editor by its name)
        (_TEX, "notes.txt", False),  # (PostScript is text's subclass: sniffed as such)
        (_TEX, "paper", False),  # (no name to open it by: a viewer sniffs "%!")
        (_PS, "page", False),
        (_PS, "page.ps", False),
    ],
)
def test_percent_bang_is_postscript_unless_named_as_text(
    tmp_path: Path, data: bytes, name: str, delivered: bool
) -> None:
    """LaTeX sources starting with "%!TEX" (TeXShop and TeXstudio write it) were
    refused as PostScript, whatever their name. Named .txt they still are: the
    desktop opens text that starts as PostScript in a PostScript viewer."""
    answer, out = _disarm(tmp_path, data, name)
    assert (answer["outcome"] in ("unmodified", "rebuilt")) is delivered, answer
