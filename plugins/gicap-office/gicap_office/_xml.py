"""Hardened XML parsing and the namespaces of OOXML, shared by the OOXML engine.

Every XML part is parsed with :data:`PARSER`: no entity resolution, no DTD loading, no
network, no "huge tree" (lxml then refuses text nodes over 10 MB and absurd nesting).
A part that declares a DOCTYPE at all is refused: OOXML never uses one, so a DOCTYPE
can only be an attempt at entity expansion or external fetches in some other reader.
:func:`check` gives the same verdict without building a tree when it can.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

from lxml import etree

#: Comments and processing instructions are not read into trees: the text around one
#: is one text to Office and LibreOffice (``WEB<!-- -->SERVICE(...)`` is WEBSERVICE;
#: read as the text before the comment, it passed). A part changed is written without
#: them; one left as it was was judged as the readers read it.
PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_blank_text=False,
    remove_comments=True,
    remove_pis=True,
)
#: VML written by Office is not always well-formed XML (Excel writes ``<br>`` in notes);
#: Office reads it leniently, so a recovering parser (still without entities, DTDs or
#: network) is used for ``.vml`` parts only, after the strict one failed.
RECOVER_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    recover=True,
    remove_comments=True,
    remove_pis=True,
)


class XMLRefused(ValueError):
    """A part is not acceptable XML (malformed, or declares a DOCTYPE)."""


def parse(data: bytes, name: str, lenient: bool = False) -> etree._ElementTree:
    """Parse one part; :class:`XMLRefused` when malformed or carrying a DOCTYPE."""
    try:
        root = etree.fromstring(data, PARSER)
        # lxml raises only when libxml2's last message is an error: an error followed
        # by a warning (an undeclared prefix, then xml:space="x") would pass, with an
        # element named "w:instrText" in no namespace that Office may read otherwise.
        errors = [e for e in PARSER.error_log if e.level >= etree.ErrorLevels.ERROR]
        if errors:
            raise etree.XMLSyntaxError(errors[0].message, errors[0].type, errors[0].line, 0)
    except etree.XMLSyntaxError as exc:
        if not lenient:
            raise XMLRefused(f"malformed XML in {name}: {exc}") from None
        try:
            root = etree.fromstring(data, RECOVER_PARSER)
        except etree.XMLSyntaxError as exc2:
            raise XMLRefused(f"malformed XML in {name}: {exc2}") from None
        if root is None:
            raise XMLRefused(f"malformed XML in {name}: {exc}") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise XMLRefused(f"{name} declares a DOCTYPE (never used by Office)")
    return tree


class _NoTree:
    """A parser target that builds nothing: libxml2 still checks the whole part
    (well-formedness, namespaces, limits of the parser itself)."""

    def doctype(self, *args: object) -> None:
        raise XMLRefused("DOCTYPE")  # the full parse gives the verdict and its message

    def close(self) -> None:
        return None


_local = threading.local()


def _checker() -> etree.XMLParser:
    """:data:`PARSER`'s options, building no tree (see :func:`check`); one per thread,
    as its error log is read after each parse."""
    parser = getattr(_local, "checker", None)
    if parser is None:
        parser = _local.checker = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_blank_text=False,
            target=_NoTree(),
        )
    return parser


#: Largest part :func:`check` reads without a tree. Building the tree also refuses a
#: text node over 10,000,000 bytes (UTF-8); one input byte gives at most 4 bytes of
#: UTF-8, so a part up to this size cannot hold one.
CHECK_LIMIT = 2_500_000


def check(data: bytes, name: str, lenient: bool = False) -> etree._ElementTree | None:
    """Refuse a part exactly as :func:`parse` does, building its tree only when needed
    to decide: ``None`` when the part is accepted (its tree is parsed later, if some
    step needs it), else :func:`parse`'s tree (or its :class:`XMLRefused`).

    Without a tree, libxml2 leaves out the checks of its tree builder: the ``xml:id``
    attributes and the size of text nodes. So a part is read without a tree only when
    it is in an ASCII-compatible encoding (``xml:id`` is then written as those bytes)
    with no ``xml:id``, and no bigger than :data:`CHECK_LIMIT`; and it is accepted only
    when that parse reports nothing at all (no error, no warning, no DOCTYPE). Anything
    else is parsed into its tree, as before.

    One difference is left: libxml2 counts the nesting limit one level further without
    a tree, so a part nested exactly 257 levels deep passes here where the tree builder
    refuses it (258 and more are refused by both). Such a part is never walked (a step
    that reads a part builds its tree, and is refused then) and holds none of the names
    the prechecks look for; it is written out as read."""
    if len(data) <= CHECK_LIMIT and b"xml:id" not in data and ascii_compatible(data):
        checker = _checker()
        try:
            etree.fromstring(data, checker)
        except Exception:  # the full parse below decides
            pass
        else:
            if len(checker.error_log) == 0:
                return None
    return parse(data, name, lenient)


#: The XML declaration, in full (libxml2 reads the encoding from it).
_DECLARATION = re.compile(
    rb"""<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:"[^"<>]*"|'[^'<>]*')"""
    rb"""(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*"""
    rb"""(?:"([A-Za-z][A-Za-z0-9._-]*)"|'([A-Za-z][A-Za-z0-9._-]*)'))?"""
    rb"""(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:"[^"<>]*"|'[^'<>]*'))?[ \t\r\n]*\?>"""
)
_ASCII_ENCODINGS = {
    b"utf-8",
    b"utf8",
    b"us-ascii",
    b"ascii",
    b"iso-8859-1",
    b"latin1",
    b"windows-1252",
}


