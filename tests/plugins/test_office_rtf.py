"""The RTF tokenizer's fast paths: runs of text and harmless control words are jumped
over, so these check that what hides inside such runs is still read the way Word
reads it (escaped backslashes and braces, ``\\binN`` data, ``\\uN`` fallbacks, long
documents), with the expected bytes written out and oletools' readers on the output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.plugins.test_office import (
    _ole1_package,
    _write,
    dde_found,
    disarm,
    png,
    rtf_objects,
    switches,
)

OBJ = _ole1_package(b"gicap rtf test payload\n").hex()


def _run(tmp_path: Path, data: bytes, default: str = "sanitise") -> tuple[str, bytes]:
    path = _write(tmp_path, "t.rtf", data)
    result, dest = disarm(path, tmp_path, switches(default))
    return result.outcome, dest.read_bytes() if dest.exists() else b""


@pytest.mark.parametrize(
    "data",
    [
        # an escaped backslash: "object" and "field" are text
        rb"{\rtf1\ansi a\\object b\\field c\\bin99 d\par}",
        # escaped braces are text, not groups
        rb"{\rtf1\ansi {\b a\{\\object\} b}\par}",
        # \bin data holds braces, backslashes and destination words: jumped over
        b"{\\rtf1\\ansi {\\b a\\bin17 {\\object}\\\\{\\field b}\\par}",
        # harmless words that start like destination words
        rb"{\rtf1\ansi {\b \objectx \fieldz \upr \ud x}\par}",
    ],
    ids=["escaped-backslash", "escaped-braces", "bin-data", "word-prefixes"],
)
def test_text_that_only_looks_risky_is_kept(tmp_path: Path, data: bytes) -> None:
    outcome, _ = _run(tmp_path, data)
    assert outcome == "unmodified"


@pytest.mark.parametrize(
    ("data", "kept"),
    [
        # a real \object right after an escaped backslash
        (
            rb"{\rtf1 a{\b x\\\object\objemb{\*\objdata " + OBJ.encode() + rb"}}b\par}",
            rb"{\rtf1 ab\par}",
        ),
        # after \bin data that holds braces
        (
            rb"{\rtf1 {\b a\bin4 {}\\ b}{\c d\object\objemb{\*\objdata " + OBJ.encode() + rb"}}e}",
            rb"{\rtf1 {\b a\bin4 {}\\ b}e}",
        ),
        # after escaped braces in a long run of text
        (
            rb"{\rtf1 {\b a \} \{ \\ b\par c}{\i d\object\objemb{\*\objdata "
            + OBJ.encode()
            + rb"}}}",
            rb"{\rtf1 {\b a \} \{ \\ b\par c}}",
        ),
    ],
    ids=["after-escaped-backslash", "after-bin", "after-escaped-braces"],
)
def test_objects_found_after_skipped_runs(tmp_path: Path, data: bytes, kept: bytes) -> None:
    src = _write(tmp_path, "src.rtf", data)
    assert rtf_objects(src) == 1
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert out == kept
    assert rtf_objects(_write(tmp_path, "out.rtf", out)) == 0


def test_risky_groups_after_a_long_document(tmp_path: Path) -> None:
    body = b"".join(
        rb"\pard\plain\ltrpar\ql\fs22\lang1033 Caf\'e9 \u8220\'93quoted\u8221\'94 line "
        + str(i).encode()
        + rb" {\b bold} \\ \{x\}\par"
        + b"\r\n"
        for i in range(3000)
    )
    data = (
        rb"{\rtf1\ansi\uc1 " + body + rb"{\field{\*\fldinst DDEAUTO c:\\a\\b.exe x}"
        rb"{\fldrslt shown}}\par{\object\objemb{\*\objdata " + OBJ.encode() + rb"}}}"
    )
    src = _write(tmp_path, "src.rtf", data)
    assert dde_found(src) and rtf_objects(src) == 1
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert out == rb"{\rtf1\ansi\uc1 " + body + rb"{shown}\par}"
    dest = _write(tmp_path, "out.rtf", out)
    assert dde_found(dest) == "" and rtf_objects(dest) == 0


def test_unicode_fallback_then_hex_spelled_dde(tmp_path: Path) -> None:
    # the \'3f is the \u fallback, skipped; the field keyword is then "DDE"
    data = rb"{\rtf1 \u1234\'3f text {\field{\*\fldinst \'44DE x}{\fldrslt r}}\par}"
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert out == rb"{\rtf1 \u1234\'3f text {r}\par}"


def test_unicode_text_fallback_before_a_dde_field(tmp_path: Path) -> None:
    # Word skips the "?" (the fallback of \u1234): the instruction is "DDE x"
    data = rb"{\rtf1 \u1234?{\field{\*\fldinst DDE x}{\fldrslt r}}\par}"
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert out == rb"{\rtf1 \u1234?{r}\par}"


@pytest.mark.parametrize(
    "data",
    [
        # no fallback character: the brace ends the skipping, the keyword stays "DDE"
        rb"{\rtf1 \u1234{\field{\*\fldinst DDEAUTO x}{\fldrslt r}}\par}",
        # the fallback in a group of its own: nothing left to skip in the field
        rb"{\rtf1 {\u1234?}{\field{\*\fldinst DDEAUTO x}{\fldrslt r}}\par}",
        # \uc2 with a text fallback of two characters, then the field
        rb"{\rtf1 \uc2\u1234??{\field{\*\fldinst DDE x}{\fldrslt r}}\par}",
        # a fallback split by a line break
        b"{\\rtf1 \\uc2\\u1234?\r\n?{\\field{\\*\\fldinst DDE x}{\\fldrslt r}}\\par}",
    ],
)
def test_unicode_fallbacks_never_hide_a_dde_keyword(tmp_path: Path, data: bytes) -> None:
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"fldinst" not in out and b"DDE" not in out


def test_picture_hex_clean_or_broken_into_lines(tmp_path: Path) -> None:
    hexdata = png(40, 30, "blue").hex()
    wrapped = "\r\n".join(hexdata[i : i + 70] for i in range(0, len(hexdata), 70))
    outs = []
    for text in (hexdata, wrapped, hexdata.upper()):
        data = (r"{\rtf1 {\pict\pngblip\picw40\pich30 " + text + r"}\par}").encode()
        outcome, out = _run(tmp_path, data)
        assert outcome == "rebuilt"
        outs.append(out)
    assert outs[0] == outs[1] == outs[2]
    found = re.search(rb"\\pngblip\n([0-9a-f\n]+)\}", outs[0])
    assert found is not None
    lines = found.group(1).split(b"\n")
    assert all(len(line) == 128 for line in lines[:-1]) and 0 < len(lines[-1]) <= 128
    assert bytes.fromhex(b"".join(lines).decode()).startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "data",
    [
        b"{\\rtf1 {\\b x} text \\",
        b"{\\rtf1 {\\b x} text",
        b"{\\rtf1 {\\b x\\bin5 ab}}",
    ],
    ids=["dangling-backslash", "unclosed", "bin-past-end"],
)
def test_truncated_documents_are_refused(tmp_path: Path, data: bytes) -> None:
    outcome, _ = _run(tmp_path, data)
    assert outcome == "unprocessable"


@pytest.mark.parametrize(
    "instruction",
    [
        # \uc2: is "\b" the second fallback character (then the keyword is "DDE") or is
        # "D" (then it is "DE")? Readers differ; the field is neutralised either way.
        rb"\uc2\u1234?\b DDE x",
        rb"\u1234\b DDEAUTO x",
    ],
)
def test_control_word_among_unicode_fallbacks_makes_the_field_risky(
    tmp_path: Path, instruction: bytes
) -> None:
    data = rb"{\rtf1 {\field{\*\fldinst " + instruction + rb"}{\fldrslt r}}\par}"
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"fldinst" not in out and b"DDE" not in out


def test_word_style_unicode_in_a_hyperlink_is_not_ambiguous(tmp_path: Path) -> None:
    # How Word writes a non-ASCII character in an instruction: \uN and its \'hh
    # fallback. It is read exactly: a bookmark link, not an ambiguous field.
    data = rb"{\rtf1 {\field{\*\fldinst HYPERLINK \\l \u1234\'3fmark}{\fldrslt r}}\par}"
    path = _write(tmp_path, "t.rtf", data)
    result, _dest = disarm(path, tmp_path, switches("sanitise"))
    hits = {(a.switch, a.detail) for a in result.actions if a.action != "kept"}
    assert any(sw == "internal_hyperlinks" for sw, _ in hits), result.actions
    assert not any("ambiguous" in (detail or "") for _, detail in hits), result.actions


def test_unicode_skip_cut_short_by_a_brace_in_an_instruction_makes_the_field_risky(
    tmp_path: Path,
) -> None:
    # A reader that goes on skipping across "}" skips the X and runs DDEAUTO.
    data = (
        rb"{\rtf1\ansi {\field{\*\fldinst {\u32}XDDEAUTO c:\\windows\\system32\\cmd.exe"
        rb" \"/k calc\"}{\fldrslt x}}\par}"
    )
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"DDEAUTO" not in out and b"fldinst" not in out


@pytest.mark.parametrize("default", ["sanitise", "allow"])
def test_risky_field_at_the_top_level_of_the_document(tmp_path: Path, default: str) -> None:
    # not what Word writes (a field has its own group), but readers take it: it cannot
    # be removed without removing the document, so the file is not delivered rebuilt
    data = rb"{\rtf1\ansi\field{\*\fldinst DDEAUTO c:\\a\\b.exe x}{\fldrslt shown}}"
    assert dde_found(_write(tmp_path, "src.rtf", data))
    outcome, out = _run(tmp_path, data, default)
    if default == "sanitise":
        assert (outcome, out) == ("unprocessable", b"")
    else:
        assert outcome == "unmodified"


def test_harmless_field_at_the_top_level_is_kept(tmp_path: Path) -> None:
    data = rb"{\rtf1\ansi\field{\*\fldinst PAGE}{\fldrslt 1}}"
    assert _run(tmp_path, data) == ("unmodified", b"")
