"""gicap-office, legacy OLE files: VBA projects and OLE links in PowerPoint 97-2003,
DDE links, external workbooks and Excel 4 macro sheets in Excel 97-2003 (BIFF8).

The files are generated here with the compound-file writer of ``test_office`` and
minimal [MS-PPT] / [MS-XLS] records. Each risky file is first confirmed risky by
oletools (olevba for VBA, olevba's BIFF plugin for Excel 4 macro sheets, msodde for
Excel links, oleobj and ppt_record_parser for PowerPoint OLE objects and links,
msoffcrypto-tool for encryption), so no test can pass on a file that holds nothing;
then the default policy must block it and ``allow`` on its switch must deliver it
unmodified.
"""

from __future__ import annotations

import random
import re
import struct
import time
import warnings
import zlib
from pathlib import Path

import olefile
import pytest

from tests.plugins.test_office import (
    OLE_OBJECT,
    VBA_BIN,
    _fib,
    _ppt,
    _write,
    dde_found,
    disarm,
    file_type,
    make_ole,
    switches,
    vba_found,
    word_doc,
)

with warnings.catch_warnings():  # olevba's pyparsing use warns on import
    warnings.simplefilter("ignore")
    from oletools import oleobj, ppt_record_parser
    from oletools.thirdparty.oledump.plugin_biff import cBIFF

# ---------------------------------------------------------------- PowerPoint

#: offset of the first record after the DocumentContainer that ``_ppt`` writes
_PPT_BASE = 16


def rec(rtype: int, body: bytes, ver: int = 0, instance: int = 0) -> bytes:
    """A PowerPoint record: RecordHeader (recVer, recInstance, recType, recLen)."""
    return struct.pack("<HHI", ver | instance << 4, rtype, len(body)) + body


def persist_directory(*entries: tuple[int, int]) -> bytes:
    """PersistDirectoryAtom: one PersistDirectoryEntry per (persist id, offset)."""
    body = b"".join(struct.pack("<II", pid | 1 << 20, offset) for pid, offset in entries)
    return rec(0x1772, body)


def vba_info(persist_id: int) -> bytes:
    """VBAInfoContainer / VBAInfoAtom (persistIdRef, fHasMacros, version)."""
    atom = rec(0x0400, struct.pack("<III", persist_id, 1, 2), ver=2)
    return rec(0x03FF, atom, ver=0xF, instance=1)


def storage(cfb: bytes, compressed: bool = False) -> bytes:
    """ExOleObjStg: a compound file, zlib-compressed after its size or stored."""
    if compressed:
        return rec(0x1011, struct.pack("<I", len(cfb)) + zlib.compress(cfb), instance=1)
    return rec(0x1011, cfb)


def ole_link_list(persist_id: int) -> bytes:
    """ExObjListContainer with one ExOleLinkContainer (a linked OLE object whose
    cached storage is ``persist_id``)."""
    link = rec(
        0x0FCE,
        rec(0x0FD1, struct.pack("<III", 0, 1, 0))  # ExOleLinkAtom: update always
        # ExOleObjAtom: drawAspect, type 1 (link), exObjId, subType, persistIdRef
        + rec(0x0FC3, struct.pack("<IIIIII", 1, 1, 1, 0, persist_id, 0), ver=1)
        + rec(0x0FBA, "Linked Worksheet".encode("utf-16-le"), instance=1),
        ver=0xF,
    )
    return rec(0x0409, rec(0x040A, struct.pack("<I", 1)) + link, ver=0xF)


def _file_moniker(path: str) -> bytes:
    """A FileMoniker ([MS-OSHARED] 2.3.7.8) with its CLSID."""
    clsid = bytes.fromhex("0303000000000000c000000000000046")
    ansi = path.encode("latin-1") + b"\x00"
    body = struct.pack("<HI", 0, len(ansi)) + ansi + struct.pack("<HH", 0xFFFF, 0xDEAD)
    return clsid + body + b"\x00" * 16 + struct.pack("<I", 0)


def _ole_stream(linked: bool) -> bytes:
    """The ``\\x01Ole`` stream ([MS-OLEDS] 2.3.3): flag 1 marks a linked object."""
    head = struct.pack("<IIIII", 0x02000001, 1 if linked else 0, 1, 0, 0)
    if not linked:
        return head
    moniker = _file_moniker("C:\\gicap\\linked.xlsx")
    return (
        head
        + struct.pack("<I", 0)  # no relative moniker
        + struct.pack("<I", len(moniker))
        + moniker
        + struct.pack("<i", -1)
        + b"\x00" * 16  # clsidIndicator, clsid
        + struct.pack("<IIIII", 0, 0, 0, 0, 0)  # display name, times
    )


#: the cached storage of a linked object (no data of its own)
LINK_STORAGE = make_ole(
    {"\x01Ole": _ole_stream(True), "\x01CompObj": b"\x01\x00\xfe\xff" + b"\x00" * 24}
)
#: the same, with an embedded file in it too
LINK_STORAGE_WITH_FILE = make_ole(
    {
        "\x01Ole": _ole_stream(True),
        "\x01Ole10Native": struct.pack("<I", 28) + b"gicap embedded test payload\n",
    }
)


def ppt_vba() -> dict[str, bytes]:
    """A VBA project storage, referred to by the VBAInfoAtom through the persist
    directory, as PowerPoint writes it."""
    info = vba_info(1)
    stg = storage(VBA_BIN)
    return _ppt(info + stg + persist_directory((1, _PPT_BASE + len(info))))


def ppt_link(cache: bytes = LINK_STORAGE) -> dict[str, bytes]:
    objects = ole_link_list(2)
    stg = storage(cache, compressed=True)
    return _ppt(objects + stg + persist_directory((2, _PPT_BASE + len(objects))))


def ppt_hidden_vba() -> dict[str, bytes]:
    """A VBA storage behind bytes that are no record: only a search finds it."""
    return _ppt(b"\xff\xff\xff" + storage(VBA_BIN))


def ppt_record_types(path: Path) -> set[int]:
    """Every record type oletools' ppt_record_parser reads, containers walked into."""
    found: set[int] = set()

    def visit(records: list) -> None:
        for record in records:
            found.add(record.type)
            visit(getattr(record, "records", None) or [])

    ppt = ppt_record_parser.PptFile(str(path))
    try:
        for stream in ppt.iter_streams():
            if stream.name == "PowerPoint Document":
                visit(list(stream.iter_records()))
    finally:
        ppt.close()
    return found


def linked_ole_objects(path: Path) -> int:
    """ExOleObjStg storages (found by oleobj) that say they are linked objects."""
    count = 0
    for ole in oleobj.find_ole_in_ppt(str(path)):
        if ole is not None and ole.exists("\x01Ole"):
            flags = struct.unpack_from("<I", ole.openstream("\x01Ole").read(), 4)[0]
            count += flags & 1
    return count


def embedded_files(path: Path) -> int:
    """ExOleObjStg storages (found by oleobj) holding an embedded file."""
    count = 0
    for ole in oleobj.find_ole_in_ppt(str(path)):
        if ole is not None and ole.exists("\x01Ole10Native"):
            count += 1
    return count


# --------------------------------------------------------------------- Excel


def biff(rtype: int, body: bytes) -> bytes:
    return struct.pack("<HH", rtype, len(body)) + body


def bof(dt: int) -> bytes:
    """BOF (BIFF8): dt 5 workbook globals, 0x10 worksheet."""
    return biff(0x0809, struct.pack("<HHHH", 0x0600, dt, 0, 0) + b"\x00" * 8)


EOF = biff(0x000A, b"")


def short_string(text: str) -> bytes:
    """ShortXLUnicodeString, 8-bit characters."""
    return bytes([len(text), 0]) + text.encode("latin-1")


def supbook(ctab: int, virt_path: str, sheets: tuple[str, ...] = ()) -> bytes:
    """SupBook: ctab 0 is a DDE/OLE data source, ctab > 0 an external workbook."""
    body = struct.pack("<HH", ctab, len(virt_path)) + b"\x00" + virt_path.encode("latin-1")
    for sheet in sheets:
        body += struct.pack("<HB", len(sheet), 0) + sheet.encode("latin-1")
    return biff(0x01AE, body)


def workbook(globals_: bytes, cells: bytes = b"", sheet_type: int = 0) -> dict[str, bytes]:
    """A Workbook stream: the globals substream (``globals_``, then one BoundSheet8)
    and one sheet substream holding ``cells``."""
    head = bof(5) + globals_
    name = short_string("Sheet1")
    bound_size = 4 + 6 + len(name)
    sheet_at = len(head) + bound_size + len(EOF)
    bound = biff(0x0085, struct.pack("<IBB", sheet_at, 0, sheet_type) + name)
    sheet_bof = bof(0x40 if sheet_type == 1 else 0x10)
    return {"Workbook": head + bound + EOF + sheet_bof + cells + EOF}


