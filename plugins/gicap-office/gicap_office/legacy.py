"""Legacy Office files (OLE compound files: .doc, .xls, .ppt, and other OLE files),
inspected with olefile and oletools.

Python cannot rebuild these binary formats, so nothing is ever removed from them:
when risky content is present the file is ``blocked`` (the reason names it) unless
every switch concerned is ``allow`` (then it is delivered ``unmodified``); a file
without risky content is delivered ``unmodified``.

The file is parsed once (olefile) and every stream read once, orphans included; the
checks below all work on that reading. Inspected (independently of the file's own
claims, whichever streams are present):

* encryption ([MS-OFFCRYPTO], what msoffcrypto-tool tests): ``EncryptionInfo`` /
  ``EncryptedPackage`` / ``EncryptedSummary`` streams, Word's ``fEncrypted``, an
  Excel FilePass record, an encrypted PowerPoint CurrentUserAtom / UserEditAtom;
  such a file is ``encrypted`` (it cannot be inspected);
* ``macros``: VBA projects (any ``Macros``/``_VBA_PROJECT_CUR``/``VBA`` storage, or
  compressed VBA code in any stream, as olevba looks for them), Excel 4 macro and
  Excel 5 module sheets (BoundSheet8 / BOF records), PowerPoint VBA project storages
  (ExOleObjStg records the VBAInfoAtom refers to, or holding a VBA project);
* ``embedded_files``: embedded OLE objects (Word ``ObjectPool``, Excel ``MBD*``
  storages, any ``\\x01Ole10Native`` / ``Package`` stream, Outlook attachments,
  PowerPoint ExOleObjStg storages other than the VBA project and OLE link caches, and
  any storage holding an embedded file);
* ``dynamic_data_exchange``: DDE, DDEAUTO and DATABASE fields in Word documents (and
  fields whose keyword a nested field computes), DDE/OLE data sources in Excel
  workbooks (SupBook records), OLE links in PowerPoint (ExOleLinkContainer records);
* ``external_hyperlinks``: Word fields that fetch from outside when the document is
  opened or updated (INCLUDETEXT, INCLUDEPICTURE, INCLUDE, IMPORT, LINK, RD; not
  HYPERLINK, a link to click), links to external workbooks (SupBook records).

PowerPoint records are walked from the document stream's record tree; ExOleObjStg
and ExOleLinkContainer headers are also searched for in the streams, as oletools
does, so records outside the tree are not missed. Reading the storages stops at
``max_expanded_bytes`` (all of them together): the file is then unprocessable.

Not inspected: hyperlinks, images, metadata and review comments. Those switches are
not applied to legacy files, except that ``disallow`` on one of them blocks every
legacy file (its absence cannot be verified).
"""

from __future__ import annotations

import array
import bisect
import io
import re
import struct
import sys
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import olefile

from gicap.cdr.compound_file import CompoundFile
from gicap.cdr.files import read_bytes
from gicap.cdr.types import DisarmRequest, DisarmResult
from gicap_office._fields import AFTER_KEYWORD, FIELDS, classify_field, keyword_state
from gicap_office._report import Report
from gicap_office._zip import MAX_EXPANDED, MAX_RATIO, RATIO_FLOOR

INSPECTED = ("macros", "embedded_files", "dynamic_data_exchange")
NOT_INSPECTED = (
    "external_hyperlinks",
    "internal_hyperlinks",
    "embedded_images",
    "metadata",
    "review_comments",
)
#: The first bytes of an OLE compound file.
OLE_MAGIC: bytes = olefile.MAGIC
_VBA_STORAGES = {"macros", "_vba_project_cur", "vba"}
#: compressed VBA source (MS-OVBA) always holds this; olevba looks for it in every stream
_VBA_CODE = b"Attribut\x00"
_PAYLOADS = ("\x01ole10native", "package")

_REC = struct.Struct("<HHI")  # PowerPoint record header: verInstance, type, length
_U16X2 = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_U32X2 = struct.Struct("<II")
# PowerPoint record types ([MS-PPT] 2.13.24)
_RT_VBA_INFO_ATOM = 0x0400
_RT_EX_OLE_OBJ_ATOM = 0x0FC3
_RT_EX_OLE_LINK = 0x0FCE
_RT_EX_OLE_OBJ_STG = 0x1011
_RT_PERSIST_DIRECTORY = 0x1772
_RT_CRYPT_SESSION = 0x2F14
_PPT_ENCRYPTED_TOKEN = 0xF3D1C4DF


def _u16(value: int) -> re.Pattern[bytes]:
    """A 2-byte value (a record type, a property id) as stored, as a pattern: ``re``
    finds a short literal about three times as fast as ``in``, which CPython searches
    for position by position."""
    return re.compile(re.escape(_U16.pack(value)))


#: Searches for the types of the records _ppt_walk reports on: a storage, an OLE link,
#: encryption.
_PPT_WALK_FINDS = tuple(
    _u16(rtype).search for rtype in (_RT_EX_OLE_OBJ_STG, _RT_EX_OLE_LINK, _RT_CRYPT_SESSION)
)
_STG_TYPE, _LINK_TYPE = _PPT_WALK_FINDS[:2]
#: an ExOleObjStg header anywhere (overlapping matches too), as oletools searches for
#: it: instance 0 or 1 (stored or compressed), any version (oletools reads the record
#: by its type; an out-of-spec version hid the storage)
_STG_PATTERN = re.compile(rb"(?=[\x00-\x1f]\x00\x11\x10)")
#: InteractiveInfoAtom records ([MS-PPT] 2.13.15: a shape's click or mouse-over
#: action), found by their type wherever they stand, and the actions that run
#: something ([MS-PPT] 2.13.11 InteractiveInfoActionEnum), as the .pptx engine names
#: its ppaction:// ones: a macro, a program (the path in the linked ExHyperlink; a
#: slide show runs it on a click, in PowerPoint and LibreOffice), an OLE verb.
_INTERACTIVE_TYPE = _u16(0x0FF3).finditer
_PPT_ACTIONS = {
    1: ("macros", "macro action"),
    2: ("external_hyperlinks", "run-program action"),
    5: ("embedded_files", "OLE action"),
}
#: Videos and sounds PowerPoint plays from a file or URL when the slide shows them
#: ([MS-PPT] 2.10.4 ExAviMovieContainer, 2.10.25 ExMCIMovieContainer, 2.10.26
#: ExMIDIAudioContainer, 2.10.33 ExWAVAudioLinkContainer: the path in a CString),
#: found by their type wherever they stand: the .pptx engine removes an external
#: videoFile or audioFile.
_LINKED_MEDIA_TYPES = tuple(_u16(rtype).finditer for rtype in (0x1006, 0x1007, 0x100D, 0x1010))
#: more ExOleObjStg records than this: the file is refused (each is decompressed)
_MAX_PPT_STORAGES = 4096
#: an ExOleLinkContainer header followed by its ExOleLinkAtom (any versions)
_LINK_PATTERN = re.compile(rb"(?=[\x00-\x0f]\x00\xce\x0f[\x00-\xff]{4}[\x00-\x0f]\x00\xd1\x0f)")


