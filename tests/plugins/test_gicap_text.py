"""The example plugin gicap-text: strict text decoding and CSV formula neutralising."""

from __future__ import annotations

import codecs
import csv
import io
from importlib.metadata import entry_points
from pathlib import Path

import gicap_text
import pytest

from gicap.cdr.types import Action, DisarmRequest, DisarmResult, FileType
from gicap.plugins import create_plugin_host

CSV = FileType("csv", "text", "text/csv", "csv")
TEXT = FileType("text", "text", "text/plain", "txt")
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")

# Records as cells; written below with every line terminator / BOM / delimiter.
ROWS = [
    ["name", "value", "note"],
    ["dde", "=cmd|' /C calc'!A0", "plain"],
    ["plus", "+1+1", "-2+3"],
    ["at", "@SUM(1,1)", "a;b,c"],
    ["tab", "\tleading tab", "\rleading CR"],
    ["quoted", 'he said "hi", twice', "two\nlines"],
    ["numbers", "-5", "+33 1 23"],
    ["safe", "1+1", "x=y"],
]
FORMULA_COUNT = sum(cell.startswith(DANGEROUS) for row in ROWS for cell in row)


def _csv_text(rows: list[list[str]], delimiter: str = ",", newline: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    # Quoted cells keep their own "\n"; only the record terminators follow `newline`.
    return buf.getvalue().replace("\r\n", newline) if newline != "\r\n" else buf.getvalue()


def _request(
    tmp_path: Path,
    data: bytes,
    file_type: FileType = CSV,
    switches: dict[str, str] | None = None,
    limits: dict[str, int] | None = None,
) -> DisarmRequest:
    source = tmp_path / f"in.{file_type.extension}"
    source.write_bytes(data)
    return DisarmRequest(
        file_type=file_type,
        source=source,
        destination=tmp_path / f"out.{file_type.extension}",
        switches=switches if switches is not None else {},
        limits=limits or {},
    )


def _disarm(request: DisarmRequest) -> DisarmResult:
    result = gicap_text.gicap_disarm(request=request)
    assert result is not None
    return result


def _read(data: bytes, encoding: str = "utf-8-sig", delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(encoding), newline=""), delimiter=delimiter))


def test_claims_csv_and_text_only(tmp_path: Path) -> None:
    assert gicap_text.gicap_file_types() == ["csv", "text"]
    for name in ("docx", "pdf", "zip"):
        other = FileType(name, "other", "application/octet-stream", name)
        assert gicap_text.gicap_disarm(request=_request(tmp_path, b"=1+1\n", other)) is None


def test_found_through_the_gicap_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="gicap")}
    assert found.get("text") == "gicap_text"
    host = create_plugin_host()
    assert host.loaded["text"] == "gicap_text"
    assert ["csv", "text"] in host.manager.hook.gicap_file_types()


def test_the_plugin_host_routes_csv_to_it(tmp_path: Path) -> None:
    host = create_plugin_host()
    request = _request(tmp_path, b"a,=1+1\n")
    result = host.manager.hook.gicap_disarm(request=request)
    assert result.outcome == "rebuilt"
    assert request.destination.read_bytes() == b"a,'=1+1\n"


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8], ids=["no-BOM", "BOM"])
@pytest.mark.parametrize("delimiter", [",", ";"], ids=["comma", "semicolon"])
def test_formula_cells_are_neutralised(
    tmp_path: Path, newline: str, bom: bytes, delimiter: str
) -> None:
    source = bom + _csv_text(ROWS, delimiter, newline).encode()
    request = _request(tmp_path, source)
    result = _disarm(request)

    assert result.outcome == "rebuilt"
    assert result.actions == [Action("formulas", "neutralised", f"{FORMULA_COUNT} cells")]
    out = request.destination.read_bytes()
    assert out.startswith(codecs.BOM_UTF8) == bool(bom)
    # Line terminator style kept: as many CRLFs as records in CRLF files, none in LF ones.
    assert out.count(b"\r\n") == (len(ROWS) if newline == "\r\n" else 0)
    assert out.endswith(newline.encode())

    rows = _read(out, delimiter=delimiter)
    assert len(rows) == len(ROWS)
    for original, rebuilt in zip(ROWS, rows, strict=True):
        assert len(rebuilt) == len(original)
        for before, after in zip(original, rebuilt, strict=True):
            if before.startswith(DANGEROUS):
                assert after == "'" + before
            else:
                assert after == before  # safe cells unchanged, including "1+1"
        assert not any(cell.startswith(DANGEROUS) for cell in rebuilt)

    # Records without formulas are copied byte for byte (header, "safe").
    for row in (ROWS[0], ROWS[-1]):
        assert (delimiter.join(row) + newline).encode() in out


def test_exact_rewrite_keeps_untouched_quoting(tmp_path: Path) -> None:
    source = (
        b'"id","name"\r\n'  # needless quotes kept: no formula in this record
        b'1,"=HYPERLINK(""http://x"",""y"")"\r\n'
        b'2,"-5"\r\n'
        b'3,"a,b"\r\n'
        b"4,@x"  # last line without a line break stays so
    )
    request = _request(tmp_path, source)
    assert _disarm(request).outcome == "rebuilt"
    assert request.destination.read_bytes() == (
        b'"id","name"\r\n'
        b"1,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\r\n"
        b"2,'-5\r\n"
        b'3,"a,b"\r\n'
        b"4,'@x"
    )


