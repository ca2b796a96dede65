"""gicap's built-in file type detector: the real type of a file, from its bytes.

:func:`detect` looks at magic numbers and, for containers, inside them (the central
directory of a zip and its ``[Content_Types].xml``, the directory of an OLE compound
file), so a .docx is reported as ``docx`` and not as "a zip". The declared type (HTTP
``Content-Type`` or file name) never decides alone: it only breaks ties between types
the bytes allow (text that may be csv or html, an OLE file seen only in preview).

Detection is cheap (nothing is extracted, only the small ``[Content_Types].xml``
is read from a zip) and never raises: malformed input gives a best-effort type or
``None``. The module is also a plugin: :func:`gicap_detect_file_type` runs last, after
any detector a plugin adds.
"""

from __future__ import annotations

import array
import csv
import html
import io
import itertools
import os
import re
import struct
import sys
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from email.header import decode_header, make_header
from email.message import Message
from email.utils import collapse_rfc2231_value
from urllib.parse import unquote, urlsplit
from xml.parsers import expat

from gicap import hookimpl
from gicap.cdr.types import FileType
from gicap.cdr.zipdir import count_entries

_OOXML_WORD = "application/vnd.openxmlformats-officedocument.wordprocessingml"
_OOXML_SHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_OOXML_SLIDES = "application/vnd.openxmlformats-officedocument.presentationml"

#: Every type the detector can report, by name.
FILE_TYPES: dict[str, FileType] = {
    t.name: t
    for t in (
        FileType("pdf", "pdf", "application/pdf", "pdf"),
        # OOXML (zip + [Content_Types].xml)
        FileType("docx", "office", f"{_OOXML_WORD}.document", "docx"),
        FileType("docm", "office", "application/vnd.ms-word.document.macroEnabled.12", "docm"),
        FileType("dotx", "office", f"{_OOXML_WORD}.template", "dotx"),
        FileType("dotm", "office", "application/vnd.ms-word.template.macroEnabled.12", "dotm"),
        FileType("xlsx", "office", f"{_OOXML_SHEET}.sheet", "xlsx"),
        FileType("xlsm", "office", "application/vnd.ms-excel.sheet.macroEnabled.12", "xlsm"),
        FileType("xltx", "office", f"{_OOXML_SHEET}.template", "xltx"),
        FileType("xltm", "office", "application/vnd.ms-excel.template.macroEnabled.12", "xltm"),
        FileType("pptx", "office", f"{_OOXML_SLIDES}.presentation", "pptx"),
        FileType(
            "pptm", "office", "application/vnd.ms-powerpoint.presentation.macroEnabled.12", "pptm"
        ),
        FileType("ppsx", "office", f"{_OOXML_SLIDES}.slideshow", "ppsx"),
        FileType(
            "ppsm", "office", "application/vnd.ms-powerpoint.slideshow.macroEnabled.12", "ppsm"
        ),
        FileType("potx", "office", f"{_OOXML_SLIDES}.template", "potx"),
        FileType(
            "potm", "office", "application/vnd.ms-powerpoint.template.macroEnabled.12", "potm"
        ),
        # an OOXML document encrypted with a password (an OLE file holding EncryptedPackage)
        FileType("ooxml_encrypted", "office", "application/x-tika-ooxml-protected", "ooxml"),
        # OLE compound files
        FileType("doc", "office_legacy", "application/msword", "doc"),
        FileType("xls", "office_legacy", "application/vnd.ms-excel", "xls"),
        FileType("ppt", "office_legacy", "application/vnd.ms-powerpoint", "ppt"),
        FileType("ole", "office_legacy", "application/x-ole-storage", "ole"),
        FileType("rtf", "rtf", "application/rtf", "rtf"),
        FileType("jpeg", "image", "image/jpeg", "jpg"),
        FileType("png", "image", "image/png", "png"),
        FileType("gif", "image", "image/gif", "gif"),
        FileType("tiff", "image", "image/tiff", "tiff"),
        FileType("bmp", "image", "image/bmp", "bmp"),
        FileType("webp", "image", "image/webp", "webp"),
        FileType("svg", "svg", "image/svg+xml", "svg"),
        FileType("html", "html", "text/html", "html"),
        FileType("zip", "archive", "application/zip", "zip"),
        FileType("csv", "text", "text/csv", "csv"),
        FileType("text", "text", "text/plain", "txt"),
        # recognised, not processed
        FileType("gzip", "archive_other", "application/gzip", "gz"),
        FileType("7z", "archive_other", "application/x-7z-compressed", "7z"),
        FileType("rar", "archive_other", "application/vnd.rar", "rar"),
        FileType("tar", "archive_other", "application/x-tar", "tar"),
        FileType("exe", "executable", "application/vnd.microsoft.portable-executable", "exe"),
        FileType("elf", "executable", "application/x-executable", "elf"),
        FileType("msi", "executable", "application/x-msi", "msi"),
        # OpenDocument (LibreOffice, OpenOffice): macros, DDE and web-service formulas;
        # no engine rebuilds them (unsupported: blocked by default)
        FileType("odt", "opendocument", "application/vnd.oasis.opendocument.text", "odt"),
        FileType("ods", "opendocument", "application/vnd.oasis.opendocument.spreadsheet", "ods"),
        FileType("odp", "opendocument", "application/vnd.oasis.opendocument.presentation", "odp"),
        FileType("odg", "opendocument", "application/vnd.oasis.opendocument.graphics", "odg"),
        # (and a flat OpenDocument file: the same XML in one file, no zip)
        FileType("opendocument", "opendocument", "application/vnd.oasis.opendocument", "odf"),
        # Office 2003 XML and flat XML documents (SpreadsheetML, WordprocessingML):
        # Windows opens them in Excel or Word, formulas, macros and all
        FileType("office_xml", "office_xml", "application/xml", "xml"),
        # MIME messages and web archives (.eml, .mht): their parts are any files (in
        # base64: an attachment a mail client opens with a click, the ActiveMime
        # macros Word runs from an MHT named .doc); no engine unpacks them
        FileType("mime", "mime", "message/rfc822", "eml"),
        # PostScript (.ps, .eps): a program, which the document viewers run in a
        # PostScript interpreter (Ghostscript) to show it; no engine rebuilds one
        FileType("postscript", "postscript", "application/postscript", "ps"),
        # text a desktop runs or acts on when it is opened (see SCRIPT_EXTENSIONS)
        FileType("script", "script", "application/x-gicap-script", "js"),
    )
}

