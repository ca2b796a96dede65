"""What a service is, and what it answers.

A service sees a :class:`Transaction` (the request's heads, the preview bytes and,
once read, the whole body) and returns an outcome: :class:`Unmodified` (the server
answers 204 when the client allows it, otherwise the original message) or
:class:`Modified` (new HTTP heads and/or a new body). The server does all I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from gicap import __version__

if TYPE_CHECKING:
    from gicap.protocol import HTTPRequestHead, HTTPResponseHead, RequestHead
    from gicap.server.spool import Spool


@dataclass
class Transaction:
    head: RequestHead
    #: The preview bytes (empty without a preview), the first ``PREVIEW_KEPT`` of them
    #: at most (a client may send a preview of any size: the rest is in the body).
    preview: bytes = b""
    #: Whether the preview is the whole body (the client's ``ieof``).
    preview_complete: bool = False
    #: The whole body once it has been read (None before, or for null-body).
    body: Spool | None = None
    client_address: str = ""
    secure: bool = False
    client_identity: tuple[str, ...] = ()
    #: Extra fields for this transaction's log line (``key=value`` in the text log,
    #: keys in the JSON log): strings, numbers, or a dict such as the actions per switch.
    #: ``outcome`` and ``type`` also label the transaction metrics; ``cdr_ms`` feeds
    #: the CDR duration histogram.
    log_fields: dict[str, Any] = field(default_factory=dict)


#: The most preview bytes a transaction keeps (what file type detection reads).
PREVIEW_KEPT = 64 * 1024


@dataclass(frozen=True)
class Unmodified:
    """Leave the message as it is."""


@dataclass
class Modified:
    """Replace parts of the message. ``body``: bytes, an iterable of bytes or a file."""

    http_request: HTTPRequestHead | None = None
    http_response: HTTPResponseHead | None = None
    body: bytes | Iterable[bytes] | BinaryIO | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refused:
    """Answer with an ICAP error status (e.g. 400 for an unknown policy profile)."""

    status: int
    reason: str


Outcome = Unmodified | Modified | Refused


class Service:
    """Base class for services. Subclasses set ``name`` and ``method``."""

    name: str = ""
    #: "REQMOD" or "RESPMOD": one method per service (RFC 3507 §4.10.2).
    method: str = "RESPMOD"
    description: str = ""
    #: Whether to ask clients for a preview (OPTIONS ``Preview:``).
    wants_preview: bool = True

    def start(self) -> None:
        """Called in each worker process before it serves (start helper processes here)."""

    def stop(self) -> None:
        """Called when the worker process stops."""

    def check_request(self, head: RequestHead) -> Refused | None:
        """Refuse a request from its head alone (OPTIONS included); ``None`` accepts it."""
        return None

    def config_fingerprint(self) -> str:
        """Text that changes whenever this service's behaviour or configuration does."""
        return ""

    def istag(self) -> str:
        """Stable ISTag: changes only when gicap, the service or its configuration does."""
        cached: str | None = self.__dict__.get("_istag")
        if cached is None:
            cached = self.__dict__["_istag"] = self._compute_istag()
        return cached

    def _compute_istag(self) -> str:
        material = "|".join(
            [
                __version__,
                type(self).__module__,
                type(self).__qualname__,
                self.name,
                self.config_fingerprint(),
            ]
        )
        return '"' + hashlib.sha256(material.encode()).hexdigest()[:30] + '"'

    def body_limit(self, txn: Transaction) -> int | None:
        """The most body bytes worth keeping for this transaction (None: all of it).
        Past it the body is read to its end but not kept (``txn.body.overflowed``):
        a service that refuses such a body whatever it holds needs no disk for it."""
        return None

    def body_over_limit(self, txn: Transaction, head: bytes) -> bool:
        """Called once the body passes ``body_limit``, with its first bytes: True drops
        it (counted, not kept), False keeps it whole after all."""
        return True

    def early(self, txn: Transaction) -> Outcome | None:
        """Decide from the heads alone, before any body, when there is no preview.

        Returning :class:`Unmodified` streams the message back as it arrives (what a
        proxy needs for large bodies it will not buffer). ``None``: read the body.
        """
        return None

    def on_preview(self, txn: Transaction) -> Outcome | None:
        """Decide from the preview. ``None`` asks for the rest of the body."""
        return None

    def respond(self, txn: Transaction) -> Outcome:
        """Answer once the whole message has been received."""
        raise NotImplementedError
