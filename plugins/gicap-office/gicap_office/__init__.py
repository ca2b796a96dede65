"""gicap-office: the CDR engine for Office documents.

* OOXML (docx/docm/dotx/dotm, xlsx/xlsm/xltx/xltm, pptx/pptm/ppsx/ppsm/potx/potm):
  rebuilt from their allowed parts (:mod:`gicap_office.ooxml`); a macro-enabled file
  whose macros are removed becomes its macro-free type.
* RTF: risky groups removed by an RTF group tokenizer (:mod:`gicap_office.rtf`).
* Legacy OLE (doc/xls/ppt and other compound files): inspected with oletools; Python
  cannot rebuild these formats, so risky content blocks the file unless allowed
  (:mod:`gicap_office.legacy`).
* Password-protected OOXML: ``encrypted``.

See README.md for exactly what each policy switch does per format.
"""

from __future__ import annotations

from gicap import hookimpl
from gicap.cdr.types import DisarmRequest, DisarmResult

OOXML_TYPES = (
    "docx",
    "docm",
    "dotx",
    "dotm",
    "xlsx",
    "xlsm",
    "xltx",
    "xltm",
    "pptx",
    "pptm",
    "ppsx",
    "ppsm",
    "potx",
    "potm",
)
LEGACY_TYPES = ("doc", "xls", "ppt", "ole")
FILE_TYPES = (*OOXML_TYPES, *LEGACY_TYPES, "rtf", "ooxml_encrypted")


@hookimpl
def gicap_file_types() -> list[str]:
    return list(FILE_TYPES)


@hookimpl
def gicap_disarm(request: DisarmRequest) -> DisarmResult | None:
    name = request.file_type.name
    if name not in FILE_TYPES:
        return None
    if name == "ooxml_encrypted":
        return DisarmResult(
            "encrypted", reason="password-protected Office document: it cannot be inspected"
        )
    max_size = request.limits.get("max_file_size")
    size = request.source.stat().st_size
    if max_size and size > max_size:
        return DisarmResult(
            "unprocessable", reason=f"file is {size} bytes, more than max_file_size {max_size}"
        )
    # imported here so that listing the plugin's types does not load lxml/oletools/Pillow
    if name in OOXML_TYPES:
        from gicap_office import ooxml

        return ooxml.disarm(request)
    if name == "rtf":
        from gicap_office import rtf

        return rtf.disarm(request)
    from gicap_office import legacy

    return legacy.disarm(request)