#: Main-part content type in ``[Content_Types].xml`` (lower case) -> type name.
OOXML_MAIN_CONTENT_TYPES: dict[str, str] = {
    f"{_OOXML_WORD}.document.main+xml": "docx",
    "application/vnd.ms-word.document.macroenabled.main+xml": "docm",
    f"{_OOXML_WORD}.template.main+xml": "dotx",
    "application/vnd.ms-word.template.macroenabledtemplate.main+xml": "dotm",
    f"{_OOXML_SHEET}.sheet.main+xml": "xlsx",
    "application/vnd.ms-excel.sheet.macroenabled.main+xml": "xlsm",
    f"{_OOXML_SHEET}.template.main+xml": "xltx",
    "application/vnd.ms-excel.template.macroenabled.main+xml": "xltm",
    f"{_OOXML_SLIDES}.presentation.main+xml": "pptx",
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": "pptm",
    f"{_OOXML_SLIDES}.slideshow.main+xml": "ppsx",
    "application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml": "ppsm",
    f"{_OOXML_SLIDES}.template.main+xml": "potx",
    "application/vnd.ms-powerpoint.template.macroenabled.main+xml": "potm",
}
_OOXML_NAMES = frozenset(OOXML_MAIN_CONTENT_TYPES.values())

#: Only this much of ``head`` is looked at (a caller may pass a whole file).
_HEAD_LIMIT = 64 * 1024
#: How much of it is checked for being text (and sniffed for csv).
_TEXT_LIMIT = 16 * 1024
#: The most of ``[Content_Types].xml`` that is read (it is a few KiB in real files).
_CONTENT_TYPES_LIMIT = 1024 * 1024

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: Root-storage CLSIDs of Windows Installer packages (.msi) and patches (.msp).
_MSI_CLSIDS = frozenset(
    {"000C1084-0000-0000-C000-000000000046", "000C1086-0000-0000-C000-000000000046"}
)
_OLE_FREE = 0xFFFFFFFA  # sector ids from here up are special (free, end of chain...)
_OLE_NOSTREAM = 0xFFFFFFFF
_OLE_END = 0xFFFFFFFE  # end of a sector chain
#: Sector ids olefile skips when it checks that no two streams start at the same one.
_OLE_SPECIAL = frozenset({0xFFFFFFFC, 0xFFFFFFFD, _OLE_END, _OLE_NOSTREAM})
_OLE_MINI_CUTOFF = 4096  # smaller streams are in the mini stream
#: Header fields ([MS-CFB] 2.2) from the major version to the DIFAT sector count.
_OLE_HEADER = struct.Struct("<HHHHHIIIIIIIIII")
#: Directory entry fields ([MS-CFB] 2.6.1) from the name length to the stream size.
_OLE_ENTRY = struct.Struct("<HBBIII16s20xIII")
#: Directories longer than this, and trees deeper than this (in olefile's recursive
#: calls), are read by olefile.
_OLE_FAST_DIRECTORY = 256 * 1024
_OLE_FAST_DEPTH = 100

#: File names that make text a script or a command a desktop runs when the file is
#: opened (Windows Script Host, PowerShell, cmd.exe, the registry editor, shell
#: links and commands, Unix shells, the interpreters installers associate with their
#: scripts, launchers that run what an XML file names: Java Web Start, ClickOnce,
#: App Installer, Windows Sandbox, macOS Terminal settings and location files; the
#: PostScript interpreter document viewers run .ps and .eps files in): told
#: by the name alone, since their text looks like any other. Web pages load scripts
#: by Content-Type, never named so.
SCRIPT_EXTENSIONS = frozenset(
    """
    js jse mjs vbs vbe vb wsf wsh wsc ws sct ps1 psm1 psd1 ps1xml ps2 ps2xml psc1 psc2
    msh msh1 msh2 mshxml msh1xml msh2xml bat cmd reg url scf inf ins isp
    sh bash zsh csh tcsh ksh fish command tool terminal fileloc inetloc webloc desktop
    py pyw pyz pyzw pl rb tcl
    jnlp application appinstaller appref-ms wsb xbap
    msc rdp website theme themepack library-ms searchconnector-ms search-ms
    settingcontent-ms slk iqy dqy oqy rqy ps eps epsf epsi
    vsto xdp fdf xfdf asx htc bgi ica appcontent-ms osd sln csproj vbproj vcxproj afploc
    """.split()
)
#: Content types of scripts: a download saved with one and a name without an
#: extension is given the script's (browsers add it).
SCRIPT_TYPES = frozenset(
    """
    text/javascript application/javascript application/x-javascript text/ecmascript
    application/ecmascript text/vbscript application/x-sh application/x-shellscript
    text/x-sh application/x-csh application/x-bat
    """.split()
)

# Aliases for the declared type (file extension or MIME type) -> type name.
_EXT_ALIASES = {
    "jpg": "jpeg",
    "jpe": "jpeg",
    "tif": "tiff",
    "htm": "html",
    "xhtml": "html",
    # other names browsers and Windows open as HTML
    "xht": "html",
    "shtml": "html",
    "hta": "html",
    "mht": "html",
    "mhtml": "html",
    "tsv": "csv",
    "tab": "csv",  # (LibreOffice opens .tab as CSV, with its formulas)
    "txt": "text",
    # TeX sources (a hint only: no type of their own), opened by their names in an
    # editor: their "%!TEX" magic comments are no PostScript there
    "tex": "tex",
    "ltx": "tex",
    "sty": "tex",
    "cls": "tex",
    "bib": "tex",
    # the other names of Excel's own formats, which it opens as .xls: by their
    # content, text as text or SYLK, formulas and all (templates, add-ins, workspaces,
    # macro sheets, backups)
    "xlt": "xls",
    "xla": "xls",
    "xlw": "xls",
    "xlm": "xls",
    "xlk": "xls",
    "gz": "gzip",
    "tgz": "gzip",
}
_MIME_ALIASES = {
    "application/csv": "csv",
    "text/comma-separated-values": "csv",
    "text/tab-separated-values": "csv",
    "application/xhtml+xml": "html",
    "image/jpg": "jpeg",
    "image/pjpeg": "jpeg",
    "text/rtf": "rtf",
    "application/x-zip-compressed": "zip",
    "application/x-msdownload": "exe",
    "application/hta": "html",  # Windows saves it as .hta: mshta runs it
}
_BY_EXT = (
    {t.extension: t.name for t in FILE_TYPES.values()}
    | _EXT_ALIASES
    | dict.fromkeys(SCRIPT_EXTENSIONS, "script")
)
_BY_MIME = {t.mime.lower(): t.name for t in FILE_TYPES.values()} | _MIME_ALIASES

_DOCTYPE_RE = re.compile(r"<!doctype\s+([^\s>\[]+)", re.I)
_TAG_RE = re.compile(r"<([a-z][\w.:-]*)", re.I)
_EARLY_HTML_RE = re.compile(r"<!doctype\s+html|<html[\s>]", re.I)
#: Elements that make browsers sniff a document as HTML (WHATWG MIME Sniffing §7.1).
_HTML_TAGS = frozenset(
    {
        "html",
        "head",
        "body",
        "script",
        "iframe",
        "h1",
        "div",
        "font",
        "table",
        "a",
        "style",
        "title",
        "b",
        "br",
        "p",
    }
)
_CSV_DELIMITERS = (",", ";", "\t")
_CSV_RECORDS = 50
#: Control characters that do not occur in text: C0 but tab, LF, VT, FF and CR; DEL; C1.
_CONTROLS_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_CONTROL_BYTES = bytes([*range(0x09), *range(0x0E, 0x20), 0x7F])


