"""Command line: ``gicap serve | check | plugins``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from gicap import __version__
from gicap.config import Settings, SettingsError, load_settings
from gicap.obs.logging import setup_logging
from gicap.plugins import create_plugin_host

log = logging.getLogger("gicap")


def _load(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.settings)
    except SettingsError as exc:
        print(f"gicap: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load(args)
    setup_logging(settings.logging.level)
    log.info(
        "gicap %s starting with settings from %s",
        __version__,
        settings.source or "built-in defaults",
    )
    host = create_plugin_host()
    for name, err in host.failed.items():
        log.error("plugin %s not loaded: %s", name, err)
    from gicap.server.master import serve

    try:
        return serve(settings, host)
    except OSError as exc:
        log.critical("cannot start: %s", exc)
        return 1


def cmd_check(args: argparse.Namespace) -> int:
    settings = _load(args)
    print(f"# settings from {settings.source or 'built-in defaults'}: valid")
    print(json.dumps(settings.as_dict(), indent=2, default=str))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    settings = _load(args)
    setup_logging("WARNING")
    host = create_plugin_host()
    services = host.services(settings)
    print("plugins:")
    for name, module in sorted(host.loaded.items()):
        print(f"  {name:20} {module}")
    for name, err in sorted(host.failed.items()):
        print(f"  {name:20} FAILED: {err}")
    print("services:")
    for name, svc in sorted(services.items()):
        print(f"  {name:20} {svc.method:8} ISTag {svc.istag()}  {svc.description}")
    return 1 if host.failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gicap", description="ICAP server with Secure ICAP and CDR")
    p.add_argument("--version", action="version", version=f"gicap {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, fn, text in (
        ("serve", cmd_serve, "run the server"),
        ("check", cmd_check, "validate the settings and print the effective values"),
        ("plugins", cmd_plugins, "list plugins and the services they offer"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument(
            "--settings",
            metavar="PATH",
            help="settings file (default: /etc/gicap/settings.toml if it exists, "
            "else the shipped settings.toml)",
        )
        sp.set_defaults(func=fn)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
