"""Events produced by :class:`gicap.protocol.connection.ICAPConnection` and the
response object it serialises. Small dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

from gicap.protocol.encapsulated import Encapsulated
from gicap.protocol.errors import ICAPProtocolError
from gicap.protocol.headers import Headers
from gicap.protocol.http import HTTPRequestHead, HTTPResponseHead


@lru_cache(maxsize=1024)
def parse_icap_uri(uri: str) -> tuple[str, str, str, str]:
    """(scheme, host, service, query) of an ICAP URI."""
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ICAPProtocolError(f"request URI {uri!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("icap", "icaps") or not parts.netloc:
        raise ICAPProtocolError(f"request URI is not an icap:// or icaps:// URI: {uri!r}")
    # Route by path only: proxies may call us by any alias or IP address.
    return scheme, hostname or "", parts.path.strip("/"), parts.query


@dataclass
class RequestHead:
    """An ICAP request's line, headers and encapsulated HTTP headers; the body follows."""

    method: str
    uri: str
    version: str
    headers: Headers
    encapsulated: Encapsulated | None
    http_request: HTTPRequestHead | None = None
    http_response: HTTPResponseHead | None = None
    preview: int | None = None
    scheme: str = field(init=False)
    host: str = field(init=False)
    service: str = field(init=False)
    query: str = field(init=False)

    def __post_init__(self) -> None:
        self.scheme, self.host, self.service, self.query = parse_icap_uri(self.uri)

    @property
    def has_body(self) -> bool:
        return self.encapsulated is not None and self.encapsulated.has_body

    @property
    def allow_204(self) -> bool:
        return self.headers.has_token("Allow", "204")

    @property
    def allow_206(self) -> bool:
        return self.headers.has_token("Allow", "206")


@dataclass(frozen=True)
class BodyData:
    """A piece of the encapsulated body, de-chunked. ``preview`` marks preview bytes."""

    data: bytes
    preview: bool = False


@dataclass(frozen=True)
class PreviewEnd:
    """The preview is over. ``ieof``: the whole body was in the preview."""

    ieof: bool


@dataclass(frozen=True)
class EndOfMessage:
    """The request is complete. ``trailers`` holds any headers after the last chunk."""

    trailers: Headers = field(default_factory=Headers)


@dataclass(frozen=True)
class ConnectionClosed:
    """The client closed its side; ``clean`` is false when a request was cut short."""

    clean: bool = True


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: No complete event yet; feed more bytes.
NEED_DATA = _Sentinel("NEED_DATA")
#: The connection waits for us: answer the preview, or finish the current response.
PAUSED = _Sentinel("PAUSED")

Event = RequestHead | BodyData | PreviewEnd | EndOfMessage | ConnectionClosed


@dataclass
class ICAPResponse:
    """A response to serialise. Encapsulated HTTP parts may be heads or raw bytes."""

    status: int
    headers: Headers = field(default_factory=Headers)
    http_request: HTTPRequestHead | bytes | None = None
    http_response: HTTPResponseHead | bytes | None = None
    has_body: bool = False
    reason: str | None = None
    #: For OPTIONS answers the body entity is named opt-body.
    options: bool = False
