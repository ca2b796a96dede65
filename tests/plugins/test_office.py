"""gicap-office: OOXML, RTF and legacy OLE files, checked with independent readers.

The corpus is generated here: documents made with python-docx, openpyxl and
python-pptx, then given active content through those libraries' own package API (or
zip surgery where they have none): a real VBA project (an OLE compound file with a
compressed ``dir`` stream and module that olevba extracts), an ActiveX control, an
OLE object, DDE fields and links, external/internal links, a remote template, an
Excel 4 macro sheet, data connections, comments, tracked changes and metadata. The
macros only show a message or set a cell; nothing here is malware.

What counts as "gone" is decided by tools that are not this engine: oletools' olevba
(VBA), msodde (DDE), oleobj (embedded OLE objects, external relationships) and rtfobj
(RTF objects), zip listings and the relationship parts, and python-docx / openpyxl /
python-pptx for what the user still sees.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gicap.cdr.detect import FILE_TYPES, detect
from gicap.cdr.policy import SWITCHES, build_profile
from gicap.cdr.types import DisarmRequest, DisarmResult, FileType
from tests.ole import build, tree_of

docx = pytest.importorskip("docx", reason="python-docx (test dependency) not installed")
openpyxl = pytest.importorskip("openpyxl", reason="openpyxl (test dependency) not installed")
pptx = pytest.importorskip("pptx", reason="python-pptx (test dependency) not installed")
Image = pytest.importorskip("PIL.Image", reason="Pillow not installed")
gicap_office = pytest.importorskip("gicap_office", reason="gicap-office plugin not installed")

with warnings.catch_warnings():  # olevba's pyparsing use warns on import
    warnings.simplefilter("ignore")
    from oletools import msodde, oleobj, olevba, rtfobj
    from oletools.ooxml import XmlParser

OFFICE_SWITCHES = SWITCHES["office"]
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"
MSR = "http://schemas.microsoft.com/office/2006/relationships/"
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NS = (
    f'xmlns:w="{W_NS}" xmlns:r="{R[:-1]}" '
    'xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office"'
)
CT_DOCM = "application/vnd.ms-word.document.macroEnabled.main+xml"
CT_DOTM = "application/vnd.ms-word.template.macroEnabledTemplate.main+xml"
CT_XLSM = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
CT_PPTM = "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml"
CT_VBA = "application/vnd.ms-office.vbaProject"
MACRO = 'Sub AutoOpen()\r\n    MsgBox "gicap test macro"\r\nEnd Sub\r\n'


def switches(default: str = "allow", **values: str) -> dict[str, str]:
    """Every office switch at ``default``, except those given."""
    out = dict.fromkeys(OFFICE_SWITCHES, default)
    out.update(values)
    return out


# ----------------------------------------------------------- OLE compound files


def make_ole(streams: dict[str, bytes]) -> bytes:
    """A compound file holding ``{"storage/stream": data}`` (siblings chained to the
    right: a valid, degenerate red-black tree)."""
    return build(tree_of(streams), shape="right")


def _vba_compress(data: bytes) -> bytes:
    """MS-OVBA compression with literal tokens only (valid, just not smaller)."""
    out = bytearray(b"\x01")
    for at in range(0, len(data), 3000):
        chunk = data[at : at + 3000]
        body = bytearray()
        for i in range(0, len(chunk), 8):
            body += b"\x00" + chunk[i : i + 8]
        out += struct.pack("<H", 0xB000 | (len(body) - 1)) + body
    return bytes(out)


def _rec(rid: int, data: bytes) -> bytes:
    return struct.pack("<HI", rid, len(data)) + data


def vba_streams(code: str, prefix: str = "") -> dict[str, bytes]:
    """The streams of a VBA project (MS-OVBA): PROJECT, VBA/_VBA_PROJECT, VBA/dir and
    one standard module holding ``code``."""
    name = b"Module1"
    uname = name.decode().encode("utf-16-le")
    d = b"".join(
        [
            _rec(0x01, struct.pack("<I", 1)),  # SYSKIND: 32-bit Windows
            _rec(0x02, struct.pack("<I", 0x409)),  # LCID
            _rec(0x14, struct.pack("<I", 0x409)),  # LCIDINVOKE
            _rec(0x03, struct.pack("<H", 1252)),  # CODEPAGE
            _rec(0x04, b"VBAProject"),  # NAME
            _rec(0x05, b"") + _rec(0x40, b""),  # DOCSTRING
            _rec(0x06, b"") + _rec(0x3D, b""),  # HELPFILEPATH
            _rec(0x07, struct.pack("<I", 0)),  # HELPCONTEXT
            _rec(0x08, struct.pack("<I", 0)),  # LIBFLAGS
            struct.pack("<HIIH", 0x09, 4, 1, 0),  # VERSION
            _rec(0x0C, b"") + _rec(0x3C, b""),  # CONSTANTS
            _rec(0x0F, struct.pack("<H", 1)),  # MODULES: one
            _rec(0x13, struct.pack("<H", 0xFFFF)),  # COOKIE
            _rec(0x19, name) + _rec(0x47, uname),  # MODULENAME (+ unicode)
            _rec(0x1A, name) + _rec(0x32, uname),  # MODULESTREAMNAME
            _rec(0x1C, b"") + _rec(0x48, b""),  # MODULEDOCSTRING
            _rec(0x31, struct.pack("<I", 0)),  # MODULEOFFSET: source at 0
            _rec(0x1E, struct.pack("<I", 0)),  # MODULEHELPCONTEXT
            _rec(0x2C, struct.pack("<H", 0xFFFF)),  # MODULECOOKIE
            struct.pack("<HI", 0x21, 0),  # MODULETYPE: procedural
            struct.pack("<HI", 0x2B, 0),  # module TERMINATOR
            struct.pack("<HI", 0x10, 0),  # dir TERMINATOR
        ]
    )
    source = ('Attribute VB_Name = "Module1"\r\n' + code).encode("cp1252")
    return {
        prefix + "PROJECT": b'ID="{00000000-0000-0000-0000-000000000000}"\r\n'
        b'Module=Module1\r\nName="VBAProject"\r\n',
        prefix + "VBA/_VBA_PROJECT": b"\xcc\x61\xff\xff\x00\x00\x00",
        prefix + "VBA/dir": _vba_compress(d),
        prefix + "VBA/Module1": _vba_compress(source),
    }


VBA_BIN = make_ole(vba_streams(MACRO))
#: An embedded OLE object of class Package holding a harmless text file.
OLE_OBJECT = make_ole(
    {
        "\x01Ole10Native": struct.pack("<I", 28) + b"gicap embedded test payload\n",
        "\x01CompObj": b"\x01\x00\xfe\xff" + b"\x00" * 24,
    }
)


#: Bytes after the end of every test image (and a text chunk in it): re-encoding an
#: image drops both, so they show whether an image was rebuilt.
TRAILER = b"GICAP-IMAGE-TRAILER"


def png(width: int, height: int, color: str = "red") -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Alice Author")
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG", pnginfo=info)
    return buf.getvalue() + TRAILER


# ------------------------------------------------------------- zip surgery


def rezip(data: bytes, changes: dict[str, bytes | None | Callable[[bytes], bytes]]) -> bytes:
    """A copy of a zip with members replaced (bytes), edited (callable), removed
    (``None``) or added (a name not in the zip)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            change = changes.get(info.filename, ...)
            if change is None:
                continue
            body = src.read(info)
            if callable(change):
                body = change(body)
            elif change is not ...:
                body = change
            dst.writestr(info.filename, body)
        for name, change in changes.items():
            if name not in src.namelist() and isinstance(change, bytes):
                dst.writestr(name, change)
    return out.getvalue()


def add_rels(*rels: tuple[str, str, str, bool]) -> Callable[[bytes], bytes]:
    def edit(xml: bytes) -> bytes:
        new = "".join(
            f'<Relationship Id="{rid}" Type="{rtype}" Target="{target}"'
            + (' TargetMode="External"' if external else "")
            + "/>"
            for rid, rtype, target, external in rels
        )
        return xml.replace(b"</Relationships>", new.encode() + b"</Relationships>")

    return edit


