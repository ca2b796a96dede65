"""Review of CSV text in 8-bit charsets (read as its bytes): what a reader decoding
the delivered file in another charset splits into cells.

Most tests assert on gicap's output alone; those marked ``soffice`` convert the
delivered file with LibreOffice (one at a time) and skip without it."""

from __future__ import annotations

import base64
import csv
import io
import random
import shutil
import subprocess
from pathlib import Path

import gicap_text
import pytest

from gicap.cdr.types import DisarmRequest, DisarmResult, FileType

CSV = FileType("csv", "text", "text/csv", "csv")

#: LibreOffice's numbers for the charsets (rtl_TextEncoding).
LO_UTF7 = 75
LO_SHIFT_JIS = 64
LO_GBK = 67
LO_BIG5 = 68
LO_WINDOWS_1252 = 1

#: A quote that a Shift-JIS, GBK or Big5 reader takes as the second half of the
#: character its first byte starts (LibreOffice does): the cell the byte view reads
#: as quoted text ends there, and "-2+3" is a cell of its own that Excel runs.
SWALLOWED_QUOTE = b'"a\x83"",-2+3"\nb,c\n'
#: The same with a comma and then a quote: the comma is swallowed, the quote no
#: longer opens a quoted cell, and the cell after the next comma starts a formula.
SWALLOWED_COMMA = b'x\x83,",@SUM(1+1)"\nb,c\n'
#: UTF-7: "+ACw-" is a comma, "+AAo-" a line feed; the "=" after them starts a cell.
UTF7_COMMA = b"a+ACw-=21*2\nb,c\n"
UTF7_LINE_FEED = b"a\nb+AAo-=21*2\nc,d\n"


def _request(tmp_path: Path, data: bytes) -> DisarmRequest:
    source = tmp_path / "in.csv"
    source.write_bytes(data)
    return DisarmRequest(
        file_type=CSV,
        source=source,
        destination=tmp_path / "out.csv",
        switches={},
        limits={},
    )


def _disarm(tmp_path: Path, data: bytes) -> tuple[DisarmResult, bytes | None]:
    """The result and the delivered bytes (``None``: nothing delivered)."""
    request = _request(tmp_path, data)
    result = gicap_text.gicap_disarm(request=request)
    assert result is not None
    if result.outcome == "unmodified":
        return result, data
    if result.outcome == "rebuilt":
        return result, request.destination.read_bytes()
    return result, None


def _swallowing_reading(data: bytes) -> bytes:
    """``data`` as a Shift-JIS, GBK or Big5 reader that takes the byte after a first
    byte as its second half, whatever it is, splits it: each such pair made "?"."""
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] >= 0x80 and i + 1 < len(data):
            out += b"?"
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def _formula_cells(data: bytes) -> list[str]:
    """The cells of ``data`` (comma-delimited, Excel's quoting) that start a formula."""
    text = data.decode("latin-1")
    rows = csv.reader(io.StringIO(text, newline=""))
    return [cell for row in rows for cell in row if cell.startswith(("=", "+", "-", "@"))]


@pytest.mark.parametrize("data", [SWALLOWED_QUOTE, SWALLOWED_COMMA])
def test_quote_swallowed_by_a_first_byte_opens_no_formula(tmp_path: Path, data: bytes) -> None:
    assert _formula_cells(_swallowing_reading(data))  # (the attack)
    _, delivered = _disarm(tmp_path, data)
    if delivered is not None:
        assert _formula_cells(_swallowing_reading(delivered)) == []


def test_latin1_quoted_cells_are_unmodified(tmp_path: Path) -> None:
    data = '"café","crème brûlée"\n"été",12\n'.encode("latin-1")
    result, delivered = _disarm(tmp_path, data)
    assert result.outcome == "unmodified"
    assert delivered == data


@pytest.mark.parametrize("data", [UTF7_COMMA, UTF7_LINE_FEED])
def test_utf7_shifted_separators_are_refused(tmp_path: Path, data: bytes) -> None:
    result, delivered = _disarm(tmp_path, data)
    assert delivered is None
    assert result.outcome == "unprocessable"
    assert "UTF-7" in result.reason


@pytest.mark.parametrize(
    "data",
    [b"a,b\nC++,x\n", b"1+2,A+B-C\n", b"mail: a+news@example.org,x\n", b"x,+AGkAbg-\n"],
)
def test_plus_in_plain_text_is_no_utf7(tmp_path: Path, data: bytes) -> None:
    result, _ = _disarm(tmp_path, data)
    assert result.outcome != "unprocessable"


def test_base64_data_is_no_utf7(tmp_path: Path) -> None:
    blob = base64.b64encode(random.Random(7).randbytes(30000))
    assert blob.count(b"+") > 100
    result, _ = _disarm(tmp_path, b"name,data\nimage.png," + blob + b"\n")
    assert result.outcome == "unmodified"


# ---------------------------------------------------------------- with LibreOffice


def _libreoffice_cells(tmp_path: Path, data: bytes, charset: int) -> list[list[str]]:
    """``data`` opened as a comma-separated CSV in ``charset`` by LibreOffice Calc
    (formulas evaluated), exported with the computed values, as cells."""
    source = tmp_path / "lo" / "in.csv"
    source.parent.mkdir()
    source.write_bytes(data)
    out = tmp_path / "lo" / "out"
    subprocess.run(
        [
            "soffice",
            "--headless",
            f"-env:UserInstallation={(tmp_path / 'lo-profile').as_uri()}",
            f"--infilter=CSV:44,34,{charset},1",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1",
            "--outdir",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    exported = (out / "in.csv").read_text(encoding="utf-8")
    return list(csv.reader(io.StringIO(exported, newline="")))


needs_soffice = pytest.mark.skipif(shutil.which("soffice") is None, reason="no soffice")


@needs_soffice
@pytest.mark.parametrize(
    ("data", "charset"),
    [
        (UTF7_COMMA, LO_UTF7),
        (UTF7_LINE_FEED, LO_UTF7),
        (SWALLOWED_QUOTE, LO_SHIFT_JIS),
        (SWALLOWED_QUOTE, LO_GBK),
        (SWALLOWED_COMMA, LO_BIG5),
        (b'"a\x83"",=21*2"\nb,c\n', LO_SHIFT_JIS),
        (b"x,\xa0=21*2\n", LO_WINDOWS_1252),
    ],
)
def test_libreoffice_reads_no_formula_from_the_delivered_file(
    tmp_path: Path, data: bytes, charset: int
) -> None:
    _, delivered = _disarm(tmp_path, data)
    if delivered is None:
        return  # (refused: nothing to open)
    cells = [cell for row in _libreoffice_cells(tmp_path, delivered, charset) for cell in row]
    assert "42" not in cells  # (=21*2 computed)
    assert [c for c in cells if c.startswith(("=", "+", "-", "@"))] == []
