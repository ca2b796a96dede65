"""CDRRunner with real worker processes and real resource limits (no mocks)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from gicap.cdr.runner import CDRRunner, JobResult, RunnerLimits

JOB = "tests.cdr.jobs:run"
INIT = "tests.cdr.jobs:setup"
ROOT = Path(__file__).resolve().parents[2]


def children() -> set[int]:
    """Child processes of this one (zombies included), from /proc, minus the
    multiprocessing resource tracker, which lives as long as the test process."""
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and int(entry.name) != tracker:
            found.add(int(entry.name))
    return found


def exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def make_runner() -> Iterator[type[CDRRunner]]:
    runners: list[CDRRunner] = []

    def make(workers: int = 1, **limits: float) -> CDRRunner:
        options = {"timeout": 2.0, "memory_mb": 512, "cpu_seconds": 10, **limits}
        runner = CDRRunner(
            JOB, workers, RunnerLimits(**options), initializer="tests.cdr.jobs:setup"
        )
        runner.start()
        runners.append(runner)
        return runner

    yield make  # type: ignore[misc]
    for runner in runners:
        runner.stop()


def pid_of(runner: CDRRunner) -> int:
    result = runner.submit(("echo", None))
    assert result.ok, result
    return result.value["pid"]


def test_echo_runs_in_a_worker_after_the_initializer(make_runner) -> None:
    runner = make_runner()
    result = runner.submit(("echo", {"data": b"x" * 3_000_000}))
    assert result.ok and result.value["value"] == {"data": b"x" * 3_000_000}
    assert result.value["pid"] != os.getpid()
    assert result.value["init"] == result.value["pid"]  # setup() ran in that worker


def test_timeout_kills_the_worker_and_a_fresh_one_takes_over(make_runner) -> None:
    runner = make_runner(timeout=1.0)
    before = pid_of(runner)
    started = time.monotonic()
    result = runner.submit(("sleep", 30))
    assert (result.ok, result.failure) == (False, "timeout")
    assert 0.9 < time.monotonic() - started < 3
    assert exited(before)
    assert pid_of(runner) != before
    assert (runner.timeouts, runner.restarts) == (1, 1)


@pytest.mark.parametrize(
    ("job", "detail"),
    [(("exit", 3), "exited with status 3"), (("signal", signal.SIGSEGV), "SIGSEGV")],
)
def test_a_dying_worker_is_reported_and_replaced(make_runner, job, detail) -> None:
    runner = make_runner()
    before = pid_of(runner)
    result = runner.submit(job)
    assert (result.ok, result.failure) == (False, "crashed")
    assert detail in result.detail
    assert pid_of(runner) != before
    assert runner.restarts == 1


def test_memory_limit(make_runner) -> None:
    runner = make_runner(memory_mb=256)
    before = pid_of(runner)
    result = runner.submit(("allocate", 2 * 1024**3))
    assert not result.ok
    assert result.failure in ("memory", "crashed"), result  # the kernel may kill instead
    assert pid_of(runner) != before
    # Within the limit, the same kind of job succeeds.
    assert runner.submit(("allocate", 64 * 1024**2)) == JobResult(True, value=64 * 1024**2)


def test_an_exception_is_an_error_and_the_worker_is_kept(make_runner) -> None:
    runner = make_runner()
    before = pid_of(runner)
    result = runner.submit(("raise", "bad input"))
    assert (result.ok, result.failure, result.detail) == (False, "error", "ValueError: bad input")
    unpicklable = runner.submit(("unpicklable", None))
    assert (unpicklable.failure, "pickle" in unpicklable.detail) == ("error", True)
    assert pid_of(runner) == before
    assert runner.restarts == 0


def test_cpu_limit_stops_a_busy_job(make_runner) -> None:
    runner = make_runner(timeout=60, cpu_seconds=1)
    before = pid_of(runner)
    started = time.monotonic()
    result = runner.submit(("burn", 60))
    assert (result.ok, result.failure) == (False, "timeout")
    assert "CPU limit" in result.detail and "SIGXCPU" in result.detail  # not the wall clock
    assert time.monotonic() - started < 30  # about 2 s, unless the machine is very busy
    # The limit is re-armed per job: a short burn afterwards on the new worker is fine.
    assert runner.submit(("burn", 0.3)).value == "burnt"
    assert pid_of(runner) != before


def test_a_hanging_job_does_not_hold_up_the_others_under_gevent(make_runner) -> None:
    runner = make_runner(workers=2, timeout=3.0)
    assert pid_of(runner) != pid_of(runner)  # both workers up (and distinct)
    start = time.monotonic()
    finished: dict[str, float] = {}
    ticks = []

    def submit(name: str, job: tuple) -> JobResult:
        result = runner.submit(job)
        finished[name] = time.monotonic() - start
        return result

    def ticker() -> None:  # proves the event loop keeps running while jobs wait
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.05)

    tick = gevent.spawn(ticker)
    hang = gevent.spawn(submit, "hang", ("sleep", 30))
    gevent.sleep(0)  # let the hanging job take its worker first
    quick = [gevent.spawn(submit, f"q{i}", ("sleep", 0.1)) for i in range(6)]
    gevent.joinall([hang, *quick], timeout=10)
    tick.kill()

    assert all(g.value.ok for g in quick)
    assert hang.value.failure == "timeout"
    assert max(finished[f"q{i}"] for i in range(6)) < 2.5 < 3 <= finished["hang"]
    assert max(b - a for a, b in zip(ticks, ticks[1:], strict=False)) < 0.5


def test_a_worker_that_cannot_start_is_reported(tmp_path: Path) -> None:
    runner = CDRRunner("tests.cdr.jobs:no_such_job", 1, RunnerLimits(timeout=2))
    runner.start()
    try:
        result = runner.submit(("echo", None))
        assert (result.ok, result.failure) == (False, "crashed")
        assert "worker failed to start" in result.detail and "no_such_job" in result.detail
    finally:
        runner.stop()


def test_stop_leaves_no_child_processes(make_runner) -> None:
    runner = make_runner(workers=2)
    pids = {pid_of(runner), pid_of(runner)}
    busy = gevent.spawn(runner.submit, ("sleep", 30))
    gevent.sleep(0.2)
    started = time.monotonic()
    runner.stop()
    runner.stop()  # safe twice
    assert time.monotonic() - started < 2  # a busy worker is killed, not waited for
    assert busy.get(timeout=2).failure == "crashed"
    assert multiprocessing.active_children() == []
    assert not children() & pids and children() == set()
    with pytest.raises(RuntimeError):
        runner.submit(("echo", None))


def test_workers_exit_when_the_parent_dies() -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from gicap.cdr.runner import CDRRunner, RunnerLimits
        runner = CDRRunner({JOB!r}, 2, RunnerLimits(timeout=5))
        runner.start()
        pids = [runner.submit(("echo", None)).value["pid"] for _ in range(2)]
        print(*pids, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(set(pids)) == 2
    deadline = time.monotonic() + 5
    while not all(exited(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(exited(pid) for pid in pids)


def test_limits_and_lifecycle_are_checked() -> None:
    with pytest.raises(ValueError):
        RunnerLimits(memory_mb=64)
    RunnerLimits(memory_mb=0)  # no limit
    with pytest.raises(RuntimeError):
        CDRRunner(JOB, 1, RunnerLimits()).submit(("echo", None))
