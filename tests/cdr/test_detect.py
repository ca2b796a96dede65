"""The built-in detector: real types from bytes, containers looked into, hints only."""

from __future__ import annotations

import gzip
import io
import random
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from gicap import hookimpl
from gicap.cdr import detect as detect_module
from gicap.cdr.detect import FILE_TYPES, OOXML_MAIN_CONTENT_TYPES, detect
from gicap.cdr.types import FileType
from gicap.plugins import create_plugin_host

# -- sample builders -------------------------------------------------------------------

_RELS = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
    b'2006/relationships/officeDocument" Target="%s"/></Relationships>'
)
_MAIN_PART = {
    "docx": "word/document.xml",
    "docm": "word/document.xml",
    "dotx": "word/document.xml",
    "dotm": "word/document.xml",
    "xlsx": "xl/workbook.xml",
    "xlsm": "xl/workbook.xml",
    "xltx": "xl/workbook.xml",
    "xltm": "xl/workbook.xml",
    "pptx": "ppt/presentation.xml",
    "pptm": "ppt/presentation.xml",
    "ppsx": "ppt/presentation.xml",
    "ppsm": "ppt/presentation.xml",
    "potx": "ppt/presentation.xml",
    "potm": "ppt/presentation.xml",
}
_CONTENT_TYPE = {name: ctype for ctype, name in OOXML_MAIN_CONTENT_TYPES.items()}
# the casing Office writes
_CONTENT_TYPE = {
    k: v.replace("macroenabledtemplate", "macroEnabledTemplate").replace(
        "macroenabled", "macroEnabled"
    )
    for k, v in _CONTENT_TYPE.items()
}


def content_types(kind: str, part: str | None = None) -> bytes:
    part = part or _MAIN_PART[kind]
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
        f'<Override PartName="/{part}" ContentType="{_CONTENT_TYPE[kind]}"/>'
        '<Override PartName="/docProps/core.xml" '
        'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
        "</Types>"
    ).encode()


def make_ooxml(kind: str, padding: int = 20000) -> bytes:
    """A zip laid out like Office writes it: [Content_Types].xml first."""
    part = _MAIN_PART[kind]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", content_types(kind))
        zf.writestr("_rels/.rels", _RELS % part.encode())
        zf.writestr(
            part,
            b"<document>" + random.Random(1).randbytes(padding).hex().encode() + b"</document>",
        )
        if kind.endswith("m"):
            zf.writestr(part.split("/")[0] + "/vbaProject.bin", b"\xd0\xcf\x11\xe0" * 100)
        zf.writestr("docProps/core.xml", b"<coreProperties/>")
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


_ENDOFCHAIN, _FREESECT, _FATSECT, _NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
MSI_CLSID = bytes.fromhex("84100c0000000000c000000000000046")  # {000C1084-...-000000000046}


