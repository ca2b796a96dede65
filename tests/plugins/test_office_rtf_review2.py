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

from tests.plugins.test_office import _write, dde_found
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


def _libreoffice_field_codes(tmp_path: Path, files: dict[str, bytes]) -> dict[str, list[str]]:
    """The field codes LibreOffice reads in each file (converted to ODT, one run)."""
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
        codes[name] = [
            html.unescape(m.group(1))
            for m in re.finditer(r'field\.code" field:value="([^"]*)"', content)
        ]
    return codes


def test_libreoffice_reads_the_findings(tmp_path: Path) -> None:
    findings = {k: v for k, v in LATER_DESTINATIONS.items() if k != "in-the-instruction-group"}
    files = {f"src-{name}": data for name, data in findings.items()}
    for name, data in findings.items():
        outcome, out = _run(tmp_path, data)
        assert outcome == "rebuilt"
        files[f"out-{name}"] = out
    codes = _libreoffice_field_codes(tmp_path, files)
    for name in findings:
        assert any(code.startswith("DDEAUTO") for code in codes[f"src-{name}"]), name
        assert codes[f"out-{name}"] == [], name
