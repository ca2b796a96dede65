"""The OOXML engine's shortcuts keep its results: the zip reader's checks (every member
deflated anew on output), the relationship-id scan, and the byte prechecks before
walking a part's tree."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from tests.plugins.test_office import build_docx, build_xlsx, disarm, rezip, switches

gicap_office = pytest.importorskip("gicap_office", reason="gicap-office plugin not installed")
etree = pytest.importorskip("lxml.etree", reason="lxml not installed")
_xml = pytest.importorskip("gicap_office._xml")

XDR = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
STYLES = "word/styles.xml"


def _raw_stream(path: Path, name: str) -> bytes:
    """A member's stored bytes (its deflate stream), read from its local header."""
    data = path.read_bytes()
    info = zipfile.ZipFile(path).getinfo(name)
    nlen, xlen = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + nlen + xlen
    return data[start : start + info.compress_size]


def _zip_with_stream(source: bytes, name: str, stream: bytes) -> bytes:
    """``source`` rewritten (each member deflated by zlib) with ``stream`` given as the
    stored bytes of member ``name``."""
    src = zipfile.ZipFile(io.BytesIO(source))
    local, central, offset = [], [], 0
    for info in src.infolist():
        data = src.read(info)
        if info.filename == name:
            raw = stream
        else:
            deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw = deflater.compress(data) + deflater.flush()
        fname = info.filename.encode()
        fields = (0, 8, 0, 33, zlib.crc32(data), len(raw), len(data), len(fname), 0)
        local.append(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, *fields) + fname + raw)
        central.append(
            struct.pack("<4s4B4H3L5H2L", b"PK\x01\x02", 20, 3, 20, 0, *fields, 0, 0, 0, 0, offset)
            + fname
        )
        offset += len(local[-1])
    directory = b"".join(central)
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0
    )
    return b"".join(local) + directory + end


def _deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    return deflater.compress(data) + deflater.flush()


def _styles(docx_bytes: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(docx_bytes)).read(STYLES)


def test_unchanged_member_is_deflated_anew(tmp_path: Path) -> None:
    source = build_docx(True)
    styles = _styles(source)
    stream = _deflate(styles)
    src = tmp_path / "in.docm"
    src.write_bytes(_zip_with_stream(source, STYLES, stream))
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    out = zipfile.ZipFile(dest)
    assert out.testzip() is None
    assert out.read(STYLES) == styles
    # not the original stream: no bit of the original encoding reaches the output
    assert _raw_stream(dest, STYLES) != stream
    # a changed part is written from its tree, deflated anew
    assert out.read("word/document.xml") != zipfile.ZipFile(src).read("word/document.xml")


@pytest.mark.parametrize("tail", [b"HIDDEN-TAIL", b"\x00\x00\x00"])
def test_stream_with_data_after_its_end_is_deflated_anew(tmp_path: Path, tail: bytes) -> None:
    source = build_docx(True)
    styles = _styles(source)
    stream = _deflate(styles) + tail  # bytes after the end of the deflate stream
    src = tmp_path / "in.docm"
    src.write_bytes(_zip_with_stream(source, STYLES, stream))
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    assert zipfile.ZipFile(dest).read(STYLES) == styles
    assert _raw_stream(dest, STYLES) != stream
    assert b"HIDDEN-TAIL" not in dest.read_bytes()


def test_stream_longer_than_declared_is_cut_and_deflated_anew(tmp_path: Path) -> None:
    source = build_docx(True)
    extra = _styles(source) + b"<!-- beyond the declared size -->"
    src = tmp_path / "in.docm"
    data = _zip_with_stream(source, STYLES, _deflate(extra))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(STYLES)
    # the directories declare the size (and CRC) of the styles alone
    styles = _styles(source)
    raw = bytearray(data)
    for at in (info.header_offset + 14, _central_offset(data, STYLES) + 16):
        struct.pack_into("<L", raw, at, zlib.crc32(styles))
        struct.pack_into("<L", raw, at + 8, len(styles))
    src.write_bytes(bytes(raw))
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    assert zipfile.ZipFile(dest).read(STYLES) == styles
    assert b"beyond the declared size" not in zlib.decompress(_raw_stream(dest, STYLES), -15)


def _central_offset(data: bytes, name: str) -> int:
    at = data.index(b"PK\x01\x02")
    while True:
        nlen = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + nlen] == name.encode():
            return at
        at = data.index(b"PK\x01\x02", at + 46)


