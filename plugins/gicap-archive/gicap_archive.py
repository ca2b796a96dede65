"""gicap-archive: ZIP archives rebuilt member by member.

A zip is a container: the risk is in its members (each disarmed by the engine of its
own type, through ``request.disarm_member``) and in the container itself — zip bombs,
names that escape the extraction directory, symbolic links, duplicate names, hidden
data in comments, extra fields or gaps. So the archive is never passed on as it is:

1. The central directory is read and checked BEFORE anything is expanded: nesting
   depth, member count, the sum of the declared uncompressed sizes, each member's
   compression ratio, overlapping members (the "overlapped" zip bomb), encryption and
   the compression method. A refusal is ``unprocessable`` (``encrypted`` for a
   password-protected member, unless the profile's ``encrypted`` fallback relays it:
   then such members are copied as they are stored, and the rest is disarmed).
2. Unsafe entries are dropped, with an action each: traversal names (``..``,
   absolute paths, drive letters, backslash forms of those, control characters),
   symbolic links and special files, duplicate names (the first one wins).
3. Every other member is extracted to a temporary file in a private directory made
   under the destination's directory by the outermost archive of the file (shared by
   the archives nested in it; names are ours, never the archive's), counting the
   bytes really expanded against ``max_expanded_bytes`` (shared by every nested
   archive of one file), and handed to the pipeline: rebuilt bytes are kept (renamed
   when the type changed, .docm → .docx), unmodified members are kept as they are, a
   blocked member blocks the archive, and a member that cannot be disarmed
   (unsupported, unprocessable, encrypted, oversize) follows the profile's fallback
   for that case: ``relay`` keeps the original member, ``block`` blocks the archive.
4. A new archive is written with ``zipfile`` (deflate): the kept members in the same
   order, with the same names and timestamps, and nothing else (no comments, no extra
   fields, no file modes other than plain files and directories).
"""

from __future__ import annotations

import re
import shutil
import stat
import struct
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from gicap import hookimpl
from gicap.cdr.detect import opened_as, saved_name
from gicap.cdr.policy import ARCHIVE_LIMITS
from gicap.cdr.types import DEFAULT_FALLBACKS, Action, DisarmRequest, DisarmResult, Outcome
from gicap.cdr.zipdir import count_entries

#: The file types this plugin claims (names given by gicap's detector).
FILE_TYPES = ("zip",)

#: A member that expands to less than this is never a bomb on its own (a few KiB of
#: zeros compress 1000:1 in ordinary files); the ratio limit applies above it, and the
#: total is capped by ``max_expanded_bytes`` anyway.
RATIO_FLOOR = 1024 * 1024

#: Compression methods whose streaming expansion is bounded: zipfile calls
#: ``zlib.decompress(data, max_length)`` for deflate. Its bzip2 and LZMA readers
#: expand a whole input chunk at once (a bzip2 bomb expands 4 KiB into gigabytes), so
#: those members are refused; they are rare in the wild.
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
#: zlib level of the new archive's deflated members. A gateway's answer waits for
#: it: level 4 took a third of the time of zlib's default (6) on text and CSV, for
#: output 5-16% larger (level 1: a quarter of the time, up to 50% larger).
COMPRESS_LEVEL = 4
#: WinZip AES (the data is encrypted whatever the flag bits say).
AES_METHOD = 99
#: Its extra field's header id.
AES_EXTRA = 0x9901
#: The version needed to extract it.
AES_VERSION = 51

CHUNK = 1024 * 1024
#: General purpose flag bits: encrypted member, compression options, sizes in a data
#: descriptor after the data, file name in UTF-8.
FLAG_ENCRYPTED = 0x1
FLAG_COMPRESS_OPTIONS = 0x6
FLAG_DESCRIPTOR = 0x8
FLAG_UTF8 = 0x800
#: What starts a member's local header: what a reader reading the archive as a stream
#: looks for to find the next member.
LOCAL_SIGNATURE = b"PK\x03\x04"