def make_ole(
    streams: list[str],
    clsid: bytes = bytes(16),
    directory_at_end: bool = False,
) -> bytes:
    """A minimal valid OLE compound file (v3, 512-byte sectors, one FAT sector).

    Every stream is 4096 bytes, so it lives in the regular FAT (no mini stream).
    ``directory_at_end`` puts the directory after the data, as Word often does, so a
    4 KiB preview does not show it.
    """
    sector = 512
    per_stream = 4096 // sector
    dir_sectors = -(-(len(streams) + 1) * 128 // sector)
    data_first = 1 if directory_at_end else 1 + dir_sectors
    dir_first = 1 + len(streams) * per_stream if directory_at_end else 1
    fat = [_FREESECT] * (sector // 4)
    fat[0] = _FATSECT
    for i in range(dir_sectors):
        fat[dir_first + i] = dir_first + i + 1 if i < dir_sectors - 1 else _ENDOFCHAIN
    starts = []
    for k in range(len(streams)):
        first = data_first + k * per_stream
        starts.append(first)
        for i in range(per_stream):
            fat[first + i] = first + i + 1 if i < per_stream - 1 else _ENDOFCHAIN

    def entry(
        name: str,
        kind: int,
        right: int,
        child: int,
        start: int,
        size: int,
        entry_clsid: bytes = bytes(16),
    ) -> bytes:
        raw = name.encode("utf-16-le") + b"\x00\x00"
        return (
            raw.ljust(64, b"\x00")
            + struct.pack("<HBB", len(raw), kind, 1)
            + struct.pack("<III", _NOSTREAM, right, child)
            + entry_clsid
            + bytes(4 + 16)
            + struct.pack("<IQ", start, size)
        )

    directory = entry(
        "Root Entry", 5, _NOSTREAM, 1 if streams else _NOSTREAM, _ENDOFCHAIN, 0, clsid
    )
    for k, name in enumerate(streams):
        right = k + 2 if k + 1 < len(streams) else _NOSTREAM
        directory += entry(name, 2, right, _NOSTREAM, starts[k], 4096)
    empty = bytes(64) + struct.pack("<HBB", 0, 0, 0) + struct.pack("<III", *[_NOSTREAM] * 3)
    empty = empty.ljust(128, b"\x00")
    directory = directory.ljust(dir_sectors * sector, b"\x00")
    directory = b"".join(
        directory[i : i + 128] if directory[i : i + 128].strip(b"\x00") else empty
        for i in range(0, len(directory), 128)
    )
    data = b"".join(name.encode().ljust(4096, b"\x00") for name in streams)

    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + bytes(16)
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + bytes(6)
        + struct.pack("<IIIIIIIII", 0, 1, dir_first, 0, 4096, _ENDOFCHAIN, 0, _ENDOFCHAIN, 0)
        + struct.pack("<I", 0)
        + struct.pack("<I", _FREESECT) * 108
    )
    assert len(header) == 512
    fat_sector = struct.pack(f"<{len(fat)}I", *fat)
    body = directory + data if not directory_at_end else data + directory
    return header + fat_sector + body


def image(fmt: str) -> bytes:
    pil = pytest.importorskip("PIL.Image", reason="Pillow builds the image samples")
    buf = io.BytesIO()
    pil.new("RGB", (8, 8), (200, 10, 10)).save(buf, format=fmt)
    return buf.getvalue()


def on_disk(tmp_path: Path, data: bytes, name: str = "sample.bin") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def name_of(result: FileType | None) -> str | None:
    return result.name if result else None


# -- the table -------------------------------------------------------------------------


def test_the_table_names_every_type_with_its_family() -> None:
    families = {
        "pdf": {"pdf"},
        "office": {
            "docx",
            "docm",
            "dotx",
            "dotm",
            "xlsx",
            "xlsm",
            "xltx",
            "xltm",
            "pptx",
            "pptm",
            "potx",
            "potm",
        },
        "office_legacy": {"doc", "xls", "ppt"},
        "rtf": {"rtf"},
        "image": {"jpeg", "png", "gif", "tiff", "bmp", "webp"},
        "svg": {"svg"},
        "html": {"html"},
        "archive": {"zip"},
        "text": {"csv", "text"},
        "archive_other": {"gzip", "7z", "rar", "tar"},
        "executable": {"exe", "elf", "msi"},
        "office_xml": {"office_xml"},
        "opendocument": {"odt", "ods", "odp", "odg", "opendocument"},
        "mime": {"mime"},
    }
    for family, names in families.items():
        for name in names:
            assert FILE_TYPES[name].family == family, name
    for name, ftype in FILE_TYPES.items():
        assert ftype.name == name == name.lower()
        assert "/" in ftype.mime and ftype.extension and "." not in ftype.extension


# -- PDF ---------------------------------------------------------------------------------

PDF = (
    b"%PDF-1.7\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


def test_pdf() -> None:
    assert name_of(detect(PDF)) == "pdf"
    assert name_of(detect(b"%PDF-2.0\n")) == "pdf"


def test_pdf_after_up_to_a_kib_of_junk_like_readers_accept() -> None:
    assert name_of(detect(b"\x00\x01junk" * 100 + PDF)) == "pdf"
    assert name_of(detect(b"a" * 1024 + PDF)) == "pdf"
    assert name_of(detect(b"a" * 1100 + PDF)) == "text"  # too far for a reader


# -- zip and OOXML -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(_MAIN_PART))
def test_ooxml_is_told_by_its_content_types(tmp_path: Path, kind: str) -> None:
    data = make_ooxml(kind)
    assert name_of(detect(data[:4096], on_disk(tmp_path, data))) == kind
    assert FILE_TYPES[kind].family == "office"


@pytest.mark.parametrize("kind", ["docx", "docm", "xlsx", "xlsm", "pptx", "pptm"])
def test_ooxml_preview_reads_content_types_from_the_local_header(kind: str) -> None:
    assert name_of(detect(make_ooxml(kind)[:4096])) == kind


def test_preview_guess_from_member_names_when_content_types_is_not_first() -> None:
    docm = make_zip(
        {
            "word/document.xml": b"<w/>",
            "word/vbaProject.bin": b"x",
            "[Content_Types].xml": b"x" * 10,
        }
    )
    assert (
        name_of(detect(make_zip({"_rels/.rels": b"<r/>", "word/document.xml": b"<w/>"}))) == "docx"
    )
    assert name_of(detect(docm[:200])) == "docm"
    assert name_of(detect(make_zip({"xl/workbook.xml": b"<w/>"}))) == "xlsx"
    assert name_of(detect(make_zip({"ppt/presentation.xml": b"<p/>"}))) == "pptx"


def test_preview_of_a_bare_content_types_entry_guesses_an_office_type() -> None:
    head = make_zip({"[Content_Types].xml": b"<Types>" + b"x" * 5000})[:100]
    assert name_of(detect(head)) == "docx"
    assert name_of(detect(head, None, "book.xlsx")) == "xlsx"


def test_the_content_types_decide_not_the_file_name(tmp_path: Path) -> None:
    docm = make_ooxml("docm")
    assert (
        name_of(detect(docm[:4096], on_disk(tmp_path, docm, "innocent.docx"), "innocent.docx"))
        == "docm"
    )


def test_a_plain_zip_is_a_zip(tmp_path: Path) -> None:
    data = make_zip({"readme.txt": b"hello", "dir/a.bin": bytes(100)})
    assert name_of(detect(data[:4096], on_disk(tmp_path, data, "a.zip"))) == "zip"
    assert name_of(detect(data[:4096])) == "zip"
    assert FILE_TYPES["zip"].family == "archive"


def test_a_zip_named_docx_is_still_a_zip(tmp_path: Path) -> None:
    data = make_zip({"payload.exe": b"MZ" + bytes(100)})
    assert (
        name_of(detect(data[:4096], on_disk(tmp_path, data, "report.docx"), "report.docx")) == "zip"
    )
    assert name_of(detect(data[:4096], None, FILE_TYPES["docx"].mime)) == "zip"


def test_a_zip_with_content_types_of_no_office_document_is_a_zip(tmp_path: Path) -> None:
    nupkg = make_zip(
        {
            "[Content_Types].xml": b'<Types><Default Extension="nuspec" '
            b'ContentType="application/octet"/></Types>',
            "lib/a.dll": b"MZ",
        }
    )
    assert name_of(detect(nupkg, on_disk(tmp_path, nupkg))) == "zip"


def test_the_part_that_exists_wins_over_a_decoy_override(tmp_path: Path) -> None:
    ctypes = content_types("xlsx", "xl/workbook.xml").replace(
        b"</Types>",
        b'<Override PartName="/word/missing.xml" ContentType="'
        + _CONTENT_TYPE["docx"].encode()
        + b'"/></Types>',
    )
    ctypes = ctypes.replace(b'<Override PartName="/xl', b'<Override  PartName="/xl')
    data = make_zip({"[Content_Types].xml": ctypes, "xl/workbook.xml": b"<w/>"})
    assert name_of(detect(data, on_disk(tmp_path, data))) == "xlsx"


def test_an_empty_zip_and_a_corrupt_central_directory(tmp_path: Path) -> None:
    empty = make_zip({})
    assert name_of(detect(empty, on_disk(tmp_path, empty, "e.zip"))) == "zip"
    docx = make_ooxml("docx")
    cut = docx[: len(docx) - 30]  # the end of central directory record is gone
    assert name_of(detect(cut[:4096], on_disk(tmp_path, cut, "cut.docx"))) == "docx"
    junk = b"PK\x03\x04" + random.Random(2).randbytes(3000)
    assert name_of(detect(junk, on_disk(tmp_path, junk, "junk.zip"))) == "zip"


# -- OLE ---------------------------------------------------------------------------------


def test_the_crafted_ole_file_is_valid_for_olefile() -> None:
    olefile = pytest.importorskip("olefile")
    data = make_ole(["WordDocument", "1Table", "\x05SummaryInformation"])
    assert olefile.isOleFile(data=data)
    with olefile.OleFileIO(data) as ole:
        assert sorted(ole.listdir()) == [["\x05SummaryInformation"], ["1Table"], ["WordDocument"]]
        assert ole.openstream("WordDocument").read(12) == b"WordDocument"


@pytest.mark.parametrize(
    ("streams", "kind"),
    [
        (["WordDocument", "1Table", "\x05SummaryInformation"], "doc"),
        (["\x05SummaryInformation", "Workbook"], "xls"),
        (["Book"], "xls"),
        (["Current User", "PowerPoint Document", "Pictures"], "ppt"),
        (["EncryptionInfo", "EncryptedPackage"], "ooxml_encrypted"),
        (["\x01CompObj", "Contents"], "ole"),
    ],
)
def test_ole_files_are_told_by_their_streams(tmp_path: Path, streams: list[str], kind: str) -> None:
    pytest.importorskip("olefile")
    for at_end in (False, True):
        data = make_ole(streams, directory_at_end=at_end)
        assert name_of(detect(data[:4096], on_disk(tmp_path, data))) == kind


def test_encrypted_ooxml_and_ole_families() -> None:
    assert FILE_TYPES["ooxml_encrypted"].family == "office"
    assert FILE_TYPES["ole"].family == "office_legacy"


def test_msi_is_an_executable(tmp_path: Path) -> None:
    pytest.importorskip("olefile")
    data = make_ole(
        ["\u4840\u3b3f\u4577\u446c", "SummaryInfo"], clsid=MSI_CLSID, directory_at_end=True
    )
    assert name_of(detect(data[:4096], on_disk(tmp_path, data, "setup.doc"))) == "msi"
    assert name_of(detect(make_ole(["x"], clsid=MSI_CLSID)[:4096])) == "msi"


def test_ole_preview_reads_a_directory_in_the_head() -> None:
    assert name_of(detect(make_ole(["Workbook"])[:4096])) == "xls"
    assert name_of(detect(make_ole(["Current User", "PowerPoint Document"])[:4096])) == "ppt"
    assert (
        name_of(detect(make_ole(["EncryptionInfo", "EncryptedPackage"])[:4096]))
        == "ooxml_encrypted"
    )


def test_ole_preview_without_the_directory_guesses_doc_or_the_declared_type() -> None:
    head = make_ole(["Workbook"], directory_at_end=True)[:4096]
    assert name_of(detect(head)) == "doc"
    assert name_of(detect(head, None, "application/vnd.ms-excel")) == "xls"
    assert name_of(detect(head, None, "slides.PPT")) == "ppt"
    assert name_of(detect(head, None, "image/png")) == "doc"  # not an OLE type: ignored


def test_a_corrupt_ole_file_is_still_office_legacy(tmp_path: Path) -> None:
    data = make_ole(["WordDocument"], directory_at_end=True)
    broken = data[:1024]  # the FAT points past the end
    assert FILE_TYPES[name_of(detect(broken, on_disk(tmp_path, broken)))].family == (
        "office_legacy"
    )
    assert name_of(detect(data[:8] + bytes(600), on_disk(tmp_path, data[:8]))) == "ole"


# -- RTF, images -------------------------------------------------------------------------


def test_rtf_including_the_header_variants_word_accepts() -> None:
    assert name_of(detect(b"{\\rtf1\\ansi hello}")) == "rtf"
    assert name_of(detect(b"{\\rtxa\\ansi hello}")) == "rtf"


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [
        ("JPEG", "jpeg"),
        ("PNG", "png"),
        ("GIF", "gif"),
        ("TIFF", "tiff"),
        ("BMP", "bmp"),
        ("WEBP", "webp"),
    ],
)
def test_images(fmt: str, kind: str) -> None:
    data = image(fmt)
    assert name_of(detect(data)) == kind
    assert FILE_TYPES[kind].family == "image"


def test_big_endian_tiff_and_an_implausible_bmp() -> None:
    assert name_of(detect(b"MM\x00*\x00\x00\x00\x08" + bytes(100))) == "tiff"
    assert name_of(detect(b"BMW is a car maker.\n")) == "text"


# -- SVG and HTML --------------------------------------------------------------------------


SVG = (
    b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
    b"<!-- Created with a drawing tool -->\n"
    b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
    b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(1)</script></svg>\n"
)


@pytest.mark.parametrize(
    "data",
    [
        SVG,
        b"<svg/>",
        b'  <SVG xmlns="http://www.w3.org/2000/svg"></SVG>',
        b'<?xml version="1.0"?>\n<!DOCTYPE svg [\n <!ENTITY x "<b>">\n]>\n<svg>&x;</svg>',
        b'<?xml version="1.0"?><?xml-stylesheet href="a.css"?><svg:svg '
        b'xmlns:svg="http://www.w3.org/2000/svg"/>',
        '\ufeff<svg xmlns="http://www.w3.org/2000/svg"/>'.encode("utf-16"),
        b'<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "x" "y">\n<!--' + b"c" * 9000,
    ],
)
def test_svg(data: bytes) -> None:
    assert name_of(detect(data)) == "svg"


@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE html>\n<html><body>hi</body></html>",
        b"<!doctype HTML><title>x</title>",
        b"\xef\xbb\xbf \n\t<html lang='en'>",
        b"<!-- saved from url -->\n<head><script>x()</script></head>",
        b"<script>alert(document.cookie)</script>",
        b"<BODY onload=x()>",
        b"<iframe src=//evil>",
        b'<?xml version="1.0"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        b'"x">\n<html xmlns="http://www.w3.org/1999/xhtml"/>',
        "<html><body>caf\xe9</body></html>".encode("latin-1"),  # not UTF-8, still HTML
        "<!DOCTYPE html><p>hi</p>".encode("utf-16"),
        b"some junk first\n<html><script>x()</script>",
    ],
)
def test_html(data: bytes) -> None:
    assert name_of(detect(data)) == "html"