def content_types(
    overrides: dict[str, str] | None = None, main: tuple[str, str] | None = None
) -> Callable[[bytes], bytes]:
    def edit(xml: bytes) -> bytes:
        text = xml.decode()
        if main:
            text = text.replace(main[0], main[1])
        for part, ct in (overrides or {}).items():
            if f'PartName="{part}"' in text:
                continue
            text = text.replace(
                "</Types>", f'<Override PartName="{part}" ContentType="{ct}"/></Types>'
            )
        return text.encode()

    return edit


def insert(before: str, xml: str) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        text = data.decode()
        assert before in text, before
        return text.replace(before, xml + before, 1).encode()

    return edit


# ----------------------------------------------------------------- the corpus


def _save(obj: Any) -> bytes:
    buf = io.BytesIO()
    obj.save(buf)
    return buf.getvalue()


def build_docx(risky: bool) -> bytes:
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml
    from docx.shared import Pt

    doc = docx.Document()
    doc.core_properties.author = "Alice Author"
    doc.core_properties.title = "Secret title"
    doc.add_heading("Quarterly report", 1)
    first = doc.add_paragraph("First paragraph of the report.")
    doc.add_picture(io.BytesIO(png(40, 30)))
    table = doc.add_table(rows=2, cols=2)
    for i, cell in enumerate(table._cells):
        cell.text = f"cell {i}"
    doc.add_paragraph("Last paragraph.").runs[0].font.size = Pt(11)
    if not risky:
        return _save(doc)

    doc.add_comment(first.runs, text="reviewer note", author="Bob Reviewer", initials="BR")
    part = doc.part
    package = part.package
    vba = Part(PackURI("/word/vbaProject.bin"), CT_VBA, VBA_BIN, package)
    part.relate_to(vba, MSR + "vbaProject")
    part._content_type = CT_DOCM
    ax = Part(
        PackURI("/word/activeX/activeX1.xml"),
        "application/vnd.ms-office.activeX+xml",
        b'<ax:ocx xmlns:ax="http://schemas.microsoft.com/office/2006/activeX" '
        b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
        b'ax:classid="{D7053240-CE69-11CD-A777-00DD01143C57}" ax:persistence="persistStream" '
        b'r:id="rId1"/>',
        package,
    )
    ax_bin = Part(
        PackURI("/word/activeX/activeX1.bin"),
        "application/vnd.ms-office.activeX",
        b"\0" * 64,
        package,
    )
    ax.relate_to(ax_bin, MSR + "activeXControlBinary")
    rid_ax = part.relate_to(ax, R + "control")
    preview = Part(PackURI("/word/media/preview.png"), "image/png", png(16, 16, "blue"), package)
    rid_prev = part.relate_to(preview, R + "image")
    ole = Part(
        PackURI("/word/embeddings/oleObject1.bin"),
        "application/vnd.openxmlformats-officedocument.oleObject",
        OLE_OBJECT,
        package,
    )
    rid_ole = part.relate_to(ole, R + "oleObject")
    rid_link = part.relate_to("http://example.com/external", R + "hyperlink", is_external=True)
    settings = doc.part._settings_part
    rid_tpl = settings.relate_to(
        "http://example.com/template.dotm", R + "attachedTemplate", is_external=True
    )
    settings.element.insert(0, parse_xml(f'<w:attachedTemplate {NS} r:id="{rid_tpl}"/>'))

    body = doc.element.body
    paragraphs = [
        '<w:r><w:t xml:space="preserve">Before </w:t></w:r>'
        '<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
        '<w:r><w:instrText xml:space="preserve"> DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe '
        '"/k echo gicap test" </w:instrText></w:r>'
        '<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
        "<w:r><w:t>dde result</w:t></w:r>"
        '<w:r><w:fldChar w:fldCharType="end"/></w:r>',
        '<w:fldSimple w:instr=" DDE &quot;cmd&quot; &quot;/c echo gicap&quot; ">'
        "<w:r><w:t>simple result</w:t></w:r></w:fldSimple>",
        f'<w:hyperlink r:id="{rid_link}"><w:r><w:t>external link</w:t></w:r></w:hyperlink>',
        '<w:bookmarkStart w:id="90" w:name="target"/><w:r><w:t>bookmark target</w:t></w:r>'
        '<w:bookmarkEnd w:id="90"/>',
        '<w:hyperlink w:anchor="target"><w:r><w:t>internal link</w:t></w:r></w:hyperlink>',
        '<w:r><w:t xml:space="preserve">kept </w:t></w:r>'
        '<w:ins w:id="91" w:author="Bob Reviewer" w:date="2024-01-01T00:00:00Z">'
        "<w:r><w:t>inserted</w:t></w:r></w:ins>"
        '<w:del w:id="92" w:author="Bob Reviewer" w:date="2024-01-01T00:00:00Z">'
        "<w:r><w:delText>deleted</w:delText></w:r></w:del>",
        '<w:r><w:object w:dxaOrig="1440" w:dyaOrig="1440">'
        '<v:shape id="_x0000_i1025" type="#_x0000_t75" style="width:72pt;height:72pt" o:ole="">'
        f'<v:imagedata r:id="{rid_prev}" o:title=""/></v:shape>'
        '<o:OLEObject Type="Embed" ProgID="Package" ShapeID="_x0000_i1025" DrawAspect="Icon" '
        f'ObjectID="_1700000000" r:id="{rid_ole}"/></w:object></w:r>',
        '<w:r><w:object w:dxaOrig="1440" w:dyaOrig="480">'
        '<v:shape id="_x0000_i1026" type="#_x0000_t75" style="width:72pt;height:24pt">'
        f'<v:imagedata r:id="{rid_prev}" o:title=""/></v:shape>'
        f'<w:control r:id="{rid_ax}" w:name="CommandButton1" w:shapeid="_x0000_i1026"/>'
        "</w:object></w:r>",
    ]
    for xml in paragraphs:
        body.insert(len(body) - 1, parse_xml(f"<w:p {NS}>{xml}</w:p>"))
    return _save(doc)


