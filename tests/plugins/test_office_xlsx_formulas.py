"""Spreadsheet formulas that load another document: a workbook written by hand (zipfile
and XML), delivered under the default policy, then opened in LibreOffice the way a
user who lets it update links does (a Basic loader in a private profile opens the
file with ``UpdateDocMode`` FULL_UPDATE and recalculates it), with a loopback server
recording what it fetches."""

from __future__ import annotations

import io
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.loopback import Recorder, recording
from tests.plugins.test_office import assert_consistent, disarm, switches
from tests.support import require_tool

_S = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_X14 = (
    'xmlns:x14="http://schemas.microsoft.com/office/spreadsheetml/2009/9/main" '
    'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"'
)
_SPARKLINES = "{05C60535-1F16-4fd2-B633-F4F36F0B64E0}"


def workbook(cells: str, names: str = "", after: str = "") -> bytes:
    """A one-sheet workbook: A1 = 7, C1 = A1*2 (14), ``cells`` (B1...) in row 1,
    ``names`` in its defined names and ``after`` after the sheet's data."""
    wb = (
        f'<workbook xmlns="{_S}" xmlns:r="{_R}"><sheets>'
        '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets>'
        + (f"<definedNames>{names}</definedNames>" if names else "")
        + "</workbook>"
    )
    sheet = (
        f'<worksheet xmlns="{_S}"><sheetData><row r="1"><c r="A1"><v>7</v></c>{cells}'
        f'<c r="C1"><f>A1*2</f><v>14</v></c></row></sheetData>{after}</worksheet>'
    )
    ct = "application/vnd.openxmlformats-officedocument.spreadsheetml."
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "[Content_Types].xml",
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{ct}sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{ct}worksheet+xml"/>'
            "</Types>",
        )
        rels = (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        )
        z.writestr(
            "_rels/.rels",
            f'{rels}<Relationship Id="rId1" Type="{_R}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            f'{rels}<Relationship Id="rId1" Type="{_R}/worksheet" '
            'Target="worksheets/sheet1.xml"/></Relationships>',
        )
        z.writestr("xl/workbook.xml", wb)
        z.writestr("xl/worksheets/sheet1.xml", sheet)
    return out.getvalue()


def _sparkline(formula: str) -> str:
    return (
        f'<extLst><ext uri="{_SPARKLINES}" {_X14}><x14:sparklineGroups><x14:sparklineGroup>'
        f"<x14:sparklines><x14:sparkline><xm:f>{formula}</xm:f><xm:sqref>D1</xm:sqref>"
        "</x14:sparkline></x14:sparklines></x14:sparklineGroup></x14:sparklineGroups>"
        "</ext></extLst>"
    )


#: Where a formula naming another document (``{}``: 'http://host/[book.xlsx]Sheet1')
#: stands; LibreOffice loaded the book from each of them.
PLACES: dict[str, Callable[[str], bytes]] = {
    "cell": lambda ref: workbook(f'<c r="B1"><f>1+{ref}!A1</f><v>5</v></c>'),
    "defined-name": lambda ref: workbook(
        '<c r="B1"><f>linked</f><v>5</v></c>',
        names=f'<definedName name="linked">{ref}!$A$1</definedName>',
    ),
    "unused-defined-name": lambda ref: workbook(
        '<c r="B1"><v>5</v></c>', names=f'<definedName name="linked">{ref}!$A$1</definedName>'
    ),
    "conditional-format": lambda ref: workbook(
        '<c r="B1"><v>5</v></c>',
        after='<conditionalFormatting sqref="A1"><cfRule type="expression" priority="1">'
        f"<formula>{ref}!A1=1</formula></cfRule></conditionalFormatting>",
    ),
    "data-validation": lambda ref: workbook(
        '<c r="B1"><v>5</v></c>',
        after='<dataValidations count="1"><dataValidation type="list" sqref="A1">'
        f"<formula1>{ref}!$A$1:$A$3</formula1></dataValidation></dataValidations>",
    ),
    "sparkline": lambda ref: workbook('<c r="B1"><v>5</v></c>', after=_sparkline(f"{ref}!A1:A3")),
}
#: The document as a quoted sheet name: a URL before the book, the URL inside the
#: brackets, a 3-D reference, a Windows path; or in brackets before the sheet name, not
#: quoted (LibreOffice fetched it from a sparkline's range so).
REFERENCES = {
    "url": "'{base}/[book.xlsx]Sheet1'",
    "url-in-brackets": "'[{base}/book.xlsx]Sheet1'",
    "sheets": "'{base}/[book.xlsx]Sheet1:Sheet2'",
    "windows-path": "'C:\\data\\[book.xlsx]Sheet1'",
    "bracketed": "[{base}/book.xlsx]Sheet1",
    "bracketed-quoted-sheet": "[{base}/book.xlsx]'Sheet 1'",
    "bracketed-sheets": "[{base}/book.xlsx]Sheet1:Sheet2",
    "bracketed-unc": "[\\\\host\\share\\book.xlsx]Sheet1",
}


