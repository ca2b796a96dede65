"""A file whose bytes are one type but whose name (or Content-Type) makes the desktop
or the browser read it as text of another — a picture saved as ``page.hta``, an
archive served as ``page.html`` — is blocked: the rebuilt picture or archive keeps
bytes of the sender's choosing (pixels, member names) that would then run."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.support import disarm_job

PAYLOADS = {
    "invoice.hta": b'\r\n<script language="VBScript">CreateObject("WScript.Shell")</script>\r\n',
    "page.html": b"\r\n<script>alert(document.domain)</script>\r\n",
    "drawing.svg": b'\r\n<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>\r\n',
    "run.bat": b"\r\n&calc.exe&\r\n",
    "report.csv": b"\r\n=cmd|' /C calc'!A0\r\n",
}


def _bmp_holding(payload: bytes) -> bytes:
    """A valid BMP whose one row of pixels is ``payload`` (BMP stores BGR)."""
    padded = payload + b" " * (-len(payload) % 3)
    bgr = b"".join(padded[i : i + 3][::-1] for i in range(0, len(padded), 3))
    buf = io.BytesIO()
    Image.frombytes("RGB", (len(padded) // 3, 1), bgr).save(buf, "BMP")
    return buf.getvalue()


_disarm = disarm_job


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_a_picture_named_as_text_a_desktop_runs_is_blocked(tmp_path: Path, name: str) -> None:
    data = _bmp_holding(PAYLOADS[name])
    assert PAYLOADS[name].strip() in data  # (the payload is in the bytes as they are)
    answer, out = _disarm(tmp_path, data, name)
    assert answer["outcome"] == "blocked", answer
    assert answer["file_type"]["name"] == "bmp" and "opened as" in answer["reason"]
    assert out is None
    answer, _ = _disarm(tmp_path, data, "picture.bmp")  # named as what it is: rebuilt
    assert answer["outcome"] == "rebuilt", answer


def test_served_as_html_is_the_same(tmp_path: Path) -> None:
    answer, _ = _disarm(tmp_path, _bmp_holding(PAYLOADS["page.html"]), "text/html")
    assert answer["outcome"] == "blocked", answer


def test_an_archive_named_as_a_page_is_blocked(tmp_path: Path) -> None:
    """Member names are written as they are in a rebuilt archive's directory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("<script>alert(document.domain)</script>.txt", "x")
    for name in ("page.html", "x.hta"):
        answer, out = _disarm(tmp_path, buf.getvalue(), name)
        assert answer["outcome"] == "blocked", answer
        assert out is None


def test_a_picture_member_named_as_a_script_blocks_its_archive(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("photo.bmp", _bmp_holding(b"fine"))
        zf.writestr("invoice.hta", _bmp_holding(PAYLOADS["invoice.hta"]))
    answer, out = _disarm(tmp_path, buf.getvalue(), "bundle.zip")
    assert answer["outcome"] == "blocked", answer
    assert "invoice.hta" in answer["reason"] and out is None


def test_text_named_as_what_it_is_still_passes(tmp_path: Path) -> None:
    """Nothing changes for files whose content is what their name says."""
    answer, _ = _disarm(tmp_path, b"a,b\n1,2\n3,4\n", "report.csv")
    assert answer["outcome"] == "unmodified", answer
    answer, _ = _disarm(tmp_path, b"<!DOCTYPE html><p>hi</p>", "page.html")
    assert answer["outcome"] == "rebuilt", answer


_HEADERLESS_PDF = (
    b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
    b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\n"
    b"4 0 obj\n<< /Type /Action /S /JavaScript /JS (app.alert\\('gicap'\\);) >>\nendobj\n"
    b"trailer\n<< /Root 1 0 R /Size 5 >>\n%%EOF\n"
)


@pytest.mark.parametrize("declared", ["invoice.pdf", "application/pdf"])
def test_text_named_or_served_as_a_pdf_is_blocked(tmp_path: Path, declared: str) -> None:
    """PDF readers repair any bytes into a PDF: pdf.js (Firefox) and poppler read the
    objects, and the /OpenAction script, of a file with no %PDF header, which is text
    here. It went out unmodified."""
    answer, out = _disarm(tmp_path, _HEADERLESS_PDF, declared)
    assert answer["outcome"] == "blocked" and "opened as pdf" in answer["reason"], answer
    assert out is None
    answer, out = _disarm(tmp_path, b"%PDF-1.7\n" + _HEADERLESS_PDF, declared)
    assert answer["outcome"] == "rebuilt" and out is not None and b"JavaScript" not in out


def test_text_named_as_a_pdf_in_an_archive_is_not_delivered(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("invoice.pdf", _HEADERLESS_PDF)
        z.writestr("readme.txt", b"hello\n")
    answer, out = _disarm(tmp_path, buf.getvalue(), "files.zip")
    if out is not None:
        with zipfile.ZipFile(io.BytesIO(out)) as z:
            assert "invoice.pdf" not in z.namelist() and b"JavaScript" not in out
    else:
        assert answer["outcome"] == "blocked", answer