def xls_dde() -> dict[str, bytes]:
    """``=cmd|'/c echo gicap'!A0`` as Excel stores it: a DDE SupBook (application and
    topic), an ExternName (the item), an XTI and a formula referring to the name."""
    links = (
        supbook(0, "cmd\x03/c echo gicap")
        + biff(0x0023, struct.pack("<HI", 0, 0) + short_string("A0"))  # ExternName: DDE
        + biff(0x0017, struct.pack("<HHHH", 1, 0, 0xFFFE, 0xFFFE))  # ExternSheet
    )
    rgce = struct.pack("<BHI", 0x39, 0, 1)  # PtgNameX: XTI 0, name 1
    formula = struct.pack("<HHH", 0, 0, 15) + b"\x00" * 8 + struct.pack("<HI", 0, 0)
    cells = biff(0x0006, formula + struct.pack("<H", len(rgce)) + rgce)
    return workbook(links, cells)


def xls_external() -> dict[str, bytes]:
    links = supbook(1, "\x01C:\\gicap\\other.xls", ("Sheet1",))
    return workbook(links + biff(0x0017, struct.pack("<HHHH", 1, 0, 0, 0)))


def xlm_found(path: Path) -> bool:
    """An Excel 4 macro sheet, by the BIFF plugin olevba runs (olevba itself only
    runs it on files whose root CLSID says Excel; the engine does not trust that)."""
    ole = olefile.OleFileIO(str(path))
    try:
        data = ole.openstream("Workbook").read()
    finally:
        ole.close()
    listing = cBIFF(name=["Workbook"], stream=data, options="-o BOUNDSHEET").Analyze()
    return "Excel 4.0 macro sheet" in "\n".join(listing)


# --------------------------------------------------------------------- tests

#: name -> (streams, the switch that must block it or None)
CASES = {
    "vba.ppt": (ppt_vba(), "macros"),
    "link.ppt": (ppt_link(), "dynamic_data_exchange"),
    "dde.xls": (xls_dde(), "dynamic_data_exchange"),
    "external.xls": (xls_external(), "external_hyperlinks"),
    "xlm.xls": (workbook(b"", sheet_type=1), "macros"),
    "clean-sheet.xls": (workbook(b""), None),
}


def confirm(path: Path, switch: str | None) -> None:
    """oletools agrees on what is in the file."""
    name = path.name
    if name.endswith(".ppt"):
        assert vba_found(path) == (switch == "macros")
        links = linked_ole_objects(path)
        assert bool(links) == (switch == "dynamic_data_exchange")
        assert (0x0FCE in ppt_record_types(path)) == bool(links)
        assert embedded_files(path) == 0
    else:
        assert vba_found(path) is False
        assert xlm_found(path) == (switch == "macros")
        links = dde_found(path)
        assert bool(links) == (switch in ("dynamic_data_exchange", "external_hyperlinks"))
        if switch == "dynamic_data_exchange":
            assert "cmd" in links


@pytest.mark.parametrize("name", list(CASES))
def test_legacy_ppt_xls(tmp_path: Path, name: str) -> None:
    streams, switch = CASES[name]
    path = _write(tmp_path, name, make_ole(streams))
    assert file_type(path).name == name.rsplit(".", 1)[1]
    confirm(path, switch)
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    if switch is None:
        assert result.outcome == "unmodified" and result.actions == []
        return
    assert result.outcome == "blocked" and switch in result.reason, result
    result, _ = disarm(path, tmp_path, switches("sanitise", **{switch: "disallow"}))
    assert result.outcome == "blocked"
    result, _ = disarm(path, tmp_path, switches("sanitise", **{switch: "allow"}))
    assert result.outcome == "unmodified", result
    assert [a.action for a in result.actions if a.switch == switch] == ["kept"]
    # no other switch was hit: allowing this one is enough
    assert {a.switch for a in result.actions} == {switch}


def test_ppt_link_cache_holding_a_file_is_an_embedded_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "link-file.ppt", make_ole(ppt_link(LINK_STORAGE_WITH_FILE)))
    assert linked_ole_objects(path) == 1 and embedded_files(path) == 1
    result, _ = disarm(path, tmp_path, switches("sanitise", dynamic_data_exchange="allow"))
    assert result.outcome == "blocked" and "embedded_files" in result.reason


def test_ppt_object_said_linked_in_an_embedding_container_is_an_embedded_object(
    tmp_path: Path,
) -> None:
    """An ExOleObjAtom of type 1 ("linked") in an ExOleEmbedContainer, with no link
    container anywhere: its storage is an embedded object (oleobj extracts it), not
    the cache of a link (a review's Equation Editor object passed as clean)."""
    atom = rec(0x0FC3, struct.pack("<IIIIII", 1, 1, 1, 0, 2, 0), ver=1)
    embed = rec(0x0FCC, atom + rec(0x0FCD, struct.pack("<IBBBB", 0, 0, 0, 0, 0)), ver=0xF)
    objects = rec(0x0409, rec(0x040A, struct.pack("<I", 1)) + embed, ver=0xF)
    # an Equation Editor object: no embedded file in it, only its native data
    equation = make_ole(
        {
            "\x01Ole": _ole_stream(False),
            "\x01CompObj": b"\x01\x00\xfe\xff" + b"\x00" * 24,
            "Equation Native": struct.pack("<HIHII", 0x1C, 0x20, 0, 0, 0) + b"A" * 48,
        }
    )
    stg = storage(equation, compressed=True)
    data = make_ole(_ppt(objects + stg + persist_directory((2, _PPT_BASE + len(objects)))))
    path = _write(tmp_path, "said-linked.ppt", data)
    found = [ole for ole in oleobj.find_ole_in_ppt(str(path)) if ole is not None]
    assert [ole.exists("Equation Native") for ole in found] == [True]
    assert 0x0FCE not in ppt_record_types(path)
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked" and "embedded_files" in result.reason


def test_ppt_storage_nothing_refers_to_is_an_embedded_object(tmp_path: Path) -> None:
    """An OLE object storage no VBAInfoAtom or link refers to: an embedded object."""
    path = _write(tmp_path, "object.ppt", make_ole(_ppt(storage(OLE_OBJECT, compressed=True))))
    assert embedded_files(path) == 1
    result, _ = disarm(path, tmp_path, switches("sanitise", macros="allow"))
    assert result.outcome == "blocked" and "embedded_files" in result.reason
    result, _ = disarm(path, tmp_path, switches("sanitise", embedded_files="allow"))
    assert result.outcome == "unmodified"


def test_ppt_vba_storage_is_not_an_embedded_object_unless_unreferenced(tmp_path: Path) -> None:
    """Without the VBAInfoAtom's reference the same VBA storage counts twice: as a
    VBA project (its content) and as an embedded object (nothing says otherwise)."""
    path = _write(tmp_path, "loose-vba.ppt", make_ole(_ppt(storage(VBA_BIN))))
    assert vba_found(path)
    result, _ = disarm(path, tmp_path, switches("sanitise", macros="allow"))
    assert result.outcome == "blocked" and "embedded_files" in result.reason


def test_ppt_vba_storage_outside_the_record_tree(tmp_path: Path) -> None:
    """olevba searches the stream for storages; so does the engine."""
    path = _write(tmp_path, "hidden-vba.ppt", make_ole(ppt_hidden_vba()))
    assert vba_found(path)
    result, _ = disarm(path, tmp_path, switches("sanitise", embedded_files="allow"))
    assert result.outcome == "blocked" and "macros" in result.reason
    result, _ = disarm(path, tmp_path, switches("sanitise", embedded_files="allow", macros="allow"))
    assert result.outcome == "unmodified"


def test_xls_macro_sheet_and_dde_together(tmp_path: Path) -> None:
    dde_sheet = workbook(supbook(0, "cmd\x03/c echo gicap"), sheet_type=1)
    path = _write(tmp_path, "both.xls", make_ole(dde_sheet))
    assert xlm_found(path) and "cmd" in dde_found(path)
    result, _ = disarm(path, tmp_path, switches("sanitise", macros="allow"))
    assert result.outcome == "blocked" and "dynamic_data_exchange" in result.reason
    result, _ = disarm(
        path, tmp_path, switches("sanitise", macros="allow", dynamic_data_exchange="allow")
    )
    assert result.outcome == "unmodified"


def test_vba_code_outside_a_vba_storage(tmp_path: Path) -> None:
    """Compressed VBA code in any stream, even outside a VBA storage, is a VBA
    project (olevba says so too)."""
    code = make_ole({**word_doc(), "Data": b"\x01\x10\xb0\x00Attribut\x00e VB_Name"})
    path = _write(tmp_path, "code.doc", code)
    assert vba_found(path)
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked" and "macros" in result.reason


def test_ppt_storage_in_another_stream(tmp_path: Path) -> None:
    """oleobj looks for OLE storages in every stream of a .ppt; so does the engine."""
    streams = {**_ppt(), "Pictures": storage(OLE_OBJECT)}
    path = _write(tmp_path, "elsewhere.ppt", make_ole(streams))
    assert embedded_files(path) == 1
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked" and "embedded_files" in result.reason


