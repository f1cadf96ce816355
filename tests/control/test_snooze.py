"""Snooze: a handler raises ``jobkit.Snooze(seconds)`` to run again later without spending an attempt (every store).

The job is pending again, due at now + seconds, its attempt refunded, and ``snoozed`` is
told with ``run_at``; a job asked to cancel ends cancelled instead; a run nothing persists
(``spec.now(params)`` without a store) fails. Workers run in threads on an injected
FakeClock that starts at the store's time (so PostgreSQL's times are never mixed with this
host's), and one-pass ticks run at a chosen ``now``; nothing sleeps to wait.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta

import pytest

import jobkit
from jobkit.events import Event
from jobkit.store import Store
from jobkit.worker import Report, tick
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    TIMEOUT,
    Background,
    FakeClock,
    burst,
    poll,
    status_is,
    wait_until,
)
from tests.support import record as get

Step = float | timedelta | Exception | None  # a Snooze's argument, an error to raise, or None: return
YEAR = timedelta(days=366)  # the longest snooze


class Script:
    """What a handler does at each call, in order (then it returns its params), and what it saw and was told."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.attempts: list[int] = []  # ctx.attempt at each call
        self.events: list[Event] = []

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def scripted(script: Script, *, max_attempts: int = 3) -> tuple[jobkit.Registry, jobkit.JobSpec[int, int]]:
    jobs = jobkit.Registry()
    jobs.on("snoozed", "retried", "failed", "completed", "cancelled")(script.events.append)

    @jobs.job(name="snooze.scripted", max_attempts=max_attempts, retry_backoff=0)
    def scripted_job(params: int, ctx: jobkit.Context) -> int:
        script.attempts.append(ctx.attempt)
        ctx.progress(50, "half way")
        step = script.steps.pop(0) if script.steps else None
        if isinstance(step, Exception):
            raise step
        if step is None:
            return params
        raise jobkit.Snooze(step)  # built here: a bad value fails the attempt as any error does

    return jobs, scripted_job


def pending_again(store: Store, job_id: str, due: datetime, attempts: int) -> None:
    """*job_id* is pending, due at *due*, held by no one, with *attempts* spent and no progress."""
    job = get(store, job_id)
    assert (job.status, job.scheduled_for, job.attempt_count) == (PENDING, due, attempts)
    assert (job.worker_id, job.worker_started_at, job.worker_expires_at) == (None, None, None)
    assert (job.progress, job.progress_message) == (0, None)
    assert job.completed_at is None


# -- through a worker -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "delay"),
    [
        (30, timedelta(seconds=30)),
        (2.5, timedelta(seconds=2.5)),
        (timedelta(minutes=5), timedelta(minutes=5)),
        (YEAR, YEAR),
    ],
    ids=["int", "float", "timedelta", "a year"],
)
def test_a_snoozed_job_is_pending_again_at_now_plus_its_delay_with_its_attempt_refunded(
    store: Store, given: float | timedelta, delay: timedelta
) -> None:
    script = Script(given)
    jobs, job = scripted(script, max_attempts=1)
    job_id = job.later(7, store)
    clock = FakeClock(store.now())
    report = burst(store, jobs, clock=clock)
    assert report == Report(claimed=1, snoozed=1)
    assert "1 snoozed" in str(report)
    pending_again(store, job_id, clock.now + delay, attempts=0)
    (told,) = script.events
    assert (told.kind, told.job_id, told.at, told.run_at, told.attempt) == (
        "snoozed",
        job_id,
        clock.now,
        clock.now + delay,
        1,
    )
    assert told.error is None

    clock.advance((delay - timedelta(microseconds=1)).total_seconds())
    assert burst(store, jobs, clock=clock) == Report(), "not due a microsecond early"
    clock.advance(1e-6)
    assert burst(store, jobs, clock=clock) == Report(claimed=1, completed=1)
    done = get(store, job_id)
    assert (done.status, done.attempt_count, done.result) == (COMPLETED, 1, "7")
    assert script.attempts == [1, 1], "the snoozed attempt was given back: the second run is attempt 1 again"
    assert script.kinds() == ["snoozed", "completed"]


