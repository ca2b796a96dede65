"""Archives built by hand against what real extractors (Info-ZIP ``unzip``, 7-Zip,
``bsdtar``, ``zipfile``) do with them: the delivered archive is extracted and
checked, not the engine's report alone."""

from __future__ import annotations

import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.plugins.test_archive import DANGEROUS, FORMULA_CSV, _cells, _disarm, _request
from tests.support import require_tool

PASSWORD = b"s3cret"

# --------------------------------------------------------------------------- corpus


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def _zipcrypto(data: bytes, password: bytes, check: int) -> bytes:
    """``data`` encrypted with the traditional PKWARE cipher (what ``zip -P`` and
    Windows' "compressed folder" write), behind its 12-byte header."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def crc(byte: int, value: int) -> int:
        return (value >> 8) ^ _TABLE[(value ^ byte) & 0xFF]

    def update(byte: int) -> None:
        keys[0] = crc(byte, keys[0])
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = crc(keys[1] >> 24, keys[2])

    for byte in password:
        update(byte)
    out = bytearray()
    for byte in bytes(range(11)) + bytes([check]) + data:
        k = keys[2] | 2
        out.append(byte ^ (((k * (k ^ 1)) >> 8) & 0xFF))
        update(byte)
    return bytes(out)


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


DOS_TIME, DOS_DATE = 0x6000, 0x5263


@dataclass
class Member:
    """A member of a hand-made zip, as stored."""

    name: bytes
    payload: bytes  # the stored bytes (compressed, encrypted)
    size: int
    crc: int
    method: int = 8
    flags: int = 0
    mode: int = 0o100644
    extra: bytes = b""


def _plain(name: bytes, data: bytes, mode: int = 0o100644) -> Member:
    return Member(name, _deflate(data), len(data), zlib.crc32(data), mode=mode)


def _archive(members: list[Member]) -> bytes:
    """A zip written byte by byte (``zipfile`` writes no encrypted member)."""
    body = b""
    directory = b""
    for m in members:
        descriptor = bool(m.flags & 0x8)
        local = (0, 0, 0) if descriptor else (m.crc, len(m.payload), m.size)
        version = 51 if m.method == 99 else 20
        offset = len(body)
        body += struct.pack(
            "<4s2B4HL2L2H", b"PK\x03\x04", version, 0, m.flags, m.method, DOS_TIME, DOS_DATE,
            *local, len(m.name), len(m.extra),
        ) + m.name + m.extra + m.payload  # fmt: skip
        if descriptor:
            body += struct.pack("<4s3L", b"PK\x07\x08", m.crc, len(m.payload), m.size)
        directory += struct.pack(
            "<4s4B4HL2L5H2L", b"PK\x01\x02", version, 3, version, 0, m.flags, m.method,
            DOS_TIME, DOS_DATE, m.crc, len(m.payload), m.size, len(m.name), len(m.extra),
            0, 0, 0, m.mode << 16, offset,
        ) + m.name + m.extra  # fmt: skip
    n = len(members)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(directory), len(body), 0)
    return body + directory + end


def _zipcrypto_member(name: bytes, data: bytes, *, descriptor: bool) -> Member:
    crc = zlib.crc32(data)
    # The password check byte: the CRC's high byte, or the time's with a descriptor.
    check = (DOS_TIME >> 8) if descriptor else (crc >> 24)
    payload = _zipcrypto(_deflate(data), PASSWORD, check)
    flags = 0x1 | (0x8 if descriptor else 0)
    return Member(name, payload, len(data), crc, flags=flags)


def _mixed(encrypted: Member) -> bytes:
    """One password-protected member among what the engine must still take out or
    disarm: a traversal name, a symbolic link, a CSV with formulas."""
    return _archive(
        [
            encrypted,
            _plain(b"../../evil.csv", FORMULA_CSV),
            _plain(b"link", b"/etc/passwd", mode=0o120777),
            _plain(b"data.csv", FORMULA_CSV),
        ]
    )


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("descriptor", [False, True])
def test_encrypted_relay_rebuilds_the_rest_and_keeps_the_encrypted_member(
    tmp_path: Path, descriptor: bool
) -> None:
    secret = b"the encrypted member\n" * 20
    data = _mixed(_zipcrypto_member(b"secret.txt", secret, descriptor=descriptor))
    request = _request(tmp_path, data, fallbacks={"encrypted": "relay", "unsupported": "block"})
    result = _disarm(request)
    # The original (with its traversal name, link and formulas) is not what is relayed:
    # the archive is rebuilt, the encrypted member copied as it was.
    assert result.outcome == "rebuilt", result.reason
    switches = [(a.switch, a.action) for a in result.actions]
    assert ("unsafe_name", "removed") in switches
    assert ("symlink", "removed") in switches
    assert ("encrypted", "kept") in switches
    with zipfile.ZipFile(request.destination) as zf:
        assert [i.filename for i in zf.infolist()] == ["secret.txt", "data.csv"]
        assert zf.read("secret.txt", pwd=PASSWORD) == secret  # still decrypts
        assert not any(c.startswith(DANGEROUS) for c in _cells(zf.read("data.csv")))
        assert all((i.external_attr >> 16) & 0o170000 == 0o100000 for i in zf.infolist())
    unzip = require_tool("unzip", "unzip")
    out = tmp_path / "x"
    subprocess.run(
        [unzip, "-q", "-P", PASSWORD.decode(), str(request.destination), "-d", str(out)],
        check=True,
    )
    assert sorted(p.name for p in out.iterdir()) == ["data.csv", "secret.txt"]
    assert (out / "secret.txt").read_bytes() == secret
    assert not (tmp_path / "evil.csv").exists()


def test_encrypted_block_blocks_the_archive(tmp_path: Path) -> None:
    data = _mixed(_zipcrypto_member(b"secret.txt", b"x" * 100, descriptor=False))
    result = _disarm(_request(tmp_path, data, fallbacks={"encrypted": "block"}))
    assert result.outcome == "encrypted"
    assert "'secret.txt'" in result.reason


def test_aes_member_is_kept_with_what_decrypting_it_needs(tmp_path: Path) -> None:
    # WinZip AES-256 (method 99; the real method, deflate, in the 0x9901 extra field):
    # the payload stands for the salt, password check, data and authentication code.
    aes = struct.pack("<2HH2sBH", 0x9901, 7, 2, b"AE", 3, 8)
    payload = bytes(range(16)) + b"\x01\x02" + b"\xaa" * 40 + bytes(10)
    member = Member(b"secret.bin", payload, 40, 0, method=99, flags=1, extra=aes)
    request = _request(tmp_path, _mixed(member), fallbacks={"encrypted": "relay"})
    result = _disarm(request)
    assert result.outcome == "rebuilt", result.reason
    with zipfile.ZipFile(request.destination) as zf:
        info = zf.getinfo("secret.bin")
        assert (info.compress_type, info.flag_bits & 1, info.extra) == (99, 1, aes)
        assert info.compress_size == len(payload)
    seven = require_tool("7z", "p7zip-full")
    listing = subprocess.run(
        [seven, "l", "-slt", str(request.destination)], capture_output=True, text=True
    ).stdout
    assert "Method = AES-256 Deflate" in listing
    assert "Path = link" not in listing and "evil.csv" not in listing


def test_encrypted_member_holding_a_local_header_is_not_relayed(tmp_path: Path) -> None:
    # Stored with a data descriptor, a member ends where a reader reading the archive
    # as a stream (bsdtar from a pipe) finds a descriptor: one inside the encrypted
    # bytes, then a local header, and bsdtar listed and extracted a member of the
    # attacker's (here a CSV with formulas) that the engine never disarmed.
    evil = FORMULA_CSV
    inner = struct.pack(
        "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, DOS_TIME, DOS_DATE,
        zlib.crc32(evil), len(evil), len(evil), len(b"smuggled.csv"), 0,
    ) + b"smuggled.csv" + evil  # fmt: skip
    head = _zipcrypto(b"hello", PASSWORD, DOS_TIME >> 8)
    fake = struct.pack("<4s3L", b"PK\x07\x08", zlib.crc32(b"hello"), len(head), 5)
    payload = head + fake + inner
    member = Member(b"secret.txt", payload, len(payload) - 12, zlib.crc32(b"x"), 0, flags=0x9)
    data = _archive([member, _plain(b"data.csv", FORMULA_CSV)])
    request = _request(tmp_path, data, fallbacks={"encrypted": "relay"})
    result = _disarm(request)
    assert result.outcome == "unprocessable", result
    assert "'secret.txt'" in (result.reason or "") and "local header" in (result.reason or "")
    # The same member without what streams read as a member is kept.
    member.payload = head + fake
    request = _request(tmp_path, _archive([member]), fallbacks={"encrypted": "relay"})
    assert _disarm(request).outcome == "rebuilt"