def ascii_compatible(data: bytes) -> bool:
    """Whether libxml2 reads ``data`` in an encoding where every ASCII character is
    its own byte (so element and attribute names, which cannot be written with
    character references, appear as their bytes). libxml2 takes the encoding from a
    byte order mark, from the first four bytes (``<\\0?\\0`` is UTF-16, ``<\\0\\0\\0``
    UCS-4), then from the XML declaration: anything not proven ASCII-compatible
    (including a declaration this cannot read) answers ``False``."""
    head = data.removeprefix(b"\xef\xbb\xbf")
    if not head.startswith(b"<") or head[1:2] == b"\x00":
        return False
    if not (head.startswith(b"<?xml") and head[5:6] in (b" ", b"\t", b"\r", b"\n")):
        return True  # no declaration: UTF-8
    m = _DECLARATION.match(head)
    if m is None:
        return False
    encoding = m.group(1) or m.group(2)
    return encoding is None or encoding.lower() in _ASCII_ENCODINGS


#: The local name of a well-formed part's root element, from its bytes: after the
#: prolog (white space, comments, processing instructions; a DOCTYPE is refused). Each
#: piece of the prolog ends at its first terminator and is never given back (possessive
#: repetition): linear time whatever the bytes.
_ROOT_NAME = re.compile(
    rb"(?:\xef\xbb\xbf)?"
    rb"(?:[ \t\r\n]|<\?(?:[^?]|\?(?!>))*+\?>|<!--(?:[^-]|-(?!->))*+-->)*+"
    rb"<(?:[^ \t\r\n/>:]++:)?([A-Za-z_][A-Za-z0-9._-]*+)[ \t\r\n/>]"
)


def root_local(data: bytes) -> str | None:
    """The local name of the root element of a part that :func:`check` accepted, read
    from its bytes; ``None`` when it cannot be told that way (another encoding, a
    name beyond ASCII)."""
    if not ascii_compatible(data):
        return None
    m = _ROOT_NAME.match(data)
    return m.group(1).decode("ascii") if m else None


def serialise(tree: etree._ElementTree) -> bytes:
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8", standalone=True)


# ------------------------------------------------------------------- namespaces

# Transitional and ISO strict namespaces of each vocabulary, as sets of URIs.
W = frozenset(
    {
        "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
        "http://purl.oclc.org/ooxml/wordprocessingml/main",
    }
)
S = frozenset(
    {
        "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
        "http://purl.oclc.org/ooxml/spreadsheetml/main",
    }
)
P = frozenset(
    {
        "http://schemas.openxmlformats.org/presentationml/2006/main",
        "http://purl.oclc.org/ooxml/presentationml/main",
    }
)
A = frozenset(
    {
        "http://schemas.openxmlformats.org/drawingml/2006/main",
        "http://purl.oclc.org/ooxml/drawingml/main",
    }
)
R = frozenset(
    {
        "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
        "http://purl.oclc.org/ooxml/officeDocument/relationships",
    }
)
MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
VML = "urn:schemas-microsoft-com:vml"
O = "urn:schemas-microsoft-com:office:office"  # noqa: E741 - the VML "o:" prefix
X = "urn:schemas-microsoft-com:office:excel"
PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
CT = "http://schemas.openxmlformats.org/package/2006/content-types"
CORE = "http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
SVG_BLIP = "http://schemas.microsoft.com/office/drawing/2016/SVG/main"

