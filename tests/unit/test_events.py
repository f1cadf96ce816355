"""Events: what a listener hears from later(), now(), batch(), execute() and a worker, and what it cannot break.

Every test that takes ``store`` runs on MemoryStore and on SqliteStore. Workers run in
threads; handlers and tests meet on Events, and nothing sleeps to wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

import jobkit
from jobkit.events import KINDS, Event, Hooks
from jobkit.model import JobStatus, utc_now
from jobkit.store import Store
from jobkit.worker import merge, run_worker
from tests.support import T0, TIMEOUT, FakeClock, burst


# -- helpers --------------------------------------------------------------------------
class Heard:
    """A listener that keeps what it hears, from any thread."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._guard = threading.RLock()  # re-entered by the conditions that wait_for checks
        self.changed = threading.Condition(self._guard)

    def __call__(self, event: Event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def kinds(self, job_id: str | None = None) -> list[str]:
        with self._guard:
            return [e.kind for e in self.events if job_id in (None, e.job_id)]

    def of(self, kind: str, job_id: str | None = None) -> list[Event]:
        with self._guard:
            return [e for e in self.events if e.kind == kind and job_id in (None, e.job_id)]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(condition, TIMEOUT):
                pytest.fail(f"timed out waiting for {what}; heard {[(e.kind, e.job_id) for e in self.events]}")


@attrs.frozen
class Pair:
    a: int
    b: int = 0


def between(start: datetime, at: datetime) -> bool:
    return start <= at <= utc_now()


@pytest.fixture
def jobs() -> jobkit.Registry:
    return jobkit.Registry()


@pytest.fixture
def heard(jobs: jobkit.Registry) -> Heard:
    listener = Heard()
    jobs.on()(listener)
    return listener


def add_job(jobs: jobkit.Registry, **options: Any) -> jobkit.JobSpec[Pair, int]:
    @jobs.job(name="t:add", **options)
    def add(params: Pair, ctx: jobkit.Context) -> int:
        if params.a < 0:
            raise RuntimeError(f"boom {params.a}")
        return params.a + params.b

    return add


# -- from a worker ----------------------------------------------------------------------
def test_a_job_run_by_a_worker_is_enqueued_started_and_completed(
    store: Store, jobs: jobkit.Registry, heard: Heard
) -> None:
    add = add_job(jobs)
    start = utc_now()
    job_id = add.later(Pair(1, 2), store)
    assert heard.kinds() == ["enqueued"]
    assert burst(store, jobs, keep_completed=None).completed == 1
    assert heard.kinds(job_id) == ["enqueued", "started", "completed"]
    enqueued, started, completed = heard.events
    record = store.get(job_id)
    assert record is not None
    assert enqueued == Event("enqueued", job_id, "t:add", record.created_at, attempt=0)
    assert (started.job_name, started.attempt, started.error, started.duration) == ("t:add", 1, None, None)
    assert (completed.attempt, completed.error, completed.run_at) == (1, None, None)
    assert completed.duration is not None and 0 <= completed.duration < TIMEOUT
    assert between(start, started.at) and started.at <= completed.at
    assert completed.at == record.completed_at


def test_a_failed_job_is_heard_with_its_error(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs, max_attempts=1)
    job_id = add.later(Pair(-3), store)
    assert burst(store, jobs, keep_completed=None).failed == 1
    assert heard.kinds(job_id) == ["enqueued", "started", "failed"]
    (failed,) = heard.of("failed")
    assert (failed.attempt, failed.error, failed.run_at) == (1, "RuntimeError: boom -3", None)
    assert failed.duration is not None and failed.duration >= 0


def test_each_attempt_is_heard_retried_then_failed(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs, max_attempts=3, retry_backoff=0)
    job_id = add.later(Pair(-1), store)
    assert burst(store, jobs, keep_completed=None).failed == 1
    assert heard.kinds(job_id) == ["enqueued", *["started", "retried"] * 2, "started", "failed"]
    assert [e.attempt for e in heard.events] == [0, 1, 1, 2, 2, 3, 3]
    for retried in heard.of("retried"):
        assert retried.error == "RuntimeError: boom -1" and retried.run_at == retried.at


def test_retried_says_when_the_next_attempt_is_due(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs, max_attempts=2, retry_backoff=lambda attempt: 3600 * attempt)
    clock = FakeClock(T0)
    job_id = add.later(Pair(-1), store, at=T0)
    assert burst(store, jobs, keep_completed=None, clock=clock).retried == 1
    (retried,) = heard.of("retried")
    assert retried.at == T0 and retried.run_at == T0 + timedelta(hours=1)
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.PENDING and record.scheduled_for == retried.run_at


def test_a_cancelled_job_is_heard_cancelled(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    started = threading.Event()

    @jobs.job(name="t:spin")
    def spin(params: int, ctx: jobkit.Context) -> int:
        started.set()
        deadline = time.monotonic() + TIMEOUT
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.002)  # a polling interval for ctx.cancelled
        raise jobkit.Cancelled("as asked")

    job_id = spin.later(1, store)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(store, jobs), kwargs={"stop": stop}, daemon=True)
    worker.start()
    try:
        assert started.wait(TIMEOUT)
        jobkit.cancel(store, job_id)
        heard.wait_for(lambda: bool(heard.of("cancelled")), "the cancelled event")
    finally:
        stop.set()
        worker.join(TIMEOUT)
    (cancelled,) = heard.of("cancelled")
    assert cancelled.job_id == job_id and cancelled.attempt == 1 and cancelled.error == "cancelled"
    assert cancelled.duration is not None and cancelled.duration >= 0
    assert heard.kinds(job_id) == ["enqueued", "started", "cancelled"]


