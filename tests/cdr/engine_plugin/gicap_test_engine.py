"""A misbehaving engine plugin for the CDR service tests (never shipped).

Registered through the ``gicap`` entry point, it answers ``gicap_disarm`` before the
real engines (``tryfirst``), and only when ``GICAP_TEST_ENGINE`` is set in the
server's environment and the file is a csv holding the marker ``TEST-ENGINE-TRIGGER``:
it then raises (``raise``), hangs (``hang``) or kills its worker process (``crash``).
Any other file goes on to the real engines, so a test can show that the next file is
processed normally.
"""

from __future__ import annotations

import os
import time

from gicap import hookimpl
from gicap.cdr.types import DisarmRequest, DisarmResult

MARKER = b"TEST-ENGINE-TRIGGER"


@hookimpl(tryfirst=True)
def gicap_disarm(request: DisarmRequest) -> DisarmResult | None:
    mode = os.environ.get("GICAP_TEST_ENGINE", "")
    if not mode or request.file_type.name != "csv":
        return None
    if MARKER not in request.source.read_bytes():
        return None
    if mode == "raise":
        raise RuntimeError("test engine exploded")
    if mode == "hang":
        time.sleep(60)
    if mode == "crash":
        os._exit(1)
    return None