def test_cr_and_tab_leading_cells_stay_inside_quotes(tmp_path: Path) -> None:
    request = _request(tmp_path, b'a,"\rcalc",b\n"\t=1+1",c,d\n')
    assert _disarm(request).outcome == "rebuilt"
    out = request.destination.read_bytes()
    assert out == b"a,\"'\rcalc\",b\n'\t=1+1,c,d\n"
    assert _read(out) == [["a", "'\rcalc", "b"], ["'\t=1+1", "c", "d"]]


def test_semicolon_file_with_commas_in_cells(tmp_path: Path) -> None:
    source = b"a;b;c\n1,5;=SUM(A1,A2);x,y\n2,5;-3;ok\n"
    request = _request(tmp_path, source)
    result = _disarm(request)
    assert result.outcome == "rebuilt"
    assert result.actions[0].detail == "2 cells"
    assert request.destination.read_bytes() == b"a;b;c\n1,5;'=SUM(A1,A2);x,y\n2,5;'-3;ok\n"


def test_excel_sep_line_sets_the_delimiter(tmp_path: Path) -> None:
    request = _request(tmp_path, b"sep=;\n=1;2\n")
    assert _disarm(request).outcome == "rebuilt"
    assert request.destination.read_bytes() == b"sep=;\n'=1;2\n"


def test_utf16_csv_is_rebuilt_in_utf16(tmp_path: Path) -> None:
    source = codecs.BOM_UTF16_LE + "é,=1+1\r\n".encode("utf-16-le")
    request = _request(tmp_path, source)
    assert _disarm(request).outcome == "rebuilt"
    assert request.destination.read_bytes() == (
        codecs.BOM_UTF16_LE + "é,'=1+1\r\n".encode("utf-16-le")
    )


def test_allow_keeps_formulas(tmp_path: Path) -> None:
    request = _request(tmp_path, _csv_text(ROWS).encode(), switches={"formulas": "allow"})
    result = _disarm(request)
    assert result.outcome == "unmodified"
    assert result.actions == [Action("formulas", "kept", f"{FORMULA_COUNT} cells")]
    assert not request.destination.exists()


def test_disallow_blocks_formulas(tmp_path: Path) -> None:
    request = _request(tmp_path, _csv_text(ROWS).encode(), switches={"formulas": "disallow"})
    result = _disarm(request)
    assert result.outcome == "blocked"
    assert "formula" in result.reason and "record 2, column 2" in result.reason
    assert result.actions == [Action("formulas", "blocked", f"{FORMULA_COUNT} cells")]
    assert not request.destination.exists()


@pytest.mark.parametrize("policy", ["allow", "sanitise", "disallow"])
def test_clean_csv_is_unmodified(tmp_path: Path, policy: str) -> None:
    clean = [["a", "b,c", "multi\nline"], ["1+1", "x=y", 'q"uote'], ["5", "", "café"]]
    request = _request(tmp_path, _csv_text(clean).encode(), switches={"formulas": policy})
    result = _disarm(request)
    assert result.outcome == "unmodified"
    assert result.actions == []
    assert not request.destination.exists()


@pytest.mark.parametrize("file_type", [CSV, TEXT], ids=["csv", "text"])
@pytest.mark.parametrize(
    "data",
    [
        b"a,b\n\xff\xfe=1+1\x80\n",  # invalid UTF-8
        b"a,b\n\xc3(,c\n",  # truncated multi-byte sequence
        b"a,b\x00c\n",  # NUL
        codecs.BOM_UTF16_LE + b"a\x00,",  # odd-length UTF-16
        b"a\x00,\x00=\x001\x00",  # BOM-less UTF-16 reads as NULs
    ],
    ids=["invalid-utf8", "truncated", "nul", "odd-utf16", "utf16-no-bom"],
)
def test_undecodable_is_unprocessable(tmp_path: Path, file_type: FileType, data: bytes) -> None:
    request = _request(tmp_path, data, file_type)
    result = _disarm(request)
    assert result.outcome == "unprocessable"
    assert result.reason
    assert not request.destination.exists()


def test_malformed_csv_is_unprocessable(tmp_path: Path) -> None:
    request = _request(tmp_path, b'a,b\n"=1+1,unterminated\n')
    result = _disarm(request)
    assert result.outcome == "unprocessable"
    assert "malformed CSV" in result.reason
    assert not request.destination.exists()


def test_max_file_size(tmp_path: Path) -> None:
    request = _request(tmp_path, b"a,b\n" * 100, limits={"max_file_size": 50})
    result = _disarm(request)
    assert result.outcome == "unprocessable"
    assert "max_file_size" in result.reason
    request = _request(tmp_path, b"a,b\n" * 10, limits={"max_file_size": 50})
    assert _disarm(request).outcome == "unmodified"


@pytest.mark.parametrize(
    "data",
    [
        b"plain text, =1+1 is fine here\n",
        codecs.BOM_UTF8 + "caf\u00e9\r\n".encode(),
        codecs.BOM_UTF16_BE + "hello\n".encode("utf-16-be"),
        b"",
    ],
    ids=["utf8", "utf8-bom", "utf16-be", "empty"],
)
def test_text_is_unmodified(tmp_path: Path, data: bytes) -> None:
    request = _request(tmp_path, data, TEXT)
    assert _disarm(request) == DisarmResult("unmodified")
    assert not request.destination.exists()
