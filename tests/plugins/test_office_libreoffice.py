"""Rebuilt Office documents open in a real office suite: LibreOffice (headless) loads
every file the engine writes and shows the same text as the original (less what the
policy removed). LibreOffice refuses a package with malformed XML or without its
content types ("source file could not be loaded"), so a rebuild that broke the
package fails here. Skipped without ``soffice``; a failure with
``GICAP_REQUIRE_INTEROP=1`` (CI installs LibreOffice)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.plugins.test_office import (
    build_docx,
    build_pptx,
    build_rtf,
    build_xlsx,
    disarm,
    switches,
)
from tests.support import require_tool

#: LibreOffice's export filter per document kind (presentations go through PDF)
FILTERS = {"docx": "txt:Text", "xlsx": "csv", "pptx": "pdf", "rtf": "txt:Text"}
KIND = {
    "docx": "docx",
    "docm": "docx",
    "xlsx": "xlsx",
    "xlsm": "xlsx",
    "pptx": "pptx",
    "pptm": "pptx",
    "rtf": "rtf",
}
SOURCES = {
    "clean.docx": lambda: build_docx(False),
    "risky.docm": lambda: build_docx(True),
    "clean.xlsx": lambda: build_xlsx(False),
    "risky.xlsm": lambda: build_xlsx(True),
    "clean.pptx": lambda: build_pptx(False),
    "risky.pptm": lambda: build_pptx(True),
    "clean.rtf": lambda: build_rtf(False),
    "risky.rtf": lambda: build_rtf(True),
}


def _tool(name: str) -> str:
    return require_tool(name, "libreoffice-*-nogui, poppler-utils")


def _text(converted: Path) -> list[str]:
    if converted.suffix == ".pdf":
        out = subprocess.run(
            [_tool("pdftotext"), "-layout", str(converted), "-"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
    else:
        out = converted.read_text(encoding="utf-8-sig", errors="replace")
    return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str] | None]:
    """Text LibreOffice reads from each original and each rebuilt file (``None``:
    LibreOffice could not load it)."""
    soffice = _tool("soffice")
    base = tmp_path_factory.mktemp("libreoffice")
    by_kind: dict[str, list[Path]] = {kind: [] for kind in FILTERS}
    for name, build in SOURCES.items():
        original = base / name
        original.write_bytes(build())
        result, dest = disarm(original, base, switches("sanitise"))
        assert result.outcome == "rebuilt", (name, result)
        kind = KIND[original.suffix[1:]]
        # LibreOffice names its output after the input: keep the two apart
        for tag, path in (("original", original), ("rebuilt", dest)):
            target = base / kind / f"{tag}-{original.stem}.{kind}"
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(path, target)
            by_kind[kind].append(target)
    texts: dict[str, list[str] | None] = {}
    profile = (base / "profile").as_uri()
    for kind, paths in by_kind.items():
        out = base / f"{kind}-out"
        subprocess.run(
            [soffice, f"-env:UserInstallation={profile}", "--headless", "--norestore"]
            + ["--convert-to", FILTERS[kind], "--outdir", str(out)]
            + [str(p) for p in paths],
            capture_output=True,
            timeout=300,
            check=False,
        )
        extension = FILTERS[kind].split(":")[0]
        for path in paths:
            result = out / f"{path.stem}.{extension}"
            texts[f"{path.stem}.{kind}"] = _text(result) if result.exists() else None
    return texts


#: What LibreOffice shows of the risky files that the rebuild must no longer show.
REMOVED = {
    "risky.docm": ["kept inserteddeleted"],  # the tracked deletion is accepted
    "risky.xlsm": ["Err:509"],  # the DDE formula (LibreOffice cannot run it)
    "risky.rtf": ["run me", "kept insertedgone end"],  # MACROBUTTON, a tracked deletion
    "risky.pptm": [],
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_rebuilt_file_loads_in_libreoffice(converted: dict, name: str) -> None:
    stem, ext = name.rsplit(".", 1)
    kind = KIND[ext]
    original = converted[f"original-{stem}.{kind}"]
    rebuilt = converted[f"rebuilt-{stem}.{kind}"]
    assert original is not None, f"LibreOffice cannot load the test file {name}"
    assert rebuilt is not None, f"LibreOffice cannot load the rebuilt {name}"
    if stem == "clean":
        assert rebuilt == original
        return
    # the document's own text is all there, whatever the policy removed around it
    clean = converted[f"original-clean.{kind}"]
    assert clean is not None
    missing = [line for line in clean if line not in rebuilt]
    assert not missing, (missing, rebuilt)
    for gone in REMOVED[name]:
        assert any(gone in line for line in original), (gone, original)
        assert not any(gone in line for line in rebuilt), (gone, rebuilt)


def _convert(tmp_path: Path, files: list[Path], to: str) -> Path:
    """LibreOffice converts ``files`` to ``to`` (a filter or extension) in a folder of
    its own, which is returned (a file it cannot load is missing there)."""
    out = tmp_path / to.split(":")[0]
    subprocess.run(
        [_tool("soffice"), f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}"]
        + ["--headless", "--norestore", "--convert-to", to, "--outdir", str(out)]
        + [str(path) for path in files],
        capture_output=True,
        timeout=300,
        check=False,
    )
    return out


def _written(tmp_path: Path, sources: dict[str, str], to: str) -> Path:
    """The files LibreOffice writes (``to``) from flat ODF ``sources`` (name: text)."""
    folder = tmp_path / "sources"
    folder.mkdir()
    for name, text in sources.items():
        (folder / name).write_text(text)
    return _convert(tmp_path, [folder / name for name in sources], to)


def _blocked_and_delivered(
    tmp_path: Path, risky: Path, clean: Path, found: list[tuple[str, str]]
) -> None:
    """``risky`` is blocked for what ``found`` lists, ``clean`` is delivered."""
    result, _ = disarm(risky, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked", result
    assert [(a.switch, a.detail) for a in result.actions] == found
    result, _ = disarm(clean, tmp_path, switches("sanitise"))
    assert result.outcome == "unmodified", result


def _photo_docx() -> bytes:
    """A report with a JPEG photo (EXIF) and a PNG, as the policy re-encodes them."""
    import io

    import docx
    from docx.shared import Inches
    from PIL import Image, ImageDraw

    doc = docx.Document()
    doc.add_paragraph("Pictures follow.")
    for fmt, size in (("JPEG", (640, 480)), ("PNG", (300, 200))):
        im = Image.linear_gradient("L").resize(size).convert("RGB")
        ImageDraw.Draw(im).ellipse([20, 20, size[0] // 2, size[1] // 2], fill=(200, 30, 30))
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x010F] = "Camera"
        im.save(buf, fmt, exif=exif) if fmt == "JPEG" else im.save(buf, fmt)
        doc.add_picture(io.BytesIO(buf.getvalue()), width=Inches(3))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _pdf_images(pdf: Path) -> list[tuple[str, str]]:
    """(width, height) of every image on the pages, as poppler's pdfimages lists them."""
    out = subprocess.run(
        [_tool("pdfimages"), "-list", str(pdf)], capture_output=True, check=True, timeout=60
    ).stdout.decode()
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    return [(row[3], row[4]) for row in rows]