def test_a_worker_that_lost_its_lease_says_so(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    started, let_go = threading.Event(), threading.Event()

    @jobs.job(name="t:slow")
    def slow(params: int, ctx: jobkit.Context) -> int:
        started.set()
        assert let_go.wait(TIMEOUT)
        return params

    job_id = slow.later(1, store)
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(store, jobs), kwargs={"stop": stop}, daemon=True)
    worker.start()
    try:
        assert started.wait(TIMEOUT)
        # Another worker's reaper, a day ahead, takes the job back: this worker's lease is gone.
        assert store.reset_expired(now=utc_now() + timedelta(days=1)).retried == [job_id]
        let_go.set()
        heard.wait_for(lambda: bool(heard.of("lease_lost")), "the lease_lost event")
    finally:
        let_go.set()
        stop.set()
        worker.join(TIMEOUT)
    (lost,) = heard.of("lease_lost")
    assert (lost.job_id, lost.job_name, lost.attempt, lost.error) == (job_id, "t:slow", 1, None)
    assert heard.kinds(job_id) == ["enqueued", "started", "lease_lost"]
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.PENDING


def test_an_async_handler_is_heard_too(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    @jobs.job(name="t:async_add")
    async def async_add(params: Pair, ctx: jobkit.Context) -> int:
        return params.a + params.b

    job_id = async_add.later(Pair(2, 2), store)
    burst(store, jobs, keep_completed=None)
    assert heard.kinds(job_id) == ["enqueued", "started", "completed"]


def test_the_defining_registry_hears_its_jobs_when_a_worker_runs_a_merged_registry(
    store: Store, jobs: jobkit.Registry, heard: Heard
) -> None:
    add = add_job(jobs)
    other = jobkit.Registry()

    @other.job(name="t:other")
    def other_job(params: int, ctx: jobkit.Context) -> int:
        return params

    job_id = add.later(Pair(1), store)
    other_job.later(5, store)
    assert burst(store, merge([jobs, other]), keep_completed=None).completed == 2  # what --jobs A --jobs B runs
    assert heard.kinds() == ["enqueued", "started", "completed"]
    assert {e.job_id for e in heard.events} == {job_id}, "a listener heard another registry's job"


# -- from now(), batch(), execute() -------------------------------------------------------
def test_now_is_heard_started_and_completed_without_enqueued(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs)
    result = add.now(Pair(4, 5), store=store)
    assert heard.kinds() == ["started", "completed"]
    started, completed = heard.events
    assert started.job_id == completed.job_id == result.job_id
    assert (started.attempt, completed.attempt) == (1, 1)
    assert completed.duration is not None and completed.duration >= 0


def test_now_failing_is_heard_failed_never_retried(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs, max_attempts=5)
    add.now(Pair(-2), store=store)
    assert heard.kinds() == ["started", "failed"]
    assert heard.events[-1].error == "RuntimeError: boom -2"


def test_batch_is_heard_once_per_job(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs, max_attempts=1)
    results = add.batch([Pair(1), Pair(-1), Pair(2)], store=store, concurrency=2)
    for result in results:
        expected = "completed" if result.ok else "failed"
        assert heard.kinds(result.job_id) == ["started", expected]
    assert len(heard.events) == 6


def test_execute_is_heard_and_a_failure_with_attempts_left_is_retried(
    store: Store, jobs: jobkit.Registry, heard: Heard
) -> None:
    add = add_job(jobs, max_attempts=2, retry_backoff=lambda attempt: 60)
    clock = FakeClock(T0)
    job_id = add.later(Pair(-1), store)
    jobkit.execute(store, jobs, job_id, clock=clock)
    assert heard.kinds(job_id) == ["enqueued", "started", "retried"]
    retried = heard.events[-1]
    assert (retried.at, retried.run_at, retried.attempt) == (T0, T0 + timedelta(seconds=60), 1)


def test_now_that_lost_its_lease_says_so(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    @jobs.job(name="t:robbed")
    def robbed(params: int, ctx: jobkit.Context) -> int:
        assert ctx.store is not None
        # A reaper a day ahead takes the job back while it runs.
        ctx.store.reset_expired(now=utc_now() + timedelta(days=1))
        return params

    result = robbed.now(1, store=store)
    assert heard.kinds(result.job_id) == ["started", "lease_lost"]


def test_not_persisted_runs_are_not_heard(jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs)
    assert add.now(Pair(1)).ok
    assert heard.events == []


# -- from later() -----------------------------------------------------------------------
def test_later_and_later_many_are_heard_enqueued_in_order(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs)
    first = add.later(Pair(1), store, delay=60)
    many = add.later_many([Pair(2), Pair(3), Pair(4)], store)
    assert [e.job_id for e in heard.events] == [first, *many]
    for event in heard.events:
        record = store.get(event.job_id)
        assert record is not None
        assert (event.kind, event.job_name, event.at, event.attempt) == ("enqueued", "t:add", record.created_at, 0)
        assert event.error is event.duration is event.run_at is None


def test_a_refused_enqueue_is_not_heard(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs)
    with pytest.raises(jobkit.ValidationError):
        add.later_many([Pair(1), {"a": "not a number"}], store)
    assert heard.events == [] and store.counts()[JobStatus.PENDING] == 0


# -- subscribing ------------------------------------------------------------------------
def test_a_listener_hears_only_the_kinds_it_asked_for(store: Store, jobs: jobkit.Registry, heard: Heard) -> None:
    add = add_job(jobs, max_attempts=1)
    failures = Heard()
    returned = jobs.on("failed", "lease_lost")(failures)
    assert returned is failures, "on() hands the listener back, so it can decorate a function"
    add.later(Pair(1), store)
    bad = add.later(Pair(-1), store)
    burst(store, jobs, keep_completed=None)
    assert [(e.kind, e.job_id) for e in failures.events] == [("failed", bad)]
    assert len(heard.events) == 6


def test_unsubscribe_stops_the_events(store: Store, jobs: jobkit.Registry) -> None:
    add = add_job(jobs)
    listener = Heard()
    unsubscribe = jobs.hooks.subscribe(listener, "enqueued")
    add.later(Pair(1), store)
    unsubscribe()
    add.later(Pair(2), store)
    unsubscribe()  # twice is harmless
    assert len(listener.events) == 1
    assert not jobs.hooks, "no listener left"


def test_unsubscribing_one_listener_keeps_the_others(store: Store, jobs: jobkit.Registry) -> None:
    add = add_job(jobs)
    kept, dropped = Heard(), Heard()
    jobs.hooks.subscribe(kept)
    jobs.hooks.subscribe(dropped)()
    add.later(Pair(1), store)
    assert kept.kinds() == ["enqueued"] and dropped.events == []


@pytest.mark.parametrize("kinds", [("finished",), ("completed", "done"), ("Completed",), ("",)])
def test_an_unknown_kind_is_refused(jobs: jobkit.Registry, kinds: tuple[str, ...]) -> None:
    listener = Heard()
    with pytest.raises(ValueError, match="unknown event kinds") as caught:
        jobs.on(*kinds)(listener)  # type: ignore[arg-type]
    assert "completed" in str(caught.value) and "lease_lost" in str(caught.value)
    assert isinstance(caught.value, jobkit.ValidationError), "jobkit raises JobkitErrors"
    assert caught.value.value == kinds
    with pytest.raises(ValueError, match="unknown event kinds"):
        jobs.hooks.subscribe(listener, *kinds)  # type: ignore[arg-type]
    assert not jobs.hooks, "a refused listener was subscribed all the same"


def test_every_kind_can_be_subscribed() -> None:
    hooks = Hooks()
    heard = Heard()
    hooks.subscribe(heard, *sorted(KINDS))  # type: ignore[arg-type]
    for kind in sorted(KINDS):
        hooks.emit(Event(kind, "id", "t:x", T0))  # type: ignore[arg-type]
    assert heard.kinds() == sorted(KINDS)
    assert {
        "enqueued",
        "deduplicated",
        "started",
        "completed",
        "failed",
        "retried",
        "snoozed",
        "cancelled",
        "lease_lost",
    } == KINDS


# -- a listener that raises -------------------------------------------------------------
def test_a_raising_listener_breaks_neither_the_job_nor_the_other_listeners(
    store: Store, jobs: jobkit.Registry, caplog: pytest.LogCaptureFixture
) -> None:
    add = add_job(jobs)

    @jobs.on()
    def broken(event: Event) -> None:
        raise RuntimeError(f"listener broke on {event.kind}")

    after = Heard()
    jobs.on()(after)
    with caplog.at_level(logging.ERROR, logger="jobkit.events"):
        job_id = add.later(Pair(1, 1), store)
        assert burst(store, jobs, keep_completed=None).completed == 1
        assert add.now(Pair(2, 2), store=store).value == 4
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.COMPLETED and record.result == "2"
    assert after.kinds() == ["enqueued", "started", "completed", "started", "completed"]
    failures = [r for r in caplog.records if r.name == "jobkit.events"]
    assert len(failures) == 5 and all(r.exc_info for r in failures)
    assert "broken" in failures[0].getMessage() and job_id in failures[0].getMessage()


def test_a_listener_that_raises_on_started_does_not_fail_the_job(store: Store, jobs: jobkit.Registry) -> None:
    add = add_job(jobs, max_attempts=1)

    @jobs.on("started")
    def broken(event: Event) -> None:
        raise KeyError("nope")

    job_id = add.later(Pair(3), store)
    assert burst(store, jobs, keep_completed=None).completed == 1
    record = store.get(job_id)
    assert record is not None and record.status is JobStatus.COMPLETED and record.attempt_count == 1