#: Word's main namespace (transitional), used for the elements this engine writes.
W_MAIN = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def clark(namespaces: Iterable[str], local: str) -> list[str]:
    """``{ns}local`` for each namespace (for ``iter(*tags)``)."""
    return [f"{{{ns}}}{local}" for ns in namespaces]


def split(tag: object) -> tuple[str, str]:
    """(namespace, local name) of an element tag; ("", "") for comments and PIs."""
    if not isinstance(tag, str):
        return "", ""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def is_(el: etree._Element, namespaces: frozenset[str] | str, local: str) -> bool:
    ns, name = split(el.tag)
    if name != local:
        return False
    return ns == namespaces if isinstance(namespaces, str) else ns in namespaces


def wattr(el: etree._Element, local: str) -> str | None:
    """A ``w:`` attribute in either Word namespace."""
    for ns in W:
        value = el.get(f"{{{ns}}}{local}")
        if value is not None:
            return value
    return None


def rattr(el: etree._Element, local: str) -> str | None:
    """An ``r:`` attribute (relationship id) in either namespace."""
    for ns in R:
        value = el.get(f"{{{ns}}}{local}")
        if value is not None:
            return value
    return None


_R1, _R2 = sorted(R)
#: XPath returning every relationship-id attribute of a part: any attribute in the
#: relationships namespaces, plus VML's ``o:relid``. (Namespace node tests, not a
#: predicate on every attribute: libxml2 evaluates them several times faster.) A union
#: is returned in document order, like a single path.
_REF_XPATH = etree.XPath(
    "//@r1:* | //@r2:* | //@o:relid", namespaces={"r1": _R1, "r2": _R2, "o": O}
)


def rel_refs(tree: etree._ElementTree | etree._Element) -> list[etree._ElementUnicodeResult]:
    """Every relationship-id attribute (value, with ``getparent()``/``attrname``)."""
    return list(_REF_XPATH(tree))  # type: ignore[arg-type]


def ref_ids(tree: etree._ElementTree | etree._Element) -> set[str]:
    return {str(v) for v in rel_refs(tree)}


#: Text between elements kept when they are removed, at most this much in one place.
#: Office reads no character data outside its text elements (w:t, a:t...), which
#: hold no elements: such text only has to survive as it was, within reason (each
#: removal appended it to the same string again: 60,000 removed comment marks, each
#: followed by 8 letters, took 23 s).
TAIL_LIMIT = 4096


def _keep_text(parent: etree._Element, prev: etree._Element | None, text: str) -> None:
    """Append ``text`` after ``prev`` (a child of ``parent``; None: at its start)."""
    if prev is not None:
        before = prev.tail or ""
        if len(before) < TAIL_LIMIT:
            prev.tail = before + text[: TAIL_LIMIT - len(before)]
    else:
        before = parent.text or ""
        if len(before) < TAIL_LIMIT:
            parent.text = before + text[: TAIL_LIMIT - len(before)]


def remove(el: etree._Element) -> etree._Element | None:
    """Detach ``el`` (keeping its tail text: see ``TAIL_LIMIT``); returns the former
    parent."""
    parent = el.getparent()
    if parent is None:
        return None
    tail = el.tail
    if tail:
        _keep_text(parent, el.getprevious(), tail)
    parent.remove(el)
    return parent


def unwrap(el: etree._Element) -> etree._Element | None:
    """Replace ``el`` by its children (a hyperlink by its runs, an insertion by its
    content); returns the former parent."""
    parent = el.getparent()
    if parent is None:
        return None
    if el.text:
        _keep_text(parent, el.getprevious(), el.text)
        el.text = None
    for child in list(el):
        el.addprevious(child)  # lxml moves the child's tail text along with it
    return remove(el)