def build_xlsx(risky: bool) -> bytes:
    from openpyxl.comments import Comment
    from openpyxl.drawing.image import Image as XLImage
    from openpyxl.worksheet.hyperlink import Hyperlink

    wb = openpyxl.Workbook()
    wb.properties.creator = "Alice Author"
    ws = wb.active
    ws.title = "Data"
    ws["A1"], ws["B1"], ws["C1"] = "value", 42, "=B1*2"
    other = wb.create_sheet("Other")
    other["A1"] = "target"
    ws.add_image(XLImage(io.BytesIO(png(30, 20, "green"))), "E2")
    if not risky:
        return _save(wb)
    ws["A2"] = "external"
    ws["A2"].hyperlink = "http://example.com/x"
    ws["A3"] = "internal"
    ws["A3"].hyperlink = Hyperlink(ref="A3", location="Other!A1")
    ws["A4"] = "noted"
    ws["A4"].comment = Comment("note text", "Bob Reviewer")
    ws["A5"] = '=HYPERLINK("http://example.com/h","click")'
    ws["B6"] = "=[1]!'dde topic'"
    ws["B7"] = "=[2]Sheet1!A1"
    data = _save(wb)

    def cached(xml: bytes) -> bytes:  # give the formulas cached values, as Excel would
        text = xml.decode()
        text = re.sub(r'(<c r="B6"[^>]*>)<f>(.*?)</f><v\s*/?>(</v>)?', r"\1<f>\2</f><v>7</v>", text)
        text = re.sub(r'(<c r="B7"[^>]*>)<f>(.*?)</f><v\s*/?>(</v>)?', r"\1<f>\2</f><v>8</v>", text)
        return text.encode()

    def workbook(xml: bytes) -> bytes:  # the macro sheet, external links, Auto_Open
        rns = f'xmlns:r="{R[:-1]}"'
        return (
            xml.decode()
            .replace(
                "</sheets>",
                f'<sheet {rns} name="Macro1" sheetId="9" state="hidden" r:id="rIdM"/></sheets>'
                f'<externalReferences {rns}><externalReference r:id="rIdE1"/>'
                '<externalReference r:id="rIdE2"/></externalReferences>'
                '<definedNames><definedName name="_xlnm.Auto_Open" hidden="1">'
                "Macro1!$A$1</definedName></definedNames>",
            )
            .encode()
        )

    S = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    return rezip(
        data,
        {
            "xl/worksheets/sheet1.xml": cached,
            "xl/vbaProject.bin": VBA_BIN,
            "xl/externalLinks/externalLink1.xml": (
                f'<externalLink xmlns="{S}"><ddeLink ddeService="cmd" ddeTopic="/c echo gicap">'
                '<ddeItems><ddeItem name="dde topic" advise="1"/></ddeItems></ddeLink>'
                "</externalLink>"
            ).encode(),
            "xl/externalLinks/externalLink2.xml": (
                f'<externalLink xmlns="{S}" xmlns:r="{R[:-1]}"><externalBook r:id="rId1">'
                '<sheetNames><sheetName val="Sheet1"/></sheetNames></externalBook></externalLink>'
            ).encode(),
            "xl/externalLinks/_rels/externalLink2.xml.rels": (
                '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                f'relationships"><Relationship Id="rId1" Type="{R}externalLinkPath" '
                'Target="file:///C:/other.xlsx" TargetMode="External"/></Relationships>'
            ).encode(),
            "xl/connections.xml": (
                f'<connections xmlns="{S}"><connection id="1" name="web" type="4" '
                'refreshedVersion="6"><webPr sourceData="1" url="http://example.com/data"/>'
                "</connection></connections>"
            ).encode(),
            "xl/macrosheets/sheet1.xml": (
                f'<xm:macrosheet xmlns="{S}" '
                'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main">'
                '<sheetData><row r="1"><c r="A1"><f>ALERT("gicap test macro")</f></c></row>'
                '<row r="2"><c r="A2"><f>HALT()</f></c></row></sheetData></xm:macrosheet>'
            ).encode(),
            "xl/_rels/workbook.xml.rels": add_rels(
                ("rIdVba", MSR + "vbaProject", "vbaProject.bin", False),
                ("rIdE1", R + "externalLink", "externalLinks/externalLink1.xml", False),
                ("rIdE2", R + "externalLink", "externalLinks/externalLink2.xml", False),
                ("rIdConn", R + "connections", "connections.xml", False),
                ("rIdM", MSR + "xlMacrosheet", "macrosheets/sheet1.xml", False),
            ),
            "xl/workbook.xml": workbook,
            "[Content_Types].xml": content_types(
                {
                    "/xl/vbaProject.bin": CT_VBA,
                    "/xl/externalLinks/externalLink1.xml": "application/vnd.openxmlformats-"
                    "officedocument.spreadsheetml.externalLink+xml",
                    "/xl/externalLinks/externalLink2.xml": "application/vnd.openxmlformats-"
                    "officedocument.spreadsheetml.externalLink+xml",
                    "/xl/connections.xml": "application/vnd.openxmlformats-officedocument."
                    "spreadsheetml.connections+xml",
                    "/xl/macrosheets/sheet1.xml": "application/vnd.ms-excel.macrosheet+xml",
                },
                main=(
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                    CT_XLSM,
                ),
            ),
        },
    )


