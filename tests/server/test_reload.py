"""SIGHUP re-reads settings and policy without closing a connection; a bad file is
refused and the running configuration stays."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from gicap.client import ICAPClient
from tests.support import SETTINGS, GicapProcess


def _istag(proc: GicapProcess, service: str = "resp-cdr-service") -> str:
    with ICAPClient(f"{proc.url}/{service}") as c:
        return c.options().headers.get("ISTag") or ""


def _wait_for(predicate, timeout: float = 10) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sighup_swaps_policy_keeps_connections_and_refuses_bad_files(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(SETTINGS.read_text())
    proc = GicapProcess(
        tmp_path, {"GICAP_CDR__WORKERS": "1", "GICAP_SERVER__WORKERS": "2"}, settings=settings
    ).start()
    try:
        before = _istag(proc)
        held = ICAPClient(f"{proc.url}/echo")
        held.connect()
        assert held.options().status == 200
        # A policy change: the CDR services' ISTag must change, echo's must not.
        echo_before = _istag(proc, "echo")
        settings.write_text(
            settings.read_text().replace(
                '[policy.strict.pdf]\njavascript = "disallow"',
                '[policy.strict.pdf]\njavascript = "allow"',
            )
        )
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: _istag(proc) != before), proc.log()
        assert _wait_for(lambda: all(_istag(proc) != before for _ in range(6)))
        assert _istag(proc, "echo") == echo_before
        assert held.options().status == 200  # the connection from before is still served
        # A broken file is refused; the running policy stays.
        current = _istag(proc)
        settings.write_text(
            settings.read_text().replace('javascript = "allow"', 'javascript = "sometimes"')
        )
        proc.proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: "new settings refused" in proc.log()), proc.log()
        assert "policy.strict.pdf.javascript must be allow | sanitise | disallow" in proc.log()
        assert _istag(proc) == current
        assert held.options().status == 200
        held.close()
    finally:
        assert proc.stop() == 0
