"""Word field instructions (OOXML ``w:instrText``/``w:fldSimple`` and RTF ``\\fldinst``):
which ones reach outside the document, run code or jump inside it."""

from __future__ import annotations

import re
import unicodedata

#: Field keyword -> (switch, kind). Fields not listed are harmless (PAGE, MERGEFIELD...).
FIELDS = {
    "DDE": ("dynamic_data_exchange", "DDE field"),
    "DDEAUTO": ("dynamic_data_exchange", "DDEAUTO field"),
    "DATABASE": ("dynamic_data_exchange", "DATABASE field"),
    "INCLUDETEXT": ("external_hyperlinks", "INCLUDETEXT field"),
    "INCLUDEPICTURE": ("external_hyperlinks", "INCLUDEPICTURE field"),
    "INCLUDE": ("external_hyperlinks", "INCLUDE field"),
    "IMPORT": ("external_hyperlinks", "IMPORT field"),
    "LINK": ("external_hyperlinks", "LINK field (OLE link)"),
    "RD": ("external_hyperlinks", "RD field"),
    "MACROBUTTON": ("macros", "MACROBUTTON field"),
    "GOTOBUTTON": ("internal_hyperlinks", "GOTOBUTTON field"),
}
_WORDS = re.compile(r'"[^"]*"|\S+')
#: The keyword: the letters after white space, control characters (a Word stream read
#: byte by byte shows the NULs of its UTF-16 text) and an opening quote; a quote or a
#: backslash right after it ends it (``DDEAUTO"c:\\x.exe"`` is DDEAUTO to Word).
_KEYWORD = re.compile(r'[\s"\x00-\x1f\x7f]*+([A-Za-z]++)')


#: Where a field's keyword stands in the instruction text read so far: not begun
#: (white space, controls, a quote), in its letters, or ended.
BEFORE_KEYWORD, IN_KEYWORD, AFTER_KEYWORD = 0, 1, 2
_BEFORE = re.compile(r'[\s"\x00-\x1f\x7f]*+')
#: Letters, and the characters LibreOffice drops from a keyword ("DD\0EAUTO"; see
#: ``_CONTROLS``).
_LETTERS = re.compile(r"[A-Za-z\x00-\x08\x0a-\x1f\ud800-\udfff\ufffe\uffff]*+")
_ASCII_LETTER = re.compile(r"[A-Za-z]")


def keyword_state(state: int, text: str) -> int:
    """The state after ``text`` more of an instruction (read as :func:`classify_field`
    reads its keyword). A nested field that begins before the keyword has ended makes
    the keyword, or the rest of it: Word puts the nested field's result in its place,
    so ``{ DD{ QUOTE "EAUTO" } c:\\x.exe }`` is a DDEAUTO field (see ``computed``)."""
    if state == AFTER_KEYWORD or not text:
        return state
    if not text.isascii():  # (invisible format characters are not read)
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    pos = 0
    if state == BEFORE_KEYWORD:
        pos = _BEFORE.match(text).end()  # type: ignore[union-attr]
        if pos == len(text):
            return BEFORE_KEYWORD
        if not _ASCII_LETTER.match(text, pos):
            return AFTER_KEYWORD  # (no keyword at all: nothing a nested field can join)
    pos = _LETTERS.match(text, pos).end()  # type: ignore[union-attr]
    return IN_KEYWORD if pos == len(text) else AFTER_KEYWORD


def classify_field(instr: str, computed: bool) -> tuple[str, str] | None:
    """(switch, kind) of a field instruction, or ``None`` for a harmless field.

    ``computed``: the keyword, or its end, is the result of a nested field (``{ {QUOTE
    68 68 69} ... }`` spells DDE; see :func:`keyword_state`): it cannot be known
    without evaluating the document, so it is treated as DDE.
    """
    if computed:
        return ("dynamic_data_exchange", "field with a computed instruction")
    # invisible format characters (a zero-width space before the keyword) are not read
    instr = "".join(c for c in instr if unicodedata.category(c) != "Cf")
    # LibreOffice drops control characters but tab inside the instruction ("DD\0EAUTO"
    # is DDEAUTO to it), and characters no document may hold once it saves it again;
    # read both ways, the risky reading wins
    dropped = _CONTROLS.sub("", instr)
    if dropped != instr:
        verdict = _classify(dropped)
        if verdict is not None:
            return verdict
    return _classify(instr)


#: Control characters LibreOffice drops from a field instruction (not tab), and the
#: characters no document may hold (lone surrogates, U+FFFE, U+FFFF): it reads them in
#: the instruction, but drops them when it saves the document again.
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\ud800-\udfff\ufffe\uffff]")


def _classify(instr: str) -> tuple[str, str] | None:
    found = _KEYWORD.match(instr)
    if found is None:
        return None
    keyword = found.group(1).upper()
    if keyword == "HYPERLINK":
        return _hyperlink(_WORDS.findall(instr, found.end()))
    return FIELDS.get(keyword)


#: HYPERLINK switches that take the next word as theirs: \l (a bookmark), \o (a
#: tooltip), \t (a target frame). In small letters only: LibreOffice reads "\O" as no
#: switch, and the word after it as the link's target ("\O "http://..." is an external
#: link to it); whatever Word does with capitals, the target is read as one.
_SWITCHES_WITH_ARGUMENT = ("\\l", "\\o", "\\t")


def _hyperlink(args: list[str]) -> tuple[str, str] | None:
    """Any word that is neither a switch nor a switch's argument is the link's target
    (Word takes it wherever it stands: ``HYPERLINK \\o "tip" "http://..."``)."""
    internal = False
    i = 0
    while i < len(args):
        word = args[i]
        if word in _SWITCHES_WITH_ARGUMENT and i + 1 < len(args):
            internal = internal or word == "\\l"
            i += 2
        elif word.startswith("\\"):
            i += 1
        else:
            return ("external_hyperlinks", "HYPERLINK field")
    if internal:
        return ("internal_hyperlinks", "HYPERLINK field to a bookmark")
    return None
