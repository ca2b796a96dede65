"""Raster images (JPEG, PNG, GIF, TIFF, BMP, WebP): rebuilt from the decoded pixels.

The file is decoded with Pillow and a new file of the same format is encoded from the
pixels alone (mode, palette, transparency, resolution, frames, frame durations and loop
count are carried over; of a palette, only the entries the pixels use). Nothing else
of the original reaches the output: no EXIF, XMP, ICC profile, comment, PNG text chunk,
TIFF descriptive tag, JPEG APPn segment, GIF application extension, and no bytes
after the end of the image (a ZIP or script appended to a picture). A malformed stream
that exploits a decoder is not copied either: the output is whatever Pillow's encoder
writes.

The ``metadata`` switch: ``sanitise`` drops the metadata (EXIF orientation is applied
to the pixels first so the picture still shows the right way up); ``allow`` passes
EXIF, ICC profile, XMP, comments and PNG text to the encoder where the format's
writer supports them (the pixels are still rebuilt); ``disallow`` blocks a file that
has any.

Bombs are refused from the headers, before anything is decoded: a frame over
``max_image_pixels`` pixels, more than ``max_image_frames`` frames, more than
``max_image_total_pixels`` pixels over all frames, an animation (or multi-page TIFF)
taking more than ``max_image_animation_mb`` to decode and re-encode, or (in a worker
with a memory limit) more memory to decode and re-encode than the worker has left.
"""

from __future__ import annotations

import contextlib
import mmap
import re
import resource
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import GifImagePlugin, Image, ImageFile, JpegImagePlugin, PngImagePlugin

from gicap.cdr.types import Action, DisarmRequest, DisarmResult

SWITCH = "metadata"
#: Not a policy switch: data after the end of the image is removed whatever the policy.
APPENDED = "appended_data"

#: Default bomb limits; a profile may override them through ``request.limits``.
MAX_PIXELS = 100_000_000  # one frame (100 megapixels: 300 MB as RGB)
MAX_FRAMES = 1_000
#: A progressive JPEG has about ten scans; thousands cost seconds each to decode.
MAX_JPEG_SCANS = 256
MAX_TOTAL_PIXELS = 200_000_000  # all frames of an animation or multi-page TIFF
#: Memory (MiB) that decoding and re-encoding an animation or multi-page TIFF may take
#: (estimated from its frames, their size and the format: _DECODE_BYTES): all frames
#: are decoded before the new file is written, and Pillow's writers keep copies. 999
#: frames within the pixel limits took 790 MiB and 4.5 s (WebP), 1.5 GiB and 8 s (APNG).
#: As much as a CDR worker may take by default (cdr.memory_limit_mb): a screen
#: recording of 300 frames of 800 x 600 (about 870 MiB as a GIF) still fits, as it did
#: before this limit; it bounds a worker without a memory limit.
MAX_ANIMATION_MB = 1024
#: Chunks in a PNG: writers cut the image data in chunks of 8 KiB and more (100,000
#: of them are 800 MB); Pillow reads each one in Python (8 million empty chunks in
#: 96 MB took 34 s and 900 MiB).
MAX_PNG_CHUNKS = 100_000
#: Compressed ancillary PNG chunks (zTXt, iTXt, iCCP): Pillow inflates each one, and
#: drops a broken one without counting it (4 MB of chunks each inflating 1 MB to a
#: zlib error took 3.4 s).
MAX_PNG_COMPRESSED_CHUNKS = 64
#: Application and comment segments of a JPEG (writers use a handful): the scan and
#: Pillow keep one entry each (2.5 million empty ones in 10 MB took 17 s, 30 MB ran
#: a worker's 1 GiB out).
MAX_JPEG_SEGMENTS = 1_000
#: Data sub-blocks of a GIF's extensions (comments, application and plain text
#: extensions), all together: writers cut them in sub-blocks of 255 bytes and a frame
#: has one or two. Pillow keeps each comment sub-block as a bytes object of its own
#: (a 45 MB comment cut in 1-byte sub-blocks took 2 GiB and 16 s) and reads the others
#: one by one in Python (10 MB of them: 3 s).
MAX_GIF_EXTENSION_BLOCKS = 100_000
#: Data sub-blocks of a GIF's image data, all frames together: writers fill them (255
#: bytes each: a million is 255 MB). Pillow skips each one in Python when it counts
#: the frames, and so does the walk (24 MB of 1-byte sub-blocks took 9 s).
MAX_GIF_DATA_BLOCKS = 1_000_000
#: Chunks of a WebP besides its frames (writers use a handful: VP8X, ICCP, ANIM, the
#: bitstream, EXIF, XMP). The walk reads each one in Python before Pillow opens the
#: file (a million empty chunks in 10 MB took 1.3 s); frames are counted to
#: ``max_image_frames`` and no further.
MAX_WEBP_CHUNKS = 1_000

#: gicap type -> the Pillow format that reads and writes it.
PIL_FORMATS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "tiff": "TIFF",
    "bmp": "BMP",
    "webp": "WEBP",
}
#: Formats Pillow may report for a file opened as the key (a JPEG with an MPF index
#: opens as MPO: extra pictures after the first one's EOI).
ACCEPTED = {"JPEG": {"JPEG", "MPO"}}

#: TIFF tags that only describe the picture (never needed to show it).
TIFF_METADATA_TAGS = {
    269: "DocumentName",
    270: "ImageDescription",
    271: "Make",
    272: "Model",
    285: "PageName",
    305: "Software",
    306: "DateTime",
    315: "Artist",
    316: "HostComputer",
    700: "XMP",
    33432: "Copyright",
    33723: "IPTC",
    34377: "Photoshop",
    34665: "EXIF",
    34675: "ICC profile",
    34853: "GPSIFD",
    37724: "ImageSourceData",
    40965: "InteroperabilityIFD",
}
#: Of those, the descriptive text tags ``allow`` copies into the new TIFF.
TIFF_KEPT_TAGS = (269, 270, 271, 272, 285, 305, 306, 315, 316, 33432)
#: EXIF orientation -> the transpose that shows the picture the right way up.
ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Quality for lossy re-encodings that cannot reuse the source's own tables (WebP,
#: JPEG-compressed TIFF). JPEG reuses its quantisation tables instead.
LOSSY_QUALITY = 95