def test_ppt_storage_bomb(tmp_path: Path) -> None:
    cfb = OLE_OBJECT + b"\x00" * 4_000_000
    path = _write(tmp_path, "bomb.ppt", make_ole(_ppt(storage(cfb, compressed=True))))
    assert path.stat().st_size < 100_000 and len(cfb) > 1_000_000
    limits = {"max_file_size": 50 * 2**20, "max_expanded_bytes": 1_000_000}
    result, _ = disarm(path, tmp_path, switches("allow"), limits)
    assert result.outcome == "unprocessable" and "max_expanded_bytes" in result.reason
    # (within the budget, and a ratio allowed: the storage is read, an object)
    result, _ = disarm(path, tmp_path, switches("sanitise"), {"max_ratio": 10_000})
    assert result.outcome == "blocked" and "embedded_files" in result.reason


def _msoffcrypto_encrypted(path: Path) -> bool:
    import msoffcrypto

    with path.open("rb") as file:
        return bool(msoffcrypto.OfficeFile(file).is_encrypted())


def ppt_with_edit(encrypted: bool) -> dict[str, bytes]:
    """A Current User stream pointing at a UserEditAtom, which has an
    encryptSessionPersistIdRef when the document is encrypted."""
    doc = _ppt()["PowerPoint Document"]
    edit = struct.pack("<IHBBIIIIHH", 0, 0, 0, 3, 0, 0, 1, 2, 0, 0)
    if encrypted:
        edit += struct.pack("<I", 3)
    user = struct.pack("<IIIHHBBH", 0x14, 0xE391C05F, len(doc), 0, 0x03F4, 3, 0, 0)
    return {
        "PowerPoint Document": doc + rec(0x0FF5, edit),
        "Current User": rec(0x0FF6, user + struct.pack("<I", 8)),
    }


def test_encrypted_xls_and_ppt(tmp_path: Path) -> None:
    """RC4-encrypted BIFF8 (a FilePass record) and an encrypted PowerPoint document
    (a UserEditAtom with encryptSessionPersistIdRef) cannot be inspected;
    msoffcrypto-tool agrees, and on the same files without encryption."""
    filepass = biff(0x002F, struct.pack("<HHH", 1, 1, 1) + b"\x00" * 48)
    for name, streams, encrypted in (
        ("locked.xls", workbook(filepass), True),
        ("locked.ppt", ppt_with_edit(True), True),
        ("clear.xls", workbook(b""), False),
        ("clear.ppt", ppt_with_edit(False), False),
    ):
        path = _write(tmp_path, name, make_ole(streams))
        assert _msoffcrypto_encrypted(path) == encrypted
        result, _ = disarm(path, tmp_path, switches("allow"))
        assert result.outcome == ("encrypted" if encrypted else "unmodified"), (name, result)


# ------------------------------------------------------- reading and scanning faster


def _legacy_files() -> list[bytes]:
    from tests.plugins.test_office import LEGACY

    files = [make_ole(streams) for streams, _ in (*LEGACY.values(), *CASES.values())]
    big = {"WordDocument": _fib() + b"w" * 9000, "1Table": b"t" * 4095, "Data": b"d" * 4096}
    files += [make_ole(big), LINK_STORAGE, LINK_STORAGE_WITH_FILE, make_ole(ppt_hidden_vba())]
    return files


def _olefile_streams(data: bytes, read: bool) -> list[bytes | str]:
    """Every stream entry of the directory (orphans too), read by olefile itself or by
    the engine's reader (each read on a fresh parse), or the exception's type."""
    from gicap_office.legacy import _StreamReader

    out: list[bytes | str] = []
    with olefile.OleFileIO(data) as ole:
        reader = _StreamReader(ole, data)
        for sid in range(len(ole.direntries)):
            try:
                entry = ole.direntries[sid] or ole._load_direntry(sid)
            except Exception:
                continue
            if entry.entry_type != olefile.STGTY_STREAM:
                continue
            try:
                if read:
                    out.append(reader.read(entry.isectStart, entry.size))
                elif entry.size > len(data):
                    raise ValueError("more than the file holds: the engine refuses it")
                elif 0 < entry.size < ole.minisectorcutoff and len(data) < max(
                    ole.root.size, ole.num_mini_fat_sectors * ole.sectorsize
                ):
                    raise ValueError("a mini stream or MiniFAT the file cannot hold: refused")
                else:
                    out.append(ole._open(entry.isectStart, entry.size).read())
            except Exception as exc:
                out.append(type(exc).__name__)
    return out


def test_streams_are_read_as_olefile_reads_them() -> None:
    """The engine slices streams out of the file through olefile's FAT and MiniFAT:
    the bytes are olefile's own reading, on well-formed files and on damaged ones
    (broken chains, sizes past the end, odd sector sizes), except that a stream,
    the mini stream or the MiniFAT declaring more bytes than the whole file is
    refused."""
    rng = random.Random(99)
    files = _legacy_files()
    checked = 0
    for data in files:
        assert _olefile_streams(data, True) == _olefile_streams(data, False)
        for at, value in ((30, 10), (30, 12), (32, 7), (32, 0xFF)):  # sector sizes
            odd = data[:at] + struct.pack("<H", value) + data[at + 2 :]
            try:
                olefile.OleFileIO(odd).close()
            except Exception:
                continue
            assert _olefile_streams(odd, True) == _olefile_streams(odd, False)
            checked += 1
        for _ in range(150):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 5)):
                at = rng.randrange(min(len(damaged), 4096))
                damaged[at] = rng.choice((0, 1, 0x3F, 0xFE, 0xFF, rng.randrange(256)))
            try:
                olefile.OleFileIO(bytes(damaged)).close()
            except Exception:
                continue  # the engine stops at olefile's parse too
            expected = _olefile_streams(bytes(damaged), False)
            assert _olefile_streams(bytes(damaged), True) == expected
            checked += 1
    assert checked > 500 + len(files)


def _word_pieces(pieces: list[tuple[str, bool]], stored: list[int]) -> dict[str, bytes]:
    """A Word document whose text is ``pieces`` (text, 8-bit or UTF-16), stored in
    the WordDocument stream in the order ``stored`` gives (Word keeps pieces where
    they were written: fast saves, edits)."""
    body = b""
    places: dict[int, int] = {}
    for i in stored:
        text, compressed = pieces[i]
        places[i] = 512 + len(body)
        body += text.encode("cp1252") if compressed else text.encode("utf-16-le")
    cps = [0]
    for text, _ in pieces:
        cps.append(cps[-1] + len(text))
    pcds = b"".join(
        struct.pack("<HIH", 0, places[i] * 2 | 0x40000000 if pieces[i][1] else places[i], 0)
        for i in range(len(pieces))
    )
    plc = struct.pack(f"<{len(cps)}I", *cps) + pcds
    fib = bytearray(_fib())
    struct.pack_into("<II", fib, 0x01A2, 0, 5 + len(plc))
    return {
        "WordDocument": bytes(fib) + body,
        "1Table": b"\x02" + struct.pack("<I", len(plc)) + plc + b"\x00" * 64,
    }


def _word_outcome(tmp_path: Path, streams: dict[str, bytes]) -> tuple[str, str]:
    path = _write(tmp_path, "doc.doc", make_ole(streams))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    return result.outcome, result.reason or ""


@pytest.mark.parametrize(
    ("pieces", "stored"),
    [
        # Word writes a space before the keyword; UTF-16 text as soon as one character
        # is not in cp1252 (msodde read " \x00D\x00D..." and missed it)
        ([("text \u0416 \x13 DDEAUTO c:\\x.exe /k \x14r\x15", False)], [0]),
        ([("\x13\tDDEAUTO c:\\x.exe /k\x14r\x15", True)], [0]),  # (msodde: "?DDEAUTO")
        ([('\x13 DDEAUTO"c:\\x.exe" /k\x14r\x15', True)], [0]),  # a quote ends it
        ([("\x13 \x13 QUOTE 68 68 69 \x14DDEAUTO\x15 c:\\x.exe\x14r\x15", True)], [0]),
        # a nested field makes the end of the keyword: DD + EAUTO
        ([('\x13 DD\x13 QUOTE "EAUTO" \x14EAUTO\x15 c:\\x.exe\x14r\x15', True)], [0]),
        # a keyword split over two pieces stored in the other order
        ([("a \x13 DD", True), ("EAUTO c:\\x.exe /k \x14r\x15", True)], [1, 0]),
        ([("a \x13\u3000", False), ("DDEAUTO c:\\x.exe\x14r\x15", True)], [1, 0]),
    ],
    ids=[
        "utf16-space",
        "tab",
        "quote",
        "computed",
        "computed-end",
        "split-reordered",
        "ideographic-space",
    ],
)
def test_word_dde_fields_are_read_in_the_document_s_text(
    tmp_path: Path, pieces: list[tuple[str, bool]], stored: list[int]
) -> None:
    outcome, reason = _word_outcome(tmp_path, _word_pieces(pieces, stored))
    assert outcome == "blocked" and "dynamic_data_exchange" in reason


