"""The PDF engine (plugins/gicap-pdf): every switch, damaged and hostile files.

The corpus is built here with pikepdf (scripts only call ``app.alert``, the embedded
file is the EICAR test string). What the engine removed is checked by tools that
share no code with it: ``qpdf --qdf`` expands the output (no object streams, streams
uncompressed) and the expanded bytes are searched for the PDF names of each kind of
content; ``qpdf --check`` validates outputs, ``pdftotext`` (poppler-utils) extracts
their text. Without those tools the tests that need them skip (they fail instead
with ``GICAP_REQUIRE_INTEROP=1``).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import gicap_pdf
import pikepdf
import pytest
from pikepdf import Array, Dictionary, Name, String
from PIL import Image

from gicap.cdr.job import run_job
from gicap.cdr.policy import SWITCHES, build_profile
from gicap.cdr.types import DisarmRequest, DisarmResult, FileType
from gicap.plugins import create_plugin_host
from tests.support import require_tool

PDF = FileType("pdf", "pdf", "application/pdf", "pdf")
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
JS = "app.alert('gicap-test')"
PDF_SWITCHES = SWITCHES["pdf"]


# ------------------------------------------------------------------ tools


def _tool(name: str) -> str:
    """Path of a reference tool; skip without it (fail with GICAP_REQUIRE_INTEROP=1)."""
    return require_tool(name, "qpdf, poppler-utils")


def qdf(path: Path) -> bytes:
    """The file expanded by qpdf: every object in clear, every stream decoded."""
    out = path.with_suffix(".qdf")
    proc = subprocess.run(
        [_tool("qpdf"), "--qdf", "--object-streams=disable", str(path), str(out)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode in (0, 3), proc.stderr  # 3: warnings only
    return out.read_bytes()


def qpdf_check(path: Path) -> None:
    proc = subprocess.run(
        [_tool("qpdf"), "--check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No syntax or stream encoding errors found" in proc.stdout


def page_count(path: Path) -> int:
    proc = subprocess.run(
        [_tool("qpdf"), "--show-npages", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


def text_of(path: Path) -> str:
    proc = subprocess.run(
        [_tool("pdftotext"), "-q", str(path), "-"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


def names_in(expanded: bytes, *names: str) -> set[str]:
    """Which of the PDF names (``/JS``...) appear as names in qpdf's expanded output."""
    return {n for n in names if re.search(re.escape(n.encode()) + rb"(?![A-Za-z0-9#.])", expanded)}


# ----------------------------------------------------------------- corpus


def base(pages: int = 2) -> pikepdf.Pdf:
    """A clean document: each page says "Hello page N" in Helvetica."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        Dictionary(Type=Name.Font, Subtype=Name.Type1, BaseFont=Name.Helvetica)
    )
    for i in range(pages):
        pdf.add_blank_page(page_size=(612, 792))
        page = pdf.pages[-1].obj
        page.Resources = Dictionary(Font=Dictionary(F1=font))
        page.Contents = pdf.make_stream(b"BT /F1 24 Tf 72 700 Td (Hello page %d) Tj ET" % (i + 1))
    return pdf


def to_bytes(pdf: pikepdf.Pdf, object_streams: bool = False) -> bytes:
    """Uncompressed objects and streams, so raw-byte checks see every string."""
    buf = io.BytesIO()
    mode = pikepdf.ObjectStreamMode.generate if object_streams else pikepdf.ObjectStreamMode.disable
    with warnings.catch_warnings():
        # (the risky files are built so on purpose: widgets no /AcroForm reaches...)
        warnings.simplefilter("ignore", UserWarning)
        pdf.save(buf, object_stream_mode=mode, compress_streams=object_streams)
    return buf.getvalue()


def js_action(pdf: pikepdf.Pdf, code: str = JS) -> pikepdf.Object:
    return pdf.make_indirect(Dictionary(S=Name.JavaScript, JS=String(code)))


def link(pdf: pikepdf.Pdf, page: int, **entries: object) -> pikepdf.Object:
    annot = pdf.make_indirect(
        Dictionary(Type=Name.Annot, Subtype=Name.Link, Rect=[72, 600, 300, 630], **entries)
    )
    pdf.pages[page].obj.Annots = pdf.make_indirect(Array([annot]))
    return annot


def build_clean() -> bytes:
    return to_bytes(base())


def build_js_names() -> bytes:
    pdf = base()
    pdf.Root.Names = Dictionary(JavaScript=Dictionary(Names=[String("init"), js_action(pdf)]))
    return to_bytes(pdf)


def build_js_open_action() -> bytes:
    pdf = base()
    pdf.Root.OpenAction = js_action(pdf)
    return to_bytes(pdf)


def build_js_page_aa() -> bytes:
    pdf = base()
    pdf.pages[0].obj.AA = Dictionary(O=js_action(pdf))
    return to_bytes(pdf)


def build_js_in_next_chain() -> bytes:
    """A harmless-looking GoTo link whose /Next runs JavaScript."""
    pdf = base()
    goto = Dictionary(S=Name.GoTo, D=[pdf.pages[1].obj, Name.Fit], Next=js_action(pdf))
    link(pdf, 0, A=goto)
    return to_bytes(pdf)


def build_js_object_streams() -> bytes:
    pdf = base()
    pdf.Root.OpenAction = js_action(pdf)
    return to_bytes(pdf, object_streams=True)


def build_launch() -> bytes:
    pdf = base()
    link(pdf, 0, A=Dictionary(S=Name.Launch, F=String("gicap-launch-target.exe")))
    return to_bytes(pdf)


def build_submit_on_page_close() -> bytes:
    pdf = base()
    submit = Dictionary(
        S=Name.SubmitForm, F=Dictionary(FS=Name.URL, F=String("https://gicap.invalid/submit"))
    )
    pdf.pages[0].obj.AA = Dictionary(C=submit)
    return to_bytes(pdf)


def build_embedded_file() -> bytes:
    pdf = base()
    data = pdf.make_stream(EICAR, Type=Name.EmbeddedFile)
    spec = pdf.make_indirect(
        Dictionary(Type=Name.Filespec, F=String("eicar.com"), EF=Dictionary(F=data))
    )
    pdf.Root.Names = Dictionary(EmbeddedFiles=Dictionary(Names=[String("eicar.com"), spec]))
    return to_bytes(pdf)


def build_file_attachment() -> bytes:
    pdf = base()
    data = pdf.make_stream(EICAR, Type=Name.EmbeddedFile)
    spec = Dictionary(Type=Name.Filespec, F=String("eicar.com"), EF=Dictionary(F=data))
    annot = pdf.make_indirect(
        Dictionary(Type=Name.Annot, Subtype=Name.FileAttachment, Rect=[72, 500, 90, 520], FS=spec)
    )
    pdf.pages[0].obj.Annots = Array([annot])
    return to_bytes(pdf)


def build_uri_link() -> bytes:
    pdf = base()
    link(pdf, 0, A=Dictionary(S=Name.URI, URI=String("https://gicap.invalid/landing")))
    return to_bytes(pdf)


def build_internal_links() -> bytes:
    """A link to page 2 and an outline entry "Chapter 2" going there."""
    pdf = base()
    link(pdf, 0, Dest=[pdf.pages[1].obj, Name.Fit])
    outlines = pdf.make_indirect(Dictionary(Type=Name.Outlines, Count=1))
    item = pdf.make_indirect(
        Dictionary(
            Title=String("Chapter 2"),
            Parent=outlines,
            A=Dictionary(S=Name.GoTo, D=[pdf.pages[1].obj, Name.Fit]),
        )
    )
    outlines.First = outlines.Last = item
    pdf.Root.Outlines = outlines
    return to_bytes(pdf)


def build_acroform() -> bytes:
    """A text field whose appearance shows "FIELDVALUE"; typing runs a keystroke script
    when JavaScript is present (see build_acroform_with_js)."""
    pdf = base()
    font = pdf.pages[0].obj.Resources.Font.F1
    appearance = pdf.make_stream(
        b"/Tx BMC BT /F1 12 Tf 2 6 Td (FIELDVALUE) Tj ET EMC",
        Type=Name.XObject,
        Subtype=Name.Form,
        BBox=[0, 0, 200, 24],
        Resources=Dictionary(Font=Dictionary(F1=font)),
    )
    field = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Widget,
            FT=Name.Tx,
            T=String("name"),
            V=String("FIELDVALUE"),
            Rect=[72, 400, 272, 424],
            F=4,
            AP=Dictionary(N=appearance),
            P=pdf.pages[0].obj,
        )
    )
    pdf.pages[0].obj.Annots = Array([field])
    pdf.Root.AcroForm = Dictionary(
        Fields=[field], DA=String("/F1 12 Tf 0 g"), DR=Dictionary(Font=Dictionary(F1=font))
    )
    return to_bytes(pdf)


def build_xfa(script: bool = True) -> bytes:
    pdf = base()
    body = (
        b"<script contentType='application/x-javascript'>app.alert(1)</script>" if script else b""
    )
    xdp = (
        b'<xdp:xdp xmlns:xdp="http://ns.adobe.com/xdp/"><template '
        b'xmlns="http://www.xfa.org/schema/xfa-template/3.3/"><subform name="form1">'
        + body
        + b"<field name='f'/></subform></template></xdp:xdp>"
    )
    pdf.Root.AcroForm = Dictionary(Fields=Array(), XFA=pdf.make_stream(xdp))
    pdf.Root.NeedsRendering = True
    return to_bytes(pdf)


def build_metadata() -> bytes:
    pdf = base()
    with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
        meta["dc:creator"] = ["Gicap Tester"]
    pdf.docinfo["/Author"] = "Gicap Tester"
    pdf.docinfo["/Title"] = "Secret title"
    pdf.pages[0].obj.PieceInfo = Dictionary(Gicap=Dictionary(Private=String("piece")))
    pdf.pages[0].obj.LastModified = String("D:20240101000000Z")
    return to_bytes(pdf)


def jpeg_bytes(exif: bool, size: tuple[int, int] = (64, 48)) -> bytes:
    img = Image.new("RGB", size, (200, 40, 40))
    buf = io.BytesIO()
    if exif:
        info = Image.Exif()
        info[0x010E] = "gicap-exif-description"  # ImageDescription
        img.save(buf, "JPEG", exif=info.tobytes(), comment=b"gicap-jpeg-comment")
        return buf.getvalue() + b"gicap-appended-after-eoi"
    img.save(buf, "JPEG")
    return buf.getvalue()


def build_image(exif: bool = True, extra_key: bool = True) -> bytes:
    pdf = base()
    image = pdf.make_stream(
        jpeg_bytes(exif),
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=64,
        Height=48,
        ColorSpace=Name.DeviceRGB,
        BitsPerComponent=8,
        Filter=Name.DCTDecode,
    )
    if extra_key:
        image.GicapPrivate = String("hidden-in-image-dict")
    page = pdf.pages[0].obj
    page.Resources.XObject = Dictionary(Im1=image)
    page.Contents.write(page.Contents.read_bytes() + b" q 64 0 0 48 72 500 cm /Im1 Do Q")
    return to_bytes(pdf)


def build_pixel_bomb() -> bytes:
    pdf = base()
    # 100,000 x 100,000 RGB pixels (30 GB decoded) from a few KB of Flate.
    comp = zlib.compressobj(9)
    data = comp.compress(b"\0" * 3_000_000) + comp.flush()
    image = pdf.make_stream(
        data,
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=100_000,
        Height=100_000,
        ColorSpace=Name.DeviceRGB,
        BitsPerComponent=8,
    )
    image.Filter = Name.FlateDecode
    pdf.pages[0].obj.Resources.XObject = Dictionary(Im1=image)
    return to_bytes(pdf)


def build_stream_bomb(decoded: int) -> bytes:
    """A page content stream of ``decoded`` bytes of spaces, Flate-compressed."""
    pdf = base()
    comp = zlib.compressobj(9)
    chunk = b" " * (1024 * 1024)
    data = b"".join(comp.compress(chunk) for _ in range(decoded // len(chunk))) + comp.flush()
    stream = pdf.make_stream(b"")
    stream.write(data, filter=Name.FlateDecode)
    pdf.pages[1].obj.Contents = stream
    return to_bytes(pdf)


def build_encrypted(user_password: str) -> bytes:
    pdf = base()
    buf = io.BytesIO()
    pdf.save(buf, encryption=pikepdf.Encryption(owner="owner-secret", user=user_password))
    return buf.getvalue()


def incremental_update(base_pdf: bytes, objects: dict[int, bytes], root: int) -> bytes:
    """Append a revision (new versions of ``objects``, an xref section, a trailer
    pointing back with /Prev) to a PDF with a classic xref table."""
    prev = int(re.findall(rb"startxref\s+(\d+)", base_pdf)[-1])
    size = int(re.findall(rb"/Size (\d+)", base_pdf)[-1])
    out = bytearray(base_pdf if base_pdf.endswith(b"\n") else base_pdf + b"\n")
    offsets = {}
    for num, body in sorted(objects.items()):
        offsets[num] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (num, body)
    xref = len(out)
    out += b"xref\n"
    for num, offset in sorted(offsets.items()):
        out += b"%d 1\n%010d 00000 n \n" % (num, offset)
    size = max(size, max(objects) + 1)
    out += b"trailer\n<< /Size %d /Root %d 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root,
        prev,
        xref,
    )
    return bytes(out)


def catalog_numbers(data: bytes) -> tuple[int, int]:
    """Object numbers of the catalog and the page tree root."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return pdf.Root.objgen[0], pdf.Root.Pages.objgen[0]