class Refused(Exception):
    """The file is not processed (bomb, wrong format, malformed): the message says why."""


# ----------------------------------------------------------------------------- entry


def disarm(request: DisarmRequest) -> DisarmResult:
    kind = request.file_type.name
    fmt = PIL_FORMATS[kind]
    limits = _Limits.of(request.limits)
    try:
        with _pillow_guard(limits):
            return _disarm(request, fmt, limits)
    except Refused as exc:
        request.destination.unlink(missing_ok=True)
        return DisarmResult("unprocessable", reason=str(exc))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        request.destination.unlink(missing_ok=True)
        return DisarmResult(
            "unprocessable", reason=f"decompression bomb (max_image_pixels {limits.pixels}): {exc}"
        )
    except MemoryError:
        raise
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        KeyError,
        IndexError,
        struct.error,
        TypeError,
        OverflowError,
        RuntimeError,
    ) as exc:
        # Pillow reports broken files with all of these (SyntaxError for a bad header,
        # OSError for truncated data, TypeError for a TIFF page without a size,
        # OverflowError/RuntimeError when a frame's offset grows the canvas past what
        # the GIF or WebP writer takes). The original is never delivered in their place.
        request.destination.unlink(missing_ok=True)
        return DisarmResult("unprocessable", reason=f"cannot decode the {kind} image: {exc}")


@dataclass(frozen=True)
class _Limits:
    pixels: int
    frames: int
    total: int
    animation: int  # bytes

    @classmethod
    def of(cls, limits: Any) -> _Limits:
        return cls(
            int(limits.get("max_image_pixels", MAX_PIXELS)),
            int(limits.get("max_image_frames", MAX_FRAMES)),
            int(limits.get("max_image_total_pixels", MAX_TOTAL_PIXELS)),
            int(limits.get("max_image_animation_mb", MAX_ANIMATION_MB)) << 20,
        )


@contextlib.contextmanager
def _pillow_guard(limits: _Limits) -> Iterator[None]:
    """Pillow's process-wide knobs, set for this call only (other engines in the same
    worker, e.g. images inside documents, may use Pillow with their own settings)."""
    saved = (
        Image.MAX_IMAGE_PIXELS,
        ImageFile.LOAD_TRUNCATED_IMAGES,
        GifImagePlugin.LOADING_STRATEGY,
    )
    Image.MAX_IMAGE_PIXELS = limits.pixels
    # A truncated image is malformed: never pad it with grey and deliver it.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    # Keep GIF frames in palette mode while they share the first frame's palette:
    # exact colours, a quarter of the memory of RGBA frames.
    GifImagePlugin.LOADING_STRATEGY = (
        GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
    )
    try:
        with warnings.catch_warnings():
            # Pillow warns about every oddity of a broken file (corrupt EXIF, short
            # tags): noise here, the outcome says what matters.
            warnings.simplefilter("ignore")
            # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        (
            Image.MAX_IMAGE_PIXELS,
            ImageFile.LOAD_TRUNCATED_IMAGES,
            GifImagePlugin.LOADING_STRATEGY,
        ) = saved


def _disarm(request: DisarmRequest, fmt: str, limits: _Limits) -> DisarmResult:
    policy = request.switches.get(SWITCH, "sanitise")
    file_size = request.source.stat().st_size
    if file_size == 0:
        raise Refused("empty file")
    # (before Pillow allocates anything: see _check_memory)
    left = _memory_left()
    # 1. Structure, from the bytes alone: where the image ends, how many frames.
    layout = _layout(request.source, fmt, limits.frames)
    if layout.frames > limits.frames:
        raise Refused(f"more than {limits.frames} frames (max_image_frames)")
    if fmt == "WEBP" and layout.canvas is not None:
        # A WebP: Pillow's decoder allocates its canvas (twice) when the file is
        # opened, before Pillow's own size check.
        width, height = layout.canvas
        if width * height > limits.pixels:
            raise Refused(
                f"{width}x{height} pixels is more than {limits.pixels} (max_image_pixels)"
            )
        total = layout.frames * width * height
        _check_memory(fmt, layout.frames, total, layout.canvas, 0, left, limits)

    # 2. Headers: Image.open reads them and decodes nothing yet.
    with Image.open(request.source, formats=[fmt]) as img:
        if img.format not in ACCEPTED.get(fmt, {fmt}):
            raise Refused(f"Pillow reads this file as {img.format}, not {fmt}")
        info = dict(img.info)  # the first frame's; img.info follows the frames read
        frames = _check_sizes(img, fmt, limits, left, layout)
        if fmt == "PNG":
            _check_png_data(request.source, layout)

        # 3. What metadata is there (before decoding: for "disallow" nothing is decoded).
        found = _metadata(img, info, fmt, layout)
        if policy == "disallow" and found:
            names = ", ".join(found)
            return DisarmResult(
                "blocked",
                actions=[Action(SWITCH, "blocked", names)],
                reason=f"image metadata is disallowed by the policy (found: {names})",
            )
        keep = policy == "allow"

        # 4. Decode every frame and re-encode from the pixels.
        pixels = _frames(img, frames, fmt)
        options, kept, orientation = _save_options(img, info, fmt, layout, found, keep)
        if orientation and len(pixels) == 1:
            # Stripping EXIF loses its Orientation tag: turn the pixels instead.
            pixels[0] = _Frame(pixels[0].image.transpose(ORIENTATION[orientation]), 0)
        else:
            orientation = 0
        if fmt != "WEBP":  # (the WebP writer keeps no palette)
            background = _drop_unused_colours(pixels, info.get("background"))
            if background is None:
                info.pop("background", None)
            else:
                info["background"] = background
        _encode(pixels, request.destination, fmt, options, info)
        mpo = img.format == "MPO"

    _verify(request.destination, fmt, pixels[0].image.size)

    actions: list[Action] = []
    removed = [name for name in found if name not in kept]
    if kept:
        actions.append(Action(SWITCH, "kept", ", ".join(kept)))
    if removed:
        detail = ", ".join(removed)
        if orientation:
            detail += f" (EXIF orientation {orientation} applied to the pixels)"
        if keep:
            detail += " (not supported by the writer of this format)"
        actions.append(Action(SWITCH, "removed", detail))
    if layout.end is not None and layout.end < file_size:
        extra = file_size - layout.end
        actions.append(Action(APPENDED, "removed", f"{extra} bytes after the end of the image"))
    if mpo:
        actions.append(Action(APPENDED, "removed", "MPF secondary images (only the first kept)"))
    return DisarmResult("rebuilt", actions=actions)