def _parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("reference", sorted(REFERENCES))
def test_a_formula_naming_another_document_goes(tmp_path: Path, place: str, reference: str) -> None:
    """A quoted sheet name holding a document's address names that document, as an
    external workbook link does: LibreOffice fetched it from a cell, a defined name
    (used or not), a conditional format, a data validation or a sparkline, and the
    file was delivered unmodified. Now the formula goes (a cell keeps its value)."""
    ref = REFERENCES[reference].format(base="http://127.0.0.1:9/hit")
    path = tmp_path / "in.xlsx"
    path.write_bytes(PLACES[place](ref))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert ("external_hyperlinks", "external workbook reference formula") in [
        (a.switch, a.detail) for a in result.actions
    ]
    parts = _parts(dest)
    assert not any(b"book.xlsx" in data for data in parts.values())
    sheet = parts["xl/worksheets/sheet1.xml"]
    assert b'<c r="C1"><f>A1*2</f><v>14</v></c>' in sheet  # (the clean formula stays)
    assert b'<c r="A1"><v>7</v></c>' in sheet
    assert b"<v>5</v>" in sheet  # (B1's value: its own, or the cached one)
    assert b"sparkline" not in sheet and b"extLst" not in sheet
    assert_consistent(dest)


@pytest.mark.parametrize(
    "formula",
    [
        "'My Sheet'!A1+'It''s'!B2",
        "SUM('Sheet 1:Sheet 3'!A1)",
        'IF(A1&gt;1,"http://x.example/[a]","")',  # (a string is no sheet name)
        "SUM(Table1[[#This Row],[a/b]])",
        # (a table's columns are no document, whatever follows them)
        "[@Col]*2+SUM([a/b])+SUM(Table1[Col]:Sheet1!B5)+IF([@a]&gt;0,[@b],Sheet2!A1)",
        "SUM(Table1[#All])&amp;'Sheet 1'!A1&amp;\"[x]Sheet1!A1\"",
    ],
)
def test_formulas_naming_sheets_of_the_workbook_are_kept(tmp_path: Path, formula: str) -> None:
    path = tmp_path / "in.xlsx"
    path.write_bytes(workbook(f'<c r="B1"><f>{formula}</f><v>5</v></c>'))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unmodified", result


# ----------------------------------------------------------------- LibreOffice

#: A Basic loader: each line of a list is "input<TAB>output"; the input is opened
#: hidden with its links updated (UpdateDocMode FULL_UPDATE: what "Allow updating"
#: does), recalculated (again after a pause: the links of rules, names and sparklines
#: load on a timer) and saved as CSV.
_LOADER = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "module.dtd">
<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1"
 script:language="StarBasic">
Sub Convert(sList As String)
  Dim fh As Integer, sLine As String, parts
  fh = FreeFile
  Open sList For Input As #fh
  Do While Not EOF(fh)
    Line Input #fh, sLine
    If Len(sLine) &gt; 0 Then
      parts = Split(sLine, Chr(9))
      ConvertOne(parts(0), parts(1))
    End If
  Loop
  Close #fh
End Sub
Sub ConvertOne(sIn As String, sOut As String)
  On Error Resume Next
  Dim a(1) As New com.sun.star.beans.PropertyValue
  a(0).Name = "Hidden" : a(0).Value = True
  a(1).Name = "UpdateDocMode" : a(1).Value = 4
  Dim doc
  doc = StarDesktop.loadComponentFromURL(ConvertToURL(sIn), "_blank", 0, a())
  If IsNull(doc) Or IsEmpty(doc) Then Exit Sub
  doc.calculateAll()
  Wait 1500
  doc.calculateAll()
  Dim f(1) As New com.sun.star.beans.PropertyValue
  f(0).Name = "FilterName" : f(0).Value = "Text - txt - csv (StarCalc)"
  f(1).Name = "FilterOptions" : f(1).Value = "44,34,76"
  doc.storeToURL(ConvertToURL(sOut), f())
  doc.close(True)