def test_bytes_outside_the_text_make_no_fields(tmp_path: Path) -> None:
    """Pictures and table structures hold chance 0x13 bytes: read in stream order,
    every ordinary .doc with a picture was blocked as a computed DDE field."""
    noise = bytes(random.Random(3).randrange(256) for _ in range(200_000))
    streams = {**_word_pieces([("A letter. \x13 PAGE \x14" + "1\x15", True)], [0])}
    streams["Data"] = noise + b"\x13 \x13 DDE \x13\x13"
    streams["1Table"] += b"\x13\x00\x00\x13 DDEAUTO x"
    assert _word_outcome(tmp_path, streams)[0] == "unmodified"


def _typed_fields(text: bytes, fields: list[tuple[int, int]]) -> dict[str, bytes]:
    """A Word document holding ``text``, with a main-text field table (PlcfFldMom,
    the FIB's 17th (fc, lcb) pair) of begin characters at (CP, field type)."""
    streams = word_doc(text)
    cps = [cp for cp, _ in fields] + [len(text)]
    plc = struct.pack(f"<{len(cps)}I", *cps)
    plc += b"".join(struct.pack("<BB", 0x13, flt) for _, flt in fields)
    at = len(streams["1Table"])
    fib = bytearray(streams["WordDocument"])
    struct.pack_into("<II", fib, 154 + 8 * 16, at, len(plc))  # (pairs start at 154)
    return {"WordDocument": bytes(fib), "1Table": streams["1Table"] + plc}


@pytest.mark.parametrize(
    ("text", "fields", "found"),
    [
        # a HYPERLINK instruction typed INCLUDEPICTURE: LibreOffice fetched the URL
        (b'\x13 HYPERLINK "http://x/a" \\d\x14r\x15', [(0, 67)], "INCLUDEPICTURE field"),
        (b'X HYPERLINK "http://x/a" \\d\x14r\x15', [(0, 67)], "INCLUDEPICTURE field"),
        (b"\x13 PAGE \x14 1\x15", [(0, 46)], "DDEAUTO field"),
        (b"\x13 PAGE \x14 1\x15", [(0, 56)], "LINK field (OLE link)"),
        # the keyword and the type agree: one field
        (b'\x13 DDE cmd "/c x" \x14r\x15', [(0, 45)], "DDE field"),
        (b'\x13 HYPERLINK "http://x/a" \x14r\x15', [(0, 88)], None),
        (b"\x13 PAGE \x14 1\x15", [(0, 33)], None),
    ],
)
def test_a_field_is_judged_by_its_type_in_the_field_table_too(
    tmp_path: Path, text: bytes, fields: list[tuple[int, int]], found: str | None
) -> None:
    """LibreOffice picks a field's handler by the type the field table gives it, and
    its extent from the table: a field whose instruction shows HYPERLINK (or whose
    begin character is gone from the text) typed INCLUDEPICTURE fetched its URL, and
    was delivered."""
    path = _write(tmp_path, "typed.doc", make_ole(_typed_fields(text, fields)))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    if found is None:
        assert result.outcome == "unmodified", result
        return
    assert result.outcome == "blocked", result
    assert [a.detail for a in result.actions] == [found]


def test_a_document_whose_text_cannot_be_read_is_refused(tmp_path: Path) -> None:
    streams = {"WordDocument": _fib() + b"\x13 DDEAUTO c:\\x.exe\x15", "1Table": b"\x07" * 64}
    outcome, reason = _word_outcome(tmp_path, streams)
    assert outcome == "unprocessable" and "piece table" in reason