def detect(head: bytes, path: str | None = None, declared: str | None = None) -> FileType | None:
    """Tell the type of a file from its first bytes (and the whole file at ``path``).

    :param head: the first bytes of the file (4 KiB or more when the file is that long).
    :param path: the whole file on disk, or ``None`` at preview time: zips and OLE
        files are then classified from what ``head`` shows (a best guess).
    :param declared: the ``Content-Type`` or file name; it only breaks ties.
    :returns: a :data:`FILE_TYPES` entry, or ``None`` when the bytes are not recognised.
        Never raises.
    """
    try:
        name = _detect(bytes(head[:_HEAD_LIMIT]), path, declared_name(declared))
    except Exception:  # malformed input must never break a transaction
        return None
    return FILE_TYPES[name] if name else None


@hookimpl(trylast=True)
def gicap_detect_file_type(head: bytes, path: str | None, declared: str | None) -> FileType | None:
    """The built-in detector: :func:`detect`."""
    return detect(head, path, declared)


def _detect(head: bytes, path: str | None, hint: str | None) -> str | None:
    name = _magic(head, path, hint)
    if name:
        return name
    # PDF readers accept junk before the header (within the first KiB)
    pos = head.find(b"%PDF-", 0, 1024 + 5)
    if pos >= 0 and head[pos + 5 : pos + 6].isdigit():
        return "pdf"
    if hint in ("script", "csv"):
        # Text named so is opened by its name (the desktop runs a script, Excel
        # opens a CSV file), whatever markup it also reads as.
        named = _text(head, hint)
        if named is not None:
            return named
    if head.startswith(_POSTSCRIPT) and hint != "tex":
        # (after the names: text named .csv is CSV to Excel, whatever it starts with.
        # A .tex file opens in a TeX editor, "%!TEX" magic comment and all; a .txt one
        # does not: PostScript is plain text's subclass to the desktop, which opens a
        # .txt that starts as PostScript in a PostScript viewer.)
        return "postscript"
    if _mime_message(head):
        return "mime"
    return _markup(head, path) or _text(head, hint)


#: How PostScript starts ("%!PS-Adobe-3.0", "%!" alone; a Ctrl-D first, as printer
#: drivers write it): document viewers (Evince, Okular) tell it by that, whatever
#: its name, and run it in Ghostscript.
_POSTSCRIPT = (b"%!", b"\x04%!")


#: A header line of a message (RFC 5322 field name, then its folded continuation
#: lines), and what makes the message MIME with parts: MIME-Version, or a multipart
#: Content-Type.
_HEADER_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:[^\r\n]*+(?:\r?\n[ \t][^\r\n]*+)*+(?:\r?\n|\Z)")
_MIME_FIELD = re.compile(rb"(?i)mime-version[ \t]*:|content-type[ \t]*:[ \t\r\n]*multipart/")
_MAX_HEADER_FIELDS = 500


def _mime_message(head: bytes) -> bool:
    """Whether ``head`` is a MIME message: header fields from its first byte (a BOM
    and blank space aside) up to a blank line or the end of ``head``, one of them
    MIME-Version or a multipart Content-Type (what Word opens as a web archive, and
    a mail client as a message with attachments)."""
    pos = len(head) - len(head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n"))
    fields = 0
    mime = False
    while pos < len(head) and not head.startswith((b"\r\n", b"\n"), pos):
        if fields == _MAX_HEADER_FIELDS:
            break
        m = _HEADER_FIELD.match(head, pos)
        if m is None:
            return False
        mime = mime or _MIME_FIELD.match(head, pos) is not None
        pos = m.end()
        fields += 1
    return mime


def _magic(head: bytes, path: str | None, hint: str | None) -> str | None:
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return _zip(head, path, hint)
    if head.startswith(_OLE_MAGIC):
        return _ole(head, path, hint)
    if head.startswith(b"{\\rt"):  # Word itself only checks "{\rt"
        return "rtf"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM") and len(head) >= 18:
        dib_size = struct.unpack_from("<I", head, 14)[0]
        if dib_size in (12, 16, 40, 52, 56, 64, 108, 124):
            return "bmp"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith(b"\xc5\xd0\xd3\xc6"):  # a DOS EPS file (binary header, PostScript)
        return "postscript"
    if head.startswith(b"MZ"):
        return "exe"
    if head.startswith(b"\x7fELF"):
        return "elf"
    if _is_tar(head):
        return "tar"
    return None


def _is_tar(head: bytes) -> bool:
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    # old (v7) tar: no magic, but the header checksum must match
    field = head[148:156].split(b"\x00", 1)[0].strip()
    if not field or head[0] == 0 or any(c not in b"01234567" for c in field):
        return False
    block = head[:148] + b" " * 8 + head[156:512]
    signed = sum(c - 256 if c > 127 else c for c in block)
    return int(field, 8) in (sum(block), signed)


# -- zip / OOXML ---------------------------------------------------------------------


#: A zip file with more entries than this is a zip, not an Office package (which has
#: tens to a few thousand parts): zipfile is then not asked to read its directory.
MAX_PACKAGE_ENTRIES = 65_535


def _zip(head: bytes, path: str | None, hint: str | None) -> str:
    if path is not None:
        try:
            with open(path, "rb") as fp:
                size = os.fstat(fp.fileno()).st_size
                if count_entries(fp, size, MAX_PACKAGE_ENTRIES) > MAX_PACKAGE_ENTRIES:
                    return "zip"  # (the archive engine refuses it by max_members)
                with zipfile.ZipFile(fp) as zf:
                    return _package_from_zip(zf) or "zip"
        except Exception:
            pass  # unreadable central directory: guess from the local headers
    return _ooxml_from_head(head, hint) or "zip"


#: The compression methods Office and LibreOffice read in a package (stored, deflated).
_PACKAGE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def _package_from_zip(zf: zipfile.ZipFile) -> str | None:
    """The Office (OOXML) or OpenDocument type of a zip, read from its directory and
    its [Content_Types].xml or mimetype member; None for another zip."""
    infos = {i.filename.lower().lstrip("/"): i for i in zf.infolist()}
    info = infos.get("[content_types].xml")
    names = set(infos)
    if info is not None:
        found = None
        if info.compress_type in _PACKAGE_METHODS:
            # (zipfile bounds what it inflates per read for these only: a bzip2
            # member declaring 1 GiB was expanded whole here)
            with zf.open(info) as fh:
                found = _ooxml_from_content_types(fh.read(_CONTENT_TYPES_LIMIT), names)
        # A package whose content types do not read (Office refuses it) or name no
        # main part is still judged as the Office file its folders make it, never
        # as a plain zip: the Office engine refuses what Office would not open.
        # (Office first: a docx given a mimetype member is still one to Word.)
        found = found or _ooxml_from_folders(names)
        if found is not None:
            return found
    return _opendocument(zf, infos)


def _opendocument(zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo]) -> str | None:
    """The OpenDocument type named by a zip's ``mimetype`` member, or ``opendocument``
    for a zip with an OpenDocument manifest; None for another zip."""
    info = infos.get("mimetype")
    if info is not None and info.compress_type in _PACKAGE_METHODS and info.file_size < 256:
        with zf.open(info) as fh:
            found = _opendocument_type(fh.read(256))
        if found is not None:
            return found
    return "opendocument" if "meta-inf/manifest.xml" in infos else None


