"""The OOXML engine reads every XML part with the hardened parser but builds a part's
tree only when a step needs it: the verdict on each part (accepted, or refused as
malformed or carrying a DOCTYPE) stays the one of a full parse, and the byte
prechecks still find names in every encoding libxml2 reads."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest

from tests.plugins.test_office import build_docx, build_pptx, build_xlsx, disarm, rezip, switches

gicap_office = pytest.importorskip("gicap_office", reason="gicap-office plugin not installed")
etree = pytest.importorskip("lxml.etree", reason="lxml not installed")
_xml = pytest.importorskip("gicap_office._xml")

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
DOC = "word/document.xml"


def _full_parse_accepts(data: bytes) -> bool:
    """The reference: lxml's own parse with the engine's options, refusing a DOCTYPE."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return False
    info = root.getroottree().docinfo
    return not info.doctype and info.internalDTD is None


def _verdict(data: bytes) -> bool:
    try:
        _xml.check(data, "part.xml")
    except _xml.XMLRefused:
        return False
    return True


BODY = b'<w:document xmlns:w="' + W_NS.encode() + b'"><w:body><w:p/></w:body></w:document>'
CASES = {
    "plain": BODY,
    "declaration": b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + BODY,
    "undefined element prefix": b"<a><x:b/></a>",
    "undefined attribute prefix": b'<a x:y="1"/>',
    "duplicate attribute": b'<a y="1" y="2"/>',
    "duplicate attribute by namespace": b'<a xmlns:p="u:a" xmlns:q="u:a" p:y="1" q:y="2"/>',
    "xml:id not a name": b'<a xml:id="1x"/>',
    "xml:id twice": b'<a><b xml:id="x"/><c xml:id="x"/></a>',
    "xml:id ok": b'<a xml:id="x"/>',
    "relative namespace": b'<a xmlns:p="rel/x"><p:b/></a>',
    "namespace not a URI": b'<a xmlns:p="ht tp://x y"><p:b/></a>',
    "undeclared entity": b"<a>&foo;</a>",
    "doctype": b"<!DOCTYPE a><a/>",
    "doctype with entity": b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
    "xml prefix rebound": b'<a xmlns:xml="u:x"/>',
    "xmlns prefix declared": b'<a xmlns:xmlns="u:x"/>',
    "empty prefix binding": b'<a xmlns:p=""/>',
    "two colons": b'<a:b:c xmlns:a="u:a"/>',
    "empty": b"",
    "late declaration": b'<a/><?xml version="1.0"?>',
    "NUL reference": b"<a>&#0;</a>",
    "bad UTF-8": b'<?xml version="1.0" encoding="UTF-8"?><a>\xe9</a>',
    "Latin-1": b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>',
    "trailing data": b"<a/>junk",
    "too deep": b"<a>" * 300 + b"</a>" * 300,
    "UTF-16": '<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16"),
    "UTF-16 no BOM": '<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16-le"),
    "UTF-16 doctype": "<!DOCTYPE a><a/>".encode("utf-16"),
    "comment and PI first": b"<!-- c --><?pi x?>\n" + BODY,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_gives_the_full_parse_verdict(case: str) -> None:
    data = CASES[case]
    assert _verdict(data) == _full_parse_accepts(data)


def test_text_node_over_the_parser_limit_is_refused() -> None:
    # the tree builder's own limit (10,000,000 bytes in one text node)
    data = b"<a>" + b"x" * 10_000_001 + b"</a>"
    assert not _full_parse_accepts(data)
    assert not _verdict(data)
    small = b"<a>" + b"x" * 1000 + b"</a>"
    assert _verdict(small) and _full_parse_accepts(small)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"<a/>", True),
        (b'<?xml version="1.0" encoding="UTF-8"?><a/>', True),
        (b"\xef\xbb\xbf<?xml version='1.0' encoding='windows-1252'?><a/>", True),
        (b'<?xml version="1.0" encoding="UTF-16"?><a/>', False),
        ('<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16-le"), False),
        ("<a/>".encode("utf-32-le"), False),
        (b'<?xml version="1.0"' + b" " * 300 + b'encoding="UTF-7"?><a/>', False),
        (b'<?xml version="1.0" encoding="UTF-7"?><a/>', False),
        (b"<?xml encoding='UTF-7'?><a/>", False),  # no version: not read, not trusted
        (b"<?xml-stylesheet href='x'?><a/>", True),  # a PI, not the declaration
        (b"\xff\xfe<\x00a\x00/\x00>\x00", False),
    ],
)
def test_ascii_compatible(data: bytes, expected: bool) -> None:
    assert _xml.ascii_compatible(data) is expected


