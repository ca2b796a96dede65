"""Re-encoding of pictures in Office documents, checked with Pillow on the output:
PNG pixels unchanged whatever the zlib level, a picture stored twice in one document
rebuilt in each place, RTF picture hex split over lines and spaces decoded, and the
RTF tokenizer's handling of ``\\'`` escapes."""

from __future__ import annotations

import io
import random
import re
import zipfile
from pathlib import Path

import gicap_office
from gicap_office import _images
from PIL import Image, ImageChops, ImageDraw, ImageStat

from tests.plugins.test_office import TRAILER, disarm, png, rezip, switches


def _pixels_equal(a: bytes, b: bytes) -> bool:
    with Image.open(io.BytesIO(a)) as ia, Image.open(io.BytesIO(b)) as ib:
        if ia.size != ib.size:
            return False
        return ImageChops.difference(ia.convert("RGBA"), ib.convert("RGBA")).getbbox() is None


def _photo_jpeg(size: tuple[int, int] = (96, 64)) -> bytes:
    rng = random.Random(7)
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        draw.ellipse([x - 9, y - 9, x + 9, y + 9], fill=tuple(rng.randrange(256) for _ in "rgb"))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80, exif=Image.Exif().tobytes(), comment=b"secret comment")
    return buf.getvalue() + TRAILER


def _mean_diff(a: bytes, b: bytes) -> float:
    """Mean absolute difference per channel of two decodes of the same size."""
    with Image.open(io.BytesIO(a)) as ia, Image.open(io.BytesIO(b)) as ib:
        assert ia.size == ib.size
        diff = ImageChops.difference(ia.convert("RGB"), ib.convert("RGB"))
    return max(ImageStat.Stat(diff).mean)


def _png_chunks(data: bytes) -> list[bytes]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, out = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 8])
        pos += 12 + length
        if out[-1] == b"IEND":
            assert pos == len(data), "bytes after IEND"
    return out


# ------------------------------------------------------------------------- PNG


def test_png_reencoded_with_the_same_pixels_and_nothing_else() -> None:
    rng = random.Random(3)
    im = Image.new("RGBA", (120, 80), (255, 255, 255, 0))
    draw = ImageDraw.Draw(im)
    for _ in range(40):
        x, y = rng.randrange(120), rng.randrange(80)
        draw.rectangle([x, y, x + 15, y + 6], fill=tuple(rng.randrange(256) for _ in "rgba"))
    for mode in ("RGBA", "RGB", "P", "L"):
        buf = io.BytesIO()
        src = im.convert(mode)
        src.save(buf, "PNG", compress_level=9)
        data = buf.getvalue() + TRAILER
        out = _images.reencode(data, "PNG")
        assert out is not None
        assert _pixels_equal(data, out), mode
        assert TRAILER not in out
        assert not {b"tEXt", b"zTXt", b"iTXt", b"eXIf"} & set(_png_chunks(out))


def test_png_text_chunks_and_trailer_dropped() -> None:
    data = png(30, 20)
    assert b"Alice Author" in data
    out = _images.reencode(data, "PNG")
    assert out is not None
    assert b"Alice Author" not in out and TRAILER not in out
    assert _pixels_equal(data, out)


# -------------------------------------------------------------- repeated images


def test_same_picture_in_two_parts_rebuilt_in_both(tmp_path: Path) -> None:
    import docx

    pic = png(24, 18, "blue")
    doc = docx.Document()
    doc.add_picture(io.BytesIO(pic))
    buf = io.BytesIO()
    doc.save(buf)
    first = next(n for n in zipfile.ZipFile(buf).namelist() if n.startswith("word/media/"))
    # a second part with the very same bytes, reached from the same document
    copy = "word/media/copy.png"

    def rels(xml: bytes) -> bytes:
        return xml.replace(
            b"</Relationships>",
            b'<Relationship Id="rIdCopy" Type="http://schemas.openxmlformats.org/'
            b'officeDocument/2006/relationships/image" Target="media/copy.png"/>'
            b"</Relationships>",
        )

    def body(xml: bytes) -> bytes:
        return re.sub(
            rb"(<w:drawing>.*?</w:drawing>)",
            lambda m: m.group(1) + m.group(1).replace(b'r:embed="', b'r:embed="rIdCopy" x="'),
            xml,
            count=1,
            flags=re.S,
        )

    data = rezip(
        buf.getvalue(),
        {"word/_rels/document.xml.rels": rels, "word/document.xml": body, copy: pic},
    )
    src = tmp_path / "twice.docx"
    src.write_bytes(data)
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    with zipfile.ZipFile(dest) as zf:
        out_first, out_copy = zf.read(first), zf.read(copy)
    for out in (out_first, out_copy):
        assert TRAILER not in out and b"Alice Author" not in out
        assert _pixels_equal(pic, out)
    assert out_first == out_copy


