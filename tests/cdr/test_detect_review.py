"""Files a desktop program opens as active content (macros, formulas, pictures and
links it fetches, programs it runs) whatever they look like to a quick glance: they
are never delivered as harmless text. Each file goes through the whole pipeline
(detection, engine, policy) under the names a user or an attacker saves it as."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gicap.cdr.detect import detect
from tests.loopback import Recorder, recording
from tests.support import disarm_job, require_tool

#: Where the files call back to; replaced by the loopback server's address.
CALLBACK = "http://callback.invalid"


_disarm = disarm_job


def _delivered(answer: dict) -> bool:
    return answer["outcome"] in ("rebuilt", "unmodified")


# -- a loopback server and LibreOffice ---------------------------------------------------


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording() as server:
        yield server


def _libreoffice(tmp_path: Path, file: Path, to: str) -> Path | None:
    """``file`` as LibreOffice converts it to ``to`` (a filter), or None when it
    cannot load it."""
    soffice = require_tool("soffice", "libreoffice-*-nogui")
    out = tmp_path / "converted"
    subprocess.run(
        [soffice, f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}"]
        + ["--headless", "--norestore", "--convert-to", to, "--outdir", str(out), str(file)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    converted = out / f"{file.stem}.{to.split(':')[0]}"
    return converted if converted.exists() else None


# -- flat OpenDocument -------------------------------------------------------------------


def _flat_odt(base: str = CALLBACK, prolog: bytes = b"") -> bytes:
    """A flat OpenDocument text (.fodt): a Basic macro, a picture LibreOffice fetches
    as it opens the file, a link."""
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        + prolog
        + b'<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        b' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
        b' xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"'
        b' xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0"'
        b' xmlns:ooo="http://openoffice.org/2004/office"'
        b' xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.3"'
        b' office:mimetype="application/vnd.oasis.opendocument.text">\n'
        b'<office:scripts><office:script script:language="ooo:Basic"><ooo:libraries>'
        b'<ooo:library-embedded ooo:name="Standard"><ooo:module ooo:name="M">'
        b"<ooo:source-code>Sub Main\nMsgBox 1\nEnd Sub</ooo:source-code></ooo:module>"
        b"</ooo:library-embedded></ooo:libraries></office:script></office:scripts>\n"
        b"<office:body><office:text><text:p>Hello "
        b'<text:a xlink:href="' + base.encode() + b'/link">there</text:a></text:p>\n'
        b'<text:p><draw:frame draw:name="p" text:anchor-type="paragraph">'
        b'<draw:image xlink:href="' + base.encode() + b'/hit.png" xlink:type="simple"'
        b' xlink:show="embed" xlink:actuate="onLoad"/></draw:frame></text:p>\n'
        b"</office:text></office:body></office:document>\n"
    )


_FLAT_ODS = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
    b' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
    b' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.3"'
    b' office:mimetype="application/vnd.oasis.opendocument.spreadsheet">'
    b'<office:body><office:spreadsheet><table:table table:name="S"><table:table-row>'
    b'<table:table-cell table:formula="of:=WEBSERVICE(&quot;http://callback.invalid/&quot;)">'
    b"<text:p>x</text:p></table:table-cell></table:table-row></table:table>"
    b"</office:spreadsheet></office:body></office:document>\n"
)


@pytest.mark.parametrize("data", [_flat_odt(), _FLAT_ODS], ids=["fodt", "fods"])
@pytest.mark.parametrize(
    "name", ["letter.fodt", "sheet.fods", "letter.odt", "data.xml", "letter", "a.pdf.xml"]
)
def test_a_flat_opendocument_file_is_not_delivered_as_text(
    tmp_path: Path, data: bytes, name: str
) -> None:
    """LibreOffice opens a flat OpenDocument file by its content under any name but
    .txt (.fodt, .odt, .xml, none), its macros, remote pictures and links with it: no
    engine rebuilds one, so the policy for unsupported types decides (block)."""
    found = detect(data, None, name)
    assert found is not None and found.family == "opendocument", found
    answer, out = _disarm(tmp_path, data, name)
    assert answer["outcome"] == "unsupported", answer
    assert out is None


def test_other_xml_that_only_mentions_the_opendocument_namespace_is_text() -> None:
    for text in (
        b'<?xml version="1.0"?><rss><channel><title>urn:oasis:names:tc:opendocument:'
        b"xmlns:office:1.0</title></channel></rss>\n",
        b'{"ns": "urn:oasis:names:tc:opendocument:xmlns:office:1.0"}\n',
    ):
        found = detect(text, None, None)
        assert found is not None and found.name == "text", text


def test_libreoffice_fetches_the_picture_of_a_flat_opendocument_file_named_xml(
    tmp_path: Path, recorder: Recorder
) -> None:
    """What the test above keeps from the user: LibreOffice opening the file, named
    .xml, fetches its picture."""
    original = tmp_path / "report.xml"
    original.write_bytes(_flat_odt(recorder.base))
    _libreoffice(tmp_path, original, "pdf")
    assert "/hit.png" in recorder.paths, recorder.paths


# -- a prolog longer than detection's preview --------------------------------------------

#: A comment longer than the first 64 KiB detection reads.
_PADDING = b"<!--" + b" padding " * 8_000 + b"-->\n"
_SPREADSHEET = (
    b'<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet"'
    b' xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet"><Worksheet ss:Name="S"><Table>'
    b'<Row><Cell ss:Formula="=1+41"><Data ss:Type="Number">0</Data></Cell>'
    b'<Cell ss:Formula="=WEBSERVICE(&quot;http://callback.invalid/&quot;)">'
    b'<Data ss:Type="String"></Data></Cell></Row></Table></Worksheet></Workbook>\n'
)
_XML_DECLARATION = b'<?xml version="1.0"?>\n'
_EXCEL_PI = b'<?mso-application progid="Excel.Sheet"?>\n'
_SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'

PADDED = {
    "spreadsheet-with-instruction": _XML_DECLARATION + _EXCEL_PI + _PADDING + _SPREADSHEET,
    "spreadsheet": _XML_DECLARATION + _PADDING + _SPREADSHEET,
    "flat-odt": _flat_odt(prolog=_PADDING),
    "svg": _XML_DECLARATION + _PADDING + _SVG,
}


@pytest.mark.parametrize("kind", sorted(PADDED))
@pytest.mark.parametrize("name", ["book.xml", "book.xls", "book.doc", "book", "notes.txt"])
def test_markup_is_told_past_a_prolog_longer_than_the_preview(
    tmp_path: Path, kind: str, name: str
) -> None:
    """The root element that makes XML an Office, OpenDocument or SVG document may
    come after 64 KiB of comments: Excel, Word and LibreOffice read it there all the
    same (LibreOffice computes the padded spreadsheet's formulas, named .xml), so the
    whole file is judged, never text because the preview held only the prolog."""
    data = PADDED[kind]
    assert len(data) > 65536
    answer, _ = _disarm(tmp_path, data, name)
    expected = {"svg": "svg", "flat-odt": "opendocument"}.get(kind, "office_xml")
    assert answer["file_type"]["family"] == expected, answer
    if kind != "svg":
        assert answer["outcome"] == "unsupported", answer


def test_text_with_a_long_comment_first_is_still_text(tmp_path: Path) -> None:
    data = _XML_DECLARATION + _PADDING + b"<rss><channel/></rss>\n"
    answer, out = _disarm(tmp_path, data, "feed.xml")
    assert answer["outcome"] == "unmodified" and answer["file_type"]["name"] == "text"


def test_libreoffice_computes_the_formulas_of_a_padded_spreadsheet_named_xml(
    tmp_path: Path,
) -> None:
    original = tmp_path / "book.xml"
    original.write_bytes(PADDED["spreadsheet"])
    converted = _libreoffice(tmp_path, original, "csv")
    assert converted is not None
    assert converted.read_text().startswith("42,"), converted.read_text()


# -- SYLK ---------------------------------------------------------------------------------

#: A SYLK file: a formula cell (its value cached as 7), a web-service call.
_SYLK = (
    b"ID;PWXL;N;E\r\nC;Y1;X1;K7;E1+41\r\n"
    b'C;Y2;X1;K0;EWEBSERVICE("http://callback.invalid/")\r\nE\r\n'
)


@pytest.mark.parametrize("start", [b"ID;PWXL;N;E", b"ID;P", b"ID;N"])
@pytest.mark.parametrize(
    "name", ["book.xlt", "book.xla", "book.xlw", "book.xml", "book.dat", "book", "book.doc"]
)
def test_sylk_is_never_passed_as_plain_text(tmp_path: Path, start: bytes, name: str) -> None:
    """LibreOffice reads text that starts as SYLK ("ID;P", "ID;N") as SYLK under any
    name but .txt (.xml, .dat, .doc, none), formulas with it; Excel opens its other
    names (.xlt, .xla, .xlw...) as it opens .xls, SYLK included: the file goes to the
    CSV engine, which quotes that first cell (neither reads it as SYLK then)."""
    data = _SYLK.replace(b"ID;PWXL;N;E", start, 1)
    answer, out = _disarm(tmp_path, data, name)
    assert answer["outcome"] == "rebuilt" and answer["file_type"]["name"] == "csv", answer
    assert out is not None and not out.startswith(b"ID")


def test_text_named_as_an_excel_template_is_opened_as_excel_opens_it() -> None:
    """Excel opens text named .xlt as it opens text named .xls (as CSV here)."""
    for name in ("book.xlt", "book.xla", "book.xlw", "book.xlm", "book.xlk"):
        found = detect(b"a\tb\r\n=1+1\tc\r\n", None, name)
        assert found is not None and found.name == "csv", name


def test_text_that_only_starts_with_id_is_still_text() -> None:
    for text in (b"IDENTIFICATION DIVISION.\n", b"ID: 42\nname: x\n", b"id;P\n"):
        found = detect(text, None, "notes.dat")
        assert found is not None and found.name == "text", text


def test_libreoffice_reads_sylk_named_xml_and_not_once_rebuilt(tmp_path: Path) -> None:
    """What the tests above keep from the user: LibreOffice reads the SYLK file,
    named .xml, as a spreadsheet (its cached value 7); the rebuilt file it does not
    (it opens it as a text document, which has no CSV export)."""
    original = tmp_path / "book.xml"
    original.write_bytes(_SYLK)
    converted = _libreoffice(tmp_path, original, "csv")
    assert converted is not None and converted.read_text().startswith("7"), converted
    answer, out = _disarm(tmp_path, _SYLK, "book.xml")
    assert answer["outcome"] == "rebuilt" and out is not None
    converted.unlink()
    original.write_bytes(out)
    converted = _libreoffice(tmp_path, original, "csv")
    assert converted is None or not converted.read_text().startswith("7")


# -- PostScript ---------------------------------------------------------------------------

_POSTSCRIPT = (
    b"%!PS-Adobe-3.0\n/Helvetica findfont 12 scalefont setfont\n"
    b"72 72 moveto (hello) show showpage\n"
)


@pytest.mark.parametrize(
    "data",
    [
        _POSTSCRIPT,
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(x) print\n",
        b"\x04%!\n(x) print\n",
        b"\xc5\xd0\xd3\xc6" + b"\x00" * 28 + _POSTSCRIPT,
    ],
    ids=["ps", "eps", "ctrl-d", "dos-eps"],
)
@pytest.mark.parametrize("name", ["print.ps", "figure.eps", "print", "print.dat", "print.txt"])
def test_postscript_is_never_delivered(tmp_path: Path, data: bytes, name: str) -> None:
    """PostScript is a program: Evince, Okular and other viewers run it in
    Ghostscript to show it, told by its name or, under another, by its "%!". Nothing
    rebuilds it: blocked (as a script by its name, else as a type with no engine)."""
    answer, out = _disarm(tmp_path, data, name)
    assert answer["outcome"] in ("blocked", "unsupported"), answer
    assert out is None


def test_any_file_named_as_postscript_is_blocked(tmp_path: Path) -> None:
    """Text named .ps is run as PostScript whatever it starts with."""
    answer, _ = _disarm(tmp_path, b"(hello) print\n", "print.ps")
    assert answer["outcome"] == "blocked", answer
    found = detect(b"%!PS\n", None, "table.csv")  # (Excel opens a .csv as CSV)
    assert found is not None and found.name == "csv"


# -- XML whose XHTML namespace is written by an entity -----------------------------------


def _entity_xhtml(base: str = CALLBACK) -> bytes:
    """XML whose elements are XHTML only once the DTD's internal entity is expanded:
    the namespace is nowhere in it whole."""
    return (
        b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "http://www.w3.org/1999/">]>\n'
        b'<r><h:script xmlns:h="&a;xhtml">fetch("' + base.encode() + b'/script")</h:script>'
        b'<h:img xmlns:h="&a;xhtml" src="' + base.encode() + b'/hit.png"/></r>\n'
    )


@pytest.mark.parametrize("name", ["data.xml", "data", "notes.txt", "text/xml"])
def test_xml_declaring_entities_is_not_passed_as_text(tmp_path: Path, name: str) -> None:
    """Browsers expand the internal entities of an XML file's DTD, a namespace written
    with them too: Chromium runs the script of the file above (opened as .xml, or
    served as text/xml). Entities may write any markup, so XML declaring them goes
    to the HTML engine, as XML holding XHTML does."""
    answer, out = _disarm(tmp_path, _entity_xhtml(), name)
    assert answer["outcome"] == "rebuilt" and answer["file_type"]["name"] == "html", answer
    assert out is not None and b"<script" not in out and b"callback.invalid/hit" not in out


def test_chromium_runs_the_script_of_xml_whose_namespace_is_an_entity(
    tmp_path: Path, recorder: Recorder
) -> None:
    chromium = require_tool("chromium", "chromium")
    original = tmp_path / "data.xml"
    original.write_bytes(_entity_xhtml(recorder.base))
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
        + ["--virtual-time-budget=3000", "--dump-dom", original.as_uri()],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert "/script" in recorder.paths or "/hit.png" in recorder.paths, recorder.paths


# -- ISO-2022-JP escape sequences inside markup ------------------------------------------

#: ESC "(B" (back to ASCII, which it already is): an ISO-2022-JP decoder drops it.
_SHIFT = b"\x1b(B"


def _iso_2022(markup: bytes) -> bytes:
    return b'<?xml version="1.0" encoding="ISO-2022-JP"?>\n' + markup


_ISO_2022_FILES = {
    "xhtml-namespace": _iso_2022(
        b'<r><h:script xmlns:h="http://www.w3.org/1999/xh' + _SHIFT + b'tml">'
        b'fetch("' + CALLBACK.encode() + b'/hit")</h:script></r>\n'
    ),
    "svg-root": _iso_2022(
        b"<s" + _SHIFT + b'vg xmlns="http://www.w3.org/2000/s' + _SHIFT + b'vg">'
        b'<script>fetch("' + CALLBACK.encode() + b'/hit")</script></svg>\n'
    ),
}


@pytest.mark.parametrize("kind", sorted(_ISO_2022_FILES))
@pytest.mark.parametrize("name", ["data.xml", "data", "notes.txt"])
def test_markup_split_by_iso_2022_escapes_is_not_passed_as_text(
    tmp_path: Path, kind: str, name: str
) -> None:
    """A browser decodes XML in the charset its declaration names: ISO-2022-JP drops
    its escape sequences, so "xh<ESC>(Btml" is the XHTML namespace and "<s<ESC>(Bvg"
    an SVG root to Chromium, which ran their scripts; detection reads them so too."""
    data = _ISO_2022_FILES[kind]
    answer, out = _disarm(tmp_path, data, name)
    assert answer["outcome"] == "rebuilt", answer
    assert answer["file_type"]["name"] in ("html", "svg"), answer
    assert out is not None and b"script" not in out.replace(b"script-src", b"")


def test_chromium_reads_the_namespace_through_iso_2022_escapes(
    tmp_path: Path, recorder: Recorder
) -> None:
    chromium = require_tool("chromium", "chromium")
    original = tmp_path / "data.xml"
    original.write_bytes(
        _ISO_2022_FILES["xhtml-namespace"].replace(CALLBACK.encode(), recorder.base.encode())
    )
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
        + ["--virtual-time-budget=3000", "--dump-dom", original.as_uri()],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert "/hit" in recorder.paths, recorder.paths
