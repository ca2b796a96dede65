"""The OOXML engine: Word, Excel and PowerPoint documents (and their macro-enabled,
template and show variants) rebuilt from their allowed parts.

The package is read into parts (every XML part read by the hardened parser, its tree
built when a step needs it), each kind of active content is looked for and, when its
switch says ``sanitise``, removed by dropping relationships/parts or editing the XML;
:class:`~gicap_office.package.Package` then repairs every reference and writes a new
zip with only the parts still reached.
See the README for exactly what each switch covers.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from typing import Any

from lxml import etree

from gicap.cdr.detect import FILE_TYPES, OOXML_MAIN_CONTENT_TYPES
from gicap.cdr.types import DisarmRequest, DisarmResult, FileType
from gicap_office import _images, _xml, _zip
from gicap_office._fields import AFTER_KEYWORD, BEFORE_KEYWORD, classify_field, keyword_state
from gicap_office._report import Report
from gicap_office._xml import VML, A, R, S, W, X, is_, rattr, split, wattr
from gicap_office.legacy import OLE_MAGIC, vba_label
from gicap_office.package import Package, PackageRefused, Rel, childless, looks_external, prune_up

# ----------------------------------------------------------------- vocabularies

#: Content types of macro parts -> what to call them.
MACRO_CONTENT_TYPES = {
    "application/vnd.ms-office.vbaproject": "VBA project",
    "application/vnd.ms-word.vbadata+xml": "VBA project data",
    "application/vnd.ms-office.vbaprojectsignature": "VBA project signature",
    "application/vnd.ms-office.vbaprojectsignatureagile": "VBA project signature",
    "application/vnd.ms-office.vbaprojectsignaturev3": "VBA project signature",
    "application/vnd.ms-excel.macrosheet+xml": "Excel 4 macro sheet",
    "application/vnd.ms-excel.intlmacrosheet+xml": "Excel 4 macro sheet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.dialogsheet+xml": (
        "Excel 5 dialog sheet"
    ),
    "application/vnd.ms-office.activex+xml": "ActiveX control",
    "application/vnd.ms-office.activex": "ActiveX control data",
    "application/vnd.ms-word.keymapcustomizations+xml": "Word key customisations",
    "application/vnd.ms-word.attachedtoolbars": "Word toolbars",
}
#: Relationship types of macro parts -> what to call them.
MACRO_RELS = {
    "vbaProject": "VBA project",
    "wordVbaData": "VBA project data",
    "vbaProjectSignature": "VBA project signature",
    "vbaProjectSignatureAgile": "VBA project signature",
    "vbaProjectSignatureV3": "VBA project signature",
    "xlMacrosheet": "Excel 4 macro sheet",
    "xlIntlMacrosheet": "Excel 4 macro sheet",
    "dialogsheet": "Excel 5 dialog sheet",
    "control": "ActiveX control",
    "activeXControlBinary": "ActiveX control data",
    "keyMapCustomizations": "Word key customisations",
    "attachedToolbars": "Word toolbars",
}
_MACRO_RELS_LOWER = {k.lower(): v for k, v in MACRO_RELS.items()}
#: Macro parts that are sheets of the workbook (their <sheet> entries must go too).
MACRO_SHEETS = {"Excel 4 macro sheet", "Excel 5 dialog sheet"}
#: Workbook names Excel runs on open/close (Excel 4 macros).
AUTO_NAMES = re.compile(r"^(?:_xlnm\.)?auto_(?:open|close|activate|deactivate)", re.I)

#: Where a part can carry a macro assignment, its bytes hold ``fmlaMacro`` (form
#: control), ``FmlaMacro`` (VML client data) or a ``macro`` attribute (``macro``, then
#: ``=`` after optional white space): names cannot be written with character references.
#: One pattern (with its literal first byte) for the three.
_MACRO_NAMES = re.compile(rb"m(?:laMacro|acro[ \t\r\n]*=)")
#: An XLSB external link record (BrtBeginSupBook, type 360) of a DDE link: the
#: record type, its size (1 to 4 bytes) and the link type 1, as msodde reads it.
_XLSB_DDE = re.compile(rb"\xe8\x02(?:[\x80-\xff]{0,3}[\x00-\x7f]|[\x80-\xff]{4})\x01\x00")
#: A first test shared by the DrawingML click actions (``hlink...``) and VML links
#: (``href``): one scan of a part for both.
_LINK_NAMES = re.compile(rb"h(?:link|ref)")

#: Main-part content type of a macro-enabled file -> its macro-free equivalent.
MACRO_FREE = {
    "application/vnd.ms-word.document.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    ),
    "application/vnd.ms-word.template.macroenabledtemplate.main+xml": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml"
    ),
    "application/vnd.ms-excel.sheet.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
    ),
    "application/vnd.ms-excel.template.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml"
    ),
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml"
    ),
    "application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml"
    ),
    "application/vnd.ms-powerpoint.template.macroenabled.main+xml": (
        "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml"
    ),
}

#: Internal relationship types of embedded content -> what to call it.
EMBED_RELS = {
    "oleObject": "OLE object",
    "package": "embedded package",
    "aFChunk": "imported document (altChunk)",
    "font": "embedded font",
    "video": "video",
    "audio": "audio",
    "media": "media",
}
EMBED_CONTENT_TYPES = {
    "application/vnd.openxmlformats-officedocument.oleobject": "OLE object",
    "application/vnd.openxmlformats-officedocument.obfuscatedfont": "embedded font",
    "application/x-fontdata": "embedded font",
    "application/x-font-ttf": "embedded font",
}

#: External relationship types -> what to call them (others: "external <type> link").
EXTERNAL_KINDS = {
    "hyperlink": "hyperlink",
    "attachedTemplate": "remote template",
    "frame": "external frame",
    "oleObject": "linked OLE object",
    "subDocument": "linked sub-document",
    "image": "linked image",
    "externalLinkPath": "external workbook",
    "video": "linked video",
    "audio": "linked audio",
    "media": "linked media",
}
#: Word mail-merge data sources (handled with <w:mailMerge>, a data connection).
MAIL_MERGE_RELS = {"mailMergeSource", "mailMergeHeaderSource", "recipientData"}

#: Review relationships: comments (counted) and the author lists that go with them.
REVIEW_RELS = {
    "comments": "comments",
    "threadedComment": "threaded comments",
    "revisionHeaders": "shared-workbook revision log",
}
REVIEW_SIDE_RELS = {
    "commentsExtended",
    "commentsIds",
    "commentsExtensible",
    "people",
    "person",
    "commentAuthors",
    "authors",
    "usernames",
}

#: Spreadsheet functions that reach outside the workbook -> (switch, kind).
RISKY_FUNCTIONS = {
    "HYPERLINK": ("external_hyperlinks", "HYPERLINK formula"),
    "WEBSERVICE": ("external_hyperlinks", "WEBSERVICE formula"),
    "IMAGE": ("external_hyperlinks", "IMAGE formula"),
    "RTD": ("dynamic_data_exchange", "RTD formula"),
    "CALL": ("macros", "CALL formula"),
    "REGISTER.ID": ("macros", "REGISTER.ID formula"),
    # Excel 4 macro functions, which Excel evaluates in a defined name: a program run,
    # a DLL function registered, a macro run, a formula built from text evaluated
    "EXEC": ("macros", "EXEC formula"),
    "REGISTER": ("macros", "REGISTER formula"),
    "RUN": ("macros", "RUN formula"),
    "EVALUATE": ("macros", "EVALUATE formula"),
    "DDE": ("dynamic_data_exchange", "DDE formula"),
    # the Excel 4 macro functions of a DDE conversation
    "INITIATE": ("dynamic_data_exchange", "DDE formula (INITIATE)"),
    "EXECUTE": ("dynamic_data_exchange", "DDE formula (EXECUTE)"),
    "POKE": ("dynamic_data_exchange", "DDE formula (POKE)"),
    "REQUEST": ("dynamic_data_exchange", "DDE formula (REQUEST)"),
    # a reference read from text: LibreOffice loads the document a text names
    # ('http://host/book.xlsx'#$Sheet1.A1) as it opens the file, cached value or not
    "INDIRECT": ("external_hyperlinks", "INDIRECT formula"),
}
#: A call of a risky function: its name matched in any letter case, which Unicode
#: folds too (the Kelvin sign is a "K", a long s an "s", a dotless i an "i"), told by
#: a look-up of its ASCII form (see _ASCII_LETTERS). The names only, in one
#: alternation: a scan of every call, looked up in Python, took 70% longer on a
#: formula-heavy workbook. A name ends where a letter of any script does not precede
#: it (ÄRUN is a name of its own).
_FUNCTION = re.compile(
    r"(?:(?<=_xlfn\.)|(?<=_xlws\.)|(?<![\w.]))("
    + "|".join(re.escape(name) for name in sorted(RISKY_FUNCTIONS, key=len, reverse=True))
    + r")\s*\(",
    re.I,
)
_ASCII_LETTERS = str.maketrans({"\u212a": "K", "\u017f": "S", "\u0131": "I", "\u0130": "I"})


#: INDIRECT called on a string literal (a piece of its own, see _FORMULA_TOKEN): the
#: end of the code piece before it.
_INDIRECT_ON_LITERAL = re.compile(r"(?<![A-Za-z0-9_.])INDIRECT\s*\(\s*\Z", re.I)
#: A reference within the workbook, as a literal INDIRECT reads: a cell, range or name,
#: A1 or R1C1, maybe after a sheet name; no "/", "\\", "#" or "[" (a document's
#: name or URL, an external workbook) can stand in it.
_LOCAL_REFERENCE = re.compile(
    r"(?:'(?:[^'\[\]:\\/?*#]|'')+'[!.]|[A-Za-z0-9_.]+!)?(?:[A-Za-z0-9_.$:]|\[-?\d+\])+", re.A
)
_CELL_LINK = re.compile(r'HYPERLINK\s*\(\s*"#', re.I)
#: A formula read left to right as Excel reads it: a string literal ("", with ""),
#: a quoted sheet name ('', with ''), a bracketed reference (a table's columns,
#: Table1[[#This Row],[a"b]]: "'" escapes the next character there, quotes are
#: characters; nested once), other text, or a quote or bracket that closes nothing.
_BRACKETS = r"\[(?:[^\[\]']|'.|\[(?:[^\[\]']|'.)*\])*\]"
_FORMULA_TOKEN = re.compile(
    r""""(?:[^"]|"")*"|'(?:[^']|'')*'|""" + _BRACKETS + r"""|[^"'\[\]]+|["'\[\]]""", re.S
)
_BOOK_INDEX = re.compile(r"\[(\d+)\]")
#: A quoted sheet name that names a document, not a sheet: a character no sheet name
#: may hold ("[", "]", "/", "\\") after the index of an external link ('[1]Sheet1').
#: LibreOffice loads the document of 'http://host/[book.xlsx]Sheet1'!A1 (or
#: '[http://host/book.xlsx]Sheet1', 'C:\\dir\\[book.xlsx]Sheet1') as it opens the file,
#: in a cell, a defined name (used or not), a rule or a sparkline.
_EXTERNAL_INDEX = re.compile(r"\[\d+\]")
_DOCUMENT_CHARACTERS = re.compile(r"[\[\]/\\]")
#: What follows a bracketed document name ([http://host/book.xlsx]Sheet1!A1,
#: [book.xlsx]'Sheet 1'!A1, [book.xlsx]!Name): a sheet name, quoted or not (never
#: starting with ":", the range operator after a table's columns), then "!". A table's
#: columns (Table1[Col], [@Col]) are never followed by one. LibreOffice loads the
#: document a sparkline's range names so.
_AFTER_DOCUMENT = re.compile(
    r"(?:'(?:[^']|'')*'|[^\s\"'\[\](),;:+\-*/&^=<>%{}!][^\s\"'\[\](),;+\-*/&^=<>%{}!]*)?!"
)