def test_a_snooze_of_zero_runs_the_job_again_at_once(store: Store) -> None:
    script = Script(0, timedelta(0))
    jobs, job = scripted(script, max_attempts=1)
    job_id = job.later(1, store)
    assert burst(store, jobs) == Report(claimed=3, snoozed=2, completed=1)
    assert (get(store, job_id).status, get(store, job_id).attempt_count) == (COMPLETED, 1)
    assert script.attempts == [1, 1, 1]
    assert script.kinds() == ["snoozed", "snoozed", "completed"]


def test_a_running_worker_runs_a_snoozed_job_once_its_time_comes(store: Store) -> None:
    script = Script(30)
    jobs, job = scripted(script)
    job_id = job.later(4, store)
    clock = FakeClock(store.now())
    with Background(store, jobs, clock=clock) as worker:
        wait_until(lambda: script.kinds() == ["snoozed"], "the job to snooze")
        pending_again(store, job_id, clock.now + timedelta(seconds=30), attempts=0)
        clock.advance(30)
        wait_until(status_is(store, job_id, COMPLETED), "the snoozed job to run when due")
        report = worker.stop()
    assert (report.claimed, report.snoozed, report.completed) == (2, 1, 1)
    assert get(store, job_id).attempt_count == 1


def test_an_async_handler_snoozes_too(store: Store) -> None:
    jobs = jobkit.Registry()
    calls: list[int] = []

    @jobs.job(name="snooze.async", max_attempts=1)
    async def nap(params: int, ctx: jobkit.Context) -> int:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise jobkit.Snooze(60)
        return params

    job_id = nap.later(2, store)
    clock = FakeClock(store.now())
    assert burst(store, jobs, clock=clock) == Report(claimed=1, snoozed=1)
    pending_again(store, job_id, clock.now + timedelta(seconds=60), attempts=0)
    clock.advance(60)
    assert burst(store, jobs, clock=clock) == Report(claimed=1, completed=1)
    assert calls == [1, 1]


def test_a_job_asked_to_cancel_that_snoozes_ends_cancelled(store: Store) -> None:
    started = threading.Event()
    events: list[Event] = []
    jobs = jobkit.Registry()
    jobs.on()(events.append)

    @jobs.job(name="snooze.stubborn")
    def stubborn(params: int, ctx: jobkit.Context) -> int:
        started.set()
        assert poll(lambda: ctx.cancelled), "the cancellation never reached the handler"
        raise jobkit.Snooze(60)

    job_id = stubborn.later(1, store)
    with Background(store, jobs) as worker:
        assert started.wait(TIMEOUT), "the job never started"
        jobkit.cancel(store, job_id)
        wait_until(status_is(store, job_id, CANCELLED), "the job to end cancelled")
        report = worker.stop()
    assert (report.cancelled, report.snoozed) == (1, 0)
    job = get(store, job_id)
    assert (job.status, job.attempt_count, job.error) == (CANCELLED, 1, "cancelled")
    assert job.completed_at is not None
    assert [event.kind for event in events if event.job_id == job_id] == ["enqueued", "started", "cancelled"]
    assert [a.outcome for a in jobkit.attempts(store, job_id)] == ["cancelled"]


def test_a_bad_snooze_raised_by_a_handler_fails_its_attempt_as_any_error(store: Store) -> None:
    script = Script(-5)
    jobs, job = scripted(script, max_attempts=1)
    job_id = job.later(1, store)
    assert burst(store, jobs) == Report(claimed=1, failed=1)
    failed = get(store, job_id)
    assert failed.status is FAILED and failed.attempt_count == 1
    assert failed.error is not None and failed.error.startswith("ValidationError: Snooze(seconds) takes 0 to")


# -- through a tick ---------------------------------------------------------------------------
def test_a_tick_snoozes_a_job_and_a_tick_at_its_time_runs_it(store: Store) -> None:
    script = Script(120)
    jobs, job = scripted(script, max_attempts=1)
    job_id = job.later(5, store)
    at = store.now()
    assert tick(store, jobs, now=at) == Report(claimed=1, snoozed=1)
    pending_again(store, job_id, at + timedelta(seconds=120), attempts=0)
    assert tick(store, jobs, now=at + timedelta(seconds=119)) == Report()
    assert get(store, job_id).status is PENDING
    assert tick(store, jobs, now=at + timedelta(seconds=120)) == Report(claimed=1, completed=1)
    done = get(store, job_id)
    assert (done.status, done.attempt_count, done.result, done.worker_started_at) == (
        COMPLETED,
        1,
        "5",
        at + timedelta(seconds=120),
    )
    assert script.kinds() == ["snoozed", "completed"]


