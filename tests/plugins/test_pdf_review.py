"""PDF inputs found by an adversarial review: each one carried JavaScript, a launch
action or an embedded file past the engine (judged by poppler and by qpdf's expanded
file, not by the engine), or cost far more than its size."""

from __future__ import annotations

import io
import re
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import gicap_pdf
import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name, String

from tests.plugins.test_pdf import classic_pdf, disarm, link, names_in, policy, qdf, request_for
from tests.support import require_tool

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
_CONTENT = b"BT 72 700 Td ET"
BASE = {
    3: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
    4: b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Resources << >> /Contents 5 0 R >>",
    5: b"<< /Length %d >>\nstream\n" % len(_CONTENT) + _CONTENT + b"\nendstream",
    7: b"<< /S /JavaScript /JS (app.alert\\('gicap-test'\\)) >>",
    8: b"<< /Type /EmbeddedFile /Length %d >>\nstream\n" % len(EICAR) + EICAR + b"\nendstream",
    9: b"<< /Type /Filespec /F (eicar.com) /EF << /F 8 0 R >> >>",
}
CLEAN = b"<< /Type /Catalog /Pages 3 0 R >>"
RISKY = (
    b"<< /Type /Catalog /Pages 3 0 R /OpenAction 7 0 R /Names << /JavaScript << /Names "
    b"[(a) 7 0 R] >> /EmbeddedFiles << /Names [(eicar.com) 9 0 R] >> >> >>"
)


def fake_linearized() -> bytes:
    """A file that looks linearized: poppler reads the cross-reference section after
    the linearization dictionary (the catalog with the script and the file), qpdf the
    last one (a clean catalog)."""

    def assemble(length: int, room: int) -> tuple[bytearray, bytes, int]:
        out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        at = {1: len(out)}
        out += (
            b"1 0 obj\n<< /Linearized 1 /L %010d /H [0 0] /O 4 /E 0 /N 1 /T 0 >>\nendobj\n" % length
        )
        hole = len(out)
        out += b"\0" * room
        for n in (3, 4, 5, 7, 8, 9):
            at[n] = len(out)
            out += b"%d 0 obj\n" % n + BASE[n] + b"\nendobj\n"
        clean = len(out)
        out += b"2 0 obj\n" + CLEAN + b"\nendobj\n"
        risky = len(out)
        out += b"2 0 obj\n" + RISKY + b"\nendobj\n"

        def xref(root: int, prev: int | None = None) -> bytes:
            table = b"xref\n0 10\n0000000000 65535 f \n"
            for n in range(1, 10):
                offset = root if n == 2 else at.get(n)
                table += b"%010d 00000 n \n" % offset if offset else b"0000000000 65535 f \n"
            tail = b" /Prev %d" % prev if prev else b""
            return table + b"trailer\n<< /Size 10 /Root 2 0 R" + tail + b" >>\n"

        main = len(out)
        out += xref(clean) + b"startxref\n%d\n%%%%EOF\n" % main
        return out, xref(risky, prev=main) + b"startxref\n0\n%%EOF\n", hole

    length = room = 0
    for _ in range(6):  # until the sizes written into the file stop changing
        out, first, hole = assemble(length, room)
        length, room = len(out), len(first)
    out[hole : hole + room] = first
    return bytes(out)


