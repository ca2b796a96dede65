"""The sans-IO core against every request-side and response-side fact in ICAP-NOTES,
each exchange replayed whole, byte by byte and in random fragments."""

from __future__ import annotations

import pytest

from gicap.protocol import (
    PAUSED,
    BodyData,
    ConnectionClosed,
    EndOfMessage,
    Headers,
    HTTPResponseHead,
    ICAPConnection,
    ICAPProtocolError,
    ICAPResponse,
    LocalProtocolError,
    PreviewEnd,
    RequestHead,
)
from tests.protocol.replay import MODES, merged, replay

REQ_HDR = b"GET /file.pdf HTTP/1.1\r\nHost: origin.example\r\n\r\n"
RES_HDR = b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: 999\r\n\r\n"


def chunked(*parts: bytes, last: bytes = b"0\r\n\r\n") -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + last


def respmod(
    body: bytes | None,
    *,
    headers: str = "",
    req: bool = True,
    res: bool = True,
    uri: str = "icap://icap.example:1344/echo",
) -> bytes:
    parts, offset, enc = b"", 0, []
    if req:
        enc.append(f"req-hdr={offset}")
        parts += REQ_HDR
        offset += len(REQ_HDR)
    if res:
        enc.append(f"res-hdr={offset}")
        parts += RES_HDR
        offset += len(RES_HDR)
    enc.append(f"{'res-body' if body is not None else 'null-body'}={offset}")
    head = (
        f"RESPMOD {uri} ICAP/1.0\r\nHost: icap.example\r\n{headers}"
        f"Encapsulated: {', '.join(enc)}\r\n\r\n"
    ).encode()
    return head + parts + (body or b"")


def reqmod(body: bytes | None, headers: str = "") -> bytes:
    enc = f"req-hdr=0, {'req-body' if body is not None else 'null-body'}={len(REQ_HDR)}"
    head = (
        f"REQMOD icap://icap.example/echo-req ICAP/1.0\r\nHost: icap.example\r\n{headers}"
        f"Encapsulated: {enc}\r\n\r\n"
    ).encode()
    return head + REQ_HDR + (body or b"")


def body_of(events: list[object]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, BodyData))


def kinds(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in merged(events)]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


# ------------------------------------------------------------------ request line
def test_respmod_is_parsed_with_both_http_heads(mode: str) -> None:
    events, sent = replay(respmod(chunked(b"hello ", b"world")), mode)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.version, head.service, head.scheme) == (
        "RESPMOD",
        "ICAP/1.0",
        "echo",
        "icap",
    )
    assert head.http_request is not None and head.http_request.target == "/file.pdf"
    assert head.http_response is not None and head.http_response.status == 200
    assert head.http_response.headers.get("content-type") == "application/pdf"
    assert body_of(events) == b"hello world"
    assert kinds(events) == ["RequestHead", "BodyData", "EndOfMessage", "ConnectionClosed"]
    assert sent.startswith(b"ICAP/1.0 200 OK\r\n")


def test_icaps_uri_any_host_and_query_route_by_path() -> None:
    data = respmod(None, uri="icaps://10.1.2.3:11344/resp-cdr-service?profile=strict")
    head = replay(data)[0][0]
    assert isinstance(head, RequestHead)
    assert head.scheme == "icaps"
    assert head.service == "resp-cdr-service"
    assert head.query == "profile=strict"


def test_header_names_case_insensitive_and_comma_lists() -> None:
    data = respmod(chunked(b"x"), headers="aLLoW: 204, trailers\r\nallow: 206\r\n")
    head = replay(data)[0][0]
    assert isinstance(head, RequestHead)
    assert head.allow_204 and head.allow_206
    assert head.headers.get("ALLOW") == "204, trailers"