#: App properties kept (document statistics); the others name people and places.
APP_KEEP = {
    "Application",
    "AppVersion",
    "DocSecurity",
    "ScaleCrop",
    "LinksUpToDate",
    "SharedDoc",
    "HyperlinksChanged",
    "Pages",
    "Words",
    "Characters",
    "CharactersWithSpaces",
    "Lines",
    "Paragraphs",
    "Slides",
    "Notes",
    "HiddenSlides",
    "MMClips",
    "PresentationFormat",
    "HeadingPairs",
    "TitlesOfParts",
}

WORD_STORIES = ("document", "hdr", "ftr", "footnotes", "endnotes", "comments", "glossaryDocument")
XDR = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
#: Root elements of the parts the steps below walk whatever they hold (Word stories and
#: settings, workbooks and their sheets and external links, comments, properties).
WALKED = frozenset(
    {*WORD_STORIES, "settings", "workbook", "worksheet", "externalLink", "cmLst"}
    | {"coreProperties", "Properties"}
)


# ---------------------------------------------------------------------- engine


def disarm(request: DisarmRequest) -> DisarmResult:
    report = Report(request.switches)
    # (what reading OLE parts for VBA may expand to, all of them together)
    budget = [int(request.limits.get("max_expanded_bytes") or _zip.MAX_EXPANDED)]
    try:
        content = _zip.read(request.source, request.limits)
    except _zip.ZipRefused as exc:
        what = "zip bomb" if exc.bomb else "unsafe or malformed zip"
        return DisarmResult("unprocessable", reason=f"{what}: {exc}")
    try:
        pkg = Package(content, WALKED)
        if pkg.main_part() is None:
            raise PackageRefused("no main document part")
        output_type = _disarm_package(pkg, report, content, budget)
    except (PackageRefused, _xml.XMLRefused) as exc:
        return DisarmResult("unprocessable", reason=str(exc))
    except _images.ImageBomb as exc:
        return DisarmResult("unprocessable", reason=f"image bomb: {exc}")
    blocked = report.blocked()
    if blocked is not None:
        return blocked
    if not report.changes:
        return report.unmodified()
    _zip.write(request.destination, pkg.members(), content)
    if output_type is not None and output_type.name == request.file_type.name:
        output_type = None
    return report.rebuilt(output_type)


def _disarm_package(
    pkg: Package, report: Report, content: _zip.ZipContent, budget: list[int] | None = None
) -> FileType | None:
    if budget is None:
        budget = [_zip.MAX_EXPANDED]
    if content.directories:
        report.structure("directory entry", content.directories)
    elif not content.tight:
        report.structure("data outside the zip entries")
    for name in pkg.initial_orphans:
        if report.policy("macros") == "disallow" and _macro_label(pkg, name, [], budget):
            report.hit("macros", "unreferenced VBA project")
        report.structure("unreferenced part")
    pkg.removed.update(pkg.initial_orphans)  # never looked at again
    if pkg.strays:
        report.structure("element that is no relationship or content type", pkg.strays)

    output_type = _macros(pkg, report, budget)
    _embedded(pkg, report, budget)
    _external_rels(pkg, report)
    _add_ins(pkg, report)
    ext_map = _external_workbooks(pkg, report)
    _stray_dde_links(pkg, report)
    _connections(pkg, report)
    _word_stories(pkg, report)
    _form_field_macros(pkg, report)
    _word_settings(pkg, report)
    _review_rels(pkg, report)
    _drawing_links(pkg, report)
    _sheet_links(pkg, report)
    _formulas(pkg, report, ext_map)
    _other_formulas(pkg, report, ext_map)
    _vml_links(pkg, report)
    _web_content(pkg, report)
    pkg.commit()
    # after the removals, so that pictures of removed objects are not counted
    _metadata(pkg, report)
    _images_(pkg, report)
    pkg.commit()
    return output_type


def _incoming(pkg: Package) -> dict[str, list[Rel]]:
    out: dict[str, list[Rel]] = {}
    for rel in pkg.all_rels():
        if rel.part:
            out.setdefault(rel.part, []).append(rel)
    return out


# ---------------------------------------------------------------------- macros


def _macro_label(pkg: Package, name: str, incoming: list[Rel], budget: list[int]) -> str | None:
    label = MACRO_CONTENT_TYPES.get(pkg.content_type(name).strip().lower())
    if label is None:
        types = (r.type.lower() for r in incoming)
        label = next((_MACRO_RELS_LOWER[t] for t in types if t in _MACRO_RELS_LOWER), None)
    if label is None and pkg.root_local(name) == "ocx":
        # an ActiveX control's persisted properties (ax:ocx), however it is reached:
        # w:control, p:control and a sheet's control follow their r:id whatever its
        # relationship type (LibreOffice imported one under "customXml")
        label = "ActiveX control"
    if label is None and name.lower().endswith("vbaproject.bin"):
        label = "VBA project"
    if label is None and pkg.data[name].startswith(OLE_MAGIC):
        # A VBA project under another name, type or relationship (a custom XML or
        # printer settings part, an embedded document with macros): Office does not run
        # it from there, but it is macro code all the same, and olevba finds it.
        label = vba_label(pkg.data[name], budget)
        embedded = any(r.type in EMBED_RELS for r in incoming) or "/embeddings/" in name.lower()
        if label is not None and embedded:
            label = f"{label} in an embedded object"
    return label


def _macros(pkg: Package, report: Report, budget: list[int]) -> FileType | None:
    incoming = _incoming(pkg)
    removed = False
    sheet_parts: set[str] = set()
    reach = pkg.reachable()
    for name in [n for n in pkg.parts if n in reach]:
        label = _macro_label(pkg, name, incoming.get(name, []), budget)
        if label is None:
            continue
        if report.hit("macros", label):
            pkg.remove_part(name)
            removed = True
            if label in MACRO_SHEETS:
                sheet_parts.add(name)
    if sheet_parts:
        _remove_workbook_sheets(pkg, sheet_parts)

    # ribbon customisations calling macros (onLoad, onAction, getEnabled...)
    for rel in list(pkg.rels_of("").values()):
        if rel.type == "ui/extensibility" and rel.part and rel.part not in pkg.removed:
            root = pkg.root(rel.part)
            if root is not None and _has_callbacks(root):
                if report.hit("macros", "ribbon callbacks (customUI)"):
                    pkg.remove_part(rel.part)

    # macro assignments: form controls, drawing shapes, VML client data
    for name in pkg.kept():
        if not pkg.is_xml(name) or not pkg.mentions(name, _MACRO_NAMES):
            continue
        root = pkg.root(name)
        assert root is not None
        found: list[tuple[etree._Element, str | None]] = []
        if split(root.tag)[1] == "formControlPr" and root.get("fmlaMacro"):
            found.append((root, "fmlaMacro"))
        # shapes of spreadsheet and chart drawings, transitional or strict
        for el in root.iter():
            if isinstance(el.tag, str) and el.get("macro"):
                found.append((el, "macro"))
        for el in root.iter(f"{{{X}}}FmlaMacro"):
            found.append((el, None))
        if found and report.hit("macros", "macro assignment", n=len(found)):
            for el, attr in found:
                if attr is None:
                    _xml.remove(el)
                else:
                    del el.attrib[attr]
            pkg.touch(name)

    if not removed:
        return None
    main = pkg.main_part()
    if main is None:
        return None
    ct = pkg.content_type(main).lower()
    free = MACRO_FREE.get(ct)
    if free is None:
        return None
    pkg.set_content_type(main, free)
    return FILE_TYPES[OOXML_MAIN_CONTENT_TYPES[free.lower()]]


def _has_callbacks(root: etree._Element) -> bool:
    for el in root.iter():
        for attr in el.attrib:
            local = split(attr)[1]
            if local.startswith(("on", "get")) or local == "loadImage":
                return True
    return False