def test_the_searches_skip_only_streams_they_cannot_match() -> None:
    """A stream without an ExOleObjStg (or ExOleLinkContainer) record type is not
    searched: every match holds it."""
    from gicap_office import legacy

    rng = random.Random(8)
    pieces = [b"\x00", b"\x10", b"\x11", b"\x0f", b"\xce", b"\xd1", b"\x00\x11\x10", b"x"]
    for _ in range(3000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        if any(legacy._STG_PATTERN.finditer(data)):
            assert legacy._STG_TYPE(data)
        if any(legacy._LINK_PATTERN.finditer(data)):
            assert legacy._LINK_TYPE(data)


def test_a_presentation_not_walked_is_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PowerPoint Document stream holding none of the record types the walk reports
    (a storage, an OLE link, encryption) is not walked: the findings are those of a
    walk, with any of those records in containers or at the top, or none."""
    from gicap_office import legacy

    def record(rtype: int, body: bytes, container: bool = False) -> bytes:
        return struct.pack("<HHI", 0x000F if container else 0, rtype, len(body)) + body

    rng = random.Random(5)
    atoms = [
        record(0x0FA0, "slide text".encode("utf-16-le")),
        record(0x0400, struct.pack("<II", 7, 0)),  # VBAInfoAtom
        record(0x0FC3, struct.pack("<IIIII", 0, 1, 0, 0, 7)),  # ExOleObjAtom
        record(0x1772, struct.pack("<II", (1 << 20) | 7, 0)),  # PersistDirectoryAtom
        record(0x1011, struct.pack("<I", 5) + b"storage"),  # ExOleObjStg
        record(0x0FCE, record(0x0FD1, bytes(12)), container=True),  # ExOleLinkContainer
        record(0x2F14, bytes(8), container=True),  # CryptSession10Container
    ]
    streams = []
    for _ in range(400):
        parts = [rng.choice(atoms[:4] if rng.random() < 0.5 else atoms) for _ in range(6)]
        body = b"".join(parts[:3]) + record(0x03EE, b"".join(parts[3:]), container=True)
        streams.append({**_ppt(body), "Pictures": rng.choice([b"", b"\x11\x10" * 3])})

    def walked(streams: dict[str, bytes]) -> tuple[bool, int, tuple[int, int]]:
        """What the engine reports of the walk: encryption, OLE links, and (VBA
        projects, embedded objects) among the storages."""
        ppt = legacy._ppt_walk(_content_of(streams), "ppt")
        assert ppt is not None
        return ppt.encrypted, ppt.links, legacy._ppt_storages(ppt, [10**9])

    seen = [walked(s) for s in streams]
    monkeypatch.setattr(legacy, "_PPT_WALK_FINDS", (lambda data: True,))  # always walked
    assert [walked(s) for s in streams] == seen
    assert sum(bool(encrypted or links) for encrypted, links, _ in seen) > 100
    assert sum(bool(objects) for _, _, (_, objects) in seen) > 50


def test_looping_stream_chain_with_a_huge_size_is_refused(tmp_path: Path) -> None:
    """A stream whose sector chain loops back on itself, declaring 3 GB: olefile only
    logs the loop and reads sector after sector up to the declared size; the engine
    refuses the file at once (it cannot hold that many bytes)."""
    data = bytearray(make_ole({"WordDocument": _fib() + b"w" * 5000, "Data": b"d" * 5000}))
    with olefile.OleFileIO(bytes(data)) as ole:
        sid = next(i for i, e in enumerate(ole.direntries) if e and e.name == "Data")
        start = ole.direntries[sid].isectStart
        fat_sector = struct.unpack_from("<I", data, 76)[0]
        directory = ole.directory_fp.getvalue()
        at_dir = bytes(data).find(directory[sid * 128 : sid * 128 + 128])
    # the stream's first sector points back to itself, and its size is 3 GB
    struct.pack_into("<I", data, (fat_sector + 1) * 512 + start * 4, start)
    struct.pack_into("<I", data, at_dir + 120, 3_000_000_000)
    path = _write(tmp_path, "loop.doc", bytes(data))
    result, _ = disarm(path, tmp_path, switches("allow"))
    assert result.outcome == "unprocessable"
    assert "more than the whole file" in result.reason


def test_stream_bytes_count_against_max_expanded_bytes(tmp_path: Path) -> None:
    streams = {**word_doc(b"w" * 5000), "Data": b"d" * 5000}
    path = _write(tmp_path, "many.doc", make_ole(streams))
    limits = {"max_file_size": 2**20, "max_expanded_bytes": 6000}
    result, _ = disarm(path, tmp_path, switches("allow"), limits)
    assert result.outcome == "unprocessable"
    assert "max_expanded_bytes" in result.reason
    result, _ = disarm(path, tmp_path, switches("allow"), {"max_file_size": 2**20})
    assert result.outcome == "unmodified"


@pytest.mark.parametrize("field", ["root size", "unknown root size", "minifat count"])
def test_mini_stream_or_minifat_larger_than_the_file_is_refused(tmp_path: Path, field: str) -> None:
    """A 3 KB file whose mini stream loops and declares 2 GB (or whose MiniFAT does)
    would be followed up to that size; the engine refuses it at once."""
    data = bytearray(make_ole({"WordDocument": _fib() + b"w" * 5000, "Macros/VBA/x": b"x" * 100}))
    with olefile.OleFileIO(bytes(data)) as ole:
        root_at = (ole.first_dir_sector + 1) * 512
        mini_start = ole.root.isectStart
        fat_at = (struct.unpack_from("<I", data, 76)[0] + 1) * 512
    if field == "minifat count":
        struct.pack_into("<I", data, 64, 1 << 20)
        start = struct.unpack_from("<I", data, 60)[0]
    else:
        size = 0x7FFFFFFF if field == "unknown root size" else 1 << 30
        struct.pack_into("<I", data, root_at + 120, size)
        start = mini_start
    struct.pack_into("<I", data, fat_at + start * 4, start)  # the chain loops
    path = _write(tmp_path, "loop.doc", bytes(data))
    result, _ = disarm(path, tmp_path, switches("allow"))
    assert result.outcome == "unprocessable", result
    assert "more than the whole file" in result.reason


def test_a_keyword_after_a_long_run_of_blanks_is_read() -> None:
    from gicap_office.legacy import _word_fields

    verdicts = _word_fields("\x13" + " " * 1100 + "DDEAUTO c:\\x.exe\x14r\x15")
    assert verdicts == [("dynamic_data_exchange", "DDEAUTO field")]


def test_two_streams_of_one_name_are_refused(tmp_path: Path) -> None:
    """A second WordDocument (names compare without case): a reader may take the one
    with the DDE field while the engine read the clean one."""
    from tests.ole import build

    risky = _word_pieces([("\x13 DDEAUTO c:\\x.exe\x14r\x15", True)], [0])
    clean = _word_pieces([("hello", True)], [0])
    tree = {"WordDocument": risky["WordDocument"], "WORDDOCUMENT": clean["WordDocument"]}
    path = _write(tmp_path, "twice.doc", build({**tree, "1Table": risky["1Table"]}))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable" and "same name" in (result.reason or "")


@pytest.mark.parametrize("repeated", [True, False], ids=["one-name", "many-names"])
def test_a_directory_of_many_entries_is_read_in_linear_time(tmp_path: Path, repeated: bool) -> None:
    """Entries of one name in different letter cases: naming the repeated ones
    scanned the list once per entry (20,000 took 16 s). Many small streams: olefile's
    duplicate-stream check searched a list once per stream, in detection, the engine
    and msoffcrypto's own opening of the file (50,000 took 17 s). The bound is
    several times above the time it takes now (shared machines are noisy)."""
    import itertools
    import time

    from tests.ole import build

    if repeated:
        variants = itertools.product(*[(c, c.upper()) for c in "abcdefghijklmno"])
        tree: dict[str, bytes | dict] = {
            "".join(v): b"x" for v in itertools.islice(variants, 20_000)
        }
    else:
        tree = {f"s{i}": b"x" for i in range(50_000)}
    path = _write(tmp_path, "names.doc", build(tree, shift=12))
    started = time.perf_counter()
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    took = time.perf_counter() - started
    if repeated:
        assert result.outcome == "unprocessable" and "same name" in (result.reason or "")
    else:
        assert result.outcome == "unmodified", result
    assert took < 6, f"{took:.1f} s"


def _summary_information(security: int) -> bytes:
    """A SummaryInformation property set ([MS-OLEPS]) holding PIDSI_DOC_SECURITY."""
    fmtid = bytes.fromhex("e0859ff2f94f6810ab9108002b27b3d9")
    section = struct.pack("<IIII", 24, 1, 0x13, 16) + struct.pack("<Hxxi", 3, security)
    header = struct.pack("<HHI16sI", 0xFFFE, 0, 0x00020006, bytes(16), 1) + fmtid
    return header + struct.pack("<I", 48) + section


@pytest.mark.parametrize("security", [1, 0])
def test_a_password_in_the_summary_information_is_encryption(tmp_path: Path, security: int) -> None:
    """A compound file named .doc holding no Word, Excel or PowerPoint stream: what
    oletools' crypto reads, the summary's PIDSI_DOC_SECURITY, says whether it is
    password-protected."""
    from tests.ole import build

    data = build({"\x05SummaryInformation": _summary_information(security), "Data": b"x"})
    path = _write(tmp_path, "protected.doc", data)
    with olefile.OleFileIO(path) as ole:  # (the property reads as oletools reads it)
        assert ole.getproperties("\x05SummaryInformation")[0x13] == security
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == ("encrypted" if security else "unmodified"), result


def _with_version(record: bytes, ver: int) -> bytes:
    """``record`` with another recVer (its instance kept)."""
    (ver_inst,) = struct.unpack_from("<H", record)
    return struct.pack("<H", ver_inst & 0xFFF0 | ver) + record[2:]


@pytest.mark.parametrize(
    ("streams", "switch"),
    [
        (_ppt(_with_version(storage(OLE_OBJECT, compressed=True), 0xF)), "embedded_files"),
        (_ppt(_with_version(storage(VBA_BIN, compressed=True), 0xF)), "macros"),
        (
            {**_ppt(), "Pictures": _with_version(storage(OLE_OBJECT, compressed=True), 1)},
            "embedded_files",
        ),
    ],
    ids=["object-as-container", "vba-as-container", "object-in-pictures"],
)
def test_ppt_storages_are_read_by_their_type_whatever_their_version(
    tmp_path: Path, streams: dict[str, bytes], switch: str
) -> None:
    """An ExOleObjStg whose recVer said "container" (0xF), or another version outside
    the document stream, was not seen: the object, or a VBA project, was delivered
    (oletools reads records by their type, and finds them)."""
    path = _write(tmp_path, "versions.ppt", make_ole(streams))
    # (oleobj finds the storage: the object's file, or the VBA storage in it)
    found = [ole for ole in oleobj.find_ole_in_ppt(str(path)) if ole is not None]
    assert len(found) == 1
    assert found[0].exists("\x01Ole10Native") or found[0].exists("VBA")
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked" and switch in result.reason, result


def test_ppt_link_container_is_read_by_its_type_whatever_its_version(tmp_path: Path) -> None:
    """An ExOleLinkContainer written with recVer 0 was skipped as an atom: the link
    to an external file was delivered."""
    objects = ole_link_list(2)
    at = objects.index(struct.pack("<H", 0x0FCE)) - 2
    objects = objects[:at] + _with_version(objects[at:], 0)
    assert objects != ole_link_list(2)
    data = make_ole(_ppt(objects))
    path = _write(tmp_path, "link.ppt", data)
    result, _ = disarm(path, tmp_path, switches("sanitise", embedded_files="allow"))
    assert result.outcome == "blocked", result
    assert "external_hyperlinks" in result.reason or "dynamic_data_exchange" in result.reason


def _fopt(*properties: tuple[int, int], names: bytes = b"") -> bytes:
    """An OfficeArtFOPT ([MS-ODRAW] 2.2.9): a shape's property table (recVer 3, the
    count in recInstance), its complex data (``names``) after it."""
    table = b"".join(struct.pack("<HI", pid, op) for pid, op in properties)
    body = table + names
    return struct.pack("<HHI", (len(properties) << 4) | 3, 0xF00B, len(body)) + body


_URL = "http://attacker.example/track.png\x00".encode("utf-16-le")
#: pibName (complex: its length) and pibFlags URL | DoNotSave | LinkToFile, as
#: LibreOffice writes a picture linked by its address
_LINKED = _fopt((0x4105, len(_URL)), (0x0106, 0x0E), names=_URL)
#: an embedded picture's table: pib (the picture's index), its name as a comment
_EMBEDDED = _fopt((0x4104, 1), (0x4105, len(_URL)), (0x0106, 0), names=_URL)


def _linked_picture_files(fopt: bytes) -> dict[str, dict[str, bytes]]:
    drawing = struct.pack("<HHI", 0x000F, 0xF004, len(fopt)) + fopt  # OfficeArtSpContainer
    # (Excel: the drawing split over a MsoDrawing record and a Continue record, inside
    # the property table)
    cut = 8 + 8 + 3
    sheet = biff(0x00EC, drawing[:cut]) + biff(0x003C, drawing[cut:])
    return {
        "ppt": _ppt(struct.pack("<HHI", 0x000F, 0x040C, len(drawing)) + drawing),
        "xls": workbook(b"", sheet),
        "doc": {**word_doc(b"hello"), "1Table": word_doc(b"hello")["1Table"] + drawing},
    }


@pytest.mark.parametrize("kind", ["ppt", "xls", "doc"])
def test_a_picture_linked_by_its_address_is_an_external_link(tmp_path: Path, kind: str) -> None:
    """A picture a .ppt, .xls or .doc shows from a URL (LibreOffice fetched it when it
    opened the file) was delivered unmodified: no field names it, only its shape's
    properties. An embedded picture with its file name as a comment is not a link."""
    path = _write(tmp_path, f"linked.{kind}", make_ole(_linked_picture_files(_LINKED)[kind]))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked", result
    assert [(a.switch, a.detail) for a in result.actions] == [
        ("external_hyperlinks", "linked picture")
    ]
    path = _write(tmp_path, f"embedded.{kind}", make_ole(_linked_picture_files(_EMBEDDED)[kind]))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unmodified", result


def test_linked_pictures_are_found_as_a_walk_of_each_table_finds_them() -> None:
    """The entries naming a picture from outside are found once per stream, and each
    property table asks whether one is its own: the count a walk of every table's
    entries gives, with tables overlapping, cut short, or holding such an entry at
    another position than an entry's."""
    from gicap_office import legacy

    def walked(data: bytes) -> int:
        found = 0
        for pos in legacy._record_starts(data, legacy._FOPT_TYPES):
            if pos + 8 > len(data) or data[pos] & 0x0F != 3:
                continue
            count = struct.unpack_from("<H", data, pos)[0] >> 4
            if not count or pos + 8 + 6 * count > len(data):
                continue
            for i in range(count):
                opid, op = struct.unpack_from("<HI", data, pos + 8 + 6 * i)
                if opid & 0x3FFF in (0x0106, 0x0187) and not opid & 0x8000 and op & 0x0E:
                    found += 1
                    break
        return found

    rng = random.Random(3)
    pieces = [
        _LINKED,
        _EMBEDDED,
        _fopt((0x0187, 0x02), (0x4104, 1)),  # a fill picture by its URL
        _fopt((0x8106, 0x0E)),  # complex: not the flags
        _fopt((0x0106, 0x01)),  # other flags
        struct.pack("<HI", 0x4106, 0x08),  # an entry outside any table
        b"\x33\x00\x0b\xf0",  # a header of 3 entries over what follows
        b"\x13\x01\x21\xf1",
        b"\x06\x01\x06\x01\x0e",
        b"x",
    ]
    streams = []
    for _ in range(400):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12)))
        streams.append(data[: rng.randrange(1, len(data) + 1)])
    counts = [legacy._linked_pictures(data) for data in streams]
    assert counts == [walked(data) for data in streams]
    assert sum(n > 1 for n in counts) > 20 and sum(n == 0 for n in counts) > 20


