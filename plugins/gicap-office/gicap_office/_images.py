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
"""

from __future__ import annotations

import base64
import io

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
        try:
            return _encode(im, fmt, frames)
        except ImageBomb:
            raise
        except MemoryError:
            raise
        except Exception:
            return None


def _encode(im: Image.Image, fmt: str, frames: int) -> bytes:
    info = im.info
    kw: dict[str, object] = {}
    if info.get("icc_profile"):
        kw["icc_profile"] = info["icc_profile"]
    if info.get("dpi"):
        kw["dpi"] = info["dpi"]
    orientation = im.getexif().get(_ORIENTATION)
    if isinstance(orientation, int) and orientation != 1:
        exif = Image.Exif()
        exif[_ORIENTATION] = orientation
        kw["exif"] = exif.tobytes()
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
        if im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
            src = im.convert("RGBA")
        src.save(out, "PNG", compress_level=PNG_LEVEL, **kw)
    elif fmt == "GIF":
        kw.pop("exif", None)
        kw.pop("icc_profile", None)
        for key in ("loop", "duration", "transparency"):
            if key in info:
                kw[key] = info[key]
        im.load()
        # Pillow would otherwise copy the source's comment extension (im.info)
        im.save(out, "GIF", save_all=frames > 1, comment=b"", **kw)
    elif fmt == "BMP":
        im.load()
        src = im if im.mode in ("1", "L", "P", "RGB", "RGBA") else im.convert("RGBA")
        src.save(out, "BMP", **{k: v for k, v in kw.items() if k == "dpi"})
    elif fmt == "TIFF":
        im.load()
        im.save(out, "TIFF", compression="tiff_lzw", save_all=frames > 1, **kw)
    elif fmt == "WEBP":
        im.load()
        im.save(out, "WEBP", quality=90, save_all=frames > 1, **kw)
    else:
        raise ValueError(f"no encoder for {fmt}")
    return out.getvalue()