def _remove_workbook_sheets(pkg: Package, parts: set[str]) -> None:
    """Remove the <sheet> entries of removed macro/dialog sheets and keep every sheet
    index of the workbook right (defined names, active and first tab)."""
    main = pkg.main_part()
    root = pkg.root(main) if main else None
    if main is None or root is None or not is_(root, S, "workbook"):
        return
    rels = pkg.rels_of(main)
    sheets_el = next((c for c in root if is_(c, S, "sheets")), None)
    if sheets_el is None:
        return
    sheets = [c for c in sheets_el if is_(c, S, "sheet")]
    gone: list[int] = []
    names: list[str] = []
    for index, sheet in enumerate(sheets):
        rel = rels.get(rattr(sheet, "id") or "")
        if rel is not None and rel.part in parts:
            gone.append(index)
            names.append(sheet.get("name", ""))
            _xml.remove(sheet)
    if not gone:
        return
    left = [s for i, s in enumerate(sheets) if i not in gone]
    if not left:
        raise PackageRefused("no sheet would be left once the macro sheets are removed")
    if all(s.get("state") in ("hidden", "veryHidden") for s in left):
        del left[0].attrib["state"]  # a workbook needs one visible sheet

    ordered = sorted(gone)

    def new_index(old: int) -> int | None:
        return None if old in gone else old - bisect.bisect_left(ordered, old)

    # (Excel compares sheet names in any letter case)
    refs = [f"{n}!" for n in names] + [f"'{n.replace(chr(39), chr(39) * 2)}'!" for n in names]
    to_removed = re.compile("|".join(map(re.escape, refs)), re.I) if refs else None
    for dn in list(root.iter(*_xml.clark(S, "definedName"))):
        local = dn.get("localSheetId")
        text, flattened = _formula_text(dn)
        if flattened:
            pkg.touch(main)
        if AUTO_NAMES.match(dn.get("name", "")) or (to_removed and to_removed.search(text)):
            _remove_and_prune(dn)
            continue
        if local is not None and _digits(local):
            index = new_index(int(local))
            if index is None:
                _remove_and_prune(dn)
            else:
                dn.set("localSheetId", str(index))
    for view in root.iter(*_xml.clark(S, "workbookView")):
        for attr in ("activeTab", "firstSheet"):
            value = view.get(attr)
            if value is not None and _digits(value):
                view.set(attr, str(new_index(int(value)) or 0))
    _drop_calc_chain(pkg, main)
    pkg.touch(main)


def _digits(value: str) -> bool:
    """ASCII digits only (str.isdigit() takes "²", which int() refuses)."""
    return value.isascii() and value.isdigit()


def _remove_and_prune(el: etree._Element) -> None:
    parent = _xml.remove(el)
    # (not len(parent): lxml counts the children left, for each of 80,000 names)
    if parent is not None and childless(parent) and split(parent.tag)[1] == "definedNames":
        _xml.remove(parent)


def _drop_calc_chain(pkg: Package, workbook: str) -> None:
    # Excel rebuilds its calculation chain; a stale one makes it repair the file
    for rel in pkg.rels_of(workbook).values():
        if rel.type == "calcChain":
            pkg.drop_rel(rel)


# -------------------------------------------------------------- embedded files


#: EMBED_RELS by lowered type (Office compares relationship types as written; a
#: part is judged embedded under any case of them).
_EMBED_RELS_LOWER = {k.lower(): v for k, v in EMBED_RELS.items()}
#: Elements that place an OLE object (VML o:OLEObject, w:objectEmbed, p:oleObj,
#: SpreadsheetML oleObject), by local name: the part their r:id names is the object's.
_OBJECT_ELEMENTS = {
    "OLEObject": "OLE object",
    "objectEmbed": "OLE object",
    "oleObj": "OLE object",
    "oleObject": "OLE object",
    # (a w:altChunk: Word imports the part, a whole document, whatever its type)
    "altChunk": "imported document (altChunk)",
    # Readers follow these elements' r:id, r:embed or r:link whatever the type of the
    # relationship: a font, a video or a chart's workbook under an "image" or
    # "customXml" relationship was kept, and LibreOffice loaded the font and the video.
    "embedRegular": "embedded font",
    "embedBold": "embedded font",
    "embedItalic": "embedded font",
    "embedBoldItalic": "embedded font",
    "embeddedFont": "embedded font",  # (PowerPoint: its children name the faces)
    "media": "media",
    "videoFile": "video",
    "quickTimeFile": "video",
    "audioFile": "audio",
    "wavAudioFile": "audio",
    "snd": "audio",
    "sndTgt": "audio",
    "externalData": "embedded package",
}
#: The bytes of a part that may hold one of them (names cannot be written with
#: character references): "media" covers "embedded font"'s faces' parent too.
_OBJECT_NAMES = (
    *(b"OLEObject", b"objectEmbed", b"oleObj", b"altChunk", b"embedRegular", b"embedBold"),
    *(b"embedItalic", b"embeddedFont", b"media", b"videoFile", b"quickTimeFile", b"audioFile"),
    *(b"wavAudioFile", b"snd", b"externalData"),
)
#: Content types of embedded media and fonts by their family (beyond EMBED_CONTENT_TYPES).
_EMBED_TYPE_FAMILIES = (
    ("video/", "video"),
    ("audio/", "audio"),
    ("font/", "embedded font"),
    ("application/x-font", "embedded font"),
    ("application/font", "embedded font"),
)


def _embedded(pkg: Package, report: Report, budget: list[int]) -> None:
    incoming = _incoming(pkg)
    placed = _placed_objects(pkg)
    for name in pkg.kept():
        if name not in incoming:
            continue
        content_type = pkg.content_type(name).strip().lower()
        label = EMBED_CONTENT_TYPES.get(content_type)
        if label is None:
            label = next((v for k, v in _EMBED_TYPE_FAMILIES if content_type.startswith(k)), None)
        if label is None and "obfuscated" in content_type:
            label = "embedded font"
        if label is None:
            types = (r.type.lower() for r in incoming[name])
            label = next((_EMBED_RELS_LOWER[t] for t in types if t in _EMBED_RELS_LOWER), None)
        if label is None and "/embeddings/" in name.lower():
            label = "embedded object"
        if label is None and name in placed:
            label = placed[name]  # (under another relationship type and part name)
        if label is None and pkg.data[name].startswith(b"PK\x03\x04"):
            label = "embedded package"  # (a zip: an Office document, say)
        if (
            label is None
            and pkg.data[name].startswith(OLE_MAGIC)
            and _macro_label(pkg, name, incoming[name], budget) is None
        ):
            # An OLE compound file that is no macro project (kept by the policy) is an
            # object whatever names it: a Package holding calc.exe under a printer
            # settings relationship was delivered, and oleobj extracts it.
            label = "OLE object"
        if label is not None and report.hit("embedded_files", label):
            pkg.remove_part(name)


def _placed_objects(pkg: Package) -> dict[str, str]:
    """The parts that elements placing an OLE object or importing a document name
    (``_OBJECT_ELEMENTS``), with what to call them."""
    placed: dict[str, str] = {}
    for name in pkg.kept():
        if not pkg.is_xml(name) or not pkg.rels_of(name):
            continue
        if not pkg.mentions(name, *_OBJECT_NAMES):  # ("oleObj" holds "oleObject")
            continue
        rels = pkg.rels_of(name)
        root = pkg.root(name)
        if root is None:
            continue
        for el in root.iter(etree.Element):
            label = _OBJECT_ELEMENTS.get(split(el.tag)[1])
            if label is None:
                continue
            holders = list(el) if label == "embedded font" and len(el) else [el]
            for holder in holders:
                for key, value in holder.attrib.items():
                    ns = split(key)[0]
                    rel = rels.get(value) if ns in R else None
                    if rel is not None and rel.part:
                        placed[rel.part] = label
    return placed


# -------------------------------------------------------------- external links


def _external_rels(pkg: Package, report: Report) -> None:
    judged = _workbook_links(pkg)
    for rel in pkg.all_rels():
        if not rel.external or rel.type in MAIL_MERGE_RELS:
            continue
        if rel.source in judged:
            continue  # the whole external link part is judged below
        kind = EXTERNAL_KINDS.get(rel.type, f"external {rel.type} link")
        if report.hit("external_hyperlinks", kind):
            pkg.drop_rel(rel)


#: Office add-ins a document asks for (task panes, content add-ins): web content Office
#: offers to load, from the store or a catalog the document names.
ADD_IN_RELS = {"webextensiontaskpanes": "Office add-in task pane", "webextension": "Office add-in"}


def _add_ins(pkg: Package, report: Report) -> None:
    for rel in list(pkg.all_rels()):
        if rel.type in ADD_IN_RELS and not rel.external:
            if report.hit("external_hyperlinks", ADD_IN_RELS[rel.type]):
                pkg.drop_rel(rel)
                if rel.part and rel.part not in pkg.removed:
                    pkg.remove_part(rel.part)


def _workbook_links(pkg: Package) -> set[str]:
    """The external link parts of a workbook (``_external_workbooks`` judges them
    whole); the external link parts anything else refers to are judged as any part."""
    main = pkg.main_part()
    if main is None or pkg.root_local(main) != "workbook":
        return set()
    return {
        r.part
        for r in pkg.rels_of(main).values()
        if r.type == "externalLink" and r.part and pkg.has_root(r.part, S, "externalLink")
    }


def _external_workbooks(pkg: Package, report: Report) -> dict[int, int | None]:
    """External workbook links, DDE links and OLE links of a workbook
    (``xl/externalLinks``). Returns the renumbering of the remaining ones (old index ->
    new index, ``None`` when removed) for the formulas that use them."""
    main = pkg.main_part()
    root = pkg.root(main) if main else None
    if main is None or root is None or not is_(root, S, "workbook"):
        return {}
    rels = pkg.rels_of(main)
    refs_el = next((c for c in root if is_(c, S, "externalReferences")), None)
    listed = [c for c in refs_el if is_(c, S, "externalReference")] if refs_el is not None else []
    mapping: dict[int, int | None] = {}
    new = 0
    removed = False
    for index, ref in enumerate(listed, start=1):
        rel = rels.get(rattr(ref, "id") or "")
        verdict = _judge_external_link(pkg, report, rel)
        if verdict:
            mapping[index] = None
            _xml.remove(ref)
            removed = True
            if rel is not None and rel.part:
                pkg.remove_part(rel.part)
        else:
            new += 1
            mapping[index] = new
    listed_ids = {rattr(r, "id") for r in listed}
    for rel in list(rels.values()):  # external link parts no <externalReference> lists
        if rel.type == "externalLink" and rel.id not in listed_ids:
            if _judge_external_link(pkg, report, rel) and rel.part:
                pkg.remove_part(rel.part)
    if refs_el is not None and len(refs_el) == 0:
        _xml.remove(refs_el)
    if removed:
        pkg.touch(main)
        _drop_calc_chain(pkg, main)
    return mapping if removed else {}


