"""Header blocks: ICAP and encapsulated HTTP share the same MIME-style syntax."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from gicap.protocol.errors import ICAPProtocolError

# RFC 9110 token characters.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class Headers:
    """An ordered header list with case-insensitive lookup.

    Order and original casing are kept because encapsulated HTTP headers are
    passed back to the proxy and should come back as they were sent.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        low = name.lower()
        return any(n.lower() == low for n, _ in self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first header called ``name``."""
        low = name.lower()
        for n, v in self._items:
            if n.lower() == low:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for n, v in self._items if n.lower() == low]

    def get_list(self, name: str) -> list[str]:
        """Comma-list values of every header called ``name``, lower-cased and trimmed."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(p.strip().lower() for p in value.split(",") if p.strip())
        return out

    def has_token(self, name: str, token: str) -> bool:
        return token.lower() in self.get_list(name)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every header called ``name`` by one with ``value``."""
        self.remove(name)
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        low = name.lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != low]

    def copy(self) -> Headers:
        return Headers(self._items)

    def encode(self) -> bytes:
        """Serialise as header lines, each ending in CRLF (no blank line)."""
        return b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in self._items)


def is_token(name: bytes) -> bool:
    return _TOKEN.fullmatch(name) is not None


def parse_header_lines(lines: list[bytes]) -> Headers:
    """Parse header lines (without their CRLF). Obsolete line folding is joined."""
    items: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not items:
                raise ICAPProtocolError("header block starts with a continuation line")
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ICAPProtocolError(f"header line without a colon: {line[:60]!r}")
        if not is_token(name):
            raise ICAPProtocolError(f"invalid header name: {name[:60]!r}")
        items.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return Headers(items)


def split_lines(block: bytes) -> list[bytes]:
    """Split a header block on CRLF (bare LF tolerated), dropping the final empty lines."""
    lines = block.split(b"\n")
    out = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    while out and out[-1] == b"":
        out.pop()
    return out
