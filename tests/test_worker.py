"""The worker in this process: run_worker in a thread, burst, tick, resolution of names, leases, the CLI.

Multi-process scenarios (signals, kill -9, several workers on one file) live in tests/chaos/.
Nothing here sleeps to wait: handlers and tests meet on Events, and conditions are polled
with a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import jobkit
from jobkit.errors import StoreError, UnknownJobError
from jobkit.model import JobRecord, JobStatus, ResetReport, new_id, utc_now
from jobkit.store import Store
from jobkit.worker import Report, Resolver, load_registry, main, merge, run_worker, tick, tick_handler
from tests import worker_jobs
from tests.conftest import TIMEOUT, FakeClock, poll, wait_until

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


# -- helpers --------------------------------------------------------------------------
def record(store: Store, job_id: str) -> JobRecord:
    found = store.get(job_id)
    assert found is not None, job_id
    return found


def status_is(store: Store, job_id: str, status: JobStatus) -> Callable[[], bool]:
    return lambda: record(store, job_id).status is status


def raw_job(name: str, params: str = "{}", **fields: Any) -> JobRecord:
    """A pending record as any writer could store it: no spec needed, so names and params can be wrong."""
    now = utc_now()
    values: dict[str, Any] = {"scheduled_for": now, "created_at": now, "updated_at": now, **fields}
    return JobRecord(id=new_id(), job_name=name, params=params, status=PENDING, **values)


def handler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(("jobkit-handler", "jobkit-async"))}


class Background:
    """run_worker in a daemon thread, as a notebook runs it; stopped with its Event."""

    def __init__(self, store: Store, registry: jobkit.Registry | None = None, **options: Any) -> None:
        self.stop_event = threading.Event()
        self._outcome: list[Report | BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(store, registry, options), daemon=True)

    def _run(self, store: Store, registry: jobkit.Registry | None, options: dict[str, Any]) -> None:
        try:
            self._outcome.append(run_worker(store, registry, stop=self.stop_event, **options))
        except BaseException as exc:
            self._outcome.append(exc)

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        self.thread.join(TIMEOUT)

    def returned(self, timeout: float = TIMEOUT) -> Report:
        """The report, once the worker returns by itself within *timeout*."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.stop_event.set()
            self.thread.join(TIMEOUT)
            pytest.fail(f"the worker did not return within {timeout}s")
        (outcome,) = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def stop(self) -> Report:
        self.stop_event.set()
        return self.returned()


@pytest.fixture
def dead_event_loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """For a test whose worker's event loop thread dies: contain what it leaves behind.

    A dead loop's tasks format tracebacks from their finalizers when collected. On Python
    3.11 that calls ast.parse, which breaks a pytest ast.parse it interrupts ("AST constructor
    recursion depth mismatch", an INTERNALERROR that ends the whole session). So the thread's
    exception is noted by name only (pytest's hook would keep the tasks alive until the next
    test), and the test collects the garbage itself, before it asserts anything.
    """
    crashed: list[str] = []

    def note(args: threading.ExceptHookArgs) -> None:
        crashed.append(f"{getattr(args.thread, 'name', '?')}: {args.exc_type.__name__}")

    monkeypatch.setattr(threading, "excepthook", note)
    yield crashed
    gc.collect()


def burst(store: Store, registry: jobkit.Registry | None = None, *, within: float = TIMEOUT, **options: Any) -> Report:
    """run_worker(burst=True), bounded in time."""
    with Background(store, registry, burst=True, **options) as bg:
        return bg.returned(within)


# -- run_worker in a thread, as a notebook runs it -------------------------------------
def test_a_worker_in_a_thread_picks_up_jobs_enqueued_while_it_runs(store: Store) -> None:
    with Background(store, worker_jobs.jobs) as bg:
        first = worker_jobs.add.later({"a": 1, "b": 1}, store)
        wait_until(status_is(store, first, COMPLETED), "the first job")
        later = [worker_jobs.add.later({"a": n, "b": 10}, store) for n in range(5)]
        for job_id in later:
            wait_until(status_is(store, job_id, COMPLETED), f"job {job_id}")
        assert bg.thread.is_alive()
        report = bg.stop()
    assert [record(store, job_id).result for job_id in [first, *later]] == ["2", "10", "11", "12", "13", "14"]
    assert report == Report(claimed=6, completed=6)
    assert all(record(store, job_id).attempt_count == 1 for job_id in later)


def test_an_idle_worker_stops_soon_after_its_event_is_set(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    idle = threading.Event()
    next_due = store.next_due

    def noting_idle(names: Collection[str] | None = None) -> datetime | None:
        due = next_due(names)
        idle.set()  # an idle worker asks when the next job is due, then waits
        return due

    monkeypatch.setattr(store, "next_due", noting_idle)
    with Background(store, worker_jobs.jobs, poll_interval=2.0) as bg:
        assert idle.wait(TIMEOUT)
        bg.stop_event.set()
        assert bg.returned(0.5) == Report()


def test_a_store_that_is_not_healthy_stops_the_worker_at_start() -> None:
    class Broken(jobkit.MemoryStore):
        def health(self) -> tuple[bool, str]:
            return False, "disk on fire"

    with pytest.raises(StoreError, match="disk on fire"):
        run_worker(Broken(), worker_jobs.jobs, burst=True)


@pytest.mark.parametrize(
    "options",
    [{"concurrency": 0}, {"lock_timeout": 0}, {"poll_interval": 0}, {"grace": -1}],
    ids=["concurrency", "lock_timeout", "poll_interval", "grace"],
)
def test_run_worker_refuses_nonsense_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options)).split("_")[0]):
        run_worker(jobkit.MemoryStore(), worker_jobs.jobs, burst=True, **options)