_LOCAL_HEADER_SIZE = 30
_DRIVE = re.compile(r"^[A-Za-z]:")
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9][A-Za-z0-9-]{0,23}$")


class _Refused(Exception):
    """The archive cannot be processed (a bomb, a limit, a malformed structure)."""


@dataclass
class _Budget:
    """Bytes that may still be expanded, and members still disarmed, for the file
    being disarmed."""

    total: int  # max_expanded_bytes of the outermost archive
    left: int
    members_total: int  # max_total_members of the outermost archive
    members_left: int
    outer_size: int = 0  # bytes of the outermost archive (the file sent)
    declared: int = 0  # bytes the members of every archive of the file declare, together


#: The expansion budget of the file being disarmed, shared by the archives nested in it
#: (they are disarmed in this thread, from inside our own ``gicap_disarm`` call): so
#: ``max_expanded_bytes`` caps the whole tree, not each level (42.zip multiplies
#: levels). Set by the outermost archive call and reset when it returns.
_budget: ContextVar[_Budget | None] = ContextVar("gicap_archive_budget", default=None)


@dataclass
class _Work:
    """The private directory where the members of one file's archives are extracted."""

    path: Path
    count: int = 0  # member files named so far

    def names(self, suffix: str) -> tuple[Path, Path]:
        """Two new file paths: a member as extracted, and as rebuilt by its engine."""
        self.count += 1
        return self.path / f"m{self.count}{suffix}", self.path / f"r{self.count}{suffix}"


#: The work directory of the file being disarmed: made by the outermost archive under
#: its destination's directory and removed when it returns; a nested archive (whose
#: own destination is in it) extracts its members there too, under other names.
_work: ContextVar[_Work | None] = ContextVar("gicap_archive_work", default=None)


@dataclass
class _Limits:
    max_depth: int
    max_members: int
    max_total_members: int
    max_expanded_bytes: int
    max_ratio: int
    max_file_size: int  # 0: no limit

    @classmethod
    def of(cls, limits: Mapping[str, int]) -> _Limits:
        return cls(
            max_depth=int(limits.get("max_depth", ARCHIVE_LIMITS["max_depth"])),
            max_members=int(limits.get("max_members", ARCHIVE_LIMITS["max_members"])),
            max_total_members=int(
                limits.get("max_total_members", ARCHIVE_LIMITS["max_total_members"])
            ),
            max_expanded_bytes=int(
                limits.get("max_expanded_bytes", ARCHIVE_LIMITS["max_expanded_bytes"])
            ),
            max_ratio=int(limits.get("max_ratio", ARCHIVE_LIMITS["max_ratio"])),
            max_file_size=int(limits.get("max_file_size", 0) or 0),
        )


@dataclass
class _Plan:
    """What happens to each entry, decided from the central directory alone."""

    keep: list[zipfile.ZipInfo] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)


# --------------------------------------------------------------------------- hooks


@hookimpl
def gicap_file_types() -> list[str]:
    return list(FILE_TYPES)


@hookimpl
def gicap_disarm(request: DisarmRequest) -> DisarmResult | None:
    if request.file_type.name not in FILE_TYPES:
        return None
    limits = _Limits.of(request.limits)
    budget = _budget.get()
    token = None
    if budget is None:  # the outermost archive of this file
        budget = _Budget(
            limits.max_expanded_bytes,
            limits.max_expanded_bytes,
            limits.max_total_members,
            limits.max_total_members,
            outer_size=request.source.stat().st_size,
        )
        token = _budget.set(budget)
    try:
        result = _disarm(request, limits, budget)
    except BaseException:
        request.destination.unlink(missing_ok=True)
        raise
    finally:
        if token is not None:
            _budget.reset(token)
    if result.outcome != "rebuilt":
        # Only a rebuilt archive may leave a file behind: never a half-written one.
        request.destination.unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------- checks


