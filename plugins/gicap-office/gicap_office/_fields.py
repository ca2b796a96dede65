"""Word field instructions (OOXML ``w:instrText``/``w:fldSimple`` and RTF ``\\fldinst``):
which ones reach outside the document, run code or jump inside it."""

from __future__ import annotations

import re

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


def classify_field(instr: str, computed: bool) -> tuple[str, str] | None:
    """(switch, kind) of a field instruction, or ``None`` for a harmless field.

    ``computed``: the keyword itself is the result of a nested field (``{ {QUOTE 68 68
    69} ... }`` spells DDE): it cannot be known without evaluating the document, so it
    is treated as DDE.
    """
    if computed:
        return ("dynamic_data_exchange", "field with a computed instruction")
    words = _WORDS.findall(instr)
    if not words:
        return None
    keyword = words[0].upper()
    if keyword == "HYPERLINK":
        args = words[1:]
        if args and not args[0].startswith("\\"):
            return ("external_hyperlinks", "HYPERLINK field")
        if any(a.lower() == "\\l" for a in args):
            return ("internal_hyperlinks", "HYPERLINK field to a bookmark")
        return None
    return FIELDS.get(keyword)