def test_svg_and_html_are_not_just_mentions() -> None:
    assert name_of(detect(b"<svgfoo/>")) == "text"
    assert name_of(detect(b"<abbr>x</abbr>")) == "text"
    assert name_of(detect(b'<?xml version="1.0"?>\n<rss><channel/></rss>')) == "text"
    assert name_of(detect(b"Use a <script> element to load code.")) == "text"


# -- text and csv --------------------------------------------------------------------------


def test_text() -> None:
    assert name_of(detect(b"Hello, world.\nThis is plain text.\n")) == "text"
    assert name_of(detect("Gr\xfc\xdfe aus K\xf6ln \u2603\n".encode())) == "text"
    assert name_of(detect("UTF-16 text\r\n".encode("utf-16"))) == "text"
    assert name_of(detect("UTF-16 text\r\n".encode("utf-16-be").join([b"\xfe\xff", b""]))) == "text"
    assert name_of(detect(b"")) == "text"


def test_a_utf8_sequence_cut_by_the_preview_is_still_text() -> None:
    data = ("x" * 4094 + "\u2603").encode()
    assert name_of(detect(data[:4096])) == "text"


@pytest.mark.parametrize(
    "data",
    [
        b"text with a NUL\x00byte",
        bytes(range(256)) * 4,
        b"\x01\x02\x03\x04\x05binary-ish header",
        random.Random(3).randbytes(4096),
        b"caf\xe9 au lait\x1b$B, shifted with ESC (ISO-2022)",
    ],
)
def test_binary_is_not_text(data: bytes) -> None:
    assert detect(data) is None


