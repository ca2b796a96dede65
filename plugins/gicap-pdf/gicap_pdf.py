"""gicap-pdf: the CDR engine for PDF files, built on pikepdf (qpdf).

The file is opened with qpdf, every object reachable from the trailer is walked once
and each kind of active content is recorded as a *finding* under its policy switch.
Then, per switch, ``disallow`` blocks the file, ``allow`` keeps the content and
``sanitise`` removes it from the object graph (at the object that holds it, so a
second reference elsewhere cannot keep it alive). The document is finally written
again by qpdf, which serialises only the objects still reachable: earlier revisions
(incremental updates), orphan objects, data before the header or after ``%%EOF``
never reach the output. A second walk over the rebuilt document checks that nothing
a ``sanitise`` switch covers is left before anything is written.

What each switch covers is listed in ``README.md``. Nothing here decodes image
pixels; stream bombs and pixel bombs are refused from the declared sizes (and a
bounded measure of large Flate and LZW streams) before any reader decodes them.
"""

from __future__ import annotations

import gc
import mmap
import re
import struct
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pikepdf
from pikepdf import Array, Name, Object

from gicap import hookimpl
from gicap.cdr.patterns import SCRIPT_SCHEMES, trie
from gicap.cdr.policy import SWITCHES as POLICY_SWITCHES
from gicap.cdr.types import Action, DisarmRequest, DisarmResult

FILE_TYPES = ("pdf",)

#: The policy switches of the "pdf" family, in the order actions are reported.
SWITCHES = POLICY_SWITCHES["pdf"]
#: Not a policy switch: reports what the rewrite itself dropped or repaired
#: (incremental updates, junk around the file, a damaged xref).
STRUCTURE = "structure"

# Limits (module constants so a deployment or a test can change them).
MAX_PAGES = 10_000
#: Width x height of one image XObject; 100 Mpx is a 10,000 x 10,000 scan.
MAX_IMAGE_PIXELS = 100_000_000
#: Decoded size of one non-image stream (content, font, form...).
MAX_STREAM_BYTES = 256 * 1024 * 1024
#: All streams together, each counted as often as the document uses it.
MAX_DECODED_TOTAL = 4 * MAX_STREAM_BYTES
#: Actions in one /Next chain: more is refused (what lies beyond is not judged).
MAX_CHAIN = 1000
#: Items of one array, and of all the arrays and dictionaries read (their entries,
#: or the references in their text): 5 million references to one object in a 44 KB
#: file (an object stream) took 1.3 GB to walk; more than 4 million would take the
#: walk near the job's time limit anyway (a tagged report of a million structure
#: elements is about 4 million).
MAX_ARRAY_ITEMS = 1_000_000
MAX_TOTAL_ARRAY_ITEMS = 4_000_000
#: Form widgets drawn into their pages when the form is flattened, in all (each
#: drawing adds a resource and content: 10,000 pages sharing one /Annots array of 100
#: widgets took 72 s and 2.3 GB; a 500-page form of 20 fields a page draws 10,000).
MAX_WIDGET_DRAWINGS = 50_000

# ---------------------------------------------------------------- PDF vocabulary

# Object type codes (pikepdf.ObjectType values). ``_type_code_int`` is read instead of
# ``isinstance(x, pikepdf.Dictionary)``: the walk does it for every object and the
# metaclass check costs several times more.
_T_STRING = 6
_T_NAME = 7
_T_ARRAY = 8
_T_DICT = 9
_T_STREAM = 10
_CONTAINERS = frozenset((_T_ARRAY, _T_DICT, _T_STREAM))

#: Keys whose values are never descended into: numbers, names, strings, rectangles
#: (fetching them costs as much as fetching a dictionary, for nothing). Back pointers
#: (``/P``, ``/Prev``, ``/Last``) are walked: what they point to is usually reached
#: already (then it costs a lookup), but a crafted one may lead where nothing else
#: does (an outline item only ``/Last`` names, a page only an annotation's ``/P``
#: names), and qpdf writes whatever they reach. Not here, because the same key
#: holds content elsewhere: ``/D`` (a media clip's data), ``/C`` (a rendition's clip),
#: ``/N`` (an appearance stream), ``/F`` (a file specification).
_LEAF = frozenset(
    """
    /Type /Subtype /S /Dest /Length /Filter /JS /URI
    /Widths /W /W2 /DW /DW2 /Differences /FirstChar /LastChar /BaseFont /FontName
    /FontBBox /Flags /ItalicAngle /Ascent /Descent /CapHeight /StemV /StemH /XHeight
    /MissingWidth /AvgWidth /MaxWidth /Leading /CIDSystemInfo
    /MediaBox /CropBox /BleedBox /TrimBox /ArtBox /Rect /BBox /Matrix /Rotate
    /Domain /Range /C0 /C1 /Bounds /Encode /Decode /Size /ID /Count /Title /T /TU
    /TM /FT /Ff /DA /Q /V /DV /MaxLen /Opt /QuadPoints /InkList /Vertices /CL /IC
    /Border /BS /StructParent /StructParents /Tabs /Lang /Width /Height
    /BitsPerComponent /CreationDate /ModDate /Producer /Creator /Author /Subject
    /Keywords /Trapped /LastModified
    """.split()
)
_ACTION_LEAF = _LEAF | {"/D"}
#: Marks that make ``_dict`` act on an action dictionary (``/S`` and ``/JS`` do not:
#: an action's script is classified by ``_chain``; ``/Filter``, ``/F`` and ``/Type``
#: count in streams only).
_ACTION_MARKS = frozenset(
    {"/Metadata", "/PieceInfo", "/AF", "/EF", "/Dest", "/OnInstantiate", "/Subtype"}
)
#: Keys that need more than "walk the value": action slots and the /Names trees.
_SLOTS = frozenset(
    {"/A", "/PA", "/NA", "/OpenAction", "/AA", "/Next", "/Names", "/JavaScript", "/EF"}
)
#: Keys that make a dictionary worth a closer look once its values are pushed.
_MARKS = frozenset(
    {
        "/Metadata",
        "/PieceInfo",
        "/AF",
        "/EF",
        "/Dest",
        "/OnInstantiate",
        "/JS",
        "/S",
        "/Filter",
        "/F",
        "/Subtype",
        "/Type",
        "/PS",
        "/Ref",
    }
)
#: The marks a dictionary that is not a stream acts on (the others count in streams).
_DICT_MARKS = _MARKS - {"/Filter", "/F", "/Subtype", "/Type", "/PS", "/Ref"}

#: Action types that are followed links rather than "actions" (see ``_classify``).
_INTERNAL_ACTIONS = frozenset({"/GoTo", "/GoToDp"})
#: Annotations whose payload is an embedded file or multimedia content.
_EMBEDDING_ANNOTS = frozenset(
    {"/FileAttachment", "/Sound", "/Movie", "/Screen", "/RichMedia", "/3D"}
)
#: What is left of a dropped annotation (see ``_Walker._doom``): nothing to act on.
_EMPTIED_ANNOT = frozenset({"/Type", "/Subtype", "/Rect", "/F"})
#: Name trees of the catalog's /Names holding embedded or multimedia content.
_EMBEDDING_TREES = ("/EmbeddedFiles", "/Renditions", "/AlternatePresentations")
#: The keys an image XObject may keep when images are sanitised (ISO 32000-2 8.9.5,
#: less /Metadata, /OPI, /Alternates, /ID, /AF and external-data keys).
_IMAGE_KEYS = frozenset(
    {
        "/Type",
        "/Subtype",
        "/Width",
        "/Height",
        "/ColorSpace",
        "/BitsPerComponent",
        "/Intent",
        "/ImageMask",
        "/Mask",
        "/Decode",
        "/Interpolate",
        "/SMask",
        "/SMaskInData",
        "/Name",
        "/StructParent",
        "/OC",
        "/Measure",
        "/PtData",
        "/Length",
        "/Filter",
        "/DecodeParms",
        "/DL",
    }
)
#: Stream keys that make a stream's data come from an external file or URL.
_EXTERNAL_STREAM_KEYS = ("/F", "/FFilter", "/FDecodeParms")
#: Annotation flags Hidden (2) and NoView (32), plus Invisible (1): widgets so flagged
#: are not drawn, so flattening them draws nothing either.
_NOT_DRAWN = 1 | 2 | 32

# Greatest expansion of one filter: decoded bytes per encoded byte.
_FILTER_EXPANSION = {
    "/FlateDecode": 1032,
    "/Fl": 1032,
    "/LZWDecode": 2900,  # a 9..12-bit code stands for up to ~3,800 bytes
    "/LZW": 2900,
    "/RunLengthDecode": 64,
    "/RL": 64,
    "/ASCII85Decode": 4,  # "z" is four zero bytes
    "/A85": 4,
    "/ASCIIHexDecode": 1,
    "/AHx": 1,
}

#: Filters of image data: what they decode to is told by the image's size (for CCITT
#: also its /Columns and /Rows), not by the length of the data.
_IMAGE_FILTERS = frozenset(
    {"/CCITTFaxDecode", "/CCF", "/JBIG2Decode", "/DCTDecode", "/DCT", "/JPXDecode"}
)

_PDF_HEADER = b"%PDF-"
_EOF_MARK = b"%%EOF"
#: Where entropy-coded JPEG data ends: a 0xFF not followed by a stuffed zero or a
#: restart marker (a second 0xFF is a fill byte before the marker). Written without a
#: repeat so that ``re`` can search for the literal 0xFF: 35 times faster.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
#: JPEG APPn segments kept: the JFIF header, the Adobe colour transform and the ICC
#: profile decide how pixels look. Every other APPn (EXIF, XMP, IPTC/Photoshop...)
#: and comments (COM) are dropped.
_JPEG_KEEP = {0xE0: b"JFIF\x00", 0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}
#: A <script> element of the XFA XML, with any prefix (non-ASCII letters too).
_XFA_SCRIPT = re.compile(rb"<(?:[^\s<>:/=]+:)?script[\s>/]")


_NAME_ANNOT = Name.Annot


class _Retry(Exception):
    """A shortcut turned out not to apply to this document: start again without it."""


class _Refused(Exception):
    """The file cannot be delivered: ``outcome`` and ``reason`` say why."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


# ------------------------------------------------------------------------- hooks


@hookimpl
def gicap_file_types() -> list[str]:
    return list(FILE_TYPES)


@hookimpl
def gicap_disarm(request: DisarmRequest) -> DisarmResult | None:
    if request.file_type.name not in FILE_TYPES:
        return None
    size = request.source.stat().st_size
    max_size = request.limits.get("max_file_size")
    if max_size and size > max_size:
        return DisarmResult(
            "unprocessable", reason=f"file is {size} bytes, more than max_file_size {max_size}"
        )
    # The walk allocates many short-lived wrappers and closures: the cyclic collector
    # running every 700 allocations costs more than the walk itself. Cycles left by
    # one file are collected once the collector is back on.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            return _disarm(request, defer=_reachable_objects is not None, quick=True)
        except _Retry:
            return _disarm(request, defer=False, quick=False)
    except _Refused as exc:
        request.destination.unlink(missing_ok=True)
        return DisarmResult(exc.outcome, reason=exc.reason)  # type: ignore[arg-type]
    except MemoryError:
        raise
    except Exception as exc:
        # qpdf gave up on an object while walking or rewriting (a damaged file), or
        # the file is built in a way this engine does not follow: never delivered.
        request.destination.unlink(missing_ok=True)
        return DisarmResult("unprocessable", reason=f"damaged PDF: {exc!r}")
    finally:
        if gc_was_enabled:
            gc.enable()


# ----------------------------------------------------------------------- findings


@dataclass(slots=True)
class _Finding:
    """One piece of active content: its switch, what it is, and how to remove it."""

    switch: str
    kind: str
    remove: Callable[[], None] | None = None
    #: lower runs first: widgets are flattened before annotations are unlinked.
    order: int = 1
    #: how many pieces of content of this kind it stands for (the shortcut records
    #: the link annotations it drops whole as one finding: see _token_free_scan)
    count: int = 1


@dataclass
class _Image:
    stream: Object
    width: int
    height: int
    extra_keys: list[str]
    jpeg: bytes | None  # the stripped JPEG data when it has segments to drop


@dataclass
class _Scan:
    """Everything found in one walk of the document."""

    findings: list[_Finding] = field(default_factory=list)
    images: list[_Image] = field(default_factory=list)
    reached: set[tuple[int, int]] = field(default_factory=set)  # walked
    streams: list[Object] = field(default_factory=list)
    big_streams: list[Object] = field(default_factory=list)  # to inflate (bomb check)
    #: every filtered stream (not an image): [stream, bound of its decoded size, uses]
    filtered: dict[tuple[int, int], list[Any]] = field(default_factory=dict)
    #: every image: [image, bytes it decodes to, uses]
    pixels: dict[tuple[int, int], list[Any]] = field(default_factory=dict)
    inline_images: int = 0
    #: how often each object is referenced in qpdf's text of the file, when the
    #: shortcut counted it (keys: "gen num" reversed, see _REFERENCE_REVERSED)
    references: Counter[bytes] | None = None

    def by_switch(self) -> dict[str, list[_Finding]]:
        out: dict[str, list[_Finding]] = {}
        for f in self.findings:
            out.setdefault(f.switch, []).append(f)
        return out


def _name(obj: Any) -> str | None:
    """A PDF name as ``"/Name"``, or ``None`` for any other value."""
    if type(obj) is Object and obj._type_code_int == _T_NAME:
        try:
            return str(obj)
        except UnicodeDecodeError:  # not UTF-8: no name we look for, so keep it escaped
            return obj.unparse().decode("latin-1")
    return None


def _get(d: Object, key: str) -> Any:
    """``d.get(key)``, for keys that are mostly absent: pikepdf's ``get`` learns that a
    key is absent from an exception (~2 us), ``in`` asks qpdf (~0.3 us). Both see a
    null or a reference to nothing as absent."""
    return d.get(key) if key in d else None


def _int(value: Any) -> int:
    """An integer entry, 0 when absent or not a number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _is_dict(obj: Any) -> bool:
    return type(obj) is Object and obj._type_code_int in (_T_DICT, _T_STREAM)