# -- burst -------------------------------------------------------------------------------
def test_burst_returns_when_nothing_is_due_and_counts_what_it_did(store: Store) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:flaky", max_attempts=2, retry_backoff=0)
    def flaky(params: int, ctx: jobkit.Context) -> int:
        raise ValueError(f"no good: {params}")

    registry.register(worker_jobs.add)
    done = worker_jobs.add.later_many([{"a": n} for n in range(3)], store)
    failing = flaky.later(1, store)
    not_yet = worker_jobs.add.later({"a": 9}, store, delay=3600)

    report = burst(store, registry)

    assert report == Report(claimed=5, completed=3, retried=1, failed=1)
    assert [record(store, job_id).status for job_id in done] == [COMPLETED] * 3
    assert (record(store, failing).status, record(store, failing).attempt_count) == (FAILED, 2)
    assert (record(store, not_yet).status, record(store, not_yet).attempt_count) == (PENDING, 0)


def test_burst_on_an_empty_store_returns_an_empty_report(store: Store) -> None:
    assert burst(store, worker_jobs.jobs) == Report()
    assert burst(store) == Report()


# -- retries and failures ------------------------------------------------------------------
def test_a_failing_job_is_retried_then_failed_with_its_error_and_traceback(store: Store) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:always_fails", max_attempts=3, retry_backoff=0)
    def always_fails(params: int, ctx: jobkit.Context) -> int:
        raise ValueError(f"bad input {params}")

    job_id = always_fails.later(7, store)
    report = burst(store, registry)

    assert report == Report(claimed=3, retried=2, failed=1)
    job = record(store, job_id)
    assert (job.status, job.attempt_count, job.error) == (FAILED, 3, "ValueError: bad input 7")
    assert job.traceback is not None
    assert "Traceback (most recent call last)" in job.traceback
    assert "always_fails" in job.traceback
    assert job.traceback.rstrip().endswith("ValueError: bad input 7")
    assert job.completed_at is not None and job.result is None


def test_a_job_that_fails_once_then_succeeds_completes_on_its_second_attempt(store: Store) -> None:
    registry = jobkit.Registry()
    attempts: list[int] = []

    @registry.job(name="t:second_time_lucky", retry_backoff=0)
    def second_time_lucky(params: int, ctx: jobkit.Context) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("flaky network")
        return params * 2

    job_id = second_time_lucky.later(21, store)
    assert burst(store, registry) == Report(claimed=2, retried=1, completed=1)
    job = record(store, job_id)
    assert (job.status, job.attempt_count, job.result, job.error, job.traceback) == (COMPLETED, 2, "42", None, None)
    assert attempts == [1, 2]


def test_a_retry_waits_for_its_backoff(store: Store) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:backs_off", max_attempts=3, retry_backoff=lambda attempt: 60.0 * attempt)
    def backs_off(params: int, ctx: jobkit.Context) -> int:
        if ctx.attempt < 3:
            raise TimeoutError(f"attempt {ctx.attempt}")
        return params

    job_id = backs_off.later(5, store)
    t = utc_now() + timedelta(seconds=1)

    assert tick(store, registry, now=t) == Report(claimed=1, retried=1)
    job = record(store, job_id)
    assert (job.status, job.scheduled_for, job.error) == (PENDING, t + timedelta(seconds=60), "TimeoutError: attempt 1")

    assert tick(store, registry, now=t + timedelta(seconds=59)) == Report()
    assert tick(store, registry, now=t + timedelta(seconds=60)) == Report(claimed=1, retried=1)
    assert record(store, job_id).scheduled_for == t + timedelta(seconds=180)

    assert tick(store, registry, now=t + timedelta(seconds=179)) == Report()
    assert tick(store, registry, now=t + timedelta(seconds=180)) == Report(claimed=1, completed=1)
    assert (record(store, job_id).status, record(store, job_id).attempt_count) == (COMPLETED, 3)


def test_the_exponential_backoff_is_about_base_times_two_to_the_attempt(store: Store) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:exponential", max_attempts=3, retry_backoff=10.0)
    def exponential(params: int, ctx: jobkit.Context) -> int:
        raise OSError("down")

    job_id = exponential.later(1, store)
    t = utc_now() + timedelta(seconds=1)
    tick(store, registry, now=t)
    first = record(store, job_id).scheduled_for - t
    assert timedelta(seconds=7.5) <= first <= timedelta(seconds=12.5)
    t2 = t + first
    assert tick(store, registry, now=t2) == Report(claimed=1, retried=1)
    second = record(store, job_id).scheduled_for - t2
    assert timedelta(seconds=15) <= second <= timedelta(seconds=25)


def test_a_handler_under_run_worker_with_a_fake_clock_is_retried_when_the_clock_says(
    store: Store, clock: FakeClock
) -> None:
    registry = jobkit.Registry()
    calls: list[datetime] = []

    @registry.job(name="t:clocked", max_attempts=2, retry_backoff=lambda attempt: 30.0)
    def clocked(params: int, ctx: jobkit.Context) -> int:
        calls.append(ctx.now())
        if len(calls) == 1:
            raise RuntimeError("not yet")
        return params

    clock.now = utc_now() + timedelta(seconds=1)
    job_id = clocked.later(3, store)
    report = burst(store, registry, clock=clock)
    assert report == Report(claimed=1, retried=1)
    assert record(store, job_id).scheduled_for == clock.now + timedelta(seconds=30)

    clock.advance(30)
    assert burst(store, registry, clock=clock) == Report(claimed=1, completed=1)
    assert calls == [clock.now - timedelta(seconds=30), clock.now]


