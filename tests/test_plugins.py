"""The plugin host: entry points, built-ins registered like plugins, failures reported."""

from __future__ import annotations

import subprocess
import sys
import types

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
