"""Run the reference c-icap server (Debian `c-icap`) with its echo service on loopback.

`with CIcap(tls=pki) as srv:` writes a config into a temporary directory, starts
`c-icap -f CONF -N -D` in the foreground, waits until OPTIONS on /echo answers 200 (over
TLS too when asked) and stops it on exit. Ports are picked free unless given.

The configuration is meant to be a good one for a 2-core machine, not a crippled one:
a fixed pool of children (no spawning or reaping while we measure), more threads than the
benchmark has connections, unlimited keep-alive requests, quiet debug output.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from bench import _proc
from bench.pki import Pki

# Two children (one per core). Each thread of c-icap serves one connection at a time, so
# the pool (2 x 32) is well above the benchmark's connection count; a fixed pool avoids
# children being forked or killed in the middle of a measurement.
DEFAULT_CHILDREN = 2
DEFAULT_THREADS = 32


def find_echo_module() -> Path:
    """srv_echo.so as installed by the c-icap package (its path embeds the multiarch)."""
    override = os.environ.get("CICAP_ECHO_MODULE")
    if override:
        return Path(override)
    try:
        listing = subprocess.run(
            ["dpkg", "-L", "c-icap"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        listing = glob.glob("/usr/lib/*/c_icap/srv_echo.so") + glob.glob(
            "/usr/*/lib/c_icap/srv_echo.so"
        )
    for line in listing:
        if line.endswith("/srv_echo.so"):
            return Path(line)
    raise _proc.ServerFailed("srv_echo.so not found: is the c-icap package installed?")


def find_binary() -> str:
    binary = os.environ.get("CICAP_BINARY") or shutil.which("c-icap")
    if not binary:
        raise _proc.ServerFailed("c-icap binary not found: apt-get install c-icap")
    return binary


def render_config(
    workdir: Path,
    port: int,
    tls_port: int | None,
    pki: Pki | None,
    children: int = DEFAULT_CHILDREN,
    threads: int = DEFAULT_THREADS,
) -> str:
    echo = find_echo_module()
    # Run as whoever we are: as root c-icap stays root in the foreground, as anyone else
    # it could not switch users anyway. The temp dir is ours either way.
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    lines = [
        f"PidFile {workdir}/c-icap.pid",
        f"CommandsSocket {workdir}/c-icap.ctl",
        f"TmpDir {workdir}",
        f"ServerLog {workdir}/server.log",
        f"AccessLog {workdir}/access.log",
        f"ModulesDir {echo.parent}",
        f"ServicesDir {echo.parent}",
        f"User {user}",
        f"Group {group}",
        "Timeout 300",
        # -1: a connection is never closed for having served too many requests; gicap
        # keeps connections open as long as the client wants, so this is like for like.
        "MaxKeepAliveRequests -1",
        "KeepAliveTimeout 600",
        f"StartServers {children}",
        f"MaxServers {children}",
        # Never start or stop children because of spare-thread counts during a run.
        "MinSpareThreads 1",
        f"MaxSpareThreads {children * threads}",
        f"ThreadsPerChild {threads}",
        "MaxRequestsPerChild 0",
        # 64 KiB bodies stay in memory (the echo service streams through a ring anyway).
        "MaxMemObject 1048576",
        "DebugLevel 0",
        "Pipelining on",
        f"Port 127.0.0.1:{port}",
    ]
    if tls_port is not None:
        if pki is None:
            raise ValueError("a TLS port needs certificates")
        # c-icap 0.5.10 syntax (see /etc/c-icap/c-icap.conf, TlsPort): `tls-method=` is
        # deprecated, protocol versions are switched off with tls-options instead.
        # client_ca= turns on client-certificate verification (and is the list of CAs
        # announced to clients); cafile= is the trust store the verification uses —
        # without it c-icap falls back to a relative "root.pem".
        lines.append(
            f"TlsPort 127.0.0.1:{tls_port} cert={pki.server_cert} key={pki.server_key} "
            f"client_ca={pki.cafile} cafile={pki.cafile} "
            "tls-options=SSL_OP_NO_SSLv3|SSL_OP_NO_TLSv1|SSL_OP_NO_TLSv1_1"
        )
    lines.append("Service echo srv_echo.so")
    return "\n".join(lines) + "\n"


class CIcap:
    """Context manager around one c-icap process; `port`, `tls_port`, `pid` once entered."""

    name = "c-icap"

    def __init__(
        self,
        port: int | None = None,
        pki: Pki | None = None,
        tls_port: int | None = None,
        children: int = DEFAULT_CHILDREN,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        self.port = port or _proc.free_port()
        self.pki = pki
        self.tls_port = (tls_port or _proc.free_port()) if pki else None
        self.children = children
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = Path()
        self.log = Path()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> CIcap:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-cicap-")
        self.workdir = Path(self._tmp.name)
        conf = self.workdir / "c-icap.conf"
        conf.write_text(
            render_config(
                self.workdir, self.port, self.tls_port, self.pki, self.children, self.threads
            )
        )
        log = self.log = self.workdir / "stdout.log"
        self.proc = _proc.launch(
            [find_binary(), "-f", str(conf), "-N", "-D"], log, cwd=self.workdir
        )
        try:
            _proc.wait_listeners(self.proc, self.port, self.tls_port, self.pki, log)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            _proc.stop(self.proc)
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


if __name__ == "__main__":
    # Manual check: start c-icap, print where it listens, wait for Enter.
    import sys

    from bench.pki import generate

    with tempfile.TemporaryDirectory() as d:
        keys = generate(Path(d)) if "--tls" in sys.argv else None
        with CIcap(pki=keys) as srv:
            print(f"c-icap pid {srv.pid} port {srv.port} tls_port {srv.tls_port} "
                  f"workdir {srv.workdir} pki {d}")  # fmt: skip
            input("Enter stops it ")
