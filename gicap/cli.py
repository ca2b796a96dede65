"""Command line: ``gicap serve | check | plugins``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from urllib.parse import quote

from gicap import __version__
from gicap.cdr.policy import SWITCHES
from gicap.config import Settings, SettingsError, load_settings, machine_problems
from gicap.obs.logging import setup_logging
from gicap.plugins import PluginHost, create_plugin_host

log = logging.getLogger("gicap")


def _load(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.settings)
    except SettingsError as exc:
        print(f"gicap: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from gicap.server.master import remember_hangups, serve

    remember_hangups()
    settings = _load(args)
    try:
        setup_logging(settings.logging.level, settings.logging.format, settings.logging.file)
    except OSError as exc:
        print(f"gicap: cannot open logging.file: {exc}", file=sys.stderr)
        return 2
    log.info(
        "gicap %s starting with settings from %s",
        __version__,
        settings.describe_source(),
    )
    host = create_plugin_host()
    for name, err in host.failed.items():
        log.error("plugin %s not loaded: %s", name, err)
    problems = _start_problems(settings, host)
    if problems:
        for problem in problems:
            log.critical("cannot start: %s", problem)
        return 2
    try:
        return serve(settings, host)
    except OSError as exc:
        log.critical("cannot start: %s", exc)
        return 1


def _start_problems(settings: Settings, host: PluginHost) -> list[str]:
    """What stops the server before it listens: the machine (see machine_problems) and
    the plugins' services (two offering one name)."""
    problems = machine_problems(settings)
    try:
        host.services(settings)
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    """Settings, then what serve would meet on this machine: exit 2 when it would not
    start, 1 when Secure ICAP would stay off, else 0."""
    settings = _load(args)
    setup_logging("CRITICAL")
    problems = _start_problems(settings, create_plugin_host())
    if problems:
        for problem in problems:
            print(f"gicap: {problem}", file=sys.stderr)
        return 2
    print(f"# settings from {settings.describe_source()}: valid")
    print(json.dumps(settings.as_dict(), indent=2, default=str))
    cert = settings.certificate
    if settings.server.secure_port and not any(
        os.path.exists(f) for f in (cert.certfile, cert.keyfile) if f
    ):
        print(f"# Secure ICAP: off until {cert.certfile} and {cert.keyfile} are installed")
    elif settings.server.secure_port:
        from gicap.tls.certset import CertificateError, load_certificate_set

        try:
            load_certificate_set(settings.certificate)
        except (CertificateError, OSError, ValueError) as exc:
            print(f"gicap: Secure ICAP would stay off: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    settings = _load(args)
    setup_logging("WARNING")
    host = create_plugin_host()
    services = host.services(settings)
    claims: dict[str, list[str]] = {}
    for impl in host.manager.hook.gicap_file_types.get_hookimpls():
        try:
            claims[impl.plugin_name] = list(impl.function() or [])
        except Exception as exc:
            host.failed[impl.plugin_name] = f"gicap_file_types raised {exc!r}"
    print("plugins:")
    for name, module in sorted(host.loaded.items()):
        types = f"  file types: {', '.join(claims[name])}" if claims.get(name) else ""
        print(f"  {name:20} {module}{types}")
    for name, err in sorted(host.failed.items()):
        print(f"  {name:20} FAILED: {err}")
    # (pluggy asks the implementations in the reverse order of this list)
    asked = [i.plugin_name for i in reversed(host.manager.hook.gicap_disarm.get_hookimpls())]
    by_type: dict[str, list[str]] = {}
    for name, types in claims.items():
        for ftype in types:
            by_type.setdefault(ftype, []).append(name)
    for ftype, names in sorted(by_type.items()):
        if len(names) > 1:
            first = min(names, key=lambda n: asked.index(n) if n in asked else len(asked))
            print(
                f"  note: file type {ftype} is claimed by {', '.join(sorted(names))}: "
                f"{first} is asked first (mark gicap_disarm tryfirst=True to go first)"
            )
    declared = host.policy_switches()
    added = {f: n for f, n in declared.items() if tuple(SWITCHES.get(f, ())) != n}
    if added:
        print("policy switches declared by plugins ([policy.NAME.FAMILY]):")
        for family, names in sorted(added.items()):
            print(f"  {family}: {', '.join(n for n in names if n not in SWITCHES.get(family, ()))}")
    print("services:")
    for name, svc in sorted(services.items()):
        print(f"  {name:20} {svc.method:8} ISTag {svc.istag()}  {svc.description}")
    return 1 if host.failed else 0


def cmd_certs_dev(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gicap.tls.devcerts import generate_dev_set, squid_config

    port = args.port
    if port is None:
        # the Secure ICAP port the settings give (the environment's included)
        try:
            port = load_settings(None).server.secure_port or 11344
        except SettingsError:
            port = 11344
    directory = Path(args.directory)
    paths = generate_dev_set(directory, hosts=args.host or None)
    print(f"Development certificates written to {directory.resolve()}:")
    for role, path in paths.items():
        print(f"  {role:12} {path}")
    print("\nStart gicap with them:")
    d = directory.resolve()
    print(
        f"  GICAP_CERTIFICATE__CERTFILE={d}/tls-server-cert "
        f"GICAP_CERTIFICATE__KEYFILE={d}/tls-server-key "
        f"GICAP_CERTIFICATE__CAFILE={d}/tls-cafile gicap serve"
    )
    print("\nsquid.conf (squid-openssl) lines for Secure ICAP with the client certificate:")
    for line in squid_config(d, host="localhost", port=port, service=args.service):
        print("  " + line)
    print(
        "(Squid runs as the proxy user, which must be able to read the client key: see "
        "'Pointing Squid at gicap' in the README. With Squid 5.7 add the delay-pool "
        "lines of the README for downloads over 64 KiB.)"
    )
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    from gicap.client import ICAPClient, ICAPClientError

    if bool(args.cert) != bool(args.key):
        print("gicap client: --cert and --key go together", file=sys.stderr)
        return 2
    for option, path in (
        ("--cert", args.cert),
        ("--key", args.key),
        ("--cafile", args.cafile),
        ("the body file", args.file),
    ):
        if path and not os.path.isfile(path):
            print(f"gicap client: {option} {path}: no such file", file=sys.stderr)
            return 2
    body = None
    if args.file:
        with open(args.file, "rb") as f:
            body = f.read()
    try:
        with ICAPClient(
            args.url,
            cert=args.cert,
            key=args.key,
            cafile=args.cafile,
            timeout=args.timeout,
            server_hostname=args.servername,
        ) as client:
            if body is None and args.method == "OPTIONS":
                result = client.options()
            elif args.method == "REQMOD":
                result = client.reqmod(body, preview=args.preview, allow_204=not args.no204)
            else:
                # the download as a browser would fetch the file: by its name
                name = quote(os.path.basename(args.file)) if args.file else "file"
                req_head = f"GET http://origin.example/{name} HTTP/1.1\r\n"
                req_head += "Host: origin.example\r\n\r\n"
                result = client.respmod(
                    body,
                    req_head=req_head.encode(),
                    preview=args.preview,
                    allow_204=not args.no204,
                )
    except (OSError, ICAPClientError) as exc:
        hint = ""
        closed = isinstance(exc, ssl.SSLError | ConnectionError) or "closed by the server" in str(
            exc
        )
        if args.url.startswith("icaps://") and not args.cert and closed:
            # (TLS 1.3 servers refuse a client without a certificate after the
            # handshake: the client only sees the connection end, "EOF occurred")
            hint = " (a Secure ICAP server that requires a client certificate ends the "
            hint += "connection this way: give yours with --cert and --key)"
        print(f"gicap client: {exc}{hint}", file=sys.stderr)
        return 1
    sys.stdout.write(result.raw_head.decode("latin-1"))
    if result.http_request:
        sys.stdout.write(result.http_request.decode("latin-1"))
    if result.http_response:
        sys.stdout.write(result.http_response.decode("latin-1"))
    if result.body is not None:
        if args.output:
            with open(args.output, "wb") as f:
                f.write(result.body)
            print(f"[{len(result.body)} body bytes written to {args.output}]")
        else:
            print(f"[{len(result.body)} body bytes]")
    return 0 if result.status < 400 else 1


EXIT_BLOCKED = 3


def cmd_disarm(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from gicap.cdr.report import BLOCKED, REBUILT
    from gicap.services.cdr import CDRService

    settings = _load(args)
    setup_logging("WARNING")
    source = Path(args.input)
    if not source.is_file():
        print(f"gicap disarm: {source}: no such file", file=sys.stderr)
        return 2
    try:
        profile = settings.policy.profile(args.profile)
    except KeyError:
        known = ", ".join(sorted(settings.policy.profiles))
        print(f"gicap disarm: unknown profile {args.profile!r}; profiles: {known}", file=sys.stderr)
        return 2
    from dataclasses import replace

    # One file: one isolated worker process is enough.
    settings = replace(settings, cdr=replace(settings.cdr, workers=1))
    service = CDRService("resp-cdr-service", "RESPMOD", settings, create_plugin_host())
    service.start()
    try:
        with tempfile.TemporaryDirectory(
            prefix="gicap-disarm-", dir=settings.server.spool_dir or None
        ) as tmp:
            report = service.disarm_path(source, Path(tmp), profile)
            if args.output and report.outcome != BLOCKED:
                if report.outcome == REBUILT and report.body is not None:
                    with report.body, open(args.output, "wb") as out:
                        shutil.copyfileobj(report.body, out)
                else:
                    shutil.copyfile(source, args.output)
            elif report.body is not None:
                report.body.close()
    finally:
        service.stop()
    data = report.as_dict()
    data["output"] = args.output if args.output and report.outcome != BLOCKED else None
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"{source}: {report.outcome}")
        print(
            f"  type: {report.file_type or 'unknown'}"
            + (f" -> {report.output_type}" if report.output_type else "")
        )
        print(f"  profile: {report.profile}")
        for action in report.actions:
            detail = f" ({action['detail']})" if action.get("detail") else ""
            print(f"  {action['switch']}: {action['action']}{detail}")
        if report.reason:
            print(f"  reason: {report.reason}")
        if data["output"]:
            print(f"  written to {args.output}")
    return EXIT_BLOCKED if report.outcome == BLOCKED else 0


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
    certs = sub.add_parser("certs", help="certificate tools").add_subparsers(
        dest="certs_command", required=True
    )
    dev = certs.add_parser("dev", help="write a development CA, server and client certificate")
    dev.add_argument("directory", metavar="DIR")
    dev.add_argument(
        "--host",
        action="append",
        help="extra host name for the server "
        "certificate (localhost, 127.0.0.1 and this host's name are included)",
    )
    dev.add_argument(
        "--port",
        type=int,
        default=None,
        help="Secure ICAP port in the Squid lines printed (default: server.secure_port)",
    )
    dev.add_argument(
        "--service",
        default="resp-cdr-service",
        help="service in the Squid lines printed (default: resp-cdr-service)",
    )
    dev.set_defaults(func=cmd_certs_dev)
    dis = sub.add_parser(
        "disarm",
        help="disarm one file with the CDR engines and print "
        "the report (exit 0 delivered, 3 blocked)",
    )
    dis.add_argument("input", metavar="IN")
    dis.add_argument("-o", "--output", metavar="OUT", help="where to write the delivered file")
    dis.add_argument(
        "--profile", default=None, help="policy profile (default: cdr.default_profile)"
    )
    dis.add_argument("--json", action="store_true", help="print the report as JSON")
    dis.add_argument("--settings", metavar="PATH", help="settings file")
    dis.set_defaults(func=cmd_disarm)
    cl = sub.add_parser("client", help="send an ICAP request and print the response")
    cl.add_argument("url", help="icap://HOST:PORT/SERVICE or icaps://HOST:PORT/SERVICE")
    cl.add_argument("file", nargs="?", help="body to send (RESPMOD by default)")
    cl.add_argument("--method", choices=["OPTIONS", "RESPMOD", "REQMOD"], default=None)
    cl.add_argument("--cert", help="client certificate (PEM) for icaps://")
    cl.add_argument("--key", help="client key (PEM) for icaps://")
    cl.add_argument("--cafile", help="CA that signed the server certificate")
    cl.add_argument(
        "--servername",
        help="name the server certificate must carry (default: the URI's host), as "
        "Squid's tls-domain=; for an icaps:// URI naming an address",
    )
    cl.add_argument("--preview", type=int, default=None, help="send a preview of N bytes")
    cl.add_argument("--no204", action="store_true", help="do not offer Allow: 204")
    cl.add_argument("-o", "--output", help="write the returned body to this file")
    cl.add_argument("--timeout", type=float, default=30)
    cl.set_defaults(func=cmd_client)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "func", None) is cmd_client and args.method is None:
        args.method = "RESPMOD" if args.file else "OPTIONS"
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`gicap plugins | head`): no traceback. Python would
        # write the rest of stdout at exit and fail again: it goes nowhere instead.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
