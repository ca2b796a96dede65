"""Throughput of the gicap-office engine next to the Office libraries' plain open + save.

The corpus is generated with python-docx, openpyxl, python-pptx and Pillow:

* docx text: long reports (paragraphs, a table) — metadata and the thumbnail rebuilt;
* docx photos: reports with photo-like JPEGs (each re-encoded by the default policy);
* xlsx cells: workbooks of numbers, text and formulas;
* pptx slides: decks with a picture per slide;
* active content: the risky .docm/.xlsm/.pptm of tests/plugins/test_office.py;
* rtf: text with pictures (re-encoded) and fields;
* legacy: the .doc/.xls/.ppt files of the tests, and three of a working document's
  size (inspected, never rebuilt).

"cdr" is gicap's own job function (detection and the engine, default policy) in this
process; "plain" is python-docx ``Document().save()``, openpyxl ``load_workbook().save()``,
python-pptx ``Presentation().save()`` of the same file; for the macro-enabled files
python-docx and openpyxl refuse, python-docx's ``Package`` open + save (what
``Document()`` opens and saves with, without its check of the main part's type; a bare
zip copy, which parses nothing, would be no rewrite at all). For RTF, oletools' RTF
parser with the parsed bytes written out (oletools has no RTF writer); for legacy
files, olefile reading every stream (those are never rebuilt, so neither side writes).
Best of ``rounds``.

    python -m bench.engine_office
"""

from __future__ import annotations

import io
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter

from bench.engines import measure
from gicap.cdr import job
from gicap.cdr.policy import build_profile

WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()