# -- async handlers ---------------------------------------------------------------------------
def test_async_handlers_run_together_on_one_event_loop(store: Store) -> None:
    registry = jobkit.Registry()
    started: set[int] = set()

    @registry.job(name="t:together", max_attempts=1)
    async def together(params: int, ctx: jobkit.Context) -> str:
        started.add(params)
        deadline = time.monotonic() + TIMEOUT
        while len(started) < 2:  # each waits for the other: only concurrent runs get past this
            if time.monotonic() > deadline:
                raise TimeoutError("the other async job never started")
            await asyncio.sleep(0.001)
        ctx.progress(50)
        return threading.current_thread().name

    ids = together.later_many([1, 2], store)
    assert burst(store, registry, concurrency=2) == Report(claimed=2, completed=2)
    results = {record(store, job_id).result for job_id in ids}
    assert len(results) == 1, "two async jobs ran on different threads"
    (thread_name,) = results
    assert "jobkit-async" in thread_name


def test_an_async_timeout_is_enforced(store: Store) -> None:
    registry = jobkit.Registry()
    interrupted: list[int] = []

    @registry.job(name="t:too_slow", max_attempts=2, retry_backoff=0, timeout=0.05)
    async def too_slow(params: int, ctx: jobkit.Context) -> int:
        try:
            await asyncio.sleep(TIMEOUT)
        except asyncio.CancelledError:
            interrupted.append(ctx.attempt)
            raise
        return params

    job_id = too_slow.later(1, store)
    report = burst(store, registry)
    assert report == Report(claimed=2, retried=1, failed=1)
    job = record(store, job_id)
    assert job.status is FAILED and job.attempt_count == 2
    assert job.error is not None and "timeout" in job.error.lower()
    assert interrupted == [1, 2]


def test_a_sync_timeout_is_cooperative_ctx_cancelled_becomes_true(store: Store) -> None:
    registry = jobkit.Registry()
    seen: list[bool] = []

    @registry.job(name="t:cooperative", max_attempts=1, timeout=0.2)
    def cooperative(params: int, ctx: jobkit.Context) -> int:
        seen.append(ctx.cancelled)
        seen.append(poll(lambda: ctx.cancelled))
        return params

    job_id = cooperative.later(1, store)
    assert burst(store, registry) == Report(claimed=1, failed=1)
    assert seen == [False, True]
    job = record(store, job_id)
    assert job.status is FAILED
    assert job.error is not None and "timeout" in job.error.lower()


def test_a_sync_handler_that_raises_cancelled_after_its_timeout_has_timed_out(store: Store) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:stops_on_timeout", max_attempts=2, retry_backoff=0, timeout=0.05)
    def stops_on_timeout(params: int, ctx: jobkit.Context) -> int:
        if poll(lambda: ctx.cancelled):
            raise jobkit.Cancelled()
        return params

    job_id = stops_on_timeout.later(1, store)
    report = burst(store, registry)
    job = record(store, job_id)
    assert (job.status, job.attempt_count) == (FAILED, 2)
    assert job.error is not None and "timeout" in job.error.lower()
    assert report == Report(claimed=2, retried=1, failed=1)


# -- progress ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_progress_is_visible_in_the_store_while_the_job_runs(store: Store, kind: str) -> None:
    registry = jobkit.Registry()
    gate = threading.Event()

    def body(ctx: jobkit.Context) -> None:
        ctx.progress(40, "halfway there")

    if kind == "sync":

        @registry.job(name="t:reports")
        def reports(params: int, ctx: jobkit.Context) -> int:
            body(ctx)
            assert gate.wait(TIMEOUT)
            return params

    else:

        @registry.job(name="t:reports")
        async def reports(params: int, ctx: jobkit.Context) -> int:
            body(ctx)
            assert await asyncio.get_running_loop().run_in_executor(None, gate.wait, TIMEOUT)
            return params

    job_id = registry.get("t:reports").later(8, store)  # type: ignore[union-attr]
    with Background(store, registry) as bg:
        wait_until(lambda: record(store, job_id).progress == 40, "the progress write")
        job = record(store, job_id)
        assert (job.status, job.progress_message) == (RUNNING, "halfway there")
        gate.set()
        wait_until(status_is(store, job_id, COMPLETED), "the job to complete")
        assert bg.stop() == Report(claimed=1, completed=1)
    assert record(store, job_id).progress == 100


# -- priorities -----------------------------------------------------------------------------------
def test_higher_priority_jobs_run_first(store: Store) -> None:
    registry = jobkit.Registry()
    ran: list[str] = []

    @registry.job(name="t:ordered")
    def ordered(params: str, ctx: jobkit.Context) -> None:
        ran.append(params)

    for label, priority in [("p0", 0), ("p5-first", 5), ("p-1", -1), ("p10", 10), ("p5-second", 5), ("p0-b", 0)]:
        ordered.later(label, store, priority=priority)
    assert burst(store, registry, concurrency=1) == Report(claimed=6, completed=6)
    assert ran == ["p10", "p5-first", "p5-second", "p0", "p0-b", "p-1"]


# -- which names a worker runs --------------------------------------------------------------------
def test_with_a_registry_other_jobs_are_not_claimed_and_nothing_is_imported(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "tests.worker_lazy", raising=False)
    others = jobkit.Registry()

    @others.job(name="t:someone_elses")
    def someone_elses(params: int, ctx: jobkit.Context) -> int:
        raise AssertionError("a worker ran a job it was not given")

    # Older than ours, so a worker that ignored names would claim them first.
    foreign = someone_elses.later(1, store)
    importable = raw_job("tests.worker_lazy:triple", "2")
    store.add([importable])
    mine = worker_jobs.add.later({"a": 1}, store)

    with Background(store, worker_jobs.jobs) as bg:
        wait_until(status_is(store, mine, COMPLETED), "the registered job")
        report = bg.stop()
    assert report == Report(claimed=1, completed=1)
    for job_id in (foreign, importable.id):
        job = record(store, job_id)
        assert (job.status, job.attempt_count, job.worker_id) == (PENDING, 0, None)
    assert "tests.worker_lazy" not in sys.modules