def _legacy_switches(switches: Mapping[str, str]) -> dict[str, str]:
    """Nothing can be removed: ``sanitise`` means ``disallow`` here."""
    out = {}
    for switch in (*INSPECTED, "external_hyperlinks"):
        value = str(switches.get(switch, "sanitise")).lower()
        out[switch] = "allow" if value == "allow" else "disallow"
    return out


def disarm(request: DisarmRequest) -> DisarmResult:
    # (read in one go: most legacy documents are small)
    data = read_bytes(request.source)
    if not data.startswith(olefile.MAGIC):
        return DisarmResult("unprocessable", reason="not an OLE compound file")
    kind = request.file_type.name
    budget = [int(request.limits.get("max_expanded_bytes") or MAX_EXPANDED)]
    ratio = int(request.limits.get("max_ratio") or MAX_RATIO)
    try:
        # a file object: olefile takes short byte strings for file names; the file is
        # parsed once and every check below works on this one reading of it
        with CompoundFile(io.BytesIO(data)) as ole:
            content = _Content.read(ole, data, budget)
            biff = _biff(content) if kind == "xls" or content.root("workbook", "book") else None
            ppt = _ppt_walk(content, kind)
            if _encrypted(ole, content, biff, ppt):
                return DisarmResult(
                    "encrypted", reason=f"password-protected {kind} file: it cannot be inspected"
                )
            report = Report(_legacy_switches(request.switches))
            _inspect(content, kind, biff, ppt, report, budget, ratio)
    except MemoryError:
        raise
    except Exception as exc:  # oletools and olefile raise many kinds on malformed files
        return DisarmResult("unprocessable", reason=f"cannot parse the {kind} file: {exc}")
    blocked = report.blocked(f"legacy {kind} file (cannot be rebuilt, nothing can be removed)")
    if blocked is not None:
        return blocked
    unchecked = [s for s in NOT_INSPECTED if request.switches.get(s) == "disallow"]
    if unchecked:
        return DisarmResult(
            "blocked",
            reason=f"legacy {kind} files cannot be checked for {', '.join(unchecked)}, "
            "which the policy disallows",
        )
    return report.unmodified()


#: What :func:`vba_label` calls a VBA project, and an OLE file it cannot read.
VBA_PROJECT = "VBA project"
UNREADABLE_OLE = "OLE storage that cannot be read (it may hold a VBA project)"


def vba_label(data: bytes, budget: list[int]) -> str | None:
    """Whether an OLE compound file (``data``: a part of an OOXML package, say) holds a
    VBA project as olevba finds one: a storage of a VBA project's name, or compressed
    VBA code in any stream, orphans included (:meth:`_Content.vba`); ``VBA_PROJECT``,
    ``UNREADABLE_OLE`` for a file that cannot be read (it cannot be shown to hold
    none), else None. Streams are read one at a time, none kept, each counted against
    ``budget`` (shared by the caller's files: a sector many streams claim is read for
    each)."""
    try:
        with CompoundFile(io.BytesIO(data)) as ole:
            reader = _StreamReader(ole, data, budget)
            streams = []
            for path, entry in _tree(ole):
                if entry.entry_type == olefile.STGTY_STORAGE:
                    if path[-1] in _VBA_STORAGES:
                        return VBA_PROJECT
                elif entry.entry_type == olefile.STGTY_STREAM:
                    streams.append(entry)
            for entry in (*streams, *_orphan_streams(ole)):
                if _VBA_CODE in reader.read(entry.isectStart, entry.size):
                    return VBA_PROJECT
    except MemoryError:
        raise
    except Exception:  # olefile raises many kinds on malformed files
        return UNREADABLE_OLE
    return None