def _clear(d: Object) -> None:
    """Empty a dictionary in place: every reference to it (direct or indirect) sees an
    empty dictionary, so content cannot survive through a second reference."""
    for key in list(d.keys()):
        del d[key]


def _filters(stream: Object) -> list[str]:
    f = stream.get("/Filter")
    if f is None:
        return []
    if type(f) is Object and f._type_code_int == _T_ARRAY:
        return [_name(x) or "" for x in f]
    return [_name(f) or ""]


# -------------------------------------------------------------------------- scan


class _Walker:
    """Walks every object reachable from the trailer once and records findings.

    ``switches`` lets the walk skip work nobody needs (JPEG data is read only when
    images are sanitised). ``verify`` is the second walk over the modified document:
    it only looks (no JPEG reading, no bomb measuring, no widget drawing).
    """

    IN_ACTION = 1  # an action reached through an action slot: classified there
    JS_TREE = 2  # under /Names /JavaScript: all removed with the tree
    CATALOG = 4
    NAMES = 8
    EF = 16  # a file specification's /EF dictionary
    EF_FILE = 32  # an embedded file reached through /EF (counted there)

    def __init__(
        self, pdf: pikepdf.Pdf, switches: dict[str, str], verify: bool, defer: bool = False
    ) -> None:
        self.pdf = pdf
        self.switches = switches
        self.verify = verify
        self.scan = _Scan()
        self.doomed: set[tuple[int, int]] = set()
        #: ``defer``: dropped indirect annotations are only recorded here, not emptied
        #: (see ``_doom`` and ``_disarm``).
        self.defer = defer
        self.deferred: dict[tuple[int, int], Object] = {}
        self._stack: list[tuple[Object, int]] = []
        self._has_widgets = False
        self._array_items = 0  # (see MAX_TOTAL_ARRAY_ITEMS)
        #: what is left of the document's budget for _holds_script (shared by all
        #: its searches: each /Next array item had a budget of its own, and 100,000
        #: items naming one array of 1,000 took 30 s)
        self.script_search = [MAX_SCRIPT_SEARCH]
        self._xfa_form: Object | None = None
        self._subtype: str | None = None  # of the dictionary _dict is looking at

    def close(self) -> None:
        """Drop what the findings' closures reference (they hold the walker): freed by
        reference counting, not left to the cyclic collector."""
        self.scan.findings.clear()
        self.deferred.clear()
        self._stack.clear()

    # -- recording ------------------------------------------------------------

    def add(
        self, switch: str, kind: str, remove: Callable[[], None] | None, order: int = 1
    ) -> None:
        self.scan.findings.append(_Finding(switch, kind, remove, order))

    def push(self, obj: Any, flags: int = 0) -> None:
        if type(obj) is Object and obj._type_code_int in _CONTAINERS:
            self._stack.append((obj, flags))

    # -- the walk -------------------------------------------------------------

    def run(self) -> _Scan:
        trailer = self.pdf.trailer
        info = _get(trailer, "/Info")
        if _is_dict(info) and len(info.keys()):
            self.add("metadata", "document information dictionary", _deleter(trailer, "/Info"))
        root = self.pdf.Root
        self.push(root, self.CATALOG)
        names = root.get("/Names")
        if _is_dict(names) and names.is_indirect:
            # The catalog's name trees, looked at first: another object naming the same
            # dictionary, walked before it, made it an ordinary one (which walk came
            # first changed with the hash seed), and the trees were not reported as such.
            self.push(names, self.NAMES)
        seen = self.scan.reached
        filtered = self.scan.filtered
        pixels = self.scan.pixels
        stack = self._stack
        #: indirect arrays reached again (a /Contents array pages share): how often
        shared: dict[tuple[int, int], list[Any]] = {}
        while stack:
            obj, flags = stack.pop()
            og = obj.objgen  # (0, 0) for a direct object: one call instead of two
            if og[0]:
                if og in seen:
                    use = filtered.get(og) or pixels.get(og)
                    if use is not None:
                        use[2] += 1  # drawn once more by every reader
                    elif obj._type_code_int == _T_ARRAY:
                        shared.setdefault(og, [obj, 0])[1] += 1
                    continue
                seen.add(og)
            if obj._type_code_int == _T_ARRAY:
                _count_array(obj, self)
                for item in obj:
                    if type(item) is Object:
                        if item._type_code_int in _CONTAINERS:
                            stack.append((item, flags & self.JS_TREE))
            else:
                self._dict(obj, flags)
        for array, again in shared.values():
            # each stream in it is drawn once more for every further use of the array
            for item in array:
                if type(item) is Object and item._type_code_int == _T_STREAM:
                    use = filtered.get(item.objgen)
                    if use is not None:
                        use[2] += again
        if self._has_widgets:
            self._widgets()
        if not self.verify:
            _check_decoded_sizes(self.scan)
        if self._xfa_form is not None:
            # only now: the XFA is decoded, which the bomb check had to see first
            self._xfa_scripts(self._xfa_form)
        return self.scan

    def _dict(self, d: Object, flags: int) -> None:
        """One dictionary or stream: push its values, then look at its keys.

        This runs for every object of the document, so it fetches only the values
        that may lead somewhere (see ``_LEAF``) and checks keys as a set first.
        """
        keys: set[str] = d.keys()
        _count_items(self, len(keys))
        stack = self._stack
        keep = flags & self.JS_TREE
        is_stream = d._type_code_int == _T_STREAM
        if is_stream:
            self.scan.streams.append(d)
        if flags & self.EF:
            keep |= self.EF_FILE
        subtype = self._subtype = _name(d.get("/Subtype")) if "/Subtype" in keys else None
        # Annotations are told by their subtype alone (no other object uses these
        # names): one with a broken /Rect may still be acted on by some viewer.
        if (subtype in _EMBEDDING_ANNOTS or subtype == "/Widget") and keys - _EMPTIED_ANNOT:
            # one with a popup is still referenced by it (its /Parent): emptied at once
            doom = partial(self._doom, d, "/Popup" in keys)
            if subtype in _EMBEDDING_ANNOTS:
                self.add("embedded_files", f"{subtype.lstrip('/')} annotation", doom)
            elif subtype == "/Widget":
                # wherever it is: on a page it is drawn there first (see _widgets)
                self.add("acroform", "form field widget", doom)
                self._has_widgets = True
        # in an action, /D is a destination (elsewhere a media clip's data)
        for key in sorted(keys - (_ACTION_LEAF if flags & self.IN_ACTION else _LEAF)):
            value = d[key]  # not .get(): keys that are not UTF-8 come with surrogates
            if key == "/OpenAction":
                self._open_action(d, value)
                continue
            if type(value) is not Object:
                continue
            code = value._type_code_int
            if code not in _CONTAINERS:
                continue
            if key not in _SLOTS:
                stack.append((value, keep))
            elif key in ("/A", "/PA", "/NA"):
                # An annotation's, outline entry's or navigation node's action, typed or
                # not; elsewhere (a structure element's attributes) /A is not an action.
                if code != _T_ARRAY and (
                    key != "/A" or subtype is not None or "/Title" in keys or "/S" in value.keys()
                ):
                    if code == _T_STREAM:
                        raise _Refused("unprocessable", f"an action ({key}) given as a stream")
                    self._action_slot(d, key, value, "click")
                else:
                    stack.append((value, keep))
            elif key == "/AA":
                if code != _T_DICT:
                    raise _Refused("unprocessable", "additional actions (/AA) not in a dictionary")
                self._additional_actions(d, value)
            elif key == "/Next":
                if not flags & self.IN_ACTION:  # in an action, _chain walked it
                    stack.append((value, keep))
            elif key == "/EF":
                stack.append((value, keep | self.EF))
            elif key == "/Names":
                stack.append((value, self.NAMES if flags & self.CATALOG else keep))
            elif flags & self.NAMES:  # /JavaScript of the catalog's /Names
                self.add("javascript", "document JavaScript (name tree)", _deleter(d, key))
                stack.append((value, self.JS_TREE))
            else:
                stack.append((value, keep))

        if flags & (self.NAMES | self.CATALOG):
            if flags & self.NAMES:
                for tree in _EMBEDDING_TREES:
                    if tree in keys:
                        kind = (
                            "embedded files (name tree)" if tree == "/EmbeddedFiles" else tree[1:]
                        )
                        self.add("embedded_files", kind, _deleter(d, tree))
            else:
                self._catalog(d, keys)
        marks = keys & (_MARKS if is_stream else _DICT_MARKS)
        if not marks:
            return
        if "/Metadata" in marks:
            self.add("metadata", "XMP metadata stream", _metadata_deleter(d))
        if "/PieceInfo" in marks:
            self.add(
                "metadata",
                "page-piece data (/PieceInfo)",
                _deleter(d, "/PieceInfo", "/LastModified"),
            )
        if "/AF" in marks:
            self.add("embedded_files", "associated files (/AF)", _deleter(d, "/AF"))
        if "/EF" in marks:
            self.add("embedded_files", "embedded file", _deleter(d, "/EF", "/RF"))
        if "/Dest" in marks:
            dest = d.get("/Dest")
            if _is_dict(dest):
                # pdf.js reads a dictionary given as a destination as the link's (or
                # outline item's) action, "as some bad generators write it": a URI,
                # launch or script action there was followed. Judged as an action.
                if type(dest) is Object and dest._type_code_int == _T_STREAM:
                    raise _Refused("unprocessable", "a destination (/Dest) given as a stream")
                self._action_slot(d, "/Dest", dest, "click")
            else:
                self.add("internal_hyperlinks", "link destination", self._unlink_dest(d))
        if "/OnInstantiate" in marks:  # 3D artwork script
            self.add("javascript", "3D JavaScript", _deleter(d, "/OnInstantiate"))
        if not flags & (self.IN_ACTION | self.JS_TREE) and (
            "/JS" in marks or ("/S" in marks and _name(d.get("/S")) == "/JavaScript")
        ):
            # JavaScript outside any place an action belongs: neutralised wherever it is.
            self.add("javascript", "JavaScript", lambda d=d: _clear(d))

        if not is_stream:
            return
        if subtype == "/Image":
            self._image(d, keys)
        elif "/Filter" in marks:
            bound = _stream_bound(d)
            if bound is None or bound > MAX_STREAM_BYTES:
                self.scan.big_streams.append(d)
            og = d.objgen
            if og[0]:
                self.scan.filtered[og] = [d, bound, 1]
        if "/F" in marks:
            self.add(
                "external_hyperlinks",
                "stream data from an external file",
                _deleter(d, *_EXTERNAL_STREAM_KEYS),
            )
        if subtype == "/PS":
            # PostScript a printer runs (drawn with Do): emptied
            self.add("actions", "PostScript XObject", _emptier(d))
        elif "/PS" in marks:  # a form's PostScript for printers
            self.add("actions", "PostScript of a form XObject", _deleter(d, "/PS"))
        if "/Ref" in marks:
            # a reference XObject: a page imported from another file, a URL say
            self.add("external_hyperlinks", "page of another file (/Ref)", _deleter(d, "/Ref"))
        if (
            "/Type" in marks
            and not flags & self.EF_FILE
            and _name(d.get("/Type")) == "/EmbeddedFile"
        ):
            # An embedded file stream wherever it is (normally reached through a file
            # specification's /EF, which is removed as well).
            self.add("embedded_files", "embedded file stream", _emptier(d))

    # -- actions --------------------------------------------------------------

    @staticmethod
    def _classify(s: str | None, has_js: bool, context: str) -> str:
        """The switch governing one action dictionary found in ``context``.

        ``trigger``: /AA entries run on events (page open, field change...) without a
        click, so every type is an "action" (JavaScript excepted). ``open``: the
        document's /OpenAction; only going to a page of the document is harmless
        navigation. ``click``: links, outline items, buttons.
        """
        if s == "/JavaScript" or has_js:
            return "javascript"
        if context == "trigger":
            return "actions"
        if s in _INTERNAL_ACTIONS:
            return "internal_hyperlinks"
        if s == "/URI" and context == "click":
            return "external_hyperlinks"
        return "actions"

    def _action_slot(
        self,
        holder: Object,
        key: str,
        action: Object,
        context: str,
        unlink: Callable[[], None] | None = None,
    ) -> None:
        """Record the action in ``holder[key]`` and its /Next chain."""
        link = self._subtype == "/Link"

        def remove_head(holder: Object = holder, key: str = key, action: Object = action) -> None:
            if action.is_indirect:  # a direct one has no other reference
                _clear(action)
            if unlink is None and key == "/A" and link and holder.is_indirect:
                if "/Dest" not in holder:
                    self._doom(holder)  # a link that goes nowhere is dropped
                    return  # (which deletes /A with the rest)
            if unlink is not None:
                unlink()
            elif key in holder:
                del holder[key]
            if link and "/A" not in holder and "/Dest" not in holder:
                self._doom(holder)  # a link that goes nowhere is dropped

        self._chain(action, context, remove_head, set())

    def _chain(
        self, action: Object, context: str, remove: Callable[[], None], seen: set[Any]
    ) -> None:
        # Only indirect objects can make a /Next chain loop; the length cap bounds
        # chains of direct dictionaries, which qpdf's nesting limit also bounds.
        og = action.objgen  # (0, 0) for a direct action
        key = og if og[0] else len(seen)
        if key in seen:
            return
        if len(seen) >= MAX_CHAIN:
            # (what lies beyond would be neither judged nor removed)
            raise _Refused("unprocessable", f"an action chain (/Next) of more than {MAX_CHAIN}")
        seen.add(key)
        keys = action.keys()
        s = _name(action.get("/S")) if "/S" in keys else None
        script = "/JS" in keys or (s == "/URI" and _script_uri(action.get("/URI")))
        switch = self._classify(s, script, context)
        kind = "JavaScript action" if switch == "javascript" else f"{(s or '/untyped')[1:]} action"
        if context == "trigger" and switch != "javascript":
            kind = f"automatic {kind} (/AA)"
        elif context == "open" and switch != "javascript":
            kind = f"{kind} on opening (/OpenAction)"
        self.scan.findings.append(_Finding(switch, kind, remove))
        if og[0] or action._type_code_int != _T_DICT or keys - _ACTION_LEAF or keys & _ACTION_MARKS:
            self.push(action, self.IN_ACTION)
        # else: a direct action of leaf values only (``/S /GoTo /D [...]``), in which
        # ``_dict`` would find nothing to push and no mark: not looked at twice.
        if "/Next" not in keys:
            return
        nxt = action.get("/Next")
        if type(nxt) is not Object:
            return
        if nxt._type_code_int == _T_DICT:
            self._chain(nxt, context, _chain_unlink(action, nxt), seen)
        elif nxt._type_code_int == _T_ARRAY:
            _count_array(nxt, self)
            for item in nxt:
                if _is_dict(item):
                    self._chain(item, context, _next_item_remover(action, item), seen)
                elif type(item) is Object and item._type_code_int == _T_ARRAY:
                    # (pdf.js runs the actions of arrays in arrays, at any depth)
                    script = _holds_script(item, self.script_search)
                    what = "JavaScript action in a nested /Next array" if script else None
                    self.scan.findings.append(
                        _Finding(
                            "javascript" if script else "actions",
                            what or "nested /Next array",
                            _nested_next_remover(action),
                        )
                    )

    def _open_action(self, catalog: Object, value: Any) -> None:
        if type(value) is Object and value._type_code_int == _T_STREAM:
            raise _Refused("unprocessable", "the action on opening given as a stream")
        if _is_dict(value):
            self._action_slot(catalog, "/OpenAction", value, "open")
        else:  # a destination (an array, or the name of one): the page shown on opening
            self.add(
                "internal_hyperlinks",
                "destination on opening (/OpenAction)",
                _deleter(catalog, "/OpenAction"),
            )

    def _additional_actions(self, holder: Object, aa: Object) -> None:
        for trigger, action in list(aa.items()):

            def unlink(aa: Object = aa, trigger: str = trigger, holder: Object = holder) -> None:
                if aa.objgen in self.deferred:
                    # a dropped annotation serving as an /AA dictionary: what is left
                    # of it decides below, as when it is emptied at once
                    raise _Retry
                if trigger in aa:
                    del aa[trigger]
                if not len(aa.keys()) and "/AA" in holder:
                    del holder["/AA"]

            if _is_dict(action):
                self._action_slot(holder, "/AA", action, "trigger", unlink)
            elif _holds_script(action, self.script_search):
                # an array of actions: pdf.js runs them (arrays at any depth)
                self.add("javascript", "JavaScript in an /AA array", unlink)
            elif action is not None:  # inert, but an /AA entry all the same
                self.add("actions", "malformed /AA entry", unlink)

    def _unlink_dest(self, d: Object) -> Callable[[], None]:
        def remove() -> None:
            if "/Dest" in d:
                del d["/Dest"]
            if _name(d.get("/Subtype")) == "/Link" and "/A" not in d:
                self._doom(d)

        return remove

    # -- catalog, pages, images ----------------------------------------------

    def _catalog(self, root: Object, keys: set[str]) -> None:
        if "/Collection" in keys:
            self.add("embedded_files", "portfolio (/Collection)", _deleter(root, "/Collection"))
        if "/URI" in keys:
            self.add("external_hyperlinks", "base URI", _deleter(root, "/URI"))
        if "/Threads" in keys:
            # An article thread's /I has the syntax of the information dictionary
            # (title, author, subject, keywords, dates: [ISO 32000] 12.4.3).
            threads = root.get("/Threads")
            if type(threads) is Object and threads._type_code_int == _T_ARRAY:
                for thread in threads:
                    if _is_dict(thread) and "/I" in thread:
                        self.add("metadata", "article thread information", _deleter(thread, "/I"))
        form = root.get("/AcroForm")
        if not _is_dict(form):
            return
        fields = form.get("/Fields")
        has_fields = type(fields) is Object and fields._type_code_int == _T_ARRAY and len(fields)
        if "/XFA" in form:
            self.add("xfa", "XFA form", _deleter(form, "/XFA"))
            # the root key only tells a viewer to render the (now absent) XFA
            self.add("xfa", "", _deleter(root, "/NeedsRendering"), order=2)
            self._xfa_form = form
        if has_fields or "/XFA" in form:
            self.add("acroform", "interactive form (/AcroForm)", self._drop_acroform(root), order=2)

    def _drop_acroform(self, root: Object) -> Callable[[], None]:
        def remove() -> None:
            for key in ("/AcroForm", "/NeedsRendering"):
                if key in root:
                    del root[key]

        return remove

    def _xfa_scripts(self, form: Object) -> None:
        """JavaScript inside the XFA XML (``<script>`` elements)."""
        data = _xfa_bytes(form.get("/XFA"))
        # (XML the bytes cannot be searched in, UTF-16 say, or that cannot be read:
        # taken to hold scripts; the rewrite parses it, or drops what it cannot read)
        if data is not None and b"\x00" not in data[:4096] and not _XFA_SCRIPT.search(data):
            return
        data = data or b""
        xfa_goes = "sanitise" in (self.switches.get("xfa"), self.switches.get("acroform"))
        if xfa_goes or self.switches.get("xfa") == "disallow":
            # The whole XFA goes (or blocks): its scripts are reported, except as
            # "kept" when JavaScript is allowed, since they do not stay.
            if not (xfa_goes and self.switches.get("javascript") == "allow"):
                self.add("javascript", "XFA scripts", None)
        else:
            self.add("javascript", "XFA scripts", lambda: _strip_xfa_scripts(self.pdf, form, data))

    def _image(self, d: Object, keys: set[str]) -> None:
        try:
            width, height = int(d.get("/Width")), int(d.get("/Height"))
        except (TypeError, ValueError):
            raise _Refused("unprocessable", "an image has no valid /Width and /Height") from None
        if width <= 0 or height <= 0 or width * height > MAX_IMAGE_PIXELS:
            raise _Refused(
                "unprocessable",
                f"an image of {width} x {height} pixels exceeds the limit of "
                f"{MAX_IMAGE_PIXELS} pixels (decompression bomb)",
            )
        og = d.objgen
        if og[0]:
            self.scan.pixels[og] = [d, _image_bytes(d, width, height), 1]
        extra = sorted(keys - _IMAGE_KEYS)
        jpeg = None
        if "/Filter" in keys and not self.verify:
            filters = _filters(d)
            if _IMAGE_FILTERS.intersection(filters):
                data = d.read_raw_bytes()
                coded = _coded_size(d, filters, data)
                if coded is not None and og[0] and coded[2] > self.scan.pixels[og][1]:
                    # (OpenJPEG decodes every component of the codestream, however
                    # few the colour space names, as 32-bit samples)
                    self.scan.pixels[og][1] = coded[2]
                if coded is None:
                    raise _Refused(
                        "unprocessable",
                        f"an image coded with {', '.join(filters)} whose size its data does "
                        "not tell (readers allocate what the data says)",
                    )
                if coded[0] > width or coded[1] > height:
                    # readers allocate what the data says (poppler: 449 MB for a
                    # 40-byte JBIG2 image declared 64 x 64)
                    raise _Refused(
                        "unprocessable",
                        f"an image declared {width} x {height} pixels holds data of "
                        f"{coded[0]} x {coded[1]} (decompression bomb)",
                    )
                if self.switches.get("embedded_images") == "sanitise" and filters in (
                    ["/DCTDecode"],
                    ["/DCT"],
                ):
                    jpeg = _strip_jpeg(data)
        self.scan.images.append(_Image(d, width, height, extra, jpeg))

    def _doom(self, annot: Object, now: bool = False) -> None:
        """Drop an annotation: unlinked from every page's /Annots by ``_finish``, and
        emptied so that another reference (a structure element) finds nothing.

        With ``defer`` (unless ``now``), an indirect annotation is not emptied here:
        ``_disarm`` checks once all of them are unlinked that none is still reachable
        (then emptying them cannot change the output), else it starts again without
        ``defer``."""
        og = annot.objgen
        if not og[0]:
            annot["/GicapDoomed"] = True  # direct: in one /Annots only, filtered there
            return
        self.doomed.add(og)
        if self.defer and not now:
            self.deferred[og] = annot
            return
        # Delete everything but the keys an emptied annotation keeps (the same result
        # as emptying it and writing them back, with fewer calls into qpdf).
        keys = annot.keys()
        for key in keys - _EMPTIED_ANNOT:
            del annot[key]
        annot["/Type"] = _NAME_ANNOT
        if "/Subtype" not in keys:
            annot["/Subtype"] = Name.Text
        if "/Rect" not in keys:
            annot["/Rect"] = Array([0, 0, 0, 0])
        annot["/F"] = 2  # hidden

    def _widgets(self) -> None:
        """Form widgets, by page (flattening draws them into their page)."""
        flatten = self.switches.get("acroform") == "sanitise" and not self.verify
        drawings = 0
        for page in self.pdf.pages:
            annots = _get(page.obj, "/Annots")
            if type(annots) is not Object or annots._type_code_int != _T_ARRAY:
                continue
            # (read for each page: one array 10,000 pages share is read 10,000 times)
            _count_items(self, len(annots))
            for annot in annots:
                if not _is_dict(annot):
                    continue
                if _name(annot.get("/Subtype")) == "/Widget" and flatten:
                    drawings += 1
                    if drawings > MAX_WIDGET_DRAWINGS:
                        raise _Refused(
                            "unprocessable",
                            f"more than {MAX_WIDGET_DRAWINGS} form widgets to draw into pages",
                        )
                    # kind "": counted (and dropped) by the finding _dict made
                    self.add("acroform", "", partial(self._flatten, page, annot), order=0)

    def _flatten(self, page: pikepdf.Page, annot: Object) -> None:
        """Draw the widget's current appearance into the page (unless hidden)."""
        if _int(annot.get("/F")) & _NOT_DRAWN:
            return
        try:
            _draw_appearance(self.pdf, page, annot)
        except pikepdf.PdfError:
            pass  # no usable appearance: the field is removed undrawn


