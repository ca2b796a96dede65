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


def _two_workers(tmp_path: Path, settings: Path = SETTINGS) -> GicapProcess:
    """Two worker processes, logging at DEBUG: the second one writes its SIGHUP lines
    there (only the first writes them at INFO), and the tests count both."""
    env = {"GICAP_CDR__WORKERS": "1", "GICAP_SERVER__WORKERS": "2", "GICAP_LOGGING__LEVEL": "DEBUG"}
    return GicapProcess(tmp_path, env, settings=settings)


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
    proc = _two_workers(tmp_path, settings).start()
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
        # Both workers have reloaded (each logs it) before the file changes again...
        assert _wait_for(lambda: proc.log().count("SIGHUP: settings reloaded") == 2), proc.log()
        # ...but an operator reads each line once: the second worker's are DEBUG lines.
        for line in ("SIGHUP: reloading certificates", "SIGHUP: settings reloaded"):
            levels = sorted(ln.split()[2] for ln in proc.log().splitlines() if line in ln)
            assert levels == ["DEBUG", "INFO"], proc.log()
        assert all(_istag(proc) != before for _ in range(6))
        assert _istag(proc, "echo") == echo_before
        assert held.options().status == 200  # the connection from before is still served
        # A broken file is refused; the running policy stays.
        current = _istag(proc)
        settings.write_text(
            settings.read_text().replace('javascript = "allow"', 'javascript = "sometimes"')
        )
        proc.proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: proc.log().count("new settings refused") == 2), proc.log()
        refused = [ln.split()[2] for ln in proc.log().splitlines() if "new settings refused" in ln]
        assert sorted(refused) == ["DEBUG", "ERROR"], proc.log()
        assert "policy.strict.pdf.javascript must be allow | sanitise | disallow" in proc.log()
        assert _istag(proc) == current
        assert held.options().status == 200
        held.close()
    finally:
        code = proc.stop()
        assert code == 0, proc.log()


def test_sighup_while_workers_start_neither_kills_them_nor_is_lost(tmp_path: Path) -> None:
    proc = _two_workers(tmp_path)
    proc.start(wait=False)
    assert proc.proc is not None
    try:
        # The master has forked; the workers are still starting their services.
        assert _wait_for(lambda: "started 2 worker processes" in proc.log()), proc.log()
        for _ in range(10):
            proc.proc.send_signal(signal.SIGHUP)
            time.sleep(0.05)
        proc.wait_ready()
        assert _wait_for(lambda: proc.log().count("SIGHUP: settings reloaded") >= 2), proc.log()
        assert "was killed by SIGHUP" not in proc.log()
        assert "starting a new one" not in proc.log()
    finally:
        code = proc.stop()
        assert code == 0, proc.log()


def test_sigterm_while_a_dead_worker_is_being_replaced_stops_the_server(tmp_path: Path) -> None:
    import os

    proc = GicapProcess(tmp_path, {"GICAP_CDR__WORKERS": "1", "GICAP_SERVER__WORKERS": "2"})
    proc.start()
    assert proc.proc is not None
    children = Path(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGKILL)
    # The master logs the death, then waits a moment before starting a replacement:
    # a SIGTERM now must stop it, not be followed by a fresh worker that never exits.
    assert _wait_for(lambda: "was killed by SIGKILL" in proc.log(), timeout=5), proc.log()
    code = proc.stop()
    assert code == 0, proc.log()


def test_a_replacement_worker_starts_with_the_settings_a_sighup_loaded(tmp_path: Path) -> None:
    """After a SIGHUP, a worker that died was replaced by one with the settings of
    start-up: a part of the traffic went back to the old policy."""
    import os

    settings = tmp_path / "settings.toml"
    settings.write_text(SETTINGS.read_text())
    proc = _two_workers(tmp_path, settings).start()
    assert proc.proc is not None
    try:
        settings.write_text(
            settings.read_text().replace(
                '[policy.strict.pdf]\njavascript = "disallow"',
                '[policy.strict.pdf]\njavascript = "allow"',
            )
        )
        proc.proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: proc.log().count("SIGHUP: settings reloaded") == 2), proc.log()
        reloaded = _istag(proc)
        pid = proc.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGKILL)
        assert _wait_for(lambda: "was killed by SIGKILL" in proc.log(), timeout=5), proc.log()
        assert _wait_for(lambda: proc.log().count("started") >= 1 and _istag(proc) != "")
        time.sleep(1)  # (the replacement serves)
        assert {_istag(proc) for _ in range(12)} == {reloaded}
    finally:
        proc.stop()
