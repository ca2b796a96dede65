"""The CDR job reuses the profile it built for the previous job only while the
profile's data is the same: a changed switch (even in the same dict, changed in
place) takes effect on the next job."""

from __future__ import annotations

import copy
from pathlib import Path

from gicap.cdr import job
from gicap.cdr.policy import build_profile

CSV = b"name,value\nx,=cmd|' /C calc'!A0\ny,3\n"


def _run(tmp_path: Path, data: dict, n: int) -> dict:
    source = tmp_path / f"in{n}.csv"
    source.write_bytes(CSV)
    return job.disarm_file(source, tmp_path / f"out{n}.csv", data, "default", "csv", 2**20)


def test_changed_profile_takes_effect(tmp_path: Path) -> None:
    data = build_profile("default", {}).as_dict()
    assert _run(tmp_path, data, 1)["outcome"] == "rebuilt"
    assert (tmp_path / "out1.csv").read_bytes() != CSV
    # the same dict object, changed in place
    data["text"] = {"formulas": "disallow"}
    assert _run(tmp_path, data, 2)["outcome"] == "blocked"
    allow = copy.deepcopy(data)
    allow["text"] = {"formulas": "allow"}
    assert _run(tmp_path, allow, 3)["outcome"] == "unmodified"
    assert _run(tmp_path, data, 4)["outcome"] == "blocked"