_ODF_PREFIX = b"application/vnd.oasis.opendocument."
_ODF_KINDS = {b"text": "odt", b"spreadsheet": "ods", b"presentation": "odp", b"graphics": "odg"}


def _opendocument_type(mimetype: bytes) -> str | None:
    value = mimetype.strip().lower()
    if not value.startswith(_ODF_PREFIX):
        return None
    kind = value[len(_ODF_PREFIX) :].removesuffix(b"-template")
    return _ODF_KINDS.get(kind, "opendocument")


def _ooxml_from_folders(names: set[str]) -> str | None:
    """The Office type a package's folders make it (lowered names, no leading /)."""
    for folder, plain, macro in (
        ("word/", "docx", "docm"),
        ("xl/", "xlsx", "xlsm"),
        ("ppt/", "pptx", "pptm"),
    ):
        if any(n.startswith(folder) for n in names):
            return macro if f"{folder}vbaproject.bin" in names else plain
    return None


def _ooxml_from_content_types(xml: bytes, names: set[str] | None, whole: bool = True) -> str | None:
    """The OOXML type named by the main-part content type, preferring a part present.
    The XML is read by a parser, as Office reads it (character references, its
    encoding, exact attribute names); None when it does not parse. ``whole``: False
    for the start of the XML (a preview): what it holds so far."""
    entries = _content_types(xml, whole)
    if entries is None:
        return None
    found: list[tuple[bool, str]] = []
    for ctype, part in entries:
        name = OOXML_MAIN_CONTENT_TYPES.get(ctype.strip().lower())
        if name is None:
            continue
        present = bool(part and names is not None and part.lower().lstrip("/") in names)
        found.append((present, name))
    if not found:
        return None
    return next((name for present, name in found if present), found[0][1])


_CONTENT_TYPES_NS = "http://schemas.openxmlformats.org/package/2006/content-types"


class _Doctype(Exception):
    pass


def _content_types(xml: bytes, whole: bool = True) -> list[tuple[str, str]] | None:
    """(ContentType, PartName) of every Default and Override element of a
    [Content_Types].xml; None when it is not well-formed XML, or declares a DTD
    (Office refuses both; entities are never expanded). ``whole``: see
    ``_ooxml_from_content_types``."""
    entries: list[tuple[str, str]] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if name in _CONTENT_TYPE_ELEMENTS and "ContentType" in attrs:
            entries.append((attrs["ContentType"], attrs.get("PartName", "")))

    def doctype(*_: object) -> None:
        raise _Doctype

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(xml, whole)
    except (expat.ExpatError, _Doctype, ValueError):
        return None
    return entries


_CONTENT_TYPE_ELEMENTS = frozenset(f"{_CONTENT_TYPES_NS} {n}" for n in ("Default", "Override"))


def _ooxml_from_head(head: bytes, hint: str | None) -> str | None:
    """Best guess from the zip local headers in ``head`` (preview: no central directory)."""
    names: set[str] = set()
    odf: str | None = None
    pos = 0
    for _ in range(4096):
        if pos < 0 or pos + 30 > len(head):
            break
        if head[pos : pos + 4] != b"PK\x03\x04":
            pos = head.find(b"PK\x03\x04", pos + 1)
            continue
        flags, method = struct.unpack_from("<HH", head, pos + 6)
        csize = struct.unpack_from("<I", head, pos + 18)[0]
        nlen, xlen = struct.unpack_from("<HH", head, pos + 26)
        name = head[pos + 30 : pos + 30 + nlen].decode("latin-1").lower().lstrip("/")
        names.add(name)
        data_at = pos + 30 + nlen + xlen
        sized = not flags & 0x08 and csize
        if name == "mimetype" and method == 0 and sized:
            # (an OpenDocument file, unless it is an Office package too: see below)
            odf = odf or _opendocument_type(head[data_at : data_at + min(csize, 256)])
        if name == "[content_types].xml":
            data = head[data_at : data_at + csize] if sized else head[data_at:]
            found = _ooxml_from_content_types(_inflate_prefix(data, method), None, whole=False)
            if found:
                return found
        pos = data_at + csize if sized else head.find(b"PK\x03\x04", data_at)
    folders = _ooxml_from_folders(names)
    if folders is not None:
        return folders
    if odf is not None:
        return odf
    if "meta-inf/manifest.xml" in names and "[content_types].xml" not in names:
        return "opendocument"
    if "[content_types].xml" in names:
        return hint if hint in _OOXML_NAMES else "docx"
    return None


def _inflate_prefix(data: bytes, method: int) -> bytes:
    if method == 0:
        return data
    if method != 8:
        return b""
    out = zlib.decompressobj(-15)
    try:
        return out.decompress(data, _CONTENT_TYPES_LIMIT)
    except zlib.error:
        return b""


# -- OLE compound files ---------------------------------------------------------------


def _ole(head: bytes, path: str | None, hint: str | None) -> str:
    if path is not None:
        listed = _ole_directory_from_file(path, head)
        if listed is not None:
            return _ole_kind(*listed) or "ole"
    listed = _ole_directory_from_head(head)
    found = _ole_kind(*listed) if listed else None
    if found:
        return found
    if path is None and hint in ("doc", "xls", "ppt", "msi"):
        return hint  # a tie: the bytes say OLE, the directory is not in the preview
    return "doc" if path is None else "ole"


def _ole_kind(names: set[str], root_clsid: str) -> str | None:
    """Classify an OLE file by its top-level stream names (lower case) and root CLSID."""
    if "encryptedpackage" in names:
        return "ooxml_encrypted"
    if root_clsid.upper() in _MSI_CLSIDS:
        return "msi"
    if "worddocument" in names:
        return "doc"
    if "workbook" in names or "book" in names:
        return "xls"
    if "powerpoint document" in names:
        return "ppt"
    return None


def _ole_directory_from_file(path: str, head: bytes = b"") -> tuple[set[str], str] | None:
    """The top-level names and root CLSID of the OLE file at ``path`` (``head``: its
    first bytes, when known), as olefile lists them; ``None`` when olefile fails."""
    try:
        filesize = os.stat(path).st_size
        if filesize == len(head):  # the whole file
            listed = _ole_directory_plain(head.__getitem__, filesize)
        else:
            with open(path, "rb") as fh:

                def read(part: slice) -> bytes:
                    fh.seek(part.start)
                    return fh.read(part.stop - part.start)

                listed = _ole_directory_plain(read, filesize)
    except Exception:  # anything unexpected: olefile decides
        listed = None
    if listed is not None:
        return listed
    from gicap.cdr.compound_file import CompoundFile

    try:
        with open(path, "rb") as fh, CompoundFile(fh) as ole:
            names = {
                entry[0].lower()
                for entry in ole.listdir(streams=True, storages=True)
                if len(entry) == 1
            }
            clsid = ole.root.clsid if ole.root is not None else ""
            return names, clsid or ""
    except Exception:
        return None