def _disarm(request: DisarmRequest, limits: _Limits, budget: _Budget) -> DisarmResult:
    if request.depth > limits.max_depth:
        return DisarmResult(
            "unprocessable",
            reason=f"archive nested {request.depth} levels deep, more than max_depth "
            f"{limits.max_depth}",
        )
    size = request.source.stat().st_size
    if limits.max_file_size and size > limits.max_file_size:
        return DisarmResult(
            "unprocessable",
            reason=f"archive is {size} bytes, more than max_file_size {limits.max_file_size}",
        )
    try:
        with open(request.source, "rb") as fp:
            # Counted from the raw central directory first: zipfile builds an object per
            # entry, and a few MB of directory can describe millions of them.
            count = count_entries(fp, size, limits.max_members)
            if count > limits.max_members:
                raise _Refused(f"more than max_members {limits.max_members} members")
            if count > budget.members_left:
                raise _Refused(
                    f"more than max_total_members {budget.members_total} members in the "
                    "archives of this file together"
                )
            budget.members_left -= count
            with zipfile.ZipFile(fp) as zf:
                infos = zf.infolist()
                _check_directory(zf, infos, limits, budget)
                fallbacks = request.fallbacks or DEFAULT_FALLBACKS
                encrypted = [i.filename for i in infos if _encrypted(i)]
                if encrypted and fallbacks.get("encrypted", "block") != "relay":
                    return DisarmResult(
                        "encrypted",
                        reason=f"password-protected member(s): {_names(encrypted)}",
                    )
                # With the encrypted fallback "relay", the archive is still rebuilt: the
                # password-protected members are copied as they are stored, the others
                # disarmed (relaying the original would let one encrypted member carry
                # traversal names, links and undisarmed members through).
                plan = _plan(zf, infos)
                return _rebuild(request, zf, plan, limits, budget)
    except _Refused as exc:
        return DisarmResult("unprocessable", reason=str(exc))
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        ValueError,
        struct.error,
        IndexError,
        OSError,
    ) as exc:
        return DisarmResult("unprocessable", reason=f"malformed zip: {exc}")
    except NotImplementedError as exc:
        return DisarmResult("unprocessable", reason=f"unsupported zip feature: {exc}")


def _check_directory(
    zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: _Limits, budget: _Budget
) -> None:
    """Refuse zip bombs and structures we do not handle, before expanding anything."""
    if len(infos) > limits.max_members:
        raise _Refused(f"{len(infos)} members, more than max_members {limits.max_members}")
    declared = sum(i.file_size for i in infos)
    if declared > budget.left:
        what = (
            f"max_expanded_bytes {budget.total}"
            if budget.left == budget.total
            else f"the {budget.left} bytes left of max_expanded_bytes {budget.total}"
        )
        raise _Refused(f"members declare {declared} bytes uncompressed, more than {what}")
    for info in infos:
        if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            ratio = info.file_size / max(info.compress_size, 1)
            raise _Refused(
                f"member {info.filename!r} expands {ratio:.0f} times, more than "
                f"max_ratio {limits.max_ratio}"
            )
    _check_overlap(zf, infos)
    # The members together too: 40 of 1 MiB each, just at the floor (400:1), took
    # half a minute of engines' time from 839 bytes sent gzip-encoded.
    # (members that do not compress are left out: one stored member of padding made
    # the ratio of the others fall under the limit)
    packed = sum(i.compress_size for i in infos if i.compress_size < i.file_size)
    if declared > RATIO_FLOOR and declared > limits.max_ratio * max(packed, 1):
        raise _Refused(
            f"the members expand {declared / max(packed, 1):.0f} times in all, more than "
            f"max_ratio {limits.max_ratio}"
        )
    # And the archives nested in the file together, against the file sent: each one
    # under the floor, 80 inner archives of 1 MiB each passed from 16 KB (28 s of
    # engines' time). The floor is granted once per file.
    budget.declared += declared
    if budget.declared > RATIO_FLOOR and budget.declared > limits.max_ratio * max(
        budget.outer_size, 1
    ):
        raise _Refused(
            f"the archives of this file expand {budget.declared / max(budget.outer_size, 1):.0f}"
            f" times in all, more than max_ratio {limits.max_ratio}"
        )
    for info in infos:
        if _encrypted(info) or info.is_dir():
            continue  # encrypted: reported as such; directories hold no data
        if info.compress_type not in METHODS:
            raise _Refused(
                f"member {info.filename!r} uses compression method {info.compress_type}; "
                f"only {' and '.join(METHODS.values())} are handled"
            )