def _all_parts() -> list[bytes]:
    parts = []
    for data in (build_docx(True), build_xlsx(True), build_pptx(True), build_docx(False)):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            parts += [zf.read(n) for n in zf.namelist() if n.endswith((".xml", ".rels", ".vml"))]
    return parts


@pytest.mark.parametrize(
    "prolog",
    [b"", b"\xef\xbb\xbf", b'<?xml version="1.0"?>\n', b"<!-- <w:hdr> -->\n<?x <w:ftr ?>", b" \n"],
)
def test_root_local_is_the_root_element_name(prolog: bytes) -> None:
    checked = 0
    for data in _all_parts():
        if data.startswith(b"<?xml"):
            data = data[data.index(b"?>") + 2 :]
        data = prolog + data.lstrip()
        try:
            root = etree.fromstring(data)
        except etree.XMLSyntaxError:
            continue
        found = _xml.root_local(data)
        assert found is None or found == etree.QName(root).localname
        checked += found is not None
    # (white space first: not read from the bytes, the tree decides)
    assert checked > 20 or prolog.startswith(b" ")


def _document(docx: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(docx)).read(DOC)


def _dde_document(encoding: str, bom: bool) -> bytes:
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        f'<w:document xmlns:w="{W_NS}"><w:body><w:p>'
        "<w:fldSimple w:instr=' DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe \"/k calc\" '>"
        "<w:r><w:t>x</w:t></w:r></w:fldSimple></w:p></w:body></w:document>"
    )
    data = text.encode("utf-16-le")
    return (b"\xff\xfe" if bom else b"") + data