def _ole_directory_plain(
    read: Callable[[slice], bytes], filesize: int
) -> tuple[set[str], str] | None:
    """The top-level names and root CLSID of a well-formed OLE file, read straight from
    its header, FAT and directory: what olefile's directory listing gives, without
    building olefile's objects for the whole file. ``None`` for anything olefile would
    record as a defect or treats specially (a loop, a sector out of range, a name used
    twice, a DIFAT, a deep tree, ...): olefile then reads the file. ``read`` gives the
    bytes of the file in a slice of it (of ``filesize`` bytes)."""
    if sys.byteorder != "little":
        return None  # the FAT is read as native integers
    header = read(slice(0, 512))
    if len(header) != 512 or not header.startswith(_OLE_MAGIC) or header[8:24].strip(b"\x00"):
        return None
    (
        version,
        byte_order,
        shift,
        mini_shift,
        reserved1,
        reserved2,
        dir_sectors,
        fat_sectors,
        first_dir,
        transaction,
        cutoff,
        first_minifat,
        minifat_sectors,
        _first_difat,
        difat_sectors,
    ) = _OLE_HEADER.unpack_from(header, 26)
    if (
        (version, shift) not in ((3, 9), (4, 12))
        or (byte_order, mini_shift, reserved1, reserved2, transaction) != (0xFFFE, 6, 0, 0, 0)
        or (shift == 9 and dir_sectors)
        or cutoff != _OLE_MINI_CUTOFF
        or difat_sectors
    ):
        return None
    size = 1 << shift
    n_sectors = (filesize + size - 1) // size - 1

    def sector(sid: int) -> bytes | None:
        if (sid + 2) * size > filesize:
            return None  # not wholly in the file
        data = read(slice((sid + 1) * size, (sid + 2) * size))
        return data if len(data) == size else None

    # the FAT: the sectors the header lists, up to the first free or end-of-chain entry
    fat = array.array("I")
    for sid in array.array("I", header[76:512]):
        if sid in (_OLE_END, _OLE_NOSTREAM):
            break
        data = sector(sid)
        if data is None:
            return None
        fat.frombytes(data)
    if len(fat) * fat.itemsize != fat_sectors * size:
        return None
    del fat[n_sectors:]
    # the directory: its sector chain, which must end, without a loop, in the FAT
    chain: dict[int, None] = {}  # in chain order
    sid = first_dir
    while sid != _OLE_END:
        if sid >= len(fat) or sid in chain or len(chain) * size >= _OLE_FAST_DIRECTORY:
            return None
        chain[sid] = None
        sid = fat[sid]
    parts = []
    for sid in chain:
        data = sector(sid)
        if data is None:
            return None
        parts.append(data)
    directory = b"".join(parts)
    n_entries = len(directory) // 128
    # no two streams may start at the same sector (the minifat's chain counts)
    used_fat: set[int] = set()
    used_mini: set[int] = set()

    def use(start: int, mini: bool) -> bool:
        used = used_mini if mini else used_fat
        if not mini and start in _OLE_SPECIAL:
            return True
        if start in used:
            return False
        used.add(start)
        return True

    if not use(first_dir, False) or (minifat_sectors and not use(first_minifat, False)):
        return None

    def entry(sid: int) -> tuple[str, int, int, int, int, bytes] | None:
        at = sid * 128
        nlen, kind, _color, left, right, child, clsid, start, low, high = _OLE_ENTRY.unpack_from(
            directory, at + 64
        )
        if nlen > 64 or (sid and (nlen < 2 or nlen & 1)):
            return None
        if shift == 9:
            if high not in (0, _OLE_NOSTREAM):
                return None
            length = low
        else:
            length = low + (high << 32)
        if kind == 1 and length:
            return None  # a storage with a size
        if kind in (2, 5) and length and not use(start, kind == 2 and length < _OLE_MINI_CUTOFF):
            return None
        name = directory[at : at + nlen - 2].decode("utf-16-le", "replace") if sid else ""
        return name, kind, left, right, child, clsid

    if n_entries == 0:
        return None
    root = entry(0)
    if root is None or root[1] != 5:
        return None
    _, _, _, _, first_child, clsid = root
    # every storage's red-black tree, as olefile walks it: each entry at most once, in
    # range, a storage or a stream, the names of a storage's children unique
    # (case-insensitively); the depth counts olefile's recursive calls
    top: set[str] = set()
    todo: list[tuple[int, int, set[str]]] = [(first_child, 1, top)]
    loaded = {0}
    while todo:
        sid, depth, siblings = todo.pop()
        if sid == _OLE_NOSTREAM:
            continue
        if sid >= n_entries or sid in loaded or depth > _OLE_FAST_DEPTH:
            return None
        loaded.add(sid)
        found = entry(sid)
        if found is None:
            return None
        name, kind, left, right, child, _ = found
        lower = name.lower()
        if kind not in (1, 2) or lower in siblings or (kind == 2 and child != _OLE_NOSTREAM):
            return None
        siblings.add(lower)
        todo += [(left, depth + 1, siblings), (right, depth + 1, siblings)]
        if child != _OLE_NOSTREAM:
            todo.append((child, depth + 2, set()))
    clsid_text = (
        "{:08X}-{:04X}-{:04X}-{}-{}".format(
            *struct.unpack_from("<IHH", clsid), clsid[8:10].hex().upper(), clsid[10:].hex().upper()
        )
        if clsid.strip(b"\x00")
        else ""
    )
    return top, clsid_text