def object_stream_with_two_catalogs() -> bytes:
    """An object stream holding object 2 twice: its index names the risky copy (as
    poppler reads it), qpdf keeps the last one (clean)."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    at = {}
    for n, body in BASE.items():
        at[n] = len(out)
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    data = RISKY + b"\n"
    head = b"2 0 2 %d\n" % len(data)
    data += CLEAN + b"\n"
    at[10] = len(out)
    out += (
        b"10 0 obj\n<< /Type /ObjStm /N 2 /First %d /Length %d >>\nstream\n"
        % (len(head), len(head + data))
        + head
        + data
        + b"\nendstream\nendobj\n"
    )
    rows = b""
    for n in range(12):
        if n == 2:
            rows += struct.pack(">BIH", 2, 10, 0)
        elif n == 11:
            rows += struct.pack(">BIH", 1, len(out), 0)
        elif n in at:
            rows += struct.pack(">BIH", 1, at[n], 0)
        else:
            rows += struct.pack(">BIH", 0, 0, 65535 if n == 0 else 0)
    xref_at = len(out)
    out += (
        b"11 0 obj\n<< /Type /XRef /Size 12 /W [1 4 2] /Root 2 0 R /Length %d >>\nstream\n"
        % len(rows)
        + rows
        + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at
    )
    return bytes(out)


def _poppler(path: Path) -> tuple[bool, str]:
    js = subprocess.run(
        [require_tool("pdfinfo", "poppler-utils"), "-js", str(path)],
        capture_output=True,
        timeout=60,
    ).stdout
    files = subprocess.run(
        [require_tool("pdfdetach", "poppler-utils"), "-list", str(path)],
        capture_output=True,
        timeout=60,
    ).stdout
    return b"app.alert" in js, files.decode("latin-1")


@pytest.mark.parametrize("build", [fake_linearized, object_stream_with_two_catalogs])
def test_file_readers_see_differently_is_delivered_as_qpdf_reads_it(
    tmp_path: Path, build: object
) -> None:
    data = build()  # type: ignore[operator]
    source = tmp_path / "src.pdf"
    source.write_bytes(data)
    scripted, files = _poppler(source)
    assert scripted and "eicar.com" in files  # poppler reads the risky catalog
    request = request_for(tmp_path, data)
    result = disarm(request)
    assert result.outcome == "rebuilt", result  # never the original bytes
    scripted, files = _poppler(request.destination)
    assert not scripted and "eicar.com" not in files


def _new() -> pikepdf.Pdf:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    return pdf


def _saved(pdf: pikepdf.Pdf) -> bytes:
    buf = io.BytesIO()
    pdf.save(buf, object_stream_mode=pikepdf.ObjectStreamMode.disable, compress_streams=False)
    return buf.getvalue()


def test_navigation_node_actions_are_removed(tmp_path: Path) -> None:
    pdf = _new()
    launch = Dictionary(S=Name.Launch, Win=Dictionary(F=String("cmd.exe"), P=String("/c x")))
    submit = Dictionary(S=Name.SubmitForm, F=Dictionary(FS=Name.URL, F=String("http://x.invalid/")))
    following = pdf.make_indirect(Dictionary(Type=Name.NavNode, NA=submit))
    pdf.pages[0].obj.PresSteps = pdf.make_indirect(
        Dictionary(Type=Name.NavNode, NA=launch, Next=following)
    )
    request = request_for(tmp_path, _saved(pdf))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert not names_in(qdf(request.destination), "/Launch", "/SubmitForm")


def test_actions_given_as_streams_are_refused(tmp_path: Path) -> None:
    for slot in ("/AA", "/A", "/OpenAction"):
        pdf = _new()
        stream = pdf.make_indirect(pikepdf.Stream(pdf, b""))
        if slot == "/AA":
            stream.O = Dictionary(S=Name.JavaScript, JS=String("app.alert(1)"))
            pdf.pages[0].obj.AA = stream
        elif slot == "/A":
            stream.S = Name.Launch
            stream.Win = Dictionary(F=String("cmd.exe"))
            annot = Dictionary(Type=Name.Annot, Subtype=Name.Link, Rect=[0, 0, 9, 9], A=stream)
            pdf.pages[0].obj.Annots = Array([pdf.make_indirect(annot)])
        else:
            stream.S = Name.JavaScript
            stream.JS = String("app.alert(1)")
            pdf.Root.OpenAction = stream
        request = request_for(tmp_path, _saved(pdf))
        result = disarm(request)
        assert result.outcome == "unprocessable", (slot, result)
        assert not request.destination.exists()


def test_script_behind_back_pointers_and_trailer_keys_is_removed(tmp_path: Path) -> None:
    # an outline item only /Last names
    pdf = _new()
    script = Dictionary(S=Name.JavaScript, JS=String("app.alert(1)"))
    hidden = pdf.make_indirect(Dictionary(Title=String("h"), A=script))
    first = pdf.make_indirect(Dictionary(Title=String("a")))
    outlines = pdf.make_indirect(Dictionary(Type=Name.Outlines, First=first, Last=hidden))
    first.Parent = hidden.Parent = outlines
    hidden.Prev = first
    pdf.Root.Outlines = outlines
    request = request_for(tmp_path, _saved(pdf))
    assert disarm(request).outcome == "rebuilt"
    assert not names_in(qdf(request.destination), "/JS", "/JavaScript")
    # a trailer entry no reader uses
    pdf = _new()
    pdf.trailer.Foo = pdf.make_indirect(script)
    request = request_for(tmp_path, _saved(pdf))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert not names_in(qdf(request.destination), "/JS", "/JavaScript", "/Foo")


def test_xfa_stream_listed_many_times_is_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real = pikepdf.Object.read_bytes

    def counting(self: pikepdf.Object, *args: object, **kwargs: object) -> bytes:
        data = real(self, *args, **kwargs)
        decoded.append(len(data))
        return data

    pdf = _new()
    stream = pdf.make_indirect(pikepdf.Stream(pdf, zlib.compress(b"<xdp/>" + b" " * 100_000)))
    stream.Filter = Name.FlateDecode
    packets: list[object] = []
    for i in range(50):
        packets += [String(f"p{i}"), stream]
    pdf.Root.AcroForm = Dictionary(Fields=Array([]), XFA=Array(packets))
    request = request_for(tmp_path, _saved(pdf))
    monkeypatch.setattr(pikepdf.Object, "read_bytes", counting)
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert decoded.count(100_006) == 1  # (50 times before)


def test_xfa_beyond_the_stream_limit_in_all_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gicap_pdf, "MAX_STREAM_BYTES", 150_000)
    monkeypatch.setattr(gicap_pdf, "MAX_DECODED_TOTAL", 10_000_000)
    pdf = _new()
    packets: list[object] = []
    for i in range(2):  # two different streams of 100 KB each
        stream = pdf.make_indirect(pikepdf.Stream(pdf, zlib.compress(b"<xdp/>" + b" " * 100_000)))
        stream.Filter = Name.FlateDecode
        packets += [String(f"p{i}"), stream]
    pdf.Root.AcroForm = Dictionary(Fields=Array([]), XFA=Array(packets))
    request = request_for(tmp_path, _saved(pdf))
    result = disarm(request)
    assert result.outcome == "unprocessable", result
    assert "XFA" in result.reason


def test_stream_used_many_times_counts_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One content stream listed 40 times in a page's /Contents: every reader decodes
    it 40 times (a 260 KB stream of 255 MB, listed 8 times, kept pdftotext busy 27 s)."""
    monkeypatch.setattr(gicap_pdf, "MAX_DECODED_TOTAL", 1_000_000)
    pdf = _new()
    stream = pdf.make_indirect(pikepdf.Stream(pdf, zlib.compress(b" " * 100_000)))
    stream.Filter = Name.FlateDecode
    pdf.pages[0].obj.Contents = Array([stream] * 40)  # 4 MB decoded in all
    result = disarm(request_for(tmp_path, _saved(pdf)))
    assert result.outcome == "unprocessable", result
    assert "in all" in result.reason
    pdf.pages[0].obj.Contents = Array([stream] * 5)  # 0.5 MB: fine
    result = disarm(request_for(tmp_path, _saved(pdf)))
    assert result.outcome in ("unmodified", "rebuilt"), result


def test_many_pages_of_ordinary_content_are_not_a_bomb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounds (1,032 times the compressed size) add up past the total limit on a long
    document: then the streams are measured, and real sizes decide."""
    monkeypatch.setattr(gicap_pdf, "MAX_DECODED_TOTAL", 2_000_000)
    pdf = pikepdf.new()
    for n in range(300):
        pdf.add_blank_page()
        text = b"BT /F1 10 Tf 56 700 Td (page %d) Tj ET\n" % n
        content = pdf.make_stream(zlib.compress(text * 20))
        content.Filter = Name.FlateDecode
        pdf.pages[-1].obj.Contents = content
    result = disarm(request_for(tmp_path, _saved(pdf)))
    assert result.outcome in ("unmodified", "rebuilt"), result


# -- found by a review of the shortcut for documents without active content


def _indirect_name_cases() -> dict[str, tuple[pikepdf.Pdf, str]]:
    """A document whose telling name (a /Subtype, a /Type) is an object of its own,
    referenced as ``7 0 R``: the text of the dictionary does not show it."""
    cases = {}
    pdf = _new()
    bomb = pdf.make_stream(zlib.compress(b"\0" * 1000), Filter=Name.FlateDecode)
    bomb.Subtype = pdf.make_indirect(Name.Image)
    bomb.update({"/Type": Name.XObject, "/Width": 200_000, "/Height": 200_000})
    bomb.update({"/BitsPerComponent": 8, "/ColorSpace": Name.DeviceGray})
    pdf.pages[0].obj.Resources = Dictionary(XObject=Dictionary(Im0=bomb))
    cases["pixel-bomb"] = (pdf, "unprocessable")
    pdf = _new()
    u3d = pdf.make_stream(b"U3D\0" + bytes(64), Subtype=Name("/U3D"))
    annot = Dictionary(Type=Name.Annot, Rect=[72, 72, 300, 300], **{"/3DD": u3d})
    annot.Subtype = pdf.make_indirect(Name("/3D"))
    pdf.pages[0].obj.Annots = Array([pdf.make_indirect(annot)])
    cases["3d-annotation"] = (pdf, "rebuilt")
    return cases


@pytest.mark.parametrize("case", ["pixel-bomb", "3d-annotation"])
def test_names_given_as_objects_of_their_own_are_seen(tmp_path: Path, case: str) -> None:
    pdf, outcome = _indirect_name_cases()[case]
    request = request_for(tmp_path, _saved(pdf))
    result = disarm(request)
    assert result.outcome == outcome, result
    if outcome == "rebuilt":
        assert [(a.switch, a.action) for a in result.actions] == [("embedded_files", "removed")]
        assert b"U3D" not in qdf(request.destination)


def test_streams_in_an_array_pages_share_count_for_each_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six pages share one /Contents array: every reader decodes its stream six
    times. Counted so with or without active content elsewhere (walked or not)."""
    monkeypatch.setattr(gicap_pdf, "MAX_DECODED_TOTAL", 1_000_000)
    for script in (False, True):
        pdf = pikepdf.new()
        for _ in range(6):
            pdf.add_blank_page()
        stream = pdf.make_stream(zlib.compress(b" " * 200_000), Filter=Name.FlateDecode)
        shared = pdf.make_indirect(Array([stream]))
        for page in pdf.pages:
            page.obj.Contents = shared  # 1.2 MB decoded in all
        if script:
            pdf.Root.OpenAction = Dictionary(S=Name.JavaScript, JS=String("app.alert(1)"))
        result = disarm(request_for(tmp_path, _saved(pdf)))
        assert result.outcome == "unprocessable", (script, result)
        assert "in all" in result.reason


