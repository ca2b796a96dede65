"""gicap-text: the example CDR plugin, for CSV and plain-text files.

This module is meant to be copied. It shows everything a disarm plugin needs:

* two functions marked ``@hookimpl`` and named after hooks of ``gicap/hookspecs.py``
  (``gicap_file_types`` and ``gicap_disarm``);
* an entry point in the ``gicap`` group (see ``pyproject.toml``) so gicap finds it;
* the disarm contract: answer ``None`` for types you do not claim, read
  ``request.source``, honour ``request.switches`` and ``request.limits``, write a
  rebuilt file to ``request.destination`` and say what you did in a ``DisarmResult``.

What it does:

* **text**: the file must decode strictly (UTF-8, with or without a BOM, or UTF-16
  with a BOM) and hold no NUL character; it is then delivered as it is.
* **csv**: the same strict decoding, then every cell that a spreadsheet would run as a
  formula (OWASP "CSV injection": a cell starting with ``=``, ``+``, ``-``, ``@``, tab
  or carriage return) is neutralised by prefixing it with a single quote ``'``, which
  makes Excel and LibreOffice show it as text. The ``formulas`` switch of the policy
  chooses between ``allow`` (keep them), ``sanitise`` (neutralise them, the default)
  and ``disallow`` (block the file when there is one).

``gicap_disarm`` runs in an isolated worker process with a time and memory limit, so
plain blocking code is fine here. Raising is allowed too (the file is then reported
``unprocessable``), but an explicit result with a reason is friendlier to users.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from gicap import hookimpl
from gicap.cdr.types import Action, DisarmRequest, DisarmResult

#: The file type names this plugin claims. They are the names gicap's detector (or
#: a ``gicap_detect_file_type`` plugin) gives to files, not extensions.
FILE_TYPES = ("csv", "text")

#: The policy switch this plugin honours for CSV files, and its default.
FORMULAS_SWITCH = "formulas"
DEFAULT_POLICY = "sanitise"

#: First characters that make a spreadsheet treat a cell as a formula (OWASP CSV
#: injection guidance). Note that ``-`` and ``+`` are included even though they also
#: start harmless numbers such as ``-5`` or a phone number ``+33 1 23``: a leading
#: sign is enough to start a formula (``-2+3``, ``+cmd|' /C calc'!A0``), and a cell
#: cannot be told safe without evaluating it the way the spreadsheet would. Those
#: cells are prefixed too; the spreadsheet then shows them as text, which is the
#: documented price of the protection.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

#: The prefix that neutralises a formula cell: a cell starting with a single quote is
#: shown as text (and the quote itself is hidden by Excel).
NEUTRALISER = "'"

#: Byte order marks we accept, with the codec for the bytes after the BOM. UTF-16
#: without a BOM is not accepted: it cannot be told from binary data reliably.
BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

#: How much of the text ``csv.Sniffer`` looks at to find the delimiter, and which
#: delimiters it may choose from (it guesses letters and digits otherwise).
SNIFF_CHARS = 16 * 1024
CANDIDATE_DELIMITERS = ",;\t|"

#: One physical line with its own line break (CRLF, LF or a lone CR), or the last
#: line without one. ``str.splitlines`` is not used: it also breaks on form feeds,
#: U+2028 and others, which are ordinary characters inside a CSV cell.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_TERMINATOR = re.compile(r"(?:\r\n|\r|\n)\Z")
#: Excel's own way of naming the delimiter: a first line ``sep=;``.
_SEP_LINE = re.compile(r"sep=([^\r\n])(?:\r\n|\r|\n|\Z)")


# --------------------------------------------------------------------------- hooks


@hookimpl
def gicap_file_types() -> list[str]:
    """The file types this plugin disarms (shown by ``gicap plugins``)."""
    return list(FILE_TYPES)


@hookimpl
def gicap_disarm(request: DisarmRequest) -> DisarmResult | None:
    """Disarm one CSV or text file; ``None`` for any other type.

    Returning ``None`` is how a plugin says "not mine": ``gicap_disarm`` is a
    first-result hook, so gicap then asks the next plugin. Never return a result for a
    type you do not claim.
    """
    kind = request.file_type.name
    if kind not in FILE_TYPES:
        return None

    # Limits come from the policy. Check them before reading the file into memory.
    max_size = request.limits.get("max_file_size")
    size = request.source.stat().st_size
    if max_size and size > max_size:
        return DisarmResult(
            "unprocessable", reason=f"file is {size} bytes, more than max_file_size {max_size}"
        )

    raw = request.source.read_bytes()
    try:
        decoded = _decode(raw)
    except _Undecodable as exc:
        # A file we cannot decode is never delivered as it is: we do not know what a
        # program reading it with another encoding would see.
        return DisarmResult("unprocessable", reason=str(exc))

    if kind == "text":
        # Nothing to remove from plain text: the strict decode was the check, and
        # "unmodified" tells gicap to deliver the original bytes.
        return DisarmResult("unmodified")
    return _disarm_csv(request, decoded)


# ------------------------------------------------------------------------ decoding


class _Undecodable(ValueError):
    """The bytes are not text in an encoding we accept."""


@dataclass(frozen=True)
class _Decoded:
    text: str
    bom: bytes  # written back as it was
    codec: str  # codec of the bytes after the BOM

    def encode(self, text: str) -> bytes:
        return self.bom + text.encode(self.codec)


def _decode(raw: bytes) -> _Decoded:
    """Decode strictly: UTF-8 (BOM optional) or UTF-16 with a BOM, no NUL characters.

    Strict decoding also makes re-encoding exact: the parts of the file we do not
    touch come out byte for byte as they went in.
    """
    bom, codec = next(((b, c) for b, c in BOMS if raw.startswith(b)), (b"", "utf-8"))
    try:
        text = raw[len(bom) :].decode(codec)  # errors="strict" is the default
    except UnicodeDecodeError as exc:
        raise _Undecodable(
            f"not valid {codec.upper()} text: {exc.reason} at byte {exc.start + len(bom)}"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        # NULs mean binary data (or UTF-32/BOM-less UTF-16 read as UTF-8), not text.
        raise _Undecodable(f"NUL character at character {nul}: binary data, not text")
    return _Decoded(text, bom, codec)


# ----------------------------------------------------------------------------- CSV


def _disarm_csv(request: DisarmRequest, decoded: _Decoded) -> DisarmResult:
    policy = request.switches.get(FORMULAS_SWITCH, DEFAULT_POLICY)
    delimiter = _detect_delimiter(decoded.text)
    try:
        records = list(_records(decoded.text, delimiter))
    except csv.Error as exc:
        # Malformed CSV (a stray quote, an unterminated quoted cell, a huge cell):
        # how a spreadsheet would split it is anyone's guess, so we do not deliver it.
        return DisarmResult("unprocessable", reason=f"malformed CSV: {exc}")

    formula_cells = [
        (row, col)
        for row, (_raw, cells) in enumerate(records, start=1)
        if cells is not None
        for col, cell in enumerate(cells, start=1)
        if _is_formula(cell)
    ]
    count = len(formula_cells)
    if not count:
        return DisarmResult("unmodified")
    cells_text = f"{count} cell{'s' if count != 1 else ''}"

    if policy == "allow":
        # Allowed by the policy: deliver the original, but still report what is in it.
        return DisarmResult("unmodified", actions=[Action(FORMULAS_SWITCH, "kept", cells_text)])
    if policy == "disallow":
        row, col = formula_cells[0]
        return DisarmResult(
            "blocked",
            actions=[Action(FORMULAS_SWITCH, "blocked", cells_text)],
            reason=f"formula cells are disallowed ({cells_text} starting with =, +, -, @, "
            f"tab or CR; the first at record {row}, column {col})",
        )
    # "sanitise", and any unexpected value: neutralising is the safe default.

    out: list[str] = []
    try:
        for raw, cells in records:
            if cells is None or not any(_is_formula(cell) for cell in cells):
                # A record without formulas is copied as it was, quoting and all.
                out.append(raw)
                continue
            fixed = [NEUTRALISER + cell if _is_formula(cell) else cell for cell in cells]
            out.append(_write_record(fixed, delimiter, _terminator(raw)))
    except csv.Error as exc:
        return DisarmResult("unprocessable", reason=f"cannot rewrite CSV: {exc}")

    # Write the rebuilt file: same BOM, same encoding, same line breaks.
    request.destination.write_bytes(decoded.encode("".join(out)))
    return DisarmResult("rebuilt", actions=[Action(FORMULAS_SWITCH, "neutralised", cells_text)])


def _is_formula(cell: str) -> bool:
    return cell.startswith(FORMULA_START)


def _reader(lines: Iterator[str], delimiter: str) -> Iterator[list[str]]:
    """The CSV format we read (and write, see :func:`_write_record`).

    Only the delimiter is taken from the file. The quote character is always ``"``
    because that is the only one spreadsheets honour: reading ``"=1+1"`` with another
    quote character would see a harmless cell that Excel runs as a formula.
    ``strict`` makes malformed quoting an error instead of a guess.
    """
    return csv.reader(
        lines,
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        skipinitialspace=False,
        strict=True,
    )


def _detect_delimiter(text: str) -> str:
    """Excel's ``sep=X`` first line if there is one, else ``csv.Sniffer``'s guess on
    the beginning of the file, else a comma.

    Limitation: a spreadsheet opening a .csv may split it on the list separator of
    its locale (``;`` in much of Europe) rather than on what the file uses; cells are
    checked as split by the delimiter detected here.
    """
    sep = _SEP_LINE.match(text)
    if sep:
        return sep.group(1)
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS:
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        if cut > 0:
            sample = sample[: cut + 1]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=CANDIDATE_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _records(
    text: str, delimiter: str, fast: bool = True
) -> Iterator[tuple[str, list[str] | None]]:
    """Yield each CSV record as (its exact source text, its cells), or (its source
    text, ``None``) for a record known to hold no formula cell.

    ``csv.reader`` takes lines one at a time and asks for the next line only while a
    quoted cell is still open, so the lines it consumed for a record are exactly that
    record's source text. Keeping it lets untouched records be copied byte for byte.

    Fast path: a line without any ``"`` that starts a record is that whole record,
    and its cells are the line split on the delimiter (exactly what ``csv.reader``
    returns for it). When no cell of it can start with a formula character (checked
    by one regular expression over the line), it is not parsed at all. Lines with a
    quote, lines longer than the csv field size limit and odd delimiters always go
    through ``csv.reader``, and so does every line when ``fast`` is false.
    """
    fast = fast and delimiter not in '"\r\n'
    limit = csv.field_size_limit()
    all_lines = _LINE.findall(text)
    if fast and '"' not in text and max(map(len, all_lines), default=0) <= limit:
        # No quote anywhere: every line is one record. One search over the whole text
        # finds the lines with a cell starting with a formula character.
        ends = list(accumulate(map(len, all_lines)))
        starts = _danger(delimiter, whole=True).finditer(text)
        hits = {bisect_right(ends, m.end() - 1) for m in starts}
        if text.startswith(FORMULA_START):
            hits.add(0)
        for i, line in enumerate(all_lines):
            if i in hits:
                body = line.rstrip("\r\n")
                yield line, body.split(delimiter) if body else []
            else:
                yield line, None
        return

    consumed: list[str] = []
    pending: list[str] = []
    lines = iter(all_lines)

    def feed() -> Iterator[str]:
        while True:
            if pending:
                line = pending.pop()
            else:
                line = next(lines, None)
                if line is None:
                    return
            consumed.append(line)
            yield line

    reader = _reader(feed(), delimiter)
    danger = _danger(delimiter, whole=False)
    for line in lines:
        if fast and '"' not in line and len(line) <= limit:
            body = line.rstrip("\r\n")
            if danger.search(body) is None:
                yield line, None
            else:
                yield line, body.split(delimiter) if body else []
            continue
        pending.append(line)
        cells = next(reader)
        raw = "".join(consumed)
        consumed.clear()
        yield raw, cells


def _danger(delimiter: str, whole: bool) -> re.Pattern[str]:
    """A formula character at a cell start of quote-free text: at the start, after the
    delimiter or (``whole``: text of many lines) after a line break — not at the
    start of the text, which the caller checks — the match ending on that character.
    A quote-free line holds no CR or LF but its own line break, so no cell of it
    starts with one (a CR there ends the record)."""
    if whole:
        return re.compile(f"[\\r\\n{re.escape(delimiter)}][=+\\-@\t]")
    return re.compile(f"(?:\\A|{re.escape(delimiter)})[=+\\-@\t]")


def _terminator(raw: str) -> str:
    """The line break ending a record's source text ("" for a last line without one)."""
    found = _TERMINATOR.search(raw)
    return found.group(0) if found else ""


def _write_record(cells: list[str], delimiter: str, terminator: str) -> str:
    """One record written by ``csv.writer`` (quoting only where needed), ending with
    the record's original line break, and checked by reading it back."""
    buf = io.StringIO()
    # lineterminator "\r\n" on purpose: csv.writer quotes a cell containing CR or LF
    # only when that character is in its line terminator. It is replaced below.
    writer = csv.writer(
        buf,
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        quoting=csv.QUOTE_MINIMAL,
        lineterminator="\r\n",
    )
    writer.writerow(cells)
    text = buf.getvalue()[:-2] + terminator
    # Defence in depth: the record must read back as exactly these cells, so a quirk of
    # the writer can never turn a neutralised cell back into a live one.
    if list(_reader(_LINE.findall(text), delimiter)) != [cells]:
        raise csv.Error("a rewritten record does not read back the same")
    return text
