"""The transaction log and ordinary log records: text and JSON, on stderr or in a file."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gicap.client import ICAPClient
from gicap.obs.logging import AppendFile, JSONFormatter
from gicap.obs.txlog import TransactionLog
from gicap.protocol.headers import parse_header_lines, split_lines
from tests.secure.support import Clients, SecureGicap
from tests.tls.pki import PKI, Issued

from .support import two_worker_server, wait_for

CSV = b"name,amount\nalice,=1+2\nbob,3\n"
CSV_REBUILT = b"name,amount\nalice,'=1+2\nbob,3\n"
EXE = b"MZ" + bytes(3000)
#: What every JSON line starts with, ordinary record or transaction.
COMMON = ("time", "level", "logger", "pid")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    pki: PKI,
    server_cert: Issued,
    clients: Clients,
    client_a: Issued,
) -> Iterator[SecureGicap]:
    """Two workers logging JSON to a file they share."""
    tmp = tmp_path_factory.mktemp("logs")
    with two_worker_server(
        tmp,
        pki,
        server_cert,
        clients,
        client_a,
        {
            "GICAP_LOGGING__FORMAT": "json",
            "GICAP_LOGGING__FILE": str(tmp / "gicap.jsonl"),
        },
    ) as proc:
        yield proc


def records(proc: SecureGicap) -> list[dict[str, Any]]:
    path = Path(proc.env["GICAP_LOGGING__FILE"])
    return [json.loads(line) for line in path.read_text().splitlines()]


def transaction(proc: SecureGicap, **match: object) -> dict[str, Any]:
    """The transaction record with these values (the log is flushed every 0.5 s)."""

    def find() -> dict[str, Any] | None:
        for r in records(proc):
            if r["logger"] == "gicap.transaction" and all(r.get(k) == v for k, v in match.items()):
                return r
        return None

    found: dict[str, Any] = wait_for(find, f"transaction record {match}", timeout=5)
    return found


def file_id(raw_http: bytes) -> str:
    value = parse_header_lines(split_lines(raw_http)[1:]).get("X-Adaptation-File-Id")
    assert value
    return value


def test_cdr_transaction_record_over_tls(
    server: SecureGicap, clients: Clients, client_a: Issued
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\n"
    with clients.icap(server.secure_port, client_a) as icap:
        icap.url = f"icaps://localhost:{server.secure_port}/resp-cdr-service?profile=default"
        r = icap.respmod(CSV, res_head=head, allow_204=False)
    assert r.status == 200 and r.body == CSV_REBUILT and r.http_response
    fid = file_id(r.http_response)
    rec = transaction(server, file_id=fid)
    assert rec["level"] == "INFO" and rec["pid"] in server.processes()[1:]
    datetime.fromisoformat(rec["time"])
    assert rec["client"].startswith("127.0.0.1:")
    assert "client-a" in rec["identity"]
    assert rec["service"] == "resp-cdr-service" and rec["profile"] == "default"
    assert rec["method"] == "RESPMOD"
    assert rec["icap_uri"] == icap.url
    assert rec["http_url"] == "http://origin.example/file"
    assert rec["type"] == "csv"
    assert rec["actions"] == {"formulas": "neutralised"}
    assert rec["outcome"] == "rebuilt" and rec["engine"] == "rebuilt"
    assert rec["status"] == 200
    assert rec["bytes_in"] == len(CSV) and rec["bytes_out"] == len(CSV_REBUILT)
    assert rec["ms"] >= rec["cdr_ms"] > 0


def test_blocked_and_plain_echo_records(server: SecureGicap) -> None:
    with ICAPClient(f"{server.url}/resp-cdr-service") as c:
        r = c.respmod(EXE, allow_204=False)
    assert r.http_response
    blocked = transaction(server, file_id=file_id(r.http_response))
    assert blocked["outcome"] == "blocked" and blocked["type"] == "exe"
    assert "unsupported" in blocked["reason"]
    assert "identity" not in blocked  # plain ICAP: no client certificate
    with ICAPClient(f"{server.url}/echo?x=1") as c:
        c.respmod(b"e" * 700, allow_204=False)
    echo = transaction(server, icap_uri=f"{server.url}/echo?x=1")
    assert echo["service"] == "echo" and echo["outcome"] == "ok"
    assert echo["bytes_in"] == echo["bytes_out"] == 700


def test_every_line_is_json_and_nothing_goes_to_stderr(server: SecureGicap) -> None:
    # Only the first worker logs when it starts: the kernel spreads new connections
    # over the workers, so twenty of them reach the second one too (but 1 in 500,000).
    for _ in range(20):
        with ICAPClient(f"{server.url}/echo") as c:
            c.respmod(b"spread", allow_204=False)
    time.sleep(0.6)  # the last transactions flushed
    recs = records(server)
    for r in recs:
        assert all(k in r for k in COMMON), r
    ordinary = [r for r in recs if r["logger"] != "gicap.transaction"]
    assert any("starting with settings" in r["message"] for r in ordinary)
    # The master and both workers wrote to the same file.
    assert len({r["pid"] for r in recs}) == 3
    assert "gicap.transaction" not in server.log()
    assert "starting with settings" not in server.log()


# ------------------------------------------------------------------ units
def test_text_transaction_line_keeps_its_form() -> None:
    out = io.StringIO()
    txlog = TransactionLog(stream=out)
    fields = {"service": "echo", "identity": (), "actions": {"a": "x", "b": "y"}, "n": 3}
    txlog.record("1.2.3.4:5", "RESPMOD", "icap://h/echo", 200, 1.25, fields)
    txlog.flush()
    line = out.getvalue()
    assert line.endswith(
        " gicap.transaction: 1.2.3.4:5 RESPMOD icap://h/echo -> 200 (1.2 ms) "
        "service=echo actions=a:x;b:y n=3\n"
    )
    assert f"INFO gicap[{os.getpid()}]" in line


def test_json_formatter_carries_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("gicap.x", logging.ERROR, __file__, 1, "a %s", ("b",), None)
        record.exc_info = sys.exc_info()
    out = json.loads(JSONFormatter().format(record))
    assert out["message"] == "a b" and out["level"] == "ERROR" and out["logger"] == "gicap.x"
    assert "ValueError: boom" in out["exception"]


def test_append_file_follows_logrotate(tmp_path: Path) -> None:
    path = tmp_path / "gicap.log"
    f = AppendFile(str(path))
    f.write("one\n")
    path.rename(tmp_path / "gicap.log.1")
    f.write("two\n")
    assert (tmp_path / "gicap.log.1").read_text() == "one\n"
    assert path.read_text() == "two\n"


def test_text_line_fields_quoting_and_empty_fields() -> None:
    out = io.StringIO()
    log = TransactionLog(stream=out)
    fields = {
        "service": "resp-cdr-service",
        "empty": "",
        "none": None,
        "zero": 0,
        "bytes_in": 1024,
        "reason": "macros removed",
        "multi": "a\nb",
        # (a client's Host header: one token, not a field of the line)
        "http_url": '//ex.com" outcome=unmodified type=text\r\\',
        "actions": {"macros": "sanitise", "metadata": "allow"},
        "nothing": {},
        "types": ["pdf", "zip"],
        "flag": True,
        "ms": 1.5,
    }
    log.record("127.0.0.1:1", "RESPMOD", "icap://h/s", 200, 2.0, fields)
    log.flush()
    line = out.getvalue()
    assert line.endswith(
        ' service=resp-cdr-service zero=0 bytes_in=1024 reason="macros removed"'
        ' multi="a\\nb" http_url="//ex.com\\" outcome=unmodified type=text\\r\\\\"'
        " actions=macros:sanitise;metadata:allow types=pdf,zip flag=True ms=1.5\n"
    ), line