def test_text_in_an_8_bit_charset_is_text() -> None:
    """Text that is not UTF-8 (the Windows code page, Shift-JIS) is text all the same."""
    for data in (b"caf\xe9 au lait, not UTF-8", "日本語のメモです\n".encode("shift_jis")):
        found = detect(data)
        assert found is not None and found.name == "text", (data, found)


@pytest.mark.parametrize(
    "data",
    [
        b"name,age,city\nalice,30,paris\nbob,41,rome\n",
        b"a;b;c\n1;2;3\n4;5;6\n7;8;9",
        b"id\tvalue\n1\tx\n2\ty\n",
        b'name,note\n"smith, j","multi\nline"\nbob,"x"\n',
        b"h1,h2\n" + b"1,2\n" * 3000,  # the preview cuts it anywhere
    ],
)
def test_csv_is_sniffed_from_consistent_delimiters(data: bytes) -> None:
    assert name_of(detect(data[:4096])) == "csv"


def test_csv_sniffing_needs_consistent_records() -> None:
    assert (
        name_of(detect(b"Hello, world.\nSo long, and thanks, for all the fish.\nBye.\n")) == "text"
    )
    assert name_of(detect(b"a,b\n1,2\n")) == "text"  # too few records to tell


@pytest.mark.parametrize(
    "declared",
    [
        "text/csv",
        "text/csv; charset=utf-8",
        "export.CSV",
        'attachment; filename="data.csv"',
        "application/vnd.ms-excel",
    ],
)
def test_declared_csv_breaks_the_tie_for_text(declared: str) -> None:
    assert name_of(detect(b"just one line\n", None, declared)) == "csv"


def test_declared_html_breaks_the_tie_for_text() -> None:
    assert name_of(detect(b"hello <img src=x onerror=alert(1)>", None, "text/html")) == "html"
    assert name_of(detect(b"plain", None, "page.htm")) == "html"


@pytest.mark.parametrize(
    "declared",
    ["invoice.js", 'attachment; filename="Invoice.VBS"', "run.wsf", "setup.bat", "a.ps1", "x.url"],
)
def test_text_named_as_a_script_is_a_script(declared: str) -> None:
    """A desktop runs these when they are opened (Windows Script Host, cmd.exe...)."""
    assert name_of(detect(b'WScript.Echo "hi"\n', None, declared)) == "script"
    assert name_of(detect(b"<job><script>x</script></job>", None, declared)) == "script"


#: (a review found these passing as text, in archives too)
_LAUNCHED = {
    "run.py": b"import os\nos.system('calc')\n",
    "run.pyw": b"import os\nos.system('calc')\n",
    "app.jnlp": b'<?xml version="1.0"?>\n<jnlp codebase="http://x.example/"></jnlp>\n',
    "open.terminal": b"<plist><dict><key>CommandString</key><string>x</string></dict></plist>",
    "box.wsb": b"<Configuration><LogonCommand><Command>cmd</Command></LogonCommand>"
    b"</Configuration>\n",
    "setup.application": b'<?xml version="1.0"?><assembly></assembly>\n',
    "app.appinstaller": b'<?xml version="1.0"?><AppInstaller></AppInstaller>\n',
    "x.fileloc": b"<plist><dict><key>URL</key><string>file:///x</string></dict></plist>",
    "run.pl": b"system('calc');\n",
    "console.psc1": b"<PSConsoleFile></PSConsoleFile>\n",
    "run.ksh": b"calc\n",
    # (a second review: an Office add-in installer, Acrobat forms, a media playlist,
    # an IE behaviour, a Citrix session, Visual Studio projects that build on opening)
    "addin.vsto": b'<?xml version="1.0"?><asmv1:assembly></asmv1:assembly>\n',
    "form.xdp": b'<?xml version="1.0"?><xdp:xdp></xdp:xdp>\n',
    "data.fdf": b"%FDF-1.2\n1 0 obj<</FDF<</JavaScript<</Doc 2 0 R>>>>>>endobj\n",
    "data.xfdf": b'<?xml version="1.0"?><xfdf></xfdf>\n',
    "list.asx": b'<asx version="3.0"><entry><ref href="http://x.example/"/></entry></asx>\n',
    "b.htc": b"<PUBLIC:COMPONENT><SCRIPT>x()</SCRIPT></PUBLIC:COMPONENT>\n",
    "session.ica": b"[ApplicationServers]\nx=\n",
    "app.sln": b"Microsoft Visual Studio Solution File, Format Version 12.00\n",
    "app.csproj": b'<Project Sdk="Microsoft.NET.Sdk"></Project>\n',
}