# ------------------------------------------------------------------ structure scan


@dataclass
class _Layout:
    end: int | None = None  # offset just after the end marker; None when unknown
    frames: int = 1
    #: PNG: how many of each chunk type; WebP: the first bitstream's chunk type.
    chunks: dict[bytes, int] = field(default_factory=dict)
    #: JPEG, GIF: the kinds of metadata segments/extensions seen anywhere in the file.
    meta: list[str] = field(default_factory=list)
    #: WebP: the canvas (of an extended file, VP8X, else the image's size), which
    #: Pillow's decoder allocates (twice) as soon as the file is opened.
    canvas: tuple[int, int] | None = None
    #: PNG: the image header's width, height, bit depth, colour type and interlace
    #: method, and where the image data chunks (IDAT) are (offset, length).
    header: tuple[int, int, int, int, int] | None = None
    data: list[tuple[int, int]] = field(default_factory=list)
    #: APNG: each frame's width, height and data chunks (fdAT), but the image data's.
    frame_data: list[tuple[int, int, list[tuple[int, int]]]] = field(default_factory=list)


def _layout(path: Path, fmt: str, max_frames: int) -> _Layout:
    """Walk the container structure without decoding: cheap, bounded, and the only
    way to count frames of a hostile GIF/TIFF without Pillow parsing each of them."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            scan = _SCANNERS.get(fmt)
            return scan(data, max_frames) if scan else _Layout()
        except (IndexError, struct.error):
            # Truncated structure: Pillow will say more precisely what is wrong.
            return _Layout()


# A marker inside entropy-coded data: 0xFF followed by neither a stuffed zero, a
# restart marker nor another fill 0xFF.
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


#: JPEG APPn/COM segments by marker and signature -> the metadata they hold (None:
#: part of the image structure).
_JPEG_SEGMENTS: list[tuple[int, bytes, str | None]] = [
    (0xE0, b"JFIF\x00", None),
    (0xE0, b"JFXX\x00", None),
    (0xEE, b"Adobe", None),
    (0xE1, b"Exif\x00", "EXIF"),
    (0xE1, b"http://ns.adobe.com/xap/1.0/\x00", "XMP"),
    (0xE1, b"http://ns.adobe.com/xmp/extension/\x00", "XMP"),
    (0xE2, b"ICC_PROFILE\x00", "ICC profile"),
    (0xE2, b"MPF\x00", "MPF index"),
    (0xED, b"Photoshop 3.0\x00", "Photoshop/IPTC"),
]


def _jpeg_segment(marker: int, payload: bytes) -> str | None:
    if marker == 0xFE:
        return "comment"
    for known, signature, name in _JPEG_SEGMENTS:
        if marker == known and payload.startswith(signature):
            return name
    return f"APP{marker - 0xE0} segment"


def _scan_jpeg(data: Any, _max_frames: int) -> _Layout:
    pos, size, scans, segments = 2, len(data), 0, 0
    meta: list[str] = []
    while pos + 1 < size:
        if data[pos] != 0xFF:
            # libjpeg skips bytes before a marker ("extraneous bytes"), and so do
            # the scans counted here: a stray byte once hid 3,000 scans (86 s)
            pos = data.find(b"\xff", pos)
            if pos < 0:
                return _Layout(None, 1, meta=meta)
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return _Layout(pos + 2, 1, meta=meta)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            segments += 1
            if segments > MAX_JPEG_SEGMENTS:
                raise Refused(f"more than {MAX_JPEG_SEGMENTS} application or comment segments")
            name = _jpeg_segment(marker, bytes(data[pos + 4 : pos + 4 + min(length - 2, 40)]))
            if name and name not in meta:
                meta.append(name)
        pos += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data up to the next real marker
            scans += 1
            if scans > MAX_JPEG_SCANS:
                # the decoder goes over the whole image again for every scan
                raise Refused(f"more than {MAX_JPEG_SCANS} scans (a decoding-time bomb)")
            found = _JPEG_MARKER.search(data, pos)
            if not found:
                return _Layout(None, 1, meta=meta)
            pos = found.start()
    return _Layout(None, 1, meta=meta)


def _scan_png(data: Any, _max_frames: int) -> _Layout:
    pos, size, declared = 8, len(data), 0
    chunks: dict[bytes, int] = {}
    header = None
    idat: list[tuple[int, int]] = []
    frame_data: list[tuple[int, int, list[tuple[int, int]]]] = []
    count = compressed = 0
    while pos + 8 <= size:
        length, ctype = struct.unpack_from(">I4s", data, pos)
        chunks[ctype] = chunks.get(ctype, 0) + 1
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise Refused(f"more than {MAX_PNG_CHUNKS} chunks")
        if ctype in _PNG_COMPRESSED:
            compressed += 1
            if compressed > MAX_PNG_COMPRESSED_CHUNKS:
                raise Refused(
                    f"more than {MAX_PNG_COMPRESSED_CHUNKS} compressed text or ICC chunks"
                )
        if ctype == b"acTL":
            (declared,) = struct.unpack_from(">I", data, pos + 8)
        elif ctype == b"IHDR" and header is None:
            header = struct.unpack_from(">IIBBxxB", data, pos + 8)
        elif ctype == b"IDAT":
            if not idat and frame_data and not frame_data[-1][2]:
                frame_data.pop()  # (the first frame is the image data: checked as such)
            idat.append((pos + 8, length))
        elif ctype == b"fcTL" and length >= 20:
            width, height, x, y = struct.unpack_from(">IIII", data, pos + 12)
            if header is not None and (x + width > header[0] or y + height > header[1]):
                # (a frame larger than the canvas: its data was inflated to its declared
                # size, 4 GiB from 4 MB, before Pillow refused it)
                raise Refused(
                    f"an animation frame of {width}x{height} at {x},{y} outside the image"
                )
            frame_data.append((width, height, []))
        elif ctype == b"fdAT" and length >= 4 and frame_data:
            frame_data[-1][2].append((pos + 12, length - 4))  # (after its sequence number)
        pos += 12 + length
        if ctype == b"IEND":
            break
    else:
        pos = None
    frames = max(1, chunks.get(b"fcTL", 0), declared)
    return _Layout(pos, frames, chunks, header=header, data=idat, frame_data=frame_data)


#: Samples per pixel of each PNG colour type.
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7 passes: first column and row, then the steps between them.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2))
_ADAM7 += ((0, 1, 1, 2),)


def _check_png_data(path: Path, layout: _Layout) -> None:
    """Refuse a PNG whose image data, or an APNG frame's data, holds fewer bytes than
    the rows of its size need. Pillow takes the end of the compressed stream for the
    end of the image and pads the rows left, truncated or not (a 1000-row image of
    one row came out rebuilt; a frame cut short, with the rows of the frame before)."""
    if layout.header is None or not layout.data:
        return  # (Pillow says what is wrong)
    width, height, depth, colour, interlaced = layout.header
    bits = _PNG_SAMPLES.get(colour, 4) * depth
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for w, h, chunks in [(width, height, layout.data), *layout.frame_data]:
            short = _png_data_short(data, chunks, w, h, bits, interlaced)
            if short is not None:
                got, expected = short
                raise Refused(
                    f"the image data is cut short: {got} bytes of the {expected} its "
                    f"{w}x{h} pixels need (truncated)"
                )


def _png_data_short(
    data: Any, chunks: list[tuple[int, int]], width: int, height: int, bits: int, interlaced: int
) -> tuple[int, int] | None:
    """(what the data of ``chunks`` inflates to, what rows of ``width`` x ``height``
    pixels of ``bits`` need) when it is less; None when not, or when the data is not
    a valid stream (Pillow says what is wrong)."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        columns = (width - x0 + dx - 1) // dx if width > x0 else 0
        rows = (height - y0 + dy - 1) // dy if height > y0 else 0
        if columns and rows:
            expected += rows * (1 + (columns * bits + 7) // 8)
    got = 0
    inflater = zlib.decompressobj()
    try:
        for start, length in chunks:
            pending = data[start : start + length]
            while pending and got < expected:
                got += len(inflater.decompress(pending, 1 << 20))
                pending = inflater.unconsumed_tail
            if got >= expected or inflater.eof:
                break
    except zlib.error:
        return None
    return (got, expected) if got < expected else None


#: A GIF block's introducer: extension, image descriptor, trailer.
_GIF_BLOCK = re.compile(rb"[\x21\x2c\x3b]")
#: Bytes between blocks (none in a GIF any writer makes) tolerated in all.
_GIF_JUNK = 65536


def _scan_gif(data: Any, max_frames: int) -> _Layout:
    size = len(data)
    skipped = 0
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = extension_blocks = data_blocks = 0
    meta: list[str] = []
    # (Pillow grows the canvas to a frame that reaches beyond the logical screen)
    width, height = struct.unpack_from("<HH", data, 6)
    while pos < size:
        block = data[pos]
        if block == 0x3B:  # trailer
            return _Layout(pos + 1, max(frames, 1), meta=meta, canvas=(width, height))
        if block == 0x2C:  # image descriptor
            frames += 1
            if frames > max_frames:
                return _Layout(None, frames, meta=meta)
            if pos + 10 > size:
                break
            left, top, w, h = struct.unpack_from("<4H", data, pos + 1)
            width, height = max(width, left + w), max(height, top + h)
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            pos += 1  # LZW minimum code size
        elif block == 0x21:  # extension: label, then sub-blocks
            if pos + 3 > size:
                break  # (cut short: the canvas so far is kept)
            label = data[pos + 1]
            name = None
            if label == 0xFE:
                name = "comment"
            elif label == 0x01:
                name = "plain text extension"
            elif label == 0xFF:
                app = bytes(data[pos + 3 : pos + 3 + min(data[pos + 2], 11)])
                if app not in (b"NETSCAPE2.0", b"ANIMEXTS1.0"):  # loop count: structure
                    name = f"application extension {app.decode('latin-1')!r}"
            if name and name not in meta:
                meta.append(name)
            pos += 2
        else:
            # Pillow skips a byte it does not know, one at a time, and reads the
            # frames after it (a stray byte hid 40 frames growing the canvas): so
            # does the scan, to the next block (a search, not a loop in Python);
            # past a bound, junk it is (Pillow took 6 s over 50 MiB of it).
            found = _GIF_BLOCK.search(data, pos + 1)
            skipped += (found.start() if found else size) - pos
            if skipped > _GIF_JUNK:
                raise Refused(f"more than {_GIF_JUNK} bytes between the blocks of the GIF")
            if found is None:
                break
            pos = found.start()
            continue
        # Data sub-blocks, counted as they come (Pillow reads each one in Python).
        extension = block == 0x21
        if extension:
            left = MAX_GIF_EXTENSION_BLOCKS - extension_blocks
        else:
            left = MAX_GIF_DATA_BLOCKS - data_blocks
        count = 0
        while pos < size and data[pos]:
            pos += data[pos] + 1
            count += 1
            if count > left:
                raise Refused(
                    f"more than {MAX_GIF_EXTENSION_BLOCKS} data sub-blocks in the "
                    "extensions of the GIF (comments, application data)"
                    if extension
                    else f"more than {MAX_GIF_DATA_BLOCKS} sub-blocks of image data in the GIF"
                )
        if extension:
            extension_blocks += count
        else:
            data_blocks += count
        pos += 1
    return _Layout(None, max(frames, 1), meta=meta, canvas=(width, height))


def _scan_webp(data: Any, max_frames: int) -> _Layout:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size + (riff_size & 1)
    pos, frames, others, first = 12, 0, 0, b""
    canvas: tuple[int, int] | None = None
    while pos + 8 <= min(end, len(data)):
        ctype, length = struct.unpack_from("<4sI", data, pos)
        if ctype != b"ANMF":
            others += 1
            if others > MAX_WEBP_CHUNKS:
                raise Refused(f"more than {MAX_WEBP_CHUNKS} chunks besides the frames of the WebP")
        if ctype == b"VP8X" and canvas is None and length >= 10:
            canvas = (
                int.from_bytes(data[pos + 12 : pos + 15], "little") + 1,
                int.from_bytes(data[pos + 15 : pos + 18], "little") + 1,
            )
        elif ctype == b"VP8 " and canvas is None and length >= 10:
            # a simple lossy file: the key frame's header (start code, 14-bit sizes)
            if data[pos + 11 : pos + 14] == b"\x9d\x01\x2a":
                width, height = struct.unpack_from("<HH", data, pos + 14)
                canvas = (width & 0x3FFF, height & 0x3FFF)
        elif ctype == b"VP8L" and canvas is None and length >= 5:
            # a simple lossless file: signature, then 14-bit sizes minus one
            if data[pos + 8] == 0x2F:
                (bits,) = struct.unpack_from("<I", data, pos + 9)
                canvas = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif ctype == b"ANMF":
            frames += 1
            if frames > max_frames:
                return _Layout(None, frames)  # (refused: no need to read on)
            if not first:  # the frame's own chunks follow its 16-byte header
                sub = pos + 24
                while sub + 8 <= pos + 8 + length and not first:
                    stype, slen = struct.unpack_from("<4sI", data, sub)
                    first = stype if stype in (b"VP8 ", b"VP8L") else b""
                    sub += 8 + slen + (slen & 1)
        elif ctype in (b"VP8 ", b"VP8L") and not first:
            first = ctype
        pos += 8 + length + (length & 1)
    return _Layout(end, max(frames, 1), {first: 1} if first else {}, canvas=canvas)


def _scan_tiff(data: Any, max_frames: int) -> _Layout:
    order = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack_from(order + "H", data, 2)
    big = version == 43
    (offset,) = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)
    seen: set[int] = set()
    frames = strips = entries = 0
    while offset and offset not in seen and offset < len(data):
        seen.add(offset)
        frames += 1
        if frames > max_frames:
            break
        if big:
            (count,) = struct.unpack_from(order + "Q", data, offset)
            entry, size, first = order + "HHQ", 20, offset + 8
            (offset,) = struct.unpack_from(order + "Q", data, offset + 8 + 20 * count)
        else:
            (count,) = struct.unpack_from(order + "H", data, offset)
            entry, size, first = order + "HHI", 12, offset + 2
            (offset,) = struct.unpack_from(order + "I", data, offset + 2 + 12 * count)
        entries += count
        if count > _TIFF_MAX_ENTRIES or entries > _TIFF_MAX_TOTAL_ENTRIES:
            # (Pillow reads every entry in Python, twice: 200 pages of 4,000 took 15 s)
            raise Refused(f"image directories of {entries} entries in all")
        for at in range(first, first + size * count, size):
            tag, _, values = struct.unpack_from(entry, data, at)
            if tag in _TIFF_OFFSETS:
                strips += values
                if strips > _TIFF_MAX_STRIPS:
                    # Pillow makes a decoding tile of each, in Python, whatever the
                    # image's size: 4 million offsets of a 16 x 2 image raised a
                    # MemoryError (and pages just under the limit each: 1.5 s a page)
                    raise Refused(f"{strips} strips or tiles in all, more than {_TIFF_MAX_STRIPS}")
    return _Layout(None, max(frames, 1))