@pytest.mark.parametrize(
    "line,status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"RESPMOD icap://h/echo\r\n\r\n", 400),
        (b"FOO icap://h/echo ICAP/1.0\r\n\r\n", 501),
        (b"RESPMOD icap://h/echo ICAP/2.0\r\nEncapsulated: null-body=0\r\n\r\n", 505),
        (b"RESPMOD icap://h/echo HTTP/1.1\r\n\r\n", 400),
        (b"RESPMOD http://h/echo ICAP/1.0\r\nEncapsulated: null-body=0\r\n\r\n", 400),
        (b"RESPMOD icap://h/echo ICAP/1.0\r\nBad Header\r\n\r\n", 400),
        (b"RESPMOD icap://h/echo ICAP/1.0\r\nHost: h\r\n\r\n", 400),  # no Encapsulated
        # (urlsplit raises ValueError: it was a 500 with a logged traceback)
        (b"OPTIONS icap://[::1/echo ICAP/1.0\r\nEncapsulated: null-body=0\r\n\r\n", 400),
        # a head ended by bare LFs is refused, not waited on for a CRLF CRLF
        (b"OPTIONS icap://h/echo ICAP/1.0\nEncapsulated: null-body=0\n\n", 400),
        (b"OPTIONS icap://h/echo ICAP/1.0\r\nHost: h\n\n", 400),
        # a TLS ClientHello (an icaps:// client on the plain port): said at once
        (bytes.fromhex("16030102000100 01fc0303"), 400),
    ],
)
def test_malformed_requests_carry_their_status(line: bytes, status: int, mode: str) -> None:
    with pytest.raises(ICAPProtocolError) as info:
        replay(line, mode)
    assert info.value.status == status


def test_error_response_to_unparsable_request_closes() -> None:
    conn = ICAPConnection()
    conn.receive_data(b"GARBAGE\r\n\r\n")
    with pytest.raises(ICAPProtocolError):
        conn.next_event()
    out = conn.send_response(ICAPResponse(400, Headers([("ISTag", '"x"')])))
    assert b"Connection: close\r\n" in out and not conn.keep_alive


# ------------------------------------------------------------------ OPTIONS
def test_options_without_encapsulated_is_accepted(mode: str) -> None:
    data = b"OPTIONS icap://127.0.0.1:1344/echo ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    events, _ = replay(data, mode)
    assert kinds(events) == ["RequestHead", "EndOfMessage", "ConnectionClosed"]
    head = events[0]
    assert isinstance(head, RequestHead) and not head.has_body


def test_options_with_opt_body_is_read() -> None:
    data = b"OPTIONS icap://h/echo ICAP/1.0\r\nEncapsulated: opt-body=0\r\n\r\n" + chunked(b"abc")
    events, _ = replay(data)
    assert body_of(events) == b"abc"


# ------------------------------------------------------------------ Encapsulated
@pytest.mark.parametrize(
    "value",
    [
        "res-hdr=0, res-body=0",  # not strictly increasing
        "res-hdr=10, res-body=20",  # does not start at 0
        "res-body=0, res-hdr=10",  # body not last
        "res-hdr=0",  # no body entity
        "res-hdr=0, res-body=5, null-body=9",  # two bodies
        "res-hdr=0, foo-body=5",  # unknown entity
        "res-hdr=x, res-body=5",  # not a number
        "res-hdr=0, res-body=\u00b2",  # a digit str.isdigit() takes and int() refuses
        "req-body=0",  # wrong body for RESPMOD
        "res-hdr=0, req-hdr=40, res-body=80",  # order
    ],
)
def test_bad_encapsulated_values_are_400(value: str) -> None:
    data = f"RESPMOD icap://h/echo ICAP/1.0\r\nEncapsulated: {value}\r\n\r\n".encode("latin-1")
    with pytest.raises(ICAPProtocolError) as info:
        replay(data + b"x" * 200)
    assert info.value.status == 400


@pytest.mark.parametrize("where", ["preview", "status"])
def test_superscript_digits_are_400_not_500(where: str) -> None:
    """Read from latin-1, "\u00b2" passes str.isdigit() and int() refuses it: it was
    an internal error, logged with its traceback, answered 500."""
    data = respmod(chunked(b"abc"))
    if where == "preview":
        data = data.replace(b"Encapsulated:", b"Preview: \xb2\r\nEncapsulated:", 1)
    else:
        data = data.replace(b"HTTP/1.1 200 OK", b"HTTP/1.1 2\xb20 OK", 1)
    with pytest.raises(ICAPProtocolError) as info:
        replay(data)
    assert info.value.status == 400