@pytest.mark.parametrize("name", sorted(_LAUNCHED))
def test_text_a_launcher_runs_is_a_script(name: str) -> None:
    """Interpreters installers associate with their scripts, and launchers that run
    what an XML file names (Java Web Start, ClickOnce, Windows Sandbox, macOS
    Terminal), run these when they are opened."""
    assert name_of(detect(_LAUNCHED[name], None, name)) == "script"


@pytest.mark.parametrize(
    ("declared", "kind"),
    [
        # the name browsers save under, however the header writes it (found by review)
        ("attachment; filename=\"invoice.txt\"; filename*=UTF-8''invoice.js", "script"),
        ("attachment; filename*=UTF-8''invoice%2Ejs", "script"),
        ("attachment; filename=invoice%2Ejs", "script"),
        ('attachment; filename="=?UTF-8?B?aW52b2ljZS5qcw==?="', "script"),
        ('attachment; filename="Q3; invoice.js"', "script"),
        ('attachment; filename="O\'Brien invoice.js"', "script"),
        ('attachment; filename*0="invoice"; filename*1=".js"', "script"),
        ("invoice.js::$DATA", "script"),
        ("invoice.js.", "script"),
        ("Q3; invoice.js", "script"),
        ("search.searchConnector-ms", "script"),
        ("prices.slk", "script"),
        ("query.iqy", "script"),
        ("attachment; filename=\"a.txt\"; filename*=UTF-8''report.csv", "csv"),
        ("filename_list.csv", "csv"),  # a bare name holding the word
    ],
)
def test_the_names_a_file_is_saved_under(declared: str, kind: str) -> None:
    assert name_of(detect(b"text\n", None, declared)) == kind


def test_a_name_decides_over_markup_for_scripts_and_csv() -> None:
    """Windows opens invoice.url by its name, Excel report.csv: that the text also
    reads as HTML does not matter to them."""
    shortcut = b"<!DOCTYPE html>\n[InternetShortcut]\nURL=file://evil.example/x\n"
    assert name_of(detect(shortcut, None, "invoice.url")) == "script"
    sheet = b"<html>\n=cmd|' /C calc'!A0\n"
    assert name_of(detect(sheet, None, "report.csv")) == "csv"
    assert name_of(detect(sheet, None, "page.txt")) == "html"


def test_scripts_a_page_loads_are_text() -> None:
    """Web pages load scripts by Content-Type: they stay text (delivered, as browsing
    needs), and only the bytes decide what a file named as a script is."""
    for content_type in ("text/javascript", "application/javascript"):
        assert name_of(detect(b"alert(1)\n", None, content_type)) == "text"
    assert name_of(detect(PDF, None, "invoice.js")) == "pdf"


# -- things recognised but not processed ---------------------------------------------------

ELF = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HHI", 2, 0x3E, 1) + bytes(100)
EXE = b"MZ\x90\x00" + bytes(56) + struct.pack("<I", 64) + b"PE\x00\x00" + bytes(200)


def _tar(v7: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"hello"))
    data = bytearray(buf.getvalue())
    if v7:  # no magic: only the checksum says "tar"
        data[257:265] = bytes(8)
        data[148:156] = b" " * 8
        data[148:156] = b"%06o\x00 " % sum(data[:512])
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (gzip.compress(b"hello" * 100), "gzip"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(50), "7z"),
        (b"Rar!\x1a\x07\x00" + bytes(50), "rar"),
        (b"Rar!\x1a\x07\x01\x00" + bytes(50), "rar"),
        (_tar(), "tar"),
        (_tar(v7=True), "tar"),
        (EXE, "exe"),
        (ELF, "elf"),
    ],
)
def test_other_archives_and_executables(data: bytes, kind: str) -> None:
    assert name_of(detect(data)) == kind
    assert FILE_TYPES[kind].family in ("archive_other", "executable")


# -- the declared type never decides alone -------------------------------------------------


def test_the_declared_type_never_decides_alone(tmp_path: Path) -> None:
    assert name_of(detect(EXE, None, "image/png")) == "exe"
    assert name_of(detect(EXE, on_disk(tmp_path, EXE, "cat.png"), "cat.png")) == "exe"
    assert name_of(detect(image("PNG"), None, "text/plain")) == "png"
    assert name_of(detect(PDF, None, "text/csv")) == "pdf"
    assert detect(bytes(range(256)), None, "application/pdf") is None
    assert detect(bytes(range(256)), None, "report.docx") is None
    assert name_of(detect(b"\x89PNG\r\n\x1a\n" + bytes(20), None, "x.html")) == "png"


# -- robustness ----------------------------------------------------------------------------


def _samples() -> list[bytes]:
    return [
        PDF,
        make_ooxml("docm", 500),
        make_zip({"a": b"b"}),
        make_ole(["WordDocument"]),
        make_ole(["Workbook"], directory_at_end=True),
        SVG,
        b"<html><body>x</body></html>",
        b"a,b\n1,2\n3,4\n",
        EXE,
        ELF,
        _tar(),
        b"{\\rtf1}",
        b"BM" + bytes(40),
        b"RIFF\x00\x00\x00\x00WEBP",
    ]


