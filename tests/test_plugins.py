"""The plugin host: entry points, built-ins registered like plugins, failures reported."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from gicap import hookimpl
from gicap.config import Settings
from gicap.plugins import create_plugin_host
from gicap.services.base import Service, Transaction, Unmodified
from tests.support import ROOT, SETTINGS


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