def test_rebuilt_pictures_show_in_libreoffice(tmp_path: Path) -> None:
    original = tmp_path / "photos.docx"
    original.write_bytes(_photo_docx())
    result, dest = disarm(original, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    assert any("re-encoded" in a.detail or a.switch == "embedded_images" for a in result.actions)
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copyfile(original, docs / "original.docx")
    shutil.copyfile(dest, docs / "rebuilt.docx")
    pdf = _convert(tmp_path, [docs / "original.docx", docs / "rebuilt.docx"], "pdf")
    before = _pdf_images(pdf / "original.pdf")
    after = _pdf_images(pdf / "rebuilt.pdf")
    assert before == [("640", "480"), ("300", "200")]
    assert after == before


def _presentation(event: str) -> str:
    """A flat ODF presentation: one shape whose click does ``event``."""
    ns = {
        "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
        "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
        "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
        "presentation": "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0",
        "svg": "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0",
        "xlink": "http://www.w3.org/1999/xlink",
        "script": "urn:oasis:names:tc:opendocument:xmlns:script:1.0",
        "dom": "http://www.w3.org/2001/xml-events",
    }
    declarations = " ".join(f'xmlns:{p}="{uri}"' for p, uri in ns.items())
    return (
        f'<?xml version="1.0"?><office:document {declarations} office:version="1.2" '
        'office:mimetype="application/vnd.oasis.opendocument.presentation"><office:body>'
        '<office:presentation><draw:page draw:name="p1"><draw:custom-shape svg:x="2cm" '
        'svg:y="2cm" svg:width="8cm" svg:height="3cm"><text:p>Click me</text:p>'
        '<office:event-listeners><presentation:event-listener script:event-name="dom:click" '
        f'{event} xlink:type="simple"/></office:event-listeners>'
        '<draw:enhanced-geometry draw:type="rectangle"/></draw:custom-shape></draw:page>'
        "</office:presentation></office:body></office:document>"
    )


def test_a_ppt_shape_that_runs_a_program_on_a_click_is_blocked(tmp_path: Path) -> None:
    """LibreOffice writes a shape's "run program" click action into a .ppt (and runs
    the program on a click in a slide show); the file is blocked. A shape linked to a
    web page (a hyperlink to click, not inspected in legacy files) is delivered."""
    events = {
        "program": 'presentation:action="execute" xlink:href="file:///usr/bin/xcalc"',
        "web": 'presentation:action="show" xlink:href="https://example.com/"',
    }
    ppt = _written(tmp_path, {f"{n}.fodp": _presentation(e) for n, e in events.items()}, "ppt")
    found = [("external_hyperlinks", "run-program action")]
    _blocked_and_delivered(tmp_path, ppt / "program.ppt", ppt / "web.ppt", found)


def test_an_xls_with_a_web_query_is_blocked(tmp_path: Path) -> None:
    """LibreOffice writes a cell range fed by a web page (a web query: Excel refreshes
    it from the URL) into an .xls as query table records; the file is blocked. The same
    sheet without the query is delivered."""
    ns = (
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:xlink="http://www.w3.org/1999/xlink"'
    )
    source = (
        '<table:cell-range-source table:name="HTML_all" xlink:href="http://127.0.0.1:9/q.html" '
        'xlink:type="simple" table:filter-name="calc_HTML_WebQuery" table:filter-options="" '
        'table:last-column-spanned="1" table:last-row-spanned="1"/>'
    )
    sheets = {
        f"{name}.fods": f'<?xml version="1.0"?><office:document {ns} office:version="1.2" '
        'office:mimetype="application/vnd.oasis.opendocument.spreadsheet"><office:body>'
        '<office:spreadsheet><table:table table:name="S"><table:table-row>'
        f"<table:table-cell>{cell}<text:p>old</text:p></table:table-cell>"
        "</table:table-row></table:table></office:spreadsheet></office:body>"
        "</office:document>"
        for name, cell in (("query", source), ("plain", ""))
    }
    xls = _written(tmp_path, sheets, "xls")
    # (Qsi and DbOrParamQry: the query table and its query)
    found = [("dynamic_data_exchange", "data query or connection ×2")]
    _blocked_and_delivered(tmp_path, xls / "query.xls", xls / "plain.xls", found)
