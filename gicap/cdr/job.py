"""The disarm job: what runs inside an isolated worker process for one file.

Everything that parses untrusted bytes happens here, away from the event loop:
undoing ``Content-Encoding``, detecting the type (looking into containers), and the
engine plugin's rebuild. The parent only moves files and reads the small result.
"""

from __future__ import annotations

import copy
import gc
import logging
import os
import zlib
from pathlib import Path
from types import EllipsisType
from typing import Any

from gicap.cdr.detect import mismatch, opened_as
from gicap.cdr.files import read_bytes
from gicap.cdr.policy import Profile, build_profile
from gicap.cdr.types import Action, DisarmRequest, DisarmResult, FileType
from gicap.plugins import PluginHost, create_plugin_host

log = logging.getLogger("gicap.cdr")

_host: PluginHost | None = None
READ = 1024 * 1024
HEAD_BYTES = 64 * 1024


def init_worker() -> None:
    """Load the plugins once per worker process, then move everything loaded so far
    (the plugins and their libraries: ~100k objects) out of the garbage collector's
    sight: they live as long as the process, and a full collection would otherwise
    walk them all again while a job waits."""
    global _host
    _host = create_plugin_host()
    gc.collect()
    gc.freeze()


def _plugins() -> PluginHost:
    global _host
    if _host is None:
        _host = create_plugin_host()
    return _host


class _TooLarge(Exception):
    pass


def _brotli_out(dec: Any, data: bytes, out: Any, total: int, limit: int) -> int:
    """Feed ``data`` to a brotli decoder and write what it gives, ``READ`` bytes at a
    time (then with empty input while output is pending); the new total, refused past
    ``limit``."""
    piece = dec.process(data, output_buffer_limit=READ)
    while piece:
        total += len(piece)
        if total > limit:
            raise _TooLarge
        out.write(piece)
        piece = dec.process(b"", output_buffer_limit=READ)
    return total


def decode_content(source: Path, dest: Path, encoding: str, limit: int) -> None:
    """Undo an HTTP Content-Encoding into ``dest``; refuse output beyond ``limit``."""
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        dec: Any = zlib.decompressobj(wbits=31)
    elif encoding == "deflate":
        # RFC 9110 deflate is zlib-wrapped; some servers send raw deflate.
        with open(source, "rb") as f:
            first = f.read(2)
        zlib_header = len(first) == 2 and (first[0] * 256 + first[1]) % 31 == 0
        dec = zlib.decompressobj(wbits=15 if zlib_header else -15)
    elif encoding == "br":
        import brotli

        dec = brotli.Decompressor()
    else:
        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
    total = 0
    with open(source, "rb") as src, open(dest, "wb") as out:
        while data := src.read(READ):
            if encoding == "br":
                # Bounded too (one process() call of 809 bytes made 1 GiB): what is
                # pending is drained with empty input until none is left.
                chunks = []
                total = _brotli_out(dec, data, out, total, limit)
            else:
                chunks = []
                # max_length keeps a decompression bomb from expanding in one call.
                piece = dec.decompress(data, READ)
                chunks.append(piece)
                while dec.unconsumed_tail:
                    chunks.append(dec.decompress(dec.unconsumed_tail, READ))
                    total += sum(len(c) for c in chunks)
                    if total > limit:
                        raise _TooLarge
                    for c in chunks:
                        out.write(c)
                    chunks = []
            for c in chunks:
                total += len(c)
                if total > limit:
                    raise _TooLarge
                out.write(c)
        if encoding != "br":
            rest = dec.flush()
            total += len(rest)
            if total > limit:
                raise _TooLarge
            out.write(rest)
            # Clients differ past the end of the stream (Python, Go and .NET decode a
            # second gzip member, browsers do not): what only some would read is
            # never relayed undecoded. (Zero bytes after it pad the file: gzip(1) and
            # Python skip them.)
            if dec.unused_data.strip(b"\x00"):
                raise ValueError("data after the end of the compressed stream")
            if not dec.eof:
                raise ValueError("the compressed stream is cut short")
        else:
            total = _brotli_out(dec, b"", out, total, limit)
            if not dec.is_finished():
                raise ValueError("the compressed stream is cut short")


def detect(path: Path, declared: str | None) -> FileType | None:
    head = read_bytes(path, HEAD_BYTES)
    return _plugins().manager.hook.gicap_detect_file_type(
        head=head, path=str(path), declared=declared
    )


def disarm_file(
    source: Path,
    dest: Path,
    profile_data: dict[str, Any],
    profile_name: str,
    declared: str | None,
    max_file_size: int,
    depth: int = 0,
    opened: str | None | EllipsisType = ...,
) -> dict[str, Any]:
    """Detect and disarm one file; the answer is plain data for the parent.
    ``opened``: the type of text the file is opened as (``detect.opened_as``), when
    the caller knows better than ``declared`` tells (a download saved under one of
    several names, or a page's image); by default, what ``declared`` names."""
    profile = _profile(profile_name, profile_data)
    if opened is ...:
        opened = opened_as(declared)
    return _disarm(source, dest, profile, profile_name, declared, max_file_size, depth, opened)


#: The last profile built in this worker, with a copy of the data it was built from:
#: jobs nearly always bring the same profile, and comparing the data is ~40 times
#: cheaper than validating and building it again.
_last_profile: tuple[str, dict[str, Any], Profile] | None = None