#: BMP compressions Pillow decodes in Python (RLE8, RLE4), and the pixels allowed them.
_BMP_RLE = (1, 2)
_BMP_RLE_PIXELS = 16_000_000
#: StripOffsets, TileOffsets.
_TIFF_OFFSETS = (273, 324)
_TIFF_MAX_STRIPS = 100_000
#: Entries of one image directory (writers use tens).
_TIFF_MAX_ENTRIES = 4096
#: ... and of all of them (a page rarely holds more than 30).
_TIFF_MAX_TOTAL_ENTRIES = 50_000
#: Compressed ancillary PNG chunks: see MAX_PNG_COMPRESSED_CHUNKS.
_PNG_COMPRESSED = (b"zTXt", b"iTXt", b"iCCP")


_SCANNERS = {
    "JPEG": _scan_jpeg,
    "PNG": _scan_png,
    "GIF": _scan_gif,
    "WEBP": _scan_webp,
    "TIFF": _scan_tiff,
}


# ---------------------------------------------------------------------- bomb checks


#: The PNG chunks Pillow reads EXIF from (eXIf, and text chunks holding a "Raw
#: profile type exif").
_PNG_EXIF_CHUNKS = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")


def _check_sizes(
    img: Image.Image,
    fmt: str,
    limits: _Limits,
    left: int | None,
    layout: _Layout,
) -> int:
    """Refuse bombs from the headers; return the number of frames to rebuild.
    ``layout.canvas``: what the frames grow the canvas to (a GIF frame beyond the
    logical screen: Pillow enlarges the canvas when it comes to it)."""
    canvas = layout.canvas
    if fmt == "JPEG":
        frames = 1  # an MPO's extra pictures are dropped, never decoded
    else:
        frames = getattr(img, "n_frames", 1)
    if frames > limits.frames:
        raise Refused(f"{frames} frames, more than {limits.frames} (max_image_frames)")
    if fmt == "BMP" and img.info.get("compression") in _BMP_RLE:
        width, height = img.size
        if width * height > _BMP_RLE_PIXELS:
            # Pillow decodes RLE in Python, a pixel or a padding byte at a time: a
            # 41 KB 10000 x 10000 image took 17 s
            raise Refused(
                f"an RLE-compressed BMP of {width}x{height} pixels, more than {_BMP_RLE_PIXELS}"
            )
    sizes = [img.size]
    depth = 4  # bytes a decoded pixel of a TIFF page takes (see _decode_bytes)
    if fmt == "TIFF" and frames > 1:
        # Pages of a TIFF have their own sizes and modes; seeking reads an IFD,
        # decodes nothing.
        sizes = []
        modes = set()
        for index in range(frames):
            img.seek(index)
            sizes.append(img.size)
            modes.add(img.mode)
        img.seek(0)
        depth = max(_PIXEL_BYTES.get(mode, 4) for mode in modes)
    else:
        # GIF, APNG and WebP frames are all composited onto the canvas.
        if canvas is not None:
            sizes = [(max(img.size[0], canvas[0]), max(img.size[1], canvas[1]))]
        sizes = sizes * frames
    total = 0
    for width, height in sizes:
        if width <= 0 or height <= 0:
            raise Refused(f"invalid image size {width}x{height}")
        if width * height > limits.pixels:
            raise Refused(
                f"{width}x{height} pixels is more than {limits.pixels} (max_image_pixels)"
            )
        total += width * height
    if total > limits.total:
        raise Refused(
            f"{frames} frames of {total} pixels in all, more than {limits.total} "
            "(max_image_total_pixels)"
        )
    # (the pages of a TIFF are decoded one at a time, the largest one at most)
    canvas = max(sizes, key=lambda size: size[0] * size[1]) if fmt == "TIFF" else sizes[0]
    extra = 0  # bytes per pixel one frame takes besides its decoding and copy
    png = fmt == "PNG"
    if frames == 1 and (not png or any(c in layout.chunks for c in _PNG_EXIF_CHUNKS)):
        if png:
            # Pillow looks for a PNG's EXIF after the image data too: getexif()
            # decodes the pixels, after this check (counting a turn). Without such a
            # chunk there is no orientation to read.
            _check_memory(fmt, frames, total, canvas, extra + 4, left, limits)
        if img.getexif().get(_ORIENTATION_TAG, 1) != 1:
            extra += 4  # (an EXIF orientation is applied to the pixels: one more copy)
    if fmt == "JPEG" and ("progressive" in img.info or "progression" in img.info):
        # libjpeg keeps the whole image's coefficients to decode progressive scans,
        # and again to write them: about twice the pixels (more for CMYK)
        extra += 12 if img.mode == "CMYK" else 8
    _check_memory(fmt, frames, total, canvas, extra, left, limits, depth)
    return frames


