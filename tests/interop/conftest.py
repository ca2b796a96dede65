"""Fixtures of the interop suite (helpers live in harness.py).

* `gicap_server(env=None, workers=1)` / `cicap_server()` -- function-scoped factories
  returning a running `IcapServer` (`.port`, `.url(service)`, `.respmod_service`,
  `.reqmod_service`, `.log_path`, `.stop()`); gicap must exit 0 on SIGTERM at teardown.
* `server` -- module-scoped, parametrized "gicap" | "cicap": one echo server per module.
* `origin` -- session-scoped HTTP/1.1 origin (`.file_url(n)`, `.upload_url`, `.uploads`).
* `squid(icap_service_lines, extra_conf=(), files={}, adaptation_access=True)` --
  function-scoped factory returning a running `Squid` (`.port`, `.proxy_url`, `.proxies`,
  `.cache_log`, `.icap_log`, `.files`, `.stop()`).

The logs of every process still running when a test fails are attached to its report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    SERVER_KINDS,
    IcapServer,
    Origin,
    ServerFactory,
    Squid,
    SquidFactory,
    active_logs,
    log_tail,
    start_cicap,
    start_echo_server,
    start_gicap,
    start_origin,
    start_squid,
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for label, path in active_logs():
            report.sections.append((f"interop log {label}: {path}", log_tail(path)))


@pytest.fixture
def gicap_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory: gicap_server(env={...}, workers=1) -> IcapServer, stopped at teardown."""
    with contextlib.ExitStack() as stack:
        count = 0

        def factory(env: Mapping[str, str] | None = None, *, workers: int = 1) -> IcapServer:
            nonlocal count
            count += 1
            workdir = tmp_path / f"gicap{count}"
            return stack.enter_context(start_gicap(workdir, env, workers=workers))

        yield factory


@pytest.fixture
def cicap_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Factory: cicap_server() -> IcapServer running c-icap's echo, stopped at teardown."""
    with contextlib.ExitStack() as stack:
        count = 0

        def factory() -> IcapServer:
            nonlocal count
            count += 1
            return stack.enter_context(start_cicap(tmp_path / f"cicap{count}"))

        yield factory


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IcapServer]:
    """One echo ICAP server per module and kind: gicap, and c-icap as the reference peer."""
    kind: str = request.param
    with start_echo_server(kind, tmp_path_factory.mktemp(kind)) as srv:
        yield srv


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    """Threaded HTTP/1.1 origin: GET /files/<n> for n in FILE_SIZES, POST /upload -> JSON
    {"sha256", "length", "chunked"} of the received body."""
    with start_origin() as org:
        yield org


@pytest.fixture
def squid() -> Iterator[SquidFactory]:
    """Factory: squid(icap_service_lines, extra_conf=(), files={}, adaptation_access=True)."""
    with contextlib.ExitStack() as stack:

        def factory(icap_services: Sequence[str], **kwargs: Any) -> Squid:
            return stack.enter_context(start_squid(icap_services, **kwargs))

        yield factory
