"""jobkit.cancel: of pending, running, finished and lost jobs, in this process.

Every test that takes ``store`` runs on MemoryStore and on SqliteStore. Workers run in
threads (``run_worker`` with a stop Event). Nothing sleeps to wait for something: handlers
and tests meet on Events, stores run on a FakeClock where time matters, and conditions are
polled with a deadline. Real processes are in tests/chaos/test_control_processes.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import attrs
import pytest

import jobkit
from jobkit.errors import JobNotFound
from jobkit.model import CANCELLED_WHILE_LOST, JobStatus, Lease
from jobkit.store import Store
from jobkit.worker import tick
from tests.control.spinner import CANCEL_SEEN_WITHIN, Spinner, spinner_jobs
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    T0,
    TIMEOUT,
    Background,
    FakeClock,
    burst,
    finished,
    unfinished,
)
from tests.support import record as get


def test_cancel_a_pending_job_ends_it_at_once_and_it_never_runs(store: Store) -> None:
    spinner = Spinner()
    jobs, spin, _ = spinner_jobs(spinner)
    job_id = spin.later("raises Cancelled", store)
    other = spin.later("raises Cancelled", store, delay=3600)
    before = get(store, job_id)
    asked = store.now()  # the store's clock: on PostgreSQL the server's, which is not this host's
    record = jobkit.cancel(store, job_id)
    assert record == get(store, job_id)
    assert record.status is CANCELLED and record.completed_at == record.updated_at
    assert record.completed_at is not None and asked <= record.completed_at <= store.now()
    assert record.attempt_count == 0 and record.error == "cancelled"
    assert attrs.evolve(record, status=PENDING, completed_at=None, updated_at=before.updated_at, error=None) == before
    assert burst(store, jobs).claimed == 0
    assert spinner.runs == 0
    assert get(store, job_id) == record
    assert get(store, other).status is PENDING, "cancelling one job touched another"


def test_cancel_of_an_unknown_job_raises_job_not_found(store: Store) -> None:
    with pytest.raises(JobNotFound, match="no-such-job"):
        jobkit.cancel(store, "no-such-job")
    assert store.counts() == dict.fromkeys(JobStatus, 0)


@pytest.mark.parametrize("status", [COMPLETED, FAILED, CANCELLED])
def test_cancel_of_a_finished_job_changes_nothing(store: Store, clock: FakeClock, status: JobStatus) -> None:
    job_id = finished(store, status, T0 - timedelta(hours=1))
    before = get(store, job_id)
    clock.advance(60)
    assert jobkit.cancel(store, job_id, clock=clock) == before
    assert get(store, job_id) == before
    assert store.cancelling() == []


@pytest.mark.parametrize(
    ("handler", "how"),
    [
        ("sync", "raises Cancelled"),
        ("sync", "returns normally"),
        ("sync", "raises another error"),
        ("async", "returns normally"),
    ],
)
def test_cancel_a_running_job_the_handler_sees_it_and_the_job_ends_cancelled(
    store: Store, handler: str, how: str
) -> None:
    spinner = Spinner()
    jobs, spin, spin_async = spinner_jobs(spinner)
    job_id = (spin if handler == "sync" else spin_async).later(how, store)
    with Background(store, jobs) as bg:
        assert spinner.started.wait(TIMEOUT)
        asked_at = time.monotonic()
        record = jobkit.cancel(store, job_id)
        assert record.status is RUNNING and record.cancel_requested
        assert store.cancelling() == [job_id]
        assert spinner.saw_cancel.wait(TIMEOUT), "the handler never saw ctx.cancelled"
        assert spinner.saw_cancel_at - asked_at < CANCEL_SEEN_WITHIN
        result = jobkit.wait(store, job_id, timeout=TIMEOUT)
        report = bg.stop()
    assert result.status is CANCELLED and not result.ok
    assert result.attempt_count == 1
    assert report.cancelled == 1 and report.completed == report.failed == report.retried == 0
    record = get(store, job_id)
    assert record.status is CANCELLED and record.error == "cancelled" and record.worker_expires_at is None
    assert spinner.runs == 1, "a cancelled job ran again"
    assert store.cancelling() == []


def test_cancel_a_running_job_twice_asks_once(store: Store, clock: FakeClock) -> None:
    job_id = unfinished(store, PENDING, T0)
    assert store.claim_job(job_id, now=T0, token="w", lock_until=T0 + timedelta(minutes=5)) is not None
    first = jobkit.cancel(store, job_id, clock=clock)
    clock.advance(30)
    assert jobkit.cancel(store, job_id, clock=clock) == first == get(store, job_id)
    assert first.updated_at == T0 and first.status is RUNNING and first.cancel_requested
    assert store.heartbeat([Lease(job_id, "w")], now=clock.now, lock_until=clock.now + timedelta(minutes=5)) == {
        job_id: True
    }


@pytest.mark.parametrize("how", ["raises Cancelled", "returns normally"])
def test_cancel_a_job_run_by_execute_or_now(store: Store, how: str) -> None:
    """now() and execute() hold a job like a worker does: they see a cancellation too."""
    spinner = Spinner()
    jobs, spin, _ = spinner_jobs(spinner)
    job_id = spin.later(how, store)
    results: list[jobkit.JobResult[Any]] = []
    runner = threading.Thread(target=lambda: results.append(jobkit.execute(store, jobs, job_id)), daemon=True)
    runner.start()
    assert spinner.started.wait(TIMEOUT)
    asked_at = time.monotonic()
    jobkit.cancel(store, job_id)
    assert spinner.saw_cancel.wait(TIMEOUT), "the handler never saw ctx.cancelled"
    assert spinner.saw_cancel_at - asked_at < CANCEL_SEEN_WITHIN
    runner.join(TIMEOUT)
    assert not runner.is_alive()
    assert results[0].status is CANCELLED and get(store, job_id).status is CANCELLED


def test_a_cancelled_job_whose_worker_died_ends_cancelled_and_is_not_retried(store: Store) -> None:
    spinner = Spinner()
    jobs, spin, _ = spinner_jobs(spinner)
    job_id = spin.later("returns normally", store, max_attempts=5)
    # A worker claimed it, then died without a word: only its lock says it ever ran.
    (held,) = store.claim(limit=1, now=store.now(), token="dead-worker", lock_until=store.now() + timedelta(seconds=30))
    jobkit.cancel(store, job_id)
    later = store.now() + timedelta(minutes=1)
    report = tick(store, jobs, now=later)
    assert report.cancelled == 1 and report.reset == 0 and report.claimed == 0
    record = get(store, job_id)
    assert record.status is CANCELLED and record.error == CANCELLED_WHILE_LOST
    assert record.completed_at == later and record.attempt_count == held.attempt_count == 1
    assert tick(store, jobs, now=later + timedelta(hours=1)).claimed == 0
    assert spinner.runs == 0
    # The dead worker's writes, should it wake, change nothing.
    assert store.heartbeat([Lease(job_id, "dead-worker")], now=later, lock_until=later) == {}
    assert get(store, job_id) == record


def test_reset_expired_reports_cancelled_for_a_lost_job_whose_cancellation_was_asked(store: Store) -> None:
    asked = unfinished(store, PENDING, T0, max_attempts=1)
    plain = unfinished(store, PENDING, T0)
    spent = unfinished(store, PENDING, T0, max_attempts=1)
    claimed = store.claim(limit=3, now=T0, token="w", lock_until=T0 + timedelta(seconds=10))
    assert len(claimed) == 3
    store.cancel(asked, now=T0 + timedelta(seconds=1))
    at = T0 + timedelta(seconds=10)
    report = store.reset_expired(now=at)
    assert (report.cancelled, report.retried, report.failed) == ([asked], [plain], [spent])
    assert get(store, asked).status is CANCELLED and get(store, asked).completed_at == at
    assert get(store, plain).status is PENDING and get(store, spent).status is FAILED


def test_giving_back_a_job_asked_to_cancel_ends_it_cancelled(store: Store) -> None:
    asked, plain = unfinished(store, PENDING, T0), unfinished(store, PENDING, T0)
    store.claim(limit=2, now=T0, token="w", lock_until=T0 + timedelta(minutes=5))
    store.cancel(asked, now=T0)
    at = T0 + timedelta(seconds=3)
    assert store.release([Lease(asked, "w"), Lease(plain, "w"), Lease(plain, "w")], now=at) == [True, True, False]
    record = get(store, asked)
    assert record.status is CANCELLED and record.completed_at == at and record.attempt_count == 1
    assert get(store, plain).status is PENDING and get(store, plain).attempt_count == 0


def test_a_worker_stopping_with_a_job_asked_to_cancel_ends_it_cancelled(store: Store) -> None:
    """The grace period runs out on a handler that ignores ctx.cancelled: given back, it ends cancelled."""
    stuck = threading.Event()
    let_go = threading.Event()
    jobs = jobkit.Registry()

    @jobs.job(name="t:stubborn")
    def stubborn(params: int, ctx: jobkit.Context) -> int:
        stuck.set()
        let_go.wait(TIMEOUT)
        return params

    job_id = stubborn.later(1, store)
    bg = Background(store, jobs, grace=0.0).__enter__()
    try:
        assert stuck.wait(TIMEOUT)
        jobkit.cancel(store, job_id)
        report = bg.stop()
    finally:
        let_go.set()
    assert report.released == 1
    record = get(store, job_id)
    assert record.status is CANCELLED and record.attempt_count == 1


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_worker_with_a_long_poll_interval_still_sees_a_cancellation_within_seconds(store: Store) -> None:
    spinner = Spinner()
    jobs, spin, _ = spinner_jobs(spinner)
    job_id = spin.later("raises Cancelled", store)
    with Background(store, jobs, poll_interval=4.0, concurrency=1):
        assert spinner.started.wait(TIMEOUT)
        asked_at = time.monotonic()
        jobkit.cancel(store, job_id)
        assert spinner.saw_cancel.wait(TIMEOUT)
        assert spinner.saw_cancel_at - asked_at < CANCEL_SEEN_WITHIN