def _sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _photo(rng: random.Random, size: tuple[int, int]) -> bytes:
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(10, max(11, size[0] // 5))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in "rgb"))
    im = Image.blend(
        im.filter(ImageFilter.GaussianBlur(2)), Image.effect_noise(size, 12).convert("RGB"), 0.1
    )
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _docx(photos: int) -> Callable[[random.Random, Path], list[Path]]:
    def make(rng: random.Random, work: Path) -> list[Path]:
        import docx
        from docx.shared import Inches

        paths = []
        for i in range(4):
            doc = docx.Document()
            doc.core_properties.author = "Bench Author"
            for n in range(400 if not photos else 60):
                if n % 40 == 0:
                    doc.add_heading(f"Section {n // 40 + 1}", 1)
                doc.add_paragraph(_sentence(rng, 40))
            table = doc.add_table(rows=30, cols=5)
            for cell in table._cells:
                cell.text = _sentence(rng, 3)
            for _ in range(photos):
                doc.add_picture(io.BytesIO(_photo(rng, (1600, 1200))), width=Inches(5))
            path = work / f"{'photos' if photos else 'text'}{i}.docx"
            doc.save(path)
            paths.append(path)
        return paths

    return make


def _xlsx(rng: random.Random, work: Path) -> list[Path]:
    import openpyxl

    paths = []
    for i in range(3):
        wb = openpyxl.Workbook()
        ws = wb.active
        for r in range(1, 3001):
            ws.append([r, rng.random(), _sentence(rng, 3), rng.randrange(1000), f"=A{r}*B{r}"])
        path = work / f"cells{i}.xlsx"
        wb.save(path)
        paths.append(path)
    return paths


def _pptx(rng: random.Random, work: Path) -> list[Path]:
    import pptx
    from pptx.util import Inches

    paths = []
    for i in range(3):
        prs = pptx.Presentation()
        for n in range(20):
            slide = prs.slides.add_slide(prs.slide_layouts[5])
            slide.shapes.title.text = f"Slide {n + 1}"
            box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(8), Inches(2))
            box.text_frame.text = _sentence(rng, 30)
            slide.shapes.add_picture(io.BytesIO(_photo(rng, (800, 600))), Inches(1), Inches(4))
        path = work / f"deck{i}.pptx"
        prs.save(path)
        paths.append(path)
    return paths


def _active(rng: random.Random, work: Path) -> list[Path]:
    from tests.plugins import test_office

    paths = []
    for name, data in (
        ("risky.docm", test_office.build_docx(True)),
        ("risky.xlsm", test_office.build_xlsx(True)),
        ("risky.pptm", test_office.build_pptx(True)),
    ):
        path = work / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def _rtf(rng: random.Random, work: Path) -> list[Path]:
    paths = []
    for i in range(4):
        parts = [r"{\rtf1\ansi\deff0{\fonttbl{\f0 Arial;}}{\info{\author Bench}}" "\n"]
        for n in range(300):
            parts.append(rf"\pard {_sentence(rng, 40)}\par" "\n")
            if n % 100 == 0:
                hexdata = _photo(rng, (800, 600)).hex()
                parts.append(r"{\pict\jpegblip\picw800\pich600 " + hexdata + "}\\par\n")
                parts.append(r"{\field{\*\fldinst PAGE}{\fldrslt 1}}\par" "\n")
        parts.append("}")
        path = work / f"text{i}.rtf"
        path.write_bytes("".join(parts).encode())
        paths.append(path)
    return paths


def _legacy(rng: random.Random, work: Path) -> list[Path]:
    from tests.plugins import test_office, test_office_legacy

    files = {**test_office.LEGACY, **test_office_legacy.CASES}
    paths = []
    for name, (streams, _) in sorted(files.items()):
        path = work / name
        path.write_bytes(test_office.make_ole(streams))
        paths.append(path)
    return paths


def _legacy_documents(rng: random.Random, work: Path) -> list[Path]:
    """Legacy files of a working document's size (the tests' files are a few KiB,
    where the per-file costs of detection and the hooks dominate): a .doc of 180 KB of
    text with 300 KB of picture data, an .xls of 2,000 rows of text, numbers and a
    formula (as Excel writes them), a .ppt of 300 slides of text with 300 KB of
    pictures."""
    import struct

    from tests.plugins import test_office, test_office_legacy

    text = " ".join(_sentence(rng) for _ in range(2200)).encode()
    pictures = _photo(rng, (1200, 900)) * 2
    biff = test_office_legacy.biff

    def sheet_row(row: int) -> bytes:
        """A row as Excel writes it: text (LabelSst), numbers (RK, Number, MulRk) and
        a formula (=A1*2: PtgRef, PtgInt, PtgMul)."""
        rgce = struct.pack("<BHHBHB", 0x24, row, 0xC000, 0x1E, 2, 0x05)
        formula = struct.pack("<HHHdHI", row, 5, 0, 2.0 * row, 0, 0) + struct.pack("<H", 9)
        mulrk = struct.pack("<HH", row, 6)
        mulrk += b"".join(struct.pack("<HI", 0, (n << 2) | 2) for n in range(4))
        return (
            biff(0x00FD, struct.pack("<HHHI", row, 0, 0, row % 500))  # LabelSst
            + biff(0x027E, struct.pack("<HHHI", row, 1, 0, (row << 2) | 2))  # RK
            + biff(0x0203, struct.pack("<HHHd", row, 2, 0, rng.random()))  # Number
            + biff(0x0203, struct.pack("<HHHd", row, 3, 0, rng.random()))
            + biff(0x0201, struct.pack("<HHH", row, 4, 0))  # Blank
            + biff(0x0006, formula + rgce)  # Formula
            + biff(0x00BD, mulrk + struct.pack("<H", 9))  # MulRk
        )

    cells = b""
    for block in range(0, 2000, 32):  # row blocks: Row records, the cells, a DBCell
        rows = range(block, min(block + 32, 2000))
        cells += b"".join(
            biff(0x0208, struct.pack("<HHHHHHI", r, 0, 10, 0x12C, 0, 0, 0x100)) for r in rows
        )
        cells += b"".join(sheet_row(r) for r in rows)
        cells += biff(0x00D7, struct.pack("<I", 0) + b"\x00\x00" * len(rows))  # DBCell

    def atom(rtype: int, body: bytes) -> bytes:
        return struct.pack("<HHI", 0, rtype, len(body)) + body

    def container(rtype: int, body: bytes) -> bytes:
        return struct.pack("<HHI", 0x000F, rtype, len(body)) + body

    slides = b"".join(
        container(
            0x03EE,  # Slide
            atom(0x03EF, bytes(24))  # SlideAtom
            + container(
                0x0FF0,  # SlideListWithText-like text holder
                atom(0x0F9F, struct.pack("<I", 1))  # TextHeaderAtom
                + atom(0x0FA0, _sentence(rng, 12).encode("utf-16-le"))  # TextCharsAtom
                + atom(0x0FA1, bytes(20)),  # StyleTextPropAtom
            ),
        )
        for _ in range(300)
    )
    files = {
        "report.doc": {**test_office.word_doc(text), "Data": pictures},
        "numbers.xls": test_office_legacy.workbook(b"", cells),
        "slides.ppt": {**test_office._ppt(slides), "Pictures": pictures},
    }
    paths = []
    for name, streams in files.items():
        path = work / name
        path.write_bytes(test_office.make_ole(streams))
        paths.append(path)
    return paths


def _plain(source: Path, dest: Path) -> None:
    suffix = source.suffix
    if suffix == ".docx":
        import docx

        docx.Document(str(source)).save(dest)
    elif suffix == ".xlsx":
        import openpyxl

        openpyxl.load_workbook(source).save(dest)
    elif suffix == ".pptx":
        import pptx

        pptx.Presentation(str(source)).save(dest)
    elif suffix in (".doc", ".xls", ".ppt"):
        import olefile

        with olefile.OleFileIO(str(source)) as ole:
            for entry in ole.listdir():
                ole.openstream(entry).read()
    elif suffix == ".rtf":
        from oletools import rtfobj

        # oletools reads RTF but writes none: the plain rewrite writes the bytes it
        # parsed, as the CDR side writes its rebuilt document
        data = source.read_bytes()
        rtfobj.RtfObjParser(data).parse()
        dest.write_bytes(data)
    else:
        # The macro-enabled files: python-docx's Document() refuses them by their main
        # part's content type, and openpyxl a workbook with a dangling relationship;
        # python-docx's Package (what Document() opens and saves with) opens and saves
        # any OPC package, its XML parts parsed and written by lxml.
        from docx.package import Package

        Package.open(str(source)).save(str(dest))


def run(rounds: int = 3) -> list[dict[str, Any]]:
    job.init_worker()  # set up as a CDR worker process is (plugins loaded, gc frozen)
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # oletools' pyparsing use
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="gicap-bench-office-"))
    try:
        corpora: tuple[tuple[str, str, Callable[[random.Random, Path], list[Path]], dict], ...] = (
            ("office", "docx text", _docx(0), {}),
            ("office", "docx photos", _docx(4), {}),
            # the same, pictures allowed: what the re-encoding costs
            ("office", "docx photos, img kept", _docx(4), {"embedded_images": "allow"}),
            ("office", "xlsx cells", _xlsx, {}),
            ("office", "pptx slides", _pptx, {}),
            ("office", "active content", _active, {}),
            ("rtf", "rtf text+pictures", _rtf, {}),
            ("legacy", "doc/xls/ppt (tests)", _legacy, {}),
            ("legacy", "doc/xls/ppt documents", _legacy_documents, {}),
        )
        for family, corpus, make, office in corpora:
            profile = build_profile("default", {"office": office}).as_dict()
            rows.append(
                measure(
                    family,
                    corpus,
                    make(random.Random(42), work),
                    work,
                    _plain,
                    rounds=rounds,
                    profile=profile,
                    outcomes=("rebuilt", "unmodified", "blocked"),
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    from bench.engines import print_table

    print_table(run(), [])


if __name__ == "__main__":
    main()
