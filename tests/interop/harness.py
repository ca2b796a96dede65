"""Interop harness: real Squid, real c-icap, real curl, and gicap as a process.

Everything listens on 127.0.0.1 only.  The building blocks are context managers
(`start_gicap`, `start_cicap`, `start_squid`, `start_origin`) so that tests can build
stacks at any fixture scope; conftest.py wraps them in fixtures.  Processes register their
log files while they run (`register_log`); conftest attaches them to failing reports.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE = REPO_ROOT / "settings.toml"
LOOPBACK = "127.0.0.1"

KIB = 1024
MIB = 1024 * KIB
#: Sizes served by the origin under /files/<n>.
FILE_SIZES: tuple[int, ...] = (0, 1, KIB, 100 * KIB, 20 * MIB)

START_TIMEOUT = 20.0  # seconds for an ICAP server to answer OPTIONS
SQUID_START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0  # seconds a server gets to exit after SIGTERM
LOG_TAIL_CHARS = 20_000

# Squid lives in sbin, which is not on every PATH.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


# --------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    """Absolute path of an executable, searching PATH and then the sbin directories."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))


def interop_required() -> bool:
    return os.environ.get("GICAP_REQUIRE_INTEROP", "") == "1"


def require(condition: bool, what: str) -> None:
    """Skip (or, with GICAP_REQUIRE_INTEROP=1, fail) when a prerequisite is missing."""
    if condition:
        return
    if interop_required():
        pytest.fail(
            f"interop prerequisite missing: {what} (GICAP_REQUIRE_INTEROP=1)", pytrace=False
        )
    pytest.skip(f"interop prerequisite missing: {what}")


def require_tool(name: str) -> str:
    """Path of binary `name`; skip the test without it, fail instead if GICAP_REQUIRE_INTEROP=1."""
    path = find_tool(name)
    require(path is not None, f"binary {name!r} not found on PATH or in sbin")
    assert path is not None
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


@functools.cache
def payload(size: int) -> bytes:
    """Deterministic pseudo-random bytes of the given size (same for every run)."""
    return random.Random(size).randbytes(size)


@functools.cache
def payload_sha256(size: int) -> str:
    return hashlib.sha256(payload(size)).hexdigest()


def write_payload(directory: Path, size: int) -> Path:
    path = directory / f"payload-{size}.bin"
    if not path.exists():
        path.write_bytes(payload(size))
    return path


def clean_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ without proxy variables (they would reroute curl), plus overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env.update(overrides or {})
    return env


# --------------------------------------------------------------------------- logs on failure

_ACTIVE_LOGS: dict[str, Path] = {}
_LOGS_LOCK = threading.Lock()


def register_log(label: str, path: Path) -> None:
    with _LOGS_LOCK:
        _ACTIVE_LOGS[label] = path


def unregister_log(label: str) -> None:
    with _LOGS_LOCK:
        _ACTIVE_LOGS.pop(label, None)


def active_logs() -> list[tuple[str, Path]]:
    with _LOGS_LOCK:
        return list(_ACTIVE_LOGS.items())


def log_tail(path: Path, limit: int = LOG_TAIL_CHARS) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    text = data[-limit:].decode("utf-8", "replace")
    return text if len(data) <= limit else f"[... {len(data) - limit} bytes cut ...]\n{text}"