def test_overlapping_property_tables_are_not_each_walked(tmp_path: Path) -> None:
    """A stream repeating a 4-byte property table header of 4,083 entries is a table
    every 4 bytes, each over the next 24 KB: walking each table's entries took 130 s
    for 1 MB (4.5 KB gzip-encoded)."""
    sheet = biff(0x0809, struct.pack("<HHHHII", 0x0600, 0x0005, 0, 0, 0, 0)) + biff(0x000A, b"")
    streams = {"Workbook": sheet, "Pictures": b"\x33\xff\x0b\xf0" * 250_000}
    path = _write(tmp_path, "tables.xls", make_ole(streams))
    started = time.perf_counter()
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert time.perf_counter() - started < 10  # (a few tenths of a second)
    assert result.outcome == "unmodified", result


def test_storages_are_matched_with_a_large_persist_directory_at_once(tmp_path: Path) -> None:
    """Each storage's persist ids were looked for in the whole persist directory: 4,000
    storages and 100,000 entries (2 KB gzip-encoded) took 12 s. Past 4,096 storages
    of the record tree (as of the search) the file is refused."""
    heads = b"".join(
        struct.pack("<I", (k * 4095 + 1) | 4095 << 20) + bytes(4 * 4095) for k in range(25)
    )
    directory = rec(0x1772, heads)
    path = _write(tmp_path, "many.ppt", make_ole(_ppt(directory + rec(0x1011, b"") * 4000)))
    started = time.perf_counter()
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert time.perf_counter() - started < 5  # (a few tenths of a second)
    assert result.outcome == "blocked" and "embedded_files" in result.reason, result
    path = _write(tmp_path, "more.ppt", make_ole(_ppt(directory + rec(0x1011, b"") * 4097)))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable" and "4096 OLE storages" in result.reason, result


def _click_action(action: int) -> bytes:
    """A shape's MouseClickInteractiveInfoContainer: its InteractiveInfoAtom
    ([MS-PPT] 2.13.15: sound and hyperlink ids, the action, OLE verb, jump, flags,
    hyperlink type) and the hyperlink's ExHyperlink id."""
    atom = rec(0x0FF3, struct.pack("<IIBBBBB3x", 0, 1, action, 0, 0, 0, 0))
    return rec(0x0FF2, atom, ver=0xF)


@pytest.mark.parametrize(
    ("action", "found"),
    [
        (1, ("macros", "macro action")),
        (2, ("external_hyperlinks", "run-program action")),
        (5, ("embedded_files", "OLE action")),
        (3, None),  # a jump to another slide
        (4, None),  # a hyperlink to click (not inspected)
    ],
)
def test_a_click_action_that_runs_something_is_found(
    tmp_path: Path, action: int, found: tuple[str, str] | None
) -> None:
    """A .ppt shape whose click runs a program (the path in its hyperlink; a slide
    show runs it, in PowerPoint and LibreOffice), a macro or an OLE verb was delivered
    unmodified: the .pptx engine removes ppaction://program, macro and ole. Read in a
    shape's client data, wherever the atom stands."""
    client = rec(0xF011, _click_action(action), ver=0xF)  # OfficeArtClientData
    shape = rec(0xF004, client, ver=0xF)
    drawing = rec(0x040C, rec(0xF002, shape, ver=0xF), ver=0xF)  # PPDrawing
    path = _write(tmp_path, "action.ppt", make_ole(_ppt(drawing)))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    if found is None:
        assert result.outcome == "unmodified", result
        return
    assert result.outcome == "blocked", result
    assert [(a.switch, a.detail) for a in result.actions] == [found]
    result, _ = disarm(path, tmp_path, switches("sanitise", **{found[0]: "allow"}))
    assert result.outcome == "unmodified", result


@pytest.mark.parametrize(
    ("streams", "found"),
    [
        (workbook(b"", biff(0x01AD, bytes(26))), "dynamic_data_exchange"),  # Qsi
        (workbook(biff(0x00DC, bytes(12))), "dynamic_data_exchange"),  # DbOrParamQry
        (workbook(biff(0x0876, bytes(40))), "dynamic_data_exchange"),  # DConn
        ({**workbook(b""), "Ctls": b"\x00" * 64}, "macros"),
    ],
    ids=["query-table", "query", "connection", "activex"],
)
def test_workbook_queries_connections_and_controls_are_found(
    tmp_path: Path, streams: dict[str, bytes], found: str
) -> None:
    """A web, text or database query (Excel refreshes it, on opening when it says so),
    a data connection and ActiveX controls were delivered in an .xls: the .xlsx engine
    removes query tables, connections and controls."""
    path = _write(tmp_path, "query.xls", make_ole(streams))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked", result
    assert [a.switch for a in result.actions] == [found]
    result, _ = disarm(path, tmp_path, switches("sanitise", **{found: "allow"}))
    assert result.outcome == "unmodified", result


@pytest.mark.parametrize("mark", [0x0401, 0x3A01])
def test_a_supbook_marked_as_this_workbook_with_a_path_is_a_link(tmp_path: Path, mark: int) -> None:
    """A SupBook is this workbook (or the add-in functions) when it holds the mark and
    nothing else; LibreOffice reads a path written after the mark as a link to that
    document ([MS-XLS] 2.4.271: no virtPath then)."""
    path_text = "\x01\\\\attacker\\share\\book.xls"
    body = struct.pack("<HHB", 1, mark, 0) + path_text.encode("latin-1")
    body += struct.pack("<HB", 6, 0) + b"Sheet1"
    path = _write(tmp_path, "self.xls", make_ole(workbook(biff(0x01AE, body))))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked", result
    assert [a.switch for a in result.actions] == ["external_hyperlinks"]
    path = _write(tmp_path, "plain.xls", make_ole(workbook(biff(0x01AE, body[:4]))))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unmodified", result


def _addin_function(name: str, wide: bool = False) -> bytes:
    """An add-in SupBook and the ExternName of a function Excel 97-2003 does not know
    (how a later Excel saves WEBSERVICE in an .xls), and a formula calling it."""
    text = name.encode("utf-16-le" if wide else "latin-1")
    udf = struct.pack("<HIBB", 0, 0, len(name), int(wide)) + text + struct.pack("<H", 0)
    return biff(0x01AE, struct.pack("<HH", 1, 0x3A01)) + biff(0x0023, udf)


@pytest.mark.parametrize(
    ("name", "wide", "found"),
    [
        ("_xlfn.WEBSERVICE", False, True),
        ("_xlfn._xlws.WebService", True, True),
        ("_XLFN.IMAGE", False, True),
        ("_xlfn.FORECAST.ETS", False, False),  # a function that fetches nothing
    ],
)
def test_an_xls_calling_a_function_that_fetches_a_url_is_blocked(
    tmp_path: Path, name: str, wide: bool, found: bool
) -> None:
    """WEBSERVICE (and IMAGE) fetch a URL when the workbook is calculated: in an .xls
    their names are ExternNames of the add-in SupBook. The .xlsx engine replaces such
    formulas by their values."""
    path = _write(tmp_path, "fetch.xls", make_ole(workbook(_addin_function(name, wide))))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    if not found:
        assert result.outcome == "unmodified", result
        return
    assert result.outcome == "blocked", result
    assert [(a.switch, a.detail) for a in result.actions] == [
        ("external_hyperlinks", "WEBSERVICE or IMAGE function")
    ]


