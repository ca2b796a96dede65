"""`gicap disarm`: the same engine and policy offline; exit 0 delivered, 3 blocked."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, SETTINGS


def disarm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gicap", "disarm", "--settings", str(SETTINGS), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_rebuilt_file_is_written_and_reported(tmp_path: Path) -> None:
    src = tmp_path / "sheet.csv"
    src.write_bytes(b'name,total\n=HYPERLINK("http://x"),2\nok,3\n')
    out = tmp_path / "clean.csv"
    run = disarm(str(src), "-o", str(out), "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["outcome"] == "rebuilt" and report["file_type"] == "csv"
    assert report["actions"][0]["switch"] == "formulas"
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[1][0] == '\'=HYPERLINK("http://x")' and rows[2] == ["ok", "3"]


def test_blocked_file_exits_3_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "tool.exe"
    src.write_bytes(b"MZ" + b"\x00" * 200)
    out = tmp_path / "out.bin"
    run = disarm(str(src), "-o", str(out))
    assert run.returncode == 3, run.stdout + run.stderr
    assert "blocked" in run.stdout and "unsupported" in run.stdout
    assert not out.exists()


def test_profile_selects_policy_and_unknown_profile_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "sheet.csv"
    src.write_bytes(b"a,b\n=1+1,2\n3,4\n")
    run = disarm(str(src), "--profile", "strict", "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["profile"] == "strict"
    bad = disarm(str(src), "--profile", "nope")
    assert bad.returncode == 2 and "unknown profile 'nope'" in bad.stderr
    missing = disarm(str(tmp_path / "absent.csv"))
    assert missing.returncode == 2