def _count_array(array: Object, walker: _Walker, items: int | None = None) -> None:
    """Refuse an array of more than ``MAX_ARRAY_ITEMS``; count ``items`` (its length
    by default) toward ``MAX_TOTAL_ARRAY_ITEMS``."""
    length = len(array)
    if length > MAX_ARRAY_ITEMS:
        raise _Refused("unprocessable", f"an array of {length} items")
    _count_items(walker, length if items is None else items)


def _count_items(walker: _Walker, items: int) -> None:
    """Count ``items`` (entries of arrays and dictionaries) the walker reads; refuse
    past ``MAX_TOTAL_ARRAY_ITEMS``."""
    walker._array_items += items
    if walker._array_items > MAX_TOTAL_ARRAY_ITEMS:
        raise _Refused(
            "unprocessable",
            f"arrays and dictionaries of more than {MAX_TOTAL_ARRAY_ITEMS} entries in all",
        )


def _deleter(d: Object, *keys: str) -> Callable[[], None]:
    def remove() -> None:
        for key in keys:
            if key in d:
                del d[key]

    return remove


def _metadata_deleter(d: Object) -> Callable[[], None]:
    """Remove ``d``'s /Metadata; an XMP stream (indirect, typed as metadata or XML)
    is emptied too, so that a second reference to it (another key, another object)
    keeps nothing. Any other stream is only unlinked: it may be content too."""
    delete = _deleter(d, "/Metadata")

    def remove() -> None:
        value = d.get("/Metadata")
        if (
            type(value) is Object
            and value._type_code_int == _T_STREAM
            and value.is_indirect
            and (_name(value.get("/Type")) == "/Metadata" or _name(value.get("/Subtype")) == "/XML")
        ):
            _emptier(value)()
        delete()

    return remove


def _emptier(stream: Object) -> Callable[[], None]:
    def remove() -> None:
        stream.write(b"")
        for key in list(stream.keys()):
            if key != "/Length":
                del stream[key]

    return remove


def _next_item_remover(action: Object, item: Object) -> Callable[[], None]:
    """Remove one action of a /Next array: emptied (for any other reference to it),
    and the emptied ones out of the array (an empty action would read as one of no
    type), the array with them when nothing is left."""

    def remove() -> None:
        _clear(item)
        nxt = action.get("/Next")
        if type(nxt) is Object and nxt._type_code_int == _T_ARRAY:
            kept = [x for x in nxt if not (_is_dict(x) and not len(x.keys()))]
            if kept:
                action["/Next"] = Array(kept)
            else:
                del action["/Next"]

    return remove


def _nested_next_remover(action: Object) -> Callable[[], None]:
    """Remove the arrays a /Next array holds (the array with them when nothing is
    left)."""

    def remove() -> None:
        nxt = action.get("/Next")
        if type(nxt) is Object and nxt._type_code_int == _T_ARRAY:
            kept = [x for x in nxt if not (type(x) is Object and x._type_code_int == _T_ARRAY)]
            if kept:
                action["/Next"] = Array(kept)
            else:
                del action["/Next"]

    return remove


#: Objects looked at for a script in arrays of actions, in all of a document;
#: past it, one is assumed.
MAX_SCRIPT_SEARCH = 100_000


def _holds_script(value: Any, budget: list[int], depth: int = 0) -> bool:
    """Whether ``value``, an array of actions (nested arrays, /Next chains), holds a
    JavaScript action where pdf.js looks for one: arrays at any depth. Past the
    search budget or depth, it is assumed to."""
    if budget[0] <= 0 or depth > 32:
        return True
    budget[0] -= 1
    if type(value) is not Object:
        return False
    code = value._type_code_int
    if code == _T_ARRAY:
        return any(_holds_script(item, budget, depth + 1) for item in value)
    if code == _T_DICT:
        keys = value.keys()
        if "/JS" in keys or _name(value.get("/S")) == "/JavaScript":
            return True
        return "/Next" in keys and _holds_script(value.get("/Next"), budget, depth + 1)
    return False


def _chain_unlink(action: Object, nxt: Object) -> Callable[[], None]:
    def remove() -> None:
        if "/Next" in action:
            del action["/Next"]
        _clear(nxt)

    return remove


# ------------------------------------------------------------------- flattening