def build_pptx(risky: bool) -> bytes:
    from pptx.enum.shapes import PROG_ID
    from pptx.opc.package import Part
    from pptx.opc.packuri import PackURI
    from pptx.oxml import parse_xml
    from pptx.util import Inches

    prs = pptx.Presentation()
    prs.core_properties.author = "Alice Author"
    s1 = prs.slides.add_slide(prs.slide_layouts[5])
    s1.shapes.title.text = "Deck title"
    s1.shapes.add_picture(io.BytesIO(png(50, 40)), Inches(1), Inches(2))
    s2 = prs.slides.add_slide(prs.slide_layouts[5])
    s2.shapes.title.text = "Second slide"
    if not risky:
        return _save(prs)
    box = s1.shapes.add_textbox(Inches(4), Inches(2), Inches(3), Inches(1))
    run = box.text_frame.paragraphs[0].add_run()
    run.text = "external link"
    run.hyperlink.address = "http://example.com/p"
    jump = s1.shapes.add_textbox(Inches(4), Inches(3), Inches(3), Inches(1))
    jump.text_frame.text = "go to slide 2"
    jump.click_action.target_slide = s2
    macro = s1.shapes.add_textbox(Inches(4), Inches(4), Inches(3), Inches(1))
    macro.text_frame.text = "run macro"
    macro._element.nvSpPr.cNvPr.append(
        parse_xml(
            '<a:hlinkClick xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
            f'xmlns:r="{R[:-1]}" r:id="" action="ppaction://macro?name=Module1.AutoOpen"/>'
        )
    )
    s1.shapes.add_ole_object(
        io.BytesIO(build_xlsx(False)), PROG_ID.XLSX, Inches(1), Inches(4), Inches(1), Inches(1)
    )
    part = prs.part
    package = part.package
    part.relate_to(
        Part(PackURI("/ppt/vbaProject.bin"), CT_VBA, package, VBA_BIN), MSR + "vbaProject"
    )
    p_ns = "http://schemas.openxmlformats.org/presentationml/2006/main"
    authors = Part(
        PackURI("/ppt/commentAuthors.xml"),
        "application/vnd.openxmlformats-officedocument.presentationml.commentAuthors+xml",
        package,
        f'<p:cmAuthorLst xmlns:p="{p_ns}"><p:cmAuthor id="0" name="Bob Reviewer" initials="BR" '
        'lastIdx="1" clrIdx="0"/></p:cmAuthorLst>'.encode(),
    )
    part.relate_to(authors, R + "commentAuthors")
    comments = Part(
        PackURI("/ppt/comments/comment1.xml"),
        "application/vnd.openxmlformats-officedocument.presentationml.comments+xml",
        package,
        f'<p:cmLst xmlns:p="{p_ns}"><p:cm authorId="0" dt="2024-01-01T00:00:00.000" idx="1">'
        '<p:pos x="10" y="10"/><p:text>deck comment</p:text></p:cm></p:cmLst>'.encode(),
    )
    s1.part.relate_to(comments, R + "comments")
    # python-pptx writes content types its own way: make it a real .pptm
    return rezip(
        _save(prs),
        {
            "[Content_Types].xml": content_types(
                {"/ppt/vbaProject.bin": CT_VBA},
                main=(
                    "application/vnd.openxmlformats-officedocument.presentationml."
                    "presentation.main+xml",
                    CT_PPTM,
                ),
            )
        },
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("office-corpus")
    files = {
        "clean.docx": build_docx(False),
        "risky.docm": build_docx(True),
        "clean.xlsx": build_xlsx(False),
        "risky.xlsm": build_xlsx(True),
        "clean.pptx": build_pptx(False),
        "risky.pptm": build_pptx(True),
    }
    out = {}
    for name, data in files.items():
        (base / name).write_bytes(data)
        out[name] = base / name
    return out


# ------------------------------------------------------------------- helpers


def file_type(path: Path) -> FileType:
    found = detect(path.read_bytes()[:65536], str(path))
    assert found is not None
    return found


def disarm(
    path: Path, out_dir: Path, sw: dict[str, str], limits: dict[str, int] | None = None
) -> tuple[DisarmResult, Path]:
    ftype = file_type(path)
    dest = out_dir / f"out-{path.stem}.{ftype.extension}"
    if dest.exists():
        dest.unlink()
    request = DisarmRequest(ftype, path, dest, sw, limits or {"max_file_size": 50 * 2**20})
    result = gicap_office.gicap_disarm(request=request)
    assert result is not None
    if result.outcome != "rebuilt":
        assert not dest.exists(), "nothing may be written unless rebuilt"
    return result, dest


def delivered(path: Path, result: DisarmResult, dest: Path) -> Path:
    """The file the user gets: the rebuilt one, or the original when unmodified."""
    assert result.outcome in ("rebuilt", "unmodified"), result
    return dest if result.outcome == "rebuilt" else path


def names(path: Path) -> list[str]:
    return zipfile.ZipFile(path).namelist()


def member(path: Path, name: str) -> bytes:
    return zipfile.ZipFile(path).read(name)


def vba_found(path: Path) -> bool:
    parser = olevba.VBA_Parser(str(path))
    try:
        return bool(parser.detect_vba_macros())
    finally:
        parser.close()


def vba_sources(path: Path) -> list[str]:
    parser = olevba.VBA_Parser(str(path))
    try:
        return [code for _, _, _, code in parser.extract_macros()]
    finally:
        parser.close()


def dde_found(path: Path) -> str:
    return msodde.process_file(str(path), msodde.FIELD_FILTER_DDE)


def external_rels(path: Path) -> list[tuple[str, str]]:
    return list(oleobj.find_external_relationships(XmlParser(str(path))))


def embedded_ole_objects(path: Path) -> int:
    """OLE objects holding an embedded file (``\\x01Ole10Native``), found by oleobj."""
    count = 0
    for ole in oleobj.find_ole(str(path), None):
        if ole is not None and ole.exists("\x01Ole10Native"):
            count += 1
    return count


def all_rels(path: Path) -> str:
    zf = zipfile.ZipFile(path)
    return "".join(zf.read(n).decode() for n in zf.namelist() if n.endswith(".rels"))


def dangling_rel_ids(path: Path) -> list[str]:
    """r:id references in any part that its relationships do not define (Office would
    repair such a file)."""
    zf = zipfile.ZipFile(path)
    bad = []
    for name in zf.namelist():
        if name.endswith(".rels") or not name.endswith((".xml", ".vml")):
            continue
        folder, base = name.rsplit("/", 1) if "/" in name else ("", name)
        rels_name = f"{folder}/_rels/{base}.rels" if folder else f"_rels/{base}.rels"
        ids = (
            set(re.findall(rb'Id="([^"]+)"', zf.read(rels_name)))
            if rels_name in zf.namelist()
            else set()
        )
        text = zf.read(name)
        for ref in re.findall(rb'\br:(?:id|embed|link|pict)="([^"]+)"', text):
            if ref and ref not in ids:
                bad.append(f"{name}: {ref.decode()}")
    return bad


def missing_targets(path: Path) -> list[str]:
    """Internal relationships whose target part is not in the zip."""
    zf = zipfile.ZipFile(path)
    present = {n.lower() for n in zf.namelist()}
    bad = []
    for name in zf.namelist():
        if not name.endswith(".rels"):
            continue
        source_dir = name.rsplit("_rels/", 1)[0]
        for m in re.finditer(rb"<Relationship [^>]*>", zf.read(name)):
            tag = m.group(0).decode()
            if 'TargetMode="External"' in tag:
                continue
            target = re.search(r'Target="([^"]+)"', tag).group(1)  # type: ignore[union-attr]
            full = target.lstrip("/") if target.startswith("/") else source_dir + target
            parts: list[str] = []
            for piece in full.split("/"):
                if piece == "..":
                    parts.pop()
                elif piece not in ("", "."):
                    parts.append(piece)
            if "/".join(parts).lower() not in present:
                bad.append(f"{name}: {target}")
    return bad


def overrides_without_part(path: Path) -> list[str]:
    zf = zipfile.ZipFile(path)
    present = {"/" + n.lower() for n in zf.namelist()}
    ct = zf.read("[Content_Types].xml").decode()
    return [p for p in re.findall(r'PartName="([^"]+)"', ct) if p.lower() not in present]


def assert_consistent(path: Path) -> None:
    """What Office needs to open the package without a repair prompt, as far as it can be
    checked without Office: no dangling references, no missing parts, no stale overrides."""
    assert dangling_rel_ids(path) == []
    assert missing_targets(path) == []
    assert overrides_without_part(path) == []
    assert zipfile.ZipFile(path).testzip() is None


def docx_texts(path: Path) -> list[str]:
    return [p.text for p in docx.Document(str(path)).paragraphs]


def image_sizes(path: Path) -> list[tuple[int, int]]:
    zf = zipfile.ZipFile(path)
    sizes = []
    for name in sorted(zf.namelist()):
        if "/media/" in name and name.lower().endswith((".png", ".jpeg", ".jpg")):
            sizes.append(Image.open(io.BytesIO(zf.read(name))).size)
    return sizes


def has_trailer_images(path: Path) -> bool:
    """Whether an image part still carries the bytes re-encoding removes."""
    zf = zipfile.ZipFile(path)
    return any(TRAILER in zf.read(n) for n in zf.namelist() if "/media/" in n)


# ------------------------------------------------------- what each switch covers
# One detector per (format, switch): does the delivered file still hold that content?
# They read the files with oletools, zipfile and plain XML matching, not this engine.

Detector = Callable[[Path], bool]

DOCX: dict[str, Detector] = {
    "macros": lambda p: vba_found(p) or any("activeX" in n for n in names(p)),
    "embedded_files": lambda p: (
        embedded_ole_objects(p) > 0 or any("/embeddings/" in n for n in names(p))
    ),
    "external_hyperlinks": lambda p: bool(external_rels(p)),
    "internal_hyperlinks": lambda p: b"w:anchor=" in member(p, "word/document.xml"),
    "dynamic_data_exchange": lambda p: bool(dde_found(p)),
    "metadata": lambda p: b"Alice Author" in member(p, "docProps/core.xml"),
    "review_comments": lambda p: (
        "word/comments.xml" in names(p)
        or re.search(rb"<w:(ins|del|commentReference) ", member(p, "word/document.xml")) is not None
    ),
    "embedded_images": has_trailer_images,
}
XLSX: dict[str, Detector] = {
    "macros": lambda p: vba_found(p) or any("macrosheets" in n for n in names(p)),
    "external_hyperlinks": lambda p: (
        bool(external_rels(p)) or b"HYPERLINK(" in member(p, "xl/worksheets/sheet1.xml")
    ),
    "internal_hyperlinks": lambda p: (
        b'location="Other!A1"' in member(p, "xl/worksheets/sheet1.xml")
    ),
    "dynamic_data_exchange": lambda p: bool(dde_found(p)) or "xl/connections.xml" in names(p),
    "metadata": lambda p: b"Alice Author" in member(p, "docProps/core.xml"),
    "review_comments": lambda p: any("comment" in n.lower() for n in names(p)),
    "embedded_images": has_trailer_images,
}
PPTX: dict[str, Detector] = {
    "macros": lambda p: vba_found(p) or b"ppaction://macro" in member(p, "ppt/slides/slide1.xml"),
    "embedded_files": lambda p: any("/embeddings/" in n for n in names(p)),
    "external_hyperlinks": lambda p: bool(external_rels(p)),
    "internal_hyperlinks": lambda p: b"hlinksldjump" in member(p, "ppt/slides/slide1.xml"),
    "metadata": lambda p: b"Alice Author" in member(p, "docProps/core.xml"),
    "review_comments": lambda p: any("comment" in n.lower() for n in names(p)),
    "embedded_images": has_trailer_images,
}
CASES = (
    [("risky.docm", switch, DOCX) for switch in DOCX]
    + [("risky.xlsm", switch, XLSX) for switch in XLSX]
    + [("risky.pptm", switch, PPTX) for switch in PPTX]
)


def test_claims_office_types_only(tmp_path: Path) -> None:
    claimed = set(gicap_office.gicap_file_types())
    assert {t.name for t in FILE_TYPES.values() if t.family in ("office", "office_legacy")} == (
        claimed - {"rtf"}
    )
    assert "rtf" in claimed
    other = DisarmRequest(FILE_TYPES["pdf"], tmp_path / "x", tmp_path / "y", {})
    assert gicap_office.gicap_disarm(request=other) is None


def test_found_through_the_gicap_entry_point() -> None:
    from importlib.metadata import entry_points

    from gicap.plugins import create_plugin_host

    assert {ep.name: ep.value for ep in entry_points(group="gicap")}.get("office") == (
        "gicap_office"
    )
    assert create_plugin_host().loaded["office"] == "gicap_office"


@pytest.mark.parametrize(
    ("name", "switch", "detectors"), CASES, ids=[f"{n}-{s}" for n, s, _ in CASES]
)
def test_each_switch(
    corpus: dict[str, Path], tmp_path: Path, name: str, switch: str, detectors: dict[str, Detector]
) -> None:
    """allow keeps the content, sanitise removes it (and only it), disallow blocks."""
    src = corpus[name]
    assert detectors[switch](src), f"the test file should hold {switch} content"

    result, dest = disarm(src, tmp_path, switches("allow"))
    assert result.outcome == "unmodified"
    assert any(a.switch == switch and a.action == "kept" for a in result.actions)

    result, dest = disarm(src, tmp_path, switches("allow", **{switch: "disallow"}))
    assert result.outcome == "blocked"
    assert switch in result.reason

    result, dest = disarm(src, tmp_path, switches("allow", **{switch: "sanitise"}))
    assert result.outcome == "rebuilt", result
    assert any(
        a.switch == switch and a.action in ("removed", "neutralised") for a in result.actions
    )
    assert not detectors[switch](dest), f"{switch} content still in the output"
    for other, detector in detectors.items():
        if other != switch:
            assert detector(dest), f"sanitising {switch} removed {other} content too"
    assert_consistent(dest)
    if switch == "macros":
        assert result.output_type is not None
        assert result.output_type.name == name.rsplit(".", 1)[1][:-1] + "x"
        assert file_type(dest) == result.output_type
    else:
        assert result.output_type is None
        assert file_type(dest).name == name.rsplit(".", 1)[1]


def test_docm_fully_sanitised_opens_in_python_docx(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = corpus["risky.docm"]
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    assert result.output_type == FILE_TYPES["docx"]
    assert_consistent(dest)
    for detector in DOCX.values():
        assert not detector(dest)
    assert olevba.VBA_Parser(str(dest)).detect_vba_macros() is False
    doc = docx.Document(str(dest))
    texts = [p.text for p in doc.paragraphs]
    # fields became their results, links their text, tracked changes were accepted
    for expected in (
        "Quarterly report",
        "First paragraph of the report.",
        "Before dde result",
        "simple result",
        "external link",
        "internal link",
        "kept inserted",
        "Last paragraph.",
    ):
        assert expected in texts, (expected, texts)
    assert not any("deleted" in t for t in texts)
    assert [c.text for c in doc.tables[0]._cells] == [f"cell {i}" for i in range(4)]
    assert doc.core_properties.author == "" and doc.core_properties.title == ""
    assert len(doc.inline_shapes) == 1
    assert image_sizes(dest) == image_sizes(src)
    body = member(dest, "word/document.xml")
    # the OLE object and the ActiveX control left their preview picture (w:pict)
    assert b"OLEObject" not in body and b"w:control" not in body and b"w:object" not in body
    assert body.count(b"<w:pict>") == 2
    assert b"attachedTemplate" not in member(dest, "word/settings.xml")


def test_docm_macros_only_is_a_docx_python_docx_opens(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    result, dest = disarm(corpus["risky.docm"], tmp_path, switches("allow", macros="sanitise"))
    assert result.outcome == "rebuilt" and result.output_type == FILE_TYPES["docx"]
    assert (
        vba_sources(corpus["risky.docm"])
        and "gicap test macro" in vba_sources(corpus["risky.docm"])[0]
    )
    assert vba_sources(dest) == []
    texts = docx_texts(dest)
    assert "First paragraph of the report." in texts
    with pytest.raises(ValueError):  # python-docx refuses the macro-enabled original
        docx.Document(str(corpus["risky.docm"]))


def test_dotm_becomes_dotx(corpus: dict[str, Path], tmp_path: Path) -> None:
    dotm = tmp_path / "template.dotm"
    dotm.write_bytes(
        rezip(
            corpus["risky.docm"].read_bytes(),
            {"[Content_Types].xml": content_types(main=(CT_DOCM, CT_DOTM))},
        )
    )
    assert file_type(dotm).name == "dotm"
    result, dest = disarm(dotm, tmp_path, switches("allow", macros="sanitise"))
    assert result.output_type == FILE_TYPES["dotx"]
    assert file_type(dest).name == "dotx"
    assert not vba_found(dest)


def test_xlsm_fully_sanitised_opens_in_openpyxl(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = corpus["risky.xlsm"]
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    assert result.output_type == FILE_TYPES["xlsx"]
    assert_consistent(dest)
    for detector in XLSX.values():
        assert not detector(dest)
    wb = openpyxl.load_workbook(dest)
    assert wb.sheetnames == ["Data", "Other"]  # the Excel 4 macro sheet is gone
    assert "_xlnm.Auto_Open" not in wb.defined_names
    ws = wb["Data"]
    assert (ws["A1"].value, ws["B1"].value, ws["C1"].value) == ("value", 42, "=B1*2")
    # formulas using the removed links keep their last value, without the formula
    assert ws["B6"].value == 7 and ws["B7"].value == 8
    assert ws["A2"].hyperlink is None and ws["A3"].hyperlink is None
    assert ws["A4"].comment is None
    assert len(ws._images) == 1
    assert image_sizes(dest) == image_sizes(src)
    assert b"externalReferences" not in member(dest, "xl/workbook.xml")


def test_xlsx_dde_link_removed_external_workbook_kept(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    """Removing one external link renumbers the formulas using the others."""
    result, dest = disarm(
        corpus["risky.xlsm"], tmp_path, switches("allow", dynamic_data_exchange="sanitise")
    )
    assert result.outcome == "rebuilt"
    assert dde_found(dest) == "" and "xl/connections.xml" not in names(dest)
    assert ("externalLinkPath", "file:///C:/other.xlsx") in external_rels(dest)
    wb = openpyxl.load_workbook(dest)
    ws = wb["Data"]
    assert ws["B6"].value == 7  # the DDE formula lost its formula, kept its value
    assert ws["B7"].value == "=[1]Sheet1!A1"  # was [2]: the DDE link was [1]
    assert member(dest, "xl/workbook.xml").count(b"<externalReference ") == 1
    assert_consistent(dest)


def test_pptm_fully_sanitised_opens_in_python_pptx(corpus: dict[str, Path], tmp_path: Path) -> None:
    src = corpus["risky.pptm"]
    before = pptx.Presentation(str(src))
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    assert result.output_type == FILE_TYPES["pptx"]
    assert_consistent(dest)
    for detector in PPTX.values():
        assert not detector(dest)
    after = pptx.Presentation(str(dest))
    assert len(after.slides) == len(before.slides) == 2
    assert [s.shapes.title.text for s in after.slides] == ["Deck title", "Second slide"]
    kinds_before = [s.shape_type for s in before.slides[0].shapes]
    kinds_after = [s.shape_type for s in after.slides[0].shapes]
    # the OLE object frame is the only shape gone; texts stay, links go
    assert len(kinds_after) == len(kinds_before) - 1
    texts = [s.text_frame.text for s in after.slides[0].shapes if s.has_text_frame]
    assert "external link" in texts and "go to slide 2" in texts and "run macro" in texts
    for shape in after.slides[0].shapes:
        assert shape.click_action.hyperlink.address is None
        assert shape.click_action.target_slide is None
    assert image_sizes(dest) == image_sizes(src)


@pytest.mark.parametrize("name", ["clean.docx", "clean.xlsx", "clean.pptx"])
def test_clean_files_open_the_same(corpus: dict[str, Path], tmp_path: Path, name: str) -> None:
    src = corpus[name]
    result, dest = disarm(src, tmp_path, switches("allow"))
    assert result.outcome == "unmodified" and result.actions == [
        a for a in result.actions if a.action == "kept"
    ]
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"  # metadata and images are always rebuilt
    assert {a.switch for a in result.actions} <= {"metadata", "embedded_images"}
    assert_consistent(dest)
    assert image_sizes(dest) == image_sizes(src)
    assert not has_trailer_images(dest)
    if name.endswith("docx"):
        assert docx_texts(dest) == docx_texts(src)
        a, b = docx.Document(str(src)), docx.Document(str(dest))
        assert [c.text for c in a.tables[0]._cells] == [c.text for c in b.tables[0]._cells]
        assert len(b.inline_shapes) == 1
    elif name.endswith("xlsx"):
        a, b = openpyxl.load_workbook(src), openpyxl.load_workbook(dest)
        assert a.sheetnames == b.sheetnames
        for sheet in a.sheetnames:
            assert [[c.value for c in r] for r in a[sheet].iter_rows()] == [
                [c.value for c in r] for r in b[sheet].iter_rows()
            ]
        assert len(b["Data"]._images) == 1
    else:
        a, b = pptx.Presentation(str(src)), pptx.Presentation(str(dest))
        assert [[sh.shape_type for sh in s.shapes] for s in a.slides] == [
            [sh.shape_type for sh in s.shapes] for s in b.slides
        ]
        assert [s.shapes.title.text for s in b.slides] == ["Deck title", "Second slide"]


# ------------------------------------------------- malformed, hostile, encrypted


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _clean_docx(corpus: dict[str, Path]) -> bytes:
    return corpus["clean.docx"].read_bytes()


def _raw_zip(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _docx_entries(corpus: dict[str, Path]) -> list[tuple[str, bytes]]:
    zf = zipfile.ZipFile(corpus["clean.docx"])
    return [(n, zf.read(n)) for n in zf.namelist()]


@pytest.mark.parametrize(
    "case",
    ["doctype", "entity", "bomb", "traversal", "absolute", "duplicate", "truncated", "no-types"],
)
def test_hostile_packages_are_not_delivered(
    corpus: dict[str, Path], tmp_path: Path, case: str
) -> None:
    entries = _docx_entries(corpus)
    if case == "doctype":
        data = rezip(
            _clean_docx(corpus),
            {
                "word/styles.xml": lambda x: x.replace(
                    b"?>", b'?><!DOCTYPE w:styles SYSTEM "http://example.com/x.dtd">', 1
                )
            },
        )
    elif case == "entity":
        data = rezip(
            _clean_docx(corpus),
            {
                "word/document.xml": lambda x: x.replace(
                    b"?>", b'?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>', 1
                )
            },
        )
    elif case == "bomb":
        data = _raw_zip(
            entries + [("word/media/zeros.xml", b"<a>" + b"0" * (30 * 2**20) + b"</a>")]
        )
    elif case == "traversal":
        data = _raw_zip(entries + [("../evil.xml", b"<a/>")])
    elif case == "absolute":
        data = _raw_zip(entries + [("/etc/evil.xml", b"<a/>")])
    elif case == "duplicate":
        data = _raw_zip(entries + [("WORD/document.xml", b"<a/>")])
    elif case == "truncated":
        data = _clean_docx(corpus)[:-200]
    else:
        data = _raw_zip([e for e in entries if e[0] != "[Content_Types].xml"])
    path = _write(tmp_path, "hostile.docx", data)
    request = DisarmRequest(
        FILE_TYPES["docx"], path, tmp_path / "out.docx", switches("sanitise"),
        {"max_file_size": 50 * 2**20, "max_ratio": 100},
    )  # fmt: skip
    result = gicap_office.gicap_disarm(request=request)
    assert result is not None and result.outcome == "unprocessable", result
    assert result.reason
    assert not request.destination.exists()


def test_encrypted_ooxml(corpus: dict[str, Path], tmp_path: Path) -> None:
    msoffcrypto = pytest.importorskip("msoffcrypto")
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    with open(corpus["clean.docx"], "rb") as fh:
        OOXMLFile(fh).encrypt("secret", out)
    path = _write(tmp_path, "locked.docx", out.getvalue())
    assert file_type(path).name == "ooxml_encrypted"
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "encrypted"
    assert msoffcrypto


def test_max_file_size(corpus: dict[str, Path], tmp_path: Path) -> None:
    result, _ = disarm(corpus["clean.docx"], tmp_path, switches("allow"), {"max_file_size": 1000})
    assert result.outcome == "unprocessable" and "max_file_size" in result.reason


def test_data_outside_the_zip_entries_is_dropped(corpus: dict[str, Path], tmp_path: Path) -> None:
    path = _write(tmp_path, "tail.docx", _clean_docx(corpus) + b"MZ hidden payload")
    result, dest = disarm(path, tmp_path, switches("allow"))
    assert result.outcome == "rebuilt"
    assert [a.switch for a in result.actions if a.action != "kept"] == ["structure"]
    assert b"hidden payload" not in dest.read_bytes()
    assert docx_texts(dest) == docx_texts(corpus["clean.docx"])


def test_unreferenced_parts_are_dropped(corpus: dict[str, Path], tmp_path: Path) -> None:
    data = rezip(
        _clean_docx(corpus),
        {"word/stray.bin": b"MZ not referenced", "word/vbaProject.bin": VBA_BIN},
    )
    path = _write(tmp_path, "stray.docx", data)
    result, dest = disarm(path, tmp_path, switches("allow"))
    assert result.outcome == "rebuilt"
    assert "word/stray.bin" not in names(dest) and not vba_found(dest)
    result, _ = disarm(path, tmp_path, switches("allow", macros="disallow"))
    assert result.outcome == "blocked"  # even an unused VBA project is not welcome then


def test_fields_in_a_utf16_part_are_found(corpus: dict[str, Path], tmp_path: Path) -> None:
    """The byte-level shortcuts must not skip a part written in another encoding."""

    def to_utf16(xml: bytes) -> bytes:
        text = xml.decode().replace("encoding='UTF-8'", "encoding='UTF-16'")
        text = text.replace('encoding="UTF-8"', 'encoding="UTF-16"')
        return text.encode("utf-16")

    data = rezip(corpus["risky.docm"].read_bytes(), {"word/document.xml": to_utf16})
    path = _write(tmp_path, "utf16.docm", data)
    result, dest = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result.outcome == "rebuilt"
    assert "DDEAUTO field" in next(
        a.detail for a in result.actions if a.switch == "dynamic_data_exchange"
    )
    assert b"DDEAUTO" not in member(dest, "word/document.xml")


def _nested_field(before: str, quoted: str, result: str) -> str:
    """A field whose instruction is ``before``, a nested QUOTE field of ``quoted``
    (showing ``result``), then a command; it shows "shown"."""
    return (
        f"<w:p {NS}>"
        '<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
        f'<w:r><w:instrText xml:space="preserve">{before}</w:instrText></w:r>'
        '<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
        f'<w:r><w:instrText xml:space="preserve"> QUOTE {quoted} </w:instrText></w:r>'
        f'<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>{result}</w:t></w:r>'
        '<w:r><w:fldChar w:fldCharType="end"/></w:r>'
        '<w:r><w:instrText xml:space="preserve"> cmd "/c echo gicap" </w:instrText></w:r>'
        '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>shown</w:t></w:r>'
        '<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>'
    )


@pytest.mark.parametrize(
    ("before", "quoted", "result"),
    [
        (" ", "68 68 69 65 85 84 79", "DDEAUTO"),  # the whole keyword
        (" DD", '"EAUTO"', "EAUTO"),  # its end: Word reads DD + EAUTO
        ("\tD\u200bD", '"EAUTO"', "EAUTO"),  # (an invisible character in between)
    ],
    ids=["whole", "end", "invisible"],
)
def test_field_keyword_computed_by_a_nested_field(
    corpus: dict[str, Path], tmp_path: Path, before: str, quoted: str, result: str
) -> None:
    nested = _nested_field(before, quoted, result)
    data = rezip(_clean_docx(corpus), {"word/document.xml": insert("<w:sectPr", nested)})
    path = _write(tmp_path, "nested.docx", data)
    result_, dest = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result_.outcome == "rebuilt"
    body = member(dest, "word/document.xml")
    assert b"fldChar" not in body and b"instrText" not in body and b"QUOTE" not in body
    assert "shown" in docx_texts(dest)


@pytest.mark.parametrize(
    ("before", "quoted"), [("DD", '"EAUTO"'), (" ", '"DDEAUTO"')], ids=["end", "whole"]
)
def test_a_simple_field_inside_the_keyword_makes_it(
    corpus: dict[str, Path], tmp_path: Path, before: str, quoted: str
) -> None:
    """A w:fldSimple in a field's code is a nested field to Word: before the keyword
    has ended, its result is the keyword or its end (DD + EAUTO)."""
    nested = (
        f"<w:p {NS}>"
        '<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
        f'<w:r><w:instrText xml:space="preserve">{before}</w:instrText></w:r>'
        f"<w:fldSimple w:instr=' QUOTE {quoted} '/>"
        '<w:r><w:instrText xml:space="preserve"> cmd "/c echo gicap" </w:instrText></w:r>'
        '<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>shown</w:t></w:r>'
        '<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>'
    )
    data = rezip(_clean_docx(corpus), {"word/document.xml": insert("<w:sectPr", nested)})
    path = _write(tmp_path, "simple.docx", data)
    result, dest = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result.outcome == "rebuilt", result
    body = member(dest, "word/document.xml")
    assert b"echo gicap" not in body and b"fldChar" not in body
    assert "shown" in docx_texts(dest)


def test_a_nested_field_after_the_keyword_is_an_argument(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    """A mail merge's IF with a nested MERGEFIELD (after the keyword and a space) is
    no computed keyword: the fields stay."""
    nested = _nested_field(" IF ", '"x"', "x")
    data = rezip(_clean_docx(corpus), {"word/document.xml": insert("<w:sectPr", nested)})
    path = _write(tmp_path, "merge.docx", data)
    result, _ = disarm(path, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result.outcome == "unmodified", result  # (nothing to remove)
    assert not [a for a in result.actions if a.switch == "dynamic_data_exchange"], result


# ------------------------------------------------------------------------- RTF


def _ole1_package(payload: bytes) -> bytes:
    """An OLE 1.0 embedded object (what \\objdata holds) of class Package."""
    cls = b"Package\x00"
    return (
        struct.pack("<III", 0x0501, 2, len(cls))
        + cls
        + struct.pack("<III", 0, 0, len(payload))
        + payload
    )


def rtf_hex(data: bytes) -> str:
    return data.hex()


def build_rtf(risky: bool = True) -> bytes:
    pict = r"{\pict\pngblip\picw8\pich6\picwgoal120\pichgoal90 " + rtf_hex(png(8, 6)) + "}"
    clean = (
        r"{\rtf1\ansi\deff0{\fonttbl{\f0 Arial;}}" "\n"
        r"\pard\plain First paragraph.\par " "\n"
        + pict + r"\par " "\n"
        r"{\field{\*\fldinst PAGE}{\fldrslt 1}}\par " "\n"
        r"Last paragraph.\par }" "\r\n"
    )  # fmt: skip
    if not risky:
        return clean.encode()
    obj = rtf_hex(_ole1_package(b"gicap embedded test payload\n"))
    body = (
        r"{\info{\title Secret title}{\author Alice Author}{\creatim\yr2024\mo1\dy1}}" "\n"
        r"{\*\template http://example.com/template.dotm}" "\n"
        r"\pard Before {\field{\*\fldinst DDEAUTO c:\\windows\\system32\\cmd.exe "
        r'"/k echo gicap"}{\fldrslt dde result}} after\par ' "\n"
        r"{\object\objemb{\*\objclass Package}\objw100\objh100{\*\objdata " + obj + "}"
        r"{\result {\pict\pngblip\picw8\pich6\picwgoal120\pichgoal90 " + rtf_hex(png(8, 6, "blue"))
        + r"}}}\par " "\n"
        r'{\field{\*\fldinst HYPERLINK "http://example.com/"}{\fldrslt external link}}\par ' "\n"
        r'{\field{\*\fldinst HYPERLINK \\l "target"}{\fldrslt internal link}}\par ' "\n"
        r"{\field{\*\fldinst MACROBUTTON AutoOpen run me}{\fldrslt }}\par " "\n"
        r"text{\*\atrfstart 1}commented{\*\atrfend 1}{\*\atnid BR}{\*\atnauthor Bob Reviewer}"
        r"\chatn{\*\annotation{\*\atnref 1}\pard note text}\par " "\n"
        r"kept {\revised\revauth1 inserted}{\deleted\revauth1 gone} end\par " "\n"
    )  # fmt: skip
    return clean.replace(r"\pard\plain First", body + r"\pard\plain First", 1).encode()


def rtf_fields(path: Path) -> str:
    return msodde.process_file(str(path), msodde.FIELD_FILTER_ALL)


def rtf_objects(path: Path) -> int:
    parser = rtfobj.RtfObjParser(path.read_bytes())
    parser.parse()
    return len(parser.objects)


RTF: dict[str, Detector] = {
    "macros": lambda p: "MACROBUTTON" in rtf_fields(p),
    "embedded_files": lambda p: rtf_objects(p) > 0,
    "external_hyperlinks": lambda p: (
        rb"\*\template" in p.read_bytes() or 'HYPERLINK "http' in rtf_fields(p)
    ),
    "internal_hyperlinks": lambda p: "HYPERLINK \\l" in rtf_fields(p),
    "dynamic_data_exchange": lambda p: bool(dde_found(p)),
    "metadata": lambda p: b"Alice Author" in p.read_bytes(),
    "review_comments": lambda p: (
        re.search(rb"\\annotation|\\deleted|gone", p.read_bytes()) is not None
    ),
    "embedded_images": lambda p: TRAILER.hex().encode() in p.read_bytes(),
}


@pytest.fixture(scope="module")
def risky_rtf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rtf") / "risky.rtf"
    path.write_bytes(build_rtf())
    return path


@pytest.mark.parametrize("switch", list(RTF))
def test_rtf_each_switch(risky_rtf: Path, tmp_path: Path, switch: str) -> None:
    detectors = RTF
    assert file_type(risky_rtf).name == "rtf"
    assert detectors[switch](risky_rtf), switch
    result, _ = disarm(risky_rtf, tmp_path, switches("allow"))
    assert result.outcome == "unmodified"
    result, _ = disarm(risky_rtf, tmp_path, switches("allow", **{switch: "disallow"}))
    assert result.outcome == "blocked" and switch in result.reason
    result, dest = disarm(risky_rtf, tmp_path, switches("allow", **{switch: "sanitise"}))
    assert result.outcome == "rebuilt", result
    assert not detectors[switch](dest)
    for other, detector in detectors.items():
        if other != switch:
            assert detector(dest), f"sanitising {switch} removed {other} content too"


def test_rtf_fully_sanitised(risky_rtf: Path, tmp_path: Path) -> None:
    result, dest = disarm(risky_rtf, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    out = dest.read_bytes()
    for detector in RTF.values():
        assert not detector(dest)
    assert rtf_objects(dest) == 0 and dde_found(dest) == ""
    # the visible text stays: field results, the object's picture, accepted changes
    for text in (b"dde result", b"external link", b"internal link", b"kept {inserted}{} end"):
        assert text in out, text
    assert out.count(rb"{\pict") == 2  # the object's result picture and the picture
    assert out.startswith(rb"{\rtf1") and out.rstrip().endswith(b"}")
    assert out.count(b"{") == out.count(b"}")


def test_rtf_clean_is_unmodified(tmp_path: Path) -> None:
    path = _write(tmp_path, "clean.rtf", build_rtf(False))
    result, _ = disarm(path, tmp_path, switches("allow"))
    assert result.outcome == "unmodified"
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"  # the picture is re-encoded
    assert [a.switch for a in result.actions] == ["embedded_images"]
    assert dest.read_bytes().replace(b"\n", b"").count(b"First paragraph.") == 1


@pytest.mark.parametrize(
    ("data", "gone", "kept"),
    [
        # \bin data may hold braces: they are not group delimiters
        (
            rb"{\rtf1 a{\object\objemb{\*\objdata \bin6 }{}{}{ 0105}}b\par}",
            rb"\objdata",
            rb"{\rtf1 ab\par}",
        ),
        # a destination word anywhere in the group (Word honours it there too)
        (rb"{\rtf1 a{\rtlch\objdata 01050000}b}", rb"objdata", rb"{\rtf1 ab}"),
        # DDE spelled with \' hex escapes and \u escapes
        (
            rb"{\rtf1{\field{\*\fldinst \'44\'44\'45AUTO cmd}{\fldrslt x}}}",
            b"AUTO",
            rb"{\rtf1{x}}",
        ),
        (
            rb"{\rtf1{\field{\*\fldinst \u68?\u68?\u69?AUTO cmd}{\fldrslt y}}}",
            b"AUTO",
            rb"{\rtf1{y}}",
        ),
        # a field with its instruction in its own group, or after other words
        (rb"{\rtf1 a{\field\fldinst DDEAUTO cmd}b}", b"DDE", rb"{\rtf1 ab}"),
        (
            b"{\\rtf1\n{\n\\rtlch\\field{\\*\\fldinst DDEAUTO c}{\\fldrslt q}}}",
            b"DDE",
            b"{\\rtf1\n{q}}",
        ),
        # escaped braces inside text do not count as groups
        (rb"{\rtf1 \{not a group\}{\*\template x}}", rb"template", rb"{\rtf1 \{not a group\}}"),
        # data after the end of the document goes
        (rb"{\rtf1 ok}{\object\objdata 0105}", b"object", rb"{\rtf1 ok}"),
    ],
    ids=[
        "bin-braces",
        "dest-anywhere",
        "hex-escaped-dde",
        "unicode-escaped-dde",
        "same-group-fldinst",
        "field-after-words",
        "escaped",
        "after-end",
    ],
)
def test_rtf_tokenizer(tmp_path: Path, data: bytes, gone: bytes, kept: bytes) -> None:
    path = _write(tmp_path, "t.rtf", data)
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt", result
    out = dest.read_bytes()
    assert gone not in out
    assert out == kept


@pytest.mark.parametrize(
    "data",
    [
        rb"{\rtf1 {unclosed",
        rb"{\rtf1 a}}",
        rb"{\rtf1 \objdata 0105}",
        b"{\\rtf1 \\bin99 ab}",
        rb"{\rtf1 \\",
    ],
    ids=["unclosed", "extra-close", "top-level-objdata", "bin-past-end", "dangling-backslash"],
)
def test_rtf_malformed(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, "bad.rtf", data)
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    if data == rb"{\rtf1 a}}":  # a stray brace after the document: dropped
        assert result.outcome == "rebuilt"
    else:
        assert result.outcome == "unprocessable", result


# ------------------------------------------------------------------ legacy OLE


def _fib(encrypted: bool = False, text_length: int = 0) -> bytes:
    """The start of a Word binary document (FibBase): magic, version, flags, and the
    place of its piece table in the table stream (fcClx at 0, lcbClx: see word_doc);
    its text follows it (at byte 512)."""
    flags = 0x0200 | (0x0100 if encrypted else 0)  # fWhichTblStm, fEncrypted
    head = struct.pack("<HHHHHH", 0xA5EC, 0x00C1, 0, 0x0409, 0, flags).ljust(32, b"\x00")
    # csw 14 (fibRgW), cslw 22 (fibRgLw), cbRgFcLcb 0x5D: fcClx lands at 0x1A2
    counted = struct.pack("<H", 14) + bytes(28) + struct.pack("<H", 22) + bytes(88)
    counted += struct.pack("<H", 0x5D) + bytes(33 * 8) + struct.pack("<II", 0, 5 + 16)
    fib = head + counted
    assert len(fib) == 0x01A2 + 8
    return fib + b"\x00" * (512 - len(fib))


def _clx(text_length: int) -> bytes:
    """A piece table of one 8-bit piece: the text at byte 512 of the WordDocument."""
    plc = struct.pack("<II", 0, text_length) + struct.pack("<HIH", 0, (512 * 2) | 0x40000000, 0)
    return b"\x02" + struct.pack("<I", len(plc)) + plc


def word_doc(text: bytes = b"", encrypted: bool = False, table: int = 64) -> dict[str, bytes]:
    """The streams of a Word binary document holding ``text`` (8-bit), its table
    stream ``table`` bytes long."""
    clx = _clx(len(text))
    return {
        "WordDocument": _fib(encrypted, len(text)) + text,
        "1Table": clx + b"\x00" * max(0, table - len(clx)),
    }


def _ppt(extra: bytes = b"") -> dict[str, bytes]:
    user = struct.pack("<IIIHHBBH", 0x14, 0xE391C05F, 0, 0, 0x03F4, 3, 0, 0) + struct.pack("<I", 8)
    doc = struct.pack("<HHI", 0x000F, 0x03E8, 8) + struct.pack("<HHI", 0, 0x03E9, 0) + extra
    return {
        "PowerPoint Document": doc,
        "Current User": struct.pack("<HHI", 0, 0x0FF6, len(user)) + user,
    }


_BIFF = (
    struct.pack("<HH", 0x0809, 16)
    + b"\x00\x06\x05\x00"
    + b"\x00" * 12
    + struct.pack("<HH", 0x000A, 0)
)
LEGACY: dict[str, tuple[dict[str, bytes], str | None]] = {
    "clean.doc": (word_doc(b"hello"), None),
    "macro.doc": ({**word_doc(), **vba_streams(MACRO, "Macros/")}, "macros"),
    "dde.doc": (
        word_doc(b'text \x13 DDEAUTO cmd "/k echo gicap" \x14result\x15 more'),
        "dynamic_data_exchange",
    ),
    "object.doc": (
        {**word_doc(), "ObjectPool/_1700000000/\x01Ole10Native": b"\x05\0\0\0hello"},
        "embedded_files",
    ),
    "clean.xls": ({"Workbook": _BIFF}, None),
    "macro.xls": ({"Workbook": _BIFF, **vba_streams(MACRO, "_VBA_PROJECT_CUR/")}, "macros"),
    "clean.ppt": (_ppt(), None),
    "object.ppt": (
        _ppt(struct.pack("<HHI", 0, 0x1011, len(OLE_OBJECT)) + OLE_OBJECT),
        "embedded_files",
    ),
}


@pytest.mark.parametrize("name", list(LEGACY))
def test_legacy(tmp_path: Path, name: str) -> None:
    streams, switch = LEGACY[name]
    path = _write(tmp_path, name, make_ole(streams))
    assert file_type(path).name == name.rsplit(".", 1)[1]
    # the independent detectors agree on what is in the file
    assert vba_found(path) == (switch == "macros")
    assert bool(dde_found(path)) == (switch == "dynamic_data_exchange")
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    if switch is None:
        assert result.outcome == "unmodified" and result.actions == []
        return
    # nothing can be removed from these formats: sanitise blocks, naming the content
    assert result.outcome == "blocked" and switch in result.reason
    result, _ = disarm(path, tmp_path, switches("sanitise", **{switch: "disallow"}))
    assert result.outcome == "blocked"
    result, _ = disarm(path, tmp_path, switches("sanitise", **{switch: "allow"}))
    assert result.outcome == "unmodified"
    assert [a.action for a in result.actions if a.switch == switch] == ["kept"]


def test_legacy_uninspectable_switch_disallowed_blocks(tmp_path: Path) -> None:
    path = _write(tmp_path, "clean.doc", make_ole(LEGACY["clean.doc"][0]))
    result, _ = disarm(path, tmp_path, switches("sanitise", metadata="disallow"))
    assert result.outcome == "blocked" and "metadata" in result.reason


def test_legacy_encrypted_and_malformed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "locked.doc",
        make_ole(word_doc(encrypted=True)),
    )
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "encrypted"
    broken = make_ole(LEGACY["clean.doc"][0])[:1024]
    path = _write(tmp_path, "broken.doc", broken)
    request = DisarmRequest(FILE_TYPES["doc"], path, tmp_path / "o.doc", switches("sanitise"), {})
    result = gicap_office.gicap_disarm(request=request)
    assert result is not None and result.outcome == "unprocessable"


# ----------------------------------------------------------------- end to end


def test_run_job_end_to_end(corpus: dict[str, Path], risky_rtf: Path, tmp_path: Path) -> None:
    """Through gicap's own job: the real detector, the default profile, the plugin host."""
    from gicap.cdr.job import run_job

    profile = build_profile("default", {}).as_dict()
    for src, expect_type in ((corpus["risky.docm"], "docx"), (risky_rtf, None)):
        dest = tmp_path / f"job-{src.name}"
        answer = run_job(
            {
                "source": str(src),
                "dest": str(dest),
                "max_file_size": 50 * 2**20,
                "profile": profile,
                "profile_name": "default",
                "declared": None,
            }
        )
        assert answer["outcome"] == "rebuilt", answer
        assert answer["file_type"]["name"] == src.suffix[1:]
        assert (answer["output_type"] or {}).get("name") == expect_type
        assert dde_found(dest) == ""
        assert rtf_objects(dest) == 0 if expect_type is None else not vba_found(dest)
    locked = tmp_path / "macro.doc"
    locked.write_bytes(make_ole(LEGACY["macro.doc"][0]))
    answer = run_job(
        {
            "source": str(locked),
            "dest": str(tmp_path / "job-macro.doc"),
            "max_file_size": 50 * 2**20,
            "profile": profile,
            "profile_name": "default",
        }
    )
    assert answer["outcome"] == "blocked" and "macros" in answer["reason"]


def test_images_that_cannot_be_reencoded_become_blank(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    """A vector (EMF) picture cannot be rebuilt from pixels: a blank PNG takes its place,
    with its own content type, at the size the document gives the picture."""
    fake_emf = struct.pack("<II", 1, 108) + b"\x00" * 100 + b"EMF payload"
    data = rezip(
        _clean_docx(corpus),
        {
            "word/media/image1.png": fake_emf,
            "[Content_Types].xml": content_types({"/word/media/image1.png": "image/x-emf"}),
        },
    )
    path = _write(tmp_path, "emf.docx", data)
    result, dest = disarm(path, tmp_path, switches("allow", embedded_images="sanitise"))
    assert result.outcome == "rebuilt"
    detail = next(a.detail for a in result.actions if a.switch == "embedded_images")
    assert "blank placeholder" in detail
    assert Image.open(io.BytesIO(member(dest, "word/media/image1.png"))).size == (1, 1)
    assert (
        'PartName="/word/media/image1.png" ContentType="image/png"'
        in member(dest, "[Content_Types].xml").decode()
    )
    assert len(docx.Document(str(dest)).inline_shapes) == 1
    assert_consistent(dest)
