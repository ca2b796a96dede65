"""Regressions found by the second review of one day's changes (fd26f30..)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, ImageDraw

from gicap.server.secure import SecureListener
from gicap.tls import CertificateSettings
from gicap.tls.recheck import ClientRecheck
from tests.plugins.test_media import _disarm
from tests.plugins.test_office_rtf import _run
from tests.plugins.test_office_rtf_review2 import _shape


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
    page at 4 bytes a pixel (564 MiB, over the 512 MiB max_image_animation_mb then was),
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


class _Handler:
    """What SecureListener._recheck reads of a connection."""

    def __init__(self, certificate: bytes, identity: tuple[str, ...]) -> None:
        self.secure = True
        self.untrusted: str | None = None
        self.client_certificate = certificate
        self.client_identity = identity
        self.client_chain: tuple[bytes, ...] | None = ()
        self.peer = "127.0.0.1:1"

    def waiting(self) -> bool:
        return True


class _Greenlet:
    def __init__(self) -> None:
        self.killed = False

    def kill(self, block: bool = True) -> None:
        self.killed = True


class _CountingCheck:
    """A ClientRecheck that refuses one certificate, counting its judgements."""

    def __init__(self) -> None:
        self.calls = 0

    def refusal(
        self, der: bytes | None, identity: tuple[str, ...], now: object, sent: object = ()
    ) -> str | None:
        self.calls += 1
        return "its certificate is revoked by the CRL" if der == b"revoked" else None


def test_a_certificate_change_judges_each_client_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy holds many connections with one certificate. Each one was judged again
    at a certificate change, in the worker's loop: with a CRL of 50,000 entries a
    judgement takes 20 ms (a CRL signature verified, the serial looked up), so 200
    connections of one proxy stopped every transaction of the worker for 4 s."""
    check = _CountingCheck()
    monkeypatch.setattr(ClientRecheck, "between", classmethod(lambda cls, *args: check))
    revoked = [_Handler(b"revoked", ("proxy-a",)) for _ in range(200)]
    trusted = [_Handler(b"trusted", ("proxy-b",)) for _ in range(200)]
    greenlets = {handler: _Greenlet() for handler in revoked + trusted}
    worker = SimpleNamespace(handlers=greenlets)
    settings = CertificateSettings(cafile="ca.pem")
    listener = SecureListener(worker, None, settings, announce=False)  # type: ignore[arg-type]
    listener._recheck(object(), object())  # type: ignore[arg-type]
    assert check.calls == 2
    assert all(h.untrusted and greenlets[h].killed for h in revoked)
    assert not any(h.untrusted or greenlets[h].killed for h in trusted)


#: A picture linked by a shape property, its name or value spelt as readers read it
#: (LibreOffice reads "fill\u67?olor" and "fill{Color}" as fillColor: the property
#: applies). The engine read "pib\u78?ame" as "pibN" (the rest of the text, after the
#: fallback "?", was dropped with it) and ignored the text of a group in the name or
#: the value: the link was kept.
SPELT_LINKED_PICTURES = {
    "fallback-of-an-escape": _shape(
        rb"{\sp{\sn pib\u78?ame}{\sv http://127.0.0.1:9/linked.png}}{\sp{\sn pibFlags}{\sv 10}}"
    ),
    "escape-in-the-value": _shape(rb"{\sp{\sn pibName}{\sv \u104?ttp://127.0.0.1:9/a.png}}"),
    "group-in-the-name": _shape(
        rb"{\sp{\sn pib{Name}}{\sv http://127.0.0.1:9/linked.png}}{\sp{\sn pibFlags}{\sv 10}}"
    ),
    "group-in-the-value": _shape(rb"{\sp{\sn fillBlipName}{\sv {http://127.0.0.1:9/f.png}}}"),
}


@pytest.mark.parametrize("data", SPELT_LINKED_PICTURES.values(), ids=SPELT_LINKED_PICTURES.keys())
def test_a_linked_picture_property_spelt_with_escapes_or_groups_is_removed(
    tmp_path: Path, data: bytes
) -> None:
    outcome, out = _run(tmp_path, data)
    assert outcome == "rebuilt", (outcome, out)
    assert b"127.0.0.1" not in out, out
    assert out.startswith(rb"{\rtf1 a") and out.rstrip().endswith(rb"b\par}")


def test_a_stored_picture_in_a_shape_property_is_no_linked_picture(tmp_path: Path) -> None:
    """The picture a shape stores (pib: a \\pict group in the value) is no text of a
    property, and an empty pibName names nothing."""
    data = _shape(
        rb"{\sp{\sn shapeType}{\sv 75}}{\sp{\sn pibName}{\sv {}}}"
        rb"{\sp{\sn pib}{\sv {\pict\wmetafile8 0100}}}{\sp{\sn fLine}{\sv 0}}"
    )
    outcome, out = _run(tmp_path, data)
    assert b"pibName" in out and b"fLine" in out, (outcome, out)