def _draw_appearance(pdf: pikepdf.Pdf, page: pikepdf.Page, annot: Object) -> None:
    wrapped = pikepdf.Annotation(annot)
    ap = wrapped.get_appearance_stream(Name.N)
    if ap is None or type(ap) is not Object or ap._type_code_int != _T_STREAM:
        return
    if "/Resources" not in ap:
        # Field appearances may rely on the form's default resources (/DR), which go
        # with the /AcroForm: give the appearance its own copy.
        form = pdf.Root.get("/AcroForm")
        dr = form.get("/DR") if _is_dict(form) else None
        if _is_dict(dr):
            ap["/Resources"] = dr
    if not page.obj.get("/GicapWrapped"):
        # The page's own content may leave the graphics state changed: isolate it.
        page.contents_add(b"q\n", prepend=True)
        page.contents_add(b"\nQ\n")
        page.obj["/GicapWrapped"] = True
    name = page.add_resource(ap, Name.XObject, prefix="GicapFx")
    content = wrapped.get_page_content_for_appearance(
        name, _int(page.obj.get("/Rotate")), forbidden_flags=_NOT_DRAWN
    )
    if content:
        page.contents_add(pikepdf.Stream(pdf, content))


# -------------------------------------------------------------------------- XFA


def _xfa_streams(xfa: Any) -> Iterator[Object]:
    if type(xfa) is not Object:
        return
    if xfa._type_code_int == _T_STREAM:
        yield xfa
    elif xfa._type_code_int == _T_ARRAY:
        for item in xfa:
            if type(item) is Object and item._type_code_int == _T_STREAM:
                yield item


def _xfa_bytes(xfa: Any) -> bytes | None:
    """The XFA packets joined, each stream decoded once however often the /XFA array
    lists it, refused beyond ``MAX_STREAM_BYTES`` in all."""
    parts: list[bytes] = []
    seen: set[tuple[int, int]] = set()
    total = 0
    try:
        for stream in _xfa_streams(xfa):
            og = stream.objgen
            if og[0]:
                if og in seen:
                    continue
                seen.add(og)
            data = stream.read_bytes()
            total += len(data)
            if total > MAX_STREAM_BYTES:
                raise _Refused(
                    "unprocessable",
                    f"the XFA form decodes to more than {MAX_STREAM_BYTES} bytes "
                    "(decompression bomb)",
                )
            parts.append(data)
    except pikepdf.PdfError:
        return None
    return b"".join(parts)


def _strip_xfa_scripts(pdf: pikepdf.Pdf, form: Object, data: bytes) -> None:
    """Rewrite the XFA XML without its ``<script>`` elements (one stream)."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        tree = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        del form["/XFA"]  # XML we cannot read: its scripts cannot stay
        return
    for el in list(tree.iter()):
        if isinstance(el.tag, str) and etree.QName(el).localname == "script":
            parent = el.getparent()
            if parent is not None:
                parent.remove(el)
    form["/XFA"] = pikepdf.Stream(pdf, etree.tostring(tree, xml_declaration=False))


# ------------------------------------------------------------------------- JPEG


def _strip_jpeg(data: bytes) -> bytes | None:
    """The JPEG without metadata segments or data after its end, or ``None`` when
    there is nothing to drop (or it is not a JPEG we can follow: left as it is)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    out: list[bytes | memoryview] = [b"\xff\xd8"]
    view = memoryview(data)  # (the entropy-coded data is copied once, by the join)
    pos, end, changed = 2, len(data), False
    while True:
        if pos >= end or data[pos] != 0xFF:
            return None
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            return None
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            out.append(b"\xff\xd9")
            if data[pos:].strip(b"\r\n\t \x00"):
                changed = True  # bytes appended after the image
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append(bytes((0xFF, marker)))
            continue
        if pos + 2 > end:
            return None
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            return None
        segment = data[pos : pos + length]
        pos += length
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            keep = _JPEG_KEEP.get(marker)
            if keep is None or not segment[2:].startswith(keep):
                changed = True
                continue
        out.append(bytes((0xFF, marker)))
        out.append(segment)
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            m = _JPEG_MARKER.search(data, pos)
            if m is None:
                return None
            out.append(view[pos : m.start()])
            pos = m.start()
    return b"".join(out) if changed else None


def _script_uri(value: Any) -> bool:
    """Whether a URI action's /URI runs a script when opened (``javascript:``...),
    read as a browser reads a URL: C0 controls and spaces around it, and tabs and
    line breaks in it, do not count; a text string may be UTF-16 or UTF-8 (its BOM)."""
    if type(value) is not Object or value._type_code_int != _T_STRING:
        return False
    raw = bytes(value)
    if raw[:2] == b"\xfe\xff":
        text = raw[2:].decode("utf-16-be", "replace")
    elif raw[:3] == b"\xef\xbb\xbf":
        text = raw[3:].decode("utf-8", "replace")
    else:
        text = raw.decode("latin-1")
    text = text.strip(_URL_TRIMMED).translate(_URL_IGNORED).lower()
    return text.startswith(SCRIPT_SCHEMES)


_URL_TRIMMED = "".join(map(chr, range(0x21)))
_URL_IGNORED = dict.fromkeys(map(ord, "\t\n\r"))


# ---------------------------------------------------------------------- streams


def _stream_bound(stream: Object) -> int | None:
    """The most bytes a non-image stream can decode to, from its /Length and the
    worst expansion of each of its filters (with an image filter: from the size it
    gives, see _pixel_bound); ``None`` when unknown."""
    filters = _filters(stream)
    if _IMAGE_FILTERS.intersection(filters):
        return _pixel_bound(stream)
    length = stream.get("/Length")
    if not isinstance(length, int):
        return None
    bound = length
    for name in filters:
        bound *= _FILTER_EXPANSION.get(name, 1)
    return bound


def _pixel_bound(stream: Object) -> int | None:
    """What a stream coded with an image filter (a thumbnail, or data that is no image
    at all) decodes to at most: 8 bytes (4 components of 16 bits) per pixel of its
    /Width and /Height, else a CCITT fax of /Columns and /Rows (1 bit per pixel);
    ``None`` when nothing gives its size (a reader decodes it all the same)."""
    width, height = _int(stream.get("/Width")), _int(stream.get("/Height"))
    if width > 0 and height > 0:
        return width * height * 8
    parms = stream.get("/DecodeParms")
    if type(parms) is Object and parms._type_code_int == _T_ARRAY:
        parms = next((p for p in parms if _is_dict(p) and "/Rows" in p), None)
    columns, rows = _fax_size(parms if _is_dict(parms) else None)
    if columns > 0 and rows > 0:
        return (columns * rows + 7) // 8
    return None


def _fax_size(parms: Object | None) -> tuple[int, int]:
    """/Columns (1728 when not given) and /Rows (0: not known) of a CCITT fax's
    decoding parameters."""
    if parms is None:
        return 1728, 0
    columns = _int(parms.get("/Columns")) if "/Columns" in parms else 1728
    return columns, _int(parms.get("/Rows"))


def _decode_parms(stream: Object, at: int) -> Object | None:
    """The decoding parameters of the filter at ``at`` of ``stream``, or None."""
    parms = stream.get("/DecodeParms")
    if type(parms) is Object and parms._type_code_int == _T_ARRAY:
        parms = parms[at] if at < len(parms) else None
    return parms if _is_dict(parms) else None


#: Components of an image's colour spaces (others: 4, the most).
_COMPONENTS = {
    "/DeviceGray": 1,
    "/G": 1,
    "/CalGray": 1,
    "/Indexed": 1,
    "/I": 1,
    "/Separation": 1,
    "/Pattern": 1,
    "/DeviceRGB": 3,
    "/RGB": 3,
    "/CalRGB": 3,
    "/Lab": 3,
    "/DeviceCMYK": 4,
    "/CMYK": 4,
}


def _image_bytes(image: Object, width: int, height: int) -> int:
    """What an image decodes to: its rows of /Width pixels of its components and
    /BitsPerComponent (16 and 4 components when they cannot be told)."""
    mask = _get(image, "/ImageMask") is True
    bits = 1 if mask else _int(image.get("/BitsPerComponent"))
    if bits not in (1, 2, 4, 8, 16):
        bits = 16
    space = image.get("/ColorSpace")
    components = 4
    if type(space) is Object and space._type_code_int == _T_ARRAY and len(space):
        family = _name(space[0])
        if family == "/ICCBased" and len(space) > 1 and _is_dict(space[1]):
            n = _int(space[1].get("/N"))
            components = n if 0 < n <= 4 else 4
        elif family == "/DeviceN" and len(space) > 1:
            names = space[1]
            count = len(names) if type(names) is Object and names._type_code_int == _T_ARRAY else 0
            components = count if count > 0 else 4
        elif family is not None:
            components = _COMPONENTS.get(family, 4)
    elif mask:
        components = 1
    else:
        components = _COMPONENTS.get(_name(space) or "", 4)
    return (width * components * bits + 7) // 8 * height


def _coded_size(image: Object, filters: list[str], raw: bytes) -> tuple[int, int, int] | None:
    """(width, height, bytes) an image's coded data says it has: a JPEG's frame
    header, a JPEG 2000 codestream's size and JP2 header, a JBIG2 page, a fax's
    /Columns and /Rows; read after the filters before the image filter (the first MiB
    of them); ``None`` when it cannot be told (the caller refuses the image). The
    bytes are what a JPEG 2000 decoder allocates for the codestream's components (0
    for the other filters: their decoders allocate what the image dictionary says)."""
    at = next(i for i, f in enumerate(filters) if f in _IMAGE_FILTERS)
    kind = filters[at]
    if kind in ("/CCITTFaxDecode", "/CCF"):
        return (*_fax_size(_decode_parms(image, at)), 0)
    data = _leading_decoded(filters[:at], raw)
    if data is None:
        return None
    if kind in ("/DCTDecode", "/DCT"):
        size = _jpeg_size(data)
        return None if size is None else (*size, 0)
    if kind == "/JPXDecode":
        return _jpx_size(data)
    pages = _jbig2_pages(data)
    parms = _decode_parms(image, at)
    shared = parms.get("/JBIG2Globals") if parms is not None else None
    if type(shared) is Object and shared._type_code_int == _T_STREAM:
        # (segments shared by the images: a page there is allocated too)
        try:
            raw_shared = shared.read_raw_bytes()
        except pikepdf.PdfError:
            return None
        decoded = _leading_decoded(_filters(shared), raw_shared)
        more = _jbig2_pages(decoded) if decoded is not None else None
        if more is None or more:
            return None
    if not pages:
        return None
    return max(w for w, _ in pages), max(h for _, h in pages), 0


#: What of an image's data is decoded to read its size.
_SIZE_PREFIX = 1 << 20


def _leading_decoded(filters: list[str], data: bytes) -> bytes | None:
    """The start of ``data`` through ``filters`` (ASCII and Flate ones); ``None``
    when another filter stands before the image filter."""
    for name in filters:
        if name in ("/ASCIIHexDecode", "/AHx", "/ASCII85Decode", "/A85"):
            try:
                data = _ascii_decode(name, data)
            except ValueError:
                return None
        elif name in ("/FlateDecode", "/Fl"):
            try:
                data = zlib.decompressobj().decompress(data, _SIZE_PREFIX)
            except zlib.error:
                return None
        else:
            return None
    return data


#: JPEG start-of-frame markers (SOF0 to SOF15 but DHT, JPG and DAC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The first frame header's size, markers read as libjpeg reads them (bytes
    before a marker skipped), from the first start of image."""
    pos = data.find(b"\xff\xd8", 0, 65536)
    if pos < 0:
        return None
    pos += 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            pos = data.find(b"\xff", pos)  # (libjpeg: "extraneous bytes before marker")
            if pos < 0:
                return None
            continue
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1  # a fill byte
            continue
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker in (0x00, 0x01):
            pos += 2  # (markers without a length)
            continue
        if marker in _SOF:
            if pos + 9 > len(data):
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            # (a height of 0: given later by a DNL marker, up to 65535 rows)
            return (width, height) if height else None
        if marker in (0xD9, 0xDA):
            return None  # (no frame header before the scan)
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _jpx_size(data: bytes) -> tuple[int, int, int] | None:
    """The greatest of the sizes a JPEG 2000 image gives (its JP2 image header and the
    SIZ marker of its codestream: a raw codestream, or the JP2 jp2c box), and the
    bytes a decoder allocates for the codestream's components (``_siz``)."""
    if data.startswith(b"\xff\x4f\xff\x51"):
        return _siz(data, 0)
    sizes: list[tuple[int, int, int]] = []
    boxes = [(0, len(data))]
    while boxes:
        pos, end = boxes.pop()
        while pos + 8 <= end:
            length = int.from_bytes(data[pos : pos + 4], "big")
            kind = data[pos + 4 : pos + 8]
            head = 8
            if length == 1 and pos + 16 <= end:
                length, head = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
            elif length == 0:
                length = end - pos
            if length < head or pos + length > end:
                break
            if kind == b"jp2h":
                boxes.append((pos + head, pos + length))
            elif kind == b"ihdr" and length >= head + 8:
                h = int.from_bytes(data[pos + head : pos + head + 4], "big")
                w = int.from_bytes(data[pos + head + 4 : pos + head + 8], "big")
                sizes.append((w, h, 0))
            elif kind == b"jp2c":
                size = _siz(data, pos + head)
                if size is None:
                    return None
                sizes.append(size)
            pos += length
    if not sizes:
        return None
    return max(s[0] for s in sizes), max(s[1] for s in sizes), max(s[2] for s in sizes)


#: What a JPEG 2000 decoder (OpenJPEG) holds for each sample of each component.
_JPX_SAMPLE_BYTES = 4


