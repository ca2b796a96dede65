"""An OPC package (the zip behind every OOXML file) as parts, relationships and content
types, with the bookkeeping that keeps it consistent while content is removed.

Removing content means removing *relationships* (and parts nothing reaches any more).
:meth:`Package.commit` then does what Office needs to open the result without a
repair prompt:

* an element that referred to a removed relationship is removed with it (a hyperlink is
  unwrapped to its text, an ActiveX or OLE ``w:object`` becomes a plain picture, a slide
  OLE frame is removed, empty containers such as ``<hyperlinks/>`` or an
  ``mc:AlternateContent`` whose choice became empty go too);
* a relationship that was only used by elements removed this way is removed too (the
  preview image of a removed OLE object, the image of a deleted tracked change);
* every part no relationship reaches from the package root is dropped, with its
  ``.rels`` part and its ``[Content_Types].xml`` override; defaults for extensions no
  longer used go as well.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote

from lxml import etree

from gicap_office import _xml
from gicap_office._xml import MC, PKG_RELS, A, P, S, W, is_, split
from gicap_office._zip import ZipContent

_T = TypeVar("_T")

CONTENT_TYPES = "[content_types].xml"


#: A relationship target that names something outside the package: a URL (a scheme
#: and ":"), a network path ("\\\\host", "//host") or a drive ("c:").
_LOOKS_EXTERNAL = re.compile(r"\s*(?:[A-Za-z][A-Za-z0-9+.-]*:|[\\/]{2})")


def looks_external(target: str) -> bool:
    """Whether a target names something outside the package (percent-escapes read)."""
    return bool(_LOOKS_EXTERNAL.match(target) or _LOOKS_EXTERNAL.match(unquote(target)))


class PackageRefused(ValueError):
    """The package is malformed beyond repair (or cannot be rebuilt)."""


#: Relationship types whose target is binary content, read by the steps that judge it
#: (pictures, fonts, media, OLE objects and packages, VBA and ActiveX binaries, printer
#: settings), never as XML.
BINARY_RELATIONSHIPS = frozenset(
    """
    image font oleObject package vbaProject vbaProjectSignature
    activeXControlBinary attachedToolbars audio video media printerSettings
    metadata/thumbnail
    """.split()
)
#: The start of an XML part: a byte-order mark, white space and "<" in UTF-8; "<" (or
#: a byte-order mark) in UTF-16 or UTF-32.
_XML_START = re.compile(
    rb"(?:\xef\xbb\xbf)?[ \t\r\n]*+<|\xff\xfe|\xfe\xff|\x00\x00\xfe\xff"
    rb"|(?:[ \t\r\n]\x00)*+<\x00|(?:\x00[ \t\r\n])*+\x00<|\x00\x00\x00<"
)


def short_type(rel_type: str) -> str:
    """``.../relationships/hyperlink`` -> ``hyperlink``, ``.../relationships/ui/extensibility``
    -> ``ui/extensibility``: the same short name for transitional, strict and Microsoft
    extension namespaces."""
    at = rel_type.rfind("/relationships/")
    return rel_type[at + 15 :] if at >= 0 else rel_type.rsplit("/", 1)[-1]


@dataclass
class Rel:
    source: str  # source part ("" for the package itself)
    id: str
    type: str  # short type
    target: str
    external: bool
    elem: etree._Element
    part: str | None  # the target part, for internal relationships that resolve


def rels_name(part: str) -> str:
    folder, base = posixpath.split(part)
    return posixpath.join(folder, "_rels", base + ".rels")


def _rels_source(name: str) -> str | None:
    """The source part of a ``.rels`` part name, or ``None`` if it is not one."""
    folder, base = posixpath.split(name)
    if not base.lower().endswith(".rels") or posixpath.basename(folder).lower() != "_rels":
        return None
    return posixpath.join(posixpath.dirname(folder), base[:-5]) if base != ".rels" else ""


class Package:
    def __init__(self, content: ZipContent, walked: Collection[str] = ()) -> None:
        """``walked``: local names of root elements whose parts the caller walks
        whatever they hold: parsed into their tree at once (the others are checked by
        the parser, their tree built when first asked for)."""
        self.order = list(content.members)
        self.data: dict[str, bytes] = dict(content.members)
        self._searched: dict[tuple[str, bytes], tuple[bytes, bool]] = {}
        self._ascii: dict[str, tuple[bytes, bool]] = {}
        self._root_locals: dict[str, tuple[bytes, str | None]] = {}
        self.names = {n.lower(): n for n in self.data}
        ct_name = self.names.get(CONTENT_TYPES)
        if ct_name is None:
            raise PackageRefused("no [Content_Types].xml: not an OOXML package")
        self.ct_name = ct_name
        self.ct_tree = _xml.parse(self.data[ct_name], ct_name)
        self.defaults: dict[str, etree._Element] = {}
        self.overrides: dict[str, etree._Element] = {}
        self.ct_dirty = False
        #: elements of the content types and relationship parts that are no entry of
        #: theirs (or inside one), dropped
        self.strays = 0
        for el in list(self.ct_tree.getroot()):
            _, local = split(el.tag)
            if local == "Default" and el.get("Extension"):
                table, key = self.defaults, el.get("Extension", "").lower()
            elif local == "Override" and el.get("PartName"):
                table, key = self.overrides, unquote(el.get("PartName", "")).lstrip("/").lower()
            else:
                # (nothing else belongs there; a reader of every element, msodde, finds
                # what it holds: dropped, as the children of the entries below)
                _xml.remove(el)
                self.ct_dirty = True
                self.strays += 1
                continue
            if len(el):
                for child in list(el):
                    el.remove(child)
                self.ct_dirty = True
                self.strays += 1
            if key in table:
                # two content types for one part: readers may pick either one
                if table[key].get("ContentType") != el.get("ContentType"):
                    raise PackageRefused(f"conflicting content types for {key!r}")
                _xml.remove(el)
                self.ct_dirty = True
                continue
            table[key] = el

        self.rels_parts: dict[str, str] = {}  # source -> rels part name
        self.rels: dict[str, dict[str, Rel]] = {}
        #: parsed trees; a part :func:`_xml.check` accepted is parsed when first asked
        #: for (:meth:`tree`)
        self.trees: dict[str, etree._ElementTree] = {}
        #: parts read as XML (each one checked, or parsed, here)
        self.xml_parts: set[str] = set()
        self.parts: list[str] = []
        for name in self.order:
            if name == ct_name:
                continue
            source = _rels_source(name)
            if source is not None:
                # (part names compare without case: "_rels/Document.xml.rels" holds the
                # relationships of "document.xml"; two names in one case are refused
                # as duplicates when the zip is read)
                source = self.names.get(source.lower(), source) if source else source
                self.rels_parts[source] = name
                continue
            self.parts.append(name)
        for source, name in self.rels_parts.items():
            self.trees[name] = _xml.parse(self.data[name], name)
            self.rels[source] = self._read_rels(source, self.trees[name])
        if "" not in self.rels:
            raise PackageRefused("no _rels/.rels: not an OOXML package")
        #: parts with relationships when read
        self._with_rels = {name for name in self.parts if self.rels.get(name)}
        #: relationship ids each part referred to when read (see :meth:`commit`): taken
        #: when its tree is parsed, before any change
        self.refs_before: dict[str, set[str]] = {}
        # (the relationship types each part is the target of: see _is_xml)
        targeted: dict[str, set[str]] = {}
        for rels in self.rels.values():
            for rel in rels.values():
                if rel.part is not None:
                    targeted.setdefault(rel.part, set()).add(rel.type)
        for name in self.parts:
            if self._is_xml(name, targeted.get(name, set())):
                self.xml_parts.add(name)
                data, lenient = self.data[name], self._lenient(name)
                if self.root_local(name) in walked:
                    tree: etree._ElementTree | None = _xml.parse(data, name, lenient)
                else:
                    tree = _xml.check(data, name, lenient)
                if tree is not None:
                    self._add_tree(name, tree)
        self.removed: set[str] = set()
        self.dirty: set[str] = set()
        self.drop: dict[str, set[str]] = {}
        for name in self.rels_parts.values():
            root = self.trees[name].getroot()
            for el in list(root):
                if not is_(el, PKG_RELS, "Relationship"):
                    root.remove(el)
                elif len(el):
                    for child in list(el):
                        el.remove(child)
                else:
                    continue
                self.strays += 1
                self.dirty.add(name)
        reach = self.reachable()
        self.initial_orphans = [n for n in self.parts if n not in reach]

    # ----------------------------------------------------------------- reading

    def _read_rels(self, source: str, tree: etree._ElementTree) -> dict[str, Rel]:
        out: dict[str, Rel] = {}
        for el in tree.getroot():
            if not is_(el, PKG_RELS, "Relationship"):
                continue
            rid, rtype, target = el.get("Id"), el.get("Type"), el.get("Target")
            if not rid or not rtype or target is None:
                raise PackageRefused(f"incomplete relationship in {rels_name(source)}")
            if rid in out:
                raise PackageRefused(f"duplicate relationship id {rid} in {rels_name(source)}")
            mode = (el.get("TargetMode") or "internal").strip().lower()
            if mode not in ("internal", "external"):
                # readers trim, fold or refuse it differently: " External" is
                # external to LibreOffice
                raise PackageRefused(
                    f"relationship {rid} in {rels_name(source)} has the target mode "
                    f"{el.get('TargetMode')!r}"
                )
            # A URL, a network path or a drive names nothing in the package, whatever
            # part a decoy gives its path (RFC 3986: never a relative reference)
            external = mode == "external" or looks_external(target)  # ("%5C%5Chost" too)
            part = None if external else self.resolve(source, target)
            out[rid] = Rel(source, rid, short_type(rtype), target, external, el, part)
        return out

    def resolve(self, source: str, target: str) -> str | None:
        path = target.split("#", 1)[0].replace("\\", "/")
        if not path:
            return None
        if path.startswith("/"):
            path = path.lstrip("/")
        else:
            path = posixpath.join(posixpath.dirname(source), path)
        path = posixpath.normpath(path)
        if path.startswith("..") or path == ".":
            return None
        for candidate in (path, unquote(path)):
            name = self.names.get(candidate.lower())
            if name is not None:
                return name
        return None

    def content_type(self, name: str) -> str:
        """The part's content type, white space around it left out (as detection and
        readers leave it out)."""
        override = self.overrides.get(name.lower())
        if override is not None:
            return override.get("ContentType", "").strip()
        base = posixpath.basename(name)
        if "." in base:
            default = self.defaults.get(base.rsplit(".", 1)[1].lower())
            if default is not None:
                return default.get("ContentType", "").strip()
        return ""

    def _is_xml(self, name: str, targeted_as: set[str]) -> bool:
        """Whether the part is read (checked, and walked by the steps) as XML: its
        content type or name says so, or its bytes start as XML do. Readers choose a
        part's parser by the relationship that reaches it, not by its content type: a
        worksheet declared ``application/octet-stream`` and named ``.dat`` is a
        worksheet to LibreOffice, its formulas evaluated. Only a part reached by
        relationships to binary content alone (pictures, fonts, OLE objects...) is
        left to those steps (an obfuscated font may start with "<")."""
        ct = self.content_type(name).lower()
        if (
            ct.endswith("xml")
            or ct.endswith(".vmldrawing")
            or name.lower().endswith((".xml", ".vml", ".rels"))
        ):
            return True
        if targeted_as and targeted_as <= BINARY_RELATIONSHIPS:
            return False
        return _XML_START.match(self.data[name]) is not None

    @staticmethod
    def _lenient(name: str) -> bool:
        return name.lower().endswith(".vml")

    def _add_tree(self, name: str, tree: etree._ElementTree) -> None:
        self.trees[name] = tree
        if name in self._with_rels:
            self.refs_before[name] = _xml.ref_ids(tree)

    def tree(self, name: str) -> etree._ElementTree | None:
        """A part's tree (parsed now if it was not yet), ``None`` for a part that is not
        XML."""
        tree = self.trees.get(name)
        if tree is None and name in self.xml_parts:
            tree = _xml.parse(self.data[name], name, lenient=self._lenient(name))
            self._add_tree(name, tree)
        return tree

    def is_xml(self, name: str) -> bool:
        return name in self.xml_parts

    def ascii_compatible(self, name: str) -> bool:
        return self._of_bytes(self._ascii, name, _xml.ascii_compatible)

    def root_local(self, name: str) -> str | None:
        """The local name of a part's root element (``None``: not known without its
        tree)."""
        tree = self.trees.get(name)
        if tree is not None:
            return split(tree.getroot().tag)[1]
        if name not in self.xml_parts:
            return None
        return self._of_bytes(self._root_locals, name, _xml.root_local)

    def _of_bytes(
        self, cache: dict[str, tuple[bytes, _T]], name: str, compute: Callable[[bytes], _T]
    ) -> _T:
        """``compute`` of a part's bytes, remembered until the part is replaced."""
        data = self.data[name]
        seen = cache.get(name)
        if seen is None or seen[0] is not data:
            seen = (data, compute(data))
            cache[name] = seen
        return seen[1]

    def has_root(self, name: str, namespaces: frozenset[str], *locals_: str) -> bool:
        """Whether a part's root element is one of these (its tree is parsed only when
        its root element's name, read from the bytes, is one of them)."""
        local = self.root_local(name)
        if local is not None and local not in locals_:
            return False
        root = self.root(name)
        if root is None:
            return False
        ns, local = split(root.tag)
        return ns in namespaces and local in locals_

    def mentions(self, name: str, *needles: bytes | re.Pattern[bytes]) -> bool:
        """Whether a part may contain one of these element/attribute names (bytes, or
        a pattern): a cheap test on the bytes before walking the tree. Only trusted for
        ASCII-compatible encodings: a part in UTF-16 (or any other encoding) is always
        walked. A pattern's answer is kept for the same bytes (several steps share one
        pattern as a first test)."""
        if not self.ascii_compatible(name):
            return True
        data = self.data[name]
        for needle in needles:
            if isinstance(needle, bytes):
                if needle in data:
                    return True
                continue
            key = (name, needle.pattern)
            seen = self._searched.get(key)
            if seen is None or seen[0] is not data:
                seen = (data, needle.search(data) is not None)
                self._searched[key] = seen
            if seen[1]:
                return True
        return False

    def reachable(self) -> set[str]:
        seen: set[str] = set()
        todo = [r.part for r in self.rels[""].values() if r.part]
        while todo:
            part = todo.pop()
            if part is None or part in seen or part in self.removed:
                continue
            seen.add(part)
            todo.extend(r.part for r in self.rels.get(part, {}).values() if r.part)
        return seen

    def kept(self) -> list[str]:
        return [n for n in self.parts if n not in self.removed]

    def rels_of(self, source: str) -> dict[str, Rel]:
        return self.rels.get(source, {})

    def all_rels(self) -> Iterator[Rel]:
        for source, rels in list(self.rels.items()):
            if source and source in self.removed:
                continue
            yield from list(rels.values())

    def main_part(self) -> str | None:
        for rel in self.rels[""].values():
            if rel.type == "officeDocument" and rel.part:
                return rel.part
        return None

    def root(self, name: str) -> etree._Element | None:
        tree = self.tree(name)
        return tree.getroot() if tree is not None else None

    def parts_with_root(self, namespaces: frozenset[str], *locals_: str) -> list[str]:
        return [name for name in self.kept() if self.has_root(name, namespaces, *locals_)]

    # --------------------------------------------------------------- changing

    def touch(self, name: str) -> None:
        self.dirty.add(name)

    def remove_part(self, name: str) -> None:
        if name == self.main_part():
            # only a crafted package refers to its main document as a macro, an
            # embedded object, a comment list...: there is nothing left to deliver
            raise PackageRefused(f"the main part {name} is referenced as removable content")
        self.removed.add(name)

    def drop_rel(self, rel: Rel) -> None:
        self.drop.setdefault(rel.source, set()).add(rel.id)

    def set_content_type(self, name: str, content_type: str) -> None:
        """Give one part its own content type (an Override)."""
        override = self.overrides.get(name.lower())
        if override is None:
            root = self.ct_tree.getroot()
            ns, _ = split(root.tag)
            override = etree.SubElement(root, f"{{{ns}}}Override" if ns else "Override")
            override.set("PartName", "/" + name)
            self.overrides[name.lower()] = override
        override.set("ContentType", content_type)
        self.ct_dirty = True

    def _remove_rels(self, source: str, ids: set[str]) -> None:
        rels = self.rels.get(source, {})
        for rid in ids:
            rel = rels.pop(rid, None)
            if rel is not None:
                _xml.remove(rel.elem)
        self.dirty.add(self.rels_parts.get(source, rels_name(source) if source else ""))

    def commit(self) -> None:
        """Apply the removals asked for so far (see the module docstring)."""
        for _ in range(50):
            changed = False
            for source in list(self.rels):
                if source and (source in self.removed):
                    continue
                rels = self.rels[source]
                wanted = self.drop.get(source, set())
                gone = {
                    rid
                    for rid, rel in rels.items()
                    if rid in wanted or (rel.part is not None and rel.part in self.removed)
                }
                if not gone:
                    continue
                self._remove_rels(source, gone)
                changed = True
                tree = self.tree(source) if source else None
                if tree is not None:
                    cleanup_references(tree, gone)
                    self.dirty.add(source)
            self.drop.clear()
            for name in list(self.dirty):
                before = self.refs_before.get(name)
                if not before or name in self.removed or name not in self.trees:
                    continue
                after = _xml.ref_ids(self.trees[name])
                lost = (before - after) & set(self.rels.get(name, {}))
                self.refs_before[name] = after
                if lost:
                    self._remove_rels(name, lost)
                    changed = True
            reach = self.reachable()
            unreachable = {n for n in self.parts if n not in reach} - self.removed
            if unreachable:
                self.removed |= unreachable
                changed = True
            if not changed:
                return
        raise PackageRefused("relationship clean-up did not settle")

    # ---------------------------------------------------------------- writing

    def _fix_content_types(self) -> None:
        kept = {n.lower() for n in self.kept()}
        for key, el in list(self.overrides.items()):
            if key not in kept:
                _xml.remove(el)
                del self.overrides[key]
                self.ct_dirty = True
        used = {posixpath.basename(n).rsplit(".", 1)[-1].lower() for n in kept if "." in n}
        used |= {"rels", "xml"}
        for ext, el in list(self.defaults.items()):
            if ext not in used:
                _xml.remove(el)
                del self.defaults[ext]
                self.ct_dirty = True

    def members(self) -> Iterator[tuple[str, bytes]]:
        """The rebuilt package: content types first, then the kept parts and their
        relationships, in the original order."""
        self._fix_content_types()
        yield (
            self.ct_name,
            _xml.serialise(self.ct_tree) if self.ct_dirty else self.data[self.ct_name],
        )
        kept = set(self.kept())
        for name in self.order:
            if name == self.ct_name:
                continue
            source = _rels_source(name)
            if source is not None:
                if (source and source not in kept) or not self.rels.get(source):
                    continue
            elif name not in kept:
                continue
            if name in self.dirty and name in self.trees:
                if source is None:
                    finish_part(self.trees[name])
                yield name, _xml.serialise(self.trees[name])
            else:
                yield name, self.data[name]