def test_reencoder_decodes_each_distinct_picture_once(monkeypatch: object) -> None:
    calls: list[int] = []
    real = _images.reencode

    def counting(data: bytes, fmt: str) -> bytes | None:
        calls.append(len(data))
        return real(data, fmt)

    monkeypatch.setattr(_images, "reencode", counting)  # type: ignore[attr-defined]
    reencode = _images.Reencoder()
    a, b = png(10, 10, "red"), png(10, 10, "green")
    outs = [reencode(a, "PNG"), reencode(b, "PNG"), reencode(a, "PNG"), reencode(a, "JPEG")]
    assert len(calls) == 3  # a as PNG once, b, a as JPEG
    assert outs[0] == outs[2]
    assert outs[0] is not None and _pixels_equal(a, outs[0])


# ------------------------------------------------------------------------- RTF


def _disarm_rtf(tmp_path: Path, text: str, **sw: str) -> tuple[str, bytes]:
    src = tmp_path / "doc.rtf"
    src.write_bytes(text.encode("latin-1"))
    result, dest = disarm(src, tmp_path, switches("sanitise", **sw))
    return result.outcome, dest.read_bytes() if dest.exists() else b""


def _rtf_pictures(out: bytes) -> list[bytes]:
    found = re.findall(rb"\{\\pict[^ \n]*\n([0-9a-f\n]*)\}", out)
    return [bytes.fromhex(h.replace(b"\n", b"").decode()) for h in found]


def test_rtf_picture_hex_with_spaces_and_line_breaks(tmp_path: Path) -> None:
    jpeg = _photo_jpeg()
    hexdata = jpeg.hex()
    # Word and other writers break the hex into lines; spaces and tabs may appear too
    messy = "\r\n".join(hexdata[i : i + 64] for i in range(0, len(hexdata), 64))
    messy = messy[:100] + " \t" + messy[100:]
    rtf = (
        r"{\rtf1\ansi{\fonttbl{\f0 Arial;}}\pard Before\par"
        r"{\pict\jpegblip\picw96\pich64 " + messy + "}"
        r"\par After\par}"
    )
    outcome, out = _disarm_rtf(tmp_path, rtf)
    assert outcome == "rebuilt"
    (pic,) = _rtf_pictures(out)
    assert pic.startswith(b"\xff\xd8") and pic.endswith(b"\xff\xd9")
    assert TRAILER not in pic and b"secret comment" not in pic and b"Exif" not in pic
    assert _mean_diff(jpeg, pic) < 2  # same quantisation tables: a close decode
    assert b"Before" in out and b"After" in out


def test_rtf_same_picture_twice_rebuilt_twice(tmp_path: Path) -> None:
    pic_hex = png(12, 9, "green").hex()
    pict = r"{\pict\pngblip\picw12\pich9 " + pic_hex + "}"
    rtf = r"{\rtf1\ansi " + pict + r"\par " + pict + r"\par}"
    outcome, out = _disarm_rtf(tmp_path, rtf)
    assert outcome == "rebuilt"
    pics = _rtf_pictures(out)
    assert len(pics) == 2 and pics[0] == pics[1]
    assert TRAILER not in pics[0] and b"Alice Author" not in pics[0]
    assert _pixels_equal(png(12, 9, "green"), pics[0])


