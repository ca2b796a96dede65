"""The plugin host: entry points, built-ins registered like plugins, failures reported."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from gicap import hookimpl
from gicap.client import ICAPClient
from gicap.config import Settings
from gicap.plugins import create_plugin_host
from gicap.services.base import Service, Transaction, Unmodified
from tests.support import ROOT, SETTINGS, GicapProcess


class _Hello(Service):
    name = "hello"
    method = "RESPMOD"

    def respond(self, txn: Transaction) -> Unmodified:
        return Unmodified()


def _plugin(name: str, register: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.gicap_register_services = register  # type: ignore[attr-defined]
    return mod


def test_echo_is_loaded_through_the_gicap_entry_point() -> None:
    host = create_plugin_host()
    assert host.loaded["echo"] == "gicap.services.echo"
    services = host.services(Settings())
    assert services["echo"].method == "RESPMOD"
    assert services["echo-req"].method == "REQMOD"


def test_a_broken_plugin_is_reported_and_the_others_still_load() -> None:
    @hookimpl
    def broken(settings: Settings) -> list[Service]:
        raise RuntimeError("cannot reach the licence server")

    @hookimpl
    def good(settings: Settings) -> list[Service]:
        return [_Hello()]

    host = create_plugin_host(
        extra=[("broken", _plugin("broken", broken)), ("good", _plugin("good", good))]
    )
    services = host.services(Settings())
    assert "hello" in services and "echo" in services
    assert "licence server" in host.failed["broken"]


def test_istag_is_stable_and_changes_with_the_configuration() -> None:
    class Configurable(_Hello):
        def __init__(self, policy: str) -> None:
            self.policy = policy

        def config_fingerprint(self) -> str:
            return self.policy

    a, b, c = Configurable("strict"), Configurable("strict"), Configurable("relaxed")
    assert a.istag() == b.istag() != c.istag()
    assert len(a.istag()) <= 34 and a.istag().startswith('"')


def test_gicap_plugins_lists_plugins_and_services() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gicap", "plugins", "--settings", str(SETTINGS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "echo" in out.stdout and "echo-req" in out.stdout and "RESPMOD" in out.stdout


def test_two_plugins_offering_one_service_name_stop_the_start() -> None:
    """Found in each worker after the fork, it crash-looped the workers and then
    exited 0 (systemd saw a clean stop): it is found before anything is forked."""
    from gicap.cli import _start_problems

    @hookimpl
    def first(settings: Settings) -> list[Service]:
        return [_Hello()]

    @hookimpl
    def second(settings: Settings) -> list[Service]:
        return [_Hello()]

    host = create_plugin_host(
        load_entry_points=False,
        extra=[("first", _plugin("first", first)), ("second", _plugin("second", second))],
    )
    assert _start_problems(Settings(), host) == [
        "service name 'hello' is offered by two plugins: first and second"
    ]


def test_gicap_plugins_notes_types_claimed_twice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An engine claiming csv without tryfirst was listed but never asked (gicap-text
    answers first), and nothing said so."""
    import argparse

    from gicap import cli

    @hookimpl
    def gicap_file_types() -> list[str]:
        return ["csv"]

    @hookimpl
    def gicap_disarm(request: object) -> None:
        return None

    mine = types.ModuleType("mycsv")
    mine.gicap_file_types = gicap_file_types  # type: ignore[attr-defined]
    mine.gicap_disarm = gicap_disarm  # type: ignore[attr-defined]
    real = cli.create_plugin_host
    monkeypatch.setattr(cli, "create_plugin_host", lambda: real(extra=[("mycsv", mine)]))
    cli.cmd_plugins(argparse.Namespace(settings=str(SETTINGS)))
    out = capsys.readouterr().out
    assert "note: file type csv is claimed by " in out and "mycsv" in out, out
    assert "tryfirst=True" in out


def test_an_engine_installed_changes_the_cdr_services_istag() -> None:
    """A proxy keeps answers while the ISTag stays: installing an engine for a type
    another engine already claimed left it unchanged."""
    from gicap.services.cdr import CDRService

    @hookimpl
    def gicap_file_types() -> list[str]:
        return ["csv"]

    mine = types.ModuleType("mycsv")
    mine.gicap_file_types = gicap_file_types  # type: ignore[attr-defined]
    before = CDRService("resp-cdr-service", "RESPMOD", Settings(), create_plugin_host())
    host = create_plugin_host(extra=[("mycsv", mine)])
    after = CDRService("resp-cdr-service", "RESPMOD", Settings(), host)
    assert before.istag() != after.istag()
    again = CDRService("resp-cdr-service", "RESPMOD", Settings(), create_plugin_host())
    assert again.istag() == before.istag()


