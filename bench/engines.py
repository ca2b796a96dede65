"""CDR throughput per file family, next to the library's own plain rewrite of the
same files (`python -m bench.engines`; part of `make bench`).

Each `bench/engine_<name>.py` exposes `run() -> list[dict]` with family, files, mb,
cdr_s and plain_s over a corpus it generates; an engine whose plugin is not installed
is reported as skipped. Target: CDR time <= 1.5x the plain rewrite.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gicap.cdr import job

ENGINES = ["engine_pdf", "engine_media", "engine_archive", "engine_office"]
TARGET = 1.5
MAX_FILE_SIZE = 100 * 1024 * 1024
#: Each side of a row runs for at least this long in all (see measure).
MIN_SECONDS = 0.5


def measure(
    family: str,
    corpus: str,
    paths: list[Path],
    work: Path,
    plain: Callable[[Path, Path], None],
    *,
    rounds: int,
    profile: dict[str, Any],
    declared: Callable[[Path], str | None] = lambda path: None,
    outcomes: Iterable[str] = ("rebuilt",),
) -> dict[str, Any]:
    """One table row: gicap's own job function (detection and the engine, in this
    process) against ``plain`` on the same files, side by side, best of ``rounds``
    (more for a small corpus: rounds go on, alternating, until each side has run for
    ``MIN_SECONDS``, so that a pass of a few milliseconds is not timed only a few
    times on a noisy machine). Every output is a new file, as in production (saving
    over an existing file costs some libraries a temporary file and a rename): the
    row writes into a folder of its own under ``work``."""
    allowed = set(outcomes)
    # (a folder of its own: a name an earlier row wrote would make saving a rename)
    work = Path(tempfile.mkdtemp(dir=work))
    best_cdr = best_plain = float("inf")
    spent_cdr = spent_plain = 0.0
    r = 0
    while r < rounds or min(spent_cdr, spent_plain) < MIN_SECONDS:
        start = time.perf_counter()
        for i, path in enumerate(paths):
            dest = work / f"cdr-{r}-{i}{path.suffix}"
            answer = job.disarm_file(path, dest, profile, "default", declared(path), MAX_FILE_SIZE)
            assert answer["outcome"] in allowed, (path.name, answer)
        took = time.perf_counter() - start
        best_cdr, spent_cdr = min(best_cdr, took), spent_cdr + took
        start = time.perf_counter()
        for i, path in enumerate(paths):
            plain(path, work / f"plain-{r}-{i}{path.suffix}")
        took = time.perf_counter() - start
        best_plain, spent_plain = min(best_plain, took), spent_plain + took
        r += 1
    return {
        "family": family,
        "corpus": corpus,
        "files": len(paths),
        "mb": round(sum(p.stat().st_size for p in paths) / 1e6, 3),
        "cdr_s": round(best_cdr, 6),
        "plain_s": round(best_plain, 6),
    }


def collect() -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for name in ENGINES:
        try:
            module = importlib.import_module(f"bench.{name}")
            rows.extend(module.run())
        except ImportError as exc:
            skipped.append(f"{name}: {exc}")
    return rows, skipped


def print_table(rows: list[dict[str, Any]], skipped: list[str]) -> None:
    print(
        f"\n{'family':24} {'files':>6} {'MB':>8} {'CDR MB/s':>9} {'files/s':>8} "
        f"{'plain MB/s':>10} {'CDR/plain':>9}  target <= {TARGET}"
    )
    print("-" * 96)
    for row in rows:
        cdr_s, plain_s = float(row["cdr_s"]), float(row["plain_s"])
        mb, files = float(row["mb"]), int(row["files"])
        ratio = cdr_s / plain_s if plain_s else float("inf")
        verdict = "met" if ratio <= TARGET else "MISSED"
        label = str(row.get("corpus") or row["family"])[:24]
        print(
            f"{label:24} {files:6d} {mb:8.2f} {mb / cdr_s:9.1f} {files / cdr_s:8.1f} "
            f"{mb / plain_s:10.1f} {ratio:9.2f}  {verdict}"
        )
    for line in skipped:
        print(f"skipped {line}")


def main() -> int:
    rows, skipped = collect()
    print_table(rows, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