def _check_overlap(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Members whose data overlap (or overlap the central directory) are the
    "overlapped" zip bomb: one compressed kernel counted by every entry."""
    previous: zipfile.ZipInfo | None = None
    previous_end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if previous is not None and info.header_offset < previous_end:
            raise _Refused(
                f"members {previous.filename!r} and {info.filename!r} overlap (a zip bomb)"
            )
        encoding = "utf-8" if info.flag_bits & FLAG_UTF8 else "cp437"
        # The local header holds at least the same name (zipfile checks it on open),
        # and its own extra field, which the data follows.
        name_len = len(info.orig_filename.encode(encoding, "replace"))
        extra_len = 0
        lengths = _local_lengths(zf.fp, info) if zf.fp is not None else None
        if lengths is not None:
            name_len, extra_len = lengths
        previous_end = (
            info.header_offset + _LOCAL_HEADER_SIZE + name_len + extra_len + info.compress_size
        )
        previous = info
    start_dir = getattr(zf, "start_dir", None)
    if previous is not None and isinstance(start_dir, int) and previous_end > start_dir:
        raise _Refused(f"member {previous.filename!r} overlaps the central directory")


def _encrypted(info: zipfile.ZipInfo) -> bool:
    return bool(info.flag_bits & FLAG_ENCRYPTED) or info.compress_type == AES_METHOD


def _suffix(name: str) -> str:
    """The extension of a member's name, as Windows reads it (".csv" is a CSV file
    named with its extension alone), when it is a plain one (else ""); read from the
    name as it is saved (:func:`saved_name`): "x.csv" and a no-break space had no
    extension here, was judged as text, and its formulas went out as they came."""
    last = saved_name(name.replace("\\", "/").rsplit("/", 1)[-1])
    at = last.rfind(".")
    suffix = last[at:] if at >= 0 else ""
    return suffix if _SAFE_SUFFIX.match(suffix) else ""


def _unsafe_name(name: str) -> str | None:
    """Why ``name`` must not be extracted, or ``None``. Backslashes count as
    separators: Windows extractors treat them so."""
    if not name or not name.strip("/\\"):
        return "empty name"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "control character in the name"
    path = name.replace("\\", "/")
    if path.startswith("/"):
        return "absolute path"
    if any(part.endswith((".", " ")) and part not in (".", "..") for part in path.split("/")):
        # Windows drops them: "evil.csv." is extracted as "evil.csv", but its type was
        # judged (and its duplicates looked for) without that extension
        return "a name ending in a dot or a space"
    last = path.rsplit("/", 1)[-1]
    if last == "." or (last == "" and not name.endswith("/")):
        # extractors drop it: "invoice.js/." (or "invoice.js\\") is written as
        # invoice.js, but its type was judged on the last segment, "." or ""
        return "a name ending in an empty or '.' segment"
    if ":" in path and not _DRIVE.match(path):
        # an NTFS stream ("invoice.js::$DATA" is written as invoice.js)
        return "a colon in the name"
    why = _path_danger(path)
    if why:
        return why
    if _BIDI.search(name):
        # "invoice\u202egpj.exe" shows as "invoiceexe.jpg"
        return "a bidirectional control character in the name"
    mapped = unicodedata.normalize("NFKC", path).translate(_BEST_FIT).replace("\\", "/")
    if mapped != path:
        # Extractors that convert names to an ANSI code page map look-alikes to ASCII
        # ("WorstFit": fullwidth "．．／", "¥" in Japanese and "₩" in Korean code pages
        # are "../" and "\\"): dangerous only where the result is (a CJK name with a
        # fullwidth colon or full stop is not)
        why = _path_danger(mapped)
        if why:
            return f"{why} once mapped to ASCII"
        if opened_as(saved_name(mapped.rsplit("/", 1)[-1])) != opened_as(last):
            # "run.ｊｓ" or "run.js．" is run.js there, a script: its type was judged
            # without it (a CJK name with a fullwidth full stop names no such type)
            return "a name opened as another type once mapped to ASCII"
    return None


def _path_danger(path: str) -> str | None:
    """What makes ``path`` (with "/" separators) write outside the extraction
    directory or to a device."""
    if path.startswith("/"):
        return "absolute path"
    if _DRIVE.match(path):
        return "drive letter"
    parts = path.split("/")
    if ".." in parts:
        return "parent directory (..) in the path"
    if any(part.split(".", 1)[0].rstrip(" ").casefold() in _DEVICES for part in parts):
        # "aux.txt" opens the AUX device on Windows, whatever the extension
        return "a Windows device name"
    return None


#: Windows device names (with or without an extension, any case).
_DEVICES = frozenset(
    ["con", "prn", "aux", "nul", "conin$", "conout$"]
    + [f"{dev}{n}" for dev in ("com", "lpt") for n in "0123456789\u00b9\u00b2\u00b3"]
)
#: Characters Windows' best-fit mappings turn into separators, beyond what NFKC does.
_BEST_FIT = str.maketrans(
    {"\u00a5": "\\", "\u20a9": "\\", "\u2215": "/", "\u2044": "/", "\u2216": "\\", "\ufe68": "\\"}
)
#: Bidirectional formatting characters (they reorder how a name is shown).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _name_key(name: str) -> str:
    """What ``name`` is on a case-insensitive file system that normalises Unicode
    (macOS, Windows): either separator, empty and "." segments dropped, NFC, folded.
    Two members with one key land on the same file."""
    path = unicodedata.normalize("NFC", name.replace("\\", "/"))
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return unicodedata.normalize("NFC", "/".join(parts).casefold())


#: Characters of a member's name shown in a report (999 names of 45,000 characters
#: made a 45 MB block page from 109 KB sent gzip-encoded).
SHOWN_NAME = 120


def _shown(name: str) -> str:
    """``name`` as a report shows it: quoted, cut after ``SHOWN_NAME`` characters."""
    return repr(name if len(name) <= SHOWN_NAME else name[:SHOWN_NAME] + "…")


def _plan(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> _Plan:
    plan = _Plan()
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        shown = _shown(name)
        why = _unsafe_name(name)
        if why:
            plan.actions.append(Action("unsafe_name", "removed", f"{shown}: {why}"))
            continue
        if kind == stat.S_IFLNK:
            plan.actions.append(Action("symlink", "removed", shown))
            continue
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            plan.actions.append(Action("special_file", "removed", shown))
            continue
        if info.is_dir() and info.file_size:
            plan.actions.append(Action("special_file", "removed", f"{shown}: directory with data"))
            continue
        # Names that land on the same file when extracted on Windows or macOS
        # count as duplicates.
        key = _name_key(name)
        if key in seen:
            plan.actions.append(Action("duplicate_name", "removed", shown))
            continue
        seen.add(key)
        plan.keep.append(info)
    comments = sum(1 for i in infos if i.comment)
    if zf.comment:
        plan.actions.append(Action("archive_comment", "removed", f"{len(zf.comment)} bytes"))
    if comments:
        plan.actions.append(Action("member_comments", "removed", f"{comments} members"))
    return plan


# --------------------------------------------------------------------------- rebuild


def _rebuild(
    request: DisarmRequest,
    zf: zipfile.ZipFile,
    plan: _Plan,
    limits: _Limits,
    budget: _Budget,
) -> DisarmResult:
    fallbacks = request.fallbacks or DEFAULT_FALLBACKS
    actions = list(plan.actions)
    taken = {_name_key(i.filename) for i in plan.keep}
    request.destination.parent.mkdir(parents=True, exist_ok=True)
    # Members are extracted under the destination's directory, with names we choose.
    work = _work.get()
    token = None
    if work is None:  # the outermost archive of this file
        work = _Work(
            Path(tempfile.mkdtemp(prefix=".gicap-archive-", dir=request.destination.parent))
        )
        token = _work.set(work)
    try:
        with zipfile.ZipFile(request.destination, "w", zipfile.ZIP_DEFLATED) as out:
            for info in plan.keep:
                if info.is_dir():
                    _write_dir(out, info)
                    continue
                if _encrypted(info):
                    _write_encrypted(out, zf, info)
                    actions.append(
                        Action(
                            "encrypted",
                            "kept",
                            f"{info.filename}: password-protected (the encrypted fallback "
                            "relays it)",
                        )
                    )
                    continue
                suffix = _suffix(info.filename)
                src, dst = work.names(suffix)
                try:
                    _extract(zf, info, src, budget)
                    verdict = _member(request, info, src, dst, limits, fallbacks)
                    actions.extend(verdict.actions)
                    if verdict.stop is not None:
                        verdict.stop.actions = actions
                        return verdict.stop
                    name = info.filename
                    if verdict.new_extension:
                        name = _renamed(name, verdict.new_extension, taken)
                        actions.append(
                            Action("file_name", "neutralised", f"{info.filename!r} -> {name!r}")
                        )
                    _write_file(out, name, info.date_time, verdict.data)
                finally:
                    src.unlink(missing_ok=True)
                    dst.unlink(missing_ok=True)
    finally:
        if token is not None:
            _work.reset(token)
            _remove_dir(work.path)
    return DisarmResult("rebuilt", actions=actions)


@dataclass
class _Verdict:
    data: Path
    actions: list[Action]
    new_extension: str = ""
    stop: DisarmResult | None = None  # the archive's result when the member ends it


def _member(
    request: DisarmRequest,
    info: zipfile.ZipInfo,
    src: Path,
    dst: Path,
    limits: _Limits,
    fallbacks: Mapping[str, str],
) -> _Verdict:
    name = info.filename
    size = src.stat().st_size
    if limits.max_file_size and size > limits.max_file_size:
        result = DisarmResult(
            "unprocessable",
            reason=f"{size} bytes, more than max_file_size {limits.max_file_size}",
            fallback_case="oversize",
        )
    elif request.disarm_member is None:
        result = DisarmResult(
            "unprocessable", reason="no pipeline to disarm members", fallback_case="unsupported"
        )
    else:
        result = request.disarm_member(src, dst, request.depth + 1)
    inner = [
        Action(a.switch, a.action, f"{name}: {a.detail}" if a.detail else name)
        for a in result.actions
    ]
    if result.outcome == "rebuilt":
        new_ext = ""
        if result.output_type is not None:
            ext = result.output_type.extension.lower()
            if PurePosixPath(name).suffix.lower() != f".{ext}":
                new_ext = ext
        return _Verdict(dst, inner, new_ext)
    if result.outcome == "unmodified":
        return _Verdict(src, inner)
    if result.outcome == "blocked":
        reason = f"member {name!r}: {result.reason or 'blocked by the policy'}"
        return _Verdict(src, inner, stop=DisarmResult("blocked", reason=reason))
    case = result.fallback_case or result.outcome
    why = result.reason or case
    if fallbacks.get(case, "block") == "relay":
        inner.append(Action(case, "kept", f"{name}: {why} (the {case} fallback relays it)"))
        return _Verdict(src, inner)
    reason = f"member {name!r} {case}: {why}"
    # unprocessable and encrypted members make the archive so (the pipeline applies the
    # same profile's fallback to it); unsupported and oversize have no outcome: blocked.
    outcome: Outcome = "blocked"
    if case == "unprocessable" or case == "encrypted":
        outcome = case
    inner.append(Action(case, "blocked", f"{name}: {why}"))
    return _Verdict(src, inner, stop=DisarmResult(outcome, reason=reason))


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, budget: _Budget) -> None:
    """Expand one member to ``path``, counting the bytes really produced: declared
    sizes are checked before, but they are the archive's word."""
    produced = 0
    with zf.open(info) as reader, open(path, "wb") as writer:
        while chunk := reader.read(CHUNK):
            produced += len(chunk)
            if produced > budget.left:
                raise _Refused(
                    f"member {info.filename!r} expands beyond max_expanded_bytes {budget.total}"
                )
            writer.write(chunk)
    budget.left -= produced