def _stray_dde_links(pkg: Package, report: Report) -> None:
    """DDE links of a workbook anywhere else: external link parts a part other than
    the workbook refers to (a worksheet, say), ``ddeLink`` elements in any other part,
    and binary parts holding one (as XML text, or as an XLSB external link record).
    Excel reads none of them from there, but each is a DDE command all the same:
    msodde reads every part of a workbook, as XML (every ``ddeLink`` element, in any
    letter case) and, when that fails, as XLSB records."""
    main = pkg.main_part()
    if main is None or pkg.root_local(main) not in (None, "workbook"):
        return  # (Word and PowerPoint read DDE from fields, not from such elements)
    judged = {r.part for r in pkg.rels_of(main).values() if r.type == "externalLink"}
    for name in pkg.kept():
        data = pkg.data[name]
        if not pkg.is_xml(name):
            if b"ddelin" in data.lower() or _XLSB_DDE.search(data):
                if report.hit("dynamic_data_exchange", "DDE link in a binary part"):
                    pkg.remove_part(name)
            continue
        if name in judged:
            continue
        # (names cannot be written with character references: a part in an
        # ASCII-compatible encoding that does not spell the name holds no such element;
        # "ddelin": its "k" may be the Kelvin sign, which lowers to "k" too)
        if pkg.ascii_compatible(name) and b"ddelin" not in data.lower():
            continue
        root = pkg.root(name)
        if root is None:
            continue
        if is_(root, S, "externalLink"):
            if _judge_external_part(pkg, report, name):
                pkg.remove_part(name)
            continue
        found = _dde_link_elements(root)
        if found and report.hit("dynamic_data_exchange", "DDE link", n=len(found)):
            for el in found:
                if el is root:
                    pkg.remove_part(name)
                    break
                _xml.remove(el)
            else:
                pkg.touch(name)


def _dde_link_elements(root: etree._Element) -> list[etree._Element]:
    """The ``ddeLink`` elements of a part, in any namespace and letter case (as msodde
    finds them)."""
    return [
        el
        for el in root.iter()
        if isinstance(el.tag, str) and split(el.tag)[1].lower() == "ddelink"
    ]


def _judge_external_link(pkg: Package, report: Report, rel: Rel | None) -> bool:
    if rel is None or rel.part is None:
        return False
    return _judge_external_part(pkg, report, rel.part)


def _judge_external_part(pkg: Package, report: Report, part: str) -> bool:
    """Report an external link part (a DDE link, an OLE link or a link to another
    workbook); True when its switch removes it."""
    if part in pkg.removed:
        return False
    root = pkg.root(part)
    if root is None:
        return False
    if _dde_link_elements(root):
        return report.hit("dynamic_data_exchange", "DDE link")
    kinds = {split(c.tag)[1] for c in root}
    if "oleLink" in kinds:
        return report.hit("external_hyperlinks", "OLE link")
    return report.hit("external_hyperlinks", "external workbook link")


def _connections(pkg: Package, report: Report) -> None:
    removed = False
    for rel in list(pkg.all_rels()):
        if rel.external or not rel.part or rel.part in pkg.removed:
            continue
        if rel.type.lower() == "customxml" and pkg.root_local(rel.part) == "DataMashup":
            # Power Query's queries (M code: Web.Contents, Odbc.Query, File.Contents...),
            # which Excel runs on a refresh: the data connection's definition.
            if report.hit("dynamic_data_exchange", "Power Query queries"):
                pkg.remove_part(rel.part)
        elif rel.type == "connections":
            if report.hit("dynamic_data_exchange", "data connection"):
                pkg.remove_part(rel.part)
                removed = True
        elif rel.type == "queryTable":
            if report.hit("dynamic_data_exchange", "query table"):
                pkg.remove_part(rel.part)
    if not removed:
        return
    for name in pkg.parts_with_root(S, "table"):
        root = pkg.root(name)
        assert root is not None
        if root.get("connectionId") is not None or root.get("tableType") == "queryTable":
            root.attrib.pop("connectionId", None)
            root.attrib.pop("tableType", None)
            for col in root.iter(*_xml.clark(S, "tableColumn")):
                col.attrib.pop("queryTableFieldId", None)
            pkg.touch(name)
    for name in pkg.parts_with_root(S, "pivotCacheDefinition"):
        root = pkg.root(name)
        assert root is not None
        for source in root.iter(*_xml.clark(S, "cacheSource")):
            if source.get("connectionId") is not None:
                raise PackageRefused(
                    "a pivot table is fed by an external data connection: it cannot be "
                    "rebuilt without it"
                )


# ------------------------------------------------------------------------ Word


def _word_stories(pkg: Package, report: Report) -> None:
    for name in pkg.parts_with_root(W, *WORD_STORIES):
        root = pkg.root(name)
        assert root is not None
        changed = False
        marks = _revisions(root)
        if marks and report.hit("review_comments", "tracked change", n=len(marks)):
            _accept_revisions(marks)
            changed = True
        markers = list(
            root.iter(
                *_xml.clark(W, "commentRangeStart"),
                *_xml.clark(W, "commentRangeEnd"),
                *_xml.clark(W, "commentReference"),
            )
        )
        anchors = sum(1 for m in markers if split(m.tag)[1] == "commentReference")
        if markers and report.hit("review_comments", "comment anchor", n=max(anchors, 1)):
            for el in markers:
                _remove_in_run(el)
            changed = True
        if pkg.mentions(name, b"fldChar", b"fldSimple"):
            changed |= _word_fields(root, report)
        if pkg.mentions(name, b"hyperlink"):
            rels = pkg.rels_of(name)
            for link in list(root.iter(*_xml.clark(W, "hyperlink"))):
                rid = rattr(link, "id")
                rel = rels.get(rid) if rid else None
                if rel is not None and rel.external:
                    continue  # an external hyperlink: judged with its relationship
                if wattr(link, "anchor") is not None or rel is not None:
                    if report.hit("internal_hyperlinks", "link to a bookmark"):
                        _xml.unwrap(link)
                        changed = True
        if changed:
            pkg.touch(name)


def _remove_in_run(el: etree._Element) -> None:
    """Remove ``el``; then its run too when nothing but run properties is left."""
    parent = _xml.remove(el)
    if parent is not None and is_(parent, W, "r") and all(is_(c, W, "rPr") for c in parent):
        _xml.remove(parent)


class _Field:
    __slots__ = (
        "begin",
        "sep",
        "end",
        "instr",
        "keyword",
        "computed",
        "ambiguous",
        "markup",
        "code",
    )

    def __init__(self, begin: etree._Element, markup: etree._Element | None = None) -> None:
        self.begin = begin
        #: the outermost element of another namespace its begin lies in (see
        #: _other_markup): a run of its code in another one makes it ambiguous
        self.markup = markup
        self.sep: etree._Element | None = None
        self.end: etree._Element | None = None
        self.instr = ""
        #: where its keyword stands in ``instr`` (see keyword_state)
        self.keyword = BEFORE_KEYWORD
        self.computed = False
        #: a run of its code lies in other markup than its begin (an mc:Choice a
        #: reader may skip): which text is the instruction is not certain
        self.ambiguous = False
        self.code: list[etree._Element] = []


_FLD_SIMPLES = frozenset(_xml.clark(W, "fldSimple"))
#: Word nests fields a few levels deep (a QUOTE inside an IF...); far more is refused.
MAX_FIELD_NESTING = 256
#: Runs: of text, and of math (a field's characters may sit in either).
_RUNS = (*_xml.clark(W, "r"), "{http://schemas.openxmlformats.org/officeDocument/2006/math}r")


#: What a field is made of, looked for inside run children of other namespaces.
_FIELD_PARTS = (
    *_xml.clark(W, "fldChar"),
    *_xml.clark(W, "instrText"),
    *_xml.clark(W, "delInstrText"),
)


