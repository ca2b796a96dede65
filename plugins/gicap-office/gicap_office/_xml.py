"""Hardened XML parsing and the namespaces of OOXML, shared by the OOXML engine.

Every XML part is parsed with :data:`PARSER`: no entity resolution, no DTD loading, no
network, no "huge tree" (lxml then refuses text nodes over 10 MB and absurd nesting).
A part that declares a DOCTYPE at all is refused: OOXML never uses one, so a DOCTYPE
can only be an attempt at entity expansion or external fetches in some other reader.
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_blank_text=False,
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
)


class XMLRefused(ValueError):
    """A part is not acceptable XML (malformed, or declares a DOCTYPE)."""


def parse(data: bytes, name: str, lenient: bool = False) -> etree._ElementTree:
    """Parse one part; :class:`XMLRefused` when malformed or carrying a DOCTYPE."""
    try:
        root = etree.fromstring(data, PARSER)
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


def remove(el: etree._Element) -> etree._Element | None:
    """Detach ``el`` (keeping its tail text); returns the former parent."""
    parent = el.getparent()
    if parent is None:
        return None
    tail = el.tail
    if tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)
    return parent


def unwrap(el: etree._Element) -> etree._Element | None:
    """Replace ``el`` by its children (a hyperlink by its runs, an insertion by its
    content); returns the former parent."""
    parent = el.getparent()
    if parent is None:
        return None
    if el.text:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.text
        else:
            parent.text = (parent.text or "") + el.text
        el.text = None
    for child in list(el):
        el.addprevious(child)  # lxml moves the child's tail text along with it
    return remove(el)