@pytest.mark.parametrize("case", ["crc", "name", "short"])
def test_corrupt_members_are_refused(tmp_path: Path, case: str) -> None:
    source = build_docx(False)
    styles = _styles(source)
    data = bytearray(_zip_with_stream(source, STYLES, _deflate(styles)))
    local = bytes(data).index(b"PK\x03\x04" + struct.pack("<5H", 20, 0, 8, 0, 33), 0)
    while data[local + 30 : local + 30 + len(STYLES)] != STYLES.encode():
        local = bytes(data).index(b"PK\x03\x04", local + 4)
    if case == "crc":
        for at in (local + 14, _central_offset(bytes(data), STYLES) + 16):
            struct.pack_into("<L", data, at, zlib.crc32(styles) ^ 1)
    elif case == "name":
        data[local + 30 + len(STYLES) - 5] = ord("z")  # word/stylez.xml in the local header
    else:  # the deflate stream cut short
        stream = _deflate(styles)
        cut = stream[: len(stream) // 2]
        data = bytearray(_zip_with_stream(source, STYLES, cut))
    src = tmp_path / "in.docx"
    src.write_bytes(bytes(data))
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable"
    assert "corrupt member" in result.reason
    assert not dest.exists()


def test_rel_refs_finds_every_relationship_attribute_in_order() -> None:
    xml = (
        b'<root xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
        b' xmlns:s="http://purl.oclc.org/ooxml/officeDocument/relationships"'
        b' xmlns:o="urn:schemas-microsoft-com:office:office" xmlns:x="urn:other">'
        b'<a r:id="rId1" x:id="no"/><b><c s:embed="rId2" relid="no"/></b>'
        b'<d o:relid="rId3" o:other="no" r:link="rId4"/><e s:id="rId5"/></root>'
    )
    tree = etree.fromstring(xml).getroottree()
    ns = {
        "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
        "http://purl.oclc.org/ooxml/officeDocument/relationships",
    }
    expected = []
    for el in tree.getroot().iter():  # an independent walk, in document order
        for key, value in el.attrib.items():
            qname = etree.QName(key)
            if qname.namespace in ns or (
                qname.namespace == "urn:schemas-microsoft-com:office:office"
                and qname.localname == "relid"
            ):
                expected.append(value)
    assert expected == ["rId1", "rId2", "rId3", "rId4", "rId5"]
    found = _xml.rel_refs(tree)
    assert sorted(map(str, found)) == expected
    assert [str(v) for v in found][:3] == ["rId1", "rId2", "rId3"]
    assert all(v.getparent() is not None for v in found)


@pytest.mark.parametrize("attr", [b'macro="Module1.Go"', b'macro \n\t= "Module1.Go"'])
def test_shape_macro_found_whatever_the_spacing(tmp_path: Path, attr: bytes) -> None:
    drawing = (
        b'<xdr:wsDr xmlns:xdr="' + XDR.encode() + b'"><xdr:oneCellAnchor>'
        b"<xdr:sp " + attr + b"><xdr:nvSpPr/></xdr:sp><xdr:clientData/>"
        b"</xdr:oneCellAnchor></xdr:wsDr>"
    )
    src = tmp_path / "in.xlsm"
    src.write_bytes(rezip(build_xlsx(True), {"xl/drawings/drawing1.xml": drawing}))
    result, dest = disarm(src, tmp_path, switches("allow", macros="sanitise"))
    assert result.outcome == "rebuilt"
    assert any("macro assignment" in a.detail for a in result.actions)
    root = etree.fromstring(zipfile.ZipFile(dest).read("xl/drawings/drawing1.xml"))
    shapes = list(root.iter(f"{{{XDR}}}sp"))
    assert shapes and all(sp.get("macro") is None for sp in shapes)


def test_member_declaring_zero_bytes_is_not_inflated_past_it(tmp_path: Path) -> None:
    # A deflated member whose central directory says 0 bytes counts 0 against the
    # bomb limits: it must not be inflated beyond that (zlib reads a limit of 0 as none).
    from gicap_office import _zip

    payload = b"\0" * (8 * 1024 * 1024)
    src = tmp_path / "bomb.docx"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/media/pad.bin", payload)
    data = bytearray(src.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (0).to_bytes(4, "little")  # uncompressed size
    src.write_bytes(bytes(data))
    try:
        content = _zip.read(src, {"max_expanded_bytes": 1024 * 1024, "max_ratio": 100})
    except _zip.ZipRefused:
        return  # refused (bad CRC for the 0 bytes read): fine
    assert len(content.members["word/media/pad.bin"]) == 0


def test_parts_no_step_reads_get_no_tree(tmp_path: Path) -> None:
    # styles, fonts, numbering, theme: checked by the parser, never walked
    from gicap_office import _zip, ooxml
    from gicap_office._report import Report
    from gicap_office.package import Package

    src = tmp_path / "in.docm"
    src.write_bytes(build_docx(True))
    content = _zip.read(src, {})
    pkg = Package(content, ooxml.WALKED)
    ooxml._disarm_package(pkg, Report(switches("sanitise")), content)
    assert STYLES in pkg.xml_parts and STYLES not in pkg.trees
    assert "word/document.xml" in pkg.trees  # a Word story is always walked