def _collect_fields(
    root: etree._Element,
    orphans: list[etree._Element] | None = None,
    wrapped: list[etree._Element] | None = None,
) -> list[_Field]:
    """Complex fields (``w:fldChar`` begin/separate/end with ``w:instrText``), in
    document order, nesting included. A field's code region (between begin and
    separate) collects every element in it, nested fields' too."""
    stack: list[_Field] = []
    done: list[_Field] = []
    # Field characters under other markup than WordprocessingML's that do not make
    # whole fields there (a lone "separate" in an mc:Choice, instruction text in an
    # ignorable extension): readers differ on whether they read them, so they would
    # change which instruction a field has. Those elements go (reported as wrapped),
    # and the fields are read without them, as the output reads.
    outside = _partial_field_markup(root)
    if wrapped is not None:
        wrapped.extend(outside)
    skip = {run for el in outside for run in el.iter(*_RUNS)}
    other_markup = _other_markup(root)
    for run in list(root.iter(*_RUNS, *_FLD_SIMPLES)):
        if run.tag in _FLD_SIMPLES:
            if stack and stack[-1].sep is None and stack[-1].keyword != AFTER_KEYWORD:
                # a simple field where the keyword may go on: Word reads it as a
                # nested field, its result part of the keyword (DD + QUOTE "EAUTO")
                stack[-1].computed = True
            continue
        if run in skip:
            continue
        markup: Any = _UNKNOWN  # (looked up only where a field needs it)
        if stack and stack[-1].sep is None:
            markup = other_markup(run)
            if markup is not stack[-1].markup:
                stack[-1].ambiguous = True
        for child in list(run):
            ns, local = split(child.tag)
            if ns in W and local == "rPr":
                continue
            if (
                wrapped is not None
                and ns not in W
                and isinstance(child.tag, str)
                and child not in outside
                and any(_run_of(part) is run for part in child.iter(*_FIELD_PARTS))
            ):
                # another namespace in a run (mc:AlternateContent, an ignorable
                # extension) holding field characters or instruction text as the run's
                # own: Word reads what it wraps, this walk does not see into it. (Those
                # of runs inside it, a text box's, the walk reads as any other.)
                wrapped.append(child)
            if ns in W and local == "fldChar":
                kind = wattr(child, "fldCharType")
                if kind == "begin":
                    if len(stack) >= MAX_FIELD_NESTING:
                        # each open field collects what follows: n unclosed begins cost
                        # n x n (10,000 in 38 KB took 5 s and 500 MB)
                        raise PackageRefused(f"fields nested more than {MAX_FIELD_NESTING} deep")
                    for f in stack:
                        if f.sep is None:
                            f.code.append(child)
                    if stack and stack[-1].sep is None and stack[-1].keyword != AFTER_KEYWORD:
                        stack[-1].computed = True  # the keyword comes from a nested field
                    if markup is _UNKNOWN:
                        markup = other_markup(run)
                    stack.append(_Field(child, markup))
                elif kind == "separate" and stack:
                    for f in stack[:-1]:
                        if f.sep is None:
                            f.code.append(child)
                    if stack[-1].sep is None:
                        stack[-1].sep = child
                elif kind == "end" and stack:
                    field = stack.pop()
                    field.end = child
                    for f in stack:
                        if f.sep is None:
                            f.code.append(child)
                    done.append(field)
                continue
            for f in stack:
                if f.sep is None:
                    f.code.append(child)
            # (text in the code region is the instruction too, however it is written)
            if (
                ns in W
                and local in ("instrText", "delInstrText", "t")
                and stack
                and stack[-1].sep is None
            ):
                text = child.text or ""
                if len(child):
                    # (text alone by the schema: readers join the pieces around a
                    # child element, or take the last one)
                    stack[-1].ambiguous = True
                    text = "".join(child.itertext())
                stack[-1].instr += text
                stack[-1].keyword = keyword_state(stack[-1].keyword, text)
            elif ns in W and local in ("instrText", "delInstrText") and orphans is not None:
                # an instruction outside any field's code region (after its separator
                # too): judged on its own
                orphans.append(child)
    done.extend(stack)  # fields never closed count too
    return done


_MC_ALTERNATE = "{http://schemas.openxmlformats.org/markup-compatibility/2006}AlternateContent"


_UNKNOWN = object()


def _run_of(el: etree._Element) -> etree._Element | None:
    """The run ``el`` (a field character, instruction text) belongs to: its nearest
    run ancestor."""
    return next(el.iterancestors(*_RUNS), None)


def _other_markup(
    root: etree._Element,
) -> Callable[[etree._Element], etree._Element | None]:
    """A function giving the outermost element of another namespace than
    WordprocessingML's (markup compatibility content, an extension, a drawing) an
    element of ``root`` lies in, or None. What it finds for an ancestor is remembered
    (each field character walked up to the root: 60,000 under 120 nested content
    controls took 10 s)."""
    memo: dict[etree._Element, etree._Element | None] = {}

    def outermost(el: etree._Element) -> etree._Element | None:
        path = []
        node = el.getparent()
        found: etree._Element | None = None
        while node is not None and node is not root:
            if node in memo:
                found = memo[node]
                break
            path.append(node)
            node = node.getparent()
        for ancestor in reversed(path):  # (from the top: the outermost is kept)
            if found is None and isinstance(ancestor.tag, str) and split(ancestor.tag)[0] not in W:
                found = ancestor
            memo[ancestor] = found
        return found

    return outermost


def _partial_field_markup(root: etree._Element) -> list[etree._Element]:
    """The outermost elements of other namespaces than WordprocessingML's (markup
    compatibility content, an ignorable extension, a drawing) whose field characters
    and instruction text do not make whole fields by themselves (each branch of an
    mc:AlternateContent on its own: a reader takes one)."""
    found: list[etree._Element] = []
    seen: set[etree._Element] = set()
    other_markup = _other_markup(root)
    for part in root.iter(*_FIELD_PARTS):
        top = other_markup(part)
        if top is None or top in seen:
            continue
        seen.add(top)
        branches = list(top) if top.tag == _MC_ALTERNATE else [top]
        if not all(_whole_fields(branch) for branch in branches):
            found.append(top)
    return found


def _whole_fields(element: etree._Element) -> bool:
    """Whether the field characters and instruction text in ``element`` make whole
    fields: each begin with at most one separate and its end, instruction text only
    between a begin and its separate."""
    separated: list[bool] = []  # open fields: separated yet?
    for part in element.iter(*_FIELD_PARTS):
        if split(part.tag)[1] != "fldChar":
            if not separated or separated[-1]:
                return False  # instruction text outside a field's code
            continue
        kind = wattr(part, "fldCharType")
        if kind == "begin":
            separated.append(False)
        elif kind == "separate":
            if not separated or separated[-1]:
                return False
            separated[-1] = True
        elif kind == "end":
            if not separated:
                return False
            separated.pop()
    return not separated


#: The verdict on a field whose instruction readers may read differently.
_AMBIGUOUS_FIELD = ("dynamic_data_exchange", "field instruction readers may read differently")


def _word_fields(root: etree._Element, report: Report) -> bool:
    changed = False
    orphans: list[etree._Element] = []
    wrapped: list[etree._Element] = []
    fields = _collect_fields(root, orphans, wrapped)
    if wrapped and report.hit(
        "dynamic_data_exchange",
        "field code inside markup-compatibility content",
        verb="neutralised",
        n=len(wrapped),
    ):
        for el in wrapped:
            _xml.remove(el)
        changed = True
    for instr in orphans:  # (its field's begin was wrapped, say)
        verdict = (
            _AMBIGUOUS_FIELD
            if len(instr)  # (pieces around a child element: see _collect_fields)
            else classify_field(instr.text or "", False)
        )
        if verdict and report.hit(*verdict, verb="neutralised"):
            _xml.remove(instr)
            changed = True
    for field in fields:
        verdict = (
            _AMBIGUOUS_FIELD if field.ambiguous else classify_field(field.instr, field.computed)
        )
        if verdict and report.hit(*verdict, verb="neutralised"):
            touched: list[etree._Element] = []
            for el in (field.begin, field.sep, field.end, *field.code):
                if el is None:
                    continue
                parent = _xml.remove(el)
                if parent is not None:
                    touched.append(parent)
            for run in touched:
                if is_(run, W, "r") and all(is_(c, W, "rPr") for c in run):
                    _xml.remove(run)
            changed = True
    for simple in list(root.iter(*_xml.clark(W, "fldSimple"))):
        verdict = classify_field(wattr(simple, "instr") or "", False)
        if verdict and report.hit(*verdict, verb="neutralised"):
            _xml.unwrap(simple)  # the field's result runs stay, as plain text
            changed = True
    return changed


# Tracked changes are accepted: the document reads as its author last saw it.
_REV_REMOVE = {
    "rPrChange",
    "pPrChange",
    "sectPrChange",
    "tblPrChange",
    "trPrChange",
    "tcPrChange",
    "tblGridChange",
    "tblPrExChange",
    "numberingChange",
    "moveFromRangeStart",
    "moveFromRangeEnd",
    "moveToRangeStart",
    "moveToRangeEnd",
    "customXmlDelRangeStart",
    "customXmlDelRangeEnd",
    "customXmlInsRangeStart",
    "customXmlInsRangeEnd",
    "customXmlMoveFromRangeStart",
    "customXmlMoveFromRangeEnd",
    "customXmlMoveToRangeStart",
    "customXmlMoveToRangeEnd",
    "cellIns",
    "cellDel",
    "cellMerge",
}
_REV_TAGS = [
    t for local in ("ins", "del", "moveFrom", "moveTo", *_REV_REMOVE) for t in _xml.clark(W, local)
]


def _revisions(root: etree._Element) -> list[etree._Element]:
    return list(root.iter(*_REV_TAGS))


def _accept_revisions(marks: list[etree._Element]) -> None:
    containers: list[etree._Element] = []
    joins: list[etree._Element] = []
    for el in marks:
        if el.getparent() is None:
            continue
        local = split(el.tag)[1]
        parent = el.getparent()
        assert parent is not None
        parent_local = split(parent.tag)[1]
        if local in _REV_REMOVE:
            _xml.remove(el)
        elif parent_local == "rPr" and _is_ppr(parent.getparent()):
            # a paragraph mark's revision: deleted/moved-away marks join paragraphs
            _xml.remove(el)
            if local in ("del", "moveFrom"):
                ppr = parent.getparent()
                para = ppr.getparent() if ppr is not None else None
                if para is not None:
                    joins.append(para)
        elif parent_local == "trPr":
            _xml.remove(el)
            if local == "del":
                row = parent.getparent()
                if row is not None:
                    _remove_row(row)
        else:
            containers.append(el)
    # Joined from the last: a run of deleted marks moves each paragraph's own content
    # once (joined from the first, the content gathered so far moved again at every
    # mark: 2,000 marks took 7 s). The text ends up in the same order.
    for para in reversed(joins):
        _join_next(para)
    for el in containers:
        if el.getparent() is None:
            continue
        local = split(el.tag)[1]
        if local in ("del", "moveFrom"):
            _xml.remove(el)
        else:
            _xml.unwrap(el)


def _is_ppr(el: etree._Element | None) -> bool:
    return el is not None and is_(el, W, "pPr")


def _join_next(para: etree._Element) -> None:
    """Accept a deleted paragraph mark: the paragraph's content joins the next one."""
    nxt = para.getnext()
    if nxt is None or not is_(nxt, W, "p"):
        return
    at = 1 if len(nxt) and is_(nxt[0], W, "pPr") else 0
    for child in [c for c in para if not is_(c, W, "pPr")]:
        nxt.insert(at, child)
        at += 1
    _xml.remove(para)


