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
* **script**: text saved under a name a desktop runs or acts on when it is opened
  (``invoice.js``, ``run.bat``, ``open.url``...: see gicap's detector). Nothing can
  be removed from a script but all of it, so the ``scripts`` switch of the policy
  either delivers it (``allow``) or blocks it (``sanitise``, the default, and
  ``disallow``).

``gicap_disarm`` runs in an isolated worker process with a time and memory limit, so
plain blocking code is fine here. Raising is allowed too (the file is then reported
``unprocessable``), but an explicit result with a reason is friendlier to users.
"""

from __future__ import annotations

import base64
import codecs
import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise, repeat
from typing import NamedTuple

from gicap import hookimpl
from gicap.cdr.detect import browser_markup
from gicap.cdr.types import Action, DisarmRequest, DisarmResult

#: The file type names this plugin claims. They are the names gicap's detector (or
#: a ``gicap_detect_file_type`` plugin) gives to files, not extensions.
FILE_TYPES = ("csv", "text", "script")

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
#: ``csv.Sniffer``'s order of preference among delimiters that fit equally well.
_PREFERRED_DELIMITERS = (",", "\t", ";")


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
        if decoded.text.lstrip("\ufeff \t\r\n").startswith("<") and browser_markup(decoded.text):
            # (detection reads the first 64 KiB: what it told later is refused here)
            return DisarmResult(
                "unprocessable",
                reason="XML a browser runs scripts in (XHTML or SVG elements, or a style "
                "sheet) past what detection reads",
            )
        # Nothing to remove from plain text: the strict decode was the check, and
        # "unmodified" tells gicap to deliver the original bytes.
        return DisarmResult("unmodified")
    if kind == "script":
        return _disarm_script(request)
    return _disarm_csv(request, decoded)


def _disarm_script(request: DisarmRequest) -> DisarmResult:
    value = request.switches.get("scripts", "sanitise")
    what = "a script a desktop runs when the file is opened"
    if value == "allow":
        return DisarmResult("unmodified", actions=[Action("scripts", "kept", what)])
    return DisarmResult(
        "blocked",
        actions=[Action("scripts", "blocked", what)],
        reason=f"{what}: nothing of it can be kept without running it (scripts={value})",
    )


# ------------------------------------------------------------------------ decoding


#: Text that is not UTF-8 (a CSV file Excel saved in the Windows code page, Shift-JIS,
#: GBK...) is read as its bytes, one character each, and written back so: byte for
#: byte what it was, but for what the engine inserts. In the charsets that keep ASCII
#: as ASCII (all but those that shift with ESC, refused), the characters that make
#: cells, quotes and formulas ("=", "+", "-", "@", tab, CR, LF, ",", ";", '"') are
#: the ASCII bytes whatever the charset: no other character has such a byte (the
#: second bytes of Shift-JIS, GBK or Big5 characters are 0x40 and above, "@" only
#: after a first byte over 0x7f, never at the start of a cell).
EIGHT_BIT = "latin-1"
#: A cell whose first bytes are over 0x7f and then a formula character: a reader that
#: drops the bytes it cannot decode (reading the file as UTF-8) would see a formula.
_HIGH_BEFORE_FORMULA = re.compile(r"(?:\A|[\t,;\r\n\"])[\x80-\xff]+[=+\-@\t]")


#: UTF-7, which LibreOffice and Excel offer to read a CSV file in, writes characters
#: as base64 after a "+" (up to a "-" or any other character): "+ACw-" is a comma,
#: "+AAo-" a line feed and "+AD0-" an "=", so "a+ACw-=21*2" is the cells "a" and
#: "=21*2" there. An encoder writes these characters as they are; a CSV whose base64
#: runs hold one of them (or a space, skipped before a quote) and then has more
#: places where a cell may start a formula than as it is (see :func:`_utf7_formulas`)
#: is refused.
#: Only a run holding one of "ABCD" can: a character under U+0100 is a UTF-16 unit
#: whose first byte is 0, 8 bits at 0 that take an "A" (0) or, where they start two
#: bits from the end of a base64 digit, one of "ABCD" (0 to 3) as the next digit. The
#: others ("+1234", a phone number) are not decoded: a CSV of such numbers spent
#: seconds there.
_UTF7_RUN = re.compile(r"\+([A-Za-z0-9+/]*[A-D][A-Za-z0-9+/]*)")
#: UTF-16 units (two bytes, from the start of the decoded run) the first of which is
#: such a character.
_UTF7_STRUCTURE_UNIT = re.compile(rb'(?s:..)*?\x00[\t\n\r ",;|=+\-@]')


def _utf7_structure(text: str) -> int | None:
    """Where a base64 run of ``text`` read as UTF-7 holds a delimiter, a quote, a
    line break, a space or a formula character, else ``None``."""
    if "+" not in text:
        return None
    for run in _UTF7_RUN.finditer(text):
        chars = run.group(1)
        units = len(chars) * 6 // 16
        if not units:
            continue
        padded = chars + "A" * (-len(chars) % 4)
        decoded = base64.b64decode(padded)[: 2 * units]
        if _UTF7_STRUCTURE_UNIT.match(decoded) is not None:
            return run.start()
    return None


def _utf7_formulas(text: str) -> bool:
    """Whether ``text`` read as UTF-7 has more places where a cell may start a formula
    (``_ANY_READING_FORMULA``, quotes or not) than as it is: a delimiter or a line
    break written in base64 and then a formula character (base64 holding none of
    them, a cell of base64 data for one, is not looked at further)."""
    if _utf7_structure(text) is None:
        return False
    as_utf7 = text.encode("utf-8", "surrogatepass").decode("utf-7", "replace")
    found = _ANY_READING_FORMULA.finditer
    return sum(1 for _ in found(as_utf7)) > sum(1 for _ in found(text))


#: A formula character that only spaces and quotes separate from the start of the
#: text, a line break or a delimiter of any reading.
_ANY_READING_FORMULA = re.compile(r'(?:\A|(?<=[\t,;|\r\n]))[ "]*+[=+\-@]')


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
    """Decode strictly: UTF-8 (BOM optional) or UTF-16 with a BOM, no NUL characters;
    else, text in an 8-bit charset (see ``EIGHT_BIT``).

    Strict decoding also makes re-encoding exact: the parts of the file we do not
    touch come out byte for byte as they went in.
    """
    bom, codec = next(((b, c) for b, c in BOMS if raw.startswith(b)), (b"", "utf-8"))
    try:
        text = raw[len(bom) :].decode(codec)  # errors="strict" is the default
    except UnicodeDecodeError as exc:
        if bom or b"\x1b" in raw:
            # (ISO-2022 and the like shift into other characters with ESC: there the
            # bytes of "=", "," or a quote may be halves of other characters)
            raise _Undecodable(
                f"not valid {codec.upper()} text: {exc.reason} at byte {exc.start + len(bom)}"
            ) from None
        text, codec = raw.decode(EIGHT_BIT), EIGHT_BIT
    nul = text.find("\x00")
    if nul >= 0:
        # NULs mean binary data (or UTF-32/BOM-less UTF-16 read as UTF-8), not text.
        raise _Undecodable(f"NUL character at character {nul}: binary data, not text")
    return _Decoded(text, bom, codec)


# ----------------------------------------------------------------------------- CSV


class _Hit(NamedTuple):
    """A record holding formula cells: where its source text is, and its cells."""

    start: int  # offset of the record's source text in the decoded text
    end: int  # offset just past it, its line break included
    terminator: str  # its line break ("" for a last line without one)
    cells: list[str]


@dataclass
class _Found:
    """The formula cells of a CSV text."""

    count: int
    first: tuple[int, int] = (0, 0)  # record and column of the first, numbered from 1
    #: Quote-free text (see :func:`_formula_records`): its formula cells are found
    #: again where they are needed, by one pattern; the records are split only then.
    quote_free: bool = False
    #: The text with its formula cells neutralised, when asked for and not quote-free
    #: (written as the records are read: see :class:`_Rewriter`).
    rewritten: str | None = None


def _disarm_csv(request: DisarmRequest, decoded: _Decoded) -> DisarmResult:
    policy = request.switches.get(FORMULAS_SWITCH, DEFAULT_POLICY)
    text = decoded.text
    if decoded.codec == EIGHT_BIT:
        sep = _SEP_LINE.match(text)
        if sep is not None and sep.group(1) >= "\x80":
            # (a double-byte reader takes that byte and the line break after it as one
            # character: Excel may split the cells on its own separator instead)
            return DisarmResult(
                "unprocessable",
                reason="a sep= line naming a byte over 0x7f as the delimiter, in text "
                "that is not UTF-8: readers disagree on where its cells are",
            )
        dropped = _HIGH_BEFORE_FORMULA.search(text)
        if dropped is not None:
            return DisarmResult(
                "unprocessable",
                reason="a cell of this text (not UTF-8) starts with bytes over 0x7f and "
                f"then a formula character (at byte {dropped.start()}): a reader that "
                "drops the bytes it cannot decode would read a formula",
            )
    if _utf7_formulas(text):
        return DisarmResult(
            "unprocessable",
            reason="read as UTF-7, this text has more cells starting with a formula "
            'character than as it is (its base64 runs hold delimiters, as "+ACw-" a comma)',
        )
    if (
        '"' not in text
        and not any(c in text for c in FORMULA_START if c != "\r")
        and _lines_within(text, csv.field_size_limit())
    ):
        # No quote and no formula character: every line is one record whose cells are
        # parts of it, none starting with a formula character (nor with a CR, which
        # ends the line), whatever the delimiter; no need to find it.
        return _excel_only(request, decoded, text, None, policy)
    delimiter = _detect_delimiter(text)
    try:
        found = _formula_records(text, delimiter, rewrite=policy not in ("allow", "disallow"))
    except _RewriteError as exc:
        return DisarmResult("unprocessable", reason=f"cannot rewrite CSV: {exc}")
    except csv.Error as exc:
        # Malformed CSV (a stray quote, an unterminated quoted cell, a huge cell):
        # how a spreadsheet would split it is anyone's guess, so we do not deliver it.
        return DisarmResult("unprocessable", reason=f"malformed CSV: {exc}")

    count = found.count
    if not count:
        return _excel_only(request, decoded, text, delimiter, policy)
    cells_text = _cells(count)

    if policy == "allow":
        # Allowed by the policy: deliver the original, but still report what is in it.
        return DisarmResult("unmodified", actions=[Action(FORMULAS_SWITCH, "kept", cells_text)])
    if policy == "disallow":
        row, col = found.first
        return DisarmResult(
            "blocked",
            actions=[Action(FORMULAS_SWITCH, "blocked", cells_text)],
            reason=f"formula cells are disallowed ({cells_text} starting with =, +, -, @, "
            f"tab or CR; the first at record {row}, column {col})",
        )
    # "sanitise", and any unexpected value: neutralising is the safe default.

    if found.quote_free:
        try:
            neutralised = _neutralised(text, delimiter, count)
        except csv.Error as exc:
            return DisarmResult("unprocessable", reason=f"cannot rewrite CSV: {exc}")
        if neutralised is not None:
            return _write_csv(request, decoded, neutralised, delimiter, count)
        try:
            rewriter = _Rewriter(text, delimiter)
            for hit in _hits_at(text, _cell_starts(text, delimiter), delimiter):
                rewriter.add(hit)
            rewritten = rewriter.finish()
        except csv.Error as exc:
            return DisarmResult("unprocessable", reason=f"cannot rewrite CSV: {exc}")
    else:
        rewritten = found.rewritten  # (written as its records were read)
        assert rewritten is not None
    return _write_csv(request, decoded, rewritten, delimiter, count)


class _RewriteError(csv.Error):
    """A rewritten record that does not read back as written (see _write_records)."""


class _Rewriter:
    """The text with the formula cells of its records neutralised, written a batch of
    records at a time as they are found, so that only a batch's cells are held.

    Records without formulas are copied as they were, quoting and all; the others are
    replaced by their rewritten text. Same BOM, same encoding, same line breaks. (All
    the records' cells held until the end took 445 MB for 10 MB of CSV with quotes.)
    """

    BATCH = 2048

    def __init__(self, text: str, delimiter: str) -> None:
        self.text = text
        self.delimiter = delimiter
        self.chunks: list[str] = []
        self.batch: list[_Hit] = []
        self.done = 0  # the offset in ``text`` up to which ``chunks`` hold it

    def add(self, hit: _Hit) -> None:
        self.batch.append(hit)
        if len(self.batch) >= self.BATCH:
            self._flush()

    def finish(self) -> str:
        self._flush()
        self.chunks.append(self.text[self.done :])
        return "".join(self.chunks)

    def _flush(self) -> None:
        if not self.batch:
            return
        formula, neutraliser = FORMULA_START, NEUTRALISER
        try:
            records = _write_records(
                [
                    [neutraliser + c if c.startswith(formula) else c for c in hit.cells]
                    for hit in self.batch
                ],
                [hit.terminator for hit in self.batch],
                self.delimiter,
            )
        except csv.Error as exc:
            raise _RewriteError(str(exc)) from None
        out: list[str] = []
        text, done = self.text, self.done
        for hit, record in zip(self.batch, records, strict=True):
            out.append(text[done : hit.start])
            out.append(record)
            done = hit.end
        self.chunks.append("".join(out))
        self.done = done
        self.batch.clear()


def _write_csv(
    request: DisarmRequest, decoded: _Decoded, text: str, delimiter: str, count: int
) -> DisarmResult:
    """Write ``text``, its ``count`` formula cells neutralised, once the cells Excel
    reads otherwise (:func:`_excel_readings`) are neutralised too."""
    try:
        text, extra, sylk = _excel_readings(text, delimiter, decoded)
    except csv.Error as exc:
        return DisarmResult("unprocessable", reason=f"cannot rewrite CSV: {exc}")
    count += extra
    request.destination.write_bytes(decoded.encode(text))
    actions = [Action(FORMULAS_SWITCH, "neutralised", _cells(count))]
    if sylk:
        actions.append(Action(FORMULAS_SWITCH, "neutralised", _SYLK_WHAT))
    return DisarmResult("rebuilt", actions=actions)


_SYLK_WHAT = "first cell ID quoted (Excel reads a file starting with ID as SYLK)"


def _cells(n: int) -> str:
    return f"{n} cell{'s' if n != 1 else ''}"


def _neutralise_at(text: str, starts: list[int]) -> str:
    """``text`` with the neutraliser put at each of ``starts`` (in order)."""
    bounds = [0, *starts, len(text)]
    return NEUTRALISER.join([text[a:b] for a, b in pairwise(bounds)])


def _excel_only(
    request: DisarmRequest, decoded: _Decoded, text: str, delimiter: str | None, policy: str
) -> DisarmResult:
    """The result for a text with no formula cell as split on its own delimiter
    (``None``: not looked for, the text has no quote and no formula character): what
    Excel reads otherwise (:func:`_excel_readings`) decides. A first cell "ID" is no
    formula: quoted, but for ``allow`` (formulas allowed), whatever the policy."""
    if policy == "allow":
        if not _excel_danger(text, delimiter, decoded):
            return DisarmResult("unmodified")
        try:
            _, extra, _ = _excel_readings(text, delimiter, decoded)
        except csv.Error as exc:
            return DisarmResult("unprocessable", reason=f"malformed CSV: {exc}")
        if not extra:
            return DisarmResult("unmodified")
        what = f"{_cells(extra)} as Excel or LibreOffice splits the file"
        return DisarmResult("unmodified", actions=[Action(FORMULAS_SWITCH, "kept", what)])
    if not _excel_danger(text, delimiter, decoded) and not text.startswith(SYLK_START):
        return DisarmResult("unmodified")
    try:
        text, extra, sylk = _excel_readings(text, delimiter, decoded)
    except csv.Error as exc:
        return DisarmResult("unprocessable", reason=f"malformed CSV: {exc}")
    actions = []
    if extra:
        what = f"{_cells(extra)} as Excel or LibreOffice splits the file"
        if policy == "disallow":
            return DisarmResult(
                "blocked",
                actions=[Action(FORMULAS_SWITCH, "blocked", what)],
                reason=f"formula cells are disallowed ({what}: Excel on its locale's list "
                "separator, LibreOffice on tab, comma and semicolon, rather than the file's "
                "delimiter)",
            )
        actions.append(Action(FORMULAS_SWITCH, "neutralised", what))
    if sylk:
        actions.append(Action(FORMULAS_SWITCH, "neutralised", _SYLK_WHAT))
    if not actions:
        return DisarmResult("unmodified")
    request.destination.write_bytes(decoded.encode(text))
    return DisarmResult("rebuilt", actions=actions)


#: The delimiters Excel splits a .csv file on when it opens it: the list separator
#: of its locale, "," or ";", whatever the file itself uses (a "sep=" first line
#: aside, which Excel ignores after a byte order mark); a UTF-16 file on tabs too,
#: and any text file named .xls, .tsv or .tab (text served as xls is a CSV here).
EXCEL_DELIMITERS = (",", ";", "\t")
#: LibreOffice splits a .csv file on its default separators all at once (tab, comma
#: and semicolon), whatever its encoding and a "sep=" line: one more reading, in
#: which only "=" starts a formula (its "evaluate formulas" import option).
LIBREOFFICE_DELIMITERS = "\t,;"
#: A reader of Shift-JIS, GBK or Big5 (LibreOffice's does) takes the byte after a
#: first byte (over 0x7f) as its second half whatever it is, a quote, a delimiter or
#: a line break included: there the quotes of the byte view are not the reader's, and
#: text the byte view reads as quoted may be cells. In a text (not UTF-8) with a
#: quote after such a byte, or after one and a delimiter, the fields are read once
#: more whatever the quotes say: every "=", "+", "-" or "@" that only quotes separate
#: from a delimiter (any of these, at once), a line break or the start is neutralised.
#: (A neutraliser always follows a delimiter, a line break or a quote, never such a
#: first byte: no reader takes it as a second half.)
BYTE_HALVES_DELIMITERS = "\t,;|"
_QUOTE_AFTER_HIGH_BYTE = re.compile(r'[\x80-\xff][\t,;|\r\n]?"')
#: Every reading: a delimiter, or several read at once.
_READINGS = (*EXCEL_DELIMITERS, LIBREOFFICE_DELIMITERS, BYTE_HALVES_DELIMITERS)
#: Excel reads a file starting with these two letters as SYLK, whose records hold
#: formulas (``C;Y1;X1;EEXEC(...)``) that no cell shows.
SYLK_START = "ID"


def _other_delimiters(text: str, delimiter: str | None, decoded: _Decoded) -> list[str]:
    """The delimiters Excel may split ``text`` on besides the file's own, and
    LibreOffice's (several at once: one string), see :func:`_excel_readings`."""
    readings = [LIBREOFFICE_DELIMITERS]
    if decoded.codec == EIGHT_BIT and _QUOTE_AFTER_HIGH_BYTE.search(text) is not None:
        readings.append(BYTE_HALVES_DELIMITERS)
    if not decoded.bom and _SEP_LINE.match(text) is not None:
        return readings  # (named on a "sep=" line: Excel takes it; LibreOffice does not)
    return [d for d in EXCEL_DELIMITERS if d != delimiter] + readings


def _excel_danger(text: str, delimiter: str | None, decoded: _Decoded) -> bool:
    """Whether a field of Excel's reading on another delimiter may start a formula:
    a formula character at the start of the text, or after that delimiter, a line
    break or a quote (a first test: :func:`_excel_fields` tells)."""
    return any(_danger_after(text, d) for d in _other_delimiters(text, delimiter, decoded))


def _danger_after(text: str, delimiter: str) -> bool:
    """Whether a formula character starts ``text`` or follows ``delimiter``, a line
    break or a quote in it (``_EXCEL_DANGER``): each found with ``str.find`` while
    they are few, else by the pattern."""
    formula = _FORMULA_CHARS[delimiter]
    if text[:1] and text[0] in formula:
        return True
    before = _DANGER_BEFORE[delimiter]  # (the delimiter: one character, or several)
    budget = len(text) // 32
    for char in formula:
        at = text.find(char, 1)
        while at >= 0:
            if text[at - 1] in before:
                return True
            budget -= 1
            if budget < 0:
                return _EXCEL_DANGER[delimiter].search(text) is not None
            at = text.find(char, at + 1)
    return False


def _excel_readings(text: str, delimiter: str | None, decoded: _Decoded) -> tuple[str, int, bool]:
    """``text`` with every cell that starts a formula when Excel splits the file on
    another delimiter than its own (:func:`_other_delimiters`) neutralised, and a
    first cell "ID..." quoted (then Excel does not read the file as SYLK); how many
    cells were neutralised, and whether "ID" was quoted. ``delimiter``: the file's
    own, whose cells are checked already (Excel reads them as ``csv.reader`` does: a
    quote in the middle of a field is a character).

    Excel reads a field as quoted only when its first character is a quote (then
    ``""`` is a quote in it), so a cell the file's own delimiter makes quoted may be
    plain text on another delimiter, its commas splitting it and its line breaks
    starting records (``a;"x,=cmd`` on ","). Every field as Excel reads it on each
    delimiter is checked (:func:`_excel_fields`); the neutraliser goes just before its
    formula character (after the quotes that open it: a run of quotes is never split,
    so no ``""`` of another reading is broken). Only characters are added. The result
    is checked: no reading, the file's own included, starts a formula."""
    others = _other_delimiters(text, delimiter, decoded)
    count = 0
    for _ in range(3):
        changed = False
        for other in others:
            if not _danger_after(text, other):
                continue  # (no field start of this reading is followed by one)
            if other == LIBREOFFICE_DELIMITERS:
                at = _libreoffice_formulas(text)
            elif other == BYTE_HALVES_DELIMITERS:
                at = _byte_halves_formulas(text)
            else:
                at = _excel_fields(text, other)
            if at:
                text = _neutralise_at(text, at)
                count += len(at)
                changed = True
        if not changed:
            break
    else:
        raise csv.Error("cells split on another delimiter still start a formula")
    sylk = text.startswith(SYLK_START)
    own = delimiter
    if sylk:
        # The first cell, up to the file's own delimiter or a line break, quoted: the
        # same value, and the file no longer starts with "ID".
        own = own if own is not None else _detect_delimiter(text)
        end = len(text)
        for stop in (own, "\r", "\n"):
            at = text.find(stop)
            if 0 <= at < end:
                end = at
        text = '"' + text[:end].replace('"', '""') + '"' + text[end:]
    if (count or sylk) and own is not None:
        # (the file's own reading: still valid CSV, still no formula cell)
        if _formula_records(text, own).count:
            raise csv.Error("a neutralised cell of another delimiter starts a formula")
    return text, count, sylk


#: Where a field of Excel's reading on a delimiter may start a formula: at the start
#: of the text, after the delimiter or after a line break, quotes and then a formula
#: character (a first test before the fields are read).
#: What starts a formula in a field of Excel's own reading (a tab or a CR before it
#: makes the field text there: only the file's own cells are checked for those); in
#: LibreOffice's, "=" only.
_EXCEL_FORMULA = "=+-@"
_FORMULA_CHARS = {d: "=" if d == LIBREOFFICE_DELIMITERS else _EXCEL_FORMULA for d in _READINGS}
#: (LibreOffice's reading: a space before it too, as _danger_after looks for it.)
_DANGER_BEFORE = {d: d + ('\r\n" ' if d == LIBREOFFICE_DELIMITERS else '\r\n"') for d in _READINGS}
_EXCEL_DANGER = {
    # (the formula character first, the rarer: the search skips ahead faster; a
    # quote before it is looked for alone, and the start of the text by the caller)
    d: re.compile(
        f"[{re.escape(_FORMULA_CHARS[d])}](?<=[{re.escape(_DANGER_BEFORE[d])}].)", re.DOTALL
    )
    for d in _READINGS
}


def _field(d: str) -> str:
    """A field as Excel reads it on delimiter ``d``: quoted from its first character
    (``""`` a quote inside; what follows the closing quote belongs to it too), or up
    to the delimiter or a line break; then what ends it."""
    d = re.escape(d)  # (one character, or several: any of them ends a field)
    return f'(?:"(?:[^"]|"")*+"?[^{d}\r\n]*+|[^{d}\r\n]*+)(?:[{d}]|\r\n|\r|\n|\\Z)'


#: Fields that start no formula, one after the other (read in C, however many).
_EXCEL_SAFE_FIELDS = {
    d: re.compile(f'(?:(?!"*[{re.escape(_FORMULA_CHARS[d])}]){_field(d)})*+') for d in _READINGS
}
#: One field.
_EXCEL_FIELD = {d: re.compile(_field(d)) for d in _READINGS}


def _excel_fields(text: str, delimiter: str) -> list[int]:
    """Where to put the neutraliser for each field of Excel's reading of ``text`` on
    ``delimiter`` that starts a formula once the quotes opening it are skipped: just
    before that formula character. The fields that start none are skipped by one
    pattern: only the others cost a step here."""
    at: list[int] = []
    end = len(text)
    safe, one = _EXCEL_SAFE_FIELDS[delimiter].match, _EXCEL_FIELD[delimiter].match
    pos = 0
    while pos < end:
        m = safe(text, pos)
        assert m is not None
        pos = m.end()
        if pos >= end:
            break
        first = pos
        while text[first] == '"':
            first += 1
        at.append(first)
        m = one(text, pos)
        assert m is not None
        if m.end() == pos:
            break  # (an empty field at the end)
        pos = m.end()
    return at


#: LibreOffice's reading, searched in the text reversed: an "=" that only spaces and
#: quotes separate from the start of the text, a line break, a tab, a comma or a
#: semicolon (its default separators, all at once).
_LIBREOFFICE_FORMULA_REVERSED = re.compile(r'=[ "]*+(?:[\t,;\r\n]|\Z)')


def _libreoffice_formulas(text: str) -> list[int]:
    """Where a cell of LibreOffice's reading may start a formula: before every "="
    found at the start of a cell whatever the quotes before it say (in order).
    LibreOffice skips spaces before a quote (``x, "=21*2"`` is the quoted cell
    ``=21*2``), closes a quoted cell only at a quote followed by a separator, and
    reads a quote that never closes as a character: its quoting is not Excel's, and a
    model of it would miss cells either way. So every "=" that only spaces and quotes
    separate from a separator or a line break is neutralised, quoted text included
    (``"a, =b"`` becomes ``"a, '=b"``: the price of not modelling the quotes)."""
    last = len(text) - 1
    at = [last - m.start() for m in _LIBREOFFICE_FORMULA_REVERSED.finditer(text[::-1])]
    at.reverse()  # (offsets kept, not match objects: millions in a big file)
    return at


def _byte_halves_formulas(text: str) -> list[int]:
    """Where a field may start a formula whatever the quotes say (a reader that takes
    the byte after a first byte over 0x7f as its second half does not see the quotes
    of the byte view, see ``BYTE_HALVES_DELIMITERS``): before every "=", "+", "-" or
    "@" that only quotes separate from the start of the text, a line break or one of
    ``BYTE_HALVES_DELIMITERS`` (in order)."""
    return [m.start(1) for m in _BYTE_HALVES_FORMULA.finditer(text)]


_BYTE_HALVES_FORMULA = re.compile(r'(?:\A|(?<=[\t,;|\r\n]))"*+([=+\-@])')


def _is_formula(cell: str) -> bool:
    return cell.startswith(FORMULA_START)


def _reader(lines: Iterable[str], delimiter: str) -> Iterator[list[str]]:
    """The CSV format we read (and write, see :func:`_write_records`).

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

    (Excel splits a .csv on its locale's list separator rather than on what the file
    uses: those cells are checked by :func:`_excel_readings`.)
    """
    sep = _SEP_LINE.match(text)
    if sep:
        return sep.group(1)
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS:
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        if cut > 0:
            sample = sample[: cut + 1]  # whole lines only
    return _sniff_delimiter(sample) or ","


def _sniff_delimiter(sample: str) -> str:
    """The delimiter ``csv.Sniffer().sniff(sample, CANDIDATE_DELIMITERS)`` chooses, or
    "" when it finds none.

    The Sniffer first looks for quoted cells (its regular expressions all need a ``"``
    or a ``'``), then, when that found no delimiter, compares how often each
    character occurs on the lines of successive chunks of 10 lines, over the 127 ASCII
    characters. Only the candidate delimiters can be chosen, so for a sample without
    quote characters :func:`_guess_delimiter` does that second step for them alone,
    with the same arithmetic; any other sample goes through ``csv.Sniffer`` itself.
    """
    if '"' in sample or "'" in sample:
        # The quoted-cell step on the first QUOTE_SNIFF_CHARS only: its patterns read
        # on to the end of the sample from every quote (16 KiB of lines that open a
        # quote and never close it took 5 s). It decides from the first quoted cells
        # anyway; without one, the second step reads the whole sample, as sniff does.
        sniffer = csv.Sniffer()
        _, _, delimiter, _ = sniffer._guess_quote_and_delimiter(
            sample[:QUOTE_SNIFF_CHARS], CANDIDATE_DELIMITERS
        )
        return delimiter or _guess_delimiter(sample)
    return _guess_delimiter(sample)


#: How much of the sample csv.Sniffer's quoted-cell step reads (see _sniff_delimiter).
QUOTE_SNIFF_CHARS = 2048


def _guess_delimiter(sample: str) -> str:
    """``csv.Sniffer._guess_delimiter`` restricted to :data:`CANDIDATE_DELIMITERS`.

    For each chunk of 10 more lines: the mode of each candidate's count per line
    (over all the lines so far, the first count seen winning a tie), less the lines
    with another count, over the number of lines, must reach a consistency that
    starts at 1.0 and drops by 0.01 down to 0.9. The first chunk where a candidate
    qualifies decides: the one candidate, or the Sniffer's preferred one (``,`` then
    tab then ``;``; two candidates always include one of them) when several qualify.
    """
    lines = [line for line in sample.split("\n") if line]
    chunk = min(10, len(lines))
    frequencies: dict[str, dict[int, int]] = {c: {} for c in CANDIDATE_DELIMITERS}
    modes: dict[str, tuple[int, int]] = {}
    start, iteration = 0, 0
    while start < len(lines):
        iteration += 1
        for line in lines[start : start + chunk]:
            for char, meta in frequencies.items():
                count = line.count(char)
                meta[count] = meta.get(count, 0) + 1
        for char, meta in frequencies.items():
            items = list(meta.items())
            if len(items) == 1 and items[0][0] == 0:
                continue
            if len(items) > 1:
                mode = max(items, key=lambda item: item[1])
                items.remove(mode)
                modes[char] = (mode[0], mode[1] - sum(item[1] for item in items))
            else:
                modes[char] = items[0]
        total = float(min(chunk * iteration, len(lines)))
        consistency = 1.0
        found: list[str] = []
        while not found and consistency >= 0.9:
            found = [
                char
                for char, (freq, lines_at) in modes.items()
                if freq > 0 and lines_at > 0 and lines_at / total >= consistency
            ]
            consistency -= 0.01
        if len(found) == 1:
            return found[0]
        if found:
            return next(d for d in _PREFERRED_DELIMITERS if d in found)
        start += chunk
    return ""


def _formula_records(text: str, delimiter: str, rewrite: bool = False) -> _Found:
    """The formula cells of ``text`` and the records holding them.

    Fast path, exact: when the text holds no ``"`` (and the delimiter is an ordinary
    character), every physical line is one record and its cells are the line split on
    the delimiter — what ``csv.reader`` returns for it. A cell then starts at the
    start of the text, after a line break or after a delimiter, and never with a CR
    or LF (they end the line) nor with the delimiter (that cell is empty). So every
    formula cell but one at the start of the text (checked apart) is a formula
    character other than the delimiter that follows a line break or the delimiter,
    found over the whole text by :func:`_cell_formulas`, and the number of those is
    the number of formula cells. Their offsets are returned (``starts``); no record is
    split here (:func:`_hits_at` does it when a rewrite needs the records).
    A line longer than the csv field size limit sends the text to :func:`_records`,
    where ``csv.reader`` refuses a cell that long.

    Otherwise the records are read one by one; with ``rewrite`` the text with their
    formula cells neutralised is written on the way (``rewritten``).
    """
    limit = csv.field_size_limit()
    if delimiter in '"\r\n' or '"' in text or not _lines_within(text, limit):
        return _found_in_records(text, delimiter, rewrite)
    # (counted without a list of offsets: a column of negative numbers in 20 MB made
    # millions of them, and the rewrite millions of slices: 584 MB)
    count = _cell_formula_count(text, delimiter)
    if not count:
        return _Found(0)
    if _starts_a_formula(text, delimiter):
        at = 0
    else:
        first = _danger(delimiter).search(text)
        assert first is not None
        at = first.start()
    start = max(text.rfind("\n", 0, at), text.rfind("\r", 0, at)) + 1
    column = text.count(delimiter, start, at) + 1
    return _Found(count, (_record_number(text, start), column), quote_free=True)


def _starts_a_formula(text: str, delimiter: str) -> bool:
    """Whether quote-free ``text`` starts with a formula cell."""
    first = text[:1]
    return first in FORMULA_START and first not in ("", "\r", delimiter)


def _cell_starts_by_pair(delimiter: str) -> list[str]:
    """The pairs that start a formula cell in quote-free text but at its start: a
    line break or the delimiter, then a formula character other than the delimiter
    (:func:`_danger`'s matches, each found by its own pair)."""
    chars = [c for c in "=+-@\t" if c != delimiter]
    return [before + c for before in ("\n", "\r", delimiter) for c in chars]


def _cell_formula_count(text: str, delimiter: str) -> int:
    """How many formula cells quote-free ``text`` holds (:func:`_cell_formulas`'s,
    and one at its start): the occurrences of each pair, which cannot overlap (each
    ends at a formula character, and what precedes it is one of them)."""
    found = sum(text.count(pair) for pair in _cell_starts_by_pair(delimiter))
    return found + _starts_a_formula(text, delimiter)


def _cell_starts(text: str, delimiter: str) -> list[int]:
    """The offsets of the formula cells of quote-free ``text``, in order."""
    starts = _cell_formulas(text, delimiter)
    return [0, *starts] if _starts_a_formula(text, delimiter) else starts


_LINE_BREAK = re.compile(r"[\r\n]")


def _hits_at(text: str, starts: list[int], delimiter: str) -> list[_Hit]:
    """The records (lines) of quote-free ``text`` holding the formula cells that
    start at ``starts``, each split on the delimiter."""
    hits: list[_Hit] = []
    crlf = "\r" in text  # else every line break is a LF
    rfind, find = text.rfind, text.find
    done = -1  # the end of the last line split
    for at in starts:
        if at <= done:
            continue  # in a line already split
        # Each search stays within the line (back to the end of the last one split, on
        # to the first line break): the text is read once, whatever its line breaks.
        low = max(done, 0)
        if crlf:
            start = max(rfind("\n", low, at), rfind("\r", low, at)) + 1
            found = _LINE_BREAK.search(text, at)
            end = found.start() if found else len(text)
            terminator = "\r\n" if text.startswith("\r\n", end) else text[end : end + 1]
        else:
            start = rfind("\n", low, at) + 1
            end = find("\n", at)
            end, terminator = (len(text), "") if end < 0 else (end, "\n")
        hits.append(
            _Hit(start, end + len(terminator), terminator, text[start:end].split(delimiter))
        )
        done = end
    return hits


def _neutralised(text: str, delimiter: str, count: int) -> str | None:
    """Quote-free ``text`` with the neutraliser put before each of its ``count``
    formula cells, or ``None`` when that is not what ``csv.writer`` would write for
    the records (see below).

    In quote-free text every line is one record and its cells are the line split on
    the delimiter. Such a cell holds no quote character, no delimiter and no line
    break, and neither does it once prefixed: ``csv.writer`` (minimal quoting) then
    writes each record as its cells joined by the delimiter, so the rewritten record
    is the line with the neutraliser put before its formula cells, and the records
    without formulas are the same lines as before. That does not hold when the
    delimiter is the neutraliser itself, nor when a prefixed cell may exceed the csv
    field size limit (``csv.reader`` refuses it when the records are read back): those
    texts take the record by record rewrite. (One ``str.replace`` for each pair of
    :func:`_cell_starts_by_pair`: no offsets, no slices; a substitution built a list
    of two pieces per cell, 220 MB for 5 MB of negative numbers.)

    Defence in depth: the result is checked to hold no formula cell at all (the same
    exact scan as :func:`_formula_records`, over the output) and to be the text with
    exactly one character added per formula cell.
    """
    if delimiter == NEUTRALISER or not _lines_within(text, csv.field_size_limit() - 1):
        return None
    out = text
    for pair in _cell_starts_by_pair(delimiter):
        out = out.replace(pair, pair[0] + NEUTRALISER + pair[1])
    if _starts_a_formula(text, delimiter):
        out = NEUTRALISER + out
    if (
        len(out) != len(text) + count  # (one character added per formula cell)
        or '"' in out
        or _starts_a_formula(out, delimiter)
        or _danger(delimiter).search(out) is not None
    ):
        raise csv.Error("the neutralised text is not the text with each formula cell prefixed")
    return out


def _cell_formulas(text: str, delimiter: str) -> list[int]:
    """The offsets, in order, of the formula characters other than the delimiter that
    follow a line break or the delimiter in ``text``: those of :func:`_danger`.

    Formula characters are rare in most CSV files: while there are few (one in 64
    characters at most), each is found with ``str.find`` and the character before it
    checked; when there are many (a column of dates or negative numbers, seen in the
    beginning of the text or on the way), one regular expression finds them all.
    Either way finds the same."""
    chars = [c for c in "=+-@\t" if c != delimiter and c in text]
    if not chars:
        return []
    probe = min(len(text), 8192)
    budget = len(text) // 64
    if sum(text.count(c, 0, probe) for c in chars) * 64 <= probe:
        before = ("\r", "\n", delimiter)
        found: list[int] = []
        seen = 0
        for char in chars:
            at = text.find(char, 1)
            while at >= 0 and seen <= budget:
                seen += 1
                if text[at - 1] in before:
                    found.append(at)
                at = text.find(char, at + 1)
        if seen <= budget:
            found.sort()
            return found
    return [m.start() for m in _danger(delimiter).finditer(text)]


def _lines_within(text: str, limit: int) -> bool:
    """Whether every line of ``text``, its line break included, is at most ``limit``
    characters long.

    Cheap proof first: when every aligned window of ``h`` characters holds a line
    break, no run without one is ``2h - 1`` long (such a run would hold a whole
    window), so with ``h = (limit - 2) // 2`` no line is longer than ``limit``.
    Otherwise the lines are measured.
    """
    window = (limit - 2) // 2
    if window > 0 and all(
        text.find("\n", i, i + window) >= 0 or text.find("\r", i, i + window) >= 0
        for i in range(0, len(text) - window + 1, window)
    ):
        return True
    return max(map(len, _LINE.findall(text)), default=0) <= limit


def _record_number(text: str, offset: int) -> int:
    """The number (from 1) of the line starting at ``offset``: in text without a quote
    character every line is one record."""
    breaks = text.count("\n", 0, offset) + text.count("\r", 0, offset)
    return breaks - text.count("\r\n", 0, offset) + 1


def _found_in_records(text: str, delimiter: str, rewrite: bool) -> _Found:
    """The formula cells of ``text``, its records read one by one; with ``rewrite``,
    the text with them neutralised too. (No record's cells are kept beyond a batch
    of the rewrite.)"""
    found = _Found(0)
    rewriter = _Rewriter(text, delimiter) if rewrite else None
    done = 0
    for row, (raw, cells) in enumerate(_records(text, delimiter), start=1):
        if cells is not None:
            columns = [col for col, cell in enumerate(cells, start=1) if _is_formula(cell)]
            if columns:
                if not found.count:
                    found.first = (row, columns[0])
                if rewriter is not None:
                    rewriter.add(_Hit(done, done + len(raw), _terminator(raw), cells))
                found.count += len(columns)
        done += len(raw)
    if rewriter is not None and found.count:
        found.rewritten = rewriter.finish()
    return found


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
    consumed: list[str] = []
    pending: list[str] = []
    lines = iter(_LINE.findall(text))

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


def _danger(delimiter: str, whole: bool = True) -> re.Pattern[str]:
    """A formula character starting a cell of quote-free text, the match being that
    character. ``whole`` (text of many lines): one other than the delimiter, after the
    delimiter or a line break — the start of the text is the caller's to check. Else,
    in one line, one at its start or after the delimiter. A quote-free line holds no
    CR or LF but its own line break, so no cell of it starts with one (a CR there
    ends the record)."""
    if whole:
        formula = "".join(c for c in "=+-@\t" if c != delimiter)
        # The formula character first: it is rarer than delimiters, so the search
        # skips ahead faster than from a delimiter.
        return re.compile(f"[{re.escape(formula)}](?<=[\\r\\n{re.escape(delimiter)}].)", re.DOTALL)
    return re.compile(f"(?:\\A|{re.escape(delimiter)})[=+\\-@\t]")


def _terminator(raw: str) -> str:
    """The line break ending a record's source text ("" for a last line without one)."""
    found = _TERMINATOR.search(raw)
    return found.group(0) if found else ""


class _Lines:
    """A file-like sink for ``csv.writer``: each record it writes is one item."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.write = self.items.append


def _write_records(records: list[list[str]], terminators: list[str], delimiter: str) -> list[str]:
    """Each record written by ``csv.writer`` (quoting only where needed), ending with
    that record's original line break, and checked by reading them all back."""
    sink = _Lines()
    # lineterminator "\r\n" on purpose: csv.writer quotes a cell containing CR or LF
    # only when that character is in its line terminator. It is replaced below.
    writer = csv.writer(
        sink,
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        quoting=csv.QUOTE_MINIMAL,
        lineterminator="\r\n",
    )
    writer.writerows(records)
    items = sink.items
    if len(items) != len(records) or not all(map(str.endswith, items, repeat("\r\n"))):
        raise csv.Error("the CSV writer did not write one line per record")
    written = [r[:-2] + t for r, t in zip(items, terminators, strict=True)]
    # Defence in depth: each record must read back as exactly its cells, from exactly
    # its own lines, so a quirk of the writer can never turn a neutralised cell back
    # into a live one (nor merge it with the next record).
    joined = "".join(items)
    if joined.count("\r") == len(items) == joined.count("\n"):
        # No line break but the one ending each record (the usual case): one line
        # each, read by one reader; as many records read from as many lines means
        # that each record came from its own line.
        reader = _reader(written, delimiter)
        if list(reader) != records or reader.line_num != len(written):
            raise csv.Error("a rewritten record does not read back the same")
        return written
    lines: list[str] = []
    ends: list[int] = []
    for record in written:
        lines.extend(_LINE.findall(record))
        ends.append(len(lines))
    reader = _reader(lines, delimiter)
    for cells, end in zip(records, ends, strict=True):
        if next(reader, None) != cells or reader.line_num != end:
            raise csv.Error("a rewritten record does not read back the same")
    if next(reader, None) is not None:
        raise csv.Error("a rewritten record does not read back the same")
    return written