_STAMP_PLUGIN = '''
"""A third-party engine with a file family and a policy switch of its own."""
from gicap import hookimpl
from gicap.cdr.types import Action, DisarmResult, FileType

STAMP = FileType("stamp", "stamp", "application/x-stamp", "stamp")


@hookimpl
def gicap_policy_switches():
    return {"stamp": ["signatures"]}


@hookimpl
def gicap_file_types():
    return ["stamp"]


@hookimpl(tryfirst=True)
def gicap_detect_file_type(head, path, declared):
    return STAMP if head.startswith(b"STAMP1\\n") else None


@hookimpl
def gicap_disarm(request):
    if request.file_type.name != "stamp":
        return None
    lines = request.source.read_bytes().splitlines(keepends=True)
    signed = [ln for ln in lines if ln.startswith(b"SIG:")]
    action = request.switches["signatures"]
    if signed and action == "disallow":
        return DisarmResult("blocked", reason="signatures are disallowed")
    if action == "sanitise":
        lines = [ln for ln in lines if not ln.startswith(b"SIG:")]
    request.destination.write_bytes(b"".join(lines))
    done = "kept" if action == "allow" else "removed"
    return DisarmResult("rebuilt", [Action("signatures", done, f"{len(signed)} lines")])
'''


def _install_on_path(site: Path) -> None:
    """The stamp plugin as pip installs a distribution: a module and a .dist-info
    whose entry points name it (found by importlib.metadata on ``sys.path``)."""
    site.mkdir()
    (site / "gicap_stamp_test.py").write_text(_STAMP_PLUGIN)
    info = site / "gicap_stamp_test-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gicap-stamp-test\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gicap]\nstamp-test = gicap_stamp_test\n")


def _gicap(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gicap", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_a_third_party_engine_gets_the_policy_switches_it_declares(tmp_path: Path) -> None:
    """A plugin declares a family and its switches; profiles set them like the built-in
    ones, a misspelled one is refused, and the engine reads them in request.switches."""
    site = tmp_path / "site"
    _install_on_path(site)
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    settings = tmp_path / "settings.toml"
    text = SETTINGS.read_text()
    settings.write_text(text + '\n[policy.strict.stamp]\nsignatures = "disallow"\n')

    listed = _gicap(["plugins", "--settings", str(settings)], env)
    assert listed.returncode == 0, listed.stderr
    assert "stamp-test" in listed.stdout and "stamp: signatures" in listed.stdout

    # Without the plugin the table is unknown; with it a misspelled switch is refused.
    unknown = _gicap(["check", "--settings", str(settings)], {})
    assert unknown.returncode == 2 and "policy.strict: unknown key(s) stamp" in unknown.stderr
    typo = tmp_path / "typo.toml"
    typo.write_text(text + '\n[policy.strict.stamp]\nsignaturez = "disallow"\n')
    refused = _gicap(["check", "--settings", str(typo)], env)
    assert refused.returncode == 2
    assert "policy.strict.stamp: unknown switch(es) signaturez; known: signatures" in (
        refused.stderr
    )

    proc = GicapProcess(tmp_path, {**env, "GICAP_CDR__WORKERS": "1"}, settings=settings).start()
    try:
        data = b"STAMP1\nhello\nSIG: alice\n"
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
        with ICAPClient(f"{proc.url}/resp-cdr-service") as c:
            default = c.respmod(data, res_head=head, allow_204=False)
        assert default.status == 200 and default.body == b"STAMP1\nhello\n", default
        with ICAPClient(f"{proc.url}/resp-cdr-service?profile=strict") as c:
            strict = c.respmod(data, res_head=head, allow_204=False)
        assert b" 403 " in strict.http_response.split(b"\r\n", 1)[0], strict
        assert b"signatures are disallowed" in strict.body
    finally:
        proc.stop()


def test_plugins_piped_into_a_reader_that_stops_early_is_no_traceback() -> None:
    """`gicap plugins | head -1` ended in a BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gicap", "plugins", "--settings", str(SETTINGS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # (before gicap has imported anything: its first line fails)
    err = proc.stderr.read().decode()
    proc.wait(60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