# ----------------------------------------------------------- reference clean-up

#: Elements that have no meaning once empty: removed when their last child goes.
_X14 = frozenset({"http://schemas.microsoft.com/office/spreadsheetml/2009/9/main"})
_EMPTY_GOES = {
    (S, "dataValidations"),
    (_X14, "conditionalFormattings"),
    (_X14, "dataValidations"),
    (S, "controls"),
    (S, "oleObjects"),
    (S, "hyperlinks"),
    (S, "externalReferences"),
    (P, "controls"),
    (P, "sndAc"),
    (P, "stSnd"),
    (P, "custDataLst"),
}


def _goes_when_empty(el: etree._Element) -> bool:
    ns, local = split(el.tag)
    if ns == MC and local in ("Choice", "Fallback", "AlternateContent"):
        return True
    if local == "extLst":
        return True
    if local == "ext":
        parent = el.getparent()
        return parent is not None and split(parent.tag)[1] == "extLst"
    return any(ns in group and local == name for group, name in _EMPTY_GOES)


def childless(el: etree._Element) -> bool:
    """``len(el) == 0`` without counting: lxml's len() walks all the children."""
    return next(iter(el), None) is None


def prune_up(parent: etree._Element | None) -> None:
    """Remove ``parent`` and its ancestors while they are empty containers. An emptied
    branch of ``mc:AlternateContent`` takes the whole AlternateContent with it: every
    branch describes the same object."""
    while parent is not None and childless(parent) and _goes_when_empty(parent):
        ns, local = split(parent.tag)
        if ns == MC and local in ("Choice", "Fallback"):
            ac = parent.getparent()
            parent = _xml.remove(ac) if ac is not None else None
        else:
            parent = _xml.remove(parent)


