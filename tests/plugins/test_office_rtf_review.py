"""RTF inputs found by an adversarial review: each hid an OLE object, a DDE field or
an external link from the engine but not from oletools (rtfobj, msodde) or
LibreOffice. Now each is removed, or the file is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins.test_office import _ole1_package, _write, dde_found, rtf_objects
from tests.plugins.test_office_rtf import _run

OBJ = _ole1_package(b"gicap rtf test payload\n").hex().encode()
OBJECT = rb"{\object\objemb{\*\objclass Package}{\*\objdata " + OBJ + rb"}{\result x}}"
DDE = rb'{\field{\*\fldinst DDEAUTO c:\\windows\\system32\\cmd.exe "/k echo"}{\fldrslt x}}'
LINK = rb'{\field{\*\fldinst HYPERLINK "http://example.com/evil"}{\fldrslt click}}'


def _bin_hides(payload: bytes) -> bytes:
    """\\bin with an 11-digit length: read whole by Word and rtfobj (7 bytes skipped,
    then the payload), cut at 10 digits it hid the payload in a second \\bin."""
    rest = b"}" + payload + rb"{\*\y "
    inner = b"\\bin" + str(len(rest)).encode()
    length = str(len(inner)).encode().rjust(11, b"0")
    return rb"{\rtf1 A{\*\x\bin" + length + b" " + inner + rest + rb"}B\par}"


@pytest.mark.parametrize("payload", [OBJECT, DDE, LINK], ids=["object", "dde", "link"])
def test_overlong_numbers_are_refused(tmp_path: Path, payload: bytes) -> None:
    data = _bin_hides(payload)
    source = _write(tmp_path, "src.rtf", data)
    assert rtf_objects(source) == 1 if payload is OBJECT else True
    assert _run(tmp_path, data) == ("unprocessable", b"")


def test_overlong_control_word_is_refused(tmp_path: Path) -> None:
    data = (
        rb"{\rtf1 a{\field{\*\fldinst \ "[:-1]
        + b"a" * 40
        + rb' DDEAUTO c:\\windows\\system32\\cmd.exe "/k echo"}{\fldrslt x}}b\par}'
    )
    assert dde_found(_write(tmp_path, "src.rtf", data))
    assert _run(tmp_path, data) == ("unprocessable", b"")


@pytest.mark.parametrize(
    "data",
    [
        rb"{\rtf1 a{\object\objemb{\*\objclass Package}{\*\objdata "
        + OBJ
        + rb"}{\result {\*\objdata "
        + OBJ
        + rb"}}}b\par}",
        rb"{\rtf1 a{\object{\fldrslt{\objemb{\*\objclass Package}{\*\objdata "
        + OBJ
        + rb"}}}}b\par}",
    ],
    ids=["objdata-in-result", "objdata-in-fldrslt"],
)
def test_object_data_in_a_kept_result_is_removed(tmp_path: Path, data: bytes) -> None:
    assert rtf_objects(_write(tmp_path, "src.rtf", data)) >= 1
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert rtf_objects(_write(tmp_path, "out.rtf", out)) == 0


@pytest.mark.parametrize("switch", [rb'\\o "tip" ', rb'\\t "_blank" ', rb"\\m "])
def test_hyperlink_with_a_switch_before_its_target_is_removed(
    tmp_path: Path, switch: bytes
) -> None:
    data = (
        rb"{\rtf1 a{\field{\*\fldinst HYPERLINK " + switch + rb'"http://example.com/evil"}'
        rb"{\fldrslt click}}b\par}"
    )
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"example.com" not in out and b"click" in out


@pytest.mark.parametrize(
    "data",
    [
        rb'{\rtf1 a{\field{\*\fldinst DDEAUTO c:\\a.exe "/k x"}{\*\fldinst PAGE}{\fldrslt x}}\par}',
        rb'{\rtf1 a{\field{{\*\fldinst DDEAUTO c:\\a.exe "/k x"}}{\fldrslt x}}b\par}',
        rb'{\rtf1 a{\field{\*\fldinst \u68\bin1 xDEAUTO c:\\a.exe "/k x"}{\fldrslt x}}b\par}',
    ],
    ids=["two-instructions", "instruction-a-group-deeper", "bin-as-unicode-fallback"],
)
def test_instructions_readers_may_read_differently_are_risky(tmp_path: Path, data: bytes) -> None:
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"DEAUTO" not in out
    assert dde_found(_write(tmp_path, "out.rtf", out)) == ""


# A fourth review's findings.


@pytest.mark.parametrize(
    "group", [rb"{\*\bkmkstart X}", rb"{\*\gicapx X}", rb"{\bkmkstart X}", rb"{\xe X}"]
)
def test_destination_text_in_an_instruction_is_not_part_of_it(tmp_path: Path, group: bytes) -> None:
    """RTF readers skip a destination group in a field instruction, or read it as what
    it is (a bookmark name): its text never joins the keyword. Read as "XDDEAUTO", the
    DDE field below passed as harmless."""
    data = (
        rb"{\rtf1 a{\field{\*\fldinst "
        + group
        + rb'DDEAUTO c:\\windows\\system32\\cmd.exe "/k calc"}'
        rb"{\fldrslt x}}b\par}"
    )
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"DDEAUTO" not in out and b"x" in out


def test_formatting_text_in_an_instruction_is_part_of_it(tmp_path: Path) -> None:
    """A formatting group's text is still the instruction's: "{\\b DDE}AUTO" is DDEAUTO."""
    data = rb'{\rtf1 a{\field{\*\fldinst {\b DDE}AUTO c:\\a.exe "/k x"}{\fldrslt x}}b\par}'
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"AUTO" not in out


@pytest.mark.parametrize(
    "data",
    [
        rb"{\rtf1 a{\'a\\object\'a\\objemb{\'a\\objdata " + OBJ + rb"}}b\par}",
        rb'{\rtf1 a{\'a\\field{\*\fldinst DDEAUTO c:\\windows\\system32\\cmd.exe "/k calc"}'
        rb"{\fldrslt x}}b\par}",
        rb"{\rtf1 a{\'a\\template http://evil.example/t.dotm}b\par}",
        rb"{\rtf1 a\'zz b\par}",
    ],
    ids=["object", "dde", "template", "plain-text"],
)
def test_hex_escape_without_two_digits_is_refused(tmp_path: Path, data: bytes) -> None:
    """Word and rtfobj take the two characters after "\\'" as its digits whatever they
    are ("\\'a\\\\objdata" is the word \\objdata to them), other readers do not."""
    if b"objdata" in data:
        assert rtf_objects(_write(tmp_path, "src.rtf", data)) == 1
    assert _run(tmp_path, data) == ("unprocessable", b"")


_DEEP_GROUPS = """
import sys
from pathlib import Path
from tests.plugins.test_office_rtf import _run
data = b"{\\\\rtf1 " + b"{" * 9000 + b"{\\\\objdata}{\\\\fldinst}" * 75_000 + b"}" * 9000 + b"}"
print(_run(Path(sys.argv[1]), data)[0])
"""


def test_many_groups_deep_in_the_document_are_judged_without_the_stack(tmp_path: Path) -> None:
    """Closing an \\objdata or \\fldinst group looked through every enclosing group:
    9,000 levels then 150,000 small groups (2 MB) took about two minutes. In a child
    process: one that never ends fails after its minute."""
    out = subprocess.run(
        [sys.executable, "-c", _DEEP_GROUPS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert out.stdout.strip() == "rebuilt", out.stderr


@pytest.mark.parametrize(
    "instruction",
    [
        rb'DDEAUTO"c:\\windows\\system32\\cmd.exe" "/k calc"',
        rb'INCLUDEPICTURE"http://x.example/t.png" \\d',
        # a nested field makes the keyword, or its end (DD + EAUTO): any field nested
        # in an instruction makes it one readers may read differently
        rb'{\field{\*\fldinst QUOTE "DDEAUTO"}{\fldrslt DDEAUTO}} c:\\a.exe "/k x"',
        rb'DD{\field{\*\fldinst QUOTE "EAUTO"}{\fldrslt EAUTO}} c:\\a.exe "/k x"',
    ],
    ids=["dde", "includepicture", "nested-whole-keyword", "nested-end-of-keyword"],
)
def test_a_quote_right_after_the_keyword_ends_it(tmp_path: Path, instruction: bytes) -> None:
    """Word reads the keyword up to the quote; read as one word with it, the field
    passed as harmless. (Word puts a nested field's result in the instruction.)"""
    data = rb"{\rtf1 a{\field{\*\fldinst " + instruction + rb"}{\fldrslt x}}b\par}"
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert instruction.split(b'"')[0] not in out and b"x" in out


@pytest.mark.parametrize(
    "instruction",
    [
        rb'{\upr{X}{\*\ud{DDEAUTO c:\\windows\\system32\\cmd.exe "/k calc"}}}',
        rb'DD{\upr{X}{\*\ud{E}}}AUTO c:\\windows\\system32\\cmd.exe "/k calc"',
        rb'DD{\g E}AUTO c:\\windows\\system32\\cmd.exe "/k calc"',
        rb'DD{\sp E}AUTO c:\\windows\\system32\\cmd.exe "/k calc"',
        rb'DD{\*\gicapx E}AUTO c:\\windows\\system32\\cmd.exe "/k calc"',
    ],
    ids=["upr-ud", "upr-split", "g-split", "sp-split", "unknown-split"],
)
def test_text_in_a_destination_in_an_instruction_makes_it_ambiguous(
    tmp_path: Path, instruction: bytes
) -> None:
    """Word reads \\upr's \\ud text; which readers take other destinations' text is
    not certain: left out of the instruction, "DD" "AUTO" passed as harmless."""
    data = rb"{\rtf1 a{\field{\*\fldinst " + instruction + rb"}{\fldrslt x}}b\par}"
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"cmd.exe" not in out and b"x" in out


def test_bookmarks_and_form_data_in_an_instruction_are_not_ambiguous(tmp_path: Path) -> None:
    """Word writes them there with text of their own: a form field stays a field."""
    data = (
        rb"{\rtf1 a{\field{\*\fldinst {\*\bkmkstart Text1} FORMTEXT {\*\datafield "
        rb"800100000000000005546578743100}{\*\formfield{\fftype0{\*\ffname Text1}}}}"
        rb"{\fldrslt x}}b\par}"
    )
    assert _run(tmp_path, data)[0] == "unmodified"


# A fifth review's findings.


@pytest.mark.parametrize(
    "data",
    [
        rb'{\rtf1 {\*\fldinst DDEAUTO c:\\windows\\system32\\cmd.exe "/c calc"}hello\par}',
        rb'{\rtf1 a{\field{\*\fldinst PAGE}{\fldrslt {\*\fldinst DDEAUTO c:\\a.exe "/k x"}}}b\par}',
        rb'{\rtf1 a{\object\objemb{\*\objdata 0102}{\result {\*\fldinst DDEAUTO c:\\a.exe "/k"}x}}'
        rb"b\par}",
        b'{\\rtf1 a{\\field{\\*\\fldinst DD\x00EAUTO c:\\\\a.exe "/k x"}{\\fldrslt x}}b\\par}',
        rb'{\rtf1 a{\field{\*\fldinst DD\'00EAUTO c:\\a.exe "/k x"}{\fldrslt x}}b\par}',
        rb'{\rtf1 a{\field{\*\fldinst DD\'0dEAUTO c:\\a.exe "/k x"}{\fldrslt x}}b\par}',
        # (a review of the fix: a result that is itself a field or an instruction;
        # an instruction alone whose text sits in a destination group)
        rb"{\rtf1 A {\field{\*\fldinst DDEAUTO x}{\fldrslt\field{\*\fldinst DDEAUTO c:\\a.exe "
        rb'"/k calc"}}} C\par}',
        rb"{\rtf1 A {\field{\*\fldinst DDEAUTO x}{\fldrslt R\field{\*\fldinst DDEAUTO c:\\a.exe "
        rb'"/k calc"}}} C\par}',
        rb'{\rtf1 A {\field{\fldrslt\fldinst DDEAUTO c:\\a.exe "/k calc"}} C\par}',
        rb'{\rtf1 {\*\fldinst {\pn DDEAUTO c:\\a.exe "/k calc"}} hello\par}',
        rb'{\rtf1 {\*\fldinst {\upr{DDEAUTO c:\\a.exe "/k calc"}{\*\ud x}}} hello\par}',
    ],
    ids=[
        "instruction-alone",
        "in-a-kept-result",
        "in-an-object-result",
        "nul-in-keyword",
        "hex-nul-in-keyword",
        "hex-cr-in-keyword",
        "result-is-a-field",
        "field-later-in-result",
        "result-is-an-instruction",
        "alone-in-a-destination",
        "alone-in-upr",
    ],
)
def test_dde_instructions_no_field_holds_or_split_by_controls_go(
    tmp_path: Path, data: bytes
) -> None:
    """An \\fldinst no \\field holds (LibreOffice makes it a field), or one carried
    out of a replaced field's result, and a keyword split by a control character
    LibreOffice drops ("DD\\0EAUTO"), were delivered with their DDEAUTO."""
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"EAUTO" not in out
    assert dde_found(_write(tmp_path, "out.rtf", out)) == ""


def test_an_embedded_font_without_its_star_goes(tmp_path: Path) -> None:
    data = rb"{\rtf1{\fonttbl{\f0 Arial{\fontemb\fttruetype 0102030405}}}a\par}"
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt" and b"fontemb" not in out


def test_nested_information_and_field_results_are_read_in_linear_time(tmp_path: Path) -> None:
    """3,000 nested \\info groups around 1 MB were each scanned again (66 s from a
    1 KB gzip-encoded body); 4,990 nested DDE fields around 5 MB copied their result
    again at every level (9 s)."""
    import time

    info = b"{\\rtf1 " + b"{\\info " * 3000 + b"x" * 1_000_000 + b"}" * 3000 + b"}"
    fields = (
        b"{\\rtf1 "
        + b"{\\field{\\*\\fldinst DDE a}{\\fldrslt " * 4990
        + b"y" * 1_000_000
        + b"}}" * 4990
        + b"}"
    )
    for data, gone in ((info, b"x" * 100), (fields, b"fldinst")):
        started = time.perf_counter()
        outcome, out = _run(tmp_path, data)
        took = time.perf_counter() - started
        assert outcome == "rebuilt" and gone not in out
        assert took < 8, took  # (about 0.1 s and 0.3 s)


def test_removed_bytes_never_join_two_tokens_into_a_field(tmp_path: Path) -> None:
    """A tracked deletion between "\\fi" and "eld" (and "\\fl" and "dinst"): removing
    it made "\\field{\\fldinst DDEAUTO ...}", a field LibreOffice and msodde read."""
    data = (
        rb"{\rtf1\ansi Before {\fi\deleted X\deleted0 eld{\fl\deleted X\deleted0 dinst DDEAUTO "
        rb'c:\\windows\\system32\\cmd.exe "/k calc.exe"}{\fldrslt result}} after\par}'
    )
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert b"\\field" not in out and b"\\fldinst" not in out
    assert dde_found(_write(tmp_path, "out.rtf", out)) == ""


@pytest.mark.parametrize(
    "before",
    [rb"\\" * 23, rb"\bin3 " + b"\\\\\\"],
    ids=["escaped-backslashes", "raw-bin-backslashes"],
)
def test_no_backslash_run_hides_a_word_a_removal_would_join(tmp_path: Path, before: bytes) -> None:
    """Counting backslashes in a window of the output was fooled: a long run of
    escaped ones, or raw \\bin bytes, before \\fi left \\field joined again."""
    data = (
        rb"{\rtf1\ansi {"
        + before
        + rb"\fi\deleted X\deleted0 eld{"
        + before
        + rb"\fl\deleted X\deleted0 dinst "
        rb'DDEAUTO c:\\windows\\system32\\cmd.exe "/k calc.exe"}{\fldrslt result}} after\par}'
    )
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt"
    assert dde_found(_write(tmp_path, "out.rtf", out)) == ""