def test_respmod_without_req_hdr_and_without_res_hdr(mode: str) -> None:
    events, _ = replay(respmod(chunked(b"abc"), req=False), mode)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert head.http_request is None and head.http_response is not None
    events, _ = replay(respmod(chunked(b"abc"), req=False, res=False), mode)
    head = events[0]
    assert isinstance(head, RequestHead) and head.http_response is None
    assert body_of(events) == b"abc"


def test_reqmod_with_and_without_body(mode: str) -> None:
    events, sent = replay(reqmod(chunked(b"upload")), mode)
    assert body_of(events) == b"upload"
    events, _ = replay(reqmod(None), mode)
    assert kinds(events) == ["RequestHead", "EndOfMessage", "ConnectionClosed"]


def test_offsets_are_checked_against_the_header_slices() -> None:
    # res-body offset one byte short: the res-hdr slice does not end with CRLFCRLF.
    wrong = respmod(chunked(b"x")).replace(
        f"res-body={len(REQ_HDR) + len(RES_HDR)}".encode(),
        f"res-body={len(REQ_HDR) + len(RES_HDR) - 1}".encode(),
    )
    with pytest.raises(ICAPProtocolError) as info:
        replay(wrong)
    assert "CRLFCRLF" in info.value.message


def test_truncated_encapsulated_headers_close_uncleanly() -> None:
    data = respmod(chunked(b"x"))[:-30]
    events, _ = replay(data)
    assert events[-1] == ConnectionClosed(clean=False)


# ------------------------------------------------------------------ chunks
def test_chunk_sizes_in_any_case_with_whitespace_and_extensions(mode: str) -> None:
    body = (
        b"A \r\n"
        + b"0123456789"
        + b"\r\n"
        + b"a;name=value;other\r\n"
        + b"abcdefghij"
        + b"\r\n"
        + b'1 ; x="quoted;semi"\r\nZ\r\n'
        + b"0; foo=bar\r\n\r\n"
    )
    events, _ = replay(respmod(body), mode)
    assert body_of(events) == b"0123456789abcdefghijZ"


def test_ieof_on_a_data_chunk_is_ignored_and_trailers_accepted(mode: str) -> None:
    body = b"3; ieof\r\nabc\r\n0\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n"
    events, _ = replay(respmod(body), mode)
    assert body_of(events) == b"abc"
    end = [e for e in events if isinstance(e, EndOfMessage)][0]
    assert end.trailers.get("x-trailer") == "yes"


def test_content_length_is_not_trusted(mode: str) -> None:
    # RES_HDR claims 999 bytes; the decoded chunks decide.
    events, _ = replay(respmod(chunked(b"short")), mode)
    assert body_of(events) == b"short"


@pytest.mark.parametrize("size_line", [b"zz\r\n", b"-5\r\n", b"\r\n", b"0x10\r\n", b"+1\r\n"])
def test_bad_chunk_size_is_400(size_line: bytes) -> None:
    with pytest.raises(ICAPProtocolError) as info:
        replay(respmod(size_line + b"abc\r\n0\r\n\r\n"))
    assert info.value.status == 400


def test_chunk_data_without_crlf_is_400() -> None:
    with pytest.raises(ICAPProtocolError):
        replay(respmod(b"3\r\nabcXX0\r\n\r\n"))


# ------------------------------------------------------------------ limits
def test_header_block_limit_is_413() -> None:
    conn = ICAPConnection(max_header_bytes=2048)
    big = "X-Big: " + "a" * 1000 + "\r\n"
    with pytest.raises(ICAPProtocolError) as info:
        replay(respmod(chunked(b"x"), headers=big * 3), conn=conn)
    assert info.value.status == 413


def test_header_limit_counts_encapsulated_headers() -> None:
    conn = ICAPConnection(max_header_bytes=1024)
    res = b"HTTP/1.1 200 OK\r\nX-Big: " + b"o" * 1200 + b"\r\n\r\n"
    data = (
        (
            b"RESPMOD icap://h/echo ICAP/1.0\r\nEncapsulated: res-hdr=0, res-body=%d\r\n\r\n"
            % len(res)
        )
        + res
        + chunked(b"x")
    )
    with pytest.raises(ICAPProtocolError) as info:
        replay(data, conn=conn)
    assert info.value.status == 413