def _tree(ole: olefile.OleFileIO) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every entry of the directory tree as olefile built it (what listdir walks),
    with its lower-cased path."""
    todo: list[tuple[tuple[str, ...], Any]] = [((), ole.root)]
    while todo:
        prefix, parent = todo.pop()
        for entry in parent.kids:
            path = (*prefix, entry.name.lower())
            yield path, entry
            if entry.entry_type == olefile.STGTY_STORAGE:
                todo.append((path, entry))


def _orphan_streams(ole: olefile.OleFileIO) -> Iterator[Any]:
    """The stream entries outside the tree (malformed files hide data there)."""
    directory = ole.directory_fp.getvalue()
    for sid, entry in enumerate(ole.direntries):
        # not in the tree: unused or an orphan; the type byte of the raw entry tells
        # which, before olefile parses it
        if entry is None and directory[sid * 128 + 66] == olefile.STGTY_STREAM:
            yield ole._load_direntry(sid)


@dataclass
class _Content:
    """Every entry of an OLE file, each stream read once."""

    #: lower-cased path of every stream and storage in the directory tree
    paths: list[tuple[str, ...]]
    storages: set[tuple[str, ...]]
    #: (lower-cased path, data) of every stream in the tree
    streams: list[tuple[tuple[str, ...], bytes]]
    #: data of the streams outside the tree (orphans: malformed files hide data there)
    orphans: list[bytes]
    ole: olefile.OleFileIO = field(repr=False)

    @classmethod
    def read(cls, ole: olefile.OleFileIO, data: bytes, budget: list[int]) -> _Content:
        """``ole`` parsed from ``data``; every stream read counts against ``budget``
        (``max_expanded_bytes``)."""
        reader = _StreamReader(ole, data, budget)
        paths: list[tuple[str, ...]] = []
        storages: set[tuple[str, ...]] = set()
        streams: list[tuple[tuple[str, ...], bytes]] = []
        # streams are read as openstream reads them, from the mini stream when small
        for path, entry in _tree(ole):
            paths.append(path)
            if entry.entry_type == olefile.STGTY_STORAGE:
                storages.add(path)
            elif entry.entry_type == olefile.STGTY_STREAM:
                streams.append((path, reader.read(entry.isectStart, entry.size)))
        orphans = [reader.read(e.isectStart, e.size) for e in _orphan_streams(ole)]
        if len(set(paths)) != len(paths):
            # two WordDocument streams, say: readers may take another one than ours
            # (counted once: list.count per entry took 16 s for 20,000 entries)
            names = sorted("/".join(p) for p, n in Counter(paths).items() if n > 1)
            raise ValueError(f"entries of the same name in one storage: {', '.join(names)}")
        return cls(paths, storages, streams, orphans, ole)

    def root(self, *names: str) -> bytes | None:
        """The first of the root streams ``names`` (lower case) that exists."""
        for name in names:
            for path, data in self.streams:
                if path == (name,):
                    return data
        return None

    def all_data(self) -> list[bytes]:
        return [data for _, data in self.streams] + self.orphans

    def vba(self) -> bool:
        """A VBA project: a VBA storage (olevba's ``find_vba_projects`` looks for no
        less), or compressed VBA code in any stream, orphans included (olevba's
        ``detect_vba_macros`` looks there too)."""
        if any(_VBA_STORAGES & set(path[:-1]) for path in self.paths):
            return True
        return any(_VBA_CODE in data for data in self.all_data())

    def payloads(self) -> int:
        return sum(1 for path in self.paths if path[-1] in _PAYLOADS)


class _StreamReader:
    """Streams read as olefile's ``_open`` reads them, through olefile's FAT, without
    its per-sector work: up to as many sectors as the size needs are followed along
    the chain, which stops at the first sector number outside the table; each sector
    is what a read at its offset gives (short or empty past the end); the whole is cut
    to the size. Small streams are in the mini stream: with the first of them the
    MiniFAT and the mini stream are read from the FAT as olefile's ``loadminifat``
    and ``_open`` read them then (the MiniFAT's sectors the header counts, as 32-bit
    numbers, cut to the mini stream's sectors; the mini stream is the root entry's
    data). Empty streams, and every stream of a file whose header gives other sector
    sizes than the format's, are read by olefile.

    A stream cannot hold more bytes than the file: one that declares more is read
    along a looping chain (olefile would only log it and read on, sector by sector,
    up to the declared size) and the file is refused; so is a file whose streams
    together (a sector may be claimed by many streams) go beyond ``budget``."""

    def __init__(
        self, ole: olefile.OleFileIO, data: bytes, budget: list[int] | None = None
    ) -> None:
        self.ole = ole
        self.data = data
        self.budget = budget if budget is not None else [MAX_EXPANDED]
        self.mini: bytes | None = None
        self.minifat = array.array("I")
        self.regular = (
            ole.minisectorsize == 64
            and ole.sectorsize in (512, 4096)
            and self.minifat.itemsize == 4
            and sys.byteorder == "little"
        )

    def read(self, start: int, size: int) -> bytes:
        ole = self.ole
        if size > len(self.data):
            raise ValueError(
                f"a stream declares {size} bytes, more than the whole file ({len(self.data)})"
            )
        if size > self.budget[0]:
            raise ValueError("the OLE streams expand beyond max_expanded_bytes")
        self.budget[0] -= max(size, 0)
        small = 0 < size < ole.minisectorcutoff
        if small and self.mini is None:
            self._check_mini()
        if size <= 0 or not self.regular:
            return ole._open(start, size).read()
        # regular sector n is at (n + 1) * sectorsize (after the header); mini sector
        # n at n * 64 in the mini stream
        sector = ole.sectorsize
        if not small:
            return _chain(self.data, ole.fat, sector, sector, start, size)
        if self.mini is None:
            root = ole.root
            table = ole.num_mini_fat_sectors * ole.sectorsize
            # a partial number raises ValueError, as in olefile
            minifat = array.array(
                "I", _chain(self.data, ole.fat, sector, sector, ole.minifatsect, table)
            )
            self.minifat = minifat[: -(-root.size // 64)]
            self.mini = _chain(self.data, ole.fat, sector, sector, root.isectStart, root.size)
        return _chain(self.mini, self.minifat, 64, 0, start, size)

    def _check_mini(self) -> None:
        """The mini stream (the root entry's data) and the MiniFAT are read with the
        first small stream: neither can hold more bytes than the file (a looping chain
        would be followed up to the size declared, 2 GB for olefile's "unknown"), and
        both count against the budget."""
        ole, whole = self.ole, len(self.data)
        for what, size in (
            ("mini stream", ole.root.size),
            ("MiniFAT", ole.num_mini_fat_sectors * ole.sectorsize),
        ):
            if size > whole:
                raise ValueError(
                    f"the {what} declares {size} bytes, more than the whole file ({whole})"
                )
            if size > self.budget[0]:
                raise ValueError("the OLE streams expand beyond max_expanded_bytes")
            self.budget[0] -= size


def _chain(
    source: bytes, fat: Sequence[int], sector: int, offset: int, start: int, size: int
) -> bytes:
    """``size`` bytes of the chain from ``start`` (see :class:`_StreamReader`).

    Sectors that follow one another in the file (as writers nearly always lay a
    stream out) are sliced together: the same bytes as one slice per sector, joined
    (a run reaching past the end of ``source`` is short there, as its sectors are)."""
    end = len(fat)
    parts = []
    sid = start
    run_start, run_length = -1, 0  # (the run of consecutive sectors not sliced yet)
    for _ in range(-(-size // sector)):
        if sid >= end:
            break
        if sid == run_start + run_length:
            run_length += 1
        else:
            if run_length:
                at = offset + run_start * sector
                parts.append(source[at : at + run_length * sector])
            run_start, run_length = sid, 1
        sid = fat[sid]
    if run_length:
        at = offset + run_start * sector
        parts.append(source[at : at + run_length * sector])
    return b"".join(parts)[:size]


#: [MS-OLEPS] 2.25.1: the summary information's security property (bit 0: password).
_PIDSI_DOC_SECURITY = 0x13


def _encrypted(
    ole: olefile.OleFileIO, content: _Content, biff: _Biff | None, ppt: _Ppt | None
) -> bool:
    """[MS-OFFCRYPTO]: what msoffcrypto-tool (through oletools' ``crypto``) tests,
    each format's marker checked whenever its stream is present."""
    names = {path[0] for path in content.paths if len(path) == 1}
    if {"encryptioninfo", "encryptedpackage", "encryptedsummary"} & names:
        return True
    word = content.root("worddocument")
    if word is not None and len(word) >= 12 and _U16X2.unpack_from(word, 10)[0] & 0x0100:
        return True  # FibBase.fEncrypted
    if biff is not None and biff.filepass:
        return True
    if ppt is not None and ppt.encrypted:
        return True
    if word is None and biff is None and ppt is None:
        # What oletools' crypto decides here: msoffcrypto recognises no format
        # without these streams, and oletools then reads the summary's
        # PIDSI_DOC_SECURITY (read here from this opening of the file: msoffcrypto
        # opened it again with olefile's own, quadratic, duplicate-stream check)
        try:
            if ole.exists("\x05SummaryInformation"):
                security = ole.getproperties("\x05SummaryInformation").get(_PIDSI_DOC_SECURITY)
                return isinstance(security, int) and bool(security & 1)
        except Exception:
            return False
    return False


def _inspect(
    content: _Content,
    kind: str,
    biff: _Biff | None,
    ppt: _Ppt | None,
    report: Report,
    budget: list[int],
    ratio: int = MAX_RATIO,
) -> None:
    # -- macros
    if content.vba():
        report.hit("macros", "VBA project")
    if biff is not None and biff.macro_sheets:
        report.hit("macros", "Excel 4 macro sheet", n=biff.macro_sheets)
    if biff is not None and content.root("ctls"):
        # the persisted ActiveX controls of a workbook's sheets ([MS-XLS] 2.1.7.7), as
        # the .xlsx engine counts activeX parts
        report.hit("macros", "ActiveX control")

    # -- embedded objects
    storages = content.storages
    objects = 0
    objects += sum(1 for s in storages if len(s) == 2 and s[0] == "objectpool")
    objects += sum(1 for s in storages if len(s) == 1 and s[0].startswith("mbd"))
    objects += sum(1 for s in storages if s[-1].startswith("__attach_version1.0_"))
    if not objects:
        objects += content.payloads()
    if ppt is not None:
        vba, ppt_objects = _ppt_storages(ppt, budget, ratio)
        objects += ppt_objects
        if vba:
            report.hit("macros", "VBA project", n=vba)
    if objects:
        report.hit("embedded_files", "embedded OLE object", n=objects)

    # -- DDE and external links
    word = content.root("worddocument")
    if word is not None:
        text = _word_text(content, word)
        if text is None:
            raise ValueError("the Word document's text cannot be read (its piece table)")
        # (a field counted once, by its keyword or by its type, whichever finds more)
        fields = Counter(_word_fields(text)) | Counter(_field_types(content, word))
        for (switch, what), n in sorted(fields.items()):
            report.hit(switch, what, n=n)
        template = _attached_template(content, word)
        if template is not None and _REMOTE_PATH.match(template):
            report.hit("external_hyperlinks", "remote template")
        pictures = _linked_picfs(content, word)
        if pictures:
            report.hit("external_hyperlinks", "linked picture", n=pictures)
    if biff is not None:
        if biff.dde:
            report.hit("dynamic_data_exchange", "DDE/OLE data source", n=biff.dde)
        if biff.external:
            report.hit("external_hyperlinks", "external workbook link", n=biff.external)
        if biff.queries:
            report.hit("dynamic_data_exchange", "data query or connection", n=biff.queries)
        if biff.fetching:
            report.hit("external_hyperlinks", "WEBSERVICE or IMAGE function", n=biff.fetching)
    if ppt is not None and ppt.links:
        report.hit("dynamic_data_exchange", "OLE link", n=ppt.links)
    if ppt is not None:
        for (switch, what), n in sorted(ppt.actions.items()):
            report.hit(switch, what, n=n)
        if ppt.linked_media:
            report.hit("external_hyperlinks", "linked video or sound", n=ppt.linked_media)
    # (a workbook's drawings are read joined across their CONTINUE records)
    workbook = {("workbook",), ("book",)} if biff is not None else set()
    drawings = [data for path, data in content.streams if path not in workbook]
    drawings += content.orphans + ([biff.drawing] if biff is not None else [])
    linked = sum(_linked_pictures(data) for data in drawings)
    if linked:
        report.hit("external_hyperlinks", "linked picture", n=linked)


#: The record types of an OfficeArt property table ([MS-ODRAW] 2.2.9-2.2.11:
#: OfficeArtFOPT, its secondary and tertiary forms), as stored: found wherever they
#: stand (PowerPoint, Word and Excel keep their drawings in different places), after
#: a recVer of 3.
_FOPT_TYPES = (b"\x0b\xf0", b"\x21\xf1", b"\x22\xf1")
#: pibFlags and fillBlipFlags ([MS-ODRAW] 2.3.23.4, 2.3.7.3): the picture is named by
#: a URL (msoblipflagURL 0x2), not saved in the file (0x4) or linked to a file (0x8).
_BLIP_FLAGS = (0x0106, 0x0187)
_LINKED_BLIP = 0x0E


def _record_starts(data: bytes, types: tuple[bytes, ...]) -> list[int]:
    """Where records of these (2-byte) types start (2 bytes before each type), in
    order.

    Each occurrence of a type's second byte is found with memchr and the byte before
    it checked: in picture data (every byte value as likely) that is twice as fast as
    searching for each 2-byte type, which CPython does position by position. A
    stream holding that byte more often than once in 64 (where the check per
    occurrence would cost more) is searched type by type instead."""
    firsts: dict[int, set[int]] = {}
    for rtype in types:
        firsts.setdefault(rtype[1], set()).add(rtype[0])
    starts = []
    budget = len(data) // 64 + 64
    for second, allowed in firsts.items():
        byte = bytes([second])
        pos = data.find(byte, 3)
        while pos >= 0:
            budget -= 1
            if budget < 0:
                return _record_starts_by_type(data, types)
            if data[pos - 1] in allowed:
                starts.append(pos - 3)
            pos = data.find(byte, pos + 1)
    return sorted(starts)


def _record_starts_by_type(data: bytes, types: tuple[bytes, ...]) -> list[int]:
    """:func:`_record_starts`, each type searched for in turn."""
    starts = []
    for rtype in types:
        pos = data.find(rtype, 2)
        while pos >= 0:
            starts.append(pos - 2)
            pos = data.find(rtype, pos + 1)
    return sorted(starts)


#: An entry of a property table (opid, op) naming a picture from outside, found by its
#: first two bytes: pibFlags or fillBlipFlags, fBid set or not, fComplex clear (its op
#: then holds the flags: _LINKED_BLIP in its first byte).
_LINKED_ENTRY_OPIDS = tuple(
    _u16(opid | bid).finditer for opid in _BLIP_FLAGS for bid in (0, 0x4000)
)


def _linked_pictures(data: bytes) -> int:
    """Property tables of shapes whose picture (or fill picture) comes from outside:
    a URL or a file the reader fetches when it opens the document (LibreOffice fetched
    a linked picture of a .ppt, .xls and .doc that no field names).

    The entries naming one are found once in the whole stream, and each table asks
    whether one of them is among its own (at its position, modulo an entry's size).
    (Walking each table's entries cost their count for every table: tables overlap,
    and 1 MB repeating a 4-byte header of 4,083 entries took 130 s.)"""
    end = len(data)
    tables = []
    for pos in _record_starts(data, _FOPT_TYPES):
        if pos + 8 > end or data[pos] & 0x0F != 3:
            continue
        count = _U16.unpack_from(data, pos)[0] >> 4
        table = pos + 8
        if count and table + 6 * count <= end:
            tables.append((table, table + 6 * count))
    if not tables:
        return 0
    # the entries naming a picture from outside, by their position modulo 6
    linked: dict[int, list[int]] = {}
    for finditer in _LINKED_ENTRY_OPIDS:
        for match in finditer(data):
            at = match.start()
            if at + 6 <= end and data[at + 2] & _LINKED_BLIP:
                linked.setdefault(at % 6, []).append(at)
    for entries in linked.values():
        entries.sort()
    found = 0
    for table, table_end in tables:
        entries = linked.get(table % 6)
        if entries:
            i = bisect.bisect_left(entries, table)
            if i < len(entries) and entries[i] < table_end:
                found += 1
    return found


#: A path Word fetches over the network: a URL, a UNC path (``\\host``, ``//host``).
_REMOTE_PATH = re.compile(r"\s*(?:[A-Za-z][A-Za-z0-9+.-]+:|[\\/]{2})")


def _fib_pair(word: bytes, index: int) -> tuple[int, int] | None:
    """The ``index``-th (fc, lcb) pair of a Word 97+ FIB's FibRgFcLcb, found as
    readers find it: past FibBase and the csw, cslw and cbRgFcLcb counted arrays
    ([MS-DOC] 2.5.1); ``None`` when the FIB is too short for it."""
    if len(word) < 34:
        return None
    pos = 32 + 2 + 2 * _U16.unpack_from(word, 32)[0]
    if pos + 2 > len(word):
        return None
    pos += 2 + 4 * _U16.unpack_from(word, pos)[0]
    if pos + 2 > len(word) or _U16.unpack_from(word, pos)[0] <= index:
        return None
    pos += 2 + index * 8
    if pos + 8 > len(word):
        return None
    return _U32X2.unpack_from(word, pos)


def _attached_template(content: _Content, word: bytes) -> str | None:
    """The path of the template a Word 97+ document is attached to: the second string
    (ibstAssocDot) of its SttbfAssoc ([MS-DOC] 2.9.273), the 33rd FibRgFcLcb pair."""
    if len(word) < 12:
        return None
    which = _U16.unpack_from(word, 0x0A)[0] & 0x0200  # fWhichTblStm
    table = content.root("1table" if which else "0table")
    pair = _fib_pair(word, 32)
    if table is None or pair is None or not pair[1] or pair[0] + pair[1] > len(table):
        return None
    data = table[pair[0] : pair[0] + pair[1]]
    if len(data) < 6:
        return None
    extended = _U16.unpack_from(data, 0)[0] == 0xFFFF  # UTF-16 strings
    pos = 2 if extended else 0
    count = _U16.unpack_from(data, pos)[0]
    pos += 4  # cData, cbExtra
    for i in range(min(count, 2)):
        if pos + (2 if extended else 1) > len(data):
            return None
        if extended:
            length = _U16.unpack_from(data, pos)[0]
            raw = data[pos + 2 : pos + 2 + 2 * length]
            pos += 2 + 2 * length
            text = raw.decode("utf-16-le", errors="replace")
        else:
            length = data[pos]
            raw = data[pos + 1 : pos + 1 + length]
            pos += 1 + length
            text = raw.decode("cp1252", errors="replace")
        if i == 1:
            return text
    return None


#: sprmCPicLocation (0x6A03) and sprmCHsp (0x6A09), as stored ([MS-DOC] 2.6.1): each
#: gives (its 4-byte operand) the offset of a picture's PICF, in the Data stream
#: (in the WordDocument stream when there is none, as LibreOffice reads it).
_PIC_LOCATIONS = tuple(
    re.compile(_u16(sprm).pattern + rb"(?=(.{4}))", re.S) for sprm in (0x6A03, 0x6A09)
)
#: PICF ``mfpf.mm`` values whose picture is a file named after the PICF header (a
#: Pascal string): 94 (0x5E), a picture file "not embedded", which LibreOffice writes
#: for a linked picture and inserts as a link to that file or URL (ww8graf2.cxx,
#: ReadGrafFile); 98 (0x62), a TIFF file name (Word 97 PICF); 0x66 MM_SHAPEFILE,
#: a shape file, the picture's full path in stPicName ([MS-DOC] 2.9.192). (99 is a
#: bitmap stored in the file (Word 97), and LibreOffice imports no picture of it.)
_LINKED_MM = frozenset({0x5E, 0x62, 0x66})
#: the size of a PICF header ([MS-DOC] 2.9.193 cbHeader)
_PICF_HEADER = 0x44


def _linked_picfs(content: _Content, word: bytes) -> int:
    """Pictures of a Word 97+ document whose PICF names a file to show instead of
    holding the picture (see ``_LINKED_MM``): no field names them and no OfficeArt
    property says "linked", yet LibreOffice fetched the URL of such a picture when it
    opened the document.

    The PICFs are read where readers read them, at the offsets sprmCPicLocation (or
    sprmCHsp) gives: wherever the bytes of such a sprm stand in the WordDocument,
    table and Data streams (character and paragraph properties, styles, the property
    lists of the piece table and of huge paragraphs) they are taken for one, a chance
    match costing one look at the offset it gives. A PICF nothing points to is not
    read (the picture data around it is not searched: chance bytes there would block
    ordinary documents). A PICF counts when its ``mm`` is one of ``_LINKED_MM`` and
    a name stands after its header (at ``cbHeader``, as LibreOffice reads it, or at
    the header's fixed size); its other fields are not required to be sound
    (LibreOffice does not check them)."""
    pictures = content.root("data")
    if pictures is None:
        pictures = word
    operands: list[bytes] = []
    for stream in (word, content.root("0table"), content.root("1table"), content.root("data")):
        if stream:
            for find in _PIC_LOCATIONS:
                operands += find.findall(stream)
    offsets = set(struct.unpack(f"<{len(operands)}I", b"".join(operands)))
    end = len(pictures)
    found = 0
    for offset in offsets:
        if offset + 8 > end:
            continue
        cb_header, mm = _U16X2.unpack_from(pictures, offset + 4)
        if mm not in _LINKED_MM:
            continue
        names = (offset + cb_header, offset + _PICF_HEADER)
        if any(at < end and pictures[at] for at in names):
            found += 1
    return found


def _word_text(content: _Content, word: bytes) -> str | None:
    """The text of a Word 97+ document, every story of it (main text, headers,
    footnotes, text boxes...), as Word reads it: its pieces in the order of the piece
    table ([MS-DOC] 2.9.177 Clx, 2.9.178 PlcPcd), 8-bit (cp1252) or UTF-16 each.
    Read in stream order, the bytes of pictures and tables made fields out of chance
    0x13 bytes, and a keyword split over two pieces stored apart was missed. None
    when the table cannot be read (a Word 95 file, or a damaged one)."""
    if len(word) < 0x9A or _U16.unpack_from(word, 0)[0] != 0xA5EC:
        return None
    if _U16.unpack_from(word, 2)[0] < 0x6A:
        return None  # (Word 95 and older: another FIB)
    which = _U16.unpack_from(word, 0x0A)[0] & 0x0200  # fWhichTblStm
    table = content.root("1table" if which else "0table")
    pair = _fib_pair(word, 33)  # fcClx, lcbClx: the 34th pair
    if pair is None:
        return None
    fc, lcb = pair
    if table is None or fc + lcb > len(table):
        return None
    pos, end = fc, fc + lcb
    plc = None
    while pos < end:
        if table[pos] == 1 and pos + 3 <= end:  # Prc: formatting, skipped
            pos += 3 + _U16.unpack_from(table, pos + 1)[0]
        elif table[pos] == 2 and pos + 5 <= end:  # Pcdt: the piece table
            size = _U32.unpack_from(table, pos + 1)[0]
            plc = table[pos + 5 : pos + 5 + size]
            break
        else:
            return None
    if plc is None or len(plc) < 16 or (len(plc) - 4) % 12:
        return None
    n = (len(plc) - 4) // 12
    cps = struct.unpack_from(f"<{n + 1}I", plc, 0)
    pieces = []
    total = 0
    for i in range(n):
        count = cps[i + 1] - cps[i]
        total += max(count, 0)
        if count < 0 or total > len(word):
            return None
        (fc_piece,) = _U32.unpack_from(plc, 4 * (n + 1) + 8 * i + 2)
        if fc_piece & 0x40000000:  # fCompressed: one byte a character, at fc / 2
            start = (fc_piece & 0x3FFFFFFF) // 2
            data = word[start : start + count]
            if len(data) < count:
                return None
            pieces.append(data.decode("cp1252", "replace"))
        else:
            start = fc_piece & 0x3FFFFFFF
            data = word[start : start + 2 * count]
            if len(data) < 2 * count:
                return None
            pieces.append(data.decode("utf-16-le", "replace"))
    return "".join(pieces)


#: A field in the document's text: its begin character (0x13), then its instruction
#: up to its separator (0x14), its end (0x15) or a nested field's begin (0x13, looked
#: at, not taken: it begins a field of its own).
_FIELD = re.compile("\x13([^\x13\x14\x15]*)(?=(\x13)?)")
#: Fields that reach outside the document when it is opened or updated (DDE, DDEAUTO,
#: DATABASE; INCLUDETEXT, INCLUDEPICTURE, INCLUDE, IMPORT, LINK, RD): a link to click
#: (HYPERLINK) is not judged here.
_OPENING_FIELDS = frozenset(
    FIELDS[key]
    for key in ("DDE", "DDEAUTO", "DATABASE", "INCLUDETEXT", "INCLUDEPICTURE", "INCLUDE")
    + ("IMPORT", "LINK", "RD")
)


#: The field tables of a Word 97+ document's stories, by their index among the FIB's
#: (fc, lcb) pairs ([MS-DOC] 2.5.6 FibRgFcLcb97): PlcfFldMom, PlcfFldHdr, PlcfFldFtn,
#: PlcfFldAtn, PlcfFldEdn, PlcfFldTxbx, PlcffldHdrTxbx.
_FIELD_TABLES = (16, 17, 18, 19, 48, 57, 59)
#: Field types (a field begin's flt, [MS-DOC] 2.9.90) of the fields that reach outside
#: the document when it is opened or updated, as their keywords are judged: DDE,
#: DDEAUTO, DATABASE; INCLUDETEXT, INCLUDE (print merge), INCLUDEPICTURE, IMPORT,
#: LINK. (RD has no entry in the tables: its keyword is judged.)
_FIELD_TYPES = {
    45: FIELDS["DDE"],
    46: FIELDS["DDEAUTO"],
    78: FIELDS["DATABASE"],
    68: FIELDS["INCLUDETEXT"],
    36: FIELDS["INCLUDE"],
    67: FIELDS["INCLUDEPICTURE"],
    55: FIELDS["IMPORT"],
    56: FIELDS["LINK"],
}


def _field_types(content: _Content, word: bytes) -> list[tuple[str, str]]:
    """(switch, kind) of every field begin in the document's field tables whose type
    reaches outside the document (``_FIELD_TYPES``). LibreOffice picks a field's
    handler by this type, whatever keyword its instruction shows, and takes the
    field's extent from the table, whether a begin character stands in the text or
    not: a HYPERLINK instruction typed INCLUDEPICTURE fetched its URL."""
    which = _U16.unpack_from(word, 0x0A)[0] & 0x0200 if len(word) >= 12 else 0
    table = content.root("1table" if which else "0table")
    if table is None:
        return []
    found = []
    for index in _FIELD_TABLES:
        pair = _fib_pair(word, index)
        if pair is None or pair[1] < 4 or pair[0] + pair[1] > len(table):
            continue
        n = (pair[1] - 4) // 6  # PlcFld: n + 1 CPs, then n two-byte FLDs
        flds = table[pair[0] + 4 * (n + 1) : pair[0] + 4 * (n + 1) + 2 * n]
        for ch, flt in zip(flds[::2], flds[1::2], strict=True):
            if ch & 0x1F == 0x13 and flt in _FIELD_TYPES:
                found.append(_FIELD_TYPES[flt])
    return found


def _word_fields(text: str) -> list[tuple[str, str]]:
    """(switch, kind) of every field of a Word document's text that reaches outside
    the document, read as :func:`classify_field` reads OOXML and RTF fields: the
    keyword after white space or controls, ended by a quote too, and a keyword a
    nested field computes or ends (see ``keyword_state``) counted as DDE.
    (msodde's scan missed a keyword after a space in UTF-16 text, where Word writes
    one, and a computed one.)"""
    found = []
    for m in _FIELD.finditer(text):
        instruction = m.group(1)
        computed = m.group(2) is not None and keyword_state(0, instruction) != AFTER_KEYWORD
        verdict = classify_field(instruction, computed)
        if verdict is not None and (computed or verdict in _OPENING_FIELDS):
            found.append(verdict)
    return found


# ------------------------------------------------------------------ Excel (BIFF)


@dataclass
class _Biff:
    filepass: bool = False
    macro_sheets: int = 0
    dde: int = 0
    external: int = 0
    #: query tables (web, text and database queries) and data connections
    queries: int = 0
    #: names of functions that fetch a URL (_FETCHING_FUNCTIONS) the workbook calls
    fetching: int = 0
    #: the OfficeArt data of the drawing records, joined as Excel reads it (a record
    #: that does not fit in one BIFF record goes on in CONTINUE records)
    drawing: bytes = b""


#: MsoDrawingGroup, MsoDrawing, MsoDrawingSelection ([MS-XLS] 2.4.170-172), Continue.
_BIFF_DRAWING = (0x00EB, 0x00EC, 0x00ED)
_BIFF_CONTINUE = 0x003C
#: Qsi, DbOrParamQry, DConn ([MS-XLS] 2.4.208, 2.4.100, 2.4.83): a query table (a web,
#: text or database query Excel refreshes, on opening when the query says so) and a
#: data connection. (In a .xlsx, query tables and connections.xml go.)
_BIFF_QUERIES = (0x01AD, 0x00DC, 0x0876)
#: ExternName ([MS-XLS] 2.4.105): a name of another workbook, a DDE or OLE item, or a
#: function Excel 97-2003 does not know (an add-in function: WEBSERVICE, IMAGE...).
_BIFF_EXTERN_NAME = 0x0023
#: Functions that fetch a URL when the workbook is calculated, as an ExternName names
#: them (a function of a later Excel carries a prefix): the .xlsx engine replaces
#: their formulas by their values.
_FETCHING_FUNCTIONS = frozenset({"webservice", "image"})
_FUNCTION_PREFIX = re.compile(r"^(?:_xlfn\.|_xlws\.)*")
#: The records _biff reads: FilePass, BoundSheet8, BOF, EXTERNSHEET, SupBook, drawings,
#: queries, ExternName.
_BIFF_READ = frozenset(
    {
        0x002F,
        0x0085,
        0x0809,
        0x0017,
        0x01AE,
        _BIFF_EXTERN_NAME,
        *_BIFF_DRAWING,
        _BIFF_CONTINUE,
        *_BIFF_QUERIES,
    }
)
#: A run of whole records _biff does not read (its loop would skip them one by one):
#: first the cell records of their fixed sizes (Number, RK, LabelSst, Blank, BoolErr
#: and Row, [MS-XLS] 2.4: most of a workbook), then any other type not in _BIFF_READ
#: of a size under 256 (formulas, MulRk...), by its size. The longer ones end the run.
_SKIPPED_RUN = re.compile(
    rb"(?:\x03\x02\x0e\x00.{14}|\x7e\x02\x0a\x00.{10}|\xfd\x00\x0a\x00.{10}"
    rb"|\x01\x02\x06\x00.{6}|\x05\x02\x08\x00.{8}|\x08\x02\x10\x00.{16}|(?!"
    + b"|".join(re.escape(struct.pack("<H", rtype)) for rtype in sorted(_BIFF_READ))
    + rb")..(?:"
    + b"|".join(re.escape(bytes((size, 0))) + b".{%d}" % size for size in range(256))
    + rb"))*+",
    re.S,
)


def _biff(content: _Content) -> _Biff:
    """One pass over the records of the workbook stream(s) ([MS-XLS] 2.1.4)."""
    out = _Biff()
    for name in ("workbook", "book"):
        stream = content.root(name)
        if stream is None:
            continue
        pos, end = 0, len(stream)
        drawing: list[bytes] = []
        in_drawing = False
        biff5 = False
        unpack = _U16X2.unpack_from
        while pos + 4 <= end:
            rtype, size = unpack(stream, pos)
            start = pos + 4
            pos = start + size
            if rtype not in _BIFF_READ:
                in_drawing = False
                # (most of a workbook: runs of records skipped here as the loop
                # would skip them one by one, in C)
                pos = _SKIPPED_RUN.match(stream, pos).end()  # type: ignore[union-attr]
                continue
            if rtype in _BIFF_DRAWING or (in_drawing and rtype == _BIFF_CONTINUE):
                drawing.append(stream[start:pos])
                in_drawing = True
            else:
                in_drawing = False
            if rtype == 0x002F:  # FilePass
                out.filepass = True
            elif rtype == 0x0085:  # BoundSheet8: dt 1 macro sheet, 6 VB module
                if size >= 6 and stream[start + 5] in (1, 6):
                    out.macro_sheets += 1
            elif rtype == 0x0809:  # BOF: dt 0x40 macro sheet, 6 VB module
                if size >= 4 and _U16X2.unpack_from(stream, start)[1] in (0x40, 0x06):
                    out.macro_sheets += 1
                biff5 = size >= 2 and _U16.unpack_from(stream, start)[0] == 0x0500
            elif rtype == 0x0017 and biff5 and size >= 2:
                # EXTERNSHEET of an Excel 5/95 workbook (BIFF8 has SupBook records)
                link = _externsheet5(stream[start + 1 : start + 1 + stream[start]])
                if link == "dde":
                    out.dde += 1
                elif link == "external":
                    out.external += 1
            elif rtype in _BIFF_QUERIES:
                out.queries += 1
            elif rtype == _BIFF_EXTERN_NAME and _fetching_name(stream[start:pos]):
                out.fetching += 1
            elif rtype == 0x01AE:  # SupBook
                link = _supbook(stream[start:pos])
                if link == "dde":
                    out.dde += 1
                elif link == "external":
                    out.external += 1
        out.drawing += b"".join(drawing)
    return out


def _fetching_name(body: bytes) -> bool:
    """Whether an ExternName names a function that fetches a URL: its name (a
    ShortXLUnicodeString after the options and 4 bytes, in every form of the record)
    without the prefixes of later Excel versions, in any letter case."""
    if len(body) < 8:
        return False
    cch, high = body[6], body[7] & 1
    raw = body[8 : 8 + cch * (2 if high else 1)]
    name = raw.decode("utf-16-le" if high else "latin-1", errors="replace").lower()
    return _FUNCTION_PREFIX.sub("", name) in _FETCHING_FUNCTIONS


def _externsheet5(name: bytes) -> str | None:
    """The kind of an Excel 5/95 EXTERNSHEET's encoded name (as LibreOffice's BIFF5
    import reads it): 0x01, an encoded document address; 0x02-0x04 and ":", this
    workbook or an add-in; a name holding 0x03 with no such mark, a DDE link
    (``application\x03topic``)."""
    if not name or name[0] in (0x02, 0x03, 0x04, 0x3A):
        return None
    if name[0] == 0x01:
        return "external"
    return "dde" if b"\x03" in name else "external"


def _supbook(body: bytes) -> str | None:
    """The kind of supporting link ([MS-XLS] 2.4.271), as oletools' xls_parser reads
    it; a malformed virtual path counts as a link (oletools would skip it)."""
    if len(body) < 4:
        raise ValueError("SupBook record too short")
    ctab, cch = _U16X2.unpack_from(body)
    if len(body) == 4 and (cch == 0x0401 or (ctab == 1 and cch == 0x3A01)):
        # this workbook, add-in functions: the record holds nothing else (LibreOffice
        # reads a path after either mark as a link to that document)
        return None
    if 0 < cch <= 0xFF and len(body) > 4:
        wide = body[4] & 1
        raw = body[5 : 5 + cch * (2 if wide else 1)]
        path = raw.decode("utf-16-le" if wide else "latin-1", errors="replace")
        if path in (" ", "\x00"):
            return None  # unused, same sheet
    return "dde" if ctab == 0 else "external"


# ------------------------------------------------------------ PowerPoint records


@dataclass
class _Ppt:
    encrypted: bool = False
    links: int = 0
    #: actions that run something (_PPT_ACTIONS): (switch, what) -> how many
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: videos and sounds played from a file or URL (_LINKED_MEDIA_TYPES)
    linked_media: int = 0
    #: (stream number, offset) -> (record instance, stream, body start, body end) of
    #: every ExOleObjStg; stream 0 is the PowerPoint Document stream
    storages: dict[tuple[int, int], tuple[int, bytes, int, int]] = field(default_factory=dict)
    #: those found only by searching (outside the record tree, or in another stream)
    stray: set[tuple[int, int]] = field(default_factory=set)
    #: persist id -> offsets in the PowerPoint Document stream (PersistDirectoryAtom)
    persist: dict[int, set[int]] = field(default_factory=dict)
    vba_refs: set[int] = field(default_factory=set)
    link_refs: set[int] = field(default_factory=set)
    object_refs: set[int] = field(default_factory=set)


def _ppt_walk(content: _Content, kind: str) -> _Ppt | None:
    """The records of the PowerPoint Document stream ([MS-PPT] 2.3), containers
    walked into; then ExOleObjStg headers are searched for in every stream and
    ExOleLinkContainer headers in the document stream, as oletools does, so that
    records outside the tree are found too."""
    doc = content.root("powerpoint document")
    if doc is None:
        if kind != "ppt":
            return None
        doc = b""
    out = _Ppt()
    user = content.root("current user")
    if user is not None and len(user) >= 20:
        token, edit = struct.unpack_from("<II", user, 12)
        if token == _PPT_ENCRYPTED_TOKEN:
            out.encrypted = True
        elif edit + 8 <= len(doc):
            _, rtype, size = _REC.unpack_from(doc, edit)
            # a UserEditAtom with encryptSessionPersistIdRef
            out.encrypted = rtype == 0x0FF5 and size == 0x20
    links: set[int] = set()
    stack = [(0, len(doc), 0)]
    if not any(find(doc) for find in _PPT_WALK_FINDS):
        # No record the walk finds can be in the stream: it is not walked. (What else
        # it reads, the persist directory and the references of VBA and OLE atoms,
        # only tells apart storages in this stream: there is none.)
        stack = []
    while stack:
        pos, end, parent = stack.pop()
        while pos + 8 <= end:
            ver_inst, rtype, size = _REC.unpack_from(doc, pos)
            start = pos + 8
            if start + size > end:
                break
            # (The records that hold objects and links are read by their type, as
            # oletools reads them, whatever their version says: a storage written as
            # a container, or a link as an atom, went unseen.)
            if rtype == _RT_EX_OLE_OBJ_STG:
                out.storages[0, pos] = (ver_inst >> 4, doc, start, start + size)
            elif ver_inst & 0xF == 0xF or rtype == _RT_EX_OLE_LINK:
                if rtype == _RT_EX_OLE_LINK:
                    links.add(pos)
                elif rtype == _RT_CRYPT_SESSION:
                    out.encrypted = True
                stack.append((start, start + size, rtype))
            elif rtype == _RT_VBA_INFO_ATOM and size >= 4:
                out.vba_refs.add(_U32.unpack_from(doc, start)[0])
            elif rtype == _RT_EX_OLE_OBJ_ATOM and size >= 20:
                (link_type,) = _U32.unpack_from(doc, start + 4)
                (ref,) = _U32.unpack_from(doc, start + 16)
                # Linked only inside an ExOleLinkContainer: an atom saying "linked"
                # in an embedding container (or anywhere else) holds an object that
                # PowerPoint may still activate.
                linked = parent == _RT_EX_OLE_LINK and link_type == 1
                (out.link_refs if linked else out.object_refs).add(ref)
            elif rtype == _RT_PERSIST_DIRECTORY:
                _persist_entries(doc, start, start + size, out.persist)
            pos = start + size
    # A storage is found by its persist directory entry, as PowerPoint and LibreOffice
    # find it: the record at that offset, whatever holds it (an unknown atom hid one
    # from the walk, and an instance other than 0 or 1 from the search)
    for offset in sorted({o for offsets in out.persist.values() for o in offsets}):
        if (0, offset) not in out.storages and offset + 8 <= len(doc):
            ver_inst, rtype, size = _REC.unpack_from(doc, offset)
            if rtype == _RT_EX_OLE_OBJ_STG and offset + 8 + size <= len(doc):
                out.storages[0, offset] = (ver_inst >> 4, doc, offset + 8, offset + 8 + size)
    if _LINK_TYPE(doc):
        for match in _LINK_PATTERN.finditer(doc):
            links.add(match.start())
    out.links = len(links)
    for finditer in _LINKED_MEDIA_TYPES:
        for match in finditer(doc):
            body = match.start() + 6
            # (a record header: its length fits in the stream, and holds a media atom)
            if body <= len(doc) and 8 <= _U32.unpack_from(doc, body - 4)[0] <= len(doc) - body:
                out.linked_media += 1
    for match in _INTERACTIVE_TYPE(doc):
        body = match.start() + 6  # (the type is the header's second field)
        if body + 9 <= len(doc) and _U32.unpack_from(doc, body - 4)[0] >= 9:
            verdict = _PPT_ACTIONS.get(doc[body + 8])  # (after two persist id refs)
            if verdict is not None:
                out.actions[verdict] += 1
    others = [data for path, data in content.streams if path != ("powerpoint document",)]
    for number, stream in enumerate([doc, *others, *content.orphans]):
        if not _STG_TYPE(stream):  # (without the type, the pattern cannot match)
            continue
        for match in _STG_PATTERN.finditer(stream):
            pos = match.start()
            if (number, pos) in out.storages or pos + 8 > len(stream):
                continue
            ver_inst, _, size = _REC.unpack_from(stream, pos)
            if pos + 8 + size <= len(stream):
                out.storages[number, pos] = (ver_inst >> 4, stream, pos + 8, pos + 8 + size)
                out.stray.add((number, pos))
                if len(out.storages) > _MAX_PPT_STORAGES:
                    raise ValueError(f"more than {_MAX_PPT_STORAGES} OLE storages")
    return out


def _persist_entries(doc: bytes, pos: int, end: int, persist: dict[int, set[int]]) -> None:
    while pos + 4 <= end:
        (head,) = _U32.unpack_from(doc, pos)
        first, count = head & 0xFFFFF, head >> 20
        pos += 4
        for i in range(count):
            if pos + 4 > end:
                return
            persist.setdefault(first + i, set()).add(_U32.unpack_from(doc, pos)[0])
            pos += 4


def _ppt_storages(ppt: _Ppt, budget: list[int], ratio: int = MAX_RATIO) -> tuple[int, int]:
    """(VBA projects, embedded objects) among the ExOleObjStg records: a storage the
    VBAInfoAtom refers to is the VBA project, one only OLE links refer to is the
    link's cache; any other (ActiveX controls, storages nothing refers to) is an
    embedded object, and so is any storage holding an embedded file."""
    vba = objects = 0
    if len(ppt.storages) > _MAX_PPT_STORAGES:
        raise ValueError(f"more than {_MAX_PPT_STORAGES} OLE storages")
    # the persist ids of each offset, once (asked of the whole directory for every
    # storage, 5,000 storages and 100,000 entries took 15 s)
    ids_at: dict[int, set[int]] = {}
    for pid, offsets in ppt.persist.items():
        for offset in offsets:
            ids_at.setdefault(offset, set()).add(pid)
    for key, (instance, stream, start, end) in ppt.storages.items():
        if key in ppt.stray and instance != 1 and not stream.startswith(olefile.MAGIC, start):
            continue  # a chance match of the search (before it costs any budget)
        try:
            data = _ppt_storage_data(instance, stream, start, end, budget, ratio)
        except zlib.error:
            if key in ppt.stray:
                continue  # a chance match of the search
            raise
        sub = None
        if data.startswith(olefile.MAGIC):
            with CompoundFile(io.BytesIO(data)) as ole:
                sub = _Content.read(ole, data, budget)
        elif key in ppt.stray:
            continue  # not a compound file: a chance match of the search
        ids = ids_at.get(key[1], set()) if key[0] == 0 else set()
        is_vba = bool(ids) and ids <= ppt.vba_refs
        is_link = bool(ids) and ids <= ppt.link_refs and not ids & ppt.object_refs
        if is_vba or (sub is not None and sub.vba()):
            vba += 1
        if not (is_vba or is_link) or (sub is not None and sub.payloads()):
            objects += 1
    return vba, objects


def _ppt_storage_data(
    instance: int, stream: bytes, start: int, end: int, budget: list[int], ratio: int = MAX_RATIO
) -> bytes:
    """The storage's bytes, stored (instance 0) or decompressed ([MS-PPT] 2.10.35:
    decompressedSize, then a zlib stream; LibreOffice inflates any other instance
    too); every storage counts against ``max_expanded_bytes``, and one that expands
    more than ``max_ratio`` times (past a MiB) is refused, as an archive member is (1 MB
    of zeros inflated to 1 GB, 2 GB of memory, within the budget)."""
    if instance != 0:
        packed = memoryview(stream)[start + 4 : end]
        most = max(RATIO_FLOOR, ratio * len(packed))
        inflater = zlib.decompressobj()
        data = inflater.decompress(packed, min(budget[0], most) + 1)
        if len(data) > most:
            raise ValueError(f"an OLE storage expands more than max_ratio {ratio} times")
    else:
        data = stream[start : min(end, start + budget[0] + 1)]
    if len(data) > budget[0]:
        raise ValueError("the OLE storages expand beyond max_expanded_bytes")
    budget[0] -= len(data)
    return data