def _siz(data: bytes, at: int) -> tuple[int, int, int] | None:
    """The image size in the SIZ marker of the codestream at ``at`` (SOC, SIZ), and
    the bytes its components decode to: every one of them (up to 16,384, whatever the
    colour space), at its subsampling, in 32-bit samples."""
    if data[at : at + 4] != b"\xff\x4f\xff\x51" or at + 42 > len(data):
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">4I", data, at + 8)
    width, height = max(0, xsiz - xosiz), max(0, ysiz - yosiz)
    count = int.from_bytes(data[at + 40 : at + 42], "big")
    if not count or at + 42 + 3 * count > len(data):
        return None
    total = 0
    for c in range(at + 42, at + 42 + 3 * count, 3):
        dx, dy = data[c + 1] or 1, data[c + 2] or 1  # (0 is invalid: counted as 1)
        total += -(-width // dx) * -(-height // dy)
    return width, height, total * _JPX_SAMPLE_BYTES


def _jbig2_pages(data: bytes) -> list[tuple[int, int]] | None:
    """The pages (width, height) of the page information segments (type 48) of an
    embedded JBIG2 stream (segment headers, [ITU T.88] 7.2: readers allocate a page at
    each); None when they cannot all be read (a page of unknown height, a region of
    unknown length, a cut segment header)."""
    pages: list[tuple[int, int]] = []
    pos = 0
    while pos + 6 <= len(data):
        number = int.from_bytes(data[pos : pos + 4], "big")
        flags = data[pos + 4]
        kind, wide_page = flags & 0x3F, bool(flags & 0x40)
        pos += 5
        count = data[pos] >> 5
        if count == 7:  # the long form of the referred-to segment count
            if pos + 4 > len(data):
                return None
            count = int.from_bytes(data[pos : pos + 4], "big") & 0x1FFFFFFF
            pos += 4 + (count + 8) // 8
        else:
            pos += 1
        size = 1 if number <= 256 else 2 if number <= 65536 else 4
        pos += count * size + (4 if wide_page else 1)
        if pos + 4 > len(data):
            return None
        length = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if kind == 48:
            if pos + 8 > len(data):
                return None
            width = int.from_bytes(data[pos : pos + 4], "big")
            height = int.from_bytes(data[pos + 4 : pos + 8], "big")
            if height == 0xFFFFFFFF:
                return None  # (a striped page grows as regions come: not bounded here)
            pages.append((width, height))
        if length == 0xFFFFFFFF:
            # (an immediate region of unknown length: what follows it, another page
            # say, cannot be found without decoding it)
            return None
        pos += length
    return pages


def _check_decoded_sizes(scan: _Scan) -> None:
    """Refuse a decompression bomb: a stream whose bound is above the limit is
    measured; and the streams together, each counted as often as the document uses it
    (a page's /Contents may list one stream a thousand times, and every reader decodes
    it each time), must stay within the limit too: bounds first, measured sizes where
    the bounds are not enough."""
    sizes: dict[tuple[int, int], int] = {}
    for stream in scan.big_streams:
        size = _measure_stream(stream)
        if stream.objgen[0]:
            sizes[stream.objgen] = size

    pictures = sum(uses * size for _, size, uses in scan.pixels.values())

    def total() -> int:
        return pictures + sum(
            uses * (sizes[og] if og in sizes else bound)
            for og, (_, bound, uses) in scan.filtered.items()
        )

    limit = MAX_DECODED_TOTAL
    if total() <= limit:
        return
    # the bounds are far above what real streams decode to: measure them all
    for og, (stream, _, _) in scan.filtered.items():
        if og not in sizes:
            sizes[og] = _measure_stream(stream)
    if total() > limit:
        raise _Refused(
            "unprocessable",
            f"the streams and images decode to more than {limit} bytes in all, each "
            "counted as often as the document uses it (decompression bomb)",
        )


def _measure_stream(stream: Object) -> int:
    """Refuse a decompression bomb; the decoded size (counting the filters after the
    first with their worst expansion). Called for the streams whose bound is above
    the limit (large Flate streams, mostly): ASCII filters are decoded, then the first
    Flate or LZW filter is measured in bounded steps."""
    rest = _filters(stream)
    if _IMAGE_FILTERS.intersection(rest):
        bound = _pixel_bound(stream)
        if bound is None or bound > MAX_STREAM_BYTES:
            raise _Refused(
                "unprocessable",
                "a stream that is no image is coded with an image filter, and may decode "
                f"to more than {MAX_STREAM_BYTES} bytes (decompression bomb)",
            )
        return bound
    data = stream.read_raw_bytes()
    try:
        while rest and rest[0] in ("/ASCIIHexDecode", "/AHx", "/ASCII85Decode", "/A85"):
            data = _ascii_decode(rest.pop(0), data)
    except ValueError:
        return 0  # undecodable: a reader shows nothing, nothing explodes
    if not rest:
        return len(data)
    first = rest.pop(0)
    limit = MAX_STREAM_BYTES + 1
    if first in ("/FlateDecode", "/Fl"):
        size = _inflated_size(data, limit)
    elif first in ("/LZWDecode", "/LZW"):
        size = _lzw_size(data, _early_change(stream), limit)
    else:
        size = len(data) * _FILTER_EXPANSION.get(first, 1)
    for f in rest:
        size *= _FILTER_EXPANSION.get(f, 1)
    if size > MAX_STREAM_BYTES:
        raise _Refused(
            "unprocessable",
            f"a stream decodes to more than {MAX_STREAM_BYTES} bytes (decompression bomb)",
        )
    return size


def _inflated_size(data: bytes, limit: int) -> int:
    """Bytes zlib would produce from ``data``, counting no further than ``limit``."""
    dec = zlib.decompressobj()
    total = 0
    chunk = 1024 * 1024
    try:
        total += len(dec.decompress(data, chunk))
        while dec.unconsumed_tail and total < limit:
            total += len(dec.decompress(dec.unconsumed_tail, chunk))
    except zlib.error:
        pass  # readers stop at the damage: what came before is all they get
    return total


def _early_change(stream: Object) -> int:
    parms = stream.get("/DecodeParms")
    if type(parms) is Object and parms._type_code_int == _T_ARRAY:
        parms = next((p for p in parms if _is_dict(p)), None)
    value = parms.get("/EarlyChange") if _is_dict(parms) else None
    return 0 if value == 0 else 1


def _lzw_size(data: bytes, early: int, limit: int) -> int:
    """Bytes an LZW decoder would produce, counted without producing them: only the
    length of each table entry is kept. Legacy streams are rare; Python speed is fine."""
    lengths = [1] * 258
    width, total, prev = 9, 0, -1
    bits = nbits = 0
    for byte in data:
        bits = (bits << 8) | byte
        nbits += 8
        while nbits >= width:
            nbits -= width
            code = (bits >> nbits) & ((1 << width) - 1)
            bits &= (1 << nbits) - 1
            if code == 256:  # clear table
                del lengths[258:]
                width, prev = 9, -1
                continue
            if code == 257:  # end of data
                return total
            if code < len(lengths):
                size = lengths[code]
            elif code == len(lengths) and prev >= 0:
                size = lengths[prev] + 1
            else:
                return total  # corrupt: a reader stops here
            total += size
            if total >= limit:
                return total
            if prev >= 0 and len(lengths) < 4096:
                lengths.append(lengths[prev] + 1)
            prev = code
            if len(lengths) + early >= (1 << width) and width < 12:
                width += 1
    return total


def _ascii_decode(name: str, data: bytes) -> bytes:
    import base64
    import binascii

    if name in ("/ASCIIHexDecode", "/AHx"):
        text = bytes(c for c in data.split(b">", 1)[0] if c not in b" \t\r\n\f\x00")
        if len(text) % 2:
            text += b"0"
        try:
            return binascii.unhexlify(text)
        except binascii.Error as exc:
            raise ValueError(str(exc)) from None
    body = data.split(b"~>", 1)[0]
    body = bytes(c for c in body if c not in b" \t\r\n\f\x00")
    try:
        return base64.a85decode(body)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _inline_images(pdf: pikepdf.Pdf, reached: set[tuple[int, int]]) -> int:
    """Count inline images (``BI ... ID ... EI``) in pages, forms and patterns."""
    holders: list[Object] = [page.obj for page in pdf.pages]
    for og in reached:
        obj = pdf.get_object(og)
        if obj._type_code_int == _T_STREAM and (
            _name(obj.get("/Subtype")) == "/Form" or "/PatternType" in obj
        ):
            holders.append(obj)
    count = 0
    for holder in holders:
        try:
            ops = pikepdf.parse_content_stream(holder, "BI ID EI")
        except (pikepdf.PdfError, TypeError):
            continue
        count += sum(1 for op in ops if isinstance(op, pikepdf.ContentStreamInlineImage))
    return count


# ---------------------------------------------------------------------- disarm


def _open(source: Path) -> pikepdf.Pdf:
    try:
        pdf = pikepdf.open(source, suppress_warnings=True)
    except pikepdf.PasswordError:
        raise _Refused("encrypted", "the PDF is protected by a password") from None
    except pikepdf.PdfError as exc:
        raise _Refused("unprocessable", f"not a readable PDF: {exc}") from None
    if pdf.is_encrypted:
        pdf.close()
        raise _Refused("encrypted", "the PDF is encrypted (/Encrypt)")
    return pdf


def _damage(pdf: pikepdf.Pdf, declared_pages: Any) -> list[str]:
    """qpdf's warnings so far; refused when its repair lost anything."""
    qpdf_warnings: list[str] = pdf.get_warnings()
    if qpdf_warnings:
        lost = _lossy(pdf, qpdf_warnings, declared_pages)
        if lost:
            raise _Refused("unprocessable", f"damaged PDF: {lost}")
    return qpdf_warnings


@contextmanager
def _mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """The file's bytes, mapped (the structure checks look at its two ends, and only
    sometimes at the rest: see ``_appended_revisions``)."""
    with open(path, "rb") as f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            yield b""
            return
        with mapped:
            yield mapped


def _structure(raw: bytes | mmap.mmap, pdf: pikepdf.Pdf, extra: list[str]) -> list[str]:
    """What the rewrite will drop, for the "structure" action (and the damage it
    repairs: see ``_warnings_note``). Earlier revisions are told here by the trailer's
    /Prev only (see ``_appended_revisions``); ``extra``: ``_extra_trailer_keys``."""
    notes = []
    start = raw.find(_PDF_HEADER, 0, 1024)
    if start > 0:
        notes.append(f"{start} bytes before the PDF header")
    eof = raw.rfind(_EOF_MARK)
    if eof < 0:
        notes.append("no %%EOF marker")
    elif raw[eof + len(_EOF_MARK) :].strip(b"\r\n\t \x00"):
        notes.append(f"{len(raw) - eof - len(_EOF_MARK)} bytes after %%EOF")
    if not pdf.is_linearized and "/Prev" in pdf.trailer:
        notes.append(_EARLIER_REVISIONS)
    if extra:
        notes.append(f"trailer entries no reader uses or that reach objects ({', '.join(extra)})")
    return notes


_EARLIER_REVISIONS = "earlier revisions (incremental updates)"


def _appended_revisions(raw: bytes | mmap.mmap, pdf: pikepdf.Pdf) -> list[str]:
    """Revisions appended without a /Prev to the earlier ones: told by counting the
    cross-reference sections (two in a linearized file). This reads the whole file,
    so it is only asked when nothing else makes the file rewritten, which drops them
    anyway: then only the original bytes, delivered as they are, would keep them."""
    sections, pos = 0, raw.find(b"startxref")
    while pos >= 0:
        sections += 1
        pos = raw.find(b"startxref", pos + 1)
    return [_EARLIER_REVISIONS] if sections > (2 if pdf.is_linearized else 1) else []


#: What a trailer holds ([ISO 32000] 7.5.5 and 7.5.8: a cross-reference stream's
#: dictionary is the trailer); anything else is written out by qpdf, and may reach
#: objects no reader looks at (a JavaScript action, say): dropped.
_TRAILER_KEYS = frozenset(
    "/Size /Prev /Root /Encrypt /Info /ID /XRefStm /Type /W /Index /Length /Filter "
    "/DecodeParms /DL".split()
)


def _extra_trailer_keys(pdf: pikepdf.Pdf) -> list[str]:
    """The trailer entries the rewrite drops: keys no reader uses, an /Info that is
    not a dictionary (the walk looks at none other), and the other keys whose value
    reaches an object (their values are numbers, names, strings or direct arrays and
    dictionaries of those: a reference, written out by qpdf, could lead anywhere)."""
    trailer = pdf.trailer
    extra = []
    for key in trailer.keys():
        if key not in _TRAILER_KEYS:
            extra.append(key)
        elif key == "/Info":
            if not _is_dict(trailer.get(key)):
                extra.append(key)
        elif key not in ("/Root", "/Encrypt"):
            value = trailer.get(key)
            if (
                type(value) is Object
                and value._type_code_int in _CONTAINERS
                and (value.is_indirect or b" R" in value.unparse(resolved=True))
            ):
                extra.append(key)
    return sorted(extra)


def _readers_may_differ(raw: bytes | mmap.mmap, pdf: pikepdf.Pdf) -> list[str]:
    """Why the original bytes may read differently elsewhere than in qpdf, which saw
    nothing to remove: then the file is delivered as qpdf reads it (rewritten), never
    as it came. A linearized file has a first-page cross-reference section some
    readers use instead of the last one; a cross-reference stream brings object
    streams, whose own index readers may follow differently (qpdf keeps the last of
    two copies of an object, others the one the index names).

    Both are told from the bytes as well, as poppler and pdf.js find them: a
    /Linearized dictionary in the first object qpdf never fetched (no cross-reference
    entry names it), a hybrid file's /XRefStm, an object stream a classic table does
    not list. A name written with #xx escapes could spell any of them: rewritten."""
    notes = []
    head = raw[:_LINEARIZED_WITHIN]
    if pdf.is_linearized or b"/Linearized" in head:
        notes.append("linearization (rewritten: readers may use its first-page section)")
    if "/W" in pdf.trailer or any(raw.find(token) >= 0 for token in _STREAM_INDEXES):
        notes.append("cross-reference stream and object streams (rewritten as qpdf reads them)")
    elif _ESCAPED_NAME.search(raw) is not None:
        notes.append("names written with #xx escapes (rewritten as qpdf reads them)")
    elif not _xref_table_as_read(raw):
        notes.append("a cross-reference table readers may rebuild (rewritten as qpdf reads it)")
    return notes


def _xref_table_as_read(raw: bytes | mmap.mmap) -> bool:
    """Whether a strict reader takes the classic cross-reference table as qpdf did,
    finding the same objects: the table at ``startxref`` begins with object 0, free;
    every entry in use points at that object's own header (``N G obj``); and the
    bytes hold no other header, as a reader indexing the file finds headers
    (comments and NULs as white space).

    pdf.js refuses a table whose entry 0 is in use and then indexes the file itself,
    every ``N G obj`` in it, stream data too, a later copy replacing an earlier one:
    an /OpenAction hidden in an orphan stream's data ran there, while qpdf saw a
    clean file and its bytes went out as they came. poppler, failing to fetch an
    object (a reference to a free entry, an entry pointing elsewhere), rebuilds the
    table by scanning the file: a catalog's /Names naming a free entry found a script
    and an embedded file there that qpdf had read as null (and dropped with its key:
    qpdf's own view cannot tell). Such an object needs a header for that reader to
    find it, and the count of headers sees it."""
    at = raw.rfind(b"startxref")
    found = _STARTXREF.match(raw, at) if at >= 0 else None
    if found is None:
        return False
    start = int(found[1])
    head = _XREF_HEAD.match(raw, start) if start < len(raw) else None
    if head is None or int(head[1]) != 0 or head[2] != b"f":
        return False
    end = raw.find(b"trailer", start)
    if end < 0:
        return False
    in_use = _xref_in_use(raw, start + 4, end)
    if in_use is None:
        return False
    for number, (offset, generation) in in_use.items():
        header = _OBJECT_HEADER_AT.match(raw, offset) if offset < len(raw) else None
        if header is None or int(header[1]) != number or int(header[2]) != generation:
            return False
    # (searched in the bytes reversed, where the pattern starts with a literal: "obj"
    # is found several times faster than a number, and each one tried once)
    return sum(1 for _ in _OBJECT_HEADER_REVERSED.finditer(raw[::-1])) == len(in_use)


def _xref_in_use(raw: bytes | mmap.mmap, pos: int, end: int) -> dict[int, tuple[int, int]] | None:
    """The entries in use of the classic table between ``pos`` (after "xref") and
    ``end`` ("trailer"): object number -> (offset, generation); None when the table
    is not one of subsections of whole entries."""
    in_use: dict[int, tuple[int, int]] = {}
    number = -1
    for offset, generation, kind, first, _count in _XREF_TOKEN.findall(raw, pos, end):
        if first:
            number = int(first)
            continue
        if number < 0:
            return None
        if kind == b"n":
            in_use[number] = (int(offset), int(generation))
        number += 1
    return in_use


_STARTXREF = re.compile(rb"startxref\s+(\d+)")
#: "xref", the first subsection's first object number, and its first entry's type.
_XREF_HEAD = re.compile(rb"xref\s+(\d+)\s+\d+\s+\d{10}\s\d{5}\s([nf])")
#: An entry (offset, generation, type) or a subsection's header (first, count).
_XREF_TOKEN = re.compile(rb"(\d{10})[ \t](\d{5})[ \t]([nf])|(\d++)[ \t]++(\d++)")
#: White space as the PDF tokenizer reads it (NUL included), and comments.
_PDF_SPACE = rb"(?:[\s\x00]++|%[^\r\n]*+)++"
#: The same read backwards, between two tokens: white space, or a comment (its text,
#: then "%"; the branches start on different characters, so no text is read two
#: ways). Taken as short as it can be (lazily): a "%" earlier on the line, in a
#: string say (``(100%) 8 0 obj``), must not swallow the numbers before it; the longer
#: readings are tried only when the shorter fail.
_PDF_SPACE_REVERSED = rb"(?:[\s\x00]++|(?:[^\s\x00%][^\r\n%]*+)?%)+?"
#: An object's header (``N G obj``), as a reader indexing the file finds them, in the
#: bytes reversed (generously: one found too many only makes the file rewritten).
_OBJECT_HEADER_REVERSED = re.compile(
    rb"jbo" + _PDF_SPACE_REVERSED + rb"\d++" + _PDF_SPACE_REVERSED + rb"\d"
)
#: The header an entry in use points at: its number and generation.
_OBJECT_HEADER_AT = re.compile(
    rb"[\s\x00]*+(\d++)" + _PDF_SPACE + rb"(\d++)" + _PDF_SPACE + rb"obj"
)


#: Where readers look for a linearization dictionary (the first object, within the
#: first KiB after the header, wherever the header is).
_LINEARIZED_WITHIN = 4096
#: What brings an index of objects besides a classic cross-reference table.
_STREAM_INDEXES = (b"/XRefStm", b"/ObjStm", b"/XRef")
#: A name with a #xx escape (it may spell one of the names above).
_ESCAPED_NAME = re.compile(rb"/[^\s/<>\[\]()%{}#]*#[0-9A-Fa-f]{2}")


def _warnings_note(count: int) -> list[str]:
    return [f"damage repaired ({count} qpdf warnings)"] if count else []


#: qpdf warnings that mean its repair lost something (an object it could not parse,
#: a page dropped from the tree, stream data it could not find).
_LOSSY_WARNINGS = (
    "unable to recover stream data",
    "treating stream as empty",
    "pages tree includes non-dictionary object",
    "parse error while reading object",
)


def _lossy(pdf: pikepdf.Pdf, warnings: list[str], declared_pages: Any) -> str | None:
    """Why a repaired file lost content, or ``None`` when qpdf's repair kept it all."""
    for w in warnings:
        low = w.lower()
        if any(p in low for p in _LOSSY_WARNINGS) and "(trailer" not in low:
            return f"qpdf could not repair it losslessly ({w.split(': ', 1)[-1]})"
    if isinstance(declared_pages, int) and declared_pages != len(pdf.pages):
        return f"the page tree lists {declared_pages} pages but {len(pdf.pages)} are present"
    if _has_nulls(pdf):
        return "objects are missing (references to nothing)"
    return None


def _has_nulls(pdf: pikepdf.Pdf) -> bool:
    """Whether a reachable dictionary or array holds a null: in a repaired file, a
    reference to an object qpdf did not find. (A slow walk: damaged files only.)"""
    seen: set[tuple[int, int]] = set()
    stack: list[Object] = [pdf.Root]
    while stack:
        obj = stack.pop()
        if obj.is_indirect:
            if obj.objgen in seen:
                continue
            seen.add(obj.objgen)
        if obj._type_code_int == _T_ARRAY:
            values: Any = list(obj)
        else:
            values = [v for k, v in obj.items() if k not in ("/Parent", "/P")]
        for value in values:
            if value is None:
                return True
            if type(value) is Object and value._type_code_int in _CONTAINERS:
                stack.append(value)
    return False


def _disarm(request: DisarmRequest, defer: bool, quick: bool) -> DisarmResult:
    """Disarm one file. ``defer``: see ``_Walker._doom``; ``quick``: see
    ``_token_free_scan``. Raises ``_Retry`` when a shortcut does not apply (the
    caller runs again without either)."""
    switches = {s: request.switches.get(s, "sanitise") for s in SWITCHES}
    with _mapped(request.source) as raw, _open(request.source) as pdf:
        pages = pdf.Root.get("/Pages")
        count = pages.get("/Count") if _is_dict(pages) else None
        # read before pdf.pages: qpdf corrects the count of a damaged tree
        declared_pages = count
        if isinstance(count, int) and count > MAX_PAGES:
            raise _Refused("unprocessable", f"{count} pages, more than the limit of {MAX_PAGES}")
        n_pages = len(pdf.pages)
        if n_pages > MAX_PAGES:
            raise _Refused("unprocessable", f"more than the limit of {MAX_PAGES} pages")
        if not n_pages:
            raise _Refused("unprocessable", "the PDF has no pages")

        # Tagged documents reference their annotations from the structure tree as
        # well: there dropped annotations stay reachable, so do not defer at all.
        defer = defer and "/StructTreeRoot" not in pdf.Root
        walker = _Walker(pdf, switches, verify=False, defer=defer)
        try:
            return _disarm_document(request, raw, pdf, walker, switches, declared_pages, quick)
        finally:
            walker.close()


def _disarm_document(
    request: DisarmRequest,
    raw: bytes | mmap.mmap,
    pdf: pikepdf.Pdf,
    walker: _Walker,
    switches: dict[str, str],
    declared_pages: Any,
    quick: bool,
) -> DisarmResult:
    scan = _token_free_scan(pdf, walker) if quick else None
    quick = scan is not None
    if scan is None:
        scan = walker.run()
    if switches["embedded_images"] == "disallow":
        scan.inline_images = _inline_images(pdf, scan.reached)
    qpdf_warnings = _damage(pdf, declared_pages)

    found = scan.by_switch()
    image_changes = _image_changes(scan) if switches["embedded_images"] == "sanitise" else []
    n_images = len(scan.images) + scan.inline_images

    # disallow: block on the first switch with content, naming all of them
    blocked = [s for s in SWITCHES if switches[s] == "disallow" and _present(s, found, n_images)]
    if blocked:
        actions = [Action(s, "blocked", _detail(s, found, n_images)) for s in blocked]
        return DisarmResult(
            "blocked",
            actions=actions,
            reason="the PDF holds content the policy disallows: "
            + "; ".join(f"{a.switch} ({a.detail})" for a in actions),
        )

    actions: list[Action] = []
    todo: list[_Finding] = []
    # The XFA lives in the /AcroForm: removing the form removes it, allowed or not.
    xfa_with_form = switches["acroform"] == "sanitise" and switches["xfa"] == "allow"
    for s in SWITCHES:
        if not _present(s, found, n_images):
            continue
        if s == "xfa" and xfa_with_form:
            actions.append(Action(s, "removed", "the XFA form goes with the /AcroForm"))
        elif switches[s] == "allow":
            actions.append(Action(s, "kept", _detail(s, found, n_images)))
        elif s == "embedded_images":
            if image_changes:
                actions.append(Action(s, "neutralised", _image_detail(image_changes)))
        else:
            todo.extend(found.get(s, []))
            actions.append(Action(s, "removed", _detail(s, found, n_images)))

    # (what the rewrite drops from the trailer: no finding's removal touches those keys)
    extra_keys = _extra_trailer_keys(pdf)
    notes = _structure(raw, pdf, extra_keys)
    warned = len(qpdf_warnings)
    if not todo and not image_changes and not notes and not warned:
        notes = _appended_revisions(raw, pdf) or _readers_may_differ(raw, pdf)
        if not notes:
            # About to deliver the original bytes: read every stream's data first,
            # as a rewrite would. A /Length that qpdf has to correct is damage like
            # any other (and where parsers could disagree): then the file is rebuilt.
            for stream in scan.streams:
                stream.read_raw_bytes()
            warned = len(_damage(pdf, declared_pages))
            if not warned:
                return DisarmResult("unmodified", actions=actions)

    for finding in sorted(todo, key=lambda f: f.order):
        if finding.remove is not None:
            finding.remove()
    for image, keys, jpeg in image_changes:
        _sanitise_image(image, keys, jpeg)
    trailer = pdf.trailer
    for key in extra_keys:
        if key in trailer:
            del trailer[key]
    perms = _get(pdf.Root, "/Perms")
    if _is_dict(perms) and perms.objgen in walker.deferred:
        raise _Retry  # _finish reads what is left of it, as of /AA dictionaries
    unlinked: Counter[tuple[int, int]] = Counter()
    pages = bool(todo) and (not quick or bool(walker.doomed))
    _finish(pdf, walker.doomed, switches, pages, unlinked if quick else None)
    if not quick:
        _verify_rebuilt(pdf, walker, switches)
    elif walker.deferred and not _unlinked_everywhere(walker, scan.references, unlinked):
        # (else the shortcut's findings were removed, which only deleted keys, dropped
        # links and rewrote image data: nothing a verifying walk would find is left,
        # once no dropped link is reachable any more)
        _check_unreachable(pdf, walker)
    _save(pdf, request.destination)
    # Writing reads the stream data: what qpdf could not recover there is refused
    # as any other loss, what it repaired is reported.
    notes += _warnings_note(warned + len(_damage(pdf, declared_pages)))
    if notes:
        actions.append(Action(STRUCTURE, "removed", "; ".join(notes)))
    return DisarmResult("rebuilt", actions=actions)


def _verify_rebuilt(pdf: pikepdf.Pdf, walker: _Walker, switches: dict[str, str]) -> None:
    reachable = _check_unreachable(pdf, walker) if walker.deferred else None
    _verify(pdf, switches, reachable)


def _unlinked_everywhere(
    walker: _Walker, references: Counter[bytes] | None, unlinked: Counter[tuple[int, int]]
) -> bool:
    """Whether every dropped annotation was taken out of pages' /Annots as often as
    the file's text references it: then nothing references it any more. (An /Annots
    array of its own that something else references too counts once more for each
    reference: see _token_free_scan.)"""
    if references is None:
        return False
    # (a loop, not all() over a generator, and .get(): a link-heavy document drops
    # hundreds of annotations)
    times = unlinked.get
    for og in walker.deferred:
        if references[_ref_key(og)] != times(og, 0):
            return False
    return True


def _check_unreachable(pdf: pikepdf.Pdf, walker: _Walker) -> list[Object]:
    """What qpdf will write: the objects reachable from the trailer. A dropped
    annotation that is not among them needs no emptying; one that is makes the
    document start again without deferring (see _Walker._doom)."""
    reachable = _reachable_objects(pdf, [pdf.trailer])
    if any(obj.objgen in walker.deferred for obj in reachable):
        raise _Retry
    return reachable


def _present(switch: str, found: dict[str, list[_Finding]], n_images: int) -> bool:
    if switch == "embedded_images":
        return n_images > 0
    return any(f.kind for f in found.get(switch, []))


def _detail(switch: str, found: dict[str, list[_Finding]], n_images: int) -> str:
    if switch == "embedded_images":
        return f"{n_images} image{'s' if n_images != 1 else ''}"
    kinds: Counter[str] = Counter()
    for f in found.get(switch, []):
        if f.kind:
            kinds[f.kind] += f.count
    return ", ".join(f"{n} x {kind}" if n > 1 else kind for kind, n in sorted(kinds.items()))


def _image_changes(scan: _Scan) -> list[tuple[Object, list[str], bytes | None]]:
    return [(i.stream, i.extra_keys, i.jpeg) for i in scan.images if i.extra_keys or i.jpeg]


def _image_detail(changes: list[tuple[Object, list[str], bytes | None]]) -> str:
    keys = sorted({k for _, ks, _ in changes for k in ks})
    jpegs = sum(1 for *_, j in changes if j is not None)
    parts = [f"{len(changes)} image{'s' if len(changes) != 1 else ''}"]
    if keys:
        parts.append(f"keys removed: {' '.join(keys)}")
    if jpegs:
        parts.append(f"JPEG metadata segments or trailing data stripped from {jpegs}")
    return "; ".join(parts)


def _sanitise_image(stream: Object, keys: list[str], jpeg: bytes | None) -> None:
    for key in keys:
        if key in stream:
            del stream[key]
    if jpeg is not None:
        filter_ = stream.get("/Filter")
        parms = _get(stream, "/DecodeParms")
        if parms is None and type(filter_) is Object and filter_._type_code_int == _T_NAME:
            # what pikepdf's type check would pass on unchanged (a name, no
            # parameters): its isinstance checks cost more than the write
            stream.write(jpeg, filter=filter_, type_check=False)
        else:
            stream.write(jpeg, filter=filter_, decode_parms=parms)


def _doomed(annot: Any, doomed: set[tuple[int, int]]) -> bool:
    if type(annot) is not Object:
        return False
    og = annot.objgen
    if og[0]:
        return og in doomed  # (only direct annotations are marked /GicapDoomed)
    return annot._type_code_int in (_T_DICT, _T_STREAM) and "/GicapDoomed" in annot


def _finish(
    pdf: pikepdf.Pdf,
    doomed: set[tuple[int, int]],
    switches: dict[str, str],
    pages: bool = True,
    unlinked: Counter[tuple[int, int]] | None = None,
) -> None:
    """Unlink dropped annotations from the pages; tidy keys the rewrite made stale.
    ``pages``: whether findings were removed (only they drop or flatten annotations).
    ``unlinked`` counts how often each dropped annotation was taken out of a page's
    /Annots."""
    for page in pdf.pages if pages else ():
        obj = page.obj
        # (``unlinked``: the shortcut's document, in which no object shows the name,
        # and only flattening adds it)
        if unlinked is None and "/GicapWrapped" in obj:
            del obj["/GicapWrapped"]
        annots = _get(obj, "/Annots")
        if type(annots) is not Object or annots._type_code_int != _T_ARRAY:
            continue
        if unlinked is None:
            kept = [a for a in annots if not _doomed(a, doomed)]
        else:  # (the same, counting what goes in one pass)
            kept = []
            count = unlinked.get  # (Counter's += calls __missing__ in Python)
            for a in annots:
                og = a.objgen if type(a) is Object else (0, 0)
                if og in doomed:
                    unlinked[og] = count(og, 0) + 1
                elif og[0] or not _doomed(a, doomed):
                    kept.append(a)
        if len(kept) != len(annots):
            if kept:
                obj["/Annots"] = Array(kept)
            else:
                del obj["/Annots"]
    root = pdf.Root
    if switches["acroform"] == "sanitise" and "/AcroForm" in root:
        # an /AcroForm without fields or XFA: nothing interactive, but no use either
        del root["/AcroForm"]
    perms = _get(root, "/Perms")
    if _is_dict(perms):
        # Usage rights (Reader extensions) and a certification signature (/DocMDP,
        # with its signer's name, place and contact) are signed over the original
        # bytes: after a rebuild viewers would only complain that the document changed.
        for key in ("/UR", "/UR3", "/DocMDP"):
            if key in perms:
                del perms[key]
        if not len(perms.keys()):
            del root["/Perms"]
    if switches["metadata"] == "sanitise" and "/ID" in pdf.trailer:
        # The first file identifier is kept by qpdf across rewrites: a tracking token.
        del pdf.trailer["/ID"]


#: Every name a finding of ``_Walker`` starts from (a key, or the value of /S,
#: /Subtype or /Type), as qpdf writes it (names are written in their canonical form,
#: so ``/J#53`` reads ``/JS``), followed by a delimiter. A dictionary in which none
#: appears cannot give a finding. /Image and the external-data keys count in
#: streams only (see ``_quick_verify``).
_FINDING_NAMES = (
    "OpenAction A PA NA AA JavaScript JS EF EmbeddedFile EmbeddedFiles Renditions "
    "AlternatePresentations Metadata PieceInfo AF Dest OnInstantiate Collection URI "
    "AcroForm XFA NeedsRendering FileAttachment Sound Movie Screen RichMedia 3D Widget "
    "GicapDoomed GicapWrapped PS Ref Threads"
).split()
#: A character a name may hold as qpdf writes names (delimiters and white space are
#: written as #xx), and a literal string (every parenthesis and backslash escaped).
_NAME_CHAR = rb"[^\s()<>\[\]{}/%]"
_LITERAL = rb"\((?:[^\\()]|\\[\s\S])*+\)"
_DELIMITED = rb"(?!" + _NAME_CHAR + rb")"


_FINDING_TOKEN = re.compile(rb"/" + trie(_FINDING_NAMES).encode() + _DELIMITED)
_STREAM_TOKEN = re.compile(
    rb"/" + trie([*_FINDING_NAMES, "Image", "F", "FFilter", "FDecodeParms"]).encode() + _DELIMITED
)
#: pikepdf >= 10.17: the indirect objects reachable from some roots, found in C++.
_reachable_objects = getattr(pikepdf._core, "_reachable_objects", None)


def _quick_verify(
    pdf: pikepdf.Pdf, switches: dict[str, str], objects: list[Object] | None = None
) -> bool:
    """Whether the document certainly holds nothing a finding starts from.

    Every indirect object reachable from the catalog (more than the walk visits) is
    written out by qpdf, direct objects inside it included, and searched for the
    names in ``_FINDING_NAMES``: one call per object instead of one per key and
    value. An image stream is looked at as ``_Walker._image`` would. ``False``
    (something may be left, or a string merely contains such a name) means: walk.
    ``objects``: the objects reachable from the trailer when the caller has them (a
    superset of those reachable from the catalog: more to search, nothing missed).
    """
    if _reachable_objects is None:
        return False
    info = _get(pdf.trailer, "/Info")
    if _is_dict(info) and len(info.keys()):
        return False
    root = pdf.Root
    if objects is None:
        objects = _reachable_objects(pdf, [root])
    texts = [root.unparse(resolved=True)]
    for obj in objects:
        code = obj._type_code_int
        if code == _T_NAME:
            return False  # (see _token_free_scan)
        if code != _T_STREAM:
            texts.append(obj.unparse(resolved=True))
            continue
        found = _STREAM_TOKEN.findall(obj.stream_dict.unparse())
        if not found:
            continue
        if found.count(b"/Image") != len(found) or _name(obj.get("/Subtype")) != "/Image":
            return False
        if switches["embedded_images"] == "sanitise" and obj.keys() - _IMAGE_KEYS:
            return False
    return _FINDING_TOKEN.search(b"\n".join(texts)) is None


#: An indirect reference as qpdf writes it (``12 0 R``), searched for in the text
#: reversed: there it starts with a literal, which ``re`` finds several times faster.
#: (A string that reads like a reference counts as one more use: never fewer.)
_REFERENCE_REVERSED = re.compile(rb"R (\d+ \d+)")


def _references(text: bytes) -> Counter[bytes]:
    """How often each object is referenced in ``text``, by ``_ref_key``."""
    return Counter(_REFERENCE_REVERSED.findall(text[::-1]))


def _ref_key(og: tuple[int, int]) -> bytes:
    """An object's key in ``_references``."""
    return (b"%d %d" % og)[::-1]


_SEARCHED_TOGETHER = 32
#: A stream dictionary as qpdf writes the usual one (keys sorted, nothing else in it).
_PLAIN_STREAM = re.compile(rb"<< (?:/Filter /(\w+) )?/Length (\d+) >>")
#: The same for an XMP metadata stream: its /Metadata is the value of /Type.
_XMP_STREAM = re.compile(rb"<< (?:/Filter /\w+ )?/Length \d+ /Subtype /XML /Type /Metadata >>")


def _token_free_scan(pdf: pikepdf.Pdf, walker: _Walker) -> _Scan | None:
    """The walk's result, without the walk, for a document in which no finding can
    start but document metadata: ``None`` (walk) unless no object qpdf read holds a
    name from ``_FINDING_NAMES`` (see ``_quick_verify``), but for the catalog's
    /Metadata key (once, and its XMP stream as qpdf writes the usual one). The
    information dictionary and that key then give the walk's metadata findings.

    Every object of the file is looked at, orphans and objects the walk would not
    reach included: more than the walk sees, so nothing is missed. What the walk would
    still produce without findings comes from the streams: the ones no object
    references are left out (orphans, object and cross-reference streams); each of
    the others is counted as used as often as objects reference it (at least as often
    as the walk would count), and is checked as the walk checks it (image limits and
    JPEG data, decoded-size bounds). A damaged file (qpdf warned while opening it,
    or while reading objects the walk would not read) starts again without this
    shortcut (``_Retry``), so that damage is judged from what the walk reads.
    """
    if pdf.get_warnings():  # (which empties qpdf's list): judged by the walk
        raise _Retry
    trailer, root = pdf.trailer, pdf.Root
    texts = [trailer.unparse(resolved=True)]
    root_text = root.unparse(resolved=True)
    # (the catalog first: where most documents with active content show it)
    tokens = _FINDING_TOKEN.findall(texts[0] + b"\n" + root_text)
    if len(set(tokens)) != len(tokens) or not set(tokens) <= _CATALOG_TOKENS:
        return None
    keys = root.keys() if tokens else set()
    xmp = b"/Metadata" in tokens
    opening = b"/OpenAction" in tokens
    if (xmp and "/Metadata" not in keys) or (opening and not _opens_page(root, keys)):
        return None
    unsearched: list[bytes] = []  # (the catalog's text, searched above)
    streams: list[tuple[Object, bytes]] = []
    arrays: list[tuple[Object, bytes]] = []
    holders: list[Object | None] = [None]  # the object of each text (texts[0]: trailer)
    links: list[tuple[Object, re.Match[bytes]]] = []
    searched = len(texts)
    # (this runs for every object of the file: the calls it makes are bound once)
    add_text, add_holder, add_stream = texts.append, holders.append, streams.append
    for obj in pdf.objects:
        if type(obj) is not Object:
            # a number or boolean as an object of its own (an indirect /Length), or
            # None: an object qpdf found nothing for (it warned why)
            continue
        code = obj._type_code_int
        if code == _T_STREAM:
            add_stream((obj, obj.stream_dict.unparse()))
        elif code == _T_DICT or code == _T_ARRAY:
            text = obj.unparse(resolved=True)
            # (the references its text holds: direct dictionaries in it included)
            if code == _T_ARRAY:
                _count_array(obj, walker, max(len(obj), text.count(b" R")))
            else:
                _count_items(walker, text.count(b" R"))
            if tokens and text == root_text and obj.objgen == root.objgen:
                unsearched.append(text)
                continue
            add_text(text)
            add_holder(obj)
            if code == _T_ARRAY and b" R" in text:
                arrays.append((obj, text))
            if len(texts) - searched == _SEARCHED_TOGETHER:
                # (searched a few dozen at a time: the walk runs as soon as one shows)
                if _FINDING_TOKEN.search(b"\n".join(texts[searched:])):
                    if not _links(texts, holders, searched, links):
                        return None
                searched = len(texts)
        elif code == _T_NAME:
            # A name as an object of its own (``/Subtype 7 0 R``): the text of what
            # references it does not show it. Rare enough to leave to the walk.
            return None
    if pdf.get_warnings():
        raise _Retry
    if _FINDING_TOKEN.search(b"\n".join(texts[searched:])):
        if not _links(texts, holders, searched, links):
            return None
    stream_texts = b"\n".join(text for _, text in streams)
    found = _STREAM_TOKEN.findall(stream_texts)
    if found and any(t != b"/Image" and t != b"/Metadata" for t in found):
        return None
    if b"/Metadata" in found:
        # only as the /Type of XMP streams (a stream holding nothing else)
        if found.count(b"/Metadata") != sum(1 for _, t in streams if _XMP_STREAM.fullmatch(t)):
            return None
    texts += unsearched
    texts.append(stream_texts)  # (the references streams make count)
    joined = b"\n".join(texts)
    scan = walker.scan
    action = root.get("/OpenAction") if opening else None
    shared_opening = type(action) is Object and action.is_indirect
    # (counted only when needed: see the bound below)
    uses = _references(joined) if links or shared_opening else None
    if shared_opening and uses is not None and uses[_ref_key(action.objgen)] > 1:
        # an action on opening that a link or outline item holds too: removing it
        # (switch actions) would leave theirs empty; the walk judges that
        return None
    images = b"/Image" in found or walker.switches["embedded_images"] == "disallow"
    if links:
        scan.references = uses
        dropped: dict[tuple[str, str], list[Object]] = {}
        for obj, shape in links:
            if uses[_ref_key(obj.objgen)]:  # (else an orphan: never seen)
                _link_findings(walker, obj, shape, dropped)
        for (switch, kind), annots in dropped.items():
            # (one finding for all of a kind: each is dropped as the walk's finding
            # drops it, and dropping one does not touch any other finding's objects)
            remove = partial(_doom_all, walker, annots)
            scan.findings.append(_Finding(switch, kind, remove, count=len(annots)))
    if not arrays and not images:
        top = _greatest_bound(stream_texts, len(streams))
        # A stream is used at most as often as references are written (but for what a
        # shared array holds: none here): when even the greatest bound that often
        # stays within the limits, no stream needs counting or measuring. Every
        # stream is then read before the original bytes are delivered.
        if top is not None and top * max(1, joined.count(b" R")) <= MAX_DECODED_TOTAL:
            scan.streams.extend(stream for stream, _ in streams)
            _catalog_findings(walker, trailer, root, xmp, opening)
            return scan
    if uses is None:
        uses = _references(joined)
    for array, text in arrays:
        # what an array several objects share holds is used once more by each
        again = uses[_ref_key(array.objgen)] - 1
        if again > 0:
            for ref in _REFERENCE_REVERSED.findall(text[::-1]):
                uses[ref] += again
    for stream, text in streams:
        og = stream.objgen
        count = uses[_ref_key(og)]
        if not count:
            continue
        scan.reached.add(og)  # (inline images are counted in the streams reached)
        scan.streams.append(stream)
        plain = _PLAIN_STREAM.fullmatch(text)
        if plain is not None:
            if plain[1] is None:
                continue  # not filtered
            name = "/" + plain[1].decode()
            if name in _IMAGE_FILTERS:
                bound = _stream_bound(stream)
            else:
                bound = int(plain[2]) * _FILTER_EXPANSION.get(name, 1)
        else:
            keys = stream.keys()
            if b"/Image" in text and _name(stream.get("/Subtype")) == "/Image":
                walker._image(stream, keys)
                if og in scan.pixels:
                    scan.pixels[og][2] = count
                continue
            if "/Filter" not in keys:
                continue
            bound = _stream_bound(stream)
        if bound is None or bound > MAX_STREAM_BYTES:
            scan.big_streams.append(stream)
        scan.filtered[og] = [stream, bound, count]
    _check_decoded_sizes(scan)
    _catalog_findings(walker, trailer, root, xmp, opening)
    return scan


#: The names the catalog may show and still be judged without the walk.
_CATALOG_TOKENS = frozenset({b"/Metadata", b"/OpenAction"})


def _opens_page(root: Object, keys: set[str]) -> bool:
    """Whether the catalog's /OpenAction is a destination (the page shown on opening),
    or an action that only goes to a page or opens a URI (``_ACTION``)."""
    if "/OpenAction" not in keys:
        return False
    value = root.get("/OpenAction")
    return not _is_dict(value) or _plain_action(value)


def _plain_action(value: Any) -> bool:
    """Whether ``value`` is an action dictionary that only goes to a page or opens a
    URI (``_ACTION``: no /Next)."""
    return (
        type(value) is Object
        and value._type_code_int == _T_DICT
        and _ACTION.fullmatch(value.unparse(resolved=True)) is not None
    )


def _catalog_findings(
    walker: _Walker, trailer: Object, root: Object, xmp: bool, opening: bool
) -> None:
    """The walk's findings for the document metadata and the page shown on opening."""
    info = _get(trailer, "/Info")
    if _is_dict(info) and len(info.keys()):  # (in the walk's order)
        walker.add("metadata", "document information dictionary", _deleter(trailer, "/Info"))
    if opening:
        walker._subtype = None  # (the catalog's: a link's may be left from before)
        walker._open_action(root, root.get("/OpenAction"))
    if xmp:
        walker.add("metadata", "XMP metadata stream", _metadata_deleter(root))


# Link annotations and outline items as qpdf writes them (keys sorted, one space
# between tokens), with nothing in them but what a link or an outline item holds and
# an action that goes to a page or opens a URI (in them, or an object of its own that
# _ACTION matches). In a document whose only findings are these (and the catalog's),
# the shortcut gives the walk's findings.
#: A number, matched one way only, and no repetition below gives back what it took:
#: a failed match never backtracks through the choices (a highlight's 24 integer
#: /QuadPoints next to a link took days with ``\d+\.?\d*``).
_NUM = rb"-?(?:\d++(?:\.\d*+)?+|\.\d++)"
_REF = rb"\d++ \d++ R"
_STR = rb"(?:" + _LITERAL + rb"|<[0-9a-fA-F]*+>)"
_NUMS = rb"\[ (?:" + _NUM + rb" )*+\]"
_DEST = (
    rb"(?:\[ "
    + _REF
    + rb" /(?:XYZ|Fit|FitH|FitV|FitR|FitB|FitBH|FitBV)(?: (?:"
    + _NUM
    + rb"|null))*+ \]|"
    + _STR
    + rb"|/"
    + _NAME_CHAR
    + rb"+)"
)
_GOTO = rb"<< /D " + _DEST + rb" /S /GoTo (?:/Type /Action )?>>"
_URI = rb"<< /S /URI (?:/Type /Action )?/URI " + _STR + rb" >>"
#: An action that only goes to a page of the document or opens a URI (no /Next).
_ACTION = re.compile(_GOTO + rb"|" + _URI)
_PARTS = {
    b"num": _NUM,
    b"nums": _NUMS,
    b"ref": _REF,
    b"str": _STR,
    b"dest": _DEST,
    b"action": b"".join(
        [rb"(?:/A (?:(?P<goto>", _GOTO, rb")|(?P<uri>", _URI, rb")|(?P<ref>", _REF, rb")) )?"]
    ),
}
_LINK_ANNOT = re.compile(
    rb"<< %(action)s(?:/BS << (?:/\w++ (?:/\w++|%(num)s|%(nums)s) )*+>> )?"
    rb"(?:/Border \[ (?:%(num)s )*+(?:%(nums)s )?\] )?(?:/C %(nums)s )?(?:/Contents %(str)s )?"
    rb"(?P<dest>/Dest %(dest)s )?(?:/F \d+ )?(?:/H /[INOP] )?(?:/M %(str)s )?(?:/NM %(str)s )?"
    rb"(?:/P %(ref)s )?(?:/QuadPoints %(nums)s )?/Rect %(nums)s (?:/StructParent \d+ )?"
    rb"/Subtype /Link (?:/Type /Annot )?>>" % _PARTS
)
_OUTLINE_ITEM = re.compile(
    rb"<< %(action)s(?:/C %(nums)s )?(?:/Count -?\d+ )?(?P<dest>/Dest %(dest)s )?(?:/F \d+ )?"
    rb"(?:/First %(ref)s )?(?:/Last %(ref)s )?(?:/Next %(ref)s )?/Parent %(ref)s "
    rb"(?:/Prev %(ref)s )?(?:/SE %(ref)s )?/Title (?:%(str)s|%(ref)s) >>" % _PARTS
)


def _links(
    texts: list[bytes],
    holders: list[Object | None],
    start: int,
    links: list[tuple[Object, re.Match[bytes]]],
) -> bool:
    """Add to ``links`` the link annotations and outline items (``_LINK_ANNOT``,
    ``_OUTLINE_ITEM``) among the objects of ``texts[start:]``; ``False`` when another
    of them shows a name from ``_FINDING_NAMES`` (outside ``_NOT_NAMES``), but for
    actions of their own (``_ACTION``) and structure elements' attribute objects."""
    for i in range(start, len(texts)):
        text = texts[i]
        holder = holders[i]
        shape = _LINK_ANNOT.fullmatch(text) or _OUTLINE_ITEM.fullmatch(text)
        if shape is None:
            if not _shows_finding_name(text) or _ACTION.fullmatch(text):
                # (an action object of its own: the link or outline item holding it
                # gives the finding, and it gives none wherever else it is)
                continue
            if holder is None or not _only_attributes(text, holder):
                return False
            continue
        if holder is None:
            return False
        if shape["ref"] is not None:
            # an action of its own: one that only goes to a page or opens a URI
            if not _plain_action(holder.get("/A")):
                return False
        links.append((holder, shape))
    return True


#: A structure element's attribute objects (/A, first of the keys qpdf sorts).
_ATTRIBUTES = re.compile(rb"<< /A (?:" + _REF + rb"|\[ (?:" + _REF + rb" )*+\]) ")


def _only_attributes(text: bytes, holder: Object) -> bool:
    """Whether the only name from ``_FINDING_NAMES`` in an object is an /A that the
    walk does not take as an action: attribute objects of a tagged document's
    structure element (an array of them, or a dictionary without /S, in a dictionary
    without /Subtype or /Title: see ``_Walker._dict``)."""
    if not _ATTRIBUTES.match(text) or b"/Subtype" in text or b"/Title" in text:
        return False
    names = _FINDING_TOKEN.findall(text)  # (more when strings hold names: stripped)
    if names != [b"/A"] and _FINDING_TOKEN.findall(_NOT_NAMES.sub(b"()", text)) != [b"/A"]:
        return False
    value = holder.get("/A")
    if type(value) is not Object:
        return False
    if value._type_code_int == _T_ARRAY:
        return True
    return value._type_code_int == _T_DICT and "/S" not in value.keys()


#: What the walk never reads as a name: the text of a string (qpdf escapes every
#: parenthesis and backslash in it), and the glyph names of a font encoding's
#: /Differences (a /CharSet string or a glyph named "A" is not an action).
_NOT_NAMES = re.compile(_LITERAL + rb"|/Differences \[ (?:(?:-?\d++|/" + _NAME_CHAR + rb"*+) )*+\]")


def _shows_finding_name(text: bytes) -> bool:
    """Whether ``text`` holds a name from ``_FINDING_NAMES`` outside ``_NOT_NAMES``."""
    return _FINDING_TOKEN.search(text) is not None and (
        _FINDING_TOKEN.search(_NOT_NAMES.sub(b"()", text)) is not None
    )


def _link_findings(
    walker: _Walker,
    obj: Object,
    shape: re.Match[bytes],
    dropped: dict[tuple[str, str], list[Object]],
) -> None:
    """The findings the walk records for one link annotation or outline item (see
    ``_Walker._dict`` and ``_Walker._action_slot``); a link annotation that goes
    nowhere without its action is added to ``dropped`` instead, under the switch and
    kind of its finding."""
    annot = shape.re is _LINK_ANNOT
    goto, uri, ref, dest = shape.group("goto", "uri", "ref", "dest")
    #: a direct action the walk classifies by its type alone
    plain: tuple[str, str] | None = None
    if goto is not None:
        plain = _GOTO_FINDING
    elif uri is not None and not _script_uri(obj.get("/A").get("/URI")):
        plain = _URI_FINDING
    if ref is not None or uri is not None or goto is not None:
        if plain is None or (annot and dest is not None):
            # As the walk records it: an action of its own (maybe shared: emptied), a
            # script URL, a link that keeps its destination when the action goes.
            walker._subtype = "/Link" if annot else None
            walker._action_slot(obj, "/A", obj.get("/A"), "click")
        elif annot:
            # a link that goes nowhere without its action is dropped (see remove_head)
            dropped.setdefault(plain, []).append(obj)
        else:
            walker.scan.findings.append(_Finding(*plain, _deleter(obj, "/A")))
    if dest is not None:
        walker.add("internal_hyperlinks", "link destination", walker._unlink_dest(obj))


#: The switch and kind of the finding of a direct action of each type (_link_findings).
_GOTO_FINDING = ("internal_hyperlinks", "GoTo action")
_URI_FINDING = ("external_hyperlinks", "URI action")


def _doom_all(walker: _Walker, annots: list[Object]) -> None:
    for annot in annots:
        walker._doom(annot)


#: A stream's /Length, its /Filter (when one name), and a /Length given as a reference.
_STREAM_LENGTH = re.compile(rb"/Length (\d+)")
_STREAM_FILTER = re.compile(rb"/Filter /(" + _NAME_CHAR + rb"+)")
_INDIRECT_LENGTH = re.compile(rb"/Length \d+ \d+ R")


def _greatest_bound(stream_texts: bytes, count: int) -> int | None:
    """A bound of what any of ``count`` streams decodes to, from their dictionaries
    (``stream_texts``): the greatest /Length written times the worst expansion of any
    filter named; ``None`` when a stream's /Length or /Filter is not written there as
    a number or a name (a reference, an array of filters), or the bound is above
    ``MAX_STREAM_BYTES``."""
    if not count:
        return 0
    if _INDIRECT_LENGTH.search(stream_texts):
        return None  # (qpdf writes the length it read in its place: defensive)
    lengths = _STREAM_LENGTH.findall(stream_texts)
    if len(lengths) < count:  # (more: /Length in a nested dictionary, counted too)
        return None
    filters = _STREAM_FILTER.findall(stream_texts)
    if len(filters) != stream_texts.count(b"/Filter"):
        return None  # a chain of filters, or one given as a reference (4 0 R)
    names = {"/" + n.decode("latin-1") for n in filters}
    if names & _IMAGE_FILTERS:
        return None  # (bounded by an image's size, not by the data's length)
    factor = max((_FILTER_EXPANSION.get(n, 1) for n in names), default=1)
    top = max(map(int, lengths)) * factor
    return top if top <= MAX_STREAM_BYTES else None


def _verify(
    pdf: pikepdf.Pdf, switches: dict[str, str], objects: list[Object] | None = None
) -> None:
    """Walk the rebuilt document again: nothing a sanitise switch covers may be left."""
    if _quick_verify(pdf, switches, objects):
        return
    scan = _Walker(pdf, switches, verify=True).run()
    left = {
        f.switch
        for f in scan.findings
        if f.kind and switches.get(f.switch) == "sanitise" and f.switch != "embedded_images"
    }
    if switches["embedded_images"] == "sanitise" and any(i.extra_keys for i in scan.images):
        left.add("embedded_images")
    if left:
        raise _Refused(
            "unprocessable", f"could not remove all content of: {', '.join(sorted(left))}"
        )


def _save(pdf: pikepdf.Pdf, destination: Path) -> None:
    try:
        with warnings.catch_warnings():
            # e.g. "widgets not reachable from /AcroForm": true of the input, not news
            warnings.simplefilter("ignore", UserWarning)
            # (into a file opened here: pikepdf writes to its descriptor, without the
            # comparison of the input's and the output's paths it makes for a name,
            # about a tenth of the save of a small file)
            with open(destination, "wb") as out:
                pdf.save(
                    out,
                    object_stream_mode=pikepdf.ObjectStreamMode.preserve,
                    linearize=False,
                    # pikepdf would rewrite the XMP (kept when metadata is allowed) to
                    # update its PDF version: leave what is allowed as it was.
                    fix_metadata_version=False,
                )
    except BaseException as exc:
        destination.unlink(missing_ok=True)  # (nothing half-written is left)
        if isinstance(exc, pikepdf.PdfError):
            raise _Refused("unprocessable", f"cannot write the rebuilt PDF: {exc}") from None
        raise