def test_burst_with_a_registry_returns_while_jobs_of_other_names_are_due(store: Store) -> None:
    foreign = raw_job("somebody.else:job", "1")
    store.add([foreign])
    mine = worker_jobs.add.later({"a": 1}, store)
    report = burst(store, worker_jobs.jobs, within=1.0)
    assert report == Report(claimed=1, completed=1)
    assert record(store, mine).status is COMPLETED
    assert record(store, foreign.id).status is PENDING


def test_without_a_registry_names_are_imported_on_demand(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tests.worker_lazy", raising=False)
    job = raw_job("tests.worker_lazy:triple", "14")
    store.add([job])
    assert burst(store) == Report(claimed=1, completed=1)
    assert record(store, job.id).result == "42"
    assert "tests.worker_lazy" in sys.modules


def test_a_name_that_leads_to_no_spec_fails_alone(store: Store) -> None:
    ok = worker_jobs.add.later_many([{"a": 1}, {"a": 2, "b": 3}], store)
    unknown = {
        "tests.worker_jobs:missing": "no job named 'tests.worker_jobs:missing'",
        "tests.worker_jobs:not_a_spec": "is not a job spec",
        "tests.worker_jobs:alias": "is registered as 'elsewhere:alias'",
        "no_such_module_for_jobkit_tests:f": "cannot import 'no_such_module_for_jobkit_tests'",
        "not-a-module-path": "not of the form 'module:function'",
        "__main__:handler": "__main__",
    }
    records = [raw_job(name, "1", max_attempts=3) for name in unknown]
    store.add(records)

    report = burst(store)

    assert report == Report(claimed=2 + len(unknown), completed=2, failed=len(unknown))
    assert [record(store, job_id).result for job_id in ok] == ["1", "5"]
    for job in records:
        found = record(store, job.id)
        assert (found.status, found.attempt_count) == (FAILED, 1), "an unknown name is not worth retrying"
        assert found.error is not None
        assert f"no job named {job.job_name!r}" in found.error
        assert unknown[job.job_name] in found.error


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        pytest.param(
            "{not json",
            "params",
            id="not-json",
        ),
        pytest.param('{"a": "one"}', "params.a", id="wrong-type"),
        pytest.param('{"b": 1}', "params.a", id="missing-field"),
        pytest.param('{"a": 1, "zzz": 2}', "zzz", id="unknown-field"),
        pytest.param("[1, 2]", "params", id="wrong-shape"),
    ],
)
def test_corrupt_params_fail_alone(store: Store, params: str, complaint: str) -> None:
    good = worker_jobs.add.later({"a": 20, "b": 22}, store)
    corrupt = raw_job(worker_jobs.add.name, params, max_attempts=3)
    store.add([corrupt])

    assert burst(store, worker_jobs.jobs) == Report(claimed=2, completed=1, failed=1)

    assert record(store, good).result == "42"
    job = record(store, corrupt.id)
    assert (job.status, job.attempt_count) == (FAILED, 1)
    assert job.error is not None and complaint in job.error


def test_params_that_break_the_decoder_fail_alone(store: Store) -> None:
    deep = raw_job(worker_jobs.add.name, "[" * 100_000 + "]" * 100_000)
    store.add([deep])
    good = worker_jobs.add.later({"a": 1}, store)
    died = None
    try:
        report = burst(store, worker_jobs.jobs, grace=0.2)
    except RecursionError:  # kept out of the failure: pytest cannot render a traceback this deep
        died = "the worker died of a RecursionError"
    assert died is None
    assert report == Report(claimed=2, completed=1, failed=1)
    assert record(store, good).status is COMPLETED
    assert record(store, deep.id).status is FAILED


# -- BaseException in a handler ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fatal", "error"),
    [(SystemExit(3), "SystemExit: 3"), (KeyboardInterrupt(), "KeyboardInterrupt")],
    ids=["SystemExit", "KeyboardInterrupt"],
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_handler_raising_a_base_exception_is_failed_and_the_worker_goes_on(
    store: Store, fatal: BaseException, error: str, kind: str
) -> None:
    registry = jobkit.Registry().register(worker_jobs.add)
    if kind == "sync":

        @registry.job(name="t:quits", max_attempts=1)
        def quits(params: int, ctx: jobkit.Context) -> int:
            raise fatal

    else:

        @registry.job(name="t:quits", max_attempts=1)
        async def quits(params: int, ctx: jobkit.Context) -> int:
            raise fatal

    doomed = registry.get("t:quits").later(1, store, priority=1)  # type: ignore[union-attr]
    after = worker_jobs.add.later_many([{"a": n} for n in range(3)], store)
    assert burst(store, registry, concurrency=1) == Report(claimed=4, completed=3, failed=1)
    job = record(store, doomed)
    assert (job.status, job.error) == (FAILED, error)
    assert job.traceback is not None and type(fatal).__name__ in job.traceback
    assert [record(store, job_id).status for job_id in after] == [COMPLETED] * 3