def test_a_stream_listed_often_in_an_array_pages_share_counts_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six pages share one /Contents array listing one stream 20 times: readers decode
    it 120 times, far more often than references to it are written (26). A bound
    from the written references alone would let it through."""
    monkeypatch.setattr(gicap_pdf, "MAX_DECODED_TOTAL", 10_000_000)
    pdf = pikepdf.new()
    for _ in range(6):
        pdf.add_blank_page()
    stream = pdf.make_stream(zlib.compress(b" " * 200_000), Filter=Name.FlateDecode)
    shared = pdf.make_indirect(Array([stream] * 20))
    for page in pdf.pages:
        page.obj.Contents = shared  # 24 MB decoded in all
    result = disarm(request_for(tmp_path, _saved(pdf)))
    assert result.outcome == "unprocessable", result
    assert "in all" in result.reason
    shared = pdf.make_indirect(Array([stream] * 2))
    for page in pdf.pages:
        page.obj.Contents = shared  # 2.4 MB: fine
    result = disarm(request_for(tmp_path, _saved(pdf)))
    assert result.outcome in ("unmodified", "rebuilt"), result


def test_a_bomb_whose_length_is_an_object_of_its_own_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/Length 6 0 R``, as LibreOffice, cairo and Ghostscript write it: the bound
    comes from the length itself, never from the number of the object holding it."""
    monkeypatch.setattr(gicap_pdf, "MAX_STREAM_BYTES", 1_000_000)
    data = zlib.compress(b"\0" * 3_000_000, 9)
    pdf = classic_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R /Extra 5 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
            5: b"<< /Filter /FlateDecode /Length 6 0 R >>\nstream\n" + data + b"\nendstream",
            6: b"%d" % len(data),
        },
        b"<< /Root 1 0 R >>",
    )
    result = disarm(request_for(tmp_path, pdf))
    assert result.outcome == "unprocessable", result
    assert "decompression bomb" in result.reason


@pytest.mark.parametrize("linked", [False, True])
def test_a_chain_of_filters_given_as_a_reference_is_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linked: bool
) -> None:
    """A stream whose /Filter is ``4 0 R``, an array of two Flate filters: its text
    names no filter, so a bound from the written names would be its length alone (a
    review found a 635-byte stream of 300 MB delivered as it came, or decoded by the
    rewrite when a link was removed)."""
    monkeypatch.setattr(gicap_pdf, "MAX_STREAM_BYTES", 1_000_000)
    pdf = _new()
    stream = pdf.make_stream(b"")
    stream.write(
        zlib.compress(zlib.compress(b"\0" * 3_000_000, 9), 9),
        filter=Array([Name.FlateDecode, Name.FlateDecode]),
    )
    stream.Filter = pdf.make_indirect(Array([Name.FlateDecode, Name.FlateDecode]))
    pdf.Root.Extra = stream
    if linked:
        link(pdf, 0, A=Dictionary(S=Name.URI, URI=String("https://gicap.invalid/")))
    result = disarm(request_for(tmp_path, _saved(pdf)))
    assert result.outcome == "unprocessable", result
    assert "decompression bomb" in result.reason


@pytest.mark.parametrize("key", ["/Info", "/DL"])
def test_trailer_entries_reaching_a_script_are_dropped(tmp_path: Path, key: str) -> None:
    """An /Info that is an array, or a cross-reference key (/DL) given a dictionary:
    no reader runs what they reach, but qpdf would write it out."""
    pdf = _new()
    action = pdf.make_indirect(Dictionary(S=Name.JavaScript, JS=String("app.alert(1)")))
    pdf.trailer[key] = pdf.make_indirect(Array([action])) if key == "/Info" else action
    request = request_for(tmp_path, _saved(pdf))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert key in result.actions[-1].detail
    assert not names_in(qdf(request.destination), "/JavaScript", "/JS")


# A fourth review: sizes an image filter or an image's own data gives, images in the
# budget of all streams, long /Next chains.


def _page_with(content_ref: bytes, extra: dict[int, bytes], resources: bytes = b"<< >>") -> bytes:
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
        + resources
        + b" /Contents "
        + content_ref
        + b" >>",
    }
    return classic_pdf(objects | extra, b"/Root 1 0 R")


def _stream(head: bytes, data: bytes) -> bytes:
    return b"<< " + head + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


@pytest.mark.parametrize(
    "head",
    [
        b"/Filter /CCITTFaxDecode /DecodeParms << /K -1 /Columns 100000 /Rows 524288 >>",
        b"/Filter /CCITTFaxDecode /DecodeParms << /K -1 /Columns 100000 >>",
        b"/Filter /JBIG2Decode",
        b"/Filter /DCTDecode",
    ],
    ids=["ccitt-6-gb", "ccitt-no-rows", "jbig2", "dct"],
)
def test_image_filters_on_other_streams_are_bounded(tmp_path: Path, head: bytes) -> None:
    """A page's content coded as a CCITT fax: 64 KiB of all-white rows declaring 6.6
    GB (poppler was still decoding it after 15 s). It was counted 1:1, never measured."""
    data = _page_with(b"4 0 R", {4: _stream(head, b"\xff" * 65536)})
    result = disarm(request_for(tmp_path, data))
    assert result.outcome == "unprocessable", result
    assert "image filter" in (result.reason or "")


def test_a_small_fax_stream_is_not_a_bomb(tmp_path: Path) -> None:
    data = _page_with(
        b"4 0 R",
        {4: _stream(b"/Filter /CCITTFaxDecode /DecodeParms << /K -1 /Columns 8 /Rows 8 >>", b"x")},
    )
    assert disarm(request_for(tmp_path, data)).outcome in ("rebuilt", "unmodified")