@pytest.mark.parametrize("rtype", [0x1006, 0x1007, 0x100D, 0x1010])
def test_a_video_or_sound_played_from_a_file_is_an_external_link(
    tmp_path: Path, rtype: int
) -> None:
    """PowerPoint plays a linked video or sound from its path or URL when the slide
    shows it (LibreOffice writes one for a linked video); the .pptx engine removes an
    external videoFile or audioFile."""
    media = rec(0x1004, struct.pack("<IHH", 1, 0, 0))  # ExMediaAtom
    where = "\\\\attacker.example\\share\\movie.avi".encode("utf-16-le")
    linked = rec(rtype, media + rec(0x0FBA, where), ver=0xF)
    path = _write(tmp_path, "media.ppt", make_ole(_ppt(rec(0x0409, linked, ver=0xF))))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked", result
    assert [(a.switch, a.detail) for a in result.actions] == [
        ("external_hyperlinks", "linked video or sound")
    ]
    # an embedded sound (ExWAVAudioEmbedded) is in the file
    embedded = rec(0x100F, media + rec(0x0FBA, where), ver=0xF)
    path = _write(tmp_path, "sound.ppt", make_ole(_ppt(rec(0x0409, embedded, ver=0xF))))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unmodified", result


def test_a_storage_that_expands_like_a_bomb_is_refused(tmp_path: Path) -> None:
    """A compressed ExOleObjStg of zeros: 1 MB of file inflated to 1 GB (2 GB of
    memory) within max_expanded_bytes. A storage expanding more than max_ratio times
    (past a MiB) is refused as an archive member is; one that compresses as documents
    do is read."""
    bomb = zlib.compress(bytes(50 * 2**20), 9)
    stg = rec(0x1011, struct.pack("<I", 50 * 2**20) + bomb, instance=1)
    path = _write(tmp_path, "bomb.ppt", make_ole(_ppt(stg)))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unprocessable" and "max_ratio 100" in result.reason, result
    result, _ = disarm(path, tmp_path, switches("sanitise"), {"max_ratio": 2000})
    assert result.outcome == "blocked", result  # (read: an embedded object)
    stg = rec(0x1011, struct.pack("<I", len(OLE_OBJECT)) + zlib.compress(OLE_OBJECT), instance=1)
    path = _write(tmp_path, "object.ppt", make_ole(_ppt(stg)))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked" and "embedded_files" in result.reason, result


def test_a_storage_the_persist_directory_names_is_read_wherever_it_stands(
    tmp_path: Path,
) -> None:
    """A compressed VBA storage of instance 2 inside an unknown atom: the record walk
    does not enter atoms and the search looks for instances 0 and 1, but PowerPoint
    and LibreOffice go to the offset the persist directory gives (and LibreOffice
    inflates any instance)."""
    info = vba_info(1)
    stg = rec(0x1011, struct.pack("<I", len(VBA_BIN)) + zlib.compress(VBA_BIN), instance=2)
    wrapped = rec(0x7777, stg)
    streams = _ppt(info + wrapped + persist_directory((1, _PPT_BASE + len(info) + 8)))
    path = _write(tmp_path, "wrapped.ppt", make_ole(streams))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked", result
    assert ("macros", "VBA project") in [(a.switch, a.detail) for a in result.actions]


def _book95(externsheet: bytes) -> dict[str, bytes]:
    """An Excel 5/95 workbook (BIFF5, a Book stream) with one EXTERNSHEET record."""

    def bof5(dt: int) -> bytes:
        return biff(0x0809, struct.pack("<HHHH", 0x0500, dt, 0x0DBB, 0x07CC))

    links = biff(0x0016, struct.pack("<H", 1)) + biff(
        0x0017, bytes([len(externsheet)]) + externsheet
    )
    name = bytes([6]) + b"Sheet1"
    head = bof5(5) + links
    sheet_at = len(head) + 4 + 6 + len(name) + len(EOF)
    bound = biff(0x0085, struct.pack("<IBB", sheet_at, 0, 0) + name)
    return {"Book": head + bound + EOF + bof5(0x10) + EOF}


@pytest.mark.parametrize(
    ("externsheet", "expected"),
    [
        (b"cmd\x03/c echo gicap", ("dynamic_data_exchange", "DDE/OLE data source")),
        (
            b"\x01\x05\x16http://attacker.example/[b.xls]Sheet1",
            ("external_hyperlinks", "external workbook link"),
        ),
        (b"\x02Sheet2", None),
    ],
    ids=["dde", "external", "this-workbook"],
)
def test_excel_95_links_are_read(
    tmp_path: Path, externsheet: bytes, expected: tuple[str, str] | None
) -> None:
    """Excel 5/95 workbooks name DDE sources and other workbooks in EXTERNSHEET
    records (BIFF8 has SupBook records): they went unread and were delivered."""
    path = _write(tmp_path, "book95.xls", make_ole(_book95(externsheet)))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    if expected is None:
        assert result.outcome == "unmodified", result
    else:
        assert result.outcome == "blocked", result
        assert [(a.switch, a.detail) for a in result.actions] == [expected]


def _with_template(streams: dict[str, bytes], path: str) -> dict[str, bytes]:
    """``streams`` of a Word document attached to the template at ``path``: an
    SttbfAssoc (UTF-16 strings, ibstAssocDot the second) at the 33rd FibRgFcLcb pair."""
    word = bytearray(streams["WordDocument"])
    strings = ["", path] + [""] * 16
    sttbf = struct.pack("<HHH", 0xFFFF, len(strings), 0) + b"".join(
        struct.pack("<H", len(s)) + s.encode("utf-16-le") for s in strings
    )
    table = streams["1Table"]
    struct.pack_into("<II", word, 0x01A2 - 8, len(table), len(sttbf))  # (fcClx is at 0x1A2)
    return {**streams, "WordDocument": bytes(word), "1Table": table + sttbf}


@pytest.mark.parametrize(
    ("path", "remote"),
    [
        ("\\\\attacker.example\\share\\t.dotm", True),
        ("https://attacker.example/t.dotm", True),
        ("C:\\Users\\me\\AppData\\Roaming\\Microsoft\\Templates\\Normal.dotm", False),
    ],
    ids=["unc", "url", "local"],
)
def test_a_remote_attached_template_is_an_external_link(
    tmp_path: Path, path: str, remote: bool
) -> None:
    """A .doc attached to a template on a share or a web server (what a .docx's
    attachedTemplate relationship and RTF's \\*\\template say, both removed) was
    delivered unmodified."""
    streams = _with_template(word_doc(b"hello"), path)
    result, _ = disarm(_write(tmp_path, "t.doc", make_ole(streams)), tmp_path, switches("sanitise"))
    if remote:
        assert result.outcome == "blocked", result
        assert [(a.switch, a.detail) for a in result.actions] == [
            ("external_hyperlinks", "remote template")
        ]
    else:
        assert result.outcome == "unmodified", result


def test_officeart_records_are_found_wherever_their_type_bytes_stand() -> None:
    """The search for property tables (memchr on a type's second byte, then the byte
    before it) finds exactly the records a search for each 2-byte type finds: at the
    stream's edges, overlapping, in random picture data, and in data dense with the
    searched bytes (where it falls back to the search by type)."""
    from gicap_office import legacy

    rng = random.Random(7)
    alphabet = b"\x0b\xf0\x21\xf1\x22\x03\x00"
    cases = [b"", b"\x0b\xf0", b"\x00\x0b\xf0", b"\x00\x00\x0b\xf0", b"\x0b\xf0" * 500]
    cases += [b"\xf0" * 5000, b"\x21\xf1\x22\xf1" * 300, rng.randbytes(200_000)]
    cases += [bytes(rng.choice(alphabet) for _ in range(rng.randrange(40))) for _ in range(2000)]
    for data in cases:
        expected = sorted(
            at - 2
            for rtype in legacy._FOPT_TYPES
            for at in range(2, len(data) - 1)
            if data[at : at + 2] == rtype
        )
        assert legacy._record_starts(data, legacy._FOPT_TYPES) == expected, data[:80]