def _check_memory(
    fmt: str,
    frames: int,
    total: int,
    canvas: tuple[int, int],
    extra: int,
    left: int | None,
    limits: _Limits,
    depth: int = 4,
) -> None:
    """Refuse an animation (or multi-page TIFF) whose decoding would take more than
    ``max_image_animation_mb``, and any image whose decoding would not fit in what
    this worker had left before the file was opened (``left``: :func:`_memory_left`).
    ``depth``: the bytes a decoded pixel of a multi-page TIFF's pages takes at most."""
    need = _decode_bytes(fmt, frames, total, canvas, extra, depth)
    width, height = canvas
    if left is not None and need > left:
        raise Refused(
            f"decoding {frames} frame(s) of {width}x{height} pixels takes about "
            f"{need >> 20} MiB, more than the {max(left, 0) >> 20} MiB left to this worker "
            "(cdr.memory_limit_mb)"
        )
    if frames > 1 and need > limits.animation:
        raise Refused(
            f"decoding {frames} frames of up to {width}x{height} pixels takes about "
            f"{need >> 20} MiB, more than {limits.animation >> 20} MiB "
            "(max_image_animation_mb)"
        )


#: Bytes that decoding and re-encoding an animation take, per pixel of all frames and
#: per pixel of the canvas they are composited on (Pillow keeps the canvas, the frame
#: before it, the decoded frames and the encoder's copies). Measured upper bounds.
_DECODE_BYTES = {"GIF": (6, 16), "WEBP": (4, 36), "PNG": (12, 12), "TIFF": (4, 4)}
#: Bytes a pixel takes as Pillow stores it, when not 4: the pages of a multi-page TIFF
#: are kept so until the new file is written. A bilevel or grey scan takes a quarter
#: of an RGB one (16 A4 pages at 300 dpi, bilevel: 150 MiB, where 4 bytes a pixel
#: said 564 MiB and refused the document).
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
#: One frame: decoded and copied (8 bytes per pixel), plus what _check_sizes adds (a
#: turned picture, progressive JPEG); a WebP is decoded through Pillow's animation
#: decoder, with its two canvases, whatever else.
_ONE_FRAME_BYTES = 8
_WEBP_FRAME_BYTES = 25
_ORIENTATION_TAG = 0x0112


