"""Replay a client's bytes into an ICAPConnection whole, byte by byte or in random
fragments, and collect the events a server would see."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from gicap.protocol import (
    NEED_DATA,
    PAUSED,
    BodyData,
    ConnectionClosed,
    EndOfMessage,
    Headers,
    ICAPConnection,
    ICAPResponse,
    PreviewEnd,
    RecvState,
    RequestHead,
)

MODES = ["whole", "bytewise", "random"]


def fragments(data: bytes, mode: str, seed: int = 0) -> Iterator[bytes]:
    if mode == "whole":
        yield data
    elif mode == "bytewise":
        for i in range(len(data)):
            yield data[i : i + 1]
    else:
        rng = random.Random(seed)
        i = 0
        while i < len(data):
            n = rng.randint(1, 17)
            yield data[i : i + n]
            i += n


def echo_answer(conn: ICAPConnection, head: RequestHead, body: bytes) -> bytes:
    resp = ICAPResponse(
        200, Headers([("ISTag", '"t"')]), http_response=head.http_response, has_body=True
    )
    return conn.send_response(resp) + conn.send_data(body) + conn.send_end()


def replay(
    data: bytes,
    mode: str = "whole",
    *,
    seed: int = 0,
    on_preview: Callable[[ICAPConnection, PreviewEnd], bytes] | None = None,
    conn: ICAPConnection | None = None,
    eof: bool = True,
) -> tuple[list[object], bytes]:
    """Feed ``data``; answer each complete request with an echo 200. Returns the events
    and the bytes the server would have sent. ``on_preview`` decides after a preview
    without ieof (default: 100 Continue)."""
    conn = conn or ICAPConnection()
    events: list[object] = []
    sent = bytearray()
    body = bytearray()
    head: RequestHead | None = None

    def pump() -> bool:
        nonlocal head
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA:
                return True
            if ev is PAUSED:
                if conn.recv_state is RecvState.PREVIEW_WAIT:
                    assert isinstance(events[-1], PreviewEnd)
                    if on_preview is None:
                        sent.extend(conn.send_continue())
                    else:
                        sent.extend(on_preview(conn, events[-1]))
                    continue
                if conn.recv_state is RecvState.DONE and not conn.response_done:
                    assert head is not None
                    sent.extend(echo_answer(conn, head, bytes(body)))
                    continue
                return True
            events.append(ev)
            if isinstance(ev, RequestHead):
                head = ev
                body.clear()
            elif isinstance(ev, BodyData):
                body.extend(ev.data)
            elif isinstance(ev, EndOfMessage):
                if not conn.response_done:
                    assert head is not None
                    sent.extend(echo_answer(conn, head, bytes(body)))
            elif isinstance(ev, ConnectionClosed):
                return False

    for piece in fragments(data, mode, seed):
        conn.receive_data(piece)
        if not pump():
            break
    if eof and conn.recv_state is not RecvState.CLOSED:
        conn.receive_data(b"")
        pump()
    return events, bytes(sent)


def merged(events: list[object]) -> list[object]:
    """Join consecutive BodyData of the same kind so fragmentations compare equal."""
    out: list[object] = []
    for ev in events:
        if (
            isinstance(ev, BodyData)
            and out
            and isinstance(out[-1], BodyData)
            and out[-1].preview == ev.preview
        ):
            out[-1] = BodyData(out[-1].data + ev.data, ev.preview)
        else:
            out.append(ev)
    return out
