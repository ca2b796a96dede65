"""Sans-IO ICAP/1.0: bytes in, events out, bytes back. Imports no sockets and no gevent."""

from gicap.protocol.connection import REASONS, ICAPConnection, RecvState, SendState, http_date
from gicap.protocol.encapsulated import Encapsulated, format_encapsulated, parse_encapsulated
from gicap.protocol.errors import ICAPProtocolError, LocalProtocolError
from gicap.protocol.events import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ConnectionClosed,
    EndOfMessage,
    ICAPResponse,
    PreviewEnd,
    RequestHead,
)
from gicap.protocol.headers import Headers
from gicap.protocol.http import HTTPRequestHead, HTTPResponseHead

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "REASONS",
    "BodyData",
    "ConnectionClosed",
    "Encapsulated",
    "EndOfMessage",
    "HTTPRequestHead",
    "HTTPResponseHead",
    "Headers",
    "ICAPConnection",
    "ICAPProtocolError",
    "ICAPResponse",
    "LocalProtocolError",
    "PreviewEnd",
    "RecvState",
    "RequestHead",
    "SendState",
    "format_encapsulated",
    "http_date",
    "parse_encapsulated",
]
