"""Job functions for the runner tests: imported by the spawned worker processes."""

from __future__ import annotations

import os
import time
from typing import Any

_state: dict[str, Any] = {}


def setup() -> None:
    _state["initialised"] = os.getpid()


def run(payload: tuple[str, Any]) -> Any:
    """Dispatch on ``(action, argument)`` so one worker pool can run every kind of job."""
    action, arg = payload
    if action == "echo":
        return {"pid": os.getpid(), "value": arg, "init": _state.get("initialised")}
    if action == "sleep":
        time.sleep(arg)
        return {"pid": os.getpid()}
    if action == "exit":
        os._exit(arg)
    if action == "signal":
        os.kill(os.getpid(), arg)
        time.sleep(5)
    if action == "allocate":
        return len(bytearray(arg))
    if action == "raise":
        raise ValueError(arg)
    if action == "burn":
        end = time.monotonic() + arg
        while time.monotonic() < end:
            pass
        return "burnt"
    if action == "unpicklable":
        return lambda: None
    if action == "vmsize":
        with open("/proc/self/status") as f:
            return {
                k: v.strip() for k, v in (line.split(":", 1) for line in f) if k.startswith("Vm")
            }
    raise AssertionError(f"unknown action {action!r}")
