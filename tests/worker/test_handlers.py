"""What handlers do under a worker: fail and retry, run async, time out, raise BaseException.

Multi-process scenarios (signals, kill -9, several workers on one file) live in tests/chaos/.
Nothing here sleeps to wait: handlers and tests meet on Events, and conditions are polled
with a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

import jobkit
from jobkit.model import utc_now
from jobkit.store import Store
from jobkit.worker import Report, tick
from tests import worker_jobs
from tests.support import (
    COMPLETED,
    FAILED,
    PENDING,
    TIMEOUT,
    Background,
    FakeClock,
    burst,
    poll,
    record,
)


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
