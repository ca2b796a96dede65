"""RTF inputs found by a sixth (independent) review: each was delivered with a field
LibreOffice or msodde read as DDEAUTO (or as a field Word computes), while the engine
read something harmless. Now each is neutralised, or the file refused.

Most tests check the engine's output alone; ``test_libreoffice_reads_the_findings``
shows with LibreOffice (skipped without ``soffice``) that the sources hold the risky
field and the delivered files do not."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.plugins.test_office import _write, dde_found, disarm, switches
from tests.plugins.test_office_rtf import _run

CMD = rb'c:\\windows\\system32\\cmd.exe "/k calc"'
DDE = rb"DDEAUTO " + CMD


def _field(instruction: bytes, head: bytes = rb"{\rtf1") -> bytes:
    return head + rb" a{\field{\*\fldinst " + instruction + rb"}{\fldrslt x}}b\par}"


#: A destination word later in a group of the instruction (not its first word), or a
#: "\*" there: readers read the rest of the group as that destination (LibreOffice
#: does wherever the word stands), so "X" is no part of the instruction. Read as
#: "XDDEAUTO", the field was delivered as harmless.
LATER_DESTINATIONS = {
    "bkmkstart": _field(rb"{\b\bkmkstart X}" + DDE),
    "xe": _field(rb"{\b\xe X}" + DDE),
    "star-unknown": _field(rb"{\b\*\gicapx X}" + DDE),
    "space-then-star": _field(rb"{ \*\bkmkstart X}" + DDE),
    "in-the-instruction-group": _field(rb"DDEAUTO\xe X"),
}


@pytest.mark.parametrize("data", LATER_DESTINATIONS.values(), ids=LATER_DESTINATIONS.keys())
def test_a_destination_later_in_a_group_leaves_the_instruction(tmp_path: Path, data: bytes) -> None:
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"DDEAUTO" not in out and b"x" in out
    assert dde_found(_write(tmp_path, "out.rtf", out)) == ""


#: A field nested in an instruction before its keyword has ended computes it (Word
#: puts its result there when it updates the field): QUOTE 68 68 69 65 85 84 79 is
#: "DDEAUTO". Without a result (or with an empty one) the nested field left no text
#: to judge, and the field passed as harmless.
COMPUTED = {
    "no-result": _field(rb"{\field{\*\fldinst QUOTE 68 68 69 65 85 84 79}} " + CMD),
    "empty-result": _field(rb"{\field{\*\fldinst QUOTE 68 68 69 65 85 84 79}{\fldrslt }} " + CMD),
    "a-group-deeper": _field(rb"{{\field{\*\fldinst QUOTE 68 68 69 65 85 84 79}}} " + CMD),
    "end-of-keyword": _field(rb'DD{\field{\*\fldinst QUOTE "EAUTO"}} ' + CMD),
    "after-blank-and-quote": _field(rb' "{\field{\*\fldinst QUOTE 68 68 69}}" ' + CMD),
}


@pytest.mark.parametrize("data", COMPUTED.values(), ids=COMPUTED.keys())
def test_a_keyword_computed_by_a_nested_field_without_result(tmp_path: Path, data: bytes) -> None:
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"QUOTE" not in out and b"cmd.exe" not in out and b"x" in out


def test_a_nested_field_after_the_keyword_computes_nothing(tmp_path: Path) -> None:
    """(A nested field in a harmless field's arguments stays.)"""
    data = _field(rb"PAGE {\field{\*\fldinst QUOTE 68}} \\* MERGEFORMAT")
    assert _run(tmp_path, data)[0] == "unmodified"


#: Field instructions are read in the document's code page (or the font's). In UTF-7,
#: ISO-2022 (and EBCDIC, UTF-16...) text in ASCII is not ASCII: LibreOffice reads
#: "+AEQARABFAEEAVQBUAE8-" as DDEAUTO, and drops ISO-2022 escape sequences before the
#: keyword. The engine read them in code page 1252, as harmless text: now refused.
RECODING = {
    "utf-7": _field(rb"+AEQARABFAEEAVQBUAE8- " + CMD, head=rb"{\rtf1\ansi\ansicpg65000"),
    "utf-7-font": (
        rb"{\rtf1\ansi{\fonttbl{\f0 Arial;}{\f1\cpg65000 X;}}"
        + _field(rb"\f1 +AEQARABFAEEAVQBUAE8- " + CMD, head=b"")[1:]
    ),
    "iso-2022-jp": _field(rb"\'1b$B\'1b(B " + DDE, head=rb"{\rtf1\ansi\ansicpg50220"),
}


@pytest.mark.parametrize("data", RECODING.values(), ids=RECODING.keys())
def test_code_pages_that_read_ascii_otherwise_are_refused(tmp_path: Path, data: bytes) -> None:
    assert _run(tmp_path, data) == ("unprocessable", b"")


#: A byte over 0x7f in front of the keyword is a blank in many code pages: 0x81 0x40 is
#: the ideographic space in Shift-JIS (the document's \ansicpg932, or a font's
#: \fcharset128), 0xff a no-break space in code page 437, 0x9a in KOI8-R; LibreOffice
#: reads " DDEAUTO". The engine read it in code page 1252 (an undefined byte, a "ÿ")
#: as a character that is no keyword.
HIGH_BYTES = {
    "shift-jis-space": _field(rb"\'81\'40" + DDE, head=rb"{\rtf1\ansi\ansicpg932"),
    "shift-jis-font": (
        rb"{\rtf1\ansi{\fonttbl{\f0 Arial;}{\f1\fcharset128 MS Mincho;}}"
        + _field(rb"\f1\'81\'40" + DDE, head=b"")[1:]
    ),
    "cp437-no-break-space": _field(rb" \'ff" + DDE, head=rb"{\rtf1\ansi\ansicpg437"),
    "koi8-r-raw-byte": _field(b'"\x9a' + DDE, head=rb"{\rtf1\ansi\ansicpg20866"),
}


@pytest.mark.parametrize("data", HIGH_BYTES.values(), ids=HIGH_BYTES.keys())
def test_a_byte_over_0x7f_before_the_keyword_makes_it_ambiguous(
    tmp_path: Path, data: bytes
) -> None:
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"DDEAUTO" not in out and b"x" in out


def test_bytes_over_0x7f_after_the_keyword_are_kept(tmp_path: Path) -> None:
    data = _field(rb"PAGE \\* MERGEFORMAT \'e9\'81\'40", head=rb"{\rtf1\ansi\ansicpg932")
    assert _run(tmp_path, data)[0] == "unmodified"


#: HYPERLINK switches in capitals: LibreOffice takes only "\\l", "\\o" and "\\t" as
#: switches with an argument; it reads "\\O" as no switch, and the URL after it as the
#: link's (an external link in the ODT). Read as a tooltip's "\\o" ("\\L" as a bookmark's
#: "\\l"), the field passed as harmless (as an internal link).
HYPERLINK_CAPITALS = {
    "O": _field(rb'HYPERLINK \\O "http://example.com/evil"'),
    "T": _field(rb'HYPERLINK \\T "http://example.com/evil"'),
    "L": _field(rb'HYPERLINK \\L "http://example.com/evil"'),
}


@pytest.mark.parametrize("data", HYPERLINK_CAPITALS.values(), ids=HYPERLINK_CAPITALS.keys())
def test_hyperlink_switches_in_capitals_take_no_argument(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, "src.rtf", data)
    result, dest = disarm(path, tmp_path, switches("sanitise", internal_hyperlinks="allow"))
    assert result.outcome == "rebuilt"
    assert [a.switch for a in result.actions] == ["external_hyperlinks"]
    out = dest.read_bytes()
    assert b"example.com" not in out and b"x" in out


def _libreoffice_field_codes(tmp_path: Path, files: dict[str, bytes]) -> dict[str, list[str]]:
    """The field codes and link targets LibreOffice reads in each file (converted to
    ODT, in one run)."""
    soffice = shutil.which("soffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed")
    src = tmp_path / "lo-src"
    src.mkdir()
    for name, data in files.items():
        (src / f"{name}.rtf").write_bytes(data)
    out = tmp_path / "lo-out"
    subprocess.run(
        [soffice, f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}"]
        + ["--headless", "--norestore", "--convert-to", "odt", "--outdir", str(out)]
        + [str(src / f"{name}.rtf") for name in files],
        check=True,
        capture_output=True,
        timeout=300,
    )
    codes = {}
    for name in files:
        content = zipfile.ZipFile(out / f"{name}.odt").read("content.xml").decode()
        found = re.finditer(r'field\.code" field:value="([^"]*)"|xlink:href="([^"]*)"', content)
        codes[name] = [html.unescape(m.group(1) or m.group(2)) for m in found]
    return codes


def test_libreoffice_reads_the_findings(tmp_path: Path) -> None:
    findings = {
        **{k: v for k, v in LATER_DESTINATIONS.items() if k != "in-the-instruction-group"},
        **RECODING,
        **HIGH_BYTES,
    }
    links = {f"hyperlink-{name}": data for name, data in HYPERLINK_CAPITALS.items()}
    files = {f"src-{name}": data for name, data in findings.items()}
    for name, data in findings.items():
        outcome, out = _run(tmp_path, data)
        assert outcome in ("rebuilt", "unprocessable")
        if outcome == "rebuilt":
            files[f"out-{name}"] = out
    for name, data in links.items():
        files[f"src-{name}"] = data
        outcome, out = _run(tmp_path, data)
        files[f"out-{name}"] = out if outcome == "rebuilt" else data  # (as delivered)
    codes = _libreoffice_field_codes(tmp_path, files)
    for name in links:  # (their targets, as LibreOffice links them)
        assert "http://example.com/evil" in codes[f"src-{name}"], name
        assert codes[f"out-{name}"] == [], name
    for name in findings:
        # (LibreOffice keeps the blank and quote in front: '"\xa0DDEAUTO ...')
        assert any(re.match(r'[\s"]*DDEAUTO ', code) for code in codes[f"src-{name}"]), name
        assert codes.get(f"out-{name}", []) == [], name


def _shape(properties: bytes) -> bytes:
    head = rb"{\rtf1 a{\shp{\*\shpinst\shpleft0\shptop0\shpright100\shpbottom100"
    return head + properties + rb"}}b\par}"


#: A shape (or a picture's \picprop) whose picture is named by a URL or a path: Word
#: fetches it when it shows the shape, as it does for the same property of a .doc
#: (which the legacy engine already judged). The RTF engine kept it.
LINKED_PICTURES = {
    "pibName": _shape(
        rb"{\sp{\sn pibName}{\sv http://127.0.0.1:9/linked.png}}{\sp{\sn pibFlags}{\sv 10}}"
    ),
    "fillBlipName": _shape(
        rb"{\sp{\sn fillType}{\sv 3}}{\sp{\sn fillBlipName}{\sv \\\\server\\share\\a.png}}"
    ),
    "escaped-and-any-case": _shape(rb"{\sp{\sn PIBNAME}{\sv \'68ttp://127.0.0.1:9/x.png}}"),
    "in-a-picture": rb"{\rtf1 a{\pict{\*\picprop{\sp{\sn pibName}{\sv http://127.0.0.1:9/p}}}"
    rb"\pngblip 00}b\par}",
}


@pytest.mark.parametrize("data", LINKED_PICTURES.values(), ids=LINKED_PICTURES.keys())
def test_a_picture_linked_by_a_shape_property_is_removed(tmp_path: Path, data: bytes) -> None:
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"127.0.0.1" not in out and b"share" not in out and b"ttp" not in out
    assert b"pibName" not in out and b"fillBlipName" not in out and b"PIBNAME" not in out
    assert out.startswith(rb"{\rtf1 a") and out.rstrip().endswith(rb"b\par}")
    # kept when the policy allows external links
    outcome, out = _run(tmp_path, data, default="allow")
    assert outcome == "unmodified", outcome  # (the original bytes, link and all)


def test_shape_properties_of_stored_pictures_are_kept(tmp_path: Path) -> None:
    data = _shape(rb"{\sp{\sn shapeType}{\sv 75}}{\sp{\sn pibName}{\sv }}{\sp{\sn fLine}{\sv 0}}")
    outcome, out = _run(tmp_path, data)
    assert outcome == "unmodified", (outcome, out)


#: Characters no document may hold inside the keyword: a lone surrogate (\u-10240 is
#: U+D800) or U+FFFE. LibreOffice reads "DD?EAUTO", but drops them when it saves the
#: document again: the saved copy holds a working DDEAUTO field.
DROPPED_ON_SAVE = {
    "lone-surrogate": _field(rb"DD\u-10240?EAUTO " + CMD),
    "noncharacter": _field(rb"DD\u-2?EAUTO " + CMD),
}


@pytest.mark.parametrize("data", DROPPED_ON_SAVE.values(), ids=DROPPED_ON_SAVE.keys())
def test_characters_dropped_on_save_are_read_both_ways(tmp_path: Path, data: bytes) -> None:
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"EAUTO" not in out and b"x" in out