def test_malformed_input_never_raises(tmp_path: Path) -> None:
    rng = random.Random(4)
    path = tmp_path / "fuzz.bin"
    for sample in _samples():
        for _ in range(40):
            data = bytearray(sample[: rng.randrange(len(sample) + 1)])
            for _ in range(rng.randrange(4)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
            path.write_bytes(bytes(data))
            for p in (None, str(path)):
                result = detect(bytes(data[:4096]), p, rng.choice([None, "x.csv", "a/b"]))
                assert result is None or result in FILE_TYPES.values()


def test_odd_arguments_never_raise(tmp_path: Path) -> None:
    docx = make_ooxml("docx")
    assert name_of(detect(docx[:4096], str(tmp_path / "missing.docx"))) == "docx"
    assert name_of(detect(docx[:4096], str(tmp_path))) == "docx"  # a directory
    assert name_of(detect(memoryview(PDF))) == "pdf"  # type: ignore[arg-type]
    assert name_of(detect(bytearray(b"abc"), None, 42)) == "text"  # type: ignore[arg-type]
    assert name_of(detect(b"x" * 1_000_000)) == "text"  # only the start is looked at


# -- as a plugin ---------------------------------------------------------------------------


def test_it_answers_the_detect_hook_and_runs_last() -> None:
    class Early:
        @hookimpl
        def gicap_detect_file_type(self, head: bytes) -> FileType | None:
            return FILE_TYPES["csv"] if head.startswith(b"special") else None

    host = create_plugin_host(load_entry_points=False, extra=[("early", Early())])
    if not host.manager.is_registered(detect_module):  # when it is not a built-in
        host.manager.register(detect_module, name="gicap-detect")
    hook = host.manager.hook.gicap_detect_file_type
    assert hook(head=PDF, path=None, declared=None) == FILE_TYPES["pdf"]
    assert hook(head=b"special text", path=None, declared=None) == FILE_TYPES["csv"]
    assert hook(head=bytes(range(256)), path=None, declared=None) is None


@pytest.mark.parametrize(
    ("controls", "kind"),
    [
        ("\x0b\x0c" * 50, "text"),  # VT and FF are allowed, like tab, CR and LF
        ("\x01\x02\x1f", "text"),  # up to 1 % of the characters
        ("\x01\x02\x1f\x7f", None),
        ("\x85\x9f\x80", "text"),  # C1 controls count too
        ("\x85\x9f\x80\x90", None),
    ],
)
def test_text_allows_few_control_characters(controls: str, kind: str | None) -> None:
    data = ("word " * 60 + controls).encode()  # 300 characters + the controls
    found = detect(data)
    assert (found.name if found else None) == kind


# -- Office XML ---------------------------------------------------------------------------

_SPREADSHEET = (
    b'<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" '
    b'xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet"><Worksheet ss:Name="S"><Table>'
    b'<Row><Cell ss:Formula="=cmd|\' /C calc\'!A0"><Data ss:Type="Number">1</Data></Cell>'
    b"</Row></Table></Worksheet></Workbook>\n"
)
_PI = b'<?xml version="1.0"?>\n<?mso-application progid="Excel.Sheet"?>\n'
_WORD_2003 = (
    b'<?xml version="1.0"?><w:wordDocument '
    b'xmlns:w="http://schemas.microsoft.com/office/word/2003/wordml"><w:body/></w:wordDocument>'
)
_FLAT_OPC = (
    b'<?xml version="1.0"?><?mso-application progid="Word.Document"?>'
    b'<pkg:package xmlns:pkg="http://schemas.microsoft.com/office/2006/xmlPackage"/>'
)


@pytest.mark.parametrize(
    "data", [_PI + _SPREADSHEET, _SPREADSHEET, _WORD_2003, _FLAT_OPC], ids=lambda d: d[:30]
)
@pytest.mark.parametrize("declared", [None, "book.xls", "book.xml", "doc.doc", "text/xml"])
def test_office_xml_documents_are_their_own_type(data: bytes, declared: str | None) -> None:
    """Windows opens them in Excel or Word (by the processing instruction, or by the
    name when it says .xls or .doc), formulas and macros included: never text or CSV
    (no engine rebuilds them: the policy for unsupported types decides)."""
    found = detect(data, None, declared)
    assert found is not None and found.name == "office_xml"


def test_other_xml_and_office_html_are_not_office_xml() -> None:
    assert detect(b'<?xml version="1.0"?><rss><channel/></rss>\n', None, None).name == "text"
    excel_html = (
        b'<html xmlns:o="urn:schemas-microsoft-com:office:office" '
        b'xmlns:x="urn:schemas-microsoft-com:office:excel"><body><table/></body></html>'
    )
    assert detect(excel_html, None, "book.xls").name == "html"
    assert detect(_PI + _SPREADSHEET, None, "book.csv").name == "csv"  # (Excel reads a .csv)
    # text that only mentions the namespace or the instruction: a script, JSON, a note
    for text in (
        b'var template = \'<?mso-application progid="Excel.Sheet"?><Workbook xmlns='
        b'"urn:schemas-microsoft-com:office:spreadsheet">\';\n',
        b'{"ns": "urn:schemas-microsoft-com:office:spreadsheet"}\n',
        b"SpreadsheetML uses urn:schemas-microsoft-com:office:spreadsheet.\n",
    ):
        assert detect(text, None, None).name == "text", text


def test_office_xml_is_told_past_a_long_prolog_and_character_references() -> None:
    comment = b"<!--" + b"x" * 10_000 + b"-->"
    found = detect(b'<?xml version="1.0"?>' + comment + _PI[22:] + _SPREADSHEET, None, None)
    assert found is not None and found.name == "office_xml"
    escaped = _SPREADSHEET.replace(b"urn:schemas", b"urn&#58;schemas", 1)
    found = detect(escaped, None, "book.xls")
    assert found is not None and found.name == "office_xml"


@pytest.mark.parametrize(
    "xml",
    [
        b'<?xml version="1.0"?><report xmlns:h="http://www.w3.org/1999/xhtml">'
        b"<h:script>alert(1)</h:script></report>",
        b'<report><s:svg xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script>'
        b"</s:svg></report>",
        b'<?xml version="1.0"?><?xml-stylesheet type="text/xsl" href="t.xsl"?><report/>',
        b'<report xmlns:h="http&#58;//www.w3.org/1999/xhtml"><h:script>alert(1)</h:script>'
        b"</report>",
    ],
    ids=["xhtml-element", "svg-element", "xslt", "character-reference"],
)
def test_xml_a_browser_runs_scripts_in_is_html(xml: bytes) -> None:
    """Browsers run XHTML and SVG scripts anywhere in an XML document, and transform
    it with its style sheet: it was plain text, delivered as it came."""
    assert name_of(detect(xml, None, "report.xml")) == "html"


def test_plain_xml_is_still_text() -> None:
    assert (
        name_of(detect(b'<?xml version="1.0"?><report><row a="1"/></report>', None, "r.xml"))
        == "text"
    )


def test_text_named_tab_is_csv() -> None:
    """LibreOffice opens a .tab file as CSV, formulas and all (two lines are too few
    for the content to tell)."""
    assert name_of(detect(b"=1+1\tx\n=2+2\ty\n", None, "data.tab")) == "csv"


# -- what a review got past detection ----------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        (b".main+xml", b".main&#43;xml"),  # a character reference, as Office reads it
        (b'<Override PartName="/word', b'<Override xContentType="text/plain" PartName="/word'),
    ],
    ids=["character-reference", "decoy-attribute"],
)
def test_content_types_are_read_as_office_reads_them(tmp_path: Path, change: tuple) -> None:
    """A docx whose main content type was written with a character reference, or with
    a decoy attribute ending in "ContentType" before the real one, was a plain zip:
    its DDE field and remote template passed the archive engine."""
    ctypes = content_types("docx")
    changed = ctypes.replace(*change)
    assert changed != ctypes
    data = make_zip({"[Content_Types].xml": changed, "word/document.xml": b"<document/>"})
    assert name_of(detect(data, on_disk(tmp_path, data, "a.zip"), "a.zip")) == "docx"
    assert name_of(detect(data[:4096], None, "a.zip")) == "docx"