def test_images_count_in_the_budget_of_all_streams(tmp_path: Path) -> None:
    """Twelve images of 100 Mpx, 16-bit CMYK: 9.6 GB decoded from a 9 MB file, each
    within the pixel limit, none in the 1 GiB budget of all streams."""
    width = height = 10_000
    compressor = zlib.compressobj(9)
    row = bytes(width * 8)
    pixels = b"".join([compressor.compress(row) for _ in range(height)] + [compressor.flush()])
    head = (
        b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceCMYK "
        b"/BitsPerComponent 16 /Filter /FlateDecode" % (width, height)
    )
    images = {10 + i: _stream(head, pixels) for i in range(12)}
    names = b" ".join(b"/Im%d %d 0 R" % (i, 10 + i) for i in range(12))
    draw = b"".join(b"q 612 0 0 792 0 0 cm /Im%d Do Q\n" % i for i in range(12))
    data = _page_with(
        b"4 0 R", images | {4: _stream(b"", draw)}, b"<< /XObject << " + names + b" >> >>"
    )
    result = disarm(request_for(tmp_path, data))
    assert result.outcome == "unprocessable", result
    assert "streams and images decode to more than" in (result.reason or "")
    one = _page_with(
        b"4 0 R",
        {10: images[10], 4: _stream(b"", b"q 612 0 0 792 0 0 cm /Im0 Do Q\n")},
        b"<< /XObject << /Im0 10 0 R >> >>",
    )
    assert disarm(request_for(tmp_path, one)).outcome == "rebuilt"


def _image_page(filters: bytes, coded: bytes) -> bytes:
    """A page drawing one grey image declared 64 x 64, its data ``coded`` with
    ``filters``."""
    head = b"/Type /XObject /Subtype /Image /Width 64 /Height 64 /ColorSpace /DeviceGray "
    head += b"/BitsPerComponent " + (b"1" if b"JBIG2" in filters else b"8") + b" /Filter " + filters
    return _page_with(
        b"4 0 R",
        {5: _stream(head, coded), 4: _stream(b"", b"q 64 0 0 64 0 0 cm /Im0 Do Q\n")},
        b"<< /XObject << /Im0 5 0 R >> >>",
    )


def _jbig2_page(width: int, height: int) -> bytes:
    """An embedded JBIG2 stream: a page information segment, then end of page."""
    info = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes(8) + b"\x00\x00\x00"

    def segment(number: int, kind: int, body: bytes) -> bytes:
        return number.to_bytes(4, "big") + bytes([kind, 0, 1]) + len(body).to_bytes(4, "big") + body

    return segment(0, 48, info) + segment(1, 49, b"")


def _jpeg(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("filter_", "coded", "ok"),
    [
        (b"/JBIG2Decode", _jbig2_page(60000, 60000), False),
        (b"/JBIG2Decode", _jbig2_page(64, 64), True),
        (b"/DCTDecode", _jpeg(640, 64), False),
        (b"/DCTDecode", _jpeg(64, 64), True),
    ],
    ids=["jbig2-larger", "jbig2-same", "jpeg-larger", "jpeg-same"],
)
def test_an_image_whose_data_is_larger_than_declared_is_refused(
    tmp_path: Path, filter_: bytes, coded: bytes, ok: bool
) -> None:
    """Readers allocate the size the data gives: poppler took 449 MB for a 40-byte
    JBIG2 image declared 64 x 64 whose page is 60000 x 60000."""
    result = disarm(request_for(tmp_path, _image_page(filter_, coded)))
    if ok:
        assert result.outcome in ("rebuilt", "unmodified"), result
    else:
        assert result.outcome == "unprocessable", result
        assert "holds data of" in (result.reason or "")


def _link_with_next(actions: bytes) -> bytes:
    return _page_with(
        b"4 0 R",
        {
            4: _stream(b"", b""),
            5: b"<< /Type /Annot /Subtype /Link /Rect [0 0 612 792] /A << /S /URI "
            b"/URI (https://example.com/) /Next [ " + actions + b" ] >> >>",
        },
    ).replace(b"/Contents 4 0 R", b"/Contents 4 0 R /Annots [5 0 R]")


_SCRIPT = b"<< /S /JavaScript /JS (app.alert\\('gicap-test'\\)) >>"


def test_a_script_beyond_a_long_action_chain_is_refused(tmp_path: Path) -> None:
    """With links kept, a script after 1,001 actions of a /Next array was neither
    judged nor removed."""
    filler = b" ".join([b"<< /S /URI /URI (https://example.com/) >>"] * 1001)
    kept = policy(external_hyperlinks="allow")
    result = disarm(request_for(tmp_path, _link_with_next(filler + b" " + _SCRIPT), kept))
    assert result.outcome == "unprocessable", result
    assert "/Next" in (result.reason or "")


def test_a_kept_link_loses_only_the_script_it_chains_to(tmp_path: Path) -> None:
    kept = policy(external_hyperlinks="allow")
    request = request_for(tmp_path, _link_with_next(_SCRIPT), kept)
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    with pikepdf.open(request.destination) as pdf:
        action = pdf.pages[0].obj.Annots[0].A
        assert str(action.URI) == "https://example.com/" and "/Next" not in action
    assert b"gicap-test" not in qdf(request.destination)


def _box(kind: bytes, body: bytes) -> bytes:
    return (8 + len(body)).to_bytes(4, "big") + kind + body


def _siz(width: int, height: int, components: int = 1) -> bytes:
    """SOC, then a SIZ marker of 8-bit components at full resolution."""
    body = b"\x00\x00" + struct.pack(">8I", width, height, 0, 0, width, height, 0, 0)
    body += components.to_bytes(2, "big") + b"\x07\x01\x01" * components
    return b"\xff\x4f\xff\x51" + (len(body) + 2).to_bytes(2, "big") + body


def _jp2(header: tuple[int, int], codestream: tuple[int, int], decoy: bool = False) -> bytes:
    ihdr = _box(b"ihdr", struct.pack(">2IH", header[1], header[0], 1) + b"\x07\x07\x00\x00")
    fake = _box(b"xml ", _siz(64, 64)) if decoy else b""
    return (
        _box(b"jP  ", b"\r\n\x87\n")
        + _box(b"jp2h", ihdr)
        + fake
        + _box(b"jp2c", _siz(*codestream) + b"\xff\xd9")
    )


_BIG_JPEG = _jpeg(6400, 64)
_SOF_AT = _BIG_JPEG.find(b"\xff\xc0")