def test_rtf_hex_escapes(tmp_path: Path) -> None:
    # "\'e9" is a character; a field's instruction written with hex escapes is still
    # recognised (a "\'" without two hex digits is refused: test_office_rtf_review)
    rtf = (
        r"{\rtf1\ansi caf\'e9 ok\par"
        r"{\field{\*\fldinst {\'44\'44\'45AUTO c:\\x y}}{\fldrslt shown}}\par}"
    )
    outcome, out = _disarm_rtf(tmp_path, rtf)
    assert outcome == "rebuilt"
    assert rb"caf\'e9 ok" in out
    assert b"fldinst" not in out and b"shown" in out


def test_entry_point_is_the_office_plugin() -> None:
    assert "rtf" in gicap_office.FILE_TYPES


# ---------------------------------------------------------------- comments


def test_jpeg_comment_exif_and_trailer_dropped() -> None:
    jpeg = _photo_jpeg()
    assert b"secret comment" in jpeg
    out = _images.reencode(jpeg, "JPEG")
    assert out is not None
    assert b"secret comment" not in out and TRAILER not in out and b"Exif" not in out
    assert out.endswith(b"\xff\xd9")
    with Image.open(io.BytesIO(out)) as im:
        assert not im.info.get("comment")
        assert im.size == (96, 64)
    assert _mean_diff(jpeg, out) < 2


def test_gif_comment_dropped() -> None:
    buf = io.BytesIO()
    Image.new("P", (20, 10), 3).save(buf, "GIF", comment=b"secret gif comment")
    data = buf.getvalue() + TRAILER
    assert b"secret gif comment" in data
    out = _images.reencode(data, "GIF")
    assert out is not None
    assert b"secret gif comment" not in out and TRAILER not in out
    assert _pixels_equal(data, out)


# ------------------------------------------------------------------------ TIFF

TIFF_SECRETS = {
    270: "SECRET-DESCRIPTION",  # ImageDescription
    305: "SECRET-SOFTWARE",
    315: "SECRET-ARTIST",
    33432: "SECRET-COPYRIGHT",
    700: b"<x:xmpmeta>SECRET-XMP</x:xmpmeta>",
    33723: b"SECRET-IPTC\x00",
    34377: b"8BIM\x04\x04\x00\x00SECRET-PHOTOSHOP",
}


def _tiff_with_tags(frames: list[Image.Image]) -> bytes:
    from PIL import TiffImagePlugin, TiffTags

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, value in TIFF_SECRETS.items():
        ifd[tag] = value
    ifd.tagtype[700] = TiffTags.BYTE
    ifd.tagtype[33723] = TiffTags.UNDEFINED
    ifd.tagtype[34377] = TiffTags.BYTE
    ifd[0x0112] = 3  # orientation: applied by Pillow's decoder
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "TIFF",
        tiffinfo=ifd,
        dpi=(200, 200),
        icc_profile=b"\x00" * 128,
        save_all=len(frames) > 1,
        append_images=frames[1:],
    )
    return buf.getvalue() + TRAILER


def _tiff_frames(data: bytes) -> list[tuple[str, tuple[int, int], bytes, dict[int, object]]]:
    out = []
    with Image.open(io.BytesIO(data)) as im:
        for index in range(getattr(im, "n_frames", 1)):
            im.seek(index)
            im.load()
            out.append((im.mode, im.size, im.tobytes(), dict(im.tag_v2)))
    return out


