"""Multipart uploads (multipart/form-data, multipart/mixed...): split into parts so
each file part is disarmed on its own, then joined again with the same boundary."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gicap.cdr.detect import file_names
from gicap.protocol.errors import ICAPProtocolError
from gicap.protocol.headers import Headers, parse_header_lines, split_lines

#: One parameter of a Content-Type: "; name=value" (the value a token or quoted).
_CONTENT_TYPE_PARAMETER = re.compile(r'\s*;\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;"]*))\s*')
#: Multipart parts inside multipart parts, at most (multipart/mixed in a form).
MAX_DEPTH = 3
#: Parts one upload may hold, nested ones included (a form's fields are parts: PHP
#: reads 1,000 of them by default).
MAX_PARTS = 10_000
_PARAM = re.compile(r'(\w+)\*?\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))')


class MultipartError(ValueError):
    pass


@dataclass
class Part:
    raw_headers: bytes  # the header block of the part, as sent (without the blank line)
    headers: Headers
    content: bytes

    @property
    def filename(self) -> str | None:
        disposition = self.headers.get("Content-Disposition") or ""
        params = {
            m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _PARAM.finditer(disposition)
        }
        return params.get("filename")

    @property
    def filenames(self) -> list[str]:
        """Every name the part may be stored under (``filename*`` and ``filename``,
        each one given, encodings decoded: see ``gicap.cdr.detect.file_names``)."""
        disposition = self.headers.get("Content-Disposition") or ""
        names = file_names(disposition)
        return names or ([self.filename] if self.filename is not None else [])

    @property
    def is_file(self) -> bool:
        """A part a server stores as a file: one with a name (``filename*0=`` alone
        too: Go reads it)."""
        return bool(self.filenames)


@dataclass
class Multipart:
    boundary: bytes
    preamble: bytes
    parts: list[Part]
    epilogue: bytes

    def encode(self) -> bytes:
        delimiter = b"--" + self.boundary
        out = [self.preamble, delimiter]
        for part in self.parts:
            out.append(
                b"\r\n" + part.raw_headers + b"\r\n\r\n" + part.content + b"\r\n" + delimiter
            )
        out.append(b"--" + self.epilogue)
        return b"".join(out)


def is_multipart(content_type: str | None) -> bool:
    """Whether a body of this Content-Type is made of parts (any multipart/ type:
    servers split multipart/mixed uploads as they split forms)."""
    return bool(content_type) and content_type.strip().lower().startswith("multipart/")


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart Content-Type, its parameters read one by one.
    Refused when servers could take another: a second boundary, a parameter whose
    name ends in "boundary" or whose value holds "boundary=" (one finding the text
    "boundary=" anywhere took "xboundary=A; boundary=B" for A)."""
    value = content_type or ""
    pos = value.find(";")
    found: list[str] = []
    while 0 <= pos < len(value):
        if not value[pos:].strip(" \t;"):
            break  # (a trailing ";": servers ignore it)
        m = _CONTENT_TYPE_PARAMETER.match(value, pos)
        if m is None:
            raise MultipartError(f"malformed Content-Type parameters: {value!r}")
        name = m.group(1).lower()
        quoted, token = m.group(2), m.group(3)
        text = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else token.strip()
        if name == "boundary":
            found.append(text)
        elif name.split("*", 1)[0].endswith("boundary") or "boundary=" in text.lower():
            # (boundary*0=: Go joins RFC 2231 continuations into the boundary)
            raise MultipartError(f"ambiguous boundary parameters: {value!r}")
        pos = m.end()
    if len(found) != 1 or not found[0]:
        what = "no boundary" if not found or not found[0] else "several boundaries"
        raise MultipartError(f"multipart Content-Type with {what}: {value!r}")
    return found[0].encode("latin-1", "replace")


def parse(body: bytes, boundary: bytes, max_parts: int = MAX_PARTS) -> Multipart:
    """The parts of a multipart body; more than ``max_parts`` are refused as they are
    met (500,000 empty parts in 7 MB held the event loop for 7 s)."""
    delimiter = b"--" + boundary
    first = body.find(delimiter)
    if first < 0:
        raise MultipartError("multipart body without its boundary")
    preamble = body[:first]
    pos = first + len(delimiter)
    parts: list[Part] = []
    while True:
        if body[pos : pos + 2] == b"--":
            return Multipart(boundary, preamble, parts, body[pos + 2 :])
        if body[pos : pos + 2] != b"\r\n":
            raise MultipartError("malformed multipart delimiter line")
        pos += 2
        end = body.find(b"\r\n" + delimiter, pos)
        if end < 0:
            raise MultipartError("multipart body is not terminated")
        chunk = body[pos:end]
        head_end = chunk.find(b"\r\n\r\n")
        if head_end < 0:
            raw_headers, content = chunk, b""
            if chunk:
                raise MultipartError("multipart part without a header block")
        else:
            raw_headers, content = chunk[:head_end], chunk[head_end + 4 :]
        try:
            headers = (
                parse_header_lines(split_lines(raw_headers + b"\r\n")) if raw_headers else Headers()
            )
        except ICAPProtocolError as exc:
            # (servers read such a header block differently: PHP skips a line it cannot
            # read; refused, the policy decides, never an ICAP 400 a proxy may bypass)
            raise MultipartError(f"malformed part header: {exc}") from None
        for name in ("Content-Disposition", "Content-Type"):
            if len(headers.get_all(name)) > 1:
                # servers keep the first or the last: a file named in the second one
                # was hidden from the first reading
                raise MultipartError(f"a part with more than one {name} header")
        parts.append(Part(raw_headers, headers, content))
        if len(parts) > max_parts:
            raise MultipartError(f"more than {MAX_PARTS} parts in one upload")
        pos = end + 2 + len(delimiter)