@pytest.mark.parametrize(
    ("filters", "coded"),
    [
        (b"[/FlateDecode /DCTDecode]", zlib.compress(_BIG_JPEG)),
        (b"[/ASCIIHexDecode /DCTDecode]", _BIG_JPEG.hex().encode() + b">"),
        (b"/DCTDecode", _BIG_JPEG[:_SOF_AT] + b"\x00" + _BIG_JPEG[_SOF_AT:]),
        (b"/DCTDecode", b"junk" + _BIG_JPEG),
        (b"/JPXDecode", _jp2((64, 64), (6400, 64), decoy=True)),
        (b"/JBIG2Decode", _jbig2_page(64, 0xFFFFFFFF)),
        (b"[/FlateDecode /JBIG2Decode]", zlib.compress(_jbig2_page(60000, 60000))),
        (b"/JPXDecode", b"not a JPEG 2000 image"),
        (b"/JBIG2Decode", _jbig2_page(64, 64) + _jbig2_page(60000, 60000)),
        (b"/DCTDecode", _BIG_JPEG[: _SOF_AT + 5] + b"\x00\x00" + _BIG_JPEG[_SOF_AT + 7 :]),
    ],
    ids=[
        "jpeg-behind-flate",
        "jpeg-behind-hex",
        "byte-before-frame",
        "junk-before-image",
        "jpx-decoy-size",
        "jbig2-striped",
        "jbig2-behind-flate",
        "jpx-no-size",
        "jbig2-second-page",
        "jpeg-height-later",
    ],
)
def test_the_size_an_image_s_data_gives_is_read_as_readers_read_it(
    tmp_path: Path, filters: bytes, coded: bytes
) -> None:
    """A review of the first check: another filter in front, a stray byte libjpeg
    skips, junk before the image, a decoy size in another JP2 box, a striped JBIG2
    page all passed a 6400 x 64 image declared 64 x 64."""
    result = disarm(request_for(tmp_path, _image_page(filters, coded)))
    assert result.outcome == "unprocessable", result


def test_a_page_in_the_jbig2_globals_is_refused(tmp_path: Path) -> None:
    """The shared segments held a 60000 x 60000 page (poppler: 449 MB) while the
    image's own stream held a 64 x 64 one."""
    globals_ = _jbig2_page(60000, 60000)[:-11]  # (the page, without its end)
    head = b"/Type /XObject /Subtype /Image /Width 64 /Height 64 /ImageMask true "
    head += b"/Filter /JBIG2Decode /DecodeParms << /JBIG2Globals 6 0 R >>"
    data = _page_with(
        b"4 0 R",
        {
            5: _stream(head, _jbig2_page(64, 64)),
            6: _stream(b"", globals_),
            4: _stream(b"", b"q 64 0 0 64 0 0 cm /Im0 Do Q\n"),
        },
        b"<< /XObject << /Im0 5 0 R >> >>",
    )
    assert disarm(request_for(tmp_path, data)).outcome == "unprocessable"
    # (one empty symbol dictionary segment: number 0, type 0, page 0, no data)
    harmless = data.replace(
        b"/Length %d >>\nstream\n" % len(globals_) + globals_,
        b"/Length 11 >>\nstream\n" + bytes(11),
    )
    assert disarm(request_for(tmp_path, harmless)).outcome in ("rebuilt", "unmodified")


def test_a_jp2_image_of_its_declared_size_passes(tmp_path: Path) -> None:
    assert gicap_pdf._jpx_size(_jp2((64, 64), (64, 64))) == (64, 64, 64 * 64 * 4)
    assert gicap_pdf._jpx_size(_siz(64, 48)) == (64, 48, 64 * 48 * 4)


def _jpx_page(components: int) -> bytes:
    """A page drawing a grey 2048 x 2048 image coded as a JPEG 2000 codestream of
    ``components`` components."""
    head = b"/Type /XObject /Subtype /Image /Width 2048 /Height 2048 /ColorSpace /DeviceGray "
    head += b"/BitsPerComponent 8 /Filter /JPXDecode"
    return _page_with(
        b"4 0 R",
        {
            5: _stream(head, _siz(2048, 2048, components) + b"\xff\xd9"),
            4: _stream(b"", b"q 64 0 0 64 0 0 cm /Im0 Do Q\n"),
        },
        b"<< /XObject << /Im0 5 0 R >> >>",
    )


def test_a_jpeg_2000_image_counts_every_component_of_its_codestream(tmp_path: Path) -> None:
    """OpenJPEG decodes each of a codestream's components (up to 16,384) as 32-bit
    samples, whatever the colour space says: 100 components of 2048 x 2048 declared
    as one grey image are 1.6 GB, beyond the 1 GiB all images and streams may take."""
    result = disarm(request_for(tmp_path, _jpx_page(100)))
    assert result.outcome == "unprocessable" and "decompression bomb" in result.reason
    assert disarm(request_for(tmp_path, _jpx_page(3))).outcome in ("rebuilt", "unmodified")


# ------------------------------------------------- a review of the PDF engine (3)

_PAGE = {
    1: b"<< /Type /Catalog /Pages 2 0 R >>",
    2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << >> >>",
}


def _inserted(pdf: bytes, extra: bytes) -> bytes:
    """``pdf`` (``classic_pdf``'s) with ``extra`` before its first object, in no
    cross-reference entry: the table's offsets moved past it."""
    at = pdf.index(b"1 0 obj")
    out = pdf[:at] + extra + pdf[at:]
    xref = pdf.rindex(b"\nxref\n") + 1
    out = out.replace(b"startxref\n%d" % xref, b"startxref\n%d" % (xref + len(extra)))
    for offset in [int(m) for m in re.findall(rb"(\d{10}) 00000 n", pdf)]:
        moved = b"%010d 00000 n" % (offset + len(extra))
        out = out.replace(b"%010d 00000 n" % offset, moved)
    return out


_LINEARIZED = (
    b"10 0 obj\n<< /Linearized 1 /L 9999 /O 3 /E 100 /N 1 /T 100 /H [100 100] >>\nendobj\n"
)
_OBJECT_STREAM = (
    b"11 0 obj\n<< /Type /ObjStm /N 1 /First 4 /Length 12 >>\nstream\n1 0 << >>   \n"
    b"endstream\nendobj\n"
)


def test_a_clean_file_another_reader_may_read_otherwise_is_rewritten(tmp_path: Path) -> None:
    """Delivered as it came (nothing found): a /Linearized dictionary first in the
    file that no cross-reference entry names (poppler and pdf.js read the section
    after it, qpdf never fetched it); an object stream no entry of the classic table
    names (a hybrid file's /XRefStm indexes it for other readers: one holding an
    object twice, qpdf kept the last copy and the others the indexed one)."""
    clean = classic_pdf(_PAGE, b"<< /Root 1 0 R >>")
    assert disarm(request_for(tmp_path, clean)).outcome == "unmodified"
    for extra, why in ((_LINEARIZED, "linearization"), (_OBJECT_STREAM, "object streams")):
        request = request_for(tmp_path, _inserted(clean, extra))
        result = disarm(request)
        assert result.outcome == "rebuilt", result
        assert [a.detail for a in result.actions if why in a.detail], result.actions
        assert request.destination.exists()


_ALERT = b"<< /S /JavaScript /JS (app.alert\\(1\\)) >>"


@pytest.mark.parametrize(
    "page",
    [b"/AA << /O [ 4 0 R ] >>", b"/AA << /O << /S /GoTo /D [3 0 R /Fit] /Next [ [ 4 0 R ] ] >> >>"],
    ids=["aa-array", "nested-next-array"],
)
def test_scripts_in_arrays_of_actions_are_javascript(tmp_path: Path, page: bytes) -> None:
    """pdf.js runs the actions of an /AA entry given as an array, and of arrays in a
    /Next array, at any depth: with actions allowed, the script was delivered."""
    objects = dict(_PAGE)
    objects[3] = objects[3][:-2] + page + b" >>"
    objects[4] = _ALERT
    data = classic_pdf(objects, b"<< /Root 1 0 R >>")
    request = request_for(tmp_path, data, policy(actions="allow"))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert any(a.switch == "javascript" and a.action == "removed" for a in result.actions)
    assert b"app.alert" not in qdf(request.destination)