def _ole_directory_from_head(head: bytes) -> tuple[set[str], str] | None:
    """The top-level names visible in the first directory sector, when ``head`` holds it."""
    if len(head) < 512:
        return None
    shift = struct.unpack_from("<H", head, 30)[0]
    if shift not in (9, 12):
        return None
    size = 1 << shift
    first = struct.unpack_from("<I", head, 48)[0]
    if first >= _OLE_FREE:
        return None
    base = (first + 1) * size
    entries: dict[int, tuple[str, int, int, int, bytes]] = {}
    for i in range(size // 128):
        at = base + i * 128
        if at + 128 > len(head):
            break
        nlen = struct.unpack_from("<H", head, at + 64)[0]
        kind = head[at + 66]
        if kind == 0 or not 2 <= nlen <= 64:
            continue
        left, right, child = struct.unpack_from("<III", head, at + 68)
        name = head[at : at + nlen - 2].decode("utf-16-le", "replace")
        entries[i] = (name, left, right, child, head[at + 80 : at + 96])
    root = entries.get(0)
    if root is None:
        return None
    clsid = root[4]
    clsid_text = (
        ""
        if not clsid.strip(b"\x00")
        else "{:08X}-{:04X}-{:04X}-{}-{}".format(
            *struct.unpack_from("<IHH", clsid), clsid[8:10].hex().upper(), clsid[10:].hex().upper()
        )
    )
    names: set[str] = set()
    todo, seen = [root[3]], set()
    while todo:
        sid = todo.pop()
        if sid in seen or sid not in entries:
            continue
        seen.add(sid)
        name, left, right, _child, _ = entries[sid]
        names.add(name.lower())
        todo += [left, right]
    return names, clsid_text


# -- markup and text ------------------------------------------------------------------


def _markup(head: bytes, path: str | None = None) -> str | None:
    """SVG, HTML, Office XML or flat OpenDocument, judged by the first element after
    the prolog (any charset). ``path``: the whole file, read when the prolog runs
    past ``head``."""
    found, ended = _markup_text(_markup_chars(head))
    if found is None and not ended and path is not None and os.path.getsize(path) > len(head):
        # The prolog (comments, processing instructions, a DOCTYPE) runs past the
        # preview: the root element that tells Office XML, OpenDocument, SVG or HTML
        # is further on, where Excel, Word and LibreOffice read it (a spreadsheet
        # padded with 64 KiB of comment was passed as text, formulas and all).
        with open(path, "rb") as fh:
            found, _ = _markup_text(_markup_chars(fh.read()))
    return found


def _markup_chars(data: bytes) -> str:
    """``data`` as characters for :func:`_markup_text`: UTF-16 by its BOM, else bytes
    as Latin-1 (markup is ASCII in any other charset)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data[2 : len(data) & ~1].decode(
            "utf-16-le" if data[0] == 0xFF else "utf-16-be", "replace"
        )
    return _iso_2022_shifts_out(data.removeprefix(b"\xef\xbb\xbf").decode("latin-1"))


#: An ISO-2022-JP escape sequence (ESC "(B", "(J", "$@", "$B"...): a decoder takes
#: it out of the text, so "xh<ESC>(Btml" reads "xhtml" to a browser.
_ISO_2022_ESCAPE = re.compile(r"\x1b(?:\$\(?|\()[@-Z]")
#: What a run of double-byte (or half-width katakana) characters stands for: one
#: character that is no markup.
_NOT_ASCII = "\ufffd"


def _iso_2022_shifts_out(text: str) -> str:
    """``text`` without its ISO-2022-JP escape sequences: markup as a browser reads a
    file in that charset (which an XML declaration or a meta element may name). The
    bytes after ESC "(B", "(J" (or an escape it does not know) are left as they are;
    a run after ESC "$..." or "(I" is kanji or katakana to the decoder, never ASCII
    ("<a" is the kanji 釈), and stands as one :data:`_NOT_ASCII` (an empty one as
    nothing: a superset of what it shows as ASCII)."""
    if "\x1b" not in text:
        return text
    pieces: list[str] = []
    start, ascii_mode = 0, True
    for escape in _ISO_2022_ESCAPE.finditer(text):
        run = text[start : escape.start()]
        pieces.append(run if ascii_mode or not run else _NOT_ASCII)
        ascii_mode = not (escape[0].startswith("\x1b$") or escape[0] == "\x1b(I")
        start = escape.end()
    run = text[start:]
    pieces.append(run if ascii_mode or not run else _NOT_ASCII)
    return "".join(pieces)


def _markup_text(s: str) -> tuple[str | None, bool]:
    """The markup type of ``s`` (or None), and whether its prolog ends within it."""
    n, i, doctype, office, styled = len(s), 0, None, False, False
    comment_first: bool | None = None
    while True:
        while i < n and s[i] in " \t\r\n\f\ufeff":
            i += 1
        if comment_first is None:
            # (browsers sniff a response without a type that starts "<!-- " or
            # "<!-->" as HTML: the WHATWG table's pattern, with its terminating byte)
            comment_first = s.startswith(("<!-- ", "<!-->"), i)
        if s.startswith("<?", i):  # XML declaration, processing instruction
            end = s.find("?>", i + 2)
            office = office or _MSO_APPLICATION.match(s, i) is not None
            styled = styled or s.startswith("<?xml-stylesheet", i)
            i = end + 2 if end >= 0 else n
        elif s.startswith("<!--", i):
            end = s.find("-->", i + 4)
            i = end + 3 if end >= 0 else n
        elif s[i : i + 9].lower() == "<!doctype":
            m = _DOCTYPE_RE.match(s, i)
            doctype = m.group(1).lower() if m else ""
            end, bracket = s.find(">", i), s.find("[", i)
            if 0 <= bracket < end or (end < 0 <= bracket):  # internal subset
                close = s.find("]", bracket)
                end = s.find(">", close) if close >= 0 else -1
            i = end + 1 if end >= 0 else n
        else:
            break
    ended = i < n
    found = _markup_type(s, i, doctype, office, styled, comment_first)
    return found, ended


def _markup_type(
    s: str, i: int, doctype: str | None, office: bool, styled: bool, comment_first: bool | None
) -> str | None:
    """The markup type of ``s`` whose prolog (its doctype, whether it holds the
    mso-application instruction or a style sheet, whether it starts with a comment)
    ends at ``i``."""
    m = _TAG_RE.match(s, i)
    if m:
        tag = m.group(1).lower()
        if tag.rsplit(":", 1)[-1] == "svg":
            return "svg"
        if tag in _HTML_TAGS or tag.endswith(":html"):
            return "html"
    elif doctype in ("svg", "html"):  # the prolog ran past the end of the preview
        return doctype
    if doctype == "html" or _EARLY_HTML_RE.search(s, 0, 1024):
        return "html"
    if m and (office or _office_root(s, i)):
        return "office_xml"
    if m and _office_root(s, i, _OPENDOCUMENT_NAMESPACE):
        # a flat OpenDocument file (.fodt, .fods...): LibreOffice opens it by its
        # content, under any name but .txt, macros, remote pictures and links all
        return "opendocument"
    if m and (styled or browser_markup(s)):
        return "html"
    return "html" if comment_first else None


_BROWSER_MARKUP = re.compile(
    r"http://www\.w3\.org/(?:1999/xhtml|2000/svg)|<\?xml-stylesheet(?=[\s?])", re.I
)
#: A DOCTYPE, and an entity declaration: XML declares entities in a DOCTYPE's
#: internal subset alone ("<!ENTITY" written in an element, escaped or in CDATA, as
#: a feed quoting one does, declares none).
_DOCTYPE = re.compile(r"<!DOCTYPE", re.I)
_ENTITY_DECLARATION = re.compile(r"<!ENTITY", re.I)


def browser_markup(text: str) -> bool:
    """Whether XML ``text`` holds what a browser runs scripts in: XHTML or SVG
    elements anywhere in it (an ``h:script``; the namespace may be written with
    character references), or a style sheet it transforms it with (XSLT writes
    scripts); or whether it declares entities, which may write that namespace in
    pieces (``xmlns:h="&a;xhtml"``: browsers expand a DTD's internal entities, and
    Chromium ran such a script)."""
    text = _iso_2022_shifts_out(text)
    if _BROWSER_MARKUP.search(text) or _declares_entities(text):
        return True
    return "&" in text and _BROWSER_MARKUP.search(html.unescape(text)) is not None


def _declares_entities(text: str) -> bool:
    """Whether XML ``text`` may declare entities: "<!ENTITY" after a DOCTYPE (a
    superset: the internal subset is not parsed, its "]" may be in a comment)."""
    doctype = _DOCTYPE.search(text)
    return doctype is not None and _ENTITY_DECLARATION.search(text, doctype.end()) is not None


#: What makes XML an Office document: the processing instruction Windows opens it by
#: (``<?mso-application progid="Excel.Sheet"?>``) before the root element, or the
#: namespace of an Office 2003 spreadsheet or Word document or of a flat OPC package
#: declared on the root element.
_MSO_APPLICATION = re.compile(r"<\?mso-application[\s?]", re.I)
_OFFICE_NAMESPACE = re.compile(
    r"urn:schemas-microsoft-com:office:spreadsheet"
    r"|schemas\.microsoft\.com/office/(?:word/2003/wordml|2006/xmlpackage)",
    re.I,
)
#: The namespace of a flat OpenDocument file's elements (its root is
#: ``office:document``).
_OPENDOCUMENT_NAMESPACE = re.compile(r"urn:oasis:names:tc:opendocument:xmlns:office:1\.0", re.I)
_CHARACTER_REFERENCE = re.compile(r"&#(?:x([0-9a-fA-F]{1,6})|([0-9]{1,7}));")


def _office_root(s: str, i: int, namespace: re.Pattern[str] = _OFFICE_NAMESPACE) -> bool:
    """Whether the root element's start tag (at ``i``) declares an Office namespace
    (``namespace``; character references in it read as the parser reads them)."""
    end = s.find(">", i)
    tag = s[i : end if end >= 0 else len(s)]
    if "&#" in tag:
        tag = _CHARACTER_REFERENCE.sub(
            lambda m: chr(min(int(m[1], 16) if m[1] else int(m[2]), 0x10FFFF)), tag
        )
    return namespace.search(tag) is not None


def _text(head: bytes, hint: str | None) -> str | None:
    text = _decode_text(head[:_TEXT_LIMIT])
    if text is None:
        return None
    if hint == "html":  # browsers render text served as HTML as HTML
        return "html"
    if hint == "svg":  # a browser renders text served or named as SVG as SVG
        return "svg"
    if hint == "script":  # named as a script: the desktop runs it
        return "script"
    # Excel opens text served as application/vnd.ms-excel as csv; text that starts
    # as SYLK does ("ID;P", "ID;N"...) is SYLK to LibreOffice under any name but
    # .txt (and to Excel by any name it opens), its formulas with it: the CSV engine
    # quotes that first cell
    if hint in ("csv", "xls") or text.startswith(SYLK_START) or _looks_like_csv(text):
        return "csv"
    return "text"


#: How a SYLK file starts (an ID record, its fields after ";"): LibreOffice reads it
#: by that (Excel by "ID" alone, in the files it opens, which are CSV here anyway).
SYLK_START = "ID;"


def _decode_text(head: bytes) -> str | None:
    """``head`` as text when it is strict UTF-8 (or UTF-16 with a BOM), or else text
    in an 8-bit charset (read as its bytes: the text engine's ``EIGHT_BIT``; not one
    that shifts with ESC), without NULs and with few control characters, else
    ``None``. A sequence cut at the end is allowed."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        data = head[2 : len(head) & ~1]
        codec = "utf-16-le" if head[0] == 0xFF else "utf-16-be"
        tail = 4
    else:
        if b"\x00" in head:
            return None
        data, codec, tail = head.removeprefix(b"\xef\xbb\xbf"), "utf-8", 3
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        truncated = exc.start >= len(data) - tail and "end of data" in exc.reason
        if not truncated:
            if codec != "utf-8" or b"\x1b" in data or head.startswith(b"\xef\xbb\xbf"):
                return None
            # Text in an 8-bit charset (a CSV file Excel saved in the Windows code
            # page, Shift-JIS...): its controls are the C0 bytes and DEL, as in UTF-8.
            controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
            return data.decode("latin-1") if controls <= max(1, len(data) // 100) else None
        data = data[: exc.start]
        text = data.decode(codec)
    if "\x00" in text:
        return None
    if codec == "utf-8" and b"\xc2" not in data:
        # No C1 control (U+0080 to U+009F are \xc2 and a byte in UTF-8): the controls
        # are the bytes of the C0 ones and DEL, which UTF-8 uses for nothing else.
        controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    else:
        controls = len(_CONTROLS_RE.findall(text))
    return text if controls <= max(1, len(text) // 100) else None


def _looks_like_csv(text: str) -> bool:
    """At least three records with the same number (2+) of fields for one delimiter."""
    complete = text.endswith(("\n", "\r"))
    for delimiter in _CSV_DELIMITERS:
        if delimiter not in text:
            continue
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            raw = list(itertools.islice(reader, _CSV_RECORDS + 1))
        except csv.Error:
            continue
        rows = [len(row) for row in raw[:_CSV_RECORDS] if row]
        if len(raw) <= _CSV_RECORDS and not complete and len(rows) > 1:
            rows.pop()  # the last record of the preview may be cut off
        if len(rows) >= 3 and rows[0] >= 2 and len(set(rows)) == 1:
            return True
    return False


#: Types whose text a desktop or a browser reads whatever the bytes are, when the file
#: is named (or served) as one of them: a script host runs any line of a ``.bat``,
#: mshta and browsers run a ``<script>`` found among binary bytes in an ``.hta`` or
#: ``.html``, Excel reads any text of a ``.csv`` as cells, and PDF readers repair any
#: bytes into a PDF (pdf.js and poppler read objects and an /OpenAction script from a
#: file with no %PDF header, which is text here). (In the order a file saved under
#: names of several of them is taken as one.)
OPENED_AS_TEXT = ("script", "html", "svg", "csv", "pdf")


def opened_as(declared: str | None) -> str | None:
    """The type of :data:`OPENED_AS_TEXT` a file is named or served as (``declared``:
    as for :func:`detect`), or None. A file whose content is another type would be
    opened as that text all the same (a picture whose pixels hold a script, saved as
    ``page.hta``): the caller refuses it rather than deliver a polyglot."""
    name = declared_name(declared)
    return name if name in OPENED_AS_TEXT else None


def opened_as_saved(names: list[str], content_type: str | None) -> str | None:
    """:func:`opened_as` for a file saved under one of ``names`` (browsers differ on
    which: ``filename*`` or ``filename``...): the first type of
    :data:`OPENED_AS_TEXT` any of them names; when none names any type, the type
    ``content_type`` names (a browser adds its extension to the name)."""
    kinds = [_name_type(name) for name in names]
    for kind in OPENED_AS_TEXT:
        if kind in kinds:
            return kind
    if any(kinds):
        return None
    return opened_as(content_type)


def mismatch(detected: str, opened: str | None) -> bool:
    """Whether a file detected as ``detected`` is opened as another type of text
    (``opened``, from :func:`opened_as`): an SVG is HTML too (inline SVG)."""
    return opened is not None and detected != opened and (detected, opened) != ("svg", "html")


def declared_name(declared: str | None) -> str | None:
    """The type name a ``Content-Type``, file name or ``filename=`` parameter suggests."""
    if not declared or not isinstance(declared, str):
        return None
    value = declared.strip()
    if "filename" in value.lower():
        names = file_names(value)
        if names:  # (else a bare name that merely holds the word)
            name = telling_name(names)
            return _name_type(name) if name is not None else None
    mime = value.split(";", 1)[0].strip().lower()
    if mime in _BY_MIME:
        return _BY_MIME[mime]
    return _name_type(value)


#: A Content-Disposition of more parameters is read by the patterns alone.
_MAX_PARAMETERS = 64
_CONTINUATION = re.compile(
    r"""(?<![\w*-])filename\*(\d{1,3})(\*?)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s"]+))""", re.I
)
#: Continuation pieces read (Firefox's limit).
_MAX_CONTINUATIONS = 999


def _continued_names(found: list[tuple[str, str, str, str]]) -> list[str]:
    """The names RFC 2231 continuation pieces (number, "*", quoted, bare; in the order
    written) make: as Firefox joins them (the first of each number, from 0 up to a
    gap; a repeated number or one written with a leading zero ends them), and every
    piece in number order (as the email package joins them)."""
    first: dict[int, tuple[str, str]] = {}
    every: list[tuple[int, str, str]] = []
    stopped = False
    for number, star, quoted, bare in found:
        value = _UNESCAPE.sub(r"\1", quoted) if quoted else bare
        every.append((int(number), star, value))
        if stopped or (len(number) > 1 and number[0] == "0") or int(number) in first:
            stopped = True
            continue
        first[int(number)] = (star, value)
    names = []
    firefox: list[str] = []
    while len(firefox) in first:
        star, value = first[len(firefox)]
        firefox.append(_piece(star, value, not firefox))
        if "." in firefox[-1] and len(names) < 64:
            # (a join that ends with an extension: a later piece may be a decoy in
            # another parameter's quoted value, which the pattern cannot tell)
            names.append("".join(firefox))
    if firefox:
        names.append("".join(firefox))
    if every:
        ordered = sorted(every, key=lambda piece: piece[0])
        names.append("".join(_piece(star, v, i == 0) for i, (_, star, v) in enumerate(ordered)))
    return names


def _piece(star: str, value: str, first: bool) -> str:
    """A continuation piece's text: an extended one ("*") percent-decoded, the first
    one without its charset and language."""
    if star:
        if first and "''" in value:
            value = value.split("''", 1)[1]
        return unquote(value)
    return value


#: A backslash escape in a quoted string.
_UNESCAPE = re.compile(r"\\(.)")


def _encoded_words(value: str) -> str:
    """``value`` with its RFC 2047 encoded words decoded (as it is when they do not
    decode)."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


_LOOSE_FILENAME = re.compile(r"""filename\*?\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;,\s"]+))""", re.I)


def url_segment(url: str) -> str:
    """The last segment of a URL's path, percent-decoded: the name a browser saves a
    download under when nothing else names it. A URL ``urlsplit`` refuses (an
    unbalanced ``[`` or ``]`` in its host, ``http://[::1/setup.exe``) still names a
    file: its path is read up to the query or fragment."""
    try:
        path = urlsplit(url).path
    except ValueError:
        path = re.split(r"[?#]", url, maxsplit=1)[0]
    return unquote(path.rsplit("/", 1)[-1])


def file_names(disposition: str) -> list[str]:
    """Every name a ``Content-Disposition`` may have its file saved under: both
    ``filename`` and ``filename*`` (RFC 6266, RFC 5987, RFC 2231 continuations),
    RFC 2047 encoded words and percent-encoding decoded too (browsers differ)."""
    names: list[str] = []
    # As browsers scan it too: a name up to its closing quote, or up to ";", ","
    # or white space; "filename*" apart from its continuations; NUL ends it.
    for quoted, bare in _LOOSE_FILENAME.findall(disposition):
        value = _UNESCAPE.sub(r"\1", quoted) if quoted else bare  # ("a\".html")
        if "''" in value:
            value = value.split("''", 1)[1]
        names.append(value)
        names.append(unquote(value).split("\x00", 1)[0])
        if "=?" in value:
            names.append(_encoded_words(value))
    # RFC 2231 continuations joined here too, however many parameters come first:
    # every join of the first pieces is a name (browsers stop at a gap, a repeated
    # number or a piece they do not take; a piece may be a decoy in another value)
    names += _continued_names(_CONTINUATION.findall(disposition)[:_MAX_CONTINUATIONS])
    if disposition.count(";") > _MAX_PARAMETERS:
        # (the email package splits parameters in quadratic time: 64 KB of ";" in an
        # unclosed quote took 2.5 s, in the server's event loop; none is real)
        return names
    message = Message()
    try:
        message["Content-Disposition"] = disposition
        params = message.get_params(header="content-disposition") or []
    except Exception:
        return names
    for key, raw in params[1:]:
        if key.lower() != "filename":
            continue
        value = collapse_rfc2231_value(raw) if isinstance(raw, tuple) else str(raw)
        names.append(value)
        if "=?" in value:
            names.append(_encoded_words(value))
        if "%" in value:
            names.append(unquote(value))
    return names


def telling_name(names: list[str]) -> str | None:
    """Of the names a file may be saved under, the one detection should take as its
    hint: a script's first, then a CSV file's (what a desktop runs, what Excel
    opens), then any naming a known type."""
    typed = [(_name_type(name), name) for name in names]
    for wanted in ("script", "csv"):
        for kind, name in typed:
            if kind == wanted:
                return name
    return next((name for kind, name in typed if kind is not None), None)


def saved_name(name: str) -> str:
    """``name`` as the strictest browser saves it (Firefox): control characters and
    line or paragraph separators dropped, other spaces made spaces, then trailing
    spaces and dots off (Windows drops those too): "x.js\\t", "x.j\\ts" and
    "x.js\\u00a0" are saved as x.js."""
    kept = []
    for char in name:
        kind = unicodedata.category(char)
        if kind in ("Cc", "Zl", "Zp"):
            continue
        kept.append(" " if kind == "Zs" and char != "\u3000" or char == "\ufeff" else char)
    saved = "".join(kept).rstrip(". \u3000\u180e")
    stem, dot, extension = saved.rpartition(".")
    # (Firefox strips the white space out of the extension: "x.j s" is saved x.js)
    return f"{stem}.{extension.translate(_EXTENSION_SPACE)}" if dot else saved


_EXTENSION_SPACE = str.maketrans("", "", " \t\n\r\f")


def _name_type(name: str) -> str | None:
    """The type a file name's extension names, as Windows reads the name: the last
    path component, an NTFS stream (``x.js:zone``) off, percent-encoding decoded, as
    the name is saved (``saved_name``)."""
    leaf = unquote(name).replace("\\", "/").rsplit("/", 1)[-1].split(":", 1)[0]
    leaf = saved_name(leaf).lower()
    if "." in leaf:
        return _BY_EXT.get(leaf.rsplit(".", 1)[1])
    return None
