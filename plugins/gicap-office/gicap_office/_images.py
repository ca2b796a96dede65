"""Re-encoding embedded raster images with Pillow.

An image is decoded to pixels and encoded again in the format its content type
declares: whatever else the bytes carried (trailing data, polyglot payloads, malformed
chunks aimed at a decoder, EXIF/XMP/comments) does not survive. Kept: the pixels, the
palette and transparency, the ICC colour profile, the resolution and the EXIF
orientation (so the picture shows the same way up). JPEG is re-encoded with its own
quantisation tables and subsampling (Pillow's ``quality="keep"``), so quality does not
drop. Only the decoders listed in :data:`DECODERS` are ever tried (Pillow would
otherwise try every plugin, some of which shell out, e.g. EPS to Ghostscript).

Pixel counts are checked from the header before any pixel is decoded.

Baseline JPEGs (8-bit, grey or YCbCr) take a faster road when libjpeg-turbo's
TurboJPEG library and its ``PyTurboJPEG`` wrapper are installed: a lossless transform
decodes the entropy-coded data to DCT coefficients and encodes them again with fresh
Huffman coding, copying no marker of the source; the segments Pillow would have kept
(JFIF resolution, ICC profile, EXIF orientation) are then written by this module. The
pixels are exactly the source's. Anything else (progressive, arithmetic-coded, CMYK,
12-bit, lossless JPEGs, a library warning about corrupt data, the library missing)
goes through Pillow as above.
"""

from __future__ import annotations

import base64
import io
import logging
import warnings
from typing import Any

from PIL import Image

#: Most pixels one image may have (all frames together) before it counts as a bomb.
MAX_PIXELS = 80_000_000
MAX_FRAMES = 1000
#: zlib level of re-encoded PNGs. Levels 1-3 run zlib's fast deflate: level 3 is 2-3x
#: quicker than 6 on screenshots and photos, for output 5-20% bigger (up to 40% on
#: palette images); the pixels are decoded and encoded all the same.
PNG_LEVEL = 3
DECODERS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]

#: Content type -> Pillow format written.
FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/x-bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/tiff": "TIFF",
    "image/webp": "WEBP",
}

#: A 1×1 transparent PNG: what replaces an image that cannot be re-encoded (vector
#: formats such as EMF/WMF, undecodable data). It is drawn at the size the document
#: gives the picture, so the layout does not move.
PLACEHOLDER_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

_ORIENTATION = 0x0112

_log = logging.getLogger(__name__)


class ImageBomb(ValueError):
    """An image declares more pixels (or frames) than allowed."""


class Reencoder:
    """:func:`reencode` for the pictures of one document: the same bytes in the same
    format (one picture stored twice, or a picture and its fallback copy) are decoded
    and encoded once. The output depends on nothing but the input bytes and the format,
    so every copy gets exactly what its own re-encoding would give."""

    def __init__(self) -> None:
        self._done: dict[tuple[str, bytes], bytes | None] = {}

    def __call__(self, data: bytes, fmt: str) -> bytes | None:
        key = (fmt, data)
        if key not in self._done:
            self._done[key] = reencode(data, fmt)  # ImageBomb propagates, not cached
        return self._done[key]


def reencode(data: bytes, fmt: str) -> bytes | None:
    """``data`` decoded and encoded again as ``fmt`` (a :data:`FORMATS` value), or
    ``None`` when it is not an image Pillow can decode. Raises :class:`ImageBomb`."""
    try:
        im = Image.open(io.BytesIO(data), formats=DECODERS)
    except Exception:
        return None
    with im:
        width, height = im.size
        frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > MAX_FRAMES or width * height * frames > MAX_PIXELS:
            raise ImageBomb(f"image of {width}×{height} pixels × {frames} frames")
        if fmt == "JPEG" and im.format == "JPEG":
            out = _jpeg_transform(data, im)
            if out is not None:
                return out
        try:
            return _encode(im, fmt, frames)
        except ImageBomb:
            raise
        except MemoryError:
            raise
        except Exception:
            return None


def _kept(im: Image.Image) -> dict[str, Any]:
    """The metadata every re-encoding keeps, as Pillow save arguments: ICC profile,
    resolution and an EXIF block holding only the orientation (when not 1)."""
    info = im.info
    kw: dict[str, Any] = {}
    if info.get("icc_profile"):
        kw["icc_profile"] = info["icc_profile"]
    if info.get("dpi"):
        kw["dpi"] = info["dpi"]
    orientation = im.getexif().get(_ORIENTATION)
    if isinstance(orientation, int) and orientation != 1:
        exif = Image.Exif()
        exif[_ORIENTATION] = orientation
        kw["exif"] = exif.tobytes()
    return kw