def test_tiff_tags_of_the_source_not_copied() -> None:
    rng = random.Random(9)
    frames = []
    for mode in ("RGB", "L", "RGBA"):
        pixels = bytes(rng.randrange(256) for _ in range(600 * len(mode)))
        frames.append(Image.frombytes(mode, (30, 20), pixels))
    data = _tiff_with_tags(frames)
    for value in TIFF_SECRETS.values():
        assert (value if isinstance(value, bytes) else value.encode()) in data
    out = _images.reencode(data, "TIFF")
    assert out is not None
    for value in TIFF_SECRETS.values():
        assert (value if isinstance(value, bytes) else value.encode()) not in out
    assert TRAILER not in out
    src_frames, out_frames = _tiff_frames(data), _tiff_frames(out)
    assert len(out_frames) == 3
    for (mode, size, pixels, _), (omode, osize, opixels, tags) in zip(
        src_frames, out_frames, strict=True
    ):
        assert (omode, osize, opixels) == (mode, size, pixels)
        assert not set(TIFF_SECRETS) & set(tags)
    tags = out_frames[0][3]
    assert tags[34675] == b"\x00" * 128  # ICC profile
    assert float(tags[282]) == 200 and tags[296] == 2  # 200 dpi
    # Pillow turns a TIFF upright when it decodes it: the orientation is not kept
    assert 0x0112 not in tags


def _palette_picture(fmt: str) -> bytes:
    """A palette image using 3 of its 256 entries; the 253 others hold bytes of the
    sender's choosing (and, in a PNG, their alpha)."""
    rng = random.Random(7)
    im = Image.new("P", (40, 30))
    im.putpalette(bytes(rng.randrange(256) for _ in range(768)))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, 39, 29], fill=200)
    draw.rectangle([5, 5, 20, 20], fill=17)
    draw.line([0, 29, 39, 0], fill=99)
    buf = io.BytesIO()
    extra = {"transparency": bytes(range(256))} if fmt == "PNG" else {}
    im.save(buf, fmt, **extra)
    return buf.getvalue()


def test_unused_palette_entries_are_not_copied() -> None:
    for fmt in ("PNG", "GIF", "BMP", "TIFF"):
        source = _palette_picture(fmt)
        out = _images.reencode(source, fmt)
        assert out is not None, fmt
        with Image.open(io.BytesIO(out)) as rebuilt, Image.open(io.BytesIO(source)) as orig:
            assert rebuilt.mode == "P", fmt
            colours = len(rebuilt.getpalette() or []) // 3
            # (GIF and TIFF writers pad a palette to a power of two / 256 with zeros)
            kept = (rebuilt.getpalette() or [])[: 3 * 3]
            assert set((rebuilt.getpalette() or [])[3 * 3 :]) <= {0}, (fmt, colours)
            assert len(kept) == 9, fmt
            assert rebuilt.convert("RGBA").tobytes() == orig.convert("RGBA").tobytes(), fmt


def _animation(transparent: bool) -> bytes:
    """A red square moving across four frames of 100-400 ms, on a transparent
    background or on black."""
    frames = []
    for k in range(4):
        im = Image.new("P", (50, 50), 0)
        im.putpalette([0, 0, 0, 255, 0, 0] + [7, 7, 7] * 254)
        ImageDraw.Draw(im).rectangle([k * 10, 10, k * 10 + 9, 19], fill=1)
        frames.append(im)
    extra = {"transparency": 0, "disposal": 2} if transparent else {}
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        duration=[100, 200, 300, 400],
        loop=0,
        **extra,
    )
    return buf.getvalue()


def _shown(data: bytes) -> tuple[list[bytes], list[int], int | None]:
    """Each frame as shown (RGBA), each frame's duration, and the loop count."""
    with Image.open(io.BytesIO(data)) as im:
        pixels, durations = [], []
        for index in range(im.n_frames):
            im.seek(index)
            pixels.append(im.convert("RGBA").tobytes())
            durations.append(im.info.get("duration"))
        return pixels, durations, im.info.get("loop")


def test_animated_gif_frames_show_as_in_the_source() -> None:
    # A document's animated picture shows each frame as the source did, for as long:
    # the square leaves no trail where the frame turns transparent, and a frame
    # shown for 400 ms is not cut to the first frame's 100.
    for transparent in (True, False):
        source = _animation(transparent)
        out = _images.reencode(source, "GIF")
        assert out is not None
        frames, durations, loop = _shown(out)
        expected_frames, expected_durations, expected_loop = _shown(source)
        assert durations == expected_durations == [100, 200, 300, 400], transparent
        assert loop == expected_loop == 0
        assert [a == b for a, b in zip(frames, expected_frames, strict=True)] == [True] * 4, (
            transparent
        )
