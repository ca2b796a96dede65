"""Throughput of the gicap-pdf engine next to pikepdf's plain open + save.

The corpus is generated with pikepdf and Pillow:

* text: 40-page documents, compressed content and object streams, an outline and
  links between pages (removed by the default policy: ``internal_hyperlinks``);
* clean text: the same documents without links or outline (rewritten: they have a
  cross-reference stream);
* text + metadata: clean text as producers write it, with an information dictionary
  and XMP metadata (removed by the default policy: ``metadata``);
* scans: pages that are photo-like JPEGs with EXIF (stripped by the default policy);
* active: the test corpus of tests/plugins/test_pdf.py (scripts, actions, embedded
  files, forms, links, metadata), one file per kind.

"cdr" is gicap's own job function (detection and the engine, default policy) in this
process; "plain" is ``pikepdf.open`` + ``save`` of the same file. Both run side by
side, best of ``rounds``.

    python -m bench.engine_pdf
"""

from __future__ import annotations

import io
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pikepdf
from pikepdf import Array, Dictionary, Name, String
from PIL import Image, ImageDraw, ImageFilter

from bench.engines import measure
from gicap.cdr import job
from gicap.cdr.policy import build_profile

WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()


def _save(pdf: pikepdf.Pdf, path: Path) -> Path:
    pdf.save(path, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return path


def _document(rng: random.Random, pages: int, links: bool) -> pikepdf.Pdf:
    pdf = pikepdf.new()
    fonts = Dictionary(
        F1=pdf.make_indirect(
            Dictionary(Type=Name.Font, Subtype=Name.Type1, BaseFont=Name.Helvetica)
        ),
        F2=pdf.make_indirect(
            Dictionary(Type=Name.Font, Subtype=Name.Type1, BaseFont=Name("/Times-Roman"))
        ),
    )
    for n in range(pages):
        pdf.add_blank_page(page_size=(595, 842))
        lines = [b"BT /F2 10 Tf 12 TL 56 780 Td"]
        for _ in range(60):
            text = " ".join(rng.choice(WORDS) for _ in range(14))
            lines.append(b"(%s) '" % text.encode())
        lines.append(b"ET BT /F1 16 Tf 56 800 Td (Section %d) Tj ET" % (n + 1))
        for _ in range(20):  # some vector graphics
            x, y = rng.randrange(50, 500), rng.randrange(50, 750)
            lines.append(b"%d %d 40 20 re S" % (x, y))
        page = pdf.pages[-1].obj
        page.Resources = Dictionary(Font=fonts)
        page.Contents = pdf.make_stream(b"\n".join(lines))
    if links:
        outlines = pdf.make_indirect(Dictionary(Type=Name.Outlines))
        items = []
        for n, page in enumerate(pdf.pages):
            item = pdf.make_indirect(
                Dictionary(
                    Title=String(f"Section {n + 1}"), Parent=outlines, Dest=[page.obj, Name.Fit]
                )
            )
            items.append(item)
            target = pdf.pages[(n + 1) % pages].obj
            page.obj.Annots = Array(
                [
                    pdf.make_indirect(
                        Dictionary(
                            Type=Name.Annot,
                            Subtype=Name.Link,
                            Rect=[56, 40 + 20 * k, 200, 55 + 20 * k],
                            A=Dictionary(S=Name.GoTo, D=[target, Name.Fit]),
                        )
                    )
                    for k in range(5)
                ]
            )
        for a, b in zip(items, items[1:], strict=False):
            a.Next, b.Prev = b, a
        outlines.First, outlines.Last, outlines.Count = items[0], items[-1], len(items)
        pdf.Root.Outlines = outlines
    return pdf


def _picture(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(10, max(11, size[0] // 5))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in "rgb"))
    im = im.filter(ImageFilter.GaussianBlur(2))
    return Image.blend(im, Image.effect_noise(size, 12).convert("RGB"), 0.1)


def _scans(rng: random.Random, work: Path) -> list[Path]:
    exif = Image.Exif()
    exif[0x010F] = "Scanner"
    paths = []
    for i in range(3):
        pdf = pikepdf.new()
        for _ in range(4):
            buf = io.BytesIO()
            _picture(rng, (1240, 1754)).save(buf, "JPEG", quality=85, exif=exif)
            image = pdf.make_stream(
                buf.getvalue(),
                Type=Name.XObject,
                Subtype=Name.Image,
                Width=1240,
                Height=1754,
                ColorSpace=Name.DeviceRGB,
                BitsPerComponent=8,
                Filter=Name.DCTDecode,
            )
            pdf.add_blank_page(page_size=(595, 842))
            page = pdf.pages[-1].obj
            page.Resources = Dictionary(XObject=Dictionary(Im0=image))
            page.Contents = pdf.make_stream(b"q 595 0 0 842 0 0 cm /Im0 Do Q")
        paths.append(_save(pdf, work / f"scan{i}.pdf"))
    return paths


def _texts(links: bool, metadata: bool = False) -> Callable[[random.Random, Path], list[Path]]:
    def make(rng: random.Random, work: Path) -> list[Path]:
        tag = "linked" if links else "meta" if metadata else "clean"
        paths = []
        for i in range(6):
            pdf = _document(rng, 40, links)
            if metadata:
                pdf.docinfo["/Producer"] = "LibreOffice 7.4"
                pdf.docinfo["/Creator"] = "Writer"
                with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
                    meta["dc:title"] = f"Report {i}"
            paths.append(_save(pdf, work / f"{tag}{i}.pdf"))
        return paths

    return make


def _active(rng: random.Random, work: Path) -> list[Path]:
    from tests.plugins.test_pdf import RISKY

    paths = []
    for name, (builder, _, _) in sorted(RISKY.items()):
        path = work / f"{name}.pdf"
        path.write_bytes(builder())
        paths.append(path)
    return paths


def _plain(source: Path, dest: Path) -> None:
    with pikepdf.open(source) as pdf:
        pdf.save(dest)


def run(rounds: int = 5) -> list[dict[str, Any]]:
    job.init_worker()  # set up as a CDR worker process is (plugins loaded, gc frozen)
    rng = random.Random(42)
    profile = build_profile("default", {}).as_dict()
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="gicap-bench-pdf-"))
    try:
        corpora = (
            ("text + links", _texts(True)),
            ("clean text", _texts(False)),
            ("text + metadata", _texts(False, metadata=True)),
            ("jpeg scans + exif", _scans),
            ("active content", _active),
        )
        for corpus, make in corpora:
            rows.append(
                measure(
                    "pdf",
                    corpus,
                    make(rng, work),
                    work,
                    _plain,
                    rounds=rounds,
                    profile=profile,
                    outcomes=("rebuilt", "unmodified"),
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