def build_js_added_by_update() -> bytes:
    base_pdf = build_clean()
    root, pages = catalog_numbers(base_pdf)
    catalog = b"<< /Type /Catalog /Pages %d 0 R /OpenAction 20 0 R >>" % pages
    action = b"<< /S /JavaScript /JS (app.alert\\('gicap-incremental'\\)) >>"
    return incremental_update(base_pdf, {root: catalog, 20: action}, root=root)


def build_js_left_in_old_revision() -> bytes:
    """Revision 1 opens with JavaScript; revision 2 replaced the catalog without it."""
    base_pdf = build_js_open_action()
    root, pages = catalog_numbers(base_pdf)
    catalog = b"<< /Type /Catalog /Pages %d 0 R >>" % pages
    return incremental_update(base_pdf, {root: catalog}, root=root)


def build_js_left_in_revision_without_prev() -> bytes:
    """As ``build_js_left_in_old_revision``, but the new revision's cross-reference
    section lists every object and its trailer has no /Prev: only a scan of the whole
    file shows the old revision is there."""
    base_pdf = build_js_open_action()
    root, pages = catalog_numbers(base_pdf)
    with pikepdf.open(io.BytesIO(base_pdf)) as pdf:
        offsets = {og[0]: entry.offset for og, entry in pdf.get_xref_table().items()}
    out = bytearray(base_pdf if base_pdf.endswith(b"\n") else base_pdf + b"\n")
    offsets[root] = len(out)
    out += b"%d 0 obj\n<< /Type /Catalog /Pages %d 0 R >>\nendobj\n" % (root, pages)
    xref = len(out)
    size = max(offsets) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        out += b"%010d 00000 n \n" % offsets[num] if num in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, root, xref)
    return bytes(out)


def build_with_trailing_payload() -> bytes:
    return build_clean() + b"<html><script>alert('gicap-polyglot')</script></html>\n"


def build_orphan_js() -> bytes:
    """A JavaScript action that nothing references (a reader never runs it)."""
    raw = build_clean()
    root, _ = catalog_numbers(raw)
    return incremental_update(
        raw, {20: b"<< /S /JavaScript /JS (app.alert\\('gicap-orphan'\\)) >>"}, root=root
    )


def truncated_in_page_2() -> bytes:
    """Cut in the middle of page 2's content stream: qpdf rebuilds the xref, but the
    stream's data is lost."""
    data = build_clean()
    return data[: data.index(b"(Hello page 2)") + 5]


#: Active-content files: (builder, switch, names the independent detector looks for).
RISKY: dict[str, tuple[Callable[[], bytes], str, tuple[str, ...]]] = {
    "js-name-tree": (build_js_names, "javascript", ("/JavaScript", "/JS")),
    "js-open-action": (build_js_open_action, "javascript", ("/JavaScript", "/JS", "/OpenAction")),
    "js-page-aa": (build_js_page_aa, "javascript", ("/JavaScript", "/JS", "/AA")),
    "js-object-streams": (build_js_object_streams, "javascript", ("/JavaScript", "/JS")),
    "js-incremental": (build_js_added_by_update, "javascript", ("/JavaScript", "/JS")),
    "launch": (build_launch, "actions", ("/Launch",)),
    "submit-on-close": (build_submit_on_page_close, "actions", ("/SubmitForm", "/AA")),
    "embedded-file": (build_embedded_file, "embedded_files", ("/EmbeddedFile", "/EF")),
    "file-attachment": (build_file_attachment, "embedded_files", ("/FileAttachment", "/EF")),
    "acroform": (build_acroform, "acroform", ("/AcroForm", "/Widget")),
    "xfa": (lambda: build_xfa(script=False), "xfa", ("/XFA", "/NeedsRendering")),
    "uri-link": (build_uri_link, "external_hyperlinks", ("/URI", "/Link")),
    "internal-links": (build_internal_links, "internal_hyperlinks", ("/Dest", "/GoTo")),
    "metadata": (build_metadata, "metadata", ("/Metadata", "/Author", "/PieceInfo")),
}


def outline(pdf: pikepdf.Pdf, **item_entries: object) -> None:
    outlines = pdf.make_indirect(Dictionary(Type=Name.Outlines, Count=1))
    item = pdf.make_indirect(Dictionary(Title=String("Chapter 2"), Parent=outlines, **item_entries))
    outlines.First = outlines.Last = item
    pdf.Root.Outlines = outlines


def filespec(pdf: pikepdf.Pdf, data: bytes = EICAR) -> pikepdf.Object:
    stream = pdf.make_stream(data, Type=Name.EmbeddedFile)
    return pdf.make_indirect(
        Dictionary(Type=Name.Filespec, F=String("eicar.com"), EF=Dictionary(F=stream))
    )


def build_document_actions() -> bytes:
    pdf = base()
    submit = Dictionary(S=Name.SubmitForm, F=String("https://gicap.invalid/print"))
    pdf.Root.AA = Dictionary(WC=js_action(pdf), DP=submit)
    return to_bytes(pdf)


def build_field_scripts() -> bytes:
    """The form of build_acroform with a keystroke script and a submit button."""
    pdf = pikepdf.open(io.BytesIO(build_acroform()))
    field = pdf.Root.AcroForm.Fields[0]
    field.AA = Dictionary(K=js_action(pdf))
    button = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Widget,
            FT=Name.Btn,
            Ff=65536,  # push button
            T=String("send"),
            Rect=[72, 300, 172, 324],
            A=Dictionary(S=Name.SubmitForm, F=String("https://gicap.invalid/form")),
        )
    )
    pdf.pages[0].obj.Annots.append(button)
    pdf.Root.AcroForm.Fields.append(button)
    return to_bytes(pdf)