@pytest.mark.parametrize(
    ("xobject", "switch"),
    [
        (b"/Type /XObject /Subtype /PS", "actions"),
        (
            b"/Type /XObject /Subtype /Form /BBox [0 0 10 10] "
            b"/Ref << /F << /FS /URL /F (http://evil.example/p.pdf) >> /Page 0 >>",
            "external_hyperlinks",
        ),
    ],
    ids=["postscript", "reference"],
)
def test_postscript_and_reference_xobjects_go(tmp_path: Path, xobject: bytes, switch: str) -> None:
    """A PostScript XObject (a printer runs it) and a reference XObject (a page
    imported from a URL) were delivered unmodified."""
    objects = dict(_PAGE)
    objects[3] = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /XObject << /X0 5 0 R >> >> /Contents 4 0 R >>"
    )
    objects[4] = b"<< /Length 8 >>\nstream\n/X0 Do \nendstream"
    objects[5] = b"<< " + xobject + b" /Length 8 >>\nstream\nshowpage\nendstream"
    request = request_for(tmp_path, classic_pdf(objects, b"<< /Root 1 0 R >>"))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert any(a.switch == switch and a.action == "removed" for a in result.actions), result
    out = qdf(request.destination)
    assert b"/PS" not in out and b"evil.example" not in out


def test_an_array_of_millions_of_items_is_refused(tmp_path: Path) -> None:
    """5 million references to one object, packed in a 44 KB object stream, took
    1.3 GB to walk (a CDR worker of 1 GiB aborted)."""
    pdf = pikepdf.new()
    pdf.add_blank_page()
    target = pdf.make_indirect(Dictionary(X=1))
    pdf.Root.Big = pdf.make_indirect(Array([target] * (gicap_pdf.MAX_ARRAY_ITEMS + 1)))
    buf = io.BytesIO()
    pdf.save(buf, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    assert len(buf.getvalue()) < 100_000
    result = disarm(request_for(tmp_path, buf.getvalue()))
    assert result.outcome == "unprocessable" and "items" in result.reason, result


@pytest.mark.parametrize("quick", [True, False], ids=["shortcut", "walk"])
def test_references_in_dictionaries_count_toward_the_entries_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick: bool
) -> None:
    """500,000 direct dictionaries of 10 references each, in one array (160 KB): 5
    million references walked in 25 s (774 MiB). Counted with the arrays' items
    (the limit lowered here to keep the test small)."""
    monkeypatch.setattr(gicap_pdf, "MAX_TOTAL_ARRAY_ITEMS", 1000)
    pdf = pikepdf.new()
    pdf.add_blank_page()
    target = pdf.make_indirect(Dictionary(X=1))
    entries = {f"/K{i}": target for i in range(10)}
    pdf.Root.Big = pdf.make_indirect(Array([Dictionary(entries) for _ in range(200)]))
    if not quick:  # (a finding makes the engine walk the document)
        pdf.Root.OpenAction = Dictionary(S=Name.JavaScript, JS=String("app.alert(1)"))
    buf = io.BytesIO()
    pdf.save(buf)
    result = disarm(request_for(tmp_path, buf.getvalue()))
    assert result.outcome == "unprocessable" and "entries in all" in result.reason, result


_XDP = (
    '<xdp:xdp xmlns:xdp="http://ns.adobe.com/xdp/"><template '
    'xmlns:{p}="http://www.xfa.org/schema/xfa-template/3.3/"><{p}:subform name="form1">'
    "<{p}:script contentType='application/x-javascript'>app.alert(1)</{p}:script>"
    "<{p}:field name='f'/></{p}:subform></template></xdp:xdp>"
)


@pytest.mark.parametrize(
    "xml",
    [
        "\ufeff".encode("utf-16-le") + _XDP.format(p="t").encode("utf-16-le"),
        _XDP.format(p="tëmplate").encode(),
    ],
    ids=["utf-16", "non-ascii-prefix"],
)
def test_xfa_scripts_go_whatever_the_encoding_or_prefix(tmp_path: Path, xml: bytes) -> None:
    """Kept XFA (a non-default policy) had its scripts searched for as ASCII bytes:
    a UTF-16 form, or a script element whose prefix holds a non-ASCII letter, kept
    its JavaScript (Adobe Reader reads both)."""
    pdf = _new()
    pdf.Root.AcroForm = Dictionary(Fields=Array([]), XFA=pdf.make_stream(xml))
    request = request_for(tmp_path, _saved(pdf), policy(xfa="allow", acroform="allow"))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert ("javascript", "removed", "XFA scripts") in [
        (a.switch, a.action, a.detail) for a in result.actions
    ]
    with pikepdf.open(request.destination) as out:
        kept = out.Root.AcroForm.get("/XFA")
        text = kept.read_bytes().decode() if kept is not None else ""
    assert "app.alert" not in text and "script" not in text
    assert kept is None or "field name" in text


def test_the_reason_a_user_sees_names_no_server_path(tmp_path: Path) -> None:
    """qpdf's message quotes the file it read: the block page showed the server's
    temporary path (/tmp/gicap-cdr-.../original)."""
    from gicap.cdr import job
    from gicap.cdr.policy import build_profile

    source = tmp_path / "original"
    source.write_bytes(b"%PDF-1.7\n1 0 obj<<>>endobj\ngarbage")
    profile = build_profile("default", {}).as_dict()
    answer = job.disarm_file(source, tmp_path / "out", profile, "default", "x.pdf", 1 << 20)
    assert answer["outcome"] == "unprocessable", answer
    assert str(tmp_path) not in answer["reason"] and "trailer" in answer["reason"], answer


def _hidden_open_action(first_entry: bytes) -> bytes:
    """A clean page, and an orphan stream whose data holds a catalog with an
    /OpenAction script: objects only a reader that indexes the file itself finds."""
    hidden = (
        b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>\nendobj\n"
        b"5 0 obj\n<< /S /JavaScript /JS (app.alert\\(1\\)) >>\nendobj\n"
    )
    data = classic_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Resources << >> >>",
            4: b"<< /Length %d >>\nstream\n%s\nendstream" % (len(hidden), hidden),
        },
        b"<< /Root 1 0 R >>",
    )
    return data.replace(b"0000000000 65535 f \n", first_entry, 1)