def _decode_bytes(
    fmt: str, frames: int, total: int, canvas: tuple[int, int], extra: int = 0, depth: int = 4
) -> int:
    """About how many bytes decoding and re-encoding an image takes at most
    (``extra``: bytes per pixel one frame takes besides; ``depth``: bytes a decoded
    pixel of a multi-page TIFF takes)."""
    if frames == 1:
        if fmt == "WEBP":
            return _WEBP_FRAME_BYTES * total
        return (_ONE_FRAME_BYTES + extra) * total
    per_pixel, per_canvas_pixel = _DECODE_BYTES.get(fmt, (_ONE_FRAME_BYTES, 0))
    if fmt == "TIFF":
        # Every page is held decoded; the page being read or written needs its
        # buffers besides (4 bytes a pixel of the largest page covers them).
        per_pixel = min(per_pixel, depth)
    return per_pixel * total + per_canvas_pixel * canvas[0] * canvas[1]


def _memory_left() -> int | None:
    """Bytes of address space this process may still take (a CDR worker runs under
    ``RLIMIT_AS``: ``cdr.memory_limit_mb``), or None when it is not limited. An image
    that cannot fit is refused before decoding, with the reason, rather than failing
    the worker half-way."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None
    return soft - used


# ------------------------------------------------------------------------- metadata


#: PNG ancillary chunks that describe how to show the pixels (kept or re-derived by
#: the encoder, never reported): everything else ancillary is metadata.
PNG_RENDERING_CHUNKS = {
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"hIST", b"pHYs", b"sPLT",
    b"acTL", b"fcTL", b"fdAT", b"cICP", b"mDCv", b"cLLi",
}  # fmt: skip
PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _metadata(img: Image.Image, info: dict[str, Any], fmt: str, layout: _Layout) -> list[str]:
    """Names of the kinds of metadata present, read from the headers (and, for PNG,
    from the chunk list, which includes chunks after the image data)."""
    if fmt == "PNG":
        return _png_metadata(layout.chunks)
    found: list[str] = []
    if info.get("exif"):
        found.append("EXIF")
    if info.get("icc_profile"):
        found.append("ICC profile")
    if info.get("xmp") or info.get("XML:com.adobe.xmp"):
        found.append("XMP")
    if info.get("comment"):
        found.append("comment")
    if fmt in ("JPEG", "GIF"):
        found = _merge(found, layout.meta)
    elif fmt == "TIFF":
        tags = getattr(img, "tag_v2", {})
        found = _merge(found, [name for tag, name in TIFF_METADATA_TAGS.items() if tag in tags])
    return found


def _png_metadata(chunks: dict[bytes, int]) -> list[str]:
    found: list[str] = []
    if chunks.get(b"eXIf"):
        found.append("EXIF")
    if chunks.get(b"iCCP"):
        found.append("ICC profile")
    texts = sum(chunks.get(c, 0) for c in PNG_TEXT_CHUNKS)
    if texts:
        found.append(f"text chunks ({texts})")
    others = sorted(
        c.decode("latin-1")
        for c in chunks
        if c[:1].islower()  # ancillary
        and c not in PNG_RENDERING_CHUNKS
        and c not in PNG_TEXT_CHUNKS
        and c not in (b"eXIf", b"iCCP")
    )
    found += [f"{name} chunk" for name in others]
    return found


def _merge(first: list[str], second: list[str]) -> list[str]:
    return first + [name for name in second if name not in first]


# ------------------------------------------------------------------------ encoding


def _save_options(
    img: Image.Image, info: dict[str, Any], fmt: str, layout: _Layout, found: list[str], keep: bool
) -> tuple[dict[str, Any], list[str], int]:
    """The encoder options: how the original was encoded (quality tables, compression,
    resolution), plus the metadata when the policy keeps it. Returns the options, the
    names of the metadata passed on, and the EXIF orientation to apply (0: none).
    ``info`` is the first frame's (``img.info`` changes as frames are read)."""
    options: dict[str, Any] = {}
    kept: list[str] = []
    if info.get("dpi") and fmt in ("JPEG", "PNG"):
        options["dpi"] = tuple(float(v) for v in info["dpi"])
    if fmt == "JPEG":
        # Re-using the original quantisation tables and chroma subsampling keeps the
        # quality (and size) of the source; no generic "quality" guess.
        if getattr(img, "quantization", None):
            options["qtables"] = img.quantization
        else:
            options["quality"] = LOSSY_QUALITY
        sampling = JpegImagePlugin.get_sampling(img)
        if sampling != -1:
            options["subsampling"] = sampling
        if info.get("progressive") or info.get("progression"):
            options["progressive"] = True
    elif fmt == "TIFF":
        options["compression"] = info.get("compression", "raw")
        # The resolution as it was, unit included (Pillow's "dpi" would force inches).
        tags = getattr(img, "tag_v2", {})
        for tag, name in ((282, "x_resolution"), (283, "y_resolution"), (296, "resolution_unit")):
            if tag in tags:
                options[name] = tags[tag]
        if options["compression"] == "jpeg":
            options["quality"] = LOSSY_QUALITY
    elif fmt == "WEBP":
        if b"VP8L" in layout.chunks:
            options["lossless"] = True
            options["exact"] = True  # keep the colour of fully transparent pixels
        else:
            options["quality"] = LOSSY_QUALITY

    orientation = 0
    if not keep:
        # (Pillow itself applies a TIFF's Orientation tag when it decodes the pixels.)
        if info.get("exif") and fmt != "TIFF":
            with contextlib.suppress(Exception):  # unreadable EXIF: nothing to apply
                value = img.getexif().get(0x0112, 1)
                orientation = value if value in ORIENTATION else 0
        return options, kept, orientation

    # "allow": pass on what each format's writer can write.
    exif = info.get("exif") or (img.info.get("exif") if fmt == "PNG" else None)
    if exif and fmt in ("JPEG", "PNG", "WEBP"):
        options["exif"] = exif
        kept.append("EXIF")
    if info.get("icc_profile") and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        options["icc_profile"] = info["icc_profile"]
        kept.append("ICC profile")
    xmp = info.get("xmp")
    if xmp and fmt in ("JPEG", "WEBP"):  # PNG's XMP is one of its text chunks
        options["xmp"] = xmp
        kept.append("XMP")
    if info.get("comment") and fmt in ("JPEG", "GIF"):
        options["comment"] = info["comment"]
        kept.append("comment")
    if fmt == "PNG":
        # All text chunks, including those after the image data (read by now).
        texts = getattr(img, "text", {})
        if texts:
            pnginfo = PngImagePlugin.PngInfo()
            for key, value in texts.items():
                pnginfo.add_text(key, value)  # an iTXt value stays an iTXt chunk
            options["pnginfo"] = pnginfo
            kept += [name for name in found if name.startswith("text chunks")]
    if fmt == "TIFF":
        tags = getattr(img, "tag_v2", {})
        tiffinfo = {tag: tags[tag] for tag in TIFF_KEPT_TAGS if tag in tags}
        if tiffinfo:
            options["tiffinfo"] = tiffinfo
            kept += [TIFF_METADATA_TAGS[tag] for tag in tiffinfo]
    return options, kept, 0