def _profile(name: str, data: dict[str, Any]) -> Profile:
    global _last_profile
    if _last_profile is not None and _last_profile[0] == name and _last_profile[1] == data:
        return _last_profile[2]
    # (the plugins' switches from this worker's own host: no second one is loaded)
    profile = build_profile(name, data, _plugins().policy_switches())
    _last_profile = (name, copy.deepcopy(data), profile)
    return profile


def _disarm(
    source: Path,
    dest: Path,
    profile: Profile,
    profile_name: str,
    declared: str | None,
    max_file_size: int,
    depth: int,
    opened: str | None,
) -> dict[str, Any]:
    """One file (the top-level one or an archive member) under a profile built once
    per job."""
    ftype = detect(source, declared)
    if ftype is None:
        return {"outcome": "unsupported", "reason": "file type not recognised"}
    if mismatch(ftype.name, opened):
        # (a rebuilt picture or archive keeps bytes of the attacker's choosing: pixels,
        # member names; named so, the desktop reads them as that text)
        return {
            "outcome": "blocked",
            "file_type": _ft(ftype),
            "reason": f"the content is a {ftype.name} file but it is named or served as "
            f"{opened}, and opened as {opened} whatever it holds",
        }
    limits = dict(profile.archive)
    limits["max_file_size"] = max_file_size

    def member(src: Path, dst: Path, member_depth: int) -> DisarmResult:
        # The container engine names ``src`` with the member's extension: a hint that
        # breaks ties (a short .csv is not plain text), never decides alone.
        answer = _disarm(
            src,
            dst,
            profile,
            profile_name,
            src.name,
            max_file_size,
            member_depth,
            opened_as(src.name),
        )
        return _result_from_dict(answer)

    request = DisarmRequest(
        file_type=ftype,
        source=source,
        destination=dest,
        switches=profile.family_switches(ftype.family),
        limits=limits,
        profile=profile_name,
        depth=depth,
        disarm_member=member,
        fallbacks=dict(profile.fallbacks),
    )
    try:
        result = _plugins().manager.hook.gicap_disarm(request=request)
    except MemoryError:
        raise
    except Exception as exc:  # an engine failing on a file makes the file unprocessable
        log.warning("engine failed on %s: %r", ftype.name, exc)
        return {
            "outcome": "unprocessable",
            "file_type": _ft(ftype),
            "reason": _without_paths(f"the {ftype.name} engine failed: {exc}", source, dest),
        }
    if result is None:
        return {
            "outcome": "unsupported",
            "file_type": _ft(ftype),
            "reason": f"no engine handles {ftype.name} files",
        }
    return {
        "outcome": result.outcome,
        "file_type": _ft(ftype),
        "output_type": _ft(result.output_type) if result.output_type else None,
        "reason": _without_paths(result.reason, source, dest),
        "actions": [
            {"switch": a.switch, "action": a.action, "detail": a.detail} for a in result.actions
        ],
    }


def _without_paths(reason: str, *paths: Path) -> str:
    """An engine's reason without the server's own file names (the library messages
    it quotes name them; the reason reaches the user's block page)."""
    if not reason:
        return reason
    for path in paths:
        parent = str(path.parent)
        if parent not in reason:  # (nor then the file's name, which starts with it)
            continue
        for name in (str(path), parent):
            reason = reason.replace(name + ": ", "").replace(name, "the file")
    return reason


def _ft(ftype: FileType) -> dict[str, str]:
    return {
        "name": ftype.name,
        "family": ftype.family,
        "mime": ftype.mime,
        "extension": ftype.extension,
    }


def _result_from_dict(d: dict[str, Any]) -> DisarmResult:
    outcome = d["outcome"]
    case = ""
    if outcome not in ("rebuilt", "unmodified", "blocked"):
        # The profile fallback case, as the CDR service maps a top-level outcome: the
        # container engine applies the fallback for it (relay keeps the member).
        case = outcome if outcome in ("unsupported", "encrypted", "oversize") else "unprocessable"
        if outcome != "encrypted":
            outcome = "unprocessable"  # unsupported or oversize are not engine outcomes
    out = d.get("output_type")
    return DisarmResult(
        outcome=outcome,
        actions=[
            Action(a["switch"], a["action"], a.get("detail", "")) for a in d.get("actions", [])
        ],
        reason=d.get("reason", ""),
        output_type=FileType(**out) if out else None,
        fallback_case=case,
    )


def run_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Entry point of a disarm job (see :class:`gicap.cdr.runner.CDRRunner`)."""
    source = Path(payload["source"])
    dest = Path(payload["dest"])
    limit = int(payload["max_file_size"])
    encoding = payload.get("encoding")
    decoded = False
    if encoding and encoding.lower() != "identity":
        plain = dest.with_suffix(".decoded")
        try:
            decode_content(source, plain, encoding, limit)
        except _TooLarge:
            return {"outcome": "oversize", "reason": f"larger than {limit} bytes once decoded"}
        except Exception as exc:  # any decoder failure means the body cannot be read
            return {
                "outcome": "unprocessable",
                "reason": f"cannot undo Content-Encoding {encoding}: {exc}",
            }
        source = plain
        decoded = True
    if os.path.getsize(source) > limit:
        return {"outcome": "oversize", "reason": f"larger than {limit} bytes"}
    answer = disarm_file(
        source,
        dest,
        payload["profile"],
        payload["profile_name"],
        payload.get("declared"),
        limit,
        opened=payload.get("opened", ...),
    )
    answer["decoded"] = decoded
    answer["decoded_path"] = str(source) if decoded else ""
    return answer
