"""`make bench`: gicap's echo against c-icap's echo, same client, same load, side by side.

Both servers run at once on loopback (the idle one costs nothing) and every case is run
against each in turn, in ABBA order over the rounds so that drift on the machine does not
favour either; the best round of each server is reported. Cases: RESPMOD keep-alive with
1 KiB and 64 KiB bodies in plain ICAP, then over mTLS (client certificate required), and
a new-TLS-connection-per-request run (handshake rate).

Exit status: 0 when every run was clean, whatever the ratios (this is a report); 1 when a
run had errors or a server failed to start.

    python -m bench.run [--seconds 4] [--rounds 2] [--tls | --no-tls] [-P 2 -C 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import _proc
from bench.cicap import CIcap
from bench.gicapserver import Gicap
from bench.icapload import LoadConfig, LoadResult, run_load
from bench.pki import Pki, generate

KIB = 1024


@dataclass(frozen=True)
class Case:
    label: str
    body: int
    tls: bool = False
    new_connection: bool = False
    target: float | None = None  # minimum gicap/c-icap req/s ratio, None = informative


CASES = [
    Case("plain keep-alive", 1 * KIB, target=0.5),
    Case("plain keep-alive", 64 * KIB, target=0.8),
    Case("mTLS keep-alive", 1 * KIB, tls=True),
    Case("mTLS keep-alive", 64 * KIB, tls=True, target=0.8),
    Case("mTLS new-conn", 1 * KIB, tls=True, new_connection=True),
]


@dataclass
class Row:
    server: str
    case: Case
    result: LoadResult | None = None  # best round
    server_cpu: float = 0.0  # cores used by the server's process tree in that round
    errors: int = 0  # over all rounds
    samples: list[str] = field(default_factory=list)
    failure: str = ""  # server did not start / case skipped


class Server:
    """A started server (c-icap or gicap) or the reason it is not there."""

    def __init__(self, name: str, handle: CIcap | Gicap | None, failure: str = "") -> None:
        self.name = name
        self.handle = handle
        self.failure = failure

    @property
    def has_tls(self) -> bool:
        return self.handle is not None and self.handle.tls_port is not None


def start(
    stack: ExitStack, name: str, factory: Callable[[Pki | None], CIcap | Gicap], pki: Pki | None
) -> tuple[Server, str]:
    """Start with TLS when a PKI is given; fall back to plain (with the reason) if that fails."""
    try:
        return Server(name, stack.enter_context(factory(pki))), ""
    except (_proc.ServerFailed, OSError, ssl.SSLError) as exc:
        if pki is None:
            return Server(name, None, f"failed to start: {exc}"), ""
        tls_failure = f"{exc}"
    try:
        return Server(name, stack.enter_context(factory(None))), tls_failure
    except (_proc.ServerFailed, OSError, ssl.SSLError) as exc:
        return Server(name, None, f"failed to start: {exc}"), tls_failure


def measure(server: Server, case: Case, args: argparse.Namespace, pki: Pki | None) -> Row:
    """One round of one case against one server."""
    handle = server.handle
    assert handle is not None
    port = handle.tls_port if case.tls else handle.port
    assert port is not None
    cfg = LoadConfig(
        port=port,
        tls=case.tls,
        certfile=str(pki.client_cert) if pki and case.tls else None,
        keyfile=str(pki.client_key) if pki and case.tls else None,
        cafile=str(pki.cafile) if pki and case.tls else None,
        body_size=case.body,
        processes=args.processes,
        connections=args.connections,
        seconds=args.seconds,
        warmup=args.warmup,
        new_connection=case.new_connection,
    )
    marks: dict[str, float] = {}

    def probe(when: str) -> None:
        marks[when] = _proc.tree_cpu_seconds(handle.pid)

    result = run_load(cfg, probe)
    cpu = (marks.get("end", 0.0) - marks.get("start", 0.0)) / result.elapsed
    if cpu < 0:
        cpu = float("nan")  # processes of the server died during the window
    return Row(server.name, case, result, cpu, result.errors, list(result.error_samples))


def merge(best: Row | None, new: Row) -> Row:
    """Keep the faster round, add up the errors of all rounds."""
    if best is None:
        return new
    assert best.result is not None and new.result is not None
    errors = best.errors + new.errors
    samples = (best.samples + new.samples)[:8]
    keep = new if new.result.rps > best.result.rps else best
    keep.errors, keep.samples = errors, samples
    return keep


def size_label(n: int) -> str:
    return f"{n // KIB} KiB" if n % KIB == 0 else f"{n} B"


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'server':<7} {'mode':<17} {'body':>6} {'req/s':>9} {'MB/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'srv CPU':>7} {'cli CPU':>7}"
    )
    print(head)
    print("-" * len(head))
    for row in rows:
        lead = f"{row.server:<7} {row.case.label:<17} {size_label(row.case.body):>6}"
        r = row.result
        if r is None:
            print(f"{lead} {row.failure.splitlines()[0][:80]}")
            continue
        print(
            f"{lead} {r.rps:>9,.0f} {r.mbps:>7.1f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{row.errors:>6} {row.server_cpu:>7.2f} {r.client_cpu:>7.2f}".replace("nan", "n/a")
        )


def print_ratios(rows: list[Row]) -> None:
    print(f"\n{'case':<25} {'gicap/c-icap':>12}  target")
    for case in CASES:
        pair = {r.server: r for r in rows if r.case == case}
        c, g = pair.get("c-icap"), pair.get("gicap")
        name = f"{case.label} {size_label(case.body)}"
        target = f">= {case.target:.1f}" if case.target is not None else "-"
        if not (c and g and c.result and g.result and c.result.rps > 0):
            print(f"{name:<25} {'n/a':>12}  {target}")
            continue
        ratio = g.result.rps / c.result.rps
        if case.target is not None:
            target += " met" if ratio >= case.target else " MISSED"
        print(f"{name:<25} {ratio:>12.2f}  {target}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    ap.add_argument("--rounds", type=int, default=2, help="runs per case and server (best kept)")
    ap.add_argument("-P", "--processes", type=int, default=2, help="load processes")
    ap.add_argument("-C", "--connections", type=int, default=4, help="connections per process")
    tls = ap.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="mTLS cases are required")
    tls.add_argument("--no-tls", action="store_true", help="plain ICAP only")
    ap.add_argument("--only", choices=["c-icap", "gicap"], help="run one server only")
    ap.add_argument("--key-type", choices=["ec", "rsa"], default="ec", help="PKI key type")
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args(argv)

    failed = False
    rows: list[Row] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-pki-") as keys:
        pki = None if args.no_tls else generate(Path(keys), args.key_type)
        servers: list[Server] = []
        factories: list[tuple[str, Callable[[Pki | None], CIcap | Gicap]]] = [
            ("c-icap", lambda k: CIcap(pki=k)),
            ("gicap", lambda k: Gicap(pki=k)),
        ]
        for name, factory in factories:
            if args.only and args.only != name:
                continue
            server, tls_failure = start(stack, name, factory, pki)
            servers.append(server)
            if server.failure:
                failed = True
                print(f"{name}: {server.failure}", file=sys.stderr)
            elif tls_failure:
                failed = failed or args.tls
                print(f"{name}: TLS listener failed, plain only: {tls_failure}", file=sys.stderr)

        cases = [c for c in CASES if not (c.tls and args.no_tls)]
        busy = _proc.machine_busy()
        if busy > 0.10:
            print(
                f"# WARNING: {busy:.0%} of the CPUs were busy with other work before the "
                "bench started: absolute figures will be low and noisy (ratios less so).",
                flush=True,
            )
        print(
            f"# {os.cpu_count()} CPUs, Python {platform.python_version()}, {ssl.OPENSSL_VERSION}"
            f"; load: {args.processes} processes x {args.connections} connections, "
            f"{args.warmup:g}s warm-up + {args.seconds:g}s, best of {args.rounds}",
            flush=True,
        )
        for case in cases:
            best: dict[str, Row | None] = {s.name: None for s in servers}
            for rnd in range(max(1, args.rounds)):
                order = servers if rnd % 2 == 0 else servers[::-1]
                for server in order:
                    if server.handle is None:
                        continue
                    if case.tls and not server.has_tls:
                        continue
                    best[server.name] = merge(best[server.name], measure(server, case, args, pki))
            for server in servers:
                row = best[server.name]
                if row is None:
                    why = server.failure or "no TLS listener (skipped)"
                    row = Row(server.name, case, failure=why)
                elif row.errors:
                    failed = True
                rows.append(row)
            done = rows[-len(servers) :]
            for row in done:
                if row.result is not None:
                    print("  " + row.result.summary(), flush=True)
        # The logs live in the servers' temp dirs: show what went wrong before they go.
        for server in servers:
            if server.handle is not None and any(r.errors for r in rows if r.server == server.name):
                print(f"\n--- {server.name} log, warnings and errors (last 20) ---")
                print(_proc.log_excerpt(server.handle.log))

    print()
    print_table(rows)
    print_ratios(rows)
    print(
        "\nreq/s and MB/s (body bytes echoed, 10^6) from the best round; CPU columns are "
        "cores in use during that round (server process tree, load client)."
    )
    for row in rows:
        for sample in row.samples:
            print(f"error {row.server} {row.case.label} {size_label(row.case.body)}: {sample}")
    if args.json:
        payload = [
            {
                "server": r.server,
                "case": asdict(r.case),
                "result": asdict(r.result) if r.result else None,
                "rps": r.result.rps if r.result else None,
                "server_cpu": r.server_cpu,
                "errors": r.errors,
                "failure": r.failure,
            }
            for r in rows
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
