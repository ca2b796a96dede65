"""Image and HTML inputs found by an adversarial review: each was expensive far
beyond its size, or made the engine raise."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.plugins.test_media import _disarm


def test_stray_end_tags_do_not_hide_deep_nesting(tmp_path: Path) -> None:
    # "</ul>" closes nothing: a browser nests 100,000 divs (that took ~50 s)
    start = time.perf_counter()
    result, _ = _disarm(tmp_path, b"<div></ul>" * 100_000, "html")
    assert time.perf_counter() - start < 10
    assert result.outcome == "unprocessable", result
    assert "nested" in result.reason


def test_matching_end_tags_still_close(tmp_path: Path) -> None:
    page = b"<html><body>" + b"<div><p>x</p></div>" * 30_000 + b"</body></html>"
    result, _ = _disarm(tmp_path, page, "html")
    assert result.outcome == "rebuilt", result


def test_progressive_jpeg_with_thousands_of_scans_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("L", (512, 512), 0).save(buf, "JPEG", progressive=True, quality=50)
    jpeg = buf.getvalue()
    last = jpeg.rindex(b"\xff\xda")
    data = jpeg[:-2] + jpeg[last:-2] * 2000 + b"\xff\xd9"
    start = time.perf_counter()
    result, _ = _disarm(tmp_path, data, "jpeg")
    assert time.perf_counter() - start < 5
    assert result.outcome == "unprocessable", result
    assert "scans" in result.reason


def test_ordinary_progressive_jpeg_is_rebuilt(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "JPEG", progressive=True)
    result, _ = _disarm(tmp_path, buf.getvalue(), "jpeg")
    assert result.outcome == "rebuilt", result


@pytest.mark.parametrize("label", [b"idna", b"undefined", b"utf-7", b"punycode"])
def test_charset_labels_no_browser_reads_are_ignored(tmp_path: Path, label: bytes) -> None:
    page = (
        b'<html><head><meta charset="' + label + b'"></head><body><p>caf\xc3\xa9</p></body></html>'
    )
    result, dest = _disarm(tmp_path, page, "html")
    assert result.outcome == "rebuilt", result
    assert "café" in dest.read_text("utf-8")


#: Broken images that made Pillow raise outside the errors the engine expected.
CRASHERS = {
    "tiff": (
        "SUkqADwAAACAAAUDKBQSBwWEQeFQaGQmGwuHRGIROHxWJRaKReNRmORiPRuPx2QSORSWQyeSSiTReAgA"
        "CgAAAQMAAQAAAAwAAAABAQMAAQAAAAkAAAACAQMAAwAAALoAAAADAQMAAQAAAAUAAAAGAQMAAQAAAAIA"
        "AAARAQQAAQAAAAgAAAAVAQMAAQAAAAMAAAAWAQMAAQAAAAkAAAAXAQQAAQAAADMAAAAcAQMAAQAAAAEA"
        "AAD8AAAACAAIAAgASUkqADwAAACAB4UDKBQSBwWEQeFQaGQmGwuHf////3xWJRaKReNRmORiPRuPx2QS"
        "ORSWQyeSSiTReAgACgAAAQMAAQADAAwAAAABAQMAAQAAAAkAAAACAQMAAwAAAHoBAAADAQMAAQAAAAUA"
        "AAAGAQMAAQAAAAIAAAARAQQAAQAAAMgAAAMAAQAAAAkAAAAXAQQAAQAAADMAAAAcAQMAAQAAAAEAAAC8"
        "AQAACAAIAAgASUkqADwAAACADwUDKBQSBwWEQeFQaGQmGwuHRGIROHxWJRaKReNRmORiPRuPx2SwORSW"
        "QyeSSiTReAgACgAAAQMAAQAAAAwAAAABAQMAAQAAAAkAAAACAQMAAwAAADoCAAADAQMAAQAAAAUAAAAG"
        "AQMAAQAAAAIAAAARAQQAAQAAAIgBAAAVAQMAAQAAAAMAAAAWAQMAAQAAAAkAAAAXAQQAAQAAADMAAAAc"
        "AQMAAQAAAAEAAAAAAAAACAAIAAgA"
    ),
    "gif": ("R0lGODdhDAAJAIEAAAAAbwAAAAAAAAAAACz//wAADAAJAAAIFAABCBxIsKDBgwgTKlzIsKHDgQEBADs="),
    "webp": (
        "UklGRuoAAABXRUJQVlA4WAoAAAACAADRCwAACKEAQU5JTQYAAAAAAAAAAABBTk1GPgAAAAAAAAkAAAsA"
        "AAgAAAAAAAJWUDggJgAAADABAJ0BKgwACQABQCYliAADcAD++1Xj/O1bH2ff/1q8qvWVdAAAQU5NRjoA"
        "AAAAAAAAAAALAAAIAAAAAAAAVlA4ICIAAAA0AQCdASoMAAkAAAAmJZQAA3AA/vpXd88bzTR+g+K+AAAA"
        "QU5NRjYAAAAAAAAAAAALAAAIAAAAAAAAVlA4IB4AAABUAQCdASoMAAkAAAAmJZQABGGAAP75fZf1aTSJ"
        "AAA="
    ),
}


@pytest.mark.parametrize("kind", sorted(CRASHERS))
def test_broken_images_are_unprocessable_not_raised(tmp_path: Path, kind: str) -> None:
    result, dest = _disarm(tmp_path, base64.b64decode(CRASHERS[kind]), kind)
    assert result.outcome == "unprocessable", result
    assert not dest.exists()
