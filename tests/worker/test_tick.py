"""tick and tick_handler: one pass of a worker, as a cron job or a serverless function runs it.

Multi-process scenarios (signals, kill -9, several workers on one file) live in tests/chaos/.
Nothing here sleeps to wait: handlers and tests meet on Events, and conditions are polled
with a deadline.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest

import jobkit
from jobkit.errors import StoreError
from jobkit.model import JobStatus, ResetReport, utc_now
from jobkit.store import Store
from jobkit.worker import Report, tick, tick_handler
from tests import worker_jobs
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    burst,
    poll,
    record,
)


def handler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(("jobkit-handler", "jobkit-async"))}


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