def test_an_async_handler_with_a_timeout_raising_system_exit_is_failed(
    store: Store, dead_event_loop: list[str]
) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:quits_in_time", max_attempts=1, timeout=TIMEOUT)
    async def quits_in_time(params: int, ctx: jobkit.Context) -> int:
        raise SystemExit(params)

    @registry.job(name="t:async_after")
    async def async_after(params: int, ctx: jobkit.Context) -> int:
        return params

    doomed = quits_in_time.later(4, store, priority=1)
    after = async_after.later(5, store)
    with Background(store, registry, concurrency=1, poll_interval=0.05, grace=0) as bg:
        finished = poll(
            lambda: (
                bool(dead_event_loop)
                or (record(store, doomed).status is FAILED and record(store, after).status is COMPLETED)
            )
        )
        bg.stop()
    gc.collect()  # now, rather than inside pytest's report of the failure below (see dead_event_loop)
    assert dead_event_loop == []
    assert finished
    assert record(store, doomed).error == "SystemExit: 4"


# -- tick --------------------------------------------------------------------------------------------
def test_tick_on_an_empty_store_does_nothing(store: Store) -> None:
    assert tick(store, worker_jobs.jobs) == Report()
    assert tick(store, now=utc_now()) == Report()
    assert str(Report()) == "0 claimed, 0 completed, 0 failed, 0 retried"


def test_tick_resets_expired_locks_at_its_now_and_runs_them(store: Store) -> None:
    abandoned, waiting = worker_jobs.add.later_many([{"a": 1}, {"a": 2}], store)
    t0 = utc_now()
    assert store.claim_job(abandoned, now=t0, token="dead-worker", lock_until=t0 + timedelta(seconds=30))

    assert tick(store, worker_jobs.jobs, now=t0 + timedelta(seconds=29)) == Report(claimed=1, completed=1)
    assert record(store, abandoned).worker_id == "dead-worker", "a lock that has not expired was reset"
    assert record(store, waiting).status is COMPLETED

    report = tick(store, worker_jobs.jobs, now=t0 + timedelta(seconds=31))
    assert report == Report(reset=1, claimed=1, completed=1)
    job = record(store, abandoned)
    assert (job.status, job.attempt_count, job.result) == (COMPLETED, 2, "1")


def test_tick_fails_an_expired_job_whose_attempts_are_used_up(store: Store) -> None:
    job_id = worker_jobs.add.later({"a": 1}, store, max_attempts=1)
    t0 = utc_now()
    assert store.claim_job(job_id, now=t0, token="dead-worker", lock_until=t0 + timedelta(seconds=30))
    assert tick(store, worker_jobs.jobs, now=t0 + timedelta(minutes=5)) == Report(lost_failed=1)
    job = record(store, job_id)
    assert job.status is FAILED and job.error is not None and job.error.startswith("worker lost")


def test_tick_claims_at_most_its_limit(store: Store) -> None:
    ids = worker_jobs.add.later_many([{"a": n} for n in range(7)], store)
    reports = [tick(store, worker_jobs.jobs, limit=3) for _ in range(4)]
    assert reports == [
        Report(claimed=3, completed=3),
        Report(claimed=3, completed=3),
        Report(claimed=1, completed=1),
        Report(),
    ]
    assert [record(store, job_id).result for job_id in ids] == [str(n) for n in range(7)]


def test_tick_reports_each_kind_of_outcome(store: Store) -> None:
    registry = jobkit.Registry().register(worker_jobs.add).register(worker_jobs.explode)

    @registry.job(name="t:retried", max_attempts=2, retry_backoff=60)
    def retried(params: int, ctx: jobkit.Context) -> int:
        raise RuntimeError("again")

    @registry.job(name="t:stops")
    def stops(params: int, ctx: jobkit.Context) -> int:
        raise jobkit.Cancelled("asked to stop")

    ok = worker_jobs.add.later({"a": 1}, store)
    exploded = worker_jobs.explode.later({"a": 2}, store)
    again = retried.later(3, store)
    cancelled = stops.later(4, store)
    assert tick(store, registry, limit=10) == Report(claimed=4, completed=1, failed=1, retried=1, cancelled=1)
    assert [record(store, job_id).status for job_id in (ok, exploded, again, cancelled)] == [
        COMPLETED,
        FAILED,
        PENDING,
        CANCELLED,
    ]
    assert record(store, exploded).error == "RuntimeError: exploded on 2"


def test_tick_acts_as_its_now_for_due_times(store: Store) -> None:
    job_id = worker_jobs.add.later({"a": 1}, store, delay=3600)
    assert tick(store, worker_jobs.jobs, now=utc_now()) == Report()
    assert tick(store, worker_jobs.jobs, now=utc_now() + timedelta(hours=2)) == Report(claimed=1, completed=1)
    assert record(store, job_id).status is COMPLETED