def build_associated_files() -> bytes:
    pdf = base()
    pdf.pages[0].obj.AF = Array([filespec(pdf)])
    return to_bytes(pdf)


def build_multimedia() -> bytes:
    """A Screen annotation playing an embedded clip, and a RichMedia annotation."""
    pdf = base()
    clip = Dictionary(Type=Name.MediaClip, S=Name.MCD, D=filespec(pdf, b"not really a movie"))
    rendition = Dictionary(Type=Name.Rendition, S=Name.MR, C=clip)
    screen = pdf.make_indirect(
        Dictionary(Type=Name.Annot, Subtype=Name.Screen, Rect=[72, 100, 272, 250])
    )
    screen.A = Dictionary(S=Name.Rendition, OP=0, AN=screen, R=rendition)
    rich = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.RichMedia,
            Rect=[300, 100, 500, 250],
            RichMediaContent=Dictionary(Assets=Dictionary(Names=[String("a.swf"), filespec(pdf)])),
        )
    )
    pdf.pages[0].obj.Annots = Array([screen, rich])
    return to_bytes(pdf)


def build_remote_actions() -> bytes:
    """An outline entry opening another document (GoToR), a link importing form data."""
    pdf = base()
    outline(pdf, A=Dictionary(S=Name.GoToR, F=String("other.pdf"), D=[0, Name.Fit]))
    link(pdf, 0, A=Dictionary(S=Name.ImportData, F=String("data.fdf")))
    return to_bytes(pdf)


def build_uri_outline() -> bytes:
    pdf = base()
    outline(pdf, A=Dictionary(S=Name.URI, URI=String("https://gicap.invalid/outline")))
    return to_bytes(pdf)


def build_open_destination() -> bytes:
    pdf = base()
    pdf.Root.OpenAction = Array([pdf.pages[1].obj, Name.Fit])
    return to_bytes(pdf)


def build_open_uri() -> bytes:
    """A URL opened with the document: an automatic action, not a link."""
    pdf = base()
    pdf.Root.OpenAction = Dictionary(S=Name.URI, URI=String("https://gicap.invalid/beacon"))
    return to_bytes(pdf)


def build_shared_js() -> bytes:
    """One script object referenced from the name tree, the opening and a page."""
    pdf = base()
    action = js_action(pdf)
    pdf.Root.Names = Dictionary(JavaScript=Dictionary(Names=[String("a"), action]))
    pdf.Root.OpenAction = action
    pdf.pages[1].obj.AA = Dictionary(O=action)
    return to_bytes(pdf)


def build_js_stream_in_odd_place() -> bytes:
    """A compressed script stream under a private key no action slot uses."""
    pdf = base()
    code = pdf.make_stream(b"")
    code.write(zlib.compress(JS.encode()), filter=Name.FlateDecode)
    pdf.Root.GicapPrivate = Dictionary(S=Name.JavaScript, JS=code)
    return to_bytes(pdf)


