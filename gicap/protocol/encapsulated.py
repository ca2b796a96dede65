"""The ``Encapsulated`` header: which HTTP parts a message carries and where.

RFC 3507 §4.4.1: a comma list of ``name=offset``; offsets strictly increasing from 0,
exactly one body entity (``req-body``, ``res-body``, ``opt-body`` or ``null-body``) and
it comes last.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from gicap.protocol.errors import ICAPProtocolError

HEADER_ENTITIES = ("req-hdr", "res-hdr")
BODY_ENTITIES = ("req-body", "res-body", "opt-body", "null-body")

# Which entities each method may carry, in the order they must appear.
_ALLOWED = {
    "REQMOD": ({"req-hdr"}, {"req-body", "null-body"}),
    "RESPMOD": ({"req-hdr", "res-hdr"}, {"res-body", "null-body"}),
    "OPTIONS": (set(), {"opt-body", "null-body"}),
}


@dataclass(frozen=True)
class Encapsulated:
    """Parsed offsets. ``body`` is the body entity name, ``body_offset`` where it starts."""

    entities: tuple[tuple[str, int], ...]

    @property
    def body(self) -> str:
        return self.entities[-1][0] if self.entities else "null-body"

    @property
    def body_offset(self) -> int:
        return self.entities[-1][1] if self.entities else 0

    @property
    def has_body(self) -> bool:
        return self.body != "null-body"

    def offset(self, name: str) -> int | None:
        for n, off in self.entities:
            if n == name:
                return off
        return None

    def slices(self) -> list[tuple[str, int, int]]:
        """Header entities as ``(name, start, end)`` within the header bytes."""
        out = []
        for (name, start), (_, end) in zip(self.entities, self.entities[1:], strict=False):
            out.append((name, start, end))
        return out


# Proxies send the same few layouts again and again; results are immutable.
@lru_cache(maxsize=1024)
def parse_encapsulated(value: str, method: str) -> Encapsulated:
    entities: list[tuple[str, int]] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, off = part.partition("=")
        name = name.strip().lower()
        off = off.strip()
        if not sep or not (off.isascii() and off.isdigit()):
            raise ICAPProtocolError(f"malformed Encapsulated entry {part!r}")
        if name not in HEADER_ENTITIES and name not in BODY_ENTITIES:
            raise ICAPProtocolError(f"unknown Encapsulated entity {name!r}")
        entities.append((name, int(off)))
    if not entities:
        raise ICAPProtocolError("empty Encapsulated header")
    names = [n for n, _ in entities]
    if len(set(names)) != len(names):
        raise ICAPProtocolError("Encapsulated names an entity twice")
    if entities[0][1] != 0:
        raise ICAPProtocolError("Encapsulated offsets must start at 0")
    for (_, a), (_, b) in zip(entities, entities[1:], strict=False):
        if b <= a:
            raise ICAPProtocolError("Encapsulated offsets must be strictly increasing")
    bodies = [n for n in names if n in BODY_ENTITIES]
    if len(bodies) != 1 or names[-1] not in BODY_ENTITIES:
        raise ICAPProtocolError("Encapsulated needs exactly one body entity, and it must be last")
    allowed = _ALLOWED.get(method)
    if allowed is not None:
        headers_ok, bodies_ok = allowed
        if not set(names[:-1]) <= headers_ok or names[-1] not in bodies_ok:
            raise ICAPProtocolError(f"Encapsulated {value!r} is not valid for {method}")
        if names[:-1] == ["res-hdr", "req-hdr"]:
            raise ICAPProtocolError("Encapsulated: req-hdr must come before res-hdr")
    return Encapsulated(tuple(entities))


def format_encapsulated(parts: list[tuple[str, int]], body: str) -> tuple[str, int]:
    """Build the header value from header parts ``(name, length)`` and the body name.

    Returns the value and the total length of the header parts.
    """
    offset = 0
    items = []
    for name, length in parts:
        items.append(f"{name}={offset}")
        offset += length
    items.append(f"{body}={offset}")
    return ", ".join(items), offset
