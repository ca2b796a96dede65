"""The JPEG fast path of gicap-office's image re-encoding (libjpeg-turbo's lossless
transform through PyTurboJPEG), checked with Pillow decodes and a marker walker written
here: pixels identical to the source's decode, only JFIF / ICC / orientation-only EXIF
segments kept, nothing after EOI; JPEGs it must not take (progressive, CMYK, RGB colour
space, arithmetic or lossless frames, corrupt data) get what Pillow's way gives.

Tests that need the TurboJPEG shared library skip without it, and fail instead when
``GICAP_REQUIRE_INTEROP=1`` (CI installs ``libturbojpeg0``)."""

from __future__ import annotations

import io
import os
import random
import struct
from collections.abc import Iterator

import pytest
from gicap_office import _images
from PIL import Image, ImageCms, ImageDraw

from tests.plugins.test_office import TRAILER

SECRETS = (b"secret comment", b"SECRET-XMP", b"SECRET-PHOTOSHOP", b"SECRET-APP15", b"SecretMaker")


def _require_turbojpeg() -> None:
    """Skip without PyTurboJPEG and the TurboJPEG library (fail with
    GICAP_REQUIRE_INTEROP=1)."""
    try:
        from turbojpeg import TurboJPEG

        TurboJPEG()
    except Exception as exc:
        reason = f"TurboJPEG library (libturbojpeg0) or PyTurboJPEG not available: {exc}"
        if os.environ.get("GICAP_REQUIRE_INTEROP", "") == "1":
            pytest.fail(f"{reason} (GICAP_REQUIRE_INTEROP=1)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture
def pillow_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every re-encoding that goes Pillow's way (``_images._encode``)."""
    calls: list[str] = []
    real = _images._encode

    def recording(im: Image.Image, fmt: str, frames: int) -> bytes:
        calls.append(fmt)
        return real(im, fmt, frames)

    monkeypatch.setattr(_images, "_encode", recording)
    yield calls


def _pillow_way(data: bytes, monkeypatch: pytest.MonkeyPatch) -> bytes | None:
    """What ``reencode`` gave before the fast path existed."""
    with monkeypatch.context() as m:
        m.setattr(_images, "_jpeg_transform", lambda data, im: None)
        return _images.reencode(data, "JPEG")


# ----------------------------------------------------------------- marker walker


def _walk(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """(marker, payload) of every segment of a JPEG, and the offset just past EOI."""
    assert data[:2] == b"\xff\xd8", "no SOI"
    pos, found = 2, []
    while True:
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return found, pos + 2
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        found.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:  # entropy-coded data up to the next real marker
            while True:
                pos = data.index(b"\xff", pos)
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    pos += 2
                elif following == 0xFF:
                    pos += 1
                else:
                    break


def _check_clean(out: bytes, allow_adobe: bool = False) -> list[tuple[int, bytes]]:
    """Asserts what the re-encoding may leave in a JPEG; returns its segments."""
    segments, end = _walk(out)
    assert end == len(out), "bytes after EOI"
    assert TRAILER not in out
    for secret in SECRETS:
        assert secret not in out, secret
    for marker, payload in segments:
        assert marker != 0xFE, "COM segment"
        if marker == 0xE0:
            assert payload.startswith(b"JFIF\x00")
        elif marker == 0xE1:
            assert payload.startswith(b"Exif\x00\x00"), "APP1 that is not EXIF (XMP?)"
            exif = Image.Exif()
            exif.load(payload)
            assert set(exif) == {0x0112}, f"EXIF tags {sorted(exif)}"
        elif marker == 0xE2:
            assert payload.startswith(b"ICC_PROFILE\x00")
        elif marker == 0xEE and allow_adobe:
            assert payload.startswith(b"Adobe")
        else:
            assert not 0xE0 <= marker <= 0xEF, f"APP{marker - 0xE0} segment"
    return segments


def _icc_from(segments: list[tuple[int, bytes]]) -> bytes:
    chunks = [p for m, p in segments if m == 0xE2]
    total = {p[13] for p in chunks}
    assert total == {len(chunks)} if chunks else True
    assert [p[12] for p in chunks] == list(range(1, len(chunks) + 1))
    return b"".join(p[14:] for p in chunks)


def _frame_marker(segments: list[tuple[int, bytes]]) -> int:
    (marker,) = [m for m, _ in segments if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC)]
    return marker


# ------------------------------------------------------------------- sources


def _picture(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    rng = random.Random(11)
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(25):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        draw.ellipse([x - 7, y - 5, x + 7, y + 5], fill=tuple(rng.randrange(256) for _ in "rgb"))
    return im.convert(mode)


def _hostile_jpeg(
    size: tuple[int, int] = (97, 65),
    mode: str = "RGB",
    icc: bytes | None = None,
    **save: object,
) -> bytes:
    """A JPEG carrying a comment, a full EXIF block (maker, orientation 6), an XMP
    packet, a Photoshop APP13, an APP15, the given ICC profile and trailing data."""
    exif = Image.Exif()
    exif[0x010F] = "SecretMaker"
    exif[0x0112] = 6
    buf = io.BytesIO()
    kw: dict[str, object] = {"quality": 80, "exif": exif.tobytes(), "comment": b"secret comment"}
    if icc is not None:
        kw["icc_profile"] = icc
    kw.update(save)
    _picture(size, mode).save(buf, "JPEG", **kw)
    data = buf.getvalue()
    extra = (
        _seg(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>SECRET-XMP</x:xmpmeta>")
        + _seg(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00SECRET-PHOTOSHOP")
        + _seg(0xEF, b"SECRET-APP15")
    )
    return data[:2] + extra + data[2:] + TRAILER


def _seg(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ---------------------------------------------------------------- the fast path


@pytest.mark.parametrize(
    "mode,subsampling,size",
    [
        ("RGB", 2, (97, 65)),  # 4:2:0, partial blocks at both edges
        ("RGB", 1, (33, 17)),  # 4:2:2
        ("RGB", 0, (64, 48)),  # 4:4:4
        ("L", 0, (50, 31)),
        ("RGB", 2, (1600, 1200)),
    ],
)
def test_fast_path_pixels_identical_and_only_kept_segments(
    mode: str, subsampling: int, size: tuple[int, int], pillow_calls: list[str]
) -> None:
    _require_turbojpeg()
    icc = _srgb()
    src = _hostile_jpeg(size, mode, icc=icc, subsampling=subsampling, dpi=(300, 150))
    for secret in SECRETS:
        assert secret in src
    out = _images.reencode(src, "JPEG")
    assert out is not None
    assert pillow_calls == [], "the fast path was not taken"
    with Image.open(io.BytesIO(src)) as a, Image.open(io.BytesIO(out)) as b:
        assert b.size == a.size and b.mode == a.mode
        assert a.tobytes() == b.tobytes(), "pixels differ"
        assert b.info.get("dpi") == (300, 150)
        assert b.getexif().get(0x0112) == 6
        assert not b.info.get("progressive")
    segments = _check_clean(out)
    assert _frame_marker(segments) == 0xC0  # baseline, not progressive
    assert [m for m, _ in segments if 0xE0 <= m <= 0xEF] == [0xE0, 0xE1, 0xE2]
    assert _icc_from(segments) == icc


def test_fast_path_writes_the_segments_pillow_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    _require_turbojpeg()
    cases: list[dict[str, object]] = [
        {},
        {"dpi": (72, 72)},
        {"dpi": (200.4, 96)},
        {"icc": _srgb()},
        {"icc": _srgb() + bytes(range(256)) * 600},  # over one APP2 segment
    ]
    for case in cases:
        src = _hostile_jpeg(**case)  # type: ignore[arg-type]
        fast = _images.reencode(src, "JPEG")
        slow = _pillow_way(src, monkeypatch)
        assert fast is not None and slow is not None
        app = [s for s in _walk(fast)[0] if 0xE0 <= s[0] <= 0xEF]
        assert app == [s for s in _walk(slow)[0] if 0xE0 <= s[0] <= 0xEF], case


def test_large_icc_profile_split_over_numbered_segments() -> None:
    _require_turbojpeg()
    icc = _srgb() + bytes(range(256)) * 600  # about 154 KB: three APP2 segments
    src = _hostile_jpeg(icc=icc)
    out = _images.reencode(src, "JPEG")
    assert out is not None
    segments = _check_clean(out)
    chunks = [p for m, p in segments if m == 0xE2]
    assert len(chunks) == 3
    assert all(len(p) + 2 <= 0xFFFF for p in chunks)
    assert _icc_from(segments) == icc
    with Image.open(io.BytesIO(out)) as im:
        assert im.info["icc_profile"] == icc


def test_no_metadata_gives_jfif_only(pillow_calls: list[str]) -> None:
    _require_turbojpeg()
    buf = io.BytesIO()
    _picture((40, 30)).save(buf, "JPEG", quality=90)
    out = _images.reencode(buf.getvalue(), "JPEG")
    assert out is not None and pillow_calls == []
    segments = _check_clean(out)
    assert [m for m, _ in segments if 0xE0 <= m <= 0xEF] == [0xE0]


# ------------------------------------------------------- what takes Pillow's way


def _assert_pillow_way(
    src: bytes, pillow_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> bytes:
    out = _images.reencode(src, "JPEG")
    assert pillow_calls == ["JPEG"], "expected Pillow's way"
    assert out == _pillow_way(src, monkeypatch)
    assert out is not None
    return out


def test_progressive_jpeg_takes_pillow_way(
    pillow_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _hostile_jpeg(progressive=True)
    assert _frame_marker(_walk(src[: -len(TRAILER)])[0]) == 0xC2
    out = _assert_pillow_way(src, pillow_calls, monkeypatch)
    _check_clean(out)
    with Image.open(io.BytesIO(src)) as a, Image.open(io.BytesIO(out)) as b:
        assert a.size == b.size


def test_cmyk_jpeg_takes_pillow_way(
    pillow_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _hostile_jpeg(mode="CMYK")
    out = _assert_pillow_way(src, pillow_calls, monkeypatch)
    _check_clean(out, allow_adobe=True)
    with Image.open(io.BytesIO(out)) as im:
        assert im.mode == "CMYK" and im.size == (97, 65)


def test_rgb_colour_space_jpeg_takes_pillow_way(
    pillow_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_turbojpeg()  # the colour space is read by the library
    src = _hostile_jpeg(keep_rgb=True)
    out = _assert_pillow_way(src, pillow_calls, monkeypatch)
    _check_clean(out)


@pytest.mark.parametrize("frame", [0xC3, 0xC9, 0xCB])  # lossless, arithmetic
def test_other_frame_types_take_pillow_way(
    frame: int, pillow_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = bytearray(_hostile_jpeg())
    at = src.index(b"\xff\xc0")
    src[at + 1] = frame
    out = _images.reencode(bytes(src), "JPEG")
    assert pillow_calls in ([], ["JPEG"])  # Pillow may refuse the header itself
    assert out == _pillow_way(bytes(src), monkeypatch)
    if out is not None:
        _check_clean(out)


def test_twelve_bit_jpeg_refused_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    src = bytearray(_hostile_jpeg())
    at = src.index(b"\xff\xc0")
    src[at + 4] = 12  # sample precision
    assert _images.reencode(bytes(src), "JPEG") == _pillow_way(bytes(src), monkeypatch)


def _scan_start(data: bytes) -> int:
    at = data.index(b"\xff\xda")
    return at + 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]


def test_truncated_scan_same_outcome_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    _require_turbojpeg()
    buf = io.BytesIO()
    _picture((160, 120)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    start = _scan_start(data)
    for cut in (start + 10, (start + len(data)) // 2, len(data) - 2):
        src = data[:cut]
        assert _images.reencode(src, "JPEG") == _pillow_way(src, monkeypatch), cut


def test_garbage_huffman_data_same_outcome_as_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _require_turbojpeg()
    buf = io.BytesIO()
    _picture((160, 120)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    start = _scan_start(data)
    rng = random.Random(5)
    unchanged = 0
    for trial in range(6):
        src = bytearray(data)
        at = start + rng.randrange(20, (len(data) - start) // 2)
        # no 0xFF: the damage stays inside the entropy-coded data
        src[at : at + 40] = bytes(rng.randrange(255) for _ in range(40))
        out = _images.reencode(bytes(src), "JPEG")
        before = _pillow_way(bytes(src), monkeypatch)
        assert (out is None) == (before is None), trial
        unchanged += out == before
        if out is not None:
            _check_clean(out)
            with Image.open(io.BytesIO(out)) as im:
                im.load()
                assert im.size == (160, 120)
    # the library warns about such data: Pillow's way gives exactly the old output
    assert unchanged > 0


def test_two_frame_headers_same_outcome_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _hostile_jpeg()
    at = data.index(b"\xff\xc0")
    length = struct.unpack(">H", data[at + 2 : at + 4])[0]
    sof = bytearray(data[at : at + 2 + length])
    sof[5:9] = struct.pack(">HH", 30, 40)  # another height and width
    src = data[:at] + bytes(sof) + data[at:]
    out = _images.reencode(src, "JPEG")
    assert out == _pillow_way(src, monkeypatch)


# ------------------------------------------------------ the library unavailable


class _Failing:
    def decode_header(self, data: bytes) -> tuple[int, int, int, int]:
        raise OSError("broken library")

    def crop(self, *args: object, **kw: object) -> bytes:
        raise OSError("broken library")


@pytest.mark.parametrize("instance", [False, _Failing()])
def test_library_missing_or_failing_takes_pillow_way(
    instance: object, pillow_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_images, "_turbojpeg", instance)
    src = _hostile_jpeg(icc=_srgb(), dpi=(300, 300))
    out = _images.reencode(src, "JPEG")
    assert pillow_calls == ["JPEG"]
    assert out is not None
    segments = _check_clean(out)
    assert _frame_marker(segments) == 0xC0
    with Image.open(io.BytesIO(out)) as im:
        assert im.size == (97, 65) and im.info.get("dpi") == (300, 300)