def _remove_row(row: etree._Element) -> None:
    table = _xml.remove(row)
    if table is None or any(is_(c, W, "tr") for c in table):
        return
    cell = _xml.remove(table)
    if cell is not None and is_(cell, W, "tc") and not any(is_(c, W, "p") for c in cell):
        etree.SubElement(cell, f"{{{split(cell.tag)[0]}}}p")  # a cell ends with a paragraph


def _form_field_macros(pkg: Package, report: Report) -> None:
    """A legacy form field's entry and exit macros (``w:ffData``): Word runs the macro
    or command they name (in the document, a template or an add-in) when the field is
    entered or left. Removed under ``macros``; the field stays."""
    for name in pkg.kept():
        if not pkg.is_xml(name) or not pkg.mentions(name, b"entryMacro", b"exitMacro"):
            continue
        root = pkg.root(name)
        if root is None:
            continue
        found = [el for el in root.iter(*_xml.clark(W, "entryMacro"), *_xml.clark(W, "exitMacro"))]
        if found and report.hit("macros", "form field macro", n=len(found)):
            for el in found:
                _xml.remove(el)
            pkg.touch(name)


def _word_settings(pkg: Package, report: Report) -> None:
    merged: dict[str, bool] = {}  # the parts whose mail merge was judged: removed?
    for name in pkg.parts_with_root(W, "settings"):
        root = pkg.root(name)
        assert root is not None
        for merge in list(root.iter(*_xml.clark(W, "mailMerge"))):
            merged[name] = report.hit("dynamic_data_exchange", "mail-merge data source")
            if merged[name]:
                _xml.remove(merge)
                pkg.touch(name)
    # The data sources go with their <w:mailMerge>; an external one no <w:mailMerge>
    # uses is a link out all the same.
    for rel in list(pkg.all_rels()):
        if rel.type not in MAIL_MERGE_RELS or not rel.external:
            continue
        if (
            merged.get(rel.source)
            if rel.source in merged
            else report.hit("dynamic_data_exchange", "mail-merge data source")
        ):
            pkg.drop_rel(rel)


# ---------------------------------------------------------------------- review


def _review_rels(pkg: Package, report: Report) -> None:
    found = False
    side: list[Rel] = []
    for rel in list(pkg.all_rels()):
        if rel.external or not rel.part or rel.part in pkg.removed:
            continue
        if rel.type in REVIEW_SIDE_RELS:
            side.append(rel)
            continue
        label = REVIEW_RELS.get(rel.type)
        if label is None:
            continue
        found = True
        root = pkg.root(rel.part)
        count = 1
        if root is not None:
            count = max(
                1,
                sum(
                    1
                    for el in root.iter()
                    if split(el.tag)[1] in ("comment", "cm", "threadedComment")
                ),
            )
        if report.hit("review_comments", label, n=count):
            pkg.remove_part(rel.part)
            if rel.source and pkg.has_root(rel.source, S, "worksheet"):
                _remove_notes(pkg, rel.source)
    found = found or "review_comments" in report.found
    if found and report.policy("review_comments") == "sanitise":
        for rel in side:  # author lists (names, e-mail addresses) of comments/revisions
            pkg.remove_part(rel.part or "")


def _remove_notes(pkg: Package, sheet: str) -> None:
    """Remove the note shapes of a worksheet's VML drawing (Excel draws comments
    there); the drawing goes when nothing else is in it."""
    for rel in pkg.rels_of(sheet).values():
        if rel.type != "vmlDrawing" or not rel.part:
            continue
        root = pkg.root(rel.part)
        if root is None:
            continue
        for data in list(root.iter(f"{{{X}}}ClientData")):
            if data.get("ObjectType") == "Note":
                shape = data.getparent()
                if shape is not None:
                    _xml.remove(shape)
        pkg.touch(rel.part)
        if not any(split(c.tag)[0] == VML and split(c.tag)[1] != "shapetype" for c in root):
            pkg.drop_rel(rel)


# ------------------------------------------------------------- links in drawings


_ACTIONS = ("hlinkClick", "hlinkHover", "hlinkMouseOver")
#: A part holds one of these elements only if its bytes hold the name.
_ACTION_NAMES = tuple(local.encode() for local in _ACTIONS)


#: Click actions that run something, whatever the link they come with.
_RUNNING_ACTIONS = ("ppaction://macro", "ppaction://ole", "ppaction://program")
#: Click actions that open another file (a document, another presentation).
_FILE_ACTIONS = ("ppaction://hlinkfile", "ppaction://hlinkpres")


def _drawing_links(pkg: Package, report: Report) -> None:
    """DrawingML click/hover actions: internal jumps, macros, OLE verbs. (External
    targets are judged with their relationships.)"""
    tags = [t for local in _ACTIONS for t in _xml.clark(A, local)]
    for name in pkg.kept():
        if not pkg.is_xml(name) or not pkg.mentions(name, _LINK_NAMES):
            continue
        if not pkg.mentions(name, *_ACTION_NAMES):
            continue
        root = pkg.root(name)
        assert root is not None
        rels = pkg.rels_of(name)
        changed = False
        for el in list(root.iter(*tags)):
            rid = rattr(el, "id")
            rel = rels.get(rid) if rid else None
            # (trimmed: " ppaction://program" was a link within the document)
            action = (el.get("action") or "").strip().lower()
            # (an external target alone is judged with its relationship; an action on
            # top of one is judged here, whatever the link switches say)
            if rel is not None and rel.external and not action.startswith(_RUNNING_ACTIONS):
                continue
            if action.startswith("ppaction://macro"):
                verdict = ("macros", "macro action")
            elif action.startswith("ppaction://ole"):
                verdict = ("embedded_files", "OLE action")
            elif action.startswith("ppaction://program"):
                verdict = ("external_hyperlinks", "run-program action")
            elif action.startswith(_FILE_ACTIONS) or (rel is not None and rel.part is None):
                # another file or presentation, whatever its target mode says
                verdict = ("external_hyperlinks", "link to another file")
            elif rel is None and action in ("", "ppaction://noaction"):
                continue
            else:
                verdict = ("internal_hyperlinks", "link within the document")
            if report.hit(*verdict):
                prune_up(_xml.remove(el))
                changed = True
        if changed:
            pkg.touch(name)


def _sheet_links(pkg: Package, report: Report) -> None:
    """Worksheet hyperlinks to a place in the workbook (``location``, no target)."""
    for name in pkg.parts_with_root(S, "worksheet"):
        root = pkg.root(name)
        assert root is not None
        rels = pkg.rels_of(name)
        for link in list(root.iter(*_xml.clark(S, "hyperlink"))):
            rid = rattr(link, "id")
            rel = rels.get(rid) if rid else None
            if rel is not None and rel.external:
                continue
            if link.get("location") is not None or rel is not None:
                if report.hit("internal_hyperlinks", "link to a cell"):
                    prune_up(_xml.remove(link))
                    pkg.touch(name)


def _vml_links(pkg: Package, report: Report) -> None:
    for name in pkg.kept():
        if not pkg.is_xml(name) or not pkg.mentions(name, _LINK_NAMES):
            continue
        if not pkg.mentions(name, b"href"):
            continue
        root = pkg.root(name)
        assert root is not None
        for el in root.iter():
            href = el.get("href")
            if href is None or split(el.tag)[0] != VML:
                continue
            if href.startswith("#"):
                verdict = ("internal_hyperlinks", "link within the document")
            else:
                verdict = ("external_hyperlinks", "hyperlink")
            if report.hit(*verdict):
                del el.attrib["href"]
                pkg.touch(name)


#: VML attributes naming an image or a file outside the part's relationships.
_VML_SOURCES = ("src", f"{{{_xml.O}}}href", f"{{{_xml.O}}}althref")
_VML_SOURCE_NAMES = re.compile(rb"(?:src|href)[ \t\r\n]*=")
#: Elements holding web content Office shows from a page's own HTML or address: Word's
#: online video (wp15:webVideoPr embeddedHtml: an iframe, played in a browser control)
#: and oEmbed content, each in its extension (a:ext), by local name (lower case).
_WEB_CONTENT = {"webVideoPr": "online video", "oembed": "online content (oEmbed)"}
_WEB_CONTENT_NAMES = (b"webVideoPr", b"oembed")


def _web_content(pkg: Package, report: Report) -> None:
    """Web content outside relationships: VML image sources with a URL or a network
    path, online videos, oEmbed content, and a customXml document information panel
    form (Office 2007-2013 loaded its ``xsnLocation`` when the document opened)."""
    # (custom XML data: what customXml relationships name, whatever the part's path)
    custom = {r.part for r in pkg.all_rels() if r.part and r.type.lower() == "customxml"}
    for name in pkg.kept():
        if not pkg.is_xml(name):
            continue
        if name in custom and pkg.root_local(name) == "customXsn":
            if report.hit("external_hyperlinks", "document information panel form"):
                pkg.remove_part(name)
            continue
        # (cheap tests first: most parts hold neither word)
        vml = pkg.mentions(name, b"src", b"href") and pkg.mentions(name, _VML_SOURCE_NAMES)
        web = pkg.mentions(name, *_WEB_CONTENT_NAMES)
        if not (vml or web):
            continue
        root = pkg.root(name)
        assert root is not None
        for el in list(root.iter(etree.Element)):
            ns, local = split(el.tag)
            kind = _WEB_CONTENT.get(local) if web else None
            if kind is not None:
                parent = el.getparent()
                holder = parent if parent is not None and split(parent.tag)[1] == "ext" else el
                if report.hit("external_hyperlinks", kind):
                    _xml.remove(holder)
                    pkg.touch(name)
            elif vml and ns == VML:
                for key in _VML_SOURCES:
                    value = el.get(key)
                    if value is None or not looks_external(value):
                        continue
                    if report.hit("external_hyperlinks", "linked image (VML)"):
                        del el.attrib[key]
                        pkg.touch(name)


