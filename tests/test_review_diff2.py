"""Regressions found by the second review of one day's changes (fd26f30..)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from tests.plugins.test_media import _disarm


def _tiff(mode: str, size: tuple[int, int], pages: int, compression: str) -> bytes:
    page = Image.new(mode, size, "white")
    ImageDraw.Draw(page).text((10, 10), "scanned page", fill="black")
    buf = io.BytesIO()
    page.save(
        buf,
        "TIFF",
        save_all=True,
        append_images=[page] * (pages - 1),
        compression=compression,
        dpi=(300, 300),
    )
    return buf.getvalue()


def test_a_multi_page_bilevel_scan_is_rebuilt(tmp_path: Path) -> None:
    """16 A4 pages scanned at 300 dpi, bilevel: the animation limit counted every
    page at 4 bytes a pixel (564 MiB, over the 512 MiB of max_image_animation_mb),
    but Pillow holds a bilevel page at 1 byte a pixel (150 MiB measured): a scan
    to TIFF, rebuilt the day before, was refused."""
    result, dest = _disarm(tmp_path, _tiff("1", (2480, 3508), 16, "group4"), "tiff")
    assert result.outcome == "rebuilt", result
    with Image.open(dest) as out:
        assert out.n_frames == 16 and out.mode == "1"


def test_the_animation_limit_counts_colour_pages_at_four_bytes(tmp_path: Path) -> None:
    """The limit still holds: RGB pages count 4 bytes a pixel, grey and bilevel
    ones 1 (4 pages of 1000x1000: about 20 MiB as RGB, 8 MiB bilevel)."""
    for mode, outcome in (("RGB", "unprocessable"), ("L", "rebuilt"), ("1", "rebuilt")):
        data = _tiff(mode, (1000, 1000), 4, "tiff_lzw")
        result, _ = _disarm(tmp_path, data, "tiff", max_image_animation_mb=16)
        assert result.outcome == outcome, (mode, result)
    # A grey document with one colour page counts as colour.
    buf = io.BytesIO()
    grey = Image.new("L", (1000, 1000), 255)
    grey.save(
        buf,
        "TIFF",
        save_all=True,
        append_images=[grey, Image.new("RGB", (1000, 1000)), grey],
        compression="tiff_lzw",
    )
    result, _ = _disarm(tmp_path, buf.getvalue(), "tiff", max_image_animation_mb=16)
    assert result.outcome == "unprocessable", result
    assert "max_image_animation_mb" in result.reason