def test_a_job_snoozes_as_often_as_it_likes_on_one_attempt_and_keeps_those_it_spent_failing(store: Store) -> None:
    script = Script(RuntimeError("flaky"), 10, 10, 10, RuntimeError("flaky again"))
    jobs, job = scripted(script, max_attempts=2)
    job_id = job.later(1, store)
    now = store.now()
    reports = []
    for _ in range(5):  # a tick at each time the job comes due: a retry at once, a snooze ten seconds on
        reports.append(tick(store, jobs, limit=1, now=now))
        now = get(store, job_id).scheduled_for
    assert reports == [
        Report(claimed=1, retried=1),
        Report(claimed=1, snoozed=1),
        Report(claimed=1, snoozed=1),
        Report(claimed=1, snoozed=1),
        Report(claimed=1, failed=1),
    ]
    assert script.attempts == [1, 2, 2, 2, 2], "a snooze spends nothing; the failure before it stays spent"
    failed = get(store, job_id)
    assert (failed.status, failed.attempt_count, failed.error) == (FAILED, 2, "RuntimeError: flaky again")
    assert script.kinds() == ["retried", "snoozed", "snoozed", "snoozed", "failed"]


def test_a_tick_s_snoozed_job_keeps_its_place_among_others(store: Store) -> None:
    script = Script(60)
    jobs, job = scripted(script)
    first, second = job.later_many([1, 2], store)
    at = store.now()
    assert tick(store, jobs, limit=2, now=at) == Report(claimed=2, snoozed=1, completed=1)
    snoozed = [job_id for job_id in (first, second) if get(store, job_id).status is PENDING]
    assert len(snoozed) == 1
    pending_again(store, snoozed[0], at + timedelta(seconds=60), attempts=0)


# -- runs nothing persists, and runs in the caller's process ------------------------------------
def test_a_snooze_in_a_run_without_a_store_fails_the_job() -> None:
    script = Script(30)
    _, job = scripted(script)
    result = job.now(3)
    assert not result.ok and result.status is FAILED and result.attempt_count == 1
    assert result.error is not None and "Snooze" in result.error and "without a store" in result.error
    assert script.attempts == [1], "not run again: nothing would ever run it"
    assert script.events == [], "a run without a store is heard by no one"


def test_now_with_a_store_leaves_a_snoozed_job_pending_for_a_worker(store: Store) -> None:
    script = Script(45)
    jobs, job = scripted(script, max_attempts=1)
    before = store.now()
    result = job.now(3, store)
    after = store.now()
    assert not result.ok and result.status is PENDING and result.attempt_count == 0
    snoozed = get(store, result.job_id)
    assert snoozed.status is PENDING and snoozed.attempt_count == 0
    assert before + timedelta(seconds=45) <= snoozed.scheduled_for <= after + timedelta(seconds=45)
    assert tick(store, jobs, now=snoozed.scheduled_for) == Report(claimed=1, completed=1)
    assert get(store, result.job_id).result == "3"
    assert script.kinds() == ["snoozed", "completed"]


# -- Snooze itself ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        -1,
        -0.001,
        YEAR.total_seconds() + 1,
        math.nan,
        math.inf,
        "5",
        None,
        True,
        timedelta(seconds=-1),
        YEAR + timedelta(microseconds=1),
    ],
    ids=repr,
)
def test_a_snooze_outside_zero_to_a_year_is_a_validation_error_at_construction(bad: object) -> None:
    with pytest.raises(jobkit.ValidationError, match=r"^Snooze\(seconds\) takes 0 to 3\.16224e\+07 seconds") as refused:
        jobkit.Snooze(bad)  # type: ignore[arg-type]
    assert refused.value.value is bad or (isinstance(bad, float) and math.isnan(bad))


@pytest.mark.parametrize(
    ("given", "delay"),
    [(0, timedelta(0)), (1, timedelta(seconds=1)), (0.25, timedelta(seconds=0.25)), (YEAR, YEAR)],
    ids=repr,
)
def test_a_snooze_from_zero_to_a_year_is_its_delay(given: float | timedelta, delay: timedelta) -> None:
    snooze = jobkit.Snooze(given)
    assert snooze.delay == delay and isinstance(snooze, jobkit.JobkitError)