@pytest.mark.parametrize(
    "first_entry",
    [b"0000000009 65535 n \n", b"0000000000 65535 f \n"],
    ids=["entry-0-in-use", "entry-0-free"],
)
def test_objects_a_reader_indexing_the_file_would_find_are_never_delivered(
    tmp_path: Path, first_entry: bytes
) -> None:
    """pdf.js refuses a table whose entry 0 is in use and indexes every "N G obj" in
    the file, stream data too: the hidden catalog's /OpenAction ran there. qpdf saw
    a clean file, and its bytes went out as they came. Such a file is rewritten as
    qpdf reads it (the orphan stream and what it hides gone)."""
    request = request_for(tmp_path, _hidden_open_action(first_entry), policy())
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    out = request.destination.read_bytes()
    assert b"app.alert" not in out and b"OpenAction" not in out
    with pikepdf.open(io.BytesIO(out)) as pdf:
        assert len(pdf.pages) == 1


def test_the_search_for_scripts_in_next_arrays_has_one_budget_per_document(
    tmp_path: Path,
) -> None:
    """Each item of a /Next array had a search budget of its own: 100,000 items naming
    one array of 1,000 numbers took 30 s. The budget is the document's now; past it,
    a script is assumed (and removed): 2,000 items naming one of 500 go past it."""
    items = b"7 0 R " * 2_000
    data = classic_pdf(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Annots [4 0 R] >>",
            4: b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10]"
            b" /A << /S /GoTo /D [3 0 R /Fit] /Next 6 0 R >> >>",
            6: b"[" + items + b"]",
            7: b"[" + b"0 " * 500 + b"]",
        },
        b"<< /Root 1 0 R >>",
    )
    request = request_for(tmp_path, data, policy(internal_hyperlinks="allow"))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert any(
        a.switch == "javascript" and "nested /Next array" in a.detail for a in result.actions
    ), result.actions
    assert b"/Next" not in qdf(request.destination)


def test_widgets_of_an_annots_array_pages_share_are_drawn_a_bounded_number_of_times(
    tmp_path: Path,
) -> None:
    """Flattening a form draws each widget into each page that lists it: 10,000 pages
    sharing one /Annots array of 100 widgets took 72 s and 2.3 GB. Past
    MAX_WIDGET_DRAWINGS drawings the file is refused."""
    pages, widgets = 2_000, 30
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields 4 0 R >> >>",
        2: b"<< /Type /Pages /Kids ["
        + b"".join(b"%d 0 R " % (100 + i) for i in range(pages))
        + b"] /Count %d >>" % pages,
        3: b"<< /Type /XObject /Subtype /Form /BBox [0 0 10 10] /Length 0 >>\nstream\n\nendstream",
        4: b"[" + b"".join(b"%d 0 R " % (10 + i) for i in range(widgets)) + b"]",
    }
    for i in range(widgets):
        objects[10 + i] = (
            b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (f%d) /Rect [0 0 10 10]"
            b" /AP << /N 3 0 R >> >>" % i
        )
    for i in range(pages):
        objects[100 + i] = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Annots 4 0 R >>"
    request = request_for(tmp_path, classic_pdf(objects, b"<< /Root 1 0 R >>"), policy())
    result = disarm(request)
    assert result.outcome == "unprocessable" and "form widgets" in result.reason, result
    assert gicap_pdf.MAX_WIDGET_DRAWINGS < pages * widgets


_HIDDEN_NAMES = (
    b"8 0 obj\n<< /JavaScript << /Names [(a) << /S /JavaScript /JS (app.alert\\(1\\)) >>] >>"
    b" /EmbeddedFiles << /Names [(eicar.com) << /Type /Filespec /F (eicar.com)"
    b" /EF << /F 10 0 R >> >>] >> >>\nendobj\n"
    b"10 0 obj\n" + BASE[8] + b"\nendobj\n"
)


def _free_entry_named(variant: str) -> bytes:
    """The catalog's /Names is 8 0 R, an entry the table lists as free; the bytes of
    "8 0 obj" (a script and an embedded file) are in the file, in no entry. qpdf reads
    the reference as null, without a warning; poppler, failing to fetch 8, rebuilds
    the table by scanning the file, and finds them. The count of headers that was to
    catch this was brought back to the number of entries in use two ways."""
    objects = {
        1: b"<< /Type /Catalog /Pages 3 0 R /Names 8 0 R >>",
        **{n: BASE[n] for n in (3, 4, 5)},
        6: b"[0 0 612 792]",
    }
    headers = {n: b"%d 0 obj\n" % n for n in objects}
    if variant == "headers-hidden-from-a-count":
        headers[5] = b"5 0 %c\nobj\n"  # (a comment, and a NUL, are white space)
        headers[6] = b"6\x000 obj\n"
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    at = {}
    for n, body in objects.items():
        at[n] = len(out)
        out += headers[n] + body + b"\nendobj\n"
    out += _HIDDEN_NAMES  # (two headers no entry names)
    xref = len(out)
    size = 12
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for n in range(1, size):
        if n in at:
            out += b"%010d 00000 n \n" % at[n]
        elif variant == "entries-pointing-at-nothing" and n in (9, 11):
            out += b"0000000017 00000 n \n"
        else:
            out += b"0000000000 00001 f \n"
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


@pytest.mark.parametrize("variant", ["entries-pointing-at-nothing", "headers-hidden-from-a-count"])
def test_a_reference_to_a_free_entry_never_delivers_the_bytes_as_they_came(
    tmp_path: Path, variant: str
) -> None:
    """Delivered unmodified: poppler read the document script and listed the embedded
    file in the file gicap sent. Every entry in use must point at its own header, no
    other header may be in the bytes, and every reference must name an entry in use,
    or the file is rewritten as qpdf reads it (or refused when it cannot be)."""
    data = _free_entry_named(variant)
    source = tmp_path / "src.pdf"
    source.write_bytes(data)
    scripted, files = _poppler(source)
    assert scripted and "eicar.com" in files  # poppler finds what qpdf does not
    request = request_for(tmp_path, data)
    result = disarm(request)
    assert result.outcome in ("rebuilt", "unprocessable"), result
    if result.outcome == "rebuilt":
        scripted, files = _poppler(request.destination)
        assert not scripted and "eicar.com" not in files


def test_a_clean_classic_file_is_still_delivered_as_it_came(tmp_path: Path) -> None:
    objects = {1: CLEAN, **{n: BASE[n] for n in (3, 4, 5)}}
    request = request_for(tmp_path, classic_pdf(objects, b"<< /Root 1 0 R >>"))
    assert disarm(request).outcome == "unmodified"