def _ancestor(el: etree._Element, namespaces: frozenset[str], local: str) -> etree._Element | None:
    node = el.getparent()
    while node is not None:
        if is_(node, namespaces, local):
            return node
        node = node.getparent()
    return None


def _fix_word_object(obj: etree._Element) -> None:
    """A ``w:object`` whose OLE object or ActiveX control was removed keeps its preview
    picture: as ``w:pict`` (VML) or its ``w:drawing``; with no picture it goes."""
    active = {"OLEObject", "control", "objectEmbed", "objectLink", "movie"}
    if any(split(c.tag)[1] in active for c in obj):
        return
    drawing = next((c for c in obj if is_(c, W, "drawing")), None)
    if drawing is not None:
        obj.addprevious(drawing)
        _xml.remove(obj)
    elif any(split(c.tag)[0] == _xml.VML for c in obj):
        ns, _ = split(obj.tag)
        obj.tag = f"{{{ns}}}pict"
        obj.attrib.clear()
    else:
        _xml.remove(obj)


def cleanup_references(tree: etree._ElementTree, gone: set[str]) -> None:
    """Remove (or repair) every element of a part that refers to a removed relationship.

    Whether an element is still in the part (not removed with an ancestor) is
    remembered for the elements on the way up, until a removal could take other
    elements with it: 100,000 references under 240 nested elements each walked up to
    the root, twice (84 s)."""
    root = tree.getroot()
    attached = _Attachment(root)
    timing = next(root.iter(*_xml.clark(P, "timing")), None)
    in_timing = set(timing.iter()) if timing is not None else set()
    for attr in _xml.rel_refs(tree):
        if str(attr) not in gone:
            continue
        el = attr.getparent()
        if el is None or not attached(el):
            continue  # already removed with an ancestor
        ns, local = split(el.tag)
        if ns == _xml.VML or (ns in A and local == "blip"):
            # an image reference of a picture or fill: the shape stays, without it
            del el.attrib[attr.attrname]
            continue
        if ns in W and local == "hyperlink":
            _xml.unwrap(el)
            attached.forget()
            continue
        if el in in_timing:
            # animations refer to shapes by id; simplest correct fix is no animations
            assert timing is not None
            _xml.remove(timing)
            in_timing = set()
            attached.forget()
            continue
        if ns in P and local == "oleObj":
            frame = _ancestor(el, P, "graphicFrame")
            prune_up(_xml.remove(frame if frame is not None else el))
            attached.forget()
            continue
        took_more = not childless(el)
        parent = _xml.remove(el)
        attached.known[el] = False  # (an element may refer to two removed ones)
        if parent is not None and is_(parent, W, "object"):
            _fix_word_object(parent)
            attached.forget()
        else:
            if took_more or (parent is not None and childless(parent)):
                attached.forget()  # (elements inside, or pruned with their parents)
            prune_up(parent)
    if is_(root, P, "sld") or is_(root, P, "sldLayout") or is_(root, P, "sldMaster"):
        fix_timing(root)