# -------------------------------------------------------------------- formulas


def _formulas(pkg: Package, report: Report, ext_map: dict[int, int | None]) -> None:
    """Cell formulas using removed external workbooks lose their formula (the cached
    value stays); the others are renumbered. Formulas calling out of the workbook
    (see ``RISKY_FUNCTIONS``) are judged by their switch."""
    main = pkg.main_part()
    changed_any = False
    for name in pkg.parts_with_root(S, "worksheet"):
        if not pkg.mentions(name, b"<f", b":f"):
            continue
        root = pkg.root(name)
        assert root is not None
        dropped_shared: set[str] = set()
        changed = False
        for f in list(root.iter(*_xml.clark(S, "f"))):
            text, flattened = _formula_text(f)
            changed = changed or flattened
            if not text:
                continue
            drop, new_text = _judge_formula(text, ext_map, report)
            if drop:
                if f.get("t") == "shared" and f.get("si") is not None:
                    dropped_shared.add(f.get("si", ""))
                _drop_formula(f)
                changed = True
            elif new_text != text:
                f.text = new_text
                changed = True
        if dropped_shared:
            for f in list(root.iter(*_xml.clark(S, "f"))):
                if f.get("t") == "shared" and f.get("si") in dropped_shared:
                    _drop_formula(f)
        if changed:
            pkg.touch(name)
            changed_any = True
    root = pkg.root(main) if main else None
    if main and root is not None and is_(root, S, "workbook"):
        # web publishing: Excel writes the workbook to destinationFile (a share, say)
        # on every save when autoRepublish is set
        published = [
            el for el in root.iter(*_xml.clark(S, "webPublishObject")) if el.get("destinationFile")
        ]
        if published and report.hit(
            "external_hyperlinks", "web publishing destination", n=len(published)
        ):
            for el in published:
                parent = _xml.remove(el)
                if parent is not None and len(parent) == 0:  # (one at least, says the schema)
                    _xml.remove(parent)
            pkg.touch(main)
        for dn in list(root.iter(*_xml.clark(S, "definedName"))):
            text, flattened = _formula_text(dn)
            if flattened:
                pkg.touch(main)
            drop, new_text = _judge_formula(text, ext_map, report)
            if drop:
                _remove_and_prune(dn)
                pkg.touch(main)
            elif new_text != text:
                dn.text = new_text
                pkg.touch(main)
        if changed_any:
            _drop_calc_chain(pkg, main)


#: Formulas outside cells and names, by local name: elements (a table column's
#: formula, a form control's VML link), attributes (a form control's links, a
#: shape's text link); and chart series references (``c:f``).
_FORMULA_ELEMENTS = frozenset(
    {"calculatedColumnFormula", "totalsRowFormula", "FmlaLink", "FmlaRange", "FmlaTxbx"}
    | {"FmlaGroup", "FmlaPict"}
)
_FORMULA_ATTRIBUTES = ("fmlaLink", "fmlaRange", "fmlaTxbx", "fmlaGroup", "textlink")
#: Formulas of conditional formats and data validations (their x14 forms hold xm:f),
#: by local name: a risky one takes its rule with it (a rule without its formula is
#: one Excel repairs).
_RULE_FORMULAS = frozenset({"formula", "formula1", "formula2"})
_RULES = frozenset({"cfRule", "dataValidation"})
#: What holds a rule's xm:f: the rule, its formula, a threshold (x14:cfvo).
_RULE_HOLDERS = _RULES | _RULE_FORMULAS | {"cfvo"}
_CHART = "http://schemas.openxmlformats.org/drawingml/2006/chart"
#: Chart extensions of Office 2013 (data labels from a range: c15:datalabelsRange...)
#: and Office 2016 charts (chartex: waterfall, treemap...), whose c15:f and cx:f are
#: references as c:f is.
_C15 = "http://schemas.microsoft.com/office/drawing/2012/chart"
_CHARTEX = "http://schemas.microsoft.com/office/drawing/2014/chartex"
#: (An element's name ends at white space, "/" or ">": a line break after it hid
#: ``<formula\n>``.)
_FORMULA_NAMES = re.compile(
    rb"calculatedColumnFormula|totalsRowFormula|Fmla(?:Link|Range|Txbx|Group|Pict)"
    rb"|fmla(?:Link|Range|Txbx|Group)|textlink|webPublishItem|cfvo|cfRule|dataValid"
    rb"|<(?:\w+:)?f[\s/>]|<(?:\w+:)?formula[12]?[\s/>]"
)
#: The same in a worksheet, whose <f> elements are its cells' (judged by _formulas):
#: tested on its own (a sheet with a colour scale's formula threshold and no other
#: formula matched neither test in turn).
_SHEET_FORMULA_NAMES = (
    *(b"Fmla", b"fmla", b"textlink", b"webPublishItem", b"cfRule", b"dataValid"),
    b"sparkline",
)
#: A sparkline's data range and its group's date range (x14, xm:f): LibreOffice loads
#: a document a sparkline's range names, as a cell's.
_SPARKLINE_HOLDERS = frozenset({"sparkline", "sparklineGroup"})


def _other_formulas(pkg: Package, report: Report, ext_map: dict[int, int | None]) -> None:
    """Formulas a workbook keeps elsewhere than in cells and names (tables, form
    controls, shapes, web publishing of a sheet, charts): judged as cell formulas are.
    A risky one goes: the element, the attribute, or a chart reference becomes the
    literal values it caches."""
    main = pkg.main_part()
    if main is None or pkg.root_local(main) != "workbook":
        return
    for name in pkg.kept():
        if name == main or not pkg.is_xml(name):
            continue
        if pkg.has_root(name, S, "worksheet"):
            if not pkg.mentions(name, *_SHEET_FORMULA_NAMES):
                continue  # (a big sheet is walked only when it may hold such a formula)
        elif not pkg.mentions(name, _FORMULA_NAMES):
            continue
        root = pkg.root(name)
        if root is None:
            continue
        changed = False
        for el in list(root.iter(etree.Element)):
            ns, local = split(el.tag)
            rule = _rule_formula(el, local, ns)
            if rule or _sparkline_formula(el, local, ns):
                text, flattened = _formula_text(el)
                changed = changed or flattened
                drop, new_text = _judge_formula(text, ext_map, report)
                if drop:
                    # (a rule, or a sparkline, goes with its formula)
                    (_drop_rule if rule else _drop_sparkline)(el)
                    changed = True
                elif new_text != text:
                    el.text = new_text
                    changed = True
            elif local in _FORMULA_ELEMENTS or (local == "f" and ns == _CHART):
                text, flattened = _formula_text(el)
                changed = changed or flattened
                drop, new_text = _judge_formula(text, ext_map, report)
                if drop:
                    if local == "f":
                        _chart_literal(el)
                    else:
                        _xml.remove(el)
                    changed = True
                elif new_text != text:
                    el.text = new_text
                    changed = True
            elif local == "f" and (ns == _C15 or ns == _CHARTEX):
                text, flattened = _formula_text(el)
                changed = changed or flattened
                drop, new_text = _judge_formula(text, ext_map, report)
                if drop:
                    _drop_chart_extension_formula(el, ns)
                    changed = True
                elif new_text != text:
                    el.text = new_text
                    changed = True
            elif local == "cfvo" and el.get("val"):
                # a colour scale's, data bar's or icon set's threshold: a formula
                # (LibreOffice fetched a WEBSERVICE there when it drew the sheet)
                value = el.get("val") or ""
                drop, new_text = _judge_formula(value, ext_map, report)
                if drop:
                    _drop_rule(el)
                    changed = True
                elif new_text != value:
                    el.set("val", new_text)
                    changed = True
            elif local == "webPublishItem" and el.get("destinationFile"):
                if report.hit("external_hyperlinks", "web publishing destination"):
                    parent = _xml.remove(el)
                    if parent is not None and childless(parent):
                        _xml.remove(parent)
                    changed = True
            for attr in _FORMULA_ATTRIBUTES:
                value = el.get(attr)
                if value:
                    drop, new_text = _judge_formula(value, ext_map, report)
                    if drop:
                        del el.attrib[attr]
                        changed = True
                    elif new_text != value:
                        el.set(attr, new_text)
                        changed = True
        if changed:
            pkg.touch(name)


def _rule_formula(el: etree._Element, local: str, ns: str) -> bool:
    """Whether ``el`` is the formula of a conditional format or a data validation."""
    if local in _RULE_FORMULAS and ns in S:
        return True
    if local != "f" or ns == _CHART:
        return False  # (a worksheet's own <f> is a cell's: judged by _formulas)
    holder = el.getparent()
    return holder is not None and split(holder.tag)[1] in _RULE_HOLDERS


def _sparkline_formula(el: etree._Element, local: str, ns: str) -> bool:
    """Whether ``el`` is the range of a sparkline or of its group's dates."""
    if local != "f" or ns == _CHART:
        return False
    holder = el.getparent()
    return holder is not None and split(holder.tag)[1] in _SPARKLINE_HOLDERS


def _drop_sparkline(formula: etree._Element) -> None:
    """Remove the sparkline (or the group, for its date range) a formula belongs to,
    and the containers it empties: a group without sparklines, the groups' extension."""
    holder = formula.getparent()
    if holder is None:
        return
    if split(holder.tag)[1] == "sparkline":
        sparklines = _xml.remove(holder)
        if sparklines is None or not childless(sparklines):
            return
        holder = sparklines.getparent()
        if holder is None:
            _xml.remove(sparklines)
            return
    groups = _xml.remove(holder)
    if groups is not None and childless(groups):
        prune_up(_xml.remove(groups))


def _drop_rule(formula: etree._Element) -> None:
    """Remove the rule (cfRule, dataValidation) a formula belongs to, its emptied
    container with it, and keep a dataValidations count right."""
    rule = formula.getparent()
    while rule is not None and split(rule.tag)[1] not in _RULES:
        rule = rule.getparent()
    if rule is None:
        _xml.remove(formula)
        return
    container = _xml.remove(rule)
    if container is None:
        return
    if childless(container) or all(split(c.tag)[1] == "sqref" for c in container):
        prune_up(_xml.remove(container))
    elif container.get("count") is not None:
        container.set("count", str(sum(1 for c in container if split(c.tag)[1] in _RULES)))