@pytest.mark.parametrize("bom", [True, False])
def test_field_in_utf16_without_byte_order_mark_is_found(tmp_path: Path, bom: bool) -> None:
    # libxml2 reads "<\0?\0" as UTF-16 without a byte order mark: the names are not
    # their ASCII bytes there, so the part must be walked
    src = tmp_path / "in.docx"
    src.write_bytes(rezip(build_docx(False), {DOC: _dde_document("UTF-16", bom)}))
    result, dest = disarm(src, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result.outcome == "rebuilt"
    root = etree.fromstring(zipfile.ZipFile(dest).read(DOC))
    assert not list(root.iter(f"{{{W_NS}}}fldSimple"))
    assert "DDEAUTO" not in etree.tostring(root).decode()


def test_field_behind_a_long_declaration_is_found(tmp_path: Path) -> None:
    # a UTF-7 declaration after 300 spaces: "fldSimple" written as "+AGY-ldSimple"
    text = (
        '<?xml version="1.0"' + " " * 300 + 'encoding="UTF-7"?>'
        f'<w:document xmlns:w="{W_NS}"><w:body><w:p>'
        "<w:+AGY-ldSimple w:instr=' DDEAUTO calc '><w:r><w:t>x</w:t></w:r></w:+AGY-ldSimple>"
        "</w:p></w:body></w:document>"
    )
    data = text.encode("ascii")
    try:
        parsed = etree.fromstring(data)
    except etree.XMLSyntaxError:
        pytest.skip("this libxml2 does not read UTF-7")
    assert any(etree.QName(el).localname == "fldSimple" for el in parsed.iter())
    src = tmp_path / "in.docx"
    src.write_bytes(rezip(build_docx(False), {DOC: data}))
    result, dest = disarm(src, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result.outcome == "rebuilt"
    root = etree.fromstring(zipfile.ZipFile(dest).read(DOC))
    assert not [el for el in root.iter() if etree.QName(el).localname == "fldSimple"]


@pytest.mark.parametrize(
    ("part", "change"),
    [
        ("word/styles.xml", (b"<w:style ", b'<w:style xml:id="1bad" ')),
        ("word/styles.xml", (b"<w:style ", b"<w:style zz:bad='1' ")),
        ("word/fontTable.xml", (b"?>", b"?><!DOCTYPE w:fonts>")),
        ("word/settings.xml", (b"</w:settings>", b"<w:x xmlns:w=''/></w:settings>")),
    ],
)
def test_part_no_step_reads_is_still_refused(
    tmp_path: Path, part: str, change: tuple[bytes, bytes]
) -> None:
    source = build_docx(True)
    data = zipfile.ZipFile(io.BytesIO(source)).read(part)
    assert change[0] in data
    bad = data.replace(change[0], change[1], 1)
    assert not _full_parse_accepts(bad)
    src = tmp_path / "in.docm"
    src.write_bytes(rezip(source, {part: bad}))
    for sw in (switches("allow"), switches("sanitise")):
        result, dest = disarm(src, tmp_path, sw)
        assert result.outcome == "unprocessable", result
        assert part in result.reason
        assert not dest.exists()


def test_rebuilt_members_carry_their_crc(tmp_path: Path) -> None:
    src = tmp_path / "in.pptm"
    src.write_bytes(build_pptx(True))
    result, dest = disarm(src, tmp_path, switches("sanitise"))
    assert result.outcome == "rebuilt"
    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None  # every member's data against its CRC-32
        assert len(zf.namelist()) > 10


_FRAGMENTS = [
    b"<", b">", b"&", b"&#x0;", b"&#65;", b'xmlns:q="u:q" ', b"q:", b'xml:id="a" ', b"xml:",
    b'xmlns="" ', b'xmlns:w="" ', b"<!DOCTYPE x>", b"<![CDATA[", b"]]>", b"<!--", b"-->",
    b"<?pi?>", b"<?xml ", b'"', b"=", b"\x00", b"\xff", b"\xe9", b"</", b"/>", b":",
    b'xmlns:xml="x" ', b'encoding="UTF-16"', b'xmlns:r="rel" ', b"&e;",
]  # fmt: skip


def test_check_agrees_with_the_full_parse_on_mutated_parts() -> None:
    rng = random.Random(5)
    parts = [p for p in _all_parts() if len(p) < 20000]
    accepted = 0
    for _ in range(3000):
        data = bytearray(rng.choice(parts))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.4:
                data[at:at] = rng.choice(_FRAGMENTS)
            elif op < 0.7:
                del data[at : at + rng.randint(1, 8)]
            else:
                src = rng.randrange(len(data) + 1)
                data[at:at] = data[src : src + rng.randint(1, 30)]
        expected = _full_parse_accepts(bytes(data))
        assert _verdict(bytes(data)) == expected, bytes(data)[:200]
        accepted += expected
    assert accepted > 100  # both verdicts exercised


@pytest.mark.parametrize(
    "prolog", ["", "<!-- <w:styles> -->", '<?x <w:fonts xmlns:w="u:x"?>', "\n  "]
)
def test_word_story_found_whatever_its_prefix_and_prolog(tmp_path: Path, prolog: str) -> None:
    # the document in the default namespace, after comments or PIs naming other roots
    text = (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}<document xmlns="{W_NS}" '
        f'xmlns:w="{W_NS}"><body><p><fldSimple w:instr=" DDEAUTO calc ">'
        "<r><t>x</t></r></fldSimple></p></body></document>"
    )
    src = tmp_path / "in.docx"
    src.write_bytes(rezip(build_docx(False), {DOC: text.encode()}))
    result, dest = disarm(src, tmp_path, switches("allow", dynamic_data_exchange="sanitise"))
    assert result.outcome == "rebuilt"
    root = etree.fromstring(zipfile.ZipFile(dest).read(DOC))
    assert not list(root.iter(f"{{{W_NS}}}fldSimple"))


@pytest.mark.parametrize(
    "data",
    [
        b"<?a?>" * 50_000 + "<\u00fc/>".encode(),
        b"<!--a-->" * 50_000 + "<\u00fc/>".encode(),
        b"<?" * 200_000,
        b"<!--" + b"-" * 400_000,
    ],
)
def test_root_local_takes_linear_time(data: bytes) -> None:
    import time

    start = time.perf_counter()
    assert _xml.root_local(data) is None
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("depth", [258, 300, 5000])
def test_check_refuses_parts_nested_beyond_the_parser_limit(depth: int) -> None:
    data = b"<a>" * depth + b"</a>" * depth
    with pytest.raises(_xml.XMLRefused):
        _xml.check(data, "deep.xml")
    with pytest.raises(_xml.XMLRefused):
        _xml.parse(data, "deep.xml")


@pytest.mark.parametrize("part", ["word/document.xml", "word/styles.xml"])
def test_undeclared_prefix_followed_by_a_warning_is_refused(tmp_path: Path, part: str) -> None:
    # lxml raised only when libxml2's last message was an error: a warning after the
    # undeclared prefix let the part through, with "x:instrText" in no namespace
    bad = b'<x:instrText> DDEAUTO c:\\\\a.exe </x:instrText><w:p xml:space="x"/>'

    def spoil(data: bytes) -> bytes:
        at = data.rindex(b"</")
        return data[:at] + bad + data[at:]

    path = tmp_path / "in.docx"
    path.write_bytes(rezip(build_docx(False), {part: spoil}))
    result, dest = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable", result
    assert "not defined" in result.reason
    assert not dest.exists()