class _Attachment:
    """Whether an element is still under ``root``, remembered for every element
    walked through until :meth:`forget` (a removal that took other elements)."""

    def __init__(self, root: etree._Element) -> None:
        self.root = root
        self.known: dict[etree._Element, bool] = {}

    def __call__(self, el: etree._Element) -> bool:
        path = []
        node: etree._Element | None = el
        result = False
        while node is not None:
            if node is self.root:
                result = True
                break
            known = self.known.get(node)
            if known is not None:
                result = known
                break
            path.append(node)
            node = node.getparent()
        for walked in path:
            self.known[walked] = result
        return result

    def forget(self) -> None:
        self.known.clear()


def fix_timing(root: etree._Element) -> None:
    """Drop a slide's animations when they target a shape that is no longer there."""
    timing = next(root.iter(*_xml.clark(P, "timing")), None)
    if timing is None:
        return
    ids = {el.get("id") for el in root.iter(*_xml.clark(P, "cNvPr"))}
    for el in timing.iter():
        spid = el.get("spid")
        if spid is not None and spid not in ids:
            _xml.remove(timing)
            return


def finish_part(tree: etree._ElementTree) -> None:
    """Last repairs of a changed part before it is written."""
    root = tree.getroot()
    if is_(root, P, "sld"):
        fix_timing(root)