def test_a_package_whose_content_types_do_not_read_is_judged_by_its_folders(
    tmp_path: Path,
) -> None:
    for ctypes in (b"<Types><Override", b'<!DOCTYPE x [<!ENTITY a "b">]><Types/>'):
        data = make_zip({"[Content_Types].xml": ctypes, "xl/workbook.xml": b"<workbook/>"})
        assert name_of(detect(data, on_disk(tmp_path, data, "a.zip"))) == "xlsx"


def test_a_bzip2_content_types_is_not_expanded(tmp_path: Path) -> None:
    """A 921-byte zip whose bzip2 [Content_Types].xml declared 1 GiB took 5.9 s and
    2 GiB to detect (zipfile bounds what it inflates per read for deflate only)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", b" " * (64 << 20), zipfile.ZIP_BZIP2)
        zf.writestr("word/document.xml", b"<document/>", zipfile.ZIP_DEFLATED)
    data = buf.getvalue()
    assert len(data) < 10_000
    import tracemalloc

    tracemalloc.start()
    try:
        found = detect(data[:4096], on_disk(tmp_path, data, "a.zip"), "a.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert name_of(found) == "docx"  # (by its folders: the Office engine judges it)
    assert peak < 8 << 20, peak


def _odf(mimetype: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mimetype", mimetype, zipfile.ZIP_STORED)
        zf.writestr("content.xml", b"<office:document-content/>", zipfile.ZIP_DEFLATED)
        zf.writestr("Basic/Standard/Module1.xml", b"<module/>", zipfile.ZIP_DEFLATED)
        zf.writestr("META-INF/manifest.xml", b"<manifest/>", zipfile.ZIP_DEFLATED)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("mimetype", "kind"),
    [
        (b"application/vnd.oasis.opendocument.spreadsheet", "ods"),
        (b"application/vnd.oasis.opendocument.text", "odt"),
        (b"application/vnd.oasis.opendocument.text-template", "odt"),
        (b"application/vnd.oasis.opendocument.presentation", "odp"),
        (b"application/vnd.oasis.opendocument.graphics", "odg"),
        (b"application/vnd.oasis.opendocument.formula", "opendocument"),
        (b"not a type", "opendocument"),  # (its manifest)
    ],
)
def test_opendocument_files_are_not_plain_zips(tmp_path: Path, mimetype: bytes, kind: str) -> None:
    """An .ods with a StarBasic macro and WEBSERVICE/DDE formulas passed the archive
    engine as a zip, untouched: OpenDocument is a type of its own (no engine: blocked
    as unsupported by default)."""
    data = _odf(mimetype)
    assert name_of(detect(data, on_disk(tmp_path, data, "a.zip"), "a.zip")) == kind
    assert name_of(detect(data[:4096], None, "a.zip")) == kind
    assert FILE_TYPES[kind].family == "opendocument"


def test_an_office_package_with_a_mimetype_member_is_office(tmp_path: Path) -> None:
    """A docx given a mimetype member (or a manifest) is a docx to Word: it was
    OpenDocument, relayed unmodified where unsupported files are relayed."""
    base = make_ooxml("docx")
    for extra in (
        {"mimetype": b"application/vnd.oasis.opendocument.text"},
        {"META-INF/manifest.xml": b"<manifest/>"},
    ):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, value in extra.items():
                zf.writestr(name, value, zipfile.ZIP_STORED)
            with zipfile.ZipFile(io.BytesIO(base)) as src:
                for item in src.infolist():
                    zf.writestr(item, src.read(item.filename))
        data = buf.getvalue()
        assert name_of(detect(data, on_disk(tmp_path, data, "a.zip"), "a.zip")) == "docx"
        assert name_of(detect(data[:4096], None, "a.zip")) == "docx"


def test_names_of_a_disposition_of_many_parameters_are_read_in_linear_time() -> None:
    """The email package splits parameters in quadratic time: 64 KB of ";" in an
    unclosed quote took 2.5 s, in the server's event loop. Continuations after
    hundreds of parameters are still joined."""
    import time

    from gicap.cdr.detect import file_names

    started = time.perf_counter()
    file_names('attachment; filename="' + ";" * 60_000)
    assert time.perf_counter() - started < 1  # (about 1 ms; 2.5 s before)
    junk = "a=b; " * 200
    names = file_names(f"attachment; {junk}filename*0*=UTF-8''inv; filename*1*=oice%2Ejs")
    assert "invoice.js" in names


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        ('attachment; filename="=?utf-8?B?eC5odG1s?="', "x.html"),  # RFC 2047
        ('attachment; filename*0="x.html"; filename*2="zz"', "x.html"),  # a gap
        ('attachment; filename*0="x.html"; filename*0="zz"', "x.html"),  # repeated
        ('attachment; filename*0="x.html"; title="; filename*1=zz"', "x.html"),  # decoy
    ],
)
def test_names_browsers_save_under_are_found_behind_many_parameters(
    disposition: str, name: str
) -> None:
    """Past 64 parameters the names are read by patterns alone: encoded words were
    left undecoded there, and continuations joined past where browsers stop."""
    from gicap.cdr.detect import file_names, telling_name

    for padded in (disposition, disposition + "; a=b" * 65):
        assert telling_name(file_names(padded)) == name, padded


def test_continuations_are_joined_as_firefox_joins_them() -> None:
    """A repeated number ends the pieces (Firefox kept "a.html" where the pieces,
    sorted by value, made "a.ht_ml"); more than 64 pieces are joined too."""
    from gicap.cdr.detect import file_names, telling_name

    repeated = 'attachment; filename*0="a.ht"; filename*1="ml"; filename*1="_"'
    assert telling_name(file_names(repeated)) == "a.html"
    many = "; ".join(f'filename*{i}="a"' for i in range(65)) + '; filename*65=".html"'
    assert telling_name(file_names("attachment; " + many)).endswith(".html")


# -- MIME messages and web archives --------------------------------------------------------

_MHT = (
    b'MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary="----=_NextPart_01"\r\n'
    b"X-Padding: " + b"a" * 1200 + b"\r\n\r\n"
    b"------=_NextPart_01\r\nContent-Location: file:///C:/x.htm\r\n"
    b'Content-Type: text/html; charset="us-ascii"\r\n\r\n<html><body>hi</body></html>\r\n'
    b"------=_NextPart_01\r\nContent-Location: file:///C:/x_files/editdata.mso\r\n"
    b"Content-Transfer-Encoding: base64\r\nContent-Type: application/x-mso\r\n\r\n"
    b"QWN0aXZlTWltZQAAAfAEAAAA\r\n------=_NextPart_01--\r\n"
)
_SAVED_PAGE = (
    b"From: <Saved by Blink>\nSnapshot-Content-Location: https://example.com/\n"
    b"Subject: Example\nMIME-Version: 1.0\nContent-Type: multipart/related;\n"
    b'\ttype="text/html";\n\tboundary="----MultipartBoundary--x"\n\n'
    b"------MultipartBoundary--x\nContent-Type: text/html\n\n<html></html>\n"
)


@pytest.mark.parametrize("data", [_MHT, _SAVED_PAGE], ids=["word-mht", "saved-page"])
@pytest.mark.parametrize("declared", [None, "report.doc", "page.mht", "mail.eml", "a.txt"])
def test_mime_messages_and_web_archives_are_their_own_type(
    data: bytes, declared: str | None
) -> None:
    """An MHT named .doc, its HTML part past the first KiB, was text, delivered as it
    came: Word opens it as a web archive and runs the macros of its ActiveMime part,
    and a mail client opens the attachments of a message. No engine unpacks them: the
    policy for unsupported types decides."""
    found = detect(data, None, declared)
    assert found is not None and found.name == "mime"
    assert (
        detect(data.replace(b"\n", b"\r\n").replace(b"\r\r", b"\r"), None, declared).name == "mime"
    )


def test_text_with_header_like_lines_is_not_a_message() -> None:
    for text in (
        b"Subject: hello\nThis is a note: with a colon\n",
        b"Note: MIME-Version: 1.0 is a header.\nSecond line\n",
        b"Date: today\nFrom: me\n\nbody\n",  # (headers, but no MIME)
    ):
        assert detect(text, None, "a.txt").name == "text", text
    assert detect(_MHT, None, "book.csv").name == "csv"  # (Excel opens a .csv as CSV)


def test_a_web_archive_is_blocked_by_default(tmp_path: Path) -> None:
    from gicap.cdr import job
    from gicap.cdr.policy import build_profile

    source = tmp_path / "report.doc"
    source.write_bytes(_MHT)
    profile = build_profile("default", {}).as_dict()
    answer = job.disarm_file(source, tmp_path / "out", profile, "default", "report.doc", 1 << 20)
    assert answer["outcome"] == "unsupported", answer
    assert profile["unsupported"] == "block"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"<!-- x -->hello <script>alert(document.domain)</script>", "html"),
        (b"\n<!-- x -->\n<img src=x onerror=alert(1)>", "html"),
        (b"<!-->x", "html"),
        # what the comment leads to still decides when it tells more
        (b'<!-- made by hand -->\n<svg xmlns="http://www.w3.org/2000/svg"/>', "svg"),
        (b"<!--x-->plain words", "text"),  # (no space or ">" after "<!--": no HTML)
    ],
)
def test_a_leading_comment_is_html_as_browsers_sniff_it(data: bytes, kind: str) -> None:
    """Browsers sniff a response without a type that starts "<!-- " as HTML (the
    WHATWG table): text after such a comment, with a <script> or an <img onerror>
    further on, passed as text."""
    assert name_of(detect(data, None, None)) == kind