def _used_palette(im: Image.Image) -> Image.Image:
    """``im`` (loaded), a palette image keeping only the palette entries its pixels
    use, renumbered in their order, with their transparency: an unused entry shows
    nothing, so its bytes (768 with their alpha, copied by the PNG, TIFF and BMP
    writers as they were) could carry anything past the rebuild. Other images are
    returned as they are."""
    if im.mode != "P" or im.palette is None:
        return im
    mode = im.palette.mode
    bands = len(mode)
    palette = bytes(im.getpalette(mode) or b"")
    used = sorted(colour for _, colour in im.getcolors(256) or [])  # (a histogram, in C)
    if used == list(range(len(palette) // bands)):
        return im
    # (an index past the palette's end shows as opaque black, as Pillow draws it)
    black = b"\x00\x00\x00\xff"[:bands]
    renumber = {old: new for new, old in enumerate(used)}
    out = im.point([renumber.get(i, 0) for i in range(256)])  # (maps the indices)
    out.putpalette(b"".join(palette[i * bands : (i + 1) * bands] or black for i in used), mode)
    transparency = im.info.get("transparency")
    out.info = {k: v for k, v in im.info.items() if k != "transparency"}
    if isinstance(transparency, bytes):
        # (an entry past the end of a PNG's tRNS chunk is opaque)
        alpha = bytes(transparency[i] if i < len(transparency) else 255 for i in used)
        if alpha.rstrip(b"\xff"):
            out.info["transparency"] = alpha.rstrip(b"\xff")
    elif isinstance(transparency, int) and transparency in renumber:
        out.info["transparency"] = renumber[transparency]
    return out


def _animation(im: Image.Image, frames: int) -> dict[str, Any]:
    """Save options for an animated GIF: each frame's own duration, the loop count,
    and ``disposal=2`` when a frame shows something through.

    Pillow decodes each frame composed as shown, and the writer draws each one over
    the frame before: where a frame turns transparent, the earlier pixels stayed (a
    moving shape left a trail). Restored to the background after each one, every
    frame shows as it was decoded. The frames are decoded once more for this (only
    animations pay it), rather than all held at once besides the writer's copies."""
    durations: list[int] = []
    see_through = False
    for index in range(frames):
        im.seek(index)
        im.load()
        durations.append(int(im.info.get("duration", 0) or 0))
        see_through = see_through or "transparency" in im.info or im.mode in ("RGBA", "PA", "LA")
    im.seek(0)
    options: dict[str, Any] = {"duration": durations}
    if "loop" in im.info:
        options["loop"] = im.info["loop"]
    if see_through:
        options["disposal"] = 2
    return options


def _encode(im: Image.Image, fmt: str, frames: int) -> bytes:
    # Loaded first: Pillow turns a TIFF upright on load (and forgets its orientation),
    # and reads a PNG's eXIf chunk that follows the pixels only then.
    im.load()
    info = im.info
    kw = _kept(im)
    out = io.BytesIO()
    if fmt == "JPEG":
        if im.format == "JPEG":
            kw.update(quality="keep", subsampling="keep", qtables="keep")
        else:
            kw["quality"] = 90
        im.load()
        src = im if im.mode in ("L", "RGB", "CMYK") else im.convert("RGB")
        # Pillow would otherwise copy the source's COM segment (im.info["comment"])
        src.save(out, "JPEG", comment=b"", **kw)
    elif fmt == "PNG":
        im.seek(0)
        im.load()
        if "transparency" in info:
            kw["transparency"] = info["transparency"]
        src = im
        if im.mode == "P":
            src = _used_palette(im)
            kw.pop("transparency", None)
            if "transparency" in src.info:
                kw["transparency"] = src.info["transparency"]
        elif im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I", "I;16"):
            src = im.convert("RGBA")
        src.save(out, "PNG", compress_level=PNG_LEVEL, **kw)
    elif fmt == "GIF":
        kw.pop("exif", None)
        kw.pop("icc_profile", None)
        if frames > 1:
            kw.update(_animation(im, frames))
        else:
            for key in ("loop", "duration", "transparency"):
                if key in info:
                    kw[key] = info[key]
        im.load()
        src = im
        if frames == 1 and im.mode == "P":
            src = _used_palette(im)
            kw.pop("transparency", None)
            if "transparency" in src.info:
                kw["transparency"] = src.info["transparency"]
        # Pillow would otherwise copy the source's comment extension (im.info)
        src.save(out, "GIF", save_all=frames > 1, comment=b"", **kw)
    elif fmt == "BMP":
        im.load()
        src = im if im.mode in ("1", "L", "P", "RGB", "RGBA") else im.convert("RGBA")
        src = _used_palette(src)
        src.save(out, "BMP", **{k: v for k, v in kw.items() if k == "dpi"})
    elif fmt == "TIFF":
        # Pillow's TIFF writer copies tags of a TIFF source (IPTC, Photoshop, XMP,
        # resolution...) into its output: it is given copies of the frames' pixels,
        # which carry no tag directory and no info
        pages = []
        for index in range(frames):
            im.seek(index)
            im.load()
            page = _used_palette(im.copy())
            page.info = {}
            pages.append(page)
        pages[0].save(
            out,
            "TIFF",
            compression="tiff_lzw",
            save_all=frames > 1,
            append_images=pages[1:],
            **kw,
        )
    elif fmt == "WEBP":
        im.load()
        im.save(out, "WEBP", quality=90, save_all=frames > 1, **kw)
    else:
        raise ValueError(f"no encoder for {fmt}")
    return out.getvalue()


# ---------------------------------------------------------------- JPEG fast path

#: Start-of-frame markers (all coding processes); C4 (DHT), C8 (JPG) and CC (DAC)
#: share the range but are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Segments the lossless transform may write between SOI and the first scan, once its
#: JFIF APP0 is dropped: quantisation and Huffman tables, a baseline or extended
#: sequential Huffman frame header, a restart interval.
_TRANSFORM_SEGMENTS = frozenset({0xDB, 0xC4, 0xC0, 0xC1, 0xDD})
#: Most ICC bytes in one APP2 segment: 65533 bytes of payload less "ICC_PROFILE\0",
#: the chunk number and the chunk count (the split Pillow makes).
_ICC_CHUNK = 65533 - 14

_turbojpeg: Any = None  # TurboJPEG instance; False once it proved unavailable


def _turbojpeg_instance() -> Any:
    """The TurboJPEG wrapper, made once; ``None`` when the package or the library is
    missing."""
    global _turbojpeg
    if _turbojpeg is None:
        try:
            from turbojpeg import TurboJPEG

            _turbojpeg = TurboJPEG()
        except Exception as exc:  # ImportError, or the shared library not found
            _log.debug("JPEG lossless transform unavailable: %s", exc)
            _turbojpeg = False
    return _turbojpeg or None


def _segments(data: bytes) -> list[tuple[int, int, int]] | None:
    """The marker segments of a JPEG from SOI to the first SOS included, as (marker,
    start of payload, end of payload); ``None`` when the header is not a plain sequence
    of length-prefixed segments within ``data``."""
    if not data.startswith(b"\xff\xd8"):
        return None
    found: list[tuple[int, int, int]] = []
    pos, size = 2, len(data)
    while True:
        if pos >= size or data[pos] != 0xFF:
            return None
        while pos < size and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos + 3 > size:
            return None
        marker = data[pos]
        if marker in (0x00, 0x01, 0xD8, 0xD9) or 0xD0 <= marker <= 0xD7:
            return None  # no standalone marker belongs in a header
        length = int.from_bytes(data[pos + 1 : pos + 3], "big")
        start, end = pos + 3, pos + 1 + length
        if length < 2 or end > size:
            return None
        found.append((marker, start, end))
        if marker == 0xDA:
            return found
        pos = end


def _frame(data: bytes, segments: list[tuple[int, int, int]]) -> tuple[int, int, int, int, int]:
    """(SOF marker, precision, width, height, components) of the only frame header;
    ``(0, 0, 0, 0, 0)`` when there is not exactly one, or it is malformed."""
    frames = [seg for seg in segments if seg[0] in _SOF]
    if len(frames) != 1:
        return (0, 0, 0, 0, 0)
    marker, start, end = frames[0]
    if end - start < 6:
        return (0, 0, 0, 0, 0)
    precision = data[start]
    height = int.from_bytes(data[start + 1 : start + 3], "big")
    width = int.from_bytes(data[start + 3 : start + 5], "big")
    components = data[start + 5]
    if end - start != 6 + 3 * components:
        return (0, 0, 0, 0, 0)
    return (marker, precision, width, height, components)


def _segment(marker: int, payload: bytes) -> bytes:
    """One marker segment; its length field counts itself."""
    if len(payload) > 0xFFFF - 2:
        raise ValueError(f"JPEG segment of {len(payload)} bytes")
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def _kept_segments(kw: dict[str, Any]) -> bytes:
    """The segments Pillow writes after SOI for :func:`_kept`'s metadata: JFIF APP0
    (density in dots per inch when the resolution is known, else 1:1 with no unit),
    the EXIF APP1, the ICC profile split over numbered APP2 segments."""
    unit, xdensity, ydensity = 0, 1, 1
    if kw.get("dpi"):
        x, y = (round(v) for v in kw["dpi"])
        if x > 0 and y > 0:
            unit, xdensity, ydensity = 1, x, y
    if not (0 < xdensity <= 0xFFFF and 0 < ydensity <= 0xFFFF):
        raise ValueError(f"resolution {xdensity}×{ydensity} does not fit JFIF")
    jfif = (
        b"JFIF\x00\x01\x01"
        + bytes((unit,))
        + xdensity.to_bytes(2, "big")
        + ydensity.to_bytes(2, "big")
        + b"\x00\x00"  # no thumbnail
    )
    out = [_segment(0xE0, jfif)]
    if kw.get("exif"):
        out.append(_segment(0xE1, kw["exif"]))
    icc: bytes = kw.get("icc_profile") or b""
    chunks = [icc[i : i + _ICC_CHUNK] for i in range(0, len(icc), _ICC_CHUNK)]
    if len(chunks) > 255:
        raise ValueError(f"ICC profile of {len(icc)} bytes")
    for number, chunk in enumerate(chunks, 1):
        out.append(_segment(0xE2, b"ICC_PROFILE\x00" + bytes((number, len(chunks))) + chunk))
    return b"".join(out)


def _jpeg_transform(data: bytes, im: Image.Image) -> bytes | None:
    """``data`` (whose header Pillow opened as ``im``) rebuilt by a lossless transform,
    or ``None`` when it is not a baseline 8-bit grey/YCbCr JPEG, the library is
    missing, or the library reports anything: Pillow's way is then taken."""
    if im.mode not in ("L", "RGB"):
        return None
    components = 1 if im.mode == "L" else 3
    segments = _segments(data)
    if segments is None:
        return None
    marker, precision, width, height, count = _frame(data, segments)
    if marker not in (0xC0, 0xC1) or precision != 8 or count != components:
        return None
    if (width, height) != im.size:
        return None
    tj = _turbojpeg_instance()
    if tj is None:
        return None
    try:
        return _transform(tj, data, im, components)
    except Exception as exc:
        _log.debug("JPEG lossless transform declined: %s", exc)
        return None


def _transform(tj: Any, data: bytes, im: Image.Image, components: int) -> bytes | None:
    from turbojpeg import TJCS_GRAY, TJCS_YCbCr

    width, height = im.size
    # The wrapper reports a libjpeg warning (corrupt data skipped or filled in) with
    # warnings.warn and returns the image all the same: any warning declines.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tj_width, tj_height, _, colorspace = tj.decode_header(data)
        if (tj_width, tj_height) != (width, height):
            return None
        if colorspace != (TJCS_GRAY if components == 1 else TJCS_YCbCr):
            return None
        # A crop to the whole image with no marker copied (TJXOPT_CROP|TJXOPT_COPYNONE,
        # no TJXOPT_PERFECT, no progressive flag); preserve=True keeps the partial
        # blocks at the right and bottom edges.
        out = tj.crop(data, 0, 0, width, height, preserve=True, copynone=True)
    if caught:
        _log.debug("JPEG lossless transform declined: %s", caught[0].message)
        return None
    segments = _segments(out)
    if segments is None or not out.endswith(b"\xff\xd9"):
        return None
    if _frame(out, segments)[1:] != (8, width, height, components):
        return None
    # Its JFIF APP0 (the library's, from the source's density) is replaced by the
    # segments Pillow would write; the rest must be tables, frame header and scans.
    first, start, end = segments[0]
    if first != 0xE0 or not out.startswith(b"JFIF\x00", start):
        return None
    if any(marker not in _TRANSFORM_SEGMENTS for marker, _, _ in segments[1:-1]):
        return None
    return b"\xff\xd8" + _kept_segments(_kept(im)) + out[end:]