def test_line_length_limit_is_413_without_waiting_for_the_end() -> None:
    conn = ICAPConnection(max_line_bytes=512)
    conn.receive_data(b"RESPMOD icap://h/" + b"a" * 600)
    with pytest.raises(ICAPProtocolError) as info:
        conn.next_event()
    assert info.value.status == 413


def test_chunk_size_limit_is_413() -> None:
    conn = ICAPConnection(max_chunk_size=1000)
    with pytest.raises(ICAPProtocolError) as info:
        replay(respmod(chunked(b"x" * 1001)), conn=conn)
    assert info.value.status == 413


def test_large_chunk_streams_in_pieces() -> None:
    conn = ICAPConnection()
    data = respmod(chunked(b"x" * 100_000))
    conn.receive_data(data[:5000])
    seen = []
    while (ev := conn.next_event()) is not None and not isinstance(ev, type(PAUSED)):
        if isinstance(ev, BodyData):
            seen.append(len(ev.data))
        if ev.__class__.__name__ == "_Sentinel":
            break
    assert seen and sum(seen) < 5000  # data delivered before the chunk is complete


# ------------------------------------------------------------------ preview
def test_preview_then_continue_then_rest(mode: str) -> None:
    data = respmod(chunked(b"abcd"), headers="Preview: 4\r\n") + chunked(b"efgh", b"ij")
    # The rest is only sent after our 100; replay feeds it anyway, like a pipelining peer.
    events, sent = replay(data, mode)
    assert kinds(events) == [
        "RequestHead",
        "BodyData",
        "PreviewEnd",
        "BodyData",
        "EndOfMessage",
        "ConnectionClosed",
    ]
    m = merged(events)
    assert m[1] == BodyData(b"abcd", preview=True)
    assert m[2] == PreviewEnd(ieof=False)
    assert m[3] == BodyData(b"efghij", preview=False)
    assert sent.startswith(b"ICAP/1.0 100 Continue\r\n\r\nICAP/1.0 200 OK\r\n")


def test_preview_with_ieof_is_complete_and_refuses_100(mode: str) -> None:
    data = respmod(chunked(b"ab", last=b"0; ieof\r\n\r\n"), headers="Preview: 10\r\n")
    events, sent = replay(data, mode)
    assert kinds(events) == [
        "RequestHead",
        "BodyData",
        "PreviewEnd",
        "EndOfMessage",
        "ConnectionClosed",
    ]
    assert PreviewEnd(ieof=True) in events
    assert b"100 Continue" not in sent
    conn = ICAPConnection()
    conn.receive_data(data)
    while not isinstance(conn.next_event(), EndOfMessage):
        pass
    with pytest.raises(LocalProtocolError):
        conn.send_continue()


def test_preview_zero_with_null_body_has_no_chunks(mode: str) -> None:
    data = respmod(None, headers="Preview: 0\r\n")
    events, _ = replay(data, mode)
    assert kinds(events) == ["RequestHead", "PreviewEnd", "EndOfMessage", "ConnectionClosed"]


def test_preview_zero_with_body(mode: str) -> None:
    data = respmod(b"0\r\n\r\n", headers="Preview: 0\r\n") + chunked(b"all")
    events, _ = replay(data, mode)
    assert body_of(events) == b"all"


def test_early_204_in_preview_ends_the_request_and_next_request_follows(mode: str) -> None:
    first = respmod(chunked(b"abcd"), headers="Preview: 4\r\n")
    second = respmod(chunked(b"second"))

    def answer_204(conn: ICAPConnection, end: PreviewEnd) -> bytes:
        return conn.send_response(ICAPResponse(204, Headers([("ISTag", '"t"')])))

    events, sent = replay(first + second, mode, on_preview=answer_204)
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert len(heads) == 2
    assert sent.startswith(b"ICAP/1.0 204 No Content\r\n")
    assert sent.count(b"ICAP/1.0 200 OK") == 1
    assert body_of(events).endswith(b"second")