def _remove_dir(path: Path) -> None:
    """Remove the work directory: usually empty by now (each member's files are
    removed once written), else with whatever an engine left in it."""
    try:
        path.rmdir()
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def _renamed(name: str, extension: str, taken: set[str]) -> str:
    """``name`` with the extension of the type it was rebuilt as, not clashing with
    another member."""
    path = PurePosixPath(name)
    stem = name[: len(name) - len(path.suffix)] if path.suffix else name
    candidate = f"{stem}.{extension}"
    n = 1
    while _name_key(candidate) in taken:
        candidate = f"{stem}-{n}.{extension}"
        n += 1
    taken.add(_name_key(candidate))
    return candidate


def _write_dir(out: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    zi = zipfile.ZipInfo(info.filename, info.date_time)
    zi.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10  # 0x10: MS-DOS directory
    zi.file_size = zi.compress_size = zi.CRC = 0  # ZipFile.mkdir expects them set
    out.mkdir(zi)


def _local_lengths(fp: IO[bytes], info: zipfile.ZipInfo) -> tuple[int, int] | None:
    """The name and extra field lengths of a member's local header (its data follows
    them), or None when no local header is where the directory says."""
    fp.seek(info.header_offset)
    local = fp.read(_LOCAL_HEADER_SIZE)
    if len(local) != _LOCAL_HEADER_SIZE or not local.startswith(LOCAL_SIGNATURE):
        return None
    name_len, extra_len = struct.unpack_from("<HH", local, 26)
    return name_len, extra_len


def _write_encrypted(out: zipfile.ZipFile, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Copy a password-protected member as it is stored (it cannot be read, so it
    cannot be disarmed): its encrypted bytes and what decrypting them needs (the
    compression method, CRC, sizes, the encryption and data-descriptor flags: ZipCrypto
    checks a password against the time when a descriptor follows; WinZip AES's extra
    field), nothing else. ``zipfile`` writes no raw member, so this writes the local
    header and data as its own writer does and lets it write the directory."""
    if zf.fp is None or out.fp is None:
        raise ValueError("archive closed")
    lengths = _local_lengths(zf.fp, info)
    if lengths is None:
        raise zipfile.BadZipFile(f"bad local header for {info.filename!r}")
    name_len, extra_len = lengths
    zi = zipfile.ZipInfo(info.filename, info.date_time)
    zi.compress_type = info.compress_type
    zi.flag_bits = info.flag_bits & (FLAG_ENCRYPTED | FLAG_COMPRESS_OPTIONS | FLAG_DESCRIPTOR)
    if info.compress_type == AES_METHOD:
        zi.extract_version = AES_VERSION  # (else zipfile's own, by method and size)
    zi.CRC, zi.compress_size, zi.file_size = info.CRC, info.compress_size, info.file_size
    zi.external_attr = (stat.S_IFREG | 0o644) << 16
    zi.extra = _aes_extra(info.extra) if info.compress_type == AES_METHOD else b""
    zip64 = max(zi.file_size, zi.compress_size) > zipfile.ZIP64_LIMIT
    out.fp.seek(out.start_dir)
    zi.header_offset = out.fp.tell()
    out.fp.write(zi.FileHeader(zip64))
    zf.fp.seek(info.header_offset + _LOCAL_HEADER_SIZE + name_len + extra_len)
    left = info.compress_size
    tail = b""  # the last bytes of the previous chunk: a signature may straddle two
    while left:
        chunk = zf.fp.read(min(left, CHUNK))
        if not chunk:
            raise EOFError(f"member {info.filename!r} is cut short")
        if LOCAL_SIGNATURE in chunk or LOCAL_SIGNATURE in tail + chunk[:3]:
            # A reader that reads the archive as a stream (bsdtar from a pipe, say)
            # finds the end of a member written with a data descriptor by scanning
            # for the descriptor: a fake one there, then a local header, and it reads
            # a member of the attacker's, never disarmed, out of these bytes.
            raise _Refused(
                f"password-protected member {info.filename!r} holds a zip local header "
                "signature in its data: a reader reading the archive as a stream could "
                "take what follows for another member"
            )
        tail = chunk[-3:]
        out.fp.write(chunk)
        left -= len(chunk)
    if zi.flag_bits & FLAG_DESCRIPTOR:
        descriptor = "<4sLQQ" if zip64 else "<4sLLL"
        out.fp.write(struct.pack(descriptor, b"PK\x07\x08", zi.CRC, zi.compress_size, zi.file_size))
    out.filelist.append(zi)
    out.NameToInfo[zi.filename] = zi
    out.start_dir = out.fp.tell()
    out._didModify = True


def _aes_extra(extra: bytes) -> bytes:
    """The WinZip AES extra field (0x9901: vendor version, "AE", key strength, the
    real compression method) of a member's central extra fields, or b""."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        if tag == AES_EXTRA and size == 7 and extra[at + 6 : at + 8] == b"AE":
            return extra[at : at + 4 + size]
        at += 4 + size
    return b""


def _write_file(
    out: zipfile.ZipFile, name: str, date_time: tuple[int, int, int, int, int, int], data: Path
) -> None:
    zi = zipfile.ZipInfo(name, date_time)
    with open(data, "rb") as reader:
        head = reader.read(12)
    zi.compress_type = zipfile.ZIP_STORED if _compressed(head) else zipfile.ZIP_DEFLATED
    # (ZipFile.open(zinfo, "w") compresses at the ZipInfo's own level, which only this
    # attribute sets in Python 3.11; 3.13 also names it compress_level)
    zi._compresslevel = COMPRESS_LEVEL
    zi.external_attr = (stat.S_IFREG | 0o644) << 16  # a plain file, no exec or set-id bits
    zi.file_size = data.stat().st_size  # lets zipfile choose zip64 up front when needed
    with open(data, "rb") as reader, out.open(zi, "w") as writer:
        shutil.copyfileobj(reader, writer, CHUNK)


#: Formats whose data is compressed already: deflating them again costs as much as
#: any other data for a percent or two (zip archives and OOXML, JPEG, PNG, GIF, WebP,
#: gzip, 7z, rar).
_COMPRESSED_MAGIC = (
    b"PK\x03\x04",
    b"PK\x05\x06",
    b"\xff\xd8\xff",
    b"\x89PNG",
    b"GIF8",
    b"\x1f\x8b",
    b"7z\xbc\xaf",
    b"Rar!",
)


def _compressed(head: bytes) -> bool:
    return head.startswith(_COMPRESSED_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _names(names: list[str], most: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