def test_runs_of_records_skipped_at_once_leave_the_workbook_read_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The BIFF walk skips runs of records it does not read in one step: what it finds
    (links, macro sheets, drawings joined across CONTINUE records) is what a walk of
    every record finds, with cells and other records anywhere, of any size, cut
    short, or sized unlike a cell."""
    from gicap_office import legacy

    rng = random.Random(11)
    cell_like = [
        biff(0x0203, bytes(14)),
        biff(0x027E, bytes(10)),
        biff(0x00FD, bytes(10)),
        biff(0x0201, bytes(6)),
        biff(0x0205, bytes(8)),
        biff(0x0208, bytes(16)),
        biff(0x0203, bytes(13)),  # a Number of another size: read by the loop
        biff(0x0006, bytes(30)),  # a Formula: variable size
        biff(0x00BD, bytes(255)),  # the longest a run skips
        biff(0x00BD, bytes(256)),  # longer: by the loop
        biff(0x0204, b"\x2f\x00\x85\x00" * 3),  # a body like read record types
        biff(0x1234, b""),
        struct.pack("<HH", 0x0203, 14) + bytes(5),  # cut short
        struct.pack("<HH", 0x0006, 40) + bytes(39),
    ]
    read = [
        supbook(0, "cmd\x03/c calc"),
        supbook(1, "\x01C:\\other.xls"),
        biff(0x00EC, b"\x03\x00\x0b\xf0" + bytes(8)),  # a drawing...
        biff(0x003C, b"continued"),  # ...and its CONTINUE
        biff(0x003C, b"not a drawing's"),
        bof(0x40),
        biff(0x0085, struct.pack("<IBB", 0, 0, 1) + short_string("M")),
    ]
    streams = []
    for _ in range(300):
        parts = [
            rng.choice(cell_like + read)
            if rng.random() < 0.8
            else biff(rng.choice([0x0006, 0x0204, 0x00BD]), bytes(rng.randrange(300)))
            for _ in range(rng.randrange(1, 30))
        ]
        streams.append(b"".join(parts)[: rng.randrange(1, 2000)])

    def walked(stream: bytes) -> object:
        try:
            return legacy._biff(_content_of({"Workbook": stream}))
        except Exception as exc:  # (a record cut short: the file is unprocessable)
            return repr(exc)

    fast = [walked(stream) for stream in streams]
    # Records of every size the run skips, and records it does not: the run ends at
    # the first of those.
    for size in range(300):
        others = [biff(rng.choice([0x0006, 0x0204, 0x00BD]), bytes(rng.randrange(256)))]
        stream = b"".join(others * 3) + biff(0x0006, bytes(size)) + bof(0x10)
        ended = len(stream) - len(bof(0x10)) if size < 256 else len(others[0]) * 3
        assert legacy._SKIPPED_RUN.match(stream).end() == ended  # type: ignore[union-attr]
    monkeypatch.setattr(legacy, "_SKIPPED_RUN", re.compile(b""))  # every record by the loop
    assert [walked(stream) for stream in streams] == fast
    found = [f for f in fast if not isinstance(f, str)]
    assert sum(bool(f.dde or f.external or f.macro_sheets or f.drawing) for f in found) > 100


def _content_of(streams: dict[str, bytes]) -> object:
    import io

    from gicap_office import legacy

    from gicap.cdr.compound_file import CompoundFile

    data = make_ole(streams)
    return legacy._Content.read(CompoundFile(io.BytesIO(data)), data, [10**9])


# ------------------------------------------------------ Word pictures (PICF)


def _picf(mm: int, after: bytes, cb_header: int = 0x44) -> bytes:
    """A picture's PICF ([MS-DOC] 2.9.193: lcb, cbHeader, mfpf.mm, the goal size and
    scale in its PICMID) and what follows its header: a file name (a Pascal string),
    or OfficeArt data."""
    head = bytearray(cb_header)
    struct.pack_into("<IHH", head, 0, cb_header + len(after), cb_header, mm)
    struct.pack_into("<HHHH", head, 28, 1440, 1440, 1000, 1000)  # dxaGoal, dyaGoal, mx, my
    return bytes(head) + after


def _pascal(text: str) -> bytes:
    return bytes([len(text)]) + text.encode("cp1252")


#: an inline picture's OfficeArt data: an OfficeArtSpContainer with its property
#: table (pib 1), then the picture (an OfficeArtBlipPNG)
_INLINE_FOPT = _fopt((0x4104, 1))
_INLINE_SHAPE = (
    struct.pack("<HHI", 0x000F, 0xF004, len(_INLINE_FOPT))
    + _INLINE_FOPT
    + struct.pack("<HHI", 0x6E00, 0xF01E, 17 + 8)  # rgbUid, tag, then the PNG
    + bytes(17)
    + b"\x89PNG\r\n\x1a\n"
)
_PICTURE_URL = "http://attacker.example/p.png"


def _chpx_fkp(fc: int, grpprl: bytes) -> bytes:
    """A ChpxFkp page ([MS-DOC] 2.9.33): one run, the character at ``fc``, whose Chpx
    holds ``grpprl``."""
    page = bytearray(512)
    struct.pack_into("<II", page, 0, fc, fc + 1)
    at = (510 - len(grpprl)) & ~1
    page[8] = at // 2
    page[at : at + 1 + len(grpprl)] = bytes([len(grpprl)]) + grpprl
    page[511] = 1  # crun
    return bytes(page)


def _picture_doc(picf: bytes, where: str = "fkp", data_stream: bool = True) -> dict[str, bytes]:
    """A Word document whose text holds a picture character (0x01) whose PICF is
    ``picf``, after other bytes of the Data stream (or, with no Data stream, of the
    WordDocument stream); sprmCFSpec and sprmCPicLocation (its offset) in the
    character's properties (``"fkp"``) or in a style (``"table"``: only their bytes,
    in the table stream)."""
    streams = word_doc(b"A picture: \x01.")
    word = streams["WordDocument"].ljust(1024, b"\x00")
    offset = 256 if data_stream else len(word) + 512
    grpprl = struct.pack("<HB", 0x0855, 1) + struct.pack("<HI", 0x6A03, offset)
    if where == "fkp":
        word += _chpx_fkp(512 + 11, grpprl)
    else:
        streams["1Table"] += b"\x00" * 7 + grpprl
    if data_stream:
        streams["Data"] = bytes(random.Random(5).randrange(256) for _ in range(offset)) + picf
    else:
        word += picf
    streams["WordDocument"] = word
    return streams


@pytest.mark.parametrize(
    ("picf", "where", "data_stream"),
    [
        # mm 94, a picture file "not embedded": LibreOffice writes a linked picture so,
        # and fetched the URL of one when it opened the document
        (_picf(94, _pascal(_PICTURE_URL)), "fkp", True),
        (_picf(94, _pascal(_PICTURE_URL)), "table", True),
        # (LibreOffice reads the name after cbHeader, whatever it says)
        (_picf(94, _pascal(_PICTURE_URL), cb_header=0x50), "fkp", True),
        (_picf(94, _pascal(_PICTURE_URL)), "fkp", False),  # no Data stream
        (_picf(98, _pascal("\\\\attacker.example\\share\\p.tif")), "fkp", True),  # TIFF file
        (_picf(0x66, _pascal(_PICTURE_URL) + _INLINE_SHAPE), "fkp", True),  # MM_SHAPEFILE
    ],
    ids=["mm94", "mm94-style", "mm94-long-header", "mm94-no-data-stream", "mm98", "shapefile"],
)
def test_a_picture_its_picf_links_is_an_external_link(
    tmp_path: Path, picf: bytes, where: str, data_stream: bool
) -> None:
    """A .doc picture whose PICF names a file or URL instead of holding the picture
    (no field and no OfficeArt property says so) was delivered unmodified, and
    LibreOffice fetched the URL when it converted the document."""
    path = _write(tmp_path, "linked.doc", make_ole(_picture_doc(picf, where, data_stream)))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "blocked", result
    assert [(a.switch, a.detail) for a in result.actions] == [
        ("external_hyperlinks", "linked picture")
    ]
    result, _ = disarm(path, tmp_path, switches("sanitise", external_hyperlinks="allow"))
    assert result.outcome == "unmodified", result


@pytest.mark.parametrize(
    ("picf", "located"),
    [
        (_picf(0x64, _INLINE_SHAPE), True),  # an embedded picture, as Word writes it
        (_picf(99, _pascal(_PICTURE_URL)), True),  # a bitmap stored in the file
        (_picf(94, _pascal("")), True),  # no file name: no picture at all
        (_picf(94, _pascal(_PICTURE_URL)), False),  # a PICF no picture refers to
    ],
    ids=["embedded", "mm99", "no-name", "not-located"],
)
def test_a_picture_held_in_the_document_is_not_a_link(
    tmp_path: Path, picf: bytes, located: bool
) -> None:
    streams = _picture_doc(picf)
    if not located:
        streams = {**_picture_doc(_picf(0x64, _INLINE_SHAPE)), "Data": streams["Data"][:256]}
        streams["Data"] += _picf(0x64, _INLINE_SHAPE) + picf
    path = _write(tmp_path, "embedded.doc", make_ole(streams))
    result, _ = disarm(path, tmp_path, switches("sanitise"))
    assert result.outcome == "unmodified", result


def test_stream_chains_read_as_sector_by_sector() -> None:
    """A stream's sectors are read as olefile reads them, one by one along the FAT
    (runs of consecutive sectors are sliced together: the same bytes)."""
    import array

    from gicap_office.legacy import _chain

    source = bytes(range(256)) * 3  # 12 sectors of 64 bytes
    sectors = [source[n * 64 : n * 64 + 64] for n in range(12)]
    end = 0xFFFFFFFE
    #  3 -> 4 -> 5 -> 9 -> 10 -> 1 -> end; 7 -> 7 (a loop); 11 -> 12 (past the source)
    fat = array.array("I", [end, end, end, 4, 5, 9, end, 7, end, 10, 1, 12, 13, end])
    assert _chain(source, fat, 64, 0, 3, 6 * 64) == b"".join(
        sectors[n] for n in (3, 4, 5, 9, 10, 1)
    )
    assert _chain(source, fat, 64, 0, 3, 200) == b"".join(sectors[n] for n in (3, 4, 5, 9))[:200]
    assert _chain(source, fat, 64, 0, 7, 3 * 64) == sectors[7] * 3
    assert _chain(source, fat, 64, 0, 11, 3 * 64) == sectors[11]  # (12, 13: nothing there)
    assert _chain(source, fat, 64, 64, 0, 64) == sectors[1]  # (regular sectors: after the header)
    assert _chain(source, fat, 64, 0, 20, 64) == b""  # outside the table