# --------------------------------------------------------------------------- processes


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group led by `proc` (started with start_new_session=True)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop_process(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> int | None:
    """Send `sig` to proc, wait `timeout`; on timeout SIGKILL its group. Returns the exit
    status if it exited in time, None if it had to be killed."""
    if proc.poll() is not None:
        _signal_group(proc, signal.SIGKILL)  # leftovers of the group, if any
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        rc: int | None = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    _signal_group(proc, signal.SIGKILL)
    if rc is None:
        proc.wait(5)
    return rc


# --------------------------------------------------------------------------- ICAP probe


@dataclass
class IcapResponse:
    status: int
    status_line: str
    headers: dict[str, list[str]]  # lower-case names

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return ", ".join(values) if values else None


def icap_options(
    port: int, service: str, *, host: str = LOOPBACK, timeout: float = 3.0
) -> IcapResponse:
    """Send one OPTIONS request and parse the response head."""
    request = (
        f"OPTIONS icap://{host}:{port}/{service} ICAP/1.0\r\n"
        f"Host: {host}:{port}\r\n"
        "Encapsulated: null-body=0\r\n"
        "\r\n"
    ).encode("ascii")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    if not lines or not lines[0].startswith("ICAP/"):
        raise ConnectionError(f"not an ICAP response: {data[:200]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return IcapResponse(int(lines[0].split()[1]), lines[0], headers)


# --------------------------------------------------------------------------- ICAP servers


@dataclass
class IcapServer:
    """A running ICAP server process (gicap or c-icap) with echo services."""

    kind: str  # "gicap" | "cicap"
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path  # stdout+stderr of the process
    respmod_service: str = "echo"
    reqmod_service: str = "echo-req"
    extra_logs: list[Path] = field(default_factory=list)
    stop_timeout: float = STOP_TIMEOUT  # seconds after SIGTERM before SIGKILL
    returncode: int | None = None
    stop_seconds: float | None = None
    _stopped: bool = False

    @property
    def host(self) -> str:
        return LOOPBACK

    def url(self, service: str, scheme: str = "icap") -> str:
        return f"{scheme}://{LOOPBACK}:{self.port}/{service}"

    @property
    def log_labels(self) -> list[str]:
        return [f"{self.kind}:{self.port}:{p.name}" for p in [self.log_path, *self.extra_logs]]

    def log_text(self) -> str:
        return log_tail(self.log_path)

    def stop(self) -> int | None:
        """SIGTERM and wait (idempotent). Returns the exit status, None if it had to be killed."""
        if not self._stopped:
            self._stopped = True
            started = time.monotonic()
            self.returncode = _stop_process(self.proc, signal.SIGTERM, self.stop_timeout)
            self.stop_seconds = time.monotonic() - started
        return self.returncode


def _wait_icap_ready(server: IcapServer, service: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(
                f"{server.kind} exited with status {server.proc.returncode} during startup\n"
                f"--- {server.log_path} ---\n{server.log_text()}",
                pytrace=False,
            )
        try:
            response = icap_options(server.port, service, timeout=2.0)
            if response.status == 200:
                return
            last_error = response.status_line
        except OSError as exc:
            last_error = repr(exc)
        time.sleep(0.1)
    server.stop()
    pytest.fail(
        f"{server.kind} not ready on port {server.port} after {START_TIMEOUT}s ({last_error})\n"
        f"--- {server.log_path} ---\n{server.log_text()}",
        pytrace=False,
    )


@contextlib.contextmanager
def _running(server: IcapServer, check_exit: bool) -> Iterator[IcapServer]:
    paths = [server.log_path, *server.extra_logs]
    for label, path in zip(server.log_labels, paths, strict=True):
        register_log(label, path)
    try:
        yield server
    except BaseException:
        server.stop()
        raise
    else:
        rc = server.stop()
        if check_exit and rc != 0:
            what = "was killed: no exit" if rc is None else f"exited with status {rc}"
            pytest.fail(
                f"{server.kind} {what} within {server.stop_timeout}s of SIGTERM\n"
                f"--- {server.log_path} ---\n{server.log_text()}",
                pytrace=False,
            )
    finally:
        for label in server.log_labels:
            unregister_log(label)


@contextlib.contextmanager
def start_gicap(
    workdir: Path, env: Mapping[str, str] | None = None, *, workers: int = 1
) -> Iterator[IcapServer]:
    """Run `python -m gicap serve` on a free loopback port; SIGTERM on exit, which must
    make it exit 0 within STOP_TIMEOUT seconds (checked unless the body raised)."""
    workdir.mkdir(parents=True, exist_ok=True)
    spool = workdir / "spool"
    spool.mkdir(exist_ok=True)
    port = free_port()
    overrides = {
        "GICAP_SERVER__HOST": LOOPBACK,
        "GICAP_SERVER__PORT": str(port),
        "GICAP_SERVER__SECURE_PORT": "0",
        "GICAP_SERVER__WORKERS": str(workers),
        "GICAP_SERVER__SPOOL_DIR": str(spool),
        "GICAP_METRICS__PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    overrides.update(env or {})
    log_path = workdir / f"gicap-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gicap", "serve", "--settings", str(SETTINGS_FILE)],
            cwd=REPO_ROOT,
            env=clean_env(overrides),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = IcapServer("gicap", port, proc, log_path)
    with _running(server, check_exit=True):
        _wait_icap_ready(server, server.respmod_service)
        yield server


def cicap_modules_dir() -> Path | None:
    """Directory holding c-icap's srv_echo.so (GICAP_CICAP_MODULES_DIR overrides)."""
    candidates: list[Path] = []
    if env_dir := os.environ.get("GICAP_CICAP_MODULES_DIR"):
        candidates.append(Path(env_dir))
    if dpkg := shutil.which("dpkg"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            listing = subprocess.run(
                [dpkg, "-L", "c-icap"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
            candidates += [Path(p).parent for p in listing.split() if p.endswith("/srv_echo.so")]
    for pattern in (
        "usr/lib/*/c_icap",
        "usr/lib/c_icap",
        "usr/local/lib/c_icap",
        "usr/lib64/c_icap",
    ):
        candidates += sorted(Path("/").glob(pattern))
    return next((c for c in candidates if (c / "srv_echo.so").is_file()), None)


@contextlib.contextmanager
def start_cicap(workdir: Path) -> Iterator[IcapServer]:
    """Run c-icap in the foreground with its echo service (RESPMOD and REQMOD on /echo)."""
    binary = require_tool("c-icap")
    modules = cicap_modules_dir()
    require(modules is not None, "c-icap module srv_echo.so (set GICAP_CICAP_MODULES_DIR)")
    assert modules is not None
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / f"c-icap-{port}.conf"
    server_log = workdir / f"c-icap-{port}-server.log"
    conf.write_text(
        "\n".join(
            [
                f"PidFile {workdir}/c-icap-{port}.pid",
                f"CommandsSocket {workdir}/c-icap-{port}.ctl",
                f"Port {LOOPBACK}:{port}",
                "StartServers 1",
                "MaxServers 2",
                "MinSpareThreads 5",
                "MaxSpareThreads 20",
                "ThreadsPerChild 10",
                "Timeout 60",
                "KeepAliveTimeout 120",
                f"TmpDir {workdir}",
                f"ModulesDir {modules}",
                f"ServicesDir {modules}",
                f"ServerLog {server_log}",
                f"AccessLog {workdir}/c-icap-{port}-access.log",
                "DebugLevel 1",
                "Service echo srv_echo.so",
                "",
            ]
        )
    )
    log_path = workdir / f"c-icap-{port}.out"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "-f", str(conf), "-N", "-D"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = IcapServer(
        "cicap",
        port,
        proc,
        log_path,
        respmod_service="echo",
        reqmod_service="echo",
        extra_logs=[server_log],
        # c-icap waits ~10 s for idle keep-alive clients (Squid's) before exiting.
        stop_timeout=2.0,
    )
    with _running(server, check_exit=False):
        _wait_icap_ready(server, "echo")
        yield server


def start_echo_server(
    kind: str, workdir: Path, **opts: Any
) -> contextlib.AbstractContextManager[IcapServer]:
    if kind == "gicap":
        return start_gicap(workdir, **opts)
    if kind == "cicap":
        return start_cicap(workdir, **opts)
    raise ValueError(kind)


ServerFactory = Callable[..., IcapServer]


SERVER_KINDS = ("gicap", "cicap")


# --------------------------------------------------------------------------- HTTP origin


@dataclass
class Upload:
    length: int
    sha256: str
    chunked: bool


class _OriginServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    uploads: list[Upload]
    requests: list[tuple[str, str]]


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gicap-test-origin/1"
    timeout = 60
    server: _OriginServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: bytes, content_type: str, head_only: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _get(self, head_only: bool) -> None:
        self.server.requests.append((self.command, self.path))
        prefix = "/files/"
        if self.path.startswith(prefix) and self.path[len(prefix) :].isdigit():
            size = int(self.path[len(prefix) :])
            if size in FILE_SIZES:
                self._send(200, payload(size), "application/octet-stream", head_only)
                return
        self._send(404, b"not found\n", "text/plain", head_only)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._get(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._get(head_only=True)

    def _read_chunked(self, digest: Any) -> int:
        total = 0
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("EOF in chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return total
            remaining = size
            while remaining:
                data = self.rfile.read(min(remaining, MIB))
                if not data:
                    raise ConnectionError("EOF in chunk")
                digest.update(data)
                remaining -= len(data)
            total += size
            self.rfile.readline(3)  # CRLF after chunk data

    def do_POST(self) -> None:  # noqa: N802
        self.server.requests.append((self.command, self.path))
        digest = hashlib.sha256()
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked:
            length = self._read_chunked(digest)
        else:
            length = remaining = int(self.headers.get("Content-Length", "0"))
            while remaining:
                data = self.rfile.read(min(remaining, MIB))
                if not data:
                    raise ConnectionError("EOF in body")
                digest.update(data)
                remaining -= len(data)
        if self.path != "/upload":
            self._send(404, b"not found\n", "text/plain")
            return
        upload = Upload(length, digest.hexdigest(), chunked)
        self.server.uploads.append(upload)
        body = json.dumps({"sha256": upload.sha256, "length": length, "chunked": chunked}).encode()
        self._send(200, body, "application/json")


@dataclass
class Origin:
    port: int
    uploads: list[Upload]
    requests: list[tuple[str, str]]

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def file_url(self, size: int) -> str:
        return f"{self.base_url}/files/{size}"

    @property
    def upload_url(self) -> str:
        return f"{self.base_url}/upload"


@contextlib.contextmanager
def start_origin() -> Iterator[Origin]:
    httpd = _OriginServer((LOOPBACK, 0), _OriginHandler)
    httpd.uploads = []
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, name="interop-origin", daemon=True)
    thread.start()
    try:
        yield Origin(int(httpd.server_address[1]), httpd.uploads, httpd.requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- curl


@dataclass
class CurlResult:
    status: int  # 0 when no HTTP response
    headers: dict[str, str]  # last response's headers, lower-case names
    body: bytes  # only when no output file was given
    returncode: int
    stderr: str


def _parse_header_dump(raw: str) -> dict[str, str]:
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers: dict[str, str] = {}
    for line in blocks[-1].split("\n")[1:] if blocks else []:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def curl(
    url: str,
    *,
    proxy: str | None = None,
    output: Path | None = None,
    extra: Sequence[str] = (),
    timeout: float = 60.0,
) -> CurlResult:
    """Run the real curl binary once; never raises on HTTP errors."""
    binary = require_tool("curl")
    with tempfile.TemporaryDirectory(prefix="gicap-curl-") as scratch:
        header_file = Path(scratch) / "headers"
        body_file = output or Path(scratch) / "body"
        args = [binary, "-sS", "--max-time", str(timeout), "-D", str(header_file)]
        args += ["-o", str(body_file), "-w", "%{http_code}"]
        args += ["-x", proxy] if proxy else ["--noproxy", "*"]
        args += [*extra, url]
        proc: subprocess.CompletedProcess[bytes] | None
        try:
            proc = subprocess.run(args, capture_output=True, timeout=timeout + 10, env=clean_env())
        except subprocess.TimeoutExpired:
            proc = None
        if proc is None:
            pytest.fail(f"curl hung for {timeout + 10}s: {args}", pytrace=False)
        raw_headers = header_file.read_text("latin-1") if header_file.exists() else ""
        body = b"" if output or not body_file.exists() else body_file.read_bytes()
    code = proc.stdout.decode().strip()
    return CurlResult(
        status=int(code) if code.isdigit() else 0,
        headers=_parse_header_dump(raw_headers),
        body=body,
        returncode=proc.returncode,
        stderr=proc.stderr.decode("utf-8", "replace"),
    )


def curl_upload(
    url: str, data: Path, *, proxy: str | None = None, chunked: bool = False, timeout: float = 60.0
) -> CurlResult:
    """POST a file with Content-Length (or chunked) and no Expect: 100-continue."""
    extra = ["--data-binary", f"@{data}", "-H", "Content-Type: application/octet-stream"]
    extra += ["-H", "Expect:"]
    if chunked:
        extra += ["-H", "Transfer-Encoding: chunked"]
    return curl(url, proxy=proxy, extra=extra, timeout=timeout)


# --------------------------------------------------------------------------- Squid


def icap_service_line(name: str, vectoring_point: str, uri: str, **options: str) -> str:
    """`icap_service NAME VECTORING_POINT URI key=value...` (bypass defaults to off)."""
    opts = {"bypass": "off", **options}
    return " ".join(
        ["icap_service", name, vectoring_point, uri, *(f"{k}={v}" for k, v in opts.items())]
    )


def _squid_user() -> pwd.struct_passwd | None:
    for name in ("proxy", "squid", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


@dataclass
class Squid:
    port: int
    dir: Path  # readable by the Squid user; holds config, logs and copied files
    conf_path: Path
    cache_log: Path
    access_log: Path
    icap_log: Path
    output_log: Path
    proc: subprocess.Popen[bytes]
    files: dict[str, Path]  # name -> copy inside `dir`, readable by the Squid user

    @property
    def proxy_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def proxies(self) -> dict[str, str]:
        return {"http": self.proxy_url, "https": self.proxy_url}

    def stop(self) -> None:
        _stop_process(self.proc, signal.SIGTERM, STOP_TIMEOUT)
        _kill_strays(self.conf_path)
        pid_file = self.dir / "squid.pid"
        pid_file.unlink(missing_ok=True)


def _kill_strays(conf_path: Path) -> None:
    """SIGKILL any process still running with our config file (helpers Squid forked)."""
    marker = str(conf_path).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)


def _check_traversable(path: Path) -> None:
    """As root, Squid drops to its user: every ancestor must be world-searchable."""
    for ancestor in path.parents:
        if not ancestor.stat().st_mode & stat.S_IXOTH:
            pytest.fail(f"{ancestor} is not world-searchable; Squid's user cannot reach {path}")


@contextlib.contextmanager
def start_squid(
    icap_services: Sequence[str],
    *,
    extra_conf: Sequence[str] = (),
    files: Mapping[str, Path] | None = None,
    adaptation_access: bool = True,
) -> Iterator[Squid]:
    """Run Squid in the foreground with the given `icap_service` lines.

    Each service gets `adaptation_access NAME allow all` unless adaptation_access=False.
    `files` (e.g. a client certificate and key for icaps://) are copied into the Squid
    directory, owned by Squid's user; their copies are in `Squid.files`.  The token
    `{files}` in `icap_services` and `extra_conf` lines is replaced by that directory, so
    a line can name a copy before Squid starts (`tls-key={files}/client-key.pem`).
    """
    binary = require_tool("squid")
    workdir = Path(tempfile.mkdtemp(prefix="gicap-squid-"))
    as_root = os.geteuid() == 0
    user = _squid_user() if as_root else None
    workdir.chmod(0o755)
    if as_root:
        _check_traversable(workdir)
    if user is not None:
        os.chown(workdir, user.pw_uid, user.pw_gid)
    copied: dict[str, Path] = {}
    for name, src in (files or {}).items():
        dst = workdir / name
        shutil.copyfile(src, dst)
        dst.chmod(0o600)
        if user is not None:
            os.chown(dst, user.pw_uid, user.pw_gid)
        copied[name] = dst

    icap_services = [line.replace("{files}", str(workdir)) for line in icap_services]
    extra_conf = [line.replace("{files}", str(workdir)) for line in extra_conf]
    port = free_port()
    conf = workdir / "squid.conf"
    cache_log = workdir / "cache.log"
    access_log = workdir / "access.log"
    icap_log = workdir / "icap.log"
    names = [line.split()[1] for line in icap_services]
    lines = [
        f"http_port {LOOPBACK}:{port}",
        f"pid_filename {workdir}/squid.pid",
        f"cache_log {cache_log}",
        f"access_log stdio:{access_log}",
        f"icap_log stdio:{icap_log} icap_squid",
        "cache_store_log none",
        f"coredump_dir {workdir}",
        "netdb_filename none",
        "pinger_enable off",
        "visible_hostname gicap-interop",
        *([f"cache_effective_user {user.pw_name}"] if user is not None else []),
        "cache deny all",
        "cache_mem 8 MB",
        "http_access allow localhost",
        "http_access deny all",
        "icap_enable on",
        "icap_persistent_connections on",
        "icap_service_failure_limit -1",
        *icap_services,
        *([f"adaptation_access {n} allow all" for n in names] if adaptation_access else []),
        "shutdown_lifetime 1 seconds",
        *extra_conf,
        "",
    ]
    conf.write_text("\n".join(lines))
    output_log = workdir / "squid.out"
    with output_log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-f", str(conf), "-N", "-d1"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    squid = Squid(port, workdir, conf, cache_log, access_log, icap_log, output_log, proc, copied)
    labels = {f"squid:{port}:{p.name}": p for p in (cache_log, icap_log, access_log)}
    for label, path in labels.items():
        register_log(label, path)
    try:
        _wait_squid_ready(squid)
        yield squid
    finally:
        squid.stop()
        for label in labels:
            unregister_log(label)
        if os.environ.get("GICAP_INTEROP_KEEP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


def _wait_squid_ready(squid: Squid) -> None:
    deadline = time.monotonic() + SQUID_START_TIMEOUT
    while time.monotonic() < deadline:
        for log in (squid.output_log, squid.cache_log):
            with contextlib.suppress(OSError):
                if b"Accepting HTTP" in log.read_bytes():
                    return
        if squid.proc.poll() is not None:
            break
        time.sleep(0.05)
    status = squid.proc.poll()
    squid.stop()
    pytest.fail(
        f"Squid not ready after {SQUID_START_TIMEOUT}s (exit status {status})\n"
        f"--- {squid.output_log} ---\n{log_tail(squid.output_log)}",
        pytrace=False,
    )


SquidFactory = Callable[..., Squid]


# --------------------------------------------------------------------------- c-icap-client


@dataclass
class CicapClientResult:
    """What c-icap-client printed with -v: sections such as "OPTIONS", "ICAP HEADERS",
    "RESPMOD HEADERS", "REQMOD HEADERS", each a list of lines (tab stripped)."""

    returncode: int
    output: str
    sections: dict[str, list[str]]

    @property
    def status_line(self) -> str:
        lines = self.sections.get("ICAP HEADERS", [])
        return lines[0] if lines else ""

    @property
    def status(self) -> int:
        """ICAP status; for errors c-icap-client prints no headers, only (with -d 3 or
        more) "Response was with status:405", which is used as a fallback."""
        parts = self.status_line.split()
        if len(parts) > 1 and parts[1].isdigit():
            return int(parts[1])
        found = re.findall(r"[Rr]esponse was with status:\s*(\d{3})", self.output)
        return int(found[-1]) if found else 0

    def icap_header(self, name: str) -> str | None:
        """Value of an ICAP response header (case-insensitive; repeated ones joined)."""
        return _header_value(self.sections.get("ICAP HEADERS", [])[1:], name)

    def http_head(self) -> list[str]:
        """Encapsulated HTTP header lines (start line first) of the response, if any."""
        for key in ("RESPMOD HEADERS", "REQMOD HEADERS"):
            if key in self.sections:
                return self.sections[key]
        return []


def _header_value(lines: Sequence[str], name: str) -> str | None:
    values = [
        value.strip()
        for hname, sep, value in (line.partition(":") for line in lines)
        if sep and hname.strip().lower() == name.lower()
    ]
    return ", ".join(values) if values else None


def parse_cicap_client_output(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("\t") and current is not None:
            current.append(line[1:].rstrip("\r"))
        elif line and not line[0].isspace() and line.rstrip().endswith(":") and line[0].isupper():
            # later sections of the same name (REQMOD HEADERS after a 204) overwrite
            current = sections[line.rstrip()[:-1]] = []
        else:
            current = None
    return sections


def cicap_client(
    port: int,
    service: str,
    *args: str,
    host: str = LOOPBACK,
    timeout: float = 30.0,
) -> CicapClientResult:
    """Run `c-icap-client -i HOST -p PORT -s SERVICE -v ARGS...` (no -f: OPTIONS).

    c-icap-client writes its report to stderr, and refuses an -o file that already exists.
    """
    binary = require_tool("c-icap-client")
    argv = [binary, "-i", host, "-p", str(port), "-s", service, "-v", *args]
    proc: subprocess.CompletedProcess[bytes] | None
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        proc = None
    if proc is None:
        pytest.fail(f"c-icap-client hung for {timeout}s: {argv}", pytrace=False)
    output = proc.stdout.decode("utf-8", "replace")
    return CicapClientResult(proc.returncode, output, parse_cicap_client_output(output))