End Sub
</script:module>
"""
#: Link updates always, recalculation of xlsx files on load always, and every file
#: trusted for updating its links (macro security low: LibreOffice updates links
#: without asking only for a file it trusts; the test files hold no macro).
_SETTINGS = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting"><prop
 oor:name="MacroSecurityLevel" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode"
 oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Content/Update"><prop oor:name="Link"
 oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


@pytest.fixture(scope="module")
def updating_reader(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[Path]], Path]:
    """Opens files in LibreOffice with their links updated; returns the folder of the
    CSV files it wrote (``<stem>.csv``; missing for a file it could not load)."""
    soffice = require_tool("soffice", "libreoffice-calc-nogui")
    base = tmp_path_factory.mktemp("updating-reader")
    profile = f"-env:UserInstallation={(base / 'profile').as_uri()}"
    subprocess.run(
        [soffice, profile, "--headless", "--terminate_after_init"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    standard = base / "profile" / "user" / "basic" / "Standard"
    assert (standard / "script.xlb").exists(), "LibreOffice made no profile"
    (standard / "Module1.xba").write_text(_LOADER)
    settings = base / "profile" / "user" / "registrymodifications.xcu"
    text = settings.read_text() if settings.exists() else _SETTINGS
    items = _SETTINGS.split("\n", 2)[2].rsplit("</oor:items>", 1)[0]
    settings.write_text(text.replace("</oor:items>", items + "</oor:items>"))
    runs = [0]

    def read(files: list[Path]) -> Path:
        runs[0] += 1
        out = base / f"out-{runs[0]}"
        out.mkdir()
        listing = out / "list.txt"
        listing.write_text("".join(f"{f}\t{out / (f.stem + '.csv')}\n" for f in files))
        subprocess.run(
            [soffice, profile, "--headless", "--norestore"]
            + [f'macro:///Standard.Module1.Convert("{listing}")'],
            capture_output=True,
            timeout=600,
            check=False,
        )
        return out

    return read


def _read(reader: Callable[[list[Path]], Path], server: Recorder, files: list[Path]) -> Path:
    server.paths.clear()
    out = reader(files)
    time.sleep(0.2)
    return out


def test_libreoffice_loads_no_document_a_delivered_formula_named(
    tmp_path: Path, updating_reader: Callable[[list[Path]], Path]
) -> None:
    """Every place and form of a quoted document name: LibreOffice fetched the book of
    each original (the reader reaches it), and nothing from the delivered files, whose
    clean cells show the same values."""
    originals: list[Path] = []
    delivered: list[Path] = []
    with recording() as server:
        for place, build in PLACES.items():
            forms = ("url", "url-in-brackets", "sheets") if place == "cell" else ("url",)
            if place == "sparkline":
                forms = ("url", "bracketed", "bracketed-quoted-sheet", "bracketed-sheets")
            for reference in forms:
                name = f"{place}-{reference}"
                ref = REFERENCES[reference].format(base=f"{server.base}/hit/{name}")
                src = tmp_path / "original" / f"{name}.xlsx"
                src.parent.mkdir(exist_ok=True)
                src.write_bytes(build(ref))
                result, dest = disarm(src, tmp_path, switches("sanitise"))
                assert result.outcome == "rebuilt", (name, result)
                target = tmp_path / "delivered" / f"{name}.xlsx"
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(dest.read_bytes())
                originals.append(src)
                delivered.append(target)
        _read(updating_reader, server, originals)
        fetched = {p.split("/")[2] for p in server.hits()}
        assert fetched == {f.stem for f in originals}, fetched
        out = _read(updating_reader, server, delivered)
        assert server.hits() == []
    for path in delivered:
        csv = (out / f"{path.stem}.csv").read_text()
        # A1 and C1 (=A1*2) as they were; B1 its cached value (a cell that used the
        # removed name shows that the name is gone)
        expected = "#NAME?" if path.stem.startswith("defined-name") else "5"
        assert csv.splitlines()[0] == f"7,{expected},14", (path.stem, csv)


# ------------------------------------------------------------- function names


def _formulas_left(path: Path) -> bytes:
    parts = _parts(path)
    return parts["xl/workbook.xml"] + parts["xl/worksheets/sheet1.xml"]


@pytest.mark.parametrize(
    ("formula", "switch"),
    [
        ('HYPERLIN\u212a("http://x.example/","a")', "external_hyperlinks"),  # (Kelvin sign)
        ('_xlfn.WEB\u017fERVICE("http://x.example/")', "external_hyperlinks"),  # (long s)
        ('_xlfn.WEBSERV\u0131CE("http://x.example/")', "external_hyperlinks"),  # (dotless i)
    ],
)
def test_a_function_name_in_folded_letters_is_read(
    tmp_path: Path, formula: str, switch: str
) -> None:
    """Unicode letters that fold to ASCII ones in a function's name: LibreOffice
    fetched the URL of WEBſERVICE and WEBSERVıCE; a HYPERLINK spelt with the Kelvin
    sign made the engine fail (the file was blocked as unprocessable)."""
    path = tmp_path / "in.xlsx"
    path.write_bytes(workbook(f'<c r="B1" t="str"><f>{formula}</f><v>a</v></c>'))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert [a.switch for a in result.actions] == [switch]
    sheet = _parts(dest)["xl/worksheets/sheet1.xml"]
    assert b"x.example" not in sheet and b"<t>a</t>" in sheet  # (the value stays)
    assert b'<c r="C1"><f>A1*2</f><v>14</v></c>' in sheet


@pytest.mark.parametrize(
    ("name", "formula", "switch"),
    [
        ("exec", 'EXEC("calc.exe")', "macros"),
        ("register", 'REGISTER("Kernel32","WinExec","JCJ","Run",,1,9)', "macros"),
        ("run", "RUN(Macro1!$A$1)", "macros"),
        ("evaluate", '_xlfn.EVALUATE("WEB"&amp;"SERVICE(""http://x.example/"")")', "macros"),
        ("initiate", 'INITIATE("cmd","/c calc")', "dynamic_data_exchange"),
        ("request", 'REQUEST(INITIATE("Excel","System"),"Topics")', "dynamic_data_exchange"),
    ],
)
def test_excel_4_macro_functions_in_names_and_cells_go(
    tmp_path: Path, name: str, formula: str, switch: str
) -> None:
    """Excel evaluates Excel 4 macro functions in a defined name: EXEC runs a program,
    REGISTER a DLL's function, RUN a macro, EVALUATE a formula built from text (a
    WEBSERVICE no one can see), INITIATE/REQUEST a DDE conversation. They were
    delivered as they came; now the name (or a cell's formula) goes."""
    for where in ("name", "cell"):
        path = tmp_path / f"{name}-{where}.xlsx"
        if where == "name":
            data = workbook(
                '<c r="B1"><f>x</f><v>5</v></c>',
                names=f'<definedName name="x">{formula}</definedName>',
            )
        else:
            data = workbook(f'<c r="B1"><f>{formula}</f><v>5</v></c>')
        path.write_bytes(data)
        result, dest = disarm(path, tmp_path, switches("sanitise"))
        assert result.outcome == "rebuilt", (where, result)
        assert switch in [a.switch for a in result.actions]
        left = _formulas_left(dest)
        assert formula.split("(")[0].encode() not in left, left
        assert b'<c r="C1"><f>A1*2</f><v>14</v></c>' in left


def test_names_like_excel_4_functions_are_kept(tmp_path: Path) -> None:
    """A name or a function that only starts like one is no call."""
    path = tmp_path / "in.xlsx"
    path.write_bytes(
        workbook(
            # (ÄRUN, ÉEXEC: names of their own, LAMBDA ones called)
            '<c r="B1"><f>SUM(Run1,Exec_2)+RUNS(1)+Request.Id+\u00c4RUN(1)+\u00c9EXEC(2)</f>'
            "<v>5</v></c>",
            names='<definedName name="Run1">Sheet1!$A$1</definedName>'
            '<definedName name="Exec_2">Sheet1!$A$1</definedName>',
        )
    )
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unmodified", result