def test_tick_refuses_a_naive_now(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tick(store, worker_jobs.jobs, now=datetime(2026, 1, 1))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_tick_leaves_no_file_descriptors_open(store: Store) -> None:
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    tick(store, worker_jobs.jobs)  # the store's connection for this thread is opened once
    before = open_files()
    for n in range(5):
        worker_jobs.add.later({"a": n}, store)
        assert tick(store, worker_jobs.jobs) == Report(claimed=1, completed=1)
    assert open_files() == before


def test_tick_and_run_worker_leave_no_threads_behind() -> None:
    store = jobkit.MemoryStore()
    registry = jobkit.Registry().register(worker_jobs.add)

    @registry.job(name="t:async_add")
    async def async_add(params: int, ctx: jobkit.Context) -> int:
        return params

    before = handler_threads()
    for n in range(3):
        worker_jobs.add.later({"a": n}, store)
        async_add.later(n, store)
        assert tick(store, registry) == Report(claimed=2, completed=2)
    worker_jobs.add.later({"a": 1}, store)
    assert burst(store, registry) == Report(claimed=1, completed=1)
    assert poll(lambda: handler_threads() <= before, 1.0), sorted(t.name for t in handler_threads() - before)


# -- tick_handler --------------------------------------------------------------------------------------
class RecordingStore(jobkit.MemoryStore):
    """A MemoryStore that counts how often it was closed (its jobs survive closing)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_tick_handler_opens_the_store_runs_one_tick_and_closes_it() -> None:
    shared = RecordingStore()
    worker_jobs.add.later_many([{"a": 1}, {"a": 2}, {"a": 3}], shared)
    opened: list[Store] = []

    def open_store() -> Store:
        opened.append(shared)
        return shared

    handler = tick_handler(open_store, worker_jobs.jobs)
    assert opened == [], "the store is opened per call, not when the handler is made"

    assert handler({"source": "aws.events"}, object()) == Report(claimed=3, completed=3)
    assert (len(opened), shared.closed) == (1, 1)
    worker_jobs.add.later({"a": 4}, shared)
    assert handler() == Report(claimed=1, completed=1)
    assert (len(opened), shared.closed) == (2, 2)
    assert shared.counts()[COMPLETED] == 4


def test_tick_handler_closes_the_store_when_the_tick_fails() -> None:
    class Failing(RecordingStore):
        def finish_and_claim(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError("disk gone")

    failing = Failing()
    handler = tick_handler(lambda: failing, worker_jobs.jobs)
    with pytest.raises(OSError, match="disk gone"):
        handler()
    assert failing.closed == 1


def test_a_housekeeping_step_that_fails_is_postponed_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    class Locked(jobkit.MemoryStore):
        def reset_expired(self, *, now: datetime) -> ResetReport:
            raise StoreError("database is locked")

    store = Locked()
    job_id = worker_jobs.add.later(worker_jobs.Pair(2, 3), store)
    with caplog.at_level(logging.WARNING, logger="jobkit.worker"):
        report = tick(store, worker_jobs.jobs)
    assert report.completed == 1, "the jobs still ran"
    assert record(store, job_id).status is JobStatus.COMPLETED
    assert "resetting expired locks postponed: database is locked" in caplog.text


# -- load_registry and merge ------------------------------------------------------------------------------
def test_load_registry_finds_the_one_registry_of_a_module() -> None:
    assert load_registry("tests.worker_jobs") is worker_jobs.jobs
    assert load_registry("tests.worker_jobs:jobs") is worker_jobs.jobs


def test_load_registry_refuses_what_is_not_a_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"expected one jobkit\.Registry in json, found 0"):
        load_registry("json")
    with pytest.raises(ValueError, match=r"'not_a_spec' is not a jobkit\.Registry"):
        load_registry("tests.worker_jobs:not_a_spec")
    with pytest.raises(ValueError, match=r"'nothing_here' is not a jobkit\.Registry"):
        load_registry("tests.worker_jobs:nothing_here")
    two = types.ModuleType("jobkit_tests_two_registries")
    two.first, two.second = jobkit.Registry(), jobkit.Registry()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, two.__name__, two)
    with pytest.raises(ValueError, match="found 2; name it as MODULE:NAME"):
        load_registry(two.__name__)
    assert load_registry(f"{two.__name__}:second") is two.second  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        load_registry("no_such_module_for_jobkit_tests")


def test_merge_joins_registries_and_refuses_a_name_twice() -> None:
    other = jobkit.Registry()

    @other.job(name="elsewhere:alias")
    def clash(params: int, ctx: jobkit.Context) -> int:
        return params

    @other.job(name="t:distinct")
    def distinct(params: int, ctx: jobkit.Context) -> int:
        return params

    assert merge([worker_jobs.jobs, jobkit.Registry().register(distinct)]).names() == sorted(
        [*worker_jobs.jobs.names(), "t:distinct"]
    )
    with pytest.raises(jobkit.DuplicateJobError):
        merge([worker_jobs.jobs, other])


# -- Resolver -----------------------------------------------------------------------------------------------
def test_the_resolver_finds_registered_and_importable_specs() -> None:
    registered = Resolver(worker_jobs.jobs, import_on_demand=False)
    assert registered.resolve(worker_jobs.add.name) is worker_jobs.add
    assert registered.names() == set(worker_jobs.jobs.names())

    anything = Resolver(jobkit.Registry(), import_on_demand=True)
    assert anything.names() is None
    assert anything.resolve("tests.worker_jobs:add") is worker_jobs.add
    assert anything.resolve("tests.worker_jobs:add") is worker_jobs.add


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("__main__:handler", "defined in a script run as __main__, which a worker cannot import"),
        ("tests.worker_jobs:not_a_spec", "tests.worker_jobs.not_a_spec is not a job spec"),
        ("tests.worker_jobs:Pair", "is not a job spec"),
        ("tests.worker_jobs:add.fn", "is not a job spec"),
        ("tests.worker_jobs:missing", "is not a job spec"),
        ("tests.worker_jobs:alias", "tests.worker_jobs.alias is registered as 'elsewhere:alias'"),
        ("no_such_module_for_jobkit_tests:f", "cannot import 'no_such_module_for_jobkit_tests': ModuleNotFoundError"),
        ("tests.worker_jobs", "not of the form 'module:function'"),
        (":add", "not of the form 'module:function'"),
    ],
)
def test_the_resolver_refuses_names_that_lead_to_no_spec(name: str, reason: str) -> None:
    resolver = Resolver(jobkit.Registry(), import_on_demand=True)
    for _ in range(2):  # the refusal is remembered, and stays the same
        with pytest.raises(UnknownJobError) as caught:
            resolver.resolve(name)
        assert str(caught.value).startswith(f"no job named {name!r}: ")
        assert reason in str(caught.value)
        assert caught.value.name == name


def test_the_resolver_refuses_a_main_name_even_when_main_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules["__main__"], "add", worker_jobs.add, raising=False)
    with pytest.raises(UnknownJobError, match="__main__"):
        Resolver(jobkit.Registry(), import_on_demand=True).resolve("__main__:add")


def test_a_resolver_without_import_on_demand_imports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tests.worker_lazy", raising=False)
    with pytest.raises(UnknownJobError, match="only the jobs given with --jobs"):
        Resolver(worker_jobs.jobs, import_on_demand=False).resolve("tests.worker_lazy:triple")
    assert "tests.worker_lazy" not in sys.modules


# -- leases ---------------------------------------------------------------------------------------------------
def steal(store: Store, job_id: str) -> JobRecord:
    """What another worker does once this job's lock looks expired: reset it and claim it."""
    far = utc_now() + timedelta(days=1)
    assert store.reset_expired(now=far).retried == [job_id]
    (stolen,) = store.claim(limit=1, now=far, token="thief", lock_until=far + timedelta(hours=1))
    assert (stolen.id, stolen.worker_id) == (job_id, "thief")
    return stolen


def test_a_lost_lease_drops_the_outcome_and_keeps_the_thiefs_state(store: Store) -> None:
    registry = jobkit.Registry()
    started, gate = threading.Event(), threading.Event()

    @registry.job(name="t:held")
    def held(params: int, ctx: jobkit.Context) -> int:
        started.set()
        assert gate.wait(TIMEOUT)
        return params

    job_id = held.later(7, store)
    with Background(store, registry) as bg:
        assert started.wait(TIMEOUT)
        stolen = steal(store, job_id)
        gate.set()
        report = bg.stop()
    assert report == Report(claimed=1, lost=1)
    assert record(store, job_id) == stolen


def test_a_heartbeat_that_finds_the_lease_lost_asks_the_handler_to_stop(store: Store) -> None:
    registry = jobkit.Registry()
    started = threading.Event()
    told_to_stop: list[bool] = []

    @registry.job(name="t:listens")
    def listens(params: int, ctx: jobkit.Context) -> int:
        started.set()
        told_to_stop.append(poll(lambda: ctx.cancelled))
        return params

    job_id = listens.later(7, store)
    with Background(store, registry, lock_timeout=1.5) as bg:  # a heartbeat every 0.5s
        assert started.wait(TIMEOUT)
        stolen = steal(store, job_id)
        wait_until(lambda: bool(told_to_stop), "the handler to be told to stop")
        report = bg.stop()
    assert told_to_stop == [True]
    assert report == Report(claimed=1, lost=1)
    assert record(store, job_id) == stolen


def test_heartbeats_keep_a_job_locked_while_it_runs_past_its_lock_timeout(store: Store) -> None:
    registry = jobkit.Registry()
    started, gate = threading.Event(), threading.Event()

    @registry.job(name="t:long")
    def long(params: int, ctx: jobkit.Context) -> int:
        started.set()
        assert gate.wait(TIMEOUT)
        return params

    job_id = long.later(1, store)
    with Background(store, registry, lock_timeout=0.6) as bg:  # a heartbeat every 0.2s
        assert started.wait(TIMEOUT)
        claimed = record(store, job_id)
        assert claimed.worker_expires_at is not None
        past = claimed.worker_expires_at + timedelta(seconds=0.2)
        wait_until(lambda: utc_now() > past, "the first lock to run out")
        job = record(store, job_id)
        assert (job.status, job.worker_id, job.attempt_count) == (RUNNING, claimed.worker_id, 1)
        assert job.worker_expires_at is not None and job.worker_expires_at > past
        gate.set()
        wait_until(status_is(store, job_id, COMPLETED), "the job to complete")
        assert bg.stop() == Report(claimed=1, completed=1)


# -- stopping -------------------------------------------------------------------------------------------------
def test_stopping_with_no_grace_gives_a_running_job_back_without_spending_its_attempt(store: Store) -> None:
    registry = jobkit.Registry()
    started, gate, finished = threading.Event(), threading.Event(), threading.Event()

    @registry.job(name="t:long")
    def long(params: int, ctx: jobkit.Context) -> int:
        started.set()
        try:
            assert gate.wait(TIMEOUT)
            return params
        finally:
            finished.set()

    job_id = long.later(1, store)
    with Background(store, registry, concurrency=1, poll_interval=0.05, grace=0) as bg:
        assert started.wait(TIMEOUT)
        report = bg.stop()
    assert report == Report(claimed=1, released=1)
    job = record(store, job_id)
    assert (job.status, job.attempt_count, job.worker_id, job.worker_expires_at) == (PENDING, 0, None, None)

    gate.set()
    assert finished.wait(TIMEOUT)
    assert record(store, job_id) == job, "a handler that finished after its job was given back changed it"


def test_stopping_lets_a_running_job_finish_within_the_grace_period(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jobkit.worker")
    registry = jobkit.Registry()
    started, gate = threading.Event(), threading.Event()

    @registry.job(name="t:long")
    def long(params: int, ctx: jobkit.Context) -> int:
        started.set()
        assert gate.wait(TIMEOUT)
        return params

    job_id = long.later(1, store)
    with Background(store, registry, concurrency=2, poll_interval=0.05, grace=TIMEOUT) as bg:
        assert started.wait(TIMEOUT)
        bg.stop_event.set()
        wait_until(lambda: any("stopping" in r.getMessage() for r in caplog.records), "the worker to stop claiming")
        too_late = long.later(2, store)
        gate.set()
        report = bg.returned()
    assert report == Report(claimed=1, completed=1)
    assert record(store, job_id).status is COMPLETED
    assert (record(store, too_late).status, record(store, too_late).attempt_count) == (PENDING, 0)


# -- the command ----------------------------------------------------------------------------------------------
@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A jobkit SQLite file with three jobs of tests.worker_jobs:add."""
    path = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(path) as store:
        worker_jobs.add.later_many([{"a": n} for n in range(3)], store)
    return path


@pytest.fixture
def keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() puts the working directory on sys.path, as `python -m` would."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_main_refuses_a_missing_database_in_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.sqlite"
    assert main([str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and str(missing) in err and "no such database file" in err
    assert list(tmp_path.iterdir()) == []


def test_main_refuses_a_file_that_is_not_a_jobkit_database_and_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_sys_path: None
) -> None:
    foreign = tmp_path / "notes.sqlite"
    foreign.write_bytes(b"these are my notes, not a database\n" * 10)
    assert main([str(foreign), "--burst"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("jobkit.worker: error:")
    assert foreign.read_bytes() == b"these are my notes, not a database\n" * 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite"]


def test_main_help_explains_each_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--jobs",
        "--concurrency",
        "--processes",
        "--lock-timeout",
        "--poll-interval",
        "--grace",
        "--once",
        "--burst",
        "--quiet",
        "--verbose",
    ):
        assert option in text, option
    assert "MODULE[:REGISTRY]" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--concurrency", "0"],
        ["--processes", "0"],
        ["--lock-timeout", "0"],
        ["--poll-interval", "-1"],
        ["--jobs", "no_such_module_for_jobkit_tests"],
        ["--jobs", "tests.worker_jobs:not_a_spec"],
    ],
    ids=lambda argv: argv[0],
)
def test_main_refuses_invalid_options_with_exit_code_2(
    database: Path, argv: list[str], capsys: pytest.CaptureFixture[str], keep_sys_path: None
) -> None:
    assert main([str(database), "--once", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and argv[0] in err
    with jobkit.SqliteStore(database) as store:
        assert store.counts()[PENDING] == 3, "a refused command ran jobs"


def test_main_once_runs_one_pass_and_prints_a_summary(
    database: Path, capsys: pytest.CaptureFixture[str], keep_sys_path: None
) -> None:
    assert main([str(database), "--once", "--jobs", "tests.worker_jobs", "--quiet"]) == 0
    out, _ = capsys.readouterr()
    assert out == "jobkit.worker --once: 3 claimed, 3 completed, 0 failed, 0 retried\n"
    with jobkit.SqliteStore(database) as store:
        assert store.counts()[COMPLETED] == 3


def test_main_burst_runs_every_due_job_and_exits_0(
    database: Path, capsys: pytest.CaptureFixture[str], keep_sys_path: None
) -> None:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main([str(database), "--burst", "--quiet"])), daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "--burst did not exit"
    assert codes == [0]
    assert "3 claimed, 3 completed" in capsys.readouterr().err
    with jobkit.SqliteStore(database) as store:
        assert store.counts()[COMPLETED] == 3


def test_python_m_jobkit_worker_reports_a_missing_database_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobkit.worker", "missing.sqlite"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == "jobkit.worker: error: missing.sqlite: no such database file\n"
    assert list(tmp_path.iterdir()) == []


def test_the_library_form_is_reachable_from_the_package() -> None:
    assert (jobkit.run_worker, jobkit.tick, jobkit.tick_handler) == (run_worker, tick, tick_handler)
    assert {"run_worker", "tick", "tick_handler"} <= set(jobkit.__all__)


def test_a_worker_that_stalls_past_its_lock_and_retakes_the_job_tracks_the_new_attempt(
    store: Store, clock: FakeClock
) -> None:
    """A stall (GC pause, SIGSTOP) past the lock, then the same worker claims the job again.

    The older attempt is lost: its late outcome is dropped and must not make the worker
    forget the newer attempt, which it keeps heartbeating until it completes.
    """
    from jobkit.options import WorkerOptions
    from jobkit.worker import Worker

    registry = jobkit.Registry()
    gates = {1: threading.Event(), 2: threading.Event()}
    started: list[int] = []

    @registry.job(name="gated")
    def gated(n: int, ctx: jobkit.Context) -> int:
        started.append(ctx.attempt)
        assert gates[ctx.attempt].wait(10), "the test never opened this attempt's gate"
        return ctx.attempt

    job_id = gated.later(1, store)  # enqueued by the real clock: the fake one starts from there
    clock.now = record(store, job_id).scheduled_for
    worker = Worker(
        store, Resolver(registry, import_on_demand=False), WorkerOptions(concurrency=2, lock_timeout=10), clock=clock
    )
    worker._round(None)
    wait_until(lambda: started == [1], "attempt 1 to start")

    clock.advance(30)  # the worker's loop stalled past its own lock
    worker._next_reap = 0.0
    worker._round(None)  # reaps the job and claims it again: attempt 2
    wait_until(lambda: started == [1, 2], "attempt 2 to start")

    gates[1].set()  # the stale attempt finishes; its outcome must be dropped
    wait_until(lambda: bool(worker._done), "attempt 1's outcome to come back")
    worker._round(None)
    assert record(store, job_id).attempt_count == 2
    assert [r.job.attempt_count for r in worker._held.values()] == [2], "the newer attempt was forgotten"

    for _ in range(4):  # time goes on: attempt 2 must stay locked by its heartbeats
        clock.advance(4)
        worker._keeper._next_beat = worker._next_reap = 0.0
        worker._round(None)
    assert started == [1, 2], "the job was taken a third time while attempt 2 ran"

    gates[2].set()
    wait_until(lambda: bool(worker._done), "attempt 2's outcome to come back")
    worker._round(None)
    done = record(store, job_id)
    assert (done.status, done.attempt_count, done.result) == (JobStatus.COMPLETED, 2, "2")
    assert worker.report.lost == 1
    worker._close()
