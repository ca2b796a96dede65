"""The plugin manager: built by a factory, never at import time."""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from gicap import hookspecs

if TYPE_CHECKING:
    from gicap.config import Settings
    from gicap.services.base import Service

log = logging.getLogger("gicap.plugins")

ENTRY_POINT_GROUP = "gicap"
#: Built-in plugins, also declared as entry points; listed here so a source checkout
#: that is not installed still has them.
BUILTIN_PLUGINS = {
    "echo": "gicap.services.echo",
    "cdr": "gicap.services.cdr",
    "detect": "gicap.cdr.detect",
    "response": "gicap.cdr.response",
}


@dataclass
class PluginHost:
    manager: pluggy.PluginManager
    #: name -> "module" of each plugin loaded.
    loaded: dict[str, str] = field(default_factory=dict)
    #: name -> error message of each plugin that failed to load.
    failed: dict[str, str] = field(default_factory=dict)
    #: name -> version of the distribution of each plugin loaded from an entry point.
    versions: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """The plugins loaded, with their versions: what a service's answers depend on
        besides its settings (an engine installed or upgraded changes them)."""
        return ",".join(f"{n}={self.versions.get(n, '')}" for n in sorted(self.loaded))

    def policy_switches(self) -> dict[str, tuple[str, ...]]:
        """Every family's policy switches: the built-in ones and those the plugins
        declare (``gicap_policy_switches``). A plugin that raises or declares
        malformed names is reported (``failed``) and its switches left out."""
        from gicap.cdr.policy import SWITCHES

        merged = {family: list(names) for family, names in SWITCHES.items()}
        for impl in self.manager.hook.gicap_policy_switches.get_hookimpls():
            try:
                declared = _declared_switches(impl.function())
            except Exception as exc:
                self.failed[impl.plugin_name] = f"gicap_policy_switches: {exc}"
                log.error("plugin %s: gicap_policy_switches: %s", impl.plugin_name, exc)
                continue
            for family, names in declared.items():
                have = merged.setdefault(family, [])
                have.extend(n for n in names if n not in have)
        return {family: tuple(names) for family, names in merged.items()}

    def services(self, settings: Settings) -> dict[str, Service]:
        """Collect the services of every plugin; a plugin that raises is reported."""
        found: dict[str, Service] = {}
        offered_by: dict[str, str] = {}
        available = {"settings": settings, "host": self}
        # Called one implementation at a time so a plugin that raises is reported and
        # the others still register.
        for impl in self.manager.hook.gicap_register_services.get_hookimpls():
            name = impl.plugin_name
            try:
                services = list(impl.function(**{a: available[a] for a in impl.argnames}) or [])
            except Exception as exc:
                self.failed[name] = f"gicap_register_services raised {exc!r}"
                log.error("plugin %s failed to register its services: %r", name, exc)
                continue
            for svc in services:
                if svc.name in found:
                    raise ValueError(
                        f"service name {svc.name!r} is offered by two plugins: "
                        f"{offered_by[svc.name]} and {name}"
                    )
                found[svc.name] = svc
                offered_by[svc.name] = name
        return found


_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _declared_switches(declared: Any) -> dict[str, list[str]]:
    """A plugin's ``gicap_policy_switches`` answer, checked: family -> switch names."""
    if not isinstance(declared, Mapping):
        raise ValueError(f"must return a mapping of family to switch names, not {declared!r}")
    out: dict[str, list[str]] = {}
    for family, names in declared.items():
        if not isinstance(family, str) or not _NAME.fullmatch(family):
            raise ValueError(f"family {family!r} is not a lower-case name")
        if isinstance(names, str) or not all(
            isinstance(n, str) and _NAME.fullmatch(n) for n in names
        ):
            raise ValueError(f"switches of {family} must be a list of lower-case names")
        out[family] = list(names)
    return out


@functools.cache
def installed_policy_switches() -> dict[str, tuple[str, ...]]:
    """:meth:`PluginHost.policy_switches` of the plugins installed (read once per
    process: what a settings file may name)."""
    return create_plugin_host().policy_switches()


def create_plugin_host(
    *, load_entry_points: bool = True, extra: Iterable[tuple[str, Any]] = ()
) -> PluginHost:
    pm = pluggy.PluginManager("gicap")
    pm.add_hookspecs(hookspecs)
    host = PluginHost(pm)
    if load_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:
                host.failed[ep.name] = f"{type(exc).__name__}: {exc}"
                log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
                continue
            host.loaded[ep.name] = ep.value
            host.versions[ep.name] = ep.dist.version if ep.dist is not None else ""
    for name, module in BUILTIN_PLUGINS.items():
        if pm.has_plugin(name) or name in host.failed:
            continue
        try:
            pm.register(importlib.import_module(module), name=name)
        except Exception as exc:
            host.failed[name] = f"{type(exc).__name__}: {exc}"
            log.error("built-in plugin %s (%s) failed to load: %s", name, module, exc)
            continue
        host.loaded[name] = module
    for name, plugin in extra:
        pm.register(plugin, name=name)
        host.loaded[name] = getattr(plugin, "__name__", repr(plugin))
    return host
