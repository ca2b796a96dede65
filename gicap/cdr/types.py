"""The small, documented contract CDR plugins see (see ``gicap/hookspecs.py``).

Everything here is plain data so it can cross into the isolated worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: What a policy switch may say about one kind of active content.
SwitchValue = Literal["allow", "sanitise", "disallow"]
SWITCH_VALUES = ("allow", "sanitise", "disallow")

#: How one file ended.
#: rebuilt     - a new file was written to ``destination``
#: unmodified  - nothing needed removing; the original is delivered as it is
#: blocked     - content the policy disallows is present (``reason`` says what)
#: unprocessable - the file could not be parsed (malformed, bomb, unsupported variant)
#: encrypted   - the file is password-protected, so it cannot be inspected
Outcome = Literal["rebuilt", "unmodified", "blocked", "unprocessable", "encrypted"]


#: What a container does with a member that cannot be disarmed, when the request does
#: not say (the safe answer; the profile's ``fallbacks`` replace it in the pipeline).
DEFAULT_FALLBACKS: Mapping[str, str] = {
    "unsupported": "block",
    "unprocessable": "block",
    "encrypted": "block",
    "oversize": "block",
}


@dataclass(frozen=True)
class FileType:
    """A detected file type: ``name`` (e.g. "docx"), its policy ``family`` (e.g.
    "office"), the MIME type and usual extension."""

    name: str
    family: str
    mime: str
    extension: str


@dataclass(frozen=True)
class Action:
    """One thing done to a file, reported to the user and in the transaction log."""

    switch: str  # the policy switch, e.g. "javascript"
    action: Literal["removed", "kept", "blocked", "neutralised"]
    detail: str = ""


@dataclass
class DisarmRequest:
    """One file to disarm.

    ``switches`` is the policy of the file's family (``switch -> allow|sanitise|disallow``),
    ``limits`` holds numeric limits (``max_file_size`` and, for archives, ``max_depth``,
    ``max_members``, ``max_total_members``, ``max_expanded_bytes``, ``max_ratio``).
    ``disarm_member`` lets a
    container engine hand a member file back to the pipeline (detection, engine choice,
    policy) — it returns the member's :class:`DisarmResult`. ``fallbacks`` is the
    profile's answer (``relay`` | ``block``) for members that cannot be disarmed, per
    case (``unsupported``, ``unprocessable``, ``encrypted``, ``oversize``): a container
    engine keeps such a member on ``relay`` and blocks the container on ``block``.
    """

    file_type: FileType
    source: Path
    destination: Path
    switches: Mapping[str, str]
    limits: Mapping[str, int] = field(default_factory=dict)
    profile: str = "default"
    depth: int = 0
    disarm_member: Callable[[Path, Path, int], DisarmResult] | None = None
    fallbacks: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_FALLBACKS))


@dataclass
class DisarmResult:
    """What an engine did. With ``rebuilt`` the new file is at the request's destination.
    ``output_type`` is set when the type changed (a .docm rebuilt as .docx).

    ``fallback_case`` is only set by the pipeline on a member's result
    (``request.disarm_member``) that could not be disarmed: the profile fallback case
    that applies — ``unsupported`` (no engine, or type not recognised) and ``oversize``
    (both reported with outcome ``unprocessable``), ``unprocessable`` or ``encrypted``.
    """

    outcome: Outcome
    actions: list[Action] = field(default_factory=list)
    reason: str = ""
    output_type: FileType | None = None
    fallback_case: str = ""
