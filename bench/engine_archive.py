"""Throughput of the gicap-archive engine next to a plain zipfile rewrite.

The corpus is generated: zip archives of CSV (with and without formulas), plain text
and a nested zip. "cdr" is gicap's own job function (detection, the archive engine,
every member through its engine, recursively) in this process; "plain" reads every
member with ``zipfile`` and writes them into a new deflated archive — the least any
rebuild does. Both run side by side in one process, best of ``rounds``.

    python -m bench.engine_archive
"""

from __future__ import annotations

import io
import random
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from bench.engines import measure
from gicap.cdr import job
from gicap.cdr.policy import build_profile


def _csv(rng: random.Random, rows: int, formulas: bool) -> bytes:
    lines = ["id,name,amount,note"]
    for i in range(rows):
        note = rng.choice(["=1+1", "@SUM(A1)", "-3", "ok"]) if formulas and i % 7 == 0 else "ok"
        lines.append(f"{i},item {rng.randrange(10**6)},{rng.random() * 1000:.2f},{note}")
    return ("\n".join(lines) + "\n").encode()


def _text(rng: random.Random, size: int) -> bytes:
    words = ["alpha", "beta", "gamma", "delta", "archive", "member", "proxy", "file"]
    out: list[str] = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(12))
        out.append(line)
        total += len(line) + 1
    return ("\n".join(out) + "\n").encode()


def _archive(rng: random.Random, kind: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if kind == "text":
            for n in range(8):
                zf.writestr(f"docs/file{n}.txt", _text(rng, 128 * 1024))
        else:
            zf.writestr("report.csv", _csv(rng, 4000, formulas=True))
            zf.writestr("clean.csv", _csv(rng, 4000, formulas=False))
            zf.writestr("readme.txt", _text(rng, 64 * 1024))
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z2:
                z2.writestr("nested.csv", _csv(rng, 2000, formulas=True))
            zf.writestr("nested.zip", inner.getvalue())
    return buf.getvalue()


def _plain(source: Path, dest: Path) -> None:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))


def run(count: int = 12, rounds: int = 2) -> list[dict[str, Any]]:
    job.init_worker()  # set up as a CDR worker process is (plugins loaded, gc frozen)
    rng = random.Random(42)
    profile = build_profile("default", {}).as_dict()
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="gicap-bench-archive-"))
    try:
        for kind in ("text", "csv"):
            paths = []
            for i in range(count):
                path = work / f"{kind}{i}.zip"
                path.write_bytes(_archive(rng, kind))
                paths.append(path)
            rows.append(
                measure(
                    "archive",
                    f"zip of {kind} members",
                    paths,
                    work,
                    _plain,
                    rounds=rounds,
                    profile=profile,
                    declared=lambda path: "a.zip",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    from bench.engines import print_table

    print_table(run(), [])


if __name__ == "__main__":
    main()