def build_image_metadata() -> bytes:
    pdf = base()
    xmp = pdf.make_stream(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>gicap-xmp</x:xmpmeta>")
    xmp.Type, xmp.Subtype = Name.Metadata, Name.XML
    image = pdf.make_stream(
        zlib.compress(bytes(range(48)) * 4),
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=8,
        Height=8,
        ColorSpace=Name.DeviceRGB,
        BitsPerComponent=8,
        Filter=Name.FlateDecode,
        Metadata=xmp,
    )
    pdf.pages[0].obj.Resources.XObject = Dictionary(Im1=image)
    return to_bytes(pdf)


def build_external_stream() -> bytes:
    """An image whose data a viewer would fetch from a URL (external stream)."""
    pdf = base()
    image = pdf.make_stream(
        b"",
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=1,
        Height=1,
        ColorSpace=Name.DeviceGray,
        BitsPerComponent=8,
        F=Dictionary(FS=Name.URL, F=String("https://gicap.invalid/pixel")),
    )
    pdf.pages[0].obj.Resources.XObject = Dictionary(Im1=image)
    return to_bytes(pdf)


def build_3d_script() -> bytes:
    pdf = base()
    script = pdf.make_stream(b"runtime.alert('gicap')")
    artwork = pdf.make_stream(b"", Type=Name("/3D"), Subtype=Name.U3D, OnInstantiate=script)
    annot = pdf.make_indirect(
        Dictionary(Type=Name.Annot, Subtype=Name("/3D"), Rect=[72, 100, 272, 250])
    )
    annot["/3DD"] = artwork
    pdf.pages[0].obj.Annots = Array([annot])
    return to_bytes(pdf)


#: More active content, sanitised with the policy given: (builder, policy overrides,
#: switches expected "removed", names that must vanish, names that must stay).
MORE: dict[
    str, tuple[Callable[[], bytes], dict[str, str], set[str], tuple[str, ...], tuple[str, ...]]
] = {
    "document-actions": (
        build_document_actions,
        {},
        {"javascript", "actions"},
        ("/AA", "/JS", "/SubmitForm"),
        (),
    ),
    "field-scripts-form-kept": (
        build_field_scripts,
        {"acroform": "allow"},
        {"javascript", "actions"},
        ("/JS", "/JavaScript", "/SubmitForm"),
        ("/AcroForm", "/Widget"),
    ),
    "field-scripts-form-flattened": (
        build_field_scripts,
        {},
        {"javascript", "actions", "acroform"},
        ("/JS", "/SubmitForm", "/AcroForm", "/Widget"),
        (),
    ),
    "associated-files": (
        build_associated_files,
        {},
        {"embedded_files"},
        ("/AF", "/EF", "/EmbeddedFile"),
        (),
    ),
    "multimedia": (
        build_multimedia,
        {},
        {"embedded_files", "actions"},
        ("/Screen", "/RichMedia", "/Rendition", "/EF", "/EmbeddedFile"),
        (),
    ),
    "remote-actions": (
        build_remote_actions,
        {},
        {"actions"},
        ("/GoToR", "/ImportData", "/Link"),
        ("/Outlines", "/Title"),
    ),
    "uri-in-outline": (
        build_uri_outline,
        {},
        {"external_hyperlinks"},
        ("/URI",),
        ("/Outlines", "/Title"),
    ),
    "open-destination": (
        build_open_destination,
        {},
        {"internal_hyperlinks"},
        ("/OpenAction",),
        (),
    ),
    "open-uri-is-an-action": (
        build_open_uri,
        {"external_hyperlinks": "allow"},
        {"actions"},
        ("/OpenAction", "/URI"),
        (),
    ),
    "shared-js": (
        build_shared_js,
        {},
        {"javascript"},
        ("/JS", "/JavaScript", "/OpenAction", "/AA"),
        (),
    ),
    "js-stream-in-odd-place": (
        build_js_stream_in_odd_place,
        {},
        {"javascript"},
        ("/JS", "/JavaScript"),
        ("/GicapPrivate",),
    ),
    "image-metadata": (
        build_image_metadata,
        {"embedded_images": "allow"},
        {"metadata"},
        ("/Metadata", "/XML"),
        ("/Image",),
    ),
    "external-stream": (
        build_external_stream,
        {"embedded_images": "allow"},
        {"external_hyperlinks"},
        ("/URL", "/FS"),
        ("/Image",),
    ),
    "3d-script-3d-kept": (
        build_3d_script,
        {"embedded_files": "allow"},
        {"javascript"},
        ("/OnInstantiate",),
        ("/3D", "/3DD"),
    ),
    "3d-removed": (
        build_3d_script,
        {},
        {"embedded_files", "javascript"},
        ("/OnInstantiate", "/3D", "/3DD", "/U3D"),
        (),
    ),
}


# ---------------------------------------------------------------- helpers


def request_for(
    tmp_path: Path,
    data: bytes,
    switches: dict[str, str] | None = None,
    limits: dict[str, int] | None = None,
) -> DisarmRequest:
    source = tmp_path / "in.pdf"
    source.write_bytes(data)
    return DisarmRequest(
        file_type=PDF,
        source=source,
        destination=tmp_path / "out.pdf",
        switches=switches if switches is not None else dict.fromkeys(PDF_SWITCHES, "sanitise"),
        limits=limits or {},
    )


def disarm(request: DisarmRequest) -> DisarmResult:
    result = gicap_pdf.gicap_disarm(request=request)
    assert result is not None
    return result


def policy(**overrides: str) -> dict[str, str]:
    return dict.fromkeys(PDF_SWITCHES, "sanitise") | overrides


def assert_not_delivered(request: DisarmRequest, result: DisarmResult, outcome: str) -> None:
    assert result.outcome == outcome, result
    assert result.reason
    assert not request.destination.exists()


# ------------------------------------------------------------------ tests


def test_claims_pdf_only(tmp_path: Path) -> None:
    assert gicap_pdf.gicap_file_types() == ["pdf"]
    other = FileType("csv", "text", "text/csv", "csv")
    request = request_for(tmp_path, build_js_open_action())
    request.file_type = other
    assert gicap_pdf.gicap_disarm(request=request) is None


def test_found_through_the_gicap_entry_point(tmp_path: Path) -> None:
    assert {ep.name: ep.value for ep in entry_points(group="gicap")}.get("pdf") == "gicap_pdf"
    host = create_plugin_host()
    assert ["pdf"] in host.manager.hook.gicap_file_types()
    request = request_for(tmp_path, build_js_open_action())
    assert host.manager.hook.gicap_disarm(request=request).outcome == "rebuilt"


@pytest.mark.parametrize("name", sorted(RISKY))
def test_sanitise_removes_content(tmp_path: Path, name: str) -> None:
    builder, switch, names = RISKY[name]
    source = builder()
    request = request_for(tmp_path, source)
    before = names_in(qdf(request.source), *names)
    assert before == set(names), f"the test file lacks {set(names) - before}"

    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert switch in [a.switch for a in result.actions if a.action == "removed"]
    assert names_in(qdf(request.destination), *names) == set()
    qpdf_check(request.destination)
    assert page_count(request.destination) == 2
    text = text_of(request.destination)
    assert "Hello page 1" in text and "Hello page 2" in text


@pytest.mark.parametrize("name", sorted(RISKY))
def test_allow_keeps_content(tmp_path: Path, name: str) -> None:
    builder, switch, names = RISKY[name]
    allowed = {switch: "allow"}
    if switch == "xfa":
        allowed["acroform"] = "allow"  # the XFA lives in the /AcroForm
    request = request_for(tmp_path, builder(), policy(**allowed))
    result = disarm(request)
    # kept, but the earlier revision is still dropped, and object streams are written
    # as qpdf reads them (other readers may follow their index differently)
    if name in ("js-incremental", "js-object-streams"):
        assert result.outcome == "rebuilt"
        assert names_in(qdf(request.destination), *names) == set(names)
    else:
        assert result.outcome == "unmodified", result
        assert not request.destination.exists()
    assert any(a.switch == switch and a.action == "kept" for a in result.actions)


@pytest.mark.parametrize("name", sorted(RISKY))
def test_disallow_blocks(tmp_path: Path, name: str) -> None:
    builder, switch, _ = RISKY[name]
    request = request_for(tmp_path, builder(), policy(**{switch: "disallow"}))
    result = disarm(request)
    assert_not_delivered(request, result, "blocked")
    assert switch in result.reason
    assert [a.switch for a in result.actions] == [switch]


def test_clean_pdf_is_unmodified_under_every_policy(tmp_path: Path) -> None:
    for value in ("sanitise", "allow", "disallow"):
        request = request_for(tmp_path, build_clean(), dict.fromkeys(PDF_SWITCHES, value))
        assert disarm(request) == DisarmResult("unmodified")
        assert not request.destination.exists()


def test_removed_strings_are_gone_from_the_raw_bytes(tmp_path: Path) -> None:
    cases = {
        build_js_open_action: b"gicap-test",
        build_js_added_by_update: b"gicap-incremental",
        build_embedded_file: EICAR,
        build_file_attachment: EICAR,
        build_uri_link: b"gicap.invalid",
        build_launch: b"gicap-launch-target",
        build_metadata: b"Gicap Tester",
    }
    for builder, needle in cases.items():
        request = request_for(tmp_path, builder())
        assert needle in request.source.read_bytes()
        assert disarm(request).outcome == "rebuilt"
        # No object streams in the input, so none in the output: the bytes are plain.
        assert needle not in request.destination.read_bytes(), builder.__name__


@pytest.mark.parametrize(
    "builder", [build_js_left_in_old_revision, build_js_left_in_revision_without_prev]
)
def test_earlier_revision_javascript_is_dropped(
    tmp_path: Path, builder: Callable[[], bytes]
) -> None:
    """The current revision is clean, yet the old one's script is still in the bytes:
    the rebuild writes only the live objects, so it is gone."""
    request = request_for(tmp_path, builder())
    assert b"gicap-test" in request.source.read_bytes()
    result = disarm(request)
    assert result.outcome == "rebuilt"
    assert [a.switch for a in result.actions] == ["structure"]
    assert "earlier revisions" in result.actions[0].detail
    assert b"gicap-test" not in request.destination.read_bytes()
    assert names_in(qdf(request.destination), "/JS", "/JavaScript") == set()
    qpdf_check(request.destination)


@pytest.mark.parametrize(
    ("builder", "needle", "note"),
    [
        (build_with_trailing_payload, b"gicap-polyglot", "after %%EOF"),
        (build_orphan_js, b"gicap-orphan", "earlier revisions"),
    ],
    ids=["trailing-payload", "orphan-object"],
)
def test_junk_outside_the_document_is_dropped(
    tmp_path: Path, builder: Callable[[], bytes], needle: bytes, note: str
) -> None:
    request = request_for(tmp_path, builder())
    result = disarm(request)
    assert result.outcome == "rebuilt"
    assert note in result.actions[-1].detail
    assert needle not in request.destination.read_bytes()
    assert text_of(request.destination) == text_of(request.source)


def test_javascript_in_a_next_chain_keeps_the_link(tmp_path: Path) -> None:
    request = request_for(tmp_path, build_js_in_next_chain(), policy(internal_hyperlinks="allow"))
    result = disarm(request)
    assert result.outcome == "rebuilt"
    assert [(a.switch, a.action) for a in result.actions] == [
        ("javascript", "removed"),
        ("internal_hyperlinks", "kept"),
    ]
    expanded = qdf(request.destination)
    assert names_in(expanded, "/JS", "/JavaScript", "/Next") == set()
    assert names_in(expanded, "/Link", "/GoTo") == {"/Link", "/GoTo"}


def test_acroform_is_flattened_to_its_appearance(tmp_path: Path) -> None:
    request = request_for(tmp_path, build_acroform())
    assert "FIELDVALUE" in text_of(request.source)
    assert disarm(request).outcome == "rebuilt"
    assert names_in(qdf(request.destination), "/AcroForm", "/Widget", "/Annots") == set()
    # the field's value stays visible, drawn into the page
    assert "FIELDVALUE" in text_of(request.destination)
    assert "Hello page 1" in text_of(request.destination)


def test_xfa_scripts_removed_when_xfa_is_allowed(tmp_path: Path) -> None:
    request = request_for(tmp_path, build_xfa(), policy(xfa="allow", acroform="allow"))
    result = disarm(request)
    assert result.outcome == "rebuilt"
    assert [(a.switch, a.action, a.detail) for a in result.actions if a.switch == "javascript"] == [
        ("javascript", "removed", "XFA scripts")
    ]
    expanded = qdf(request.destination)
    assert names_in(expanded, "/XFA") == {"/XFA"}
    assert b"<script" not in expanded and b"app.alert" not in expanded
    assert b"<field name" in expanded


def test_xfa_scripts_block_under_javascript_disallow(tmp_path: Path) -> None:
    request = request_for(tmp_path, build_xfa(), policy(javascript="disallow"))
    assert_not_delivered(request, disarm(request), "blocked")
    request = request_for(tmp_path, build_xfa(script=False), policy(javascript="disallow"))
    assert disarm(request).outcome == "rebuilt"


def jpeg_from_output(path: Path) -> bytes:
    with pikepdf.open(path) as pdf:
        return pdf.pages[0].obj.Resources.XObject.Im1.read_raw_bytes()


def test_images_sanitised_keep_pixels_drop_metadata(tmp_path: Path) -> None:
    request = request_for(tmp_path, build_image())
    original = Image.open(io.BytesIO(jpeg_from_output(request.source)))
    assert "exif" in original.info and "comment" in original.info
    result = disarm(request)
    assert result.outcome == "rebuilt"
    assert [(a.switch, a.action) for a in result.actions] == [("embedded_images", "neutralised")]
    data = jpeg_from_output(request.destination)
    assert b"gicap-appended-after-eoi" not in data
    rebuilt = Image.open(io.BytesIO(data))
    assert "exif" not in rebuilt.info and "comment" not in rebuilt.info
    assert rebuilt.size == original.size == (64, 48)
    assert rebuilt.convert("RGB").tobytes() == original.convert("RGB").tobytes()
    assert b"hidden-in-image-dict" not in request.destination.read_bytes()
    qpdf_check(request.destination)


def test_plain_images_are_unmodified_kept_or_blocked(tmp_path: Path) -> None:
    data = build_image(exif=False, extra_key=False)
    assert disarm(request_for(tmp_path, data)).outcome == "unmodified"
    result = disarm(request_for(tmp_path, data, policy(embedded_images="allow")))
    assert result.outcome == "unmodified"
    assert [(a.switch, a.action, a.detail) for a in result.actions] == [
        ("embedded_images", "kept", "1 image")
    ]
    request = request_for(tmp_path, data, policy(embedded_images="disallow"))
    assert_not_delivered(request, disarm(request), "blocked")


def test_inline_images_block_under_disallow(tmp_path: Path) -> None:
    pdf = base()
    page = pdf.pages[0].obj
    page.Contents.write(
        page.Contents.read_bytes() + b"\nq 8 0 0 8 72 72 cm BI /W 2 /H 2 /CS /G "
        b"/BPC 8 ID \x00\xff\xff\x00 EI Q"
    )
    request = request_for(tmp_path, to_bytes(pdf), policy(embedded_images="disallow"))
    result = disarm(request)
    assert_not_delivered(request, result, "blocked")
    assert "1 image" in result.reason


def test_encrypted_pdfs_are_not_delivered(tmp_path: Path) -> None:
    for user_password in ("user-secret", ""):  # password needed, or owner password only
        request = request_for(tmp_path, build_encrypted(user_password))
        assert_not_delivered(request, disarm(request), "encrypted")


@pytest.mark.parametrize(
    "data",
    [
        build_clean()[:300],  # truncated in the middle of the first page
        truncated_in_page_2(),
        b"%PDF-1.7\n" + os.urandom(2000),
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer << /Root 1 0 R >>",
        b"",
    ],
    ids=["truncated-early", "truncated-late", "garbage", "no-pages", "empty"],
)
def test_malformed_pdfs_are_unprocessable(tmp_path: Path, data: bytes) -> None:
    request = request_for(tmp_path, data)
    assert_not_delivered(request, disarm(request), "unprocessable")


def wrong_startxref() -> bytes:
    data = build_clean()
    start = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    return data.replace(b"startxref\n%d" % start, b"startxref\n%d" % (start - 7))


def wrong_stream_length() -> bytes:
    """qpdf finds the real end of the stream only when it reads its data."""
    data = build_clean()
    assert data.count(b"/Length 43 ") == 2
    return data.replace(b"/Length 43 ", b"/Length 40 ", 1)


@pytest.mark.parametrize("broken", [wrong_startxref, wrong_stream_length])
def test_lossless_repair_is_rebuilt(tmp_path: Path, broken: Callable[[], bytes]) -> None:
    """Damage qpdf repairs without losing anything: rebuilt, never passed on as is."""
    request = request_for(tmp_path, broken())
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert "damage repaired" in result.actions[-1].detail
    qpdf_check(request.destination)
    assert text_of(request.destination) == text_of(tmp_path / "in.pdf")


def build_metadata_only(xmp: bool = True, object_streams: bool = False) -> bytes:
    """Clean pages with an information dictionary and (``xmp``) the catalog's XMP
    metadata: what most producers write."""
    pdf = base()
    pdf.docinfo["/Producer"] = "gicap-test producer"
    if xmp:
        with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
            meta["dc:title"] = "gicap-test title"
    return to_bytes(pdf, object_streams=object_streams)


def classic_pdf(objects: dict[int, bytes], trailer: bytes) -> bytes:
    """A PDF written by hand, with a classic cross-reference table: ``objects`` maps
    numbers to bodies, ``trailer`` is the trailer dictionary without /Size."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number, body in sorted(objects.items()):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        free = number not in offsets
        out += b"0000000000 65535 f \n" if free else b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n%s /Size %d >>\nstartxref\n%d\n%%%%EOF\n" % (trailer[:-2], size, xref)
    return bytes(out)


def build_producer_style(xmp_shared: bool = False) -> bytes:
    """What many producers write: an information dictionary, XMP metadata, and a
    stream /Length given as an object of its own (LibreOffice, cairo, Ghostscript);
    ``xmp_shared``: the XMP stream is referenced from the page as well."""
    content = b"BT /F1 24 Tf 72 700 Td (Hello) Tj ET"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:title>gicap-test title</dc:title></x:xmpmeta>'
    extra = b" /PieceInfoX 5 0 R" if xmp_shared else b""
    return classic_pdf(
        {
            1: b"<< /Type /Catalog /Pages 3 0 R /Metadata 5 0 R >>",
            2: b"<< /Producer (gicap-test producer) >>",
            3: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            4: b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 612 792] /Resources << /Font"
            b" << /F1 7 0 R >> >> /Contents 6 0 R%s >>" % extra,
            5: b"<< /Type /Metadata /Subtype /XML /Length %d >>\nstream\n%s\nendstream"
            % (len(xmp), xmp),
            6: b"<< /Length 8 0 R >>\nstream\n%s\nendstream" % content,
            7: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            8: b"%d" % len(content),
        },
        b"<< /Root 1 0 R /Info 2 0 R >>",
    )


def test_metadata_pointing_at_page_content_keeps_the_page(tmp_path: Path) -> None:
    """A catalog /Metadata naming the page's content stream (crafted): the key goes,
    the page keeps its text (only XMP streams are emptied)."""
    data = build_producer_style().replace(b"/Metadata 5 0 R", b"/Metadata 6 0 R")
    request = request_for(tmp_path, data)
    assert "Hello" in text_of(request.source)
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert text_of(request.destination) == text_of(request.source)


def _as_walked(request: DisarmRequest) -> DisarmResult:
    """The engine's result with the shortcut turned off."""
    try:
        return gicap_pdf._disarm(request, defer=False, quick=False)
    except gicap_pdf._Refused as exc:
        return DisarmResult(exc.outcome, reason=exc.reason)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "builder",
    [
        build_clean,
        build_image,
        build_metadata_only,
        lambda: build_metadata_only(object_streams=True),
        lambda: build_metadata_only(xmp=False),
        build_producer_style,
        lambda: build_producer_style(xmp_shared=True),
    ],
)
@pytest.mark.parametrize("value", ["sanitise", "allow", "disallow"])
def test_the_shortcut_gives_what_the_walk_gives(
    tmp_path: Path, builder: Callable[[], bytes], value: str
) -> None:
    data = builder()
    assert not _walked(data)
    switches = policy(metadata=value, embedded_images=value)
    (tmp_path / "quick").mkdir()
    (tmp_path / "walked").mkdir()
    quick = request_for(tmp_path / "quick", data, switches)
    walked = request_for(tmp_path / "walked", data, switches)
    result = disarm(quick)
    assert result == _as_walked(walked)
    if result.outcome == "rebuilt":
        same = re.compile(rb"/ID \[<[0-9a-f]*><[0-9a-f]*>\]")
        assert same.sub(b"", qdf(quick.destination)) == same.sub(b"", qdf(walked.destination))
    if value == "sanitise" and result.outcome == "rebuilt":
        # (the XMP stream emptied: gone even where it is referenced a second time)
        expanded = qdf(quick.destination)
        assert b"gicap-test producer" not in expanded and b"gicap-test title" not in expanded


