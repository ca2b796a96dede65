"""Legacy Office files (OLE compound files: .doc, .xls, .ppt, and other OLE files),
inspected with oletools.

Python cannot rebuild these binary formats, so nothing is ever removed from them:
when risky content is present the file is ``blocked`` (the reason names it) unless
every switch concerned is ``allow`` (then it is delivered ``unmodified``); a file
without risky content is delivered ``unmodified``.

Inspected (independently of the file's own claims, with oletools):

* ``macros``: VBA projects (``olevba.VBA_Parser.detect_vba_macros``; also any
  ``Macros``/``_VBA_PROJECT_CUR``/``VBA`` storage), Excel 4 macro sheets in .xls
  (``detect_xlm_macros``);
* ``embedded_files``: embedded OLE objects (Word ``ObjectPool``, Excel ``MBD*``
  storages, PowerPoint ExOleObjStg records via ``oleobj``, any ``\\x01Ole10Native``
  stream, Outlook attachments);
* ``dynamic_data_exchange``: DDE fields in Word documents (``msodde``), DDE/OLE data
  sources in Excel workbooks (SUPBOOK records);
* ``external_hyperlinks`` (Excel only): links to external workbooks (SUPBOOK records).

Not inspected: hyperlinks, images, metadata and review comments. Those switches are
not applied to legacy files, except that ``disallow`` on one of them blocks every
legacy file (its absence cannot be verified).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import olefile

from gicap.cdr.types import DisarmRequest, DisarmResult
from gicap_office._report import Report

INSPECTED = ("macros", "embedded_files", "dynamic_data_exchange")
NOT_INSPECTED = (
    "external_hyperlinks",
    "internal_hyperlinks",
    "embedded_images",
    "metadata",
    "review_comments",
)
_VBA_STORAGES = {"macros", "_vba_project_cur", "vba"}


def _legacy_switches(switches: Mapping[str, str]) -> dict[str, str]:
    """Nothing can be removed: ``sanitise`` means ``disallow`` here."""
    out = {}
    for switch in (*INSPECTED, "external_hyperlinks"):
        value = str(switches.get(switch, "sanitise")).lower()
        out[switch] = "allow" if value == "allow" else "disallow"
    return out


def disarm(request: DisarmRequest) -> DisarmResult:
    path = request.source
    data = path.read_bytes()
    if not data.startswith(olefile.MAGIC):
        return DisarmResult("unprocessable", reason="not an OLE compound file")
    kind = request.file_type.name
    try:
        # a file object: olefile takes short byte strings for file names
        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            if _encrypted(ole):
                return DisarmResult(
                    "encrypted", reason=f"password-protected {kind} file: it cannot be inspected"
                )
            report = Report(_legacy_switches(request.switches))
            _inspect(ole, path, data, kind, report)
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


def _encrypted(ole: olefile.OleFileIO) -> bool:
    from oletools import crypto

    try:
        return bool(crypto.is_encrypted(ole))
    except Exception:
        return False


def _oletools() -> Any:
    # oletools' olevba uses pyparsing APIs that now warn on import; the warnings say
    # nothing about the file and would only clutter the worker's log
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from oletools import msodde, oleobj, olevba, xls_parser

    return msodde, oleobj, olevba, xls_parser


def _inspect(ole: olefile.OleFileIO, path: Path, data: bytes, kind: str, report: Report) -> None:
    msodde, _, olevba, _ = _oletools()

    entries = ole.listdir(streams=True, storages=True)
    lowered = [[p.lower() for p in entry] for entry in entries]

    # -- macros
    parser = olevba.VBA_Parser(str(path), data=data)
    try:
        vba = parser.detect_vba_macros()
        xlm = kind == "xls" and bool(parser.detect_xlm_macros())
    finally:
        parser.close()
    if vba or any(_VBA_STORAGES & set(entry[:-1]) for entry in lowered):
        report.hit("macros", "VBA project")
    if xlm:
        report.hit("macros", "Excel 4 macro sheet")

    # -- embedded objects
    storages = {tuple(e) for e in lowered if ole.get_type(list(e)) == olefile.STGTY_STORAGE}
    objects = 0
    objects += sum(1 for s in storages if len(s) == 2 and s[0] == "objectpool")
    objects += sum(1 for s in storages if len(s) == 1 and s[0].startswith("mbd"))
    objects += sum(1 for s in storages if s[-1].startswith("__attach_version1.0_"))
    if not objects:
        objects += sum(1 for e in lowered if e[-1] in ("\x01ole10native", "package"))
    if kind == "ppt":
        objects += _ppt_objects(path)
    if objects:
        report.hit("embedded_files", "embedded OLE object", n=objects)

    # -- DDE and external links
    if kind == "doc" or (kind == "ole" and ["worddocument"] in lowered):
        links = [line for line in msodde.process_doc(ole).splitlines() if line.strip()]
        if links:
            report.hit("dynamic_data_exchange", "DDE field", n=len(links))
    elif kind == "xls":
        dde, external = _xls_links(path)
        if dde:
            report.hit("dynamic_data_exchange", "DDE/OLE data source", n=dde)
        if external:
            report.hit("external_hyperlinks", "external workbook link", n=external)


def _ppt_objects(path: Path) -> int:
    oleobj = _oletools()[1]

    count = 0
    for ole in oleobj.find_ole_in_ppt(str(path)):
        if ole is not None:
            count += 1
    return count


def _xls_links(path: Path) -> tuple[int, int]:
    xls_parser = _oletools()[3]

    dde = external = 0
    xls = xls_parser.XlsFile(str(path))
    try:
        for stream in xls.iter_streams():
            if not isinstance(stream, xls_parser.WorkbookStream):
                continue
            for record in stream.iter_records():
                if not isinstance(record, xls_parser.XlsRecordSupBook):
                    continue
                if record.support_link_type == record.LINK_TYPE_OLE_DDE:
                    dde += 1
                elif record.support_link_type == record.LINK_TYPE_EXTERNAL:
                    external += 1
    finally:
        xls.close()
    return dde, external