def test_more_preview_data_than_announced_is_400() -> None:
    with pytest.raises(ICAPProtocolError):
        replay(respmod(chunked(b"abcdef"), headers="Preview: 4\r\n"))


# ------------------------------------------------------------------ connections
def test_pipelined_requests_are_served_in_order(mode: str) -> None:
    data = respmod(chunked(b"one")) + reqmod(chunked(b"two")) + respmod(chunked(b"three"))
    events, sent = replay(data, mode)
    assert [e.method for e in events if isinstance(e, RequestHead)] == [
        "RESPMOD",
        "REQMOD",
        "RESPMOD",
    ]
    assert sent.count(b"ICAP/1.0 200 OK") == 3


def test_connection_close_from_client_is_honoured() -> None:
    data = respmod(chunked(b"one"), headers="Connection: close\r\n") + respmod(chunked(b"2"))
    events, sent = replay(data)
    assert len([e for e in events if isinstance(e, RequestHead)]) == 1
    assert b"Connection: close\r\n" in sent


def test_eof_mid_body_is_unclean() -> None:
    events, _ = replay(respmod(b"a\r\n01234"))
    assert events[-1] == ConnectionClosed(clean=False)


# ------------------------------------------------------------------ responses
def test_response_offsets_are_byte_exact() -> None:
    conn = ICAPConnection()
    conn.receive_data(respmod(chunked(b"x")))
    conn.next_event()
    res = HTTPResponseHead(
        "HTTP/1.1",
        403,
        "Forbidden",
        Headers([("Content-Type", "text/html"), ("Content-Length", "4")]),
    )
    out = conn.send_response(
        ICAPResponse(200, Headers([("ISTag", '"t"')]), http_response=res, has_body=True)
    )
    head, _, rest = out.partition(b"\r\n\r\n")
    enc = [ln for ln in head.split(b"\r\n") if ln.startswith(b"Encapsulated:")][0]
    assert enc == b"Encapsulated: res-hdr=0, res-body=%d" % len(res.encode())
    assert rest == res.encode()
    assert b"\r\nDate: " in head and b"req-hdr" not in enc


def test_reqmod_answer_with_both_heads_has_exact_offsets() -> None:
    conn = ICAPConnection()
    conn.receive_data(reqmod(chunked(b"x")))
    conn.next_event()
    req = b"POST /up HTTP/1.1\r\nHost: a\r\n\r\n"
    res = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    out = conn.send_response(ICAPResponse(200, Headers(), http_request=req, http_response=res))
    assert (
        f"Encapsulated: req-hdr=0, res-hdr={len(req)}, null-body={len(req) + len(res)}".encode()
        in out
    )
    assert out.endswith(req + res)


def test_204_and_errors_carry_null_body_and_date() -> None:
    conn = ICAPConnection()
    conn.receive_data(respmod(chunked(b"x")))
    conn.next_event()
    out = conn.send_response(ICAPResponse(204, Headers([("ISTag", '"t"')])))
    assert b"Encapsulated: null-body=0\r\n" in out and b"Date: " in out


def test_cannot_send_body_without_response_head() -> None:
    conn = ICAPConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_data(b"x")


def test_answer_before_the_preview_ends_completes_the_request(mode: str) -> None:
    """An error sent while preview bytes still arrive: the preview's end finishes the
    request (no 100 may follow), and the next request is read."""
    conn = ICAPConnection()
    first = respmod(chunked(b"abcd"), headers="Preview: 4\r\n")
    head_len = first.index(b"4\r\nabcd")
    second = respmod(chunked(b"next"))
    conn.receive_data(first[:head_len])
    assert isinstance(conn.next_event(), RequestHead)
    conn.send_response(ICAPResponse(404, Headers([("ISTag", '"t"')])))
    events, _ = replay(first[head_len:] + second, mode, conn=conn)
    assert events[:2] == [BodyData(b"abcd", preview=True), PreviewEnd(ieof=False)] or merged(
        events
    )[:2] == [BodyData(b"abcd", preview=True), PreviewEnd(ieof=False)]
    assert any(isinstance(e, RequestHead) for e in events)