def test_damage_repaired_while_writing_is_reported(tmp_path: Path) -> None:
    """A stream whose /Length qpdf corrects only when writing the rebuilt file (the
    walk does not read stream data) is reported like damage found before."""
    data = build_js_open_action()
    length = re.search(rb"/Length (\d+) ", data)
    assert length is not None
    data = data.replace(length[0], b"/Length %d " % (int(length[1]) - 3), 1)
    request = request_for(tmp_path, data)
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert [(a.switch, a.action) for a in result.actions] == [
        ("javascript", "removed"),
        ("structure", "removed"),
    ]
    assert "damage repaired" in result.actions[-1].detail
    qpdf_check(request.destination)


def _walked(data: bytes) -> bool:
    """Whether the engine walks the document (else it is judged by the shortcut for
    documents without active content: ``_token_free_scan``)."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        switches = dict.fromkeys(SWITCHES["pdf"], "sanitise")
        walker = gicap_pdf._Walker(pdf, switches, verify=False)
        return gicap_pdf._token_free_scan(pdf, walker) is None


#: Links and outline items alone are judged by the shortcut (see build_links).
LINKS_ONLY = {"internal-links", "uri-link"}


@pytest.mark.parametrize("name", sorted(set(RISKY) - LINKS_ONLY))
def test_documents_with_active_content_are_walked(name: str) -> None:
    builder, _, _ = RISKY[name]
    assert _walked(builder())


def build_links(
    tagged: bool = False,
    shared: str = "",
    orphan: bool = False,
    opening: str = "page",
    attributes: str = "",
) -> bytes:
    """Links and outline items as producers write them: a URI link with a border,
    colour, highlight mode, page, name and a hex /Contents; a link with both an action
    and a destination; outline items with a URI action, a GoTo action and a
    destination; the first page shown on opening. ``tagged``: the structure tree
    references the links too; ``shared``: a link ("link") or a page's /Annots array
    ("annots") is also referenced from a page key; ``orphan``: a link annotation
    nothing references; ``opening``: what the document opens (a page, a GoTo action,
    a URI action of its own, a number); ``attributes``: a structure element's /A when
    ``tagged`` ("launch": an action of its own, "uri": a direct one, else attribute
    objects)."""
    pdf = base(3)
    pages = [p.obj for p in pdf.pages]
    uri = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Link,
            Rect=[72, 600, 300, 630],
            Border=[0, 0, 1, [3, 2]],
            BS=Dictionary(W=1, S=Name.D, D=[3]),
            C=[0, 0, 1],
            H=Name.I,
            P=pages[0],
            NM=String("link-1"),
            Contents=String("Visit \u00e9 (site)"),
            StructParent=0,
            A=Dictionary(Type=Name.Action, S=Name.URI, URI=String("https://gicap.invalid/a(b)\\c")),
        )
    )
    both = pdf.make_indirect(
        Dictionary(
            Type=Name.Annot,
            Subtype=Name.Link,
            Rect=[72, 500, 300, 530],
            Dest=[pages[2], Name.XYZ, 0, 792, None],
            Contents=String("to chapter 2"),
            A=Dictionary(S=Name.GoTo, D=String("chapter.2")),
        )
    )
    pages[0].Annots = Array([uri, both])
    chapter = Dictionary(
        Type=Name.Annot,
        Subtype=Name.Link,
        Rect=[10.5, -2, 0.25, 3],
        Dest=Name("/chapter.3"),
        Contents=String("to chapter 3"),
    )
    annots = Array([pdf.make_indirect(chapter)])
    # (an /Annots array of its own when another key shares it)
    pages[1].Annots = pdf.make_indirect(annots) if shared == "annots" else annots
    outlines = pdf.make_indirect(Dictionary(Type=Name.Outlines, Count=3))
    entries: list[dict[str, object]] = [
        {"A": Dictionary(S=Name.URI, URI=String("https://gicap.invalid/toc"))},
        {"A": Dictionary(S=Name.GoTo, D=[pages[1], Name.FitH, 700])},
        {"Dest": [pages[2], Name.Fit], "C": [1, 0, 0], "F": 2},
    ]
    items = [
        pdf.make_indirect(Dictionary(Title=String(f"Chapter {n + 1}"), Parent=outlines, **more))
        for n, more in enumerate(entries)
    ]
    for a, b in zip(items, items[1:], strict=False):
        a.Next, b.Prev = b, a
    outlines.First, outlines.Last = items[0], items[-1]
    pdf.Root.Outlines = outlines
    pdf.Root.OpenAction = {
        "page": Array([pages[0], Name.Fit]),
        "goto": Dictionary(S=Name.GoTo, D=[pages[1], Name.Fit]),
        "uri": pdf.make_indirect(Dictionary(S=Name.URI, URI=String("https://gicap.invalid/o"))),
        "number": 5,  # (not a destination: the walk takes it as one all the same)
    }[opening]
    if tagged:
        # structure elements with attribute objects (/A: not actions), as LibreOffice
        # writes them, one of them holding the URI link
        layout = pdf.make_indirect(Dictionary(O=Name.Layout, Placement=Name.Block))
        objr = Dictionary(Type=Name.OBJR, Obj=uri, Pg=pages[0])
        element = pdf.make_indirect(
            Dictionary(Type=Name.StructElem, S=Name.Link, K=objr, Pg=pages[0], A=layout)
        )
        text = pdf.make_indirect(
            Dictionary(
                Type=Name.StructElem,
                S=Name.P,
                K=[0],
                Alt=String("names in a string: /JS /AA /EF"),
                Pg=pages[0],
                A={
                    "launch": pdf.make_indirect(Dictionary(S=Name.Launch, F=String("calc.exe"))),
                    "uri": Dictionary(S=Name.URI, URI=String("https://gicap.invalid/x")),
                }.get(attributes, Array([layout])),
            )
        )
        root = pdf.make_indirect(Dictionary(Type=Name.StructTreeRoot, K=[element, text]))
        element.P = text.P = pdf.Root.StructTreeRoot = root
    if shared == "link":
        pages[2].PieceInfoX = both
    elif shared == "annots":
        pages[2].PieceInfoY = pages[1].Annots
    data = to_bytes(pdf)
    if orphan:
        # appended as an update that nothing references (qpdf writes no such object)
        start = re.findall(rb"startxref\s+(\d+)", data)[-1]
        size = int(re.findall(rb"/Size (\d+)", data)[-1])
        root = re.findall(rb"/Root (\d+ \d+ R)", data)[-1]
        at = len(data)
        data += (
            b"%d 0 obj\n<< /A << /S /URI /URI (https://gicap.invalid/orphan) >> "
            b"/Rect [ 0 0 1 1 ] /Subtype /Link /Type /Annot >>\nendobj\n" % size
        )
        xref = len(data)
        data += b"xref\n%d 1\n%010d 00000 n \ntrailer\n" % (size, at)
        data += b"<< /Prev %s /Root %s /Size %d >>\n" % (start, root, size + 1)
        data += b"startxref\n%d\n%%%%EOF\n" % xref
    return data


def build_tex_style(chained: Dictionary | None = None, glyphs: list[object] = ()) -> bytes:
    """As pdfTeX and hyperref write documents: a Type 1 font whose /CharSet string and
    /Differences encoding name glyphs "A" and "JS"; outline items whose GoTo actions
    are objects of their own (one shared by two items); links with a border, colour,
    highlight and a named destination, one with a URI action of its own. ``chained``:
    an action the first GoTo action runs next; ``glyphs``: more in /Differences."""
    pdf = base(3)
    pages = [p.obj for p in pdf.pages]
    descriptor = pdf.make_indirect(
        Dictionary(
            Type=Name.FontDescriptor,
            FontName=Name("/ABCDEF+CMR10"),
            CharSet=String("/A/JS) /JS (/AA/EF/a/b"),
            Flags=4,
        )
    )
    font = pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type1,
            BaseFont=Name("/ABCDEF+CMR10"),
            FontDescriptor=descriptor,
            Encoding=pdf.make_indirect(
                Dictionary(
                    Type=Name.Encoding, Differences=[65, Name.A, Name.JS, 90, Name.AA, *glyphs]
                )
            ),
        )
    )
    for page in pages:
        page.Resources.Font.F2 = font
    goto = [pdf.make_indirect(Dictionary(S=Name.GoTo, D=String(f"section.{n}"))) for n in (1, 2)]
    if chained is not None:
        goto[0].Next = chained
    outlines = pdf.make_indirect(Dictionary(Type=Name.Outlines, Count=3))
    items = [
        pdf.make_indirect(
            Dictionary(Title=String(title), Parent=outlines, A=goto[min(n, 1)], Count=0)
        )
        for n, title in enumerate(["Introduction", "Methods (and /JS)", "Results) /JS (and more"])
    ]
    for a, b in zip(items, items[1:], strict=False):
        a.Next, b.Prev = b, a
    outlines.First, outlines.Last = items[0], items[-1]
    pdf.Root.Outlines = outlines
    pdf.Root.OpenAction = pdf.make_indirect(Array([pages[0], Name.Fit]))
    uri = pdf.make_indirect(
        Dictionary(Type=Name.Action, S=Name.URI, URI=String("https://gicap.invalid/cite"))
    )
    style = {"Border": [0, 0, 1], "H": Name.I, "C": [1, 0, 0]}
    pages[0].Annots = Array(
        [
            pdf.make_indirect(
                Dictionary(
                    Type=Name.Annot,
                    Subtype=Name.Link,
                    Rect=[70, 600, 90, 612],
                    A=Dictionary(S=Name.GoTo, D=String("cite.knuth")),
                    **style,
                )
            ),
            pdf.make_indirect(
                Dictionary(Type=Name.Annot, Subtype=Name.Link, Rect=[1, 2, 3, 4], A=uri, **style)
            ),
        ]
    )
    return to_bytes(pdf, object_streams=True)


@pytest.mark.parametrize(
    "builder",
    [
        build_internal_links,
        build_uri_link,
        build_tex_style,
        build_links,
        lambda: build_links(tagged=True),
        lambda: build_links(shared="link"),
        lambda: build_links(shared="annots"),
        lambda: build_links(orphan=True),
        lambda: build_links(opening="goto"),
        lambda: build_links(opening="uri"),
        lambda: build_links(opening="number"),
        # (a review found the catalog dropped as a link: opened after a link's action)
        lambda: build_links(opening="goto", tagged=True),
    ],
)
@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"internal_hyperlinks": "allow"},
        {"external_hyperlinks": "allow"},
        {"internal_hyperlinks": "allow", "external_hyperlinks": "allow", "metadata": "allow"},
        {"external_hyperlinks": "disallow"},
    ],
)
def test_links_take_the_shortcut_and_give_what_the_walk_gives(
    tmp_path: Path, builder: Callable[[], bytes], switches: dict[str, str]
) -> None:
    data = builder()
    assert not _walked(data)
    (tmp_path / "quick").mkdir()
    (tmp_path / "walked").mkdir()
    quick = request_for(tmp_path / "quick", data, policy(**switches))
    walked = request_for(tmp_path / "walked", data, policy(**switches))
    result = disarm(quick)
    assert result == _as_walked(walked)
    if result.outcome == "rebuilt":
        same = re.compile(rb"/ID \[<[0-9a-f]*><[0-9a-f]*>\]")
        assert same.sub(b"", qdf(quick.destination)) == same.sub(b"", qdf(walked.destination))
    if not switches and result.outcome == "rebuilt":
        left = qdf(quick.destination)
        assert not names_in(left, "/URI", "/GoTo", "/Dest", "/OpenAction")
        assert b"gicap.invalid" not in left


def build_shared_opening() -> bytes:
    pdf = base()
    action = pdf.make_indirect(Dictionary(S=Name.URI, URI=String("https://gicap.invalid/x")))
    outline(pdf, A=action)
    pdf.Root.OpenAction = action
    return to_bytes(pdf)


def _resaved(data: bytes) -> bytes:
    """Bytes edited by hand, written again by qpdf (offsets right, nothing to repair)."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return to_bytes(pdf)