@pytest.mark.parametrize(
    ("dest", "switch", "name"),
    [
        (b"<< /S /URI /URI (https://attacker.example/x) >>", "external_hyperlinks", "/URI"),
        (b"<< /S /Launch /F (calc.exe) >>", "actions", "/Launch"),
        (b"<< /S /JavaScript /JS (app.launchURL\\(1\\)) >>", "javascript", "/JS"),
    ],
    ids=["uri", "launch", "javascript"],
)
def test_a_destination_given_as_an_action_is_judged_as_one(
    tmp_path: Path, dest: bytes, switch: str, name: str
) -> None:
    """pdf.js takes a dictionary given as a link's or outline item's /Dest as its
    action ("as some bad generators write it") and followed a URI there; the engine
    filed every /Dest as an internal link, kept by internal_hyperlinks = allow."""
    data = classic_pdf(
        {
            1: b"<< /Type /Catalog /Pages 3 0 R /Outlines 10 0 R >>",
            3: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            4: b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Contents 5 0 R"
            b" /Annots [6 0 R] >>",
            5: BASE[5],
            6: b"<< /Type /Annot /Subtype /Link /Rect [0 0 100 100] /Dest " + dest + b" >>",
            10: b"<< /Type /Outlines /First 11 0 R /Last 11 0 R /Count 1 >>",
            11: b"<< /Title (Chapter) /Parent 10 0 R /Dest 12 0 R >>",
            12: dest,
        },
        b"<< /Root 1 0 R >>",
    )
    request = request_for(tmp_path, data, policy(internal_hyperlinks="allow"))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert any(a.switch == switch and a.action == "removed" for a in result.actions), result
    assert not names_in(qdf(request.destination), name)


def test_article_thread_information_and_a_certification_signer_go(tmp_path: Path) -> None:
    """An article thread's /I (the syntax of the information dictionary: title,
    author, keywords, dates) and a certification signature's signer (/Perms /DocMDP:
    name, place, contact, time) stayed under metadata = sanitise."""
    pdf = _new()
    page = pdf.pages[0].obj
    bead = pdf.make_indirect(Dictionary(Type=Name.Bead, P=page, R=Array([0, 0, 10, 10])))
    info = Dictionary(Title=String("Secret plan"), Author=String("Alice Author"))
    thread = pdf.make_indirect(Dictionary(Type=Name.Thread, F=bead, I=info))
    bead.T, bead.N, bead.V = thread, bead, bead
    pdf.Root.Threads = Array([thread])
    signature = pdf.make_indirect(
        Dictionary(
            Type=Name.Sig,
            Filter=Name("/Adobe.PPKLite"),
            Name=String("Alice Signer"),
            Location=String("Head office"),
            ContactInfo=String("alice@example.com"),
        )
    )
    pdf.Root.Perms = Dictionary(DocMDP=signature)
    request = request_for(tmp_path, _saved(pdf))
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert any(
        a.switch == "metadata" and "article thread information" in a.detail for a in result.actions
    ), result.actions
    out = qdf(request.destination)
    for text in (b"Secret plan", b"Alice Author", b"Alice Signer", b"Head office"):
        assert text not in out
    with pikepdf.open(request.destination) as rebuilt:
        assert len(rebuilt.Root.Threads) == 1 and "/F" in rebuilt.Root.Threads[0]


def _in_hash_seeds(tmp_path: Path, build: str, seeds: range = range(1, 5)) -> list[Any]:
    """What ``build`` (a script writing a PDF as ``pdf``) gives the engine with each
    hash seed (set order, and so the walk's order, follows it): (outcome, details) for
    each, the output in ``tmp_path/seedN/out.pdf``."""
    import json
    import os
    import sys

    from tests.support import ROOT

    script = (
        "import json, sys\nimport pikepdf\nfrom pikepdf import Array, Dictionary, Name, String"
        "\nfrom pathlib import Path\nfrom tests.plugins.test_pdf import disarm, request_for\n"
        "pdf = pikepdf.new()\npdf.add_blank_page()\n"
        + build
        + "\ntmp = Path(sys.argv[1])\npdf.save(tmp / 'in.pdf')\n"
        "result = disarm(request_for(tmp, (tmp / 'in.pdf').read_bytes()))\n"
        "print(json.dumps([result.outcome, [a.detail for a in result.actions]]))\n"
    )
    results = []
    for seed in seeds:
        work = tmp_path / f"seed{seed}"
        work.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", script, str(work)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


_SHARED_NAMES = """
ef = pdf.make_stream(b"MZ-payload")
ef.Type = Name.EmbeddedFile
spec = Dictionary(Type=Name.Filespec, F=String("evil.exe"), EF=Dictionary(F=ef))
script = Dictionary(S=Name.JavaScript, JS=String("app.alert(1)"))
names = pdf.make_indirect(
    Dictionary(
        EmbeddedFiles=Dictionary(Names=Array([String("evil.exe"), pdf.make_indirect(spec)])),
        JavaScript=Dictionary(Names=Array([String("a"), pdf.make_indirect(script)])),
    )
)
pdf.Root.Names = names
pdf.pages[0].obj.PieceOfMind = names  # (a second reference to the same dictionary)
"""


def test_the_catalogs_name_trees_are_told_whatever_reaches_them_first(tmp_path: Path) -> None:
    """Another object naming the catalog's /Names dictionary, walked first, made it
    an ordinary dictionary: its trees stayed (emptied), pdfdetach still listed the
    file, and the report named neither tree. Which walk came first changed with the
    hash seed: five seeds of six."""
    for seed, (outcome, details) in enumerate(_in_hash_seeds(tmp_path, _SHARED_NAMES), 1):
        assert outcome == "rebuilt"
        assert any("(name tree)" in d and "JavaScript" in d for d in details), (seed, details)
        assert any("embedded files (name tree)" in d for d in details), (seed, details)
        files = subprocess.run(
            [
                require_tool("pdfdetach", "poppler-utils"),
                "-list",
                str(tmp_path / f"seed{seed}" / "out.pdf"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert "evil.exe" not in files, (seed, files)


def test_the_walk_gives_the_same_answer_whatever_the_hash_seed(tmp_path: Path) -> None:
    """A script listed in the document's JavaScript tree and in a link's /A array: the
    answer changed with the hash seed (removed, or refused as unprocessable in one of
    eight). Keys are walked in order now."""
    build = """
js = pdf.make_indirect(Dictionary(S=Name.JavaScript, JS=String("app.alert(1)")))
pdf.Root.Names = Dictionary(JavaScript=Dictionary(Names=Array([String("init"), js])))
link = Dictionary(Type=Name.Annot, Subtype=Name.Link, Rect=Array([0, 0, 9, 9]), A=Array([js]))
pdf.pages[0].obj.Annots = Array([pdf.make_indirect(link)])
"""
    results = _in_hash_seeds(tmp_path, build, range(1, 7))
    assert all(r == results[0] for r in results), results
    assert results[0][0] == "rebuilt"


def test_a_percent_sign_earlier_on_a_line_hides_no_header() -> None:
    """Read backwards, a "%" earlier on the line (in a string, or a comment line the
    header follows) swallowed a header's digits: headers went uncounted, the count
    could match the entries in use, and a file with a hidden script and embedded file
    would go out as it came. Every header is counted, as a reader scanning the file
    finds them."""
    lines = [
        b"(100%) 8 0 obj",
        b"% 100% 9 0 obj",
        b"/Desc (1%) 10 0 %c\nobj",
        b"11\x000 obj",
        b"12 %x\n0 %y\nobj",
    ]
    data = b"\n".join(lines) + b"\n"
    assert sum(1 for _ in gicap_pdf._OBJECT_HEADER_REVERSED.finditer(data[::-1])) == len(lines)