def _drop_chart_extension_formula(f: etree._Element, ns: str) -> None:
    """A risky c15:f or cx:f goes. An Office 2013 chart extension (data labels from
    a range, a full reference...) goes whole: the c:ext holding it, which a reader
    may ignore. A chartex reference keeps the values it caches (cx:lvl, cx:v)."""
    if ns == _CHARTEX:
        _xml.remove(f)
        return
    holder = next((a for a in f.iterancestors() if split(a.tag)[1] == "ext"), None)
    prune_up(_xml.remove(holder if holder is not None else f))


def _chart_literal(f: etree._Element) -> None:
    """A chart reference (``c:numRef``/``c:strRef``) whose formula goes becomes the
    literal values it caches (``c:numLit``/``c:strLit``); any other holder goes."""
    ref = f.getparent()
    if ref is None:
        return
    local = split(ref.tag)[1]
    if local not in ("numRef", "strRef"):
        prune_up(_xml.remove(ref))
        return
    ref.tag = f"{{{_CHART}}}{'numLit' if local == 'numRef' else 'strLit'}"
    _xml.remove(f)
    for cache in [c for c in ref if split(c.tag)[1] in ("numCache", "strCache")]:
        for child in list(cache):
            cache.addprevious(child)
        _xml.remove(cache)
    for ext in [c for c in ref if split(c.tag)[1] == "extLst"]:
        _xml.remove(ext)


_BLANKED = {'"': '""', "'": "''", "[": "[]"}


def _local_indirects(pieces: list[str]) -> int:
    """How many INDIRECT calls of a formula (its pieces, see _FORMULA_TOKEN) read a
    string literal naming a reference within the workbook, and nothing else (one
    reading a computed text may read a document's name: it is judged)."""
    found = 0
    for i, piece in enumerate(pieces[:-2]):
        if piece[0] in "\"'[" or not _INDIRECT_ON_LITERAL.search(piece):
            continue
        literal, after = pieces[i + 1], pieces[i + 2]
        if (
            literal[0] == '"'
            and _LOCAL_REFERENCE.fullmatch(literal[1:-1].replace('""', '"'))
            and after.lstrip()[:1] in (")", ",")  # (then only the A1/R1C1 flag)
        ):
            found += 1
    return found


def _names_document(piece: str) -> bool:
    """Whether a piece of a formula (see _FORMULA_TOKEN) is a quoted sheet name that
    names a document (see _DOCUMENT_CHARACTERS)."""
    if len(piece) < 2 or piece[0] != "'":
        return False
    name = piece[1:-1]
    index = _EXTERNAL_INDEX.match(name)
    if index is not None:
        name = name[index.end() :]
    return _DOCUMENT_CHARACTERS.search(name) is not None


def _bracket_names_document(pieces: list[str], i: int) -> bool:
    """Whether ``pieces[i]`` (see _FORMULA_TOKEN) is a bracketed document name, not an
    external link's index ([1]Sheet1!A1, renumbered) nor a table's columns."""
    piece = pieces[i]
    if len(piece) < 2 or piece[0] != "[" or piece[1:-1].isdigit():
        return False
    return _AFTER_DOCUMENT.match("".join(pieces[i + 1 : i + 3])) is not None


def _judge_formula(text: str, ext_map: dict[int, int | None], report: Report) -> tuple[bool, str]:
    """(drop the formula?, the formula with external workbook indexes renumbered).
    Its strings and quoted sheet names are read as Excel reads them: a '"' in a
    sheet name ('a"b'!A1) once opened a string that hid a DDE call after it."""
    pieces = _FORMULA_TOKEN.findall(text)
    if any(p in ('"', "'", "[", "]") for p in pieces):
        # a quote or bracket that closes nothing: code and text cannot be told apart
        if report.hit("dynamic_data_exchange", "formula with an unclosed quote"):
            return True, text
    # (strings, sheet names and bracketed names blanked: none is code)
    bare = "".join(_BLANKED.get(p[0], p) if len(p) > 1 else p for p in pieces)
    # app|'topic'!item: a DDE remote reference (a "|" outside strings means nothing else)
    if "|" in bare and report.hit("dynamic_data_exchange", "DDE remote reference formula"):
        return True, text
    # (only a quoted sheet name or a bracket can name a document: most formulas have
    # neither, and are not looked at piece by piece)
    documents = ("'" in text and any(_names_document(p) for p in pieces)) or (
        "[" in text
        and any(_bracket_names_document(pieces, i) for i, p in enumerate(pieces) if p[0] == "[")
    )
    if documents and report.hit("external_hyperlinks", "external workbook reference formula"):
        return True, text
    # a HYPERLINK to a cell is internal only when every HYPERLINK call of it is one
    cell_links = len(_CELL_LINK.findall(text))
    # (the risky functions called, in order, by their ASCII names)
    calls = [
        (n if n.isascii() else n.translate(_ASCII_LETTERS)).upper() for n in _FUNCTION.findall(bare)
    ]
    local = _local_indirects(pieces) if "INDIRECT" in calls else 0
    for keyword in calls:
        verdict = RISKY_FUNCTIONS[keyword]
        if keyword == "HYPERLINK" and cell_links >= calls.count("HYPERLINK"):
            verdict = ("internal_hyperlinks", "HYPERLINK formula to a cell")
        elif keyword == "INDIRECT" and local >= calls.count("INDIRECT"):
            continue  # (every one reads a reference within the workbook)
        if report.hit(*verdict):
            return True, text
    if not ext_map or "[" not in text:
        return False, text
    drop = False

    def renumber(m: re.Match[str]) -> str:
        nonlocal drop
        index = int(m.group(1))
        if index not in ext_map:
            return m.group(0)
        new = ext_map[index]
        if new is None:
            drop = True
            return m.group(0)
        return f"[{new}]"

    # (in code and in quoted sheet names, '[1]Sheet 1'!A1; never in a string)
    out = "".join(p if p[0] == '"' else _BOOK_INDEX.sub(renumber, p) for p in pieces)
    if drop:
        return True, text
    return False, out


def _formula_text(el: etree._Element) -> tuple[str, bool]:
    """The text of a formula element (a cell's, a name's, a rule's...), and whether the
    element changed. A formula is text alone; one with child elements is read
    differently by readers (LibreOffice took the text after the last child of
    ``<f>1+1<v/>INDIRECT(...)</f>``, and joined ``INDI<x/>RECT(...)``), so it becomes
    the text of all its pieces, which is what is judged and what is written."""
    if not len(el):
        return el.text or "", False
    text = "".join(el.itertext())
    for child in list(el):
        el.remove(child)
    el.text = text
    return text, True


def _drop_formula(f: etree._Element) -> None:
    cell = _xml.remove(f)
    if cell is None or cell.get("t") != "str":
        return
    # a formula string result becomes an inline string
    ns = split(cell.tag)[0]
    value = next((c for c in cell if split(c.tag)[1] == "v"), None)
    text = value.text if value is not None else ""
    if value is not None:
        _xml.remove(value)
    inline = etree.Element(f"{{{ns}}}is")
    etree.SubElement(inline, f"{{{ns}}}t").text = text or ""
    cell.insert(0, inline)
    cell.set("t", "inlineStr")


# -------------------------------------------------------------------- metadata


def _metadata(pkg: Package, report: Report) -> None:
    for rel in list(pkg.rels_of("").values()):
        if not rel.part or rel.part in pkg.removed:
            continue
        root = pkg.root(rel.part)
        if rel.type == "metadata/core-properties" and root is not None:
            if any((c.text or "").strip() or len(c) for c in root):
                if report.hit("metadata", "document properties"):
                    for child in list(root):
                        root.remove(child)
                    root.text = None
                    pkg.touch(rel.part)
        elif rel.type == "extended-properties" and root is not None:
            personal = [c for c in root if split(c.tag)[1] not in APP_KEEP]
            if personal and report.hit("metadata", "application properties", n=len(personal)):
                for child in personal:
                    _xml.remove(child)
                pkg.touch(rel.part)
        elif rel.type == "custom-properties":
            if report.hit("metadata", "custom properties"):
                pkg.drop_rel(rel)


# ---------------------------------------------------------------------- images


def _images_(pkg: Package, report: Report) -> None:
    """Images: by their content type, and the parts an image relationship names
    whatever their content type says (an SVG with a script served as application/xml
    was kept: LibreOffice drew it). Such a part is rebuilt as a PNG (or replaced by
    the placeholder), its content type with it."""
    policy = report.policy("embedded_images")
    reencode = _images.Reencoder()
    pictures = {
        rel.part for rel in pkg.all_rels() if rel.type == "image" and not rel.external and rel.part
    }
    for name in pkg.kept():
        ct = pkg.content_type(name).lower()
        if not ct.startswith("image/"):
            if name not in pictures:
                continue
            ct = "image/png"  # (rebuilt as a PNG, whatever it holds)
            if policy == "sanitise":
                pkg.set_content_type(name, ct)
        if ct == "image/svg+xml":
            # removed: a picture with an SVG keeps its PNG fallback (a:blip r:embed)
            if report.hit("embedded_images", "SVG image"):
                pkg.remove_part(name)
            continue
        if policy != "sanitise":
            report.hit("embedded_images", "image")
            continue
        fmt = _images.FORMATS.get(ct)
        data = reencode(pkg.data[name], fmt) if fmt else None
        if data is None:
            report.hit("embedded_images", "image replaced by a blank placeholder", "neutralised")
            data = _images.PLACEHOLDER_PNG
            pkg.set_content_type(name, "image/png")
        else:
            report.hit("embedded_images", "image re-encoded", "neutralised")
        pkg.data[name] = data
        pkg.dirty.discard(name)  # (a part read as XML before: its bytes are these now)