@pytest.mark.parametrize(
    "url",
    [
        b"javascript:app.alert(1)",
        b"  JavaScript:app.alert(1)",
        b"\x01java\tscript:app.alert(1)",
        b"\xfe\xff" + "vbscript:msgbox(1)".encode("utf-16-be"),
        b"\xef\xbb\xbf javascript:app.alert(1)",
    ],
)
@pytest.mark.parametrize("where", ["link", "outline", "opening"])
def test_a_script_url_is_javascript(tmp_path: Path, url: bytes, where: str) -> None:
    """A URI action opening a javascript: or vbscript: URL (as browsers read URLs) is
    JavaScript: removed when links are allowed and JavaScript is not, by the shortcut
    as by the walk."""
    pdf = base()
    action = Dictionary(S=Name.URI, URI=String(url))
    if where == "link":
        link(pdf, 0, A=action)
    elif where == "outline":
        outline(pdf, A=action)
    else:
        pdf.Root.OpenAction = pdf.make_indirect(action)  # (in the catalog: walked)
    data = to_bytes(pdf)
    assert not _walked(data)
    switches = policy(external_hyperlinks="allow", actions="allow")
    (tmp_path / "quick").mkdir()
    (tmp_path / "walked").mkdir()
    quick = request_for(tmp_path / "quick", data, switches)
    result = disarm(quick)
    assert result == _as_walked(request_for(tmp_path / "walked", data, switches))
    assert ("javascript", "removed") in [(a.switch, a.action) for a in result.actions]
    assert b"script:" not in qdf(quick.destination).replace(b"\x00", b"")


def test_a_web_url_naming_javascript_is_a_link(tmp_path: Path) -> None:
    pdf = base()
    link(pdf, 0, A=Dictionary(S=Name.URI, URI=String("https://gicap.invalid/javascript:")))
    request = request_for(tmp_path, to_bytes(pdf), policy(external_hyperlinks="allow"))
    result = disarm(request)
    assert result.outcome == "unmodified", result
    assert [(a.switch, a.action) for a in result.actions] == [("external_hyperlinks", "kept")]


