"""Errors raised by the sans-IO ICAP core.

Two kinds, as in h11: :class:`ICAPProtocolError` means the peer sent something
we cannot accept and carries the ICAP status to answer with; :class:`LocalProtocolError`
means our own code used the connection API wrongly (a bug, never the client's fault).
"""

from __future__ import annotations


class ICAPProtocolError(Exception):
    """The peer broke the protocol. ``status`` is the ICAP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LocalProtocolError(Exception):
    """We called the connection API in a state where that is not allowed."""