@dataclass
class _Frame:
    image: Image.Image
    duration: float  # milliseconds


def _frames(img: Image.Image, count: int, fmt: str) -> list[_Frame]:
    """Decode each frame into a fresh image that carries only pixels (and palette).

    ``Image.copy`` would carry ``info`` along, and several Pillow writers fall back to
    ``im.info`` for comments and ICC profiles: the copy's ``info`` is replaced with
    only what describes pixels (transparency)."""
    out: list[_Frame] = []
    for index in range(count):
        if count > 1:
            img.seek(index)
        img.load()
        fresh = img.copy()
        fresh.info = {}
        if (
            "transparency" in img.info
            and fmt in ("PNG", "GIF")
            and fresh.mode in ("P", "L", "RGB", "1", "I", "I;16")
        ):
            fresh.info["transparency"] = img.info["transparency"]
        out.append(_Frame(fresh, float(img.info.get("duration", 0) or 0)))
    return out


def _drop_unused_colours(frames: list[_Frame], background: Any = None) -> Any:
    """Keep in each palette frame only the palette entries its pixels use (in their
    order, the pixels renumbered), with their transparency: an unused entry shows
    nothing, so its bytes (768 with their alpha, written as they were by the PNG,
    TIFF and BMP writers) could carry anything past the rebuild. Frames sharing a
    palette keep sharing one (an APNG has a single palette). Replaces the frames in
    ``frames`` (no second copy held) and returns ``background`` (a GIF's palette
    index) renumbered, or None when no pixel has that colour."""
    groups: dict[tuple[str, bytes], list[int]] = {}
    for index, frame in enumerate(frames):
        image = frame.image
        if image.mode == "P" and image.palette is not None:
            mode = image.palette.mode
            groups.setdefault((mode, bytes(image.getpalette(mode) or b"")), []).append(index)
    for (mode, palette), members in groups.items():
        used: set[int] = set()
        for index in members:
            # (a histogram, in C: cheap next to decoding)
            used.update(colour for _, colour in frames[index].image.getcolors(256) or [])
        kept = sorted(used)
        bands = len(mode)
        if kept == list(range(len(palette) // bands)):
            continue  # every entry is used: nothing to drop
        # An index past the palette's end shows as opaque black, as Pillow draws it.
        black = b"\x00\x00\x00\xff"[:bands]
        new_palette = b"".join(palette[i * bands : (i + 1) * bands] or black for i in kept)
        renumber = {old: new for new, old in enumerate(kept)}
        lut = [renumber.get(i, 0) for i in range(256)]
        for index in members:
            image = frames[index].image
            transparency = image.info.get("transparency")
            if kept != list(range(len(kept))):
                image = image.point(lut)  # (on a palette image: maps the indices)
            image.putpalette(new_palette, mode)
            image.info = {}
            if isinstance(transparency, bytes):
                # (an entry past the end of the PNG's tRNS chunk is opaque)
                alpha = bytes(transparency[i] if i < len(transparency) else 255 for i in kept)
                if alpha.rstrip(b"\xff"):
                    image.info["transparency"] = alpha.rstrip(b"\xff")
            elif isinstance(transparency, int) and transparency in renumber:
                image.info["transparency"] = renumber[transparency]
            frames[index] = _Frame(image, frames[index].duration)
        if isinstance(background, int) and members[0] == 0:
            background = renumber.get(background)
    return background


def _encode(
    frames: list[_Frame], dest: Path, fmt: str, options: dict[str, Any], info: dict[str, Any]
) -> None:
    if fmt == "GIF":
        frames = [_Frame(_gif_palette(f.image), f.duration) for f in frames]
    first = frames[0].image
    options = dict(options)
    if "transparency" in first.info:
        options["transparency"] = first.info["transparency"]
    if len(frames) > 1:
        options["save_all"] = True
        options["append_images"] = [f.image for f in frames[1:]]
        if fmt in ("GIF", "PNG", "WEBP"):
            options["duration"] = [round(f.duration) for f in frames]
            if "loop" in info:
                options["loop"] = info["loop"]
        if fmt == "GIF" and any(_see_through(f.image) for f in frames):
            # Each frame is whole (composed as shown). Without disposal the writer
            # draws a frame over the one before, and where a frame turns transparent
            # the earlier pixels stayed: restored to the background after each one,
            # every frame shows as it was decoded.
            options["disposal"] = 2
        if fmt == "PNG" and info.get("default_image"):
            options["default_image"] = True
    elif fmt == "GIF" and first.mode == "P" and "background" in info:
        options["background"] = info["background"]
    try:
        first.save(dest, format=fmt, **options)
    except (OSError, ValueError, KeyError) as exc:
        if fmt != "TIFF" or options.get("compression") in (None, "raw"):
            raise Refused(f"cannot re-encode a {first.mode} image as {fmt}: {exc}") from None
        # A compression libtiff cannot write for this mode: fall back to none.
        options["compression"] = "raw"
        options.pop("quality", None)
        first.save(dest, format=fmt, **options)


def _see_through(image: Image.Image) -> bool:
    """Whether a frame may have transparent pixels."""
    return "transparency" in image.info or image.mode in ("RGBA", "LA", "PA")


def _gif_palette(image: Image.Image) -> Image.Image:
    """An RGB frame (one whose palette differs from the first frame's) reduced to a
    palette by the fast octree. Pillow's GIF writer would use its adaptive median cut:
    17 ms for a 447x447 frame, and 700 frames of one-pixel changes (290 KB) took 15 s;
    the octree takes a thirteenth of that. (Frames with transparency or alpha keep
    the writer's own reduction.)"""
    if image.mode != "RGB" or "transparency" in image.info:
        return image
    return image.quantize(256, method=Image.Quantize.FASTOCTREE)


def _verify(dest: Path, fmt: str, size: tuple[int, int]) -> None:
    """The new file must open as the same format and size (headers only)."""
    with Image.open(dest, formats=[fmt]) as out:
        if out.size != size:
            raise Refused(f"the rebuilt image is {out.size}, expected {size}")