#: Texts that match a shape up to the last key: a failed match must not try every
#: way of reading the numbers before it (a review found a highlight with 12 integer
#: /QuadPoints next to a link took 7 s, each further number 3 times as long).
NEAR_MISSES = {
    "_LINK_ANNOT": b"<< /Border [ " + b"123 " * 60 + b"] /C [ " + b"1 " * 60 + b"] "
    b"/QuadPoints [ " + b"123 " * 60 + b"] /Rect [ " + b"456 " * 60 + b"] /Subtype /Highlight >>",
    "_OUTLINE_ITEM": b"<< /C [ " + b"123 " * 60 + b"] /Parent 1 0 R /Title 2 0 R /X 1 >>",
    "_ACTION": b"<< /D [ 3 0 R /FitR " + b"111 " * 60 + b"] /S /GoTo /Next 4 0 R >>",
}


def test_a_near_miss_of_a_link_shape_is_told_at_once(tmp_path: Path) -> None:
    """Each shape fails on its near miss in a child process that would otherwise never
    end (a hang, not a speed measure: it has a minute); then a highlight with 40
    integer /QuadPoints next to a link gives what the walk gives."""
    script = (
        "import sys, gicap_pdf\n"
        "shape = getattr(gicap_pdf, sys.argv[1])\n"
        "sys.exit(shape.fullmatch(sys.stdin.buffer.read()) is not None)"
    )
    for name, text in NEAR_MISSES.items():
        run = subprocess.run(
            [sys.executable, "-c", script, name], input=text, timeout=60, check=False
        )
        assert run.returncode == 0, name
    pdf = base()
    link(pdf, 0, A=Dictionary(S=Name.URI, URI=String("https://gicap.invalid/")))
    highlight = Dictionary(
        Type=Name.Annot, Subtype=Name.Highlight, Rect=[1, 2, 3, 4], QuadPoints=[123] * 40
    )
    pdf.pages[0].obj.Annots.append(pdf.make_indirect(highlight))
    data = to_bytes(pdf)
    (tmp_path / "quick").mkdir()
    (tmp_path / "walked").mkdir()
    result = disarm(request_for(tmp_path / "quick", data))
    assert result == _as_walked(request_for(tmp_path / "walked", data))
    assert result.outcome == "rebuilt", result


def _link_with(action: bytes) -> bytes:
    data = build_uri_link()
    old = re.search(rb"/A << .*?>> ", data)
    assert old is not None
    return _resaved(data.replace(old[0], b"/A " + action + b" "))


@pytest.mark.parametrize(
    "data",
    [
        # an action the shortcut does not take: launching, a chained script
        _link_with(b"<< /F (calc.exe) /S /Launch >>"),
        _link_with(b"<< /Next << /JS (app.alert(1)) /S /JavaScript >> /S /URI /URI (x) >>"),
        # an action of its own (it may be shared, chained or a script)
        _resaved(build_uri_link().replace(b"/A << /S /URI", b"/A 99 0 R /X << /S /URI", 1)),
        # a link with more in it than links hold
        _resaved(build_uri_link().replace(b"/Subtype /Link", b"/Subtype /Link /AA << >>", 1)),
        # a link that is a widget as well, and an outline item with no parent
        _resaved(build_uri_link().replace(b"/Subtype /Link", b"/Subtype /Widget", 1)),
        _resaved(build_internal_links().replace(b"/Parent", b"/Parents", 1)),
        # a link's shape inside an object that holds a script as well
        _resaved(
            build_uri_link().replace(
                b"/Type /Page",
                b"/PieceInfoX << /JS (app.alert(1)) /Link << /A << /S /URI /URI (x) >> "
                b"/Rect [ 0 0 1 1 ] /Subtype /Link >> /S /JavaScript >> /Type /Page",
                1,
            )
        ),
        # an action of its own that runs a script next, or launches
        build_tex_style(chained=Dictionary(S=Name.JavaScript, JS=String("app.alert(1)"))),
        build_tex_style(chained=Dictionary(S=Name.Launch, F=String("calc.exe"))),
        # a glyph list holding more than names and numbers
        build_tex_style(glyphs=[1, Dictionary(S=Name.JavaScript, JS=String("app.alert(1)"))]),
        # a structure element's /A that is an action (it has /S), not attributes
        build_links(tagged=True, attributes="launch"),
        build_links(tagged=True, attributes="uri"),
        # an action on opening that an outline item holds too (a review found the
        # item's action left empty when the policy removes the one and keeps the other)
        build_shared_opening(),
        # the catalog opening an action that does more than show a page or a URI
        _resaved(
            build_internal_links().replace(
                b"/Type /Catalog", b"/OpenAction << /F (calc.exe) /S /Launch >> /Type /Catalog"
            )
        ),
        _resaved(
            build_internal_links().replace(
                b"/Type /Catalog",
                b"/OpenAction << /D [ 3 0 R /Fit ] /Next << /S /Launch >> /S /GoTo >> "
                b"/Type /Catalog",
            )
        ),
    ],
)
def test_anything_else_with_a_link_is_walked(data: bytes) -> None:
    assert _walked(data)


@pytest.mark.parametrize("slot", ["/A", "/PA", "/NA", "/AA", "/OpenAction"])
def test_an_action_in_any_slot_is_walked_and_removed(tmp_path: Path, slot: str) -> None:
    """Every key the walk takes as an action slot keeps a document off the shortcut,
    wherever the dictionary holding it is."""
    pdf = base()
    launch = Dictionary(S=Name.Launch, F=String("calc.exe"))
    value = Dictionary(O=launch) if slot == "/AA" else launch
    pdf.pages[0].obj.PresSteps = pdf.make_indirect(Dictionary({"/Type": Name.NavNode, slot: value}))
    data = to_bytes(pdf)
    assert _walked(data)
    request = request_for(tmp_path, data)
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert ("actions", "removed") in [(a.switch, a.action) for a in result.actions]
    assert not names_in(qdf(request.destination), "/Launch")


def test_documents_without_active_content_take_the_shortcut(tmp_path: Path) -> None:
    """Clean documents, with or without pictures, are judged without the walk, and
    their pictures are still cleaned as the walk would (EXIF dropped)."""
    assert not _walked(build_clean())
    data = build_image(exif=True, extra_key=True)
    assert not _walked(data)
    request = request_for(tmp_path, data)
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert [(a.switch, a.action) for a in result.actions] == [("embedded_images", "neutralised")]
    expanded = qdf(request.destination)
    assert b"gicap-exif-description" not in expanded
    assert b"gicap-appended-after-eoi" not in expanded
    assert b"/GicapPrivate" not in expanded


def test_pixel_bomb_is_unprocessable(tmp_path: Path) -> None:
    for value in ("sanitise", "allow"):
        request = request_for(tmp_path, build_pixel_bomb(), policy(embedded_images=value))
        result = disarm(request)
        assert_not_delivered(request, result, "unprocessable")
        assert "pixels" in result.reason


def test_stream_bomb_is_unprocessable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gicap_pdf, "MAX_STREAM_BYTES", 4 * 1024 * 1024)
    request = request_for(tmp_path, build_stream_bomb(8 * 1024 * 1024))
    assert len(request.source.read_bytes()) < 64 * 1024
    result = disarm(request)
    assert_not_delivered(request, result, "unprocessable")
    assert "decompression bomb" in result.reason
    # the same stream under the limit is fine
    request = request_for(tmp_path, build_stream_bomb(2 * 1024 * 1024))
    assert disarm(request).outcome == "unmodified"


def lzw_encode(data: bytes) -> bytes:
    """PDF LZW (EarlyChange 1), for the decoder-size check: pikepdf only decodes it."""
    table = {bytes([i]): i for i in range(256)}
    out, bits, nbits, width = bytearray(), 0, 0, 9

    def emit(code: int) -> None:
        nonlocal bits, nbits
        bits, nbits = (bits << width) | code, nbits + width
        while nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
        bits &= (1 << nbits) - 1

    emit(256)
    word = b""
    for c in data:
        if word + bytes([c]) in table:
            word += bytes([c])
            continue
        emit(table[word])
        if len(table) + 2 < 4094:
            table[word + bytes([c])] = len(table) + 2
            if len(table) + 3 > (1 << width) and width < 12:
                width += 1
        word = bytes([c])
    emit(table[word])
    emit(257)
    if nbits:
        out.append((bits << (8 - nbits)) & 0xFF)
    return bytes(out)


def test_lzw_streams_are_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gicap_pdf, "MAX_STREAM_BYTES", 20_000)
    for size, outcome in ((10_000, "unmodified"), (60_000, "unprocessable")):
        pdf = base()
        content = b"BT /F1 24 Tf 72 700 Td (Hello page 2) Tj ET" + b" " * size
        stream = pdf.make_stream(b"")
        stream.write(lzw_encode(content), filter=Name.LZWDecode)
        assert stream.read_bytes() == content  # qpdf's own decoder agrees
        pdf.pages[1].obj.Contents = stream
        request = request_for(tmp_path, to_bytes(pdf))
        assert disarm(request).outcome == outcome


def test_page_and_size_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = to_bytes(base(pages=5))
    request = request_for(tmp_path, data, limits={"max_file_size": len(data) - 1})
    assert_not_delivered(request, disarm(request), "unprocessable")
    monkeypatch.setattr(gicap_pdf, "MAX_PAGES", 4)
    request = request_for(tmp_path, data)
    result = disarm(request)
    assert_not_delivered(request, result, "unprocessable")
    assert "pages" in result.reason


