"""Log set-up: one line per event on stderr (journald picks it up under systemd)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s gicap[%(process)d] %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
