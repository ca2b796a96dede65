"""Throughput of the gicap-media engines next to the plain rewrite of each library.

The corpus is generated: photos-like images in every format (with EXIF, ICC, text
chunks, an appended zip; animated GIF and WebP), SVG drawings with scripts and links,
HTML pages with scripts and event handlers. "cdr" is gicap's own job function
(detection and the engine) in this process; "plain" is the least a rebuild does with
the same library:

* images: Pillow ``open`` + ``load`` + ``save`` in the same format (all frames);
* svg: lxml ``fromstring`` + ``tostring``;
* html: ``nh3.clean`` with its default allowlist.

Both run side by side in one process, best of ``rounds``.

    python -m bench.engine_media
"""

from __future__ import annotations

import io
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nh3
from lxml import etree
from PIL import Image, ImageCms, ImageDraw, ImageFilter, PngImagePlugin

from bench.engines import measure
from gicap.cdr import job
from gicap.cdr.policy import build_profile

# --------------------------------------------------------------------------- corpus


def _picture(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Something photo-like: gradients, shapes and a little noise (compresses like a
    photo, unlike pure noise or flat colour)."""
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        r = rng.randrange(10, max(11, size[0] // 5))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise(size, 12).convert("RGB")
    return Image.blend(im, noise, 0.1)


def _images(rng: random.Random, work: Path) -> list[Path]:
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    exif[0x0131] = "bench"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    appended = b"PK\x03\x04" + bytes(2000)
    paths: list[Path] = []

    def add(name: str, data: bytes) -> None:
        path = work / name
        path.write_bytes(data + appended)
        paths.append(path)

    for i in range(3):
        pic = _picture(rng, (1600, 1200))
        buf = io.BytesIO()
        pic.save(buf, "JPEG", quality=90, exif=exif, icc_profile=icc, comment=b"bench")
        add(f"photo{i}.jpg", buf.getvalue())
        text = PngImagePlugin.PngInfo()
        text.add_text("Comment", "bench")
        buf = io.BytesIO()
        pic.resize((800, 600)).save(buf, "PNG", pnginfo=text, exif=exif, icc_profile=icc)
        add(f"pic{i}.png", buf.getvalue())
        buf = io.BytesIO()
        pic.resize((800, 600)).save(buf, "WEBP", quality=85, exif=exif, icc_profile=icc)
        add(f"pic{i}.webp", buf.getvalue())
        buf = io.BytesIO()
        pic.resize((800, 600)).save(buf, "TIFF", compression="tiff_lzw", icc_profile=icc)
        paths.append(work / f"pic{i}.tiff")
        paths[-1].write_bytes(buf.getvalue())
        buf = io.BytesIO()
        pic.resize((640, 480)).save(buf, "BMP")
        paths.append(work / f"pic{i}.bmp")
        paths[-1].write_bytes(buf.getvalue())
        frames = [pic.resize((240, 180)).rotate(a * 10).quantize(64) for a in range(12)]
        buf = io.BytesIO()
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
        add(f"anim{i}.gif", buf.getvalue())
        frames = [pic.resize((320, 240)).rotate(a * 10) for a in range(8)]
        buf = io.BytesIO()
        frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=80)
        add(f"anim{i}.webp", buf.getvalue())
    return paths


def _svgs(rng: random.Random, work: Path) -> list[Path]:
    paths = []
    for i in range(6):
        parts = [
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
            ' width="800" height="600" onload="alert(1)">',
            "<script>alert(2)</script>",
            '<defs><linearGradient id="g"><stop offset="0" stop-color="red"/>'
            '<stop offset="1" stop-color="blue"/></linearGradient></defs>',
        ]
        for n in range(4000):
            x, y = rng.randrange(800), rng.randrange(600)
            kind = n % 4
            if kind == 0:
                parts.append(f'<rect x="{x}" y="{y}" width="20" height="10" fill="url(#g)"/>')
            elif kind == 1:
                parts.append(f'<circle cx="{x}" cy="{y}" r="5" style="fill:#{n % 4096:03x}"/>')
            elif kind == 2:
                parts.append(f'<path d="M{x},{y} l10,10 l-5,3 z" stroke="black"/>')
            else:
                parts.append(
                    f'<a xlink:href="https://example.com/{n}"><text x="{x}" y="{y}"'
                    f' onclick="go({n})">label {n}</text></a>'
                )
        parts.append("</svg>")
        path = work / f"drawing{i}.svg"
        path.write_text("\n".join(parts))
        paths.append(path)
    return paths


def _htmls(rng: random.Random, work: Path) -> list[Path]:
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "proxy", "page", "content"]
    paths = []
    for i in range(6):
        parts = [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Page</title>",
            "<script src='https://cdn.example/app.js'></script><style>p{color:red}</style>",
            "</head><body onload='init()'>",
        ]
        for n in range(3000):
            text = " ".join(rng.choice(words) for _ in range(20))
            if n % 10 == 0:
                parts.append(f"<h2 id='s{n}'>Section {n}</h2>")
            if n % 25 == 0:
                parts.append(f"<script>track({n})</script><iframe src='https://ads/{n}'></iframe>")
            parts.append(
                f"<p class='c{n % 5}' onclick='x({n})'>{text} "
                f"<a href='https://example.com/{n}'>link</a> <b>bold</b></p>"
            )
        parts.append("</body></html>")
        path = work / f"page{i}.html"
        path.write_text("\n".join(parts))
        paths.append(path)
    return paths


# ------------------------------------------------------------------------ plain ops


def _plain_image(source: Path, dest: Path) -> None:
    with Image.open(source) as im:
        im.load()
        frames = getattr(im, "n_frames", 1)
        im.save(dest, format=im.format, save_all=frames > 1)


def _plain_svg(source: Path, dest: Path) -> None:
    dest.write_bytes(etree.tostring(etree.fromstring(source.read_bytes())))


def _plain_html(source: Path, dest: Path) -> None:
    dest.write_text(nh3.clean(source.read_text()))


def run(rounds: int = 2) -> list[dict[str, Any]]:
    job.init_worker()  # set up as a CDR worker process is (plugins loaded, gc frozen)
    rng = random.Random(42)
    profile = build_profile("default", {}).as_dict()
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="gicap-bench-media-"))
    try:
        corpora = (
            ("image", "jpeg/png/gif/webp/tiff/bmp", _images, _plain_image),
            ("svg", "drawings with scripts", _svgs, _plain_svg),
            ("html", "pages with scripts", _htmls, _plain_html),
        )
        for family, corpus, make, plain in corpora:
            rows.append(
                measure(
                    family,
                    corpus,
                    make(rng, work),
                    work,
                    plain,
                    rounds=rounds,
                    profile=profile,
                    declared=lambda path: path.name,
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