def test_everything_at_once_through_run_job(tmp_path: Path) -> None:
    """End to end: gicap's detector picks the type, the engine disarms with the
    default profile, in the job function the worker processes run."""
    pdf = base()
    pdf.Root.OpenAction = js_action(pdf)
    link(pdf, 0, A=Dictionary(S=Name.URI, URI=String("https://gicap.invalid/")))
    pdf.docinfo["/Author"] = "Gicap Tester"
    source = tmp_path / "upload.bin"
    source.write_bytes(to_bytes(pdf))
    dest = tmp_path / "disarmed.pdf"
    answer = run_job(
        {
            "source": str(source),
            "dest": str(dest),
            "max_file_size": 10 * 1024 * 1024,
            "profile": build_profile("default", {}).as_dict(),
            "profile_name": "default",
            "declared": "application/octet-stream",
        }
    )
    assert answer["outcome"] == "rebuilt", answer
    assert answer["file_type"]["name"] == "pdf"
    assert {a["switch"] for a in answer["actions"]} == {
        "javascript",
        "external_hyperlinks",
        "metadata",
    }
    assert names_in(qdf(dest), "/JS", "/URI", "/Author", "/OpenAction") == set()
    assert text_of(dest) == "Hello page 1 Hello page 2"


@pytest.mark.parametrize("name", sorted(MORE))
def test_more_active_content(tmp_path: Path, name: str) -> None:
    builder, overrides, switches, gone, stay = MORE[name]
    request = request_for(tmp_path, builder(), policy(**overrides))
    assert names_in(qdf(request.source), *gone, *stay) == {*gone, *stay}
    result = disarm(request)
    assert result.outcome == "rebuilt", result
    assert {a.switch for a in result.actions if a.action == "removed"} == switches
    expanded = qdf(request.destination)
    assert names_in(expanded, *gone) == set()
    assert names_in(expanded, *stay) == set(stay)
    qpdf_check(request.destination)
    assert text_of(request.destination) == text_of(request.source)
    # every switch found here blocks under disallow
    for switch in switches:
        blocked = request_for(tmp_path, builder(), policy(**overrides, **{switch: "disallow"}))
        assert disarm(blocked).outcome == "blocked", switch


def test_outline_titles_survive_link_removal(tmp_path: Path) -> None:
    for builder in (build_internal_links, build_uri_outline, build_remote_actions):
        request = request_for(tmp_path, builder())
        assert disarm(request).outcome == "rebuilt"
        with pikepdf.open(request.destination) as pdf, pdf.open_outline() as tree:
            assert [(item.title, item.destination, item.action) for item in tree.root] == [
                ("Chapter 2", None, None)
            ]


@pytest.mark.skipif(gicap_pdf._reachable_objects is None, reason="pikepdf < 10.17")
def test_quick_verify_only_passes_documents_without_finding_names() -> None:
    """The check that spares the second walk: any name a finding starts from, in any
    reachable object (direct ones inside it included), sends the document to the walk."""
    switches = {s: "sanitise" for s in gicap_pdf.SWITCHES}

    def doc(**extra: object) -> pikepdf.Pdf:
        pdf = pikepdf.new()
        pdf.add_blank_page()
        page = pdf.pages[0].obj
        image = pdf.make_stream(
            b"\x00" * 3,
            Type=Name.XObject,
            Subtype=Name.Image,
            Width=1,
            Height=1,
            ColorSpace=Name.DeviceRGB,
            BitsPerComponent=8,
        )
        page.Resources = Dictionary(XObject=Dictionary(Im0=image))
        for key, value in extra.items():
            if key == "image_key":
                image[value] = pdf.make_stream(b"x")  # type: ignore[index]
            else:
                page[f"/{key}"] = value
        return pdf

    assert gicap_pdf._quick_verify(doc(), switches)
    # a direct action deep inside a direct dictionary
    nested = Dictionary(X=Dictionary(Y=Array([Dictionary(S=Name.JavaScript, JS=String("1"))])))
    assert not gicap_pdf._quick_verify(doc(Foo=nested), switches)
    # a name written with an escape in the file is the same name
    escaped = pikepdf.Object.parse(b"<< /J#53 (1) >>")
    assert not gicap_pdf._quick_verify(doc(Foo=escaped), switches)
    # a name that only starts like one is not
    assert gicap_pdf._quick_verify(doc(Foo=pikepdf.Object.parse(b"<< /JSX (1) >>")), switches)
    # a string that merely mentions a name: conservative, walked
    assert not gicap_pdf._quick_verify(doc(Foo=String("see /URI here")), switches)
    # an image keeping a key outside the allowed ones (its /Metadata here)
    assert not gicap_pdf._quick_verify(doc(image_key="/Metadata"), switches)
    assert not gicap_pdf._quick_verify(doc(image_key="/OPI"), switches)
    # stream data from elsewhere (/F only counts in streams)
    pdf = doc()
    pdf.pages[0].obj.Contents = pdf.make_stream(b"", F=String("http://x/y"))
    assert not gicap_pdf._quick_verify(pdf, switches)
    pdf = doc(F=4)  # e.g. annotation flags: not stream data
    assert gicap_pdf._quick_verify(pdf, switches)
    # a non-empty document information dictionary
    pdf = doc()
    pdf.docinfo["/Title"] = "x"
    assert not gicap_pdf._quick_verify(pdf, switches)


def _passes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``defer`` argument of every pass the engine makes over the document."""
    passes: list[bool] = []
    real = gicap_pdf._disarm

    def spy(request: DisarmRequest, defer: bool, quick: bool) -> DisarmResult:
        passes.append(defer)
        return real(request, defer, quick)

    monkeypatch.setattr(gicap_pdf, "_disarm", spy)
    return passes


def build_link_kept_alive(where: str) -> bytes:
    """A URI link whose annotation is also referenced from ``where`` (or nowhere)."""
    pdf = base()
    annot = link(pdf, 0, A=Dictionary(S=Name.URI, URI=String("https://gicap.invalid/alive")))
    if where == "structure":  # a tagged document's link structure element
        objr = Dictionary(Type=Name.OBJR, Obj=annot, Pg=pdf.pages[0].obj)
        element = Dictionary(Type=Name.StructElem, S=Name.Link, K=objr, Pg=pdf.pages[0].obj)
        pdf.Root.StructTreeRoot = pdf.make_indirect(
            Dictionary(Type=Name.StructTreeRoot, K=pdf.make_indirect(element))
        )
    elif where == "popup":  # a kept popup annotation pointing back to its parent
        popup = pdf.make_indirect(
            Dictionary(Type=Name.Annot, Subtype=Name.Popup, Rect=[0, 0, 9, 9], Parent=annot)
        )
        annot.Popup = popup
        pdf.pages[0].obj.Annots.append(popup)
    elif where == "trailer":  # a key of the trailer no reader uses: dropped
        pdf.trailer.GicapKeep = annot
    return to_bytes(pdf)


@pytest.mark.parametrize(
    "where, retried",
    [("nowhere", False), ("structure", False), ("popup", True), ("trailer", False)],
)
def test_dropped_link_annotations_are_emptied_where_still_referenced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, retried: bool
) -> None:
    """Dropped annotations are emptied only when the rewrite would still write them;
    finding out late (after the removals) makes the engine start again, emptying them
    at once (tagged documents do that from the start)."""
    passes = _passes(monkeypatch)
    request = request_for(tmp_path, build_link_kept_alive(where))
    result = disarm(request)
    assert result.outcome == "rebuilt"
    expected = [("external_hyperlinks", "removed")]
    if where == "trailer":
        expected.append(("structure", "removed"))  # the trailer entry
    assert [(a.switch, a.action) for a in result.actions] == expected
    if gicap_pdf._reachable_objects is not None:
        assert passes == ([True, False] if retried else [True])
    expanded = qdf(request.destination)
    assert not names_in(expanded, "/URI", "/A")
    assert b"gicap.invalid" not in expanded
    with pikepdf.open(request.destination) as pdf:
        assert "/Annots" not in pdf.pages[0].obj or all(
            a.Subtype == Name.Popup for a in pdf.pages[0].obj.Annots
        )
    if where in ("nowhere", "trailer"):
        assert not names_in(expanded, "/Link", "/GicapKeep")  # not written at all
    else:  # written, emptied and hidden: nothing to click
        emptied = re.findall(rb"<<[^<>]*/Subtype /Link[^<>]*>>", expanded)
        assert len(emptied) == 1
        names = re.findall(rb"/[A-Za-z]+", emptied[0])
        assert names == [b"/F", b"/Rect", b"/Subtype", b"/Link", b"/Type", b"/Annot"]


def test_dropped_annotation_with_a_popup_is_emptied_in_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file attachment's popup (kept) points back to it: emptied at once, no restart."""
    with pikepdf.open(io.BytesIO(build_file_attachment())) as pdf:
        annot = pdf.pages[0].obj.Annots[0]
        popup = pdf.make_indirect(
            Dictionary(Type=Name.Annot, Subtype=Name.Popup, Rect=[0, 0, 9, 9], Parent=annot)
        )
        annot.Popup = popup
        pdf.pages[0].obj.Annots.append(popup)
        data = to_bytes(pdf)
    passes = _passes(monkeypatch)
    request = request_for(tmp_path, data)
    result = disarm(request)
    assert result.outcome == "rebuilt"
    if gicap_pdf._reachable_objects is not None:
        assert passes == [True]
    expanded = qdf(request.destination)
    assert b"EICAR" not in expanded
    assert not names_in(expanded, "/EmbeddedFile", "/FS", "/EF")
    emptied = re.findall(rb"<<[^<>]*/Subtype /FileAttachment[^<>]*>>", expanded)
    assert len(emptied) == 1
    names = re.findall(rb"/[A-Za-z]+", emptied[0])
    assert names == [b"/F", b"/Rect", b"/Subtype", b"/FileAttachment", b"/Type", b"/Annot"]
