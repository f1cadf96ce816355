"""jobkit.retry: failed and cancelled jobs sent back with fresh attempts.

Every test that takes ``store`` runs on MemoryStore and on SqliteStore. Workers run in
threads (``run_worker`` with a stop Event). Nothing sleeps to wait for something: handlers
and tests meet on Events, stores run on a FakeClock where time matters, and conditions are
polled with a deadline. Real processes are in tests/chaos/test_control_processes.py.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import jobkit
from jobkit.store import Store
from tests.control.spinner import Spinner, spinner_jobs
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
    wait_until,
)
from tests.support import record as get


def test_retry_sends_failed_and_cancelled_jobs_back_with_fresh_attempts_and_the_worker_runs_them(
    store: Store,
) -> None:
    broken = threading.Event()
    broken.set()
    jobs = jobkit.Registry()

    @jobs.job(name="t:flaky", max_attempts=2, retry_backoff=0)
    def flaky(params: int, ctx: jobkit.Context) -> int:
        if broken.is_set():
            raise RuntimeError("broken for now")
        return params * 10

    failed = flaky.later(1, store)
    cancelled = jobkit.cancel(store, flaky.later(2, store)).id
    spinner = Spinner()
    spin_jobs, spin, _ = spinner_jobs(spinner)
    stopped = spin.later("raises Cancelled", store)
    with Background(store, spin_jobs):
        assert spinner.started.wait(TIMEOUT)
        jobkit.cancel(store, stopped)
        wait_until(lambda: get(store, stopped).status is CANCELLED, "the running job to end cancelled")
    burst(store, jobs)
    assert get(store, failed).status is FAILED and get(store, failed).attempt_count == 2
    assert get(store, stopped).cancel_requested

    broken.clear()
    at = store.now()  # retry stamps the store's time (a PostgreSQL server's runs apart from this host's)
    assert jobkit.retry(store, [failed, cancelled, stopped]) == [failed, cancelled, stopped]
    for job_id in (failed, cancelled, stopped):
        record = get(store, job_id)
        assert record.status is PENDING and record.attempt_count == 0
        assert record.error is record.traceback is record.completed_at is record.result is None
        assert record.worker_id is record.worker_started_at is record.worker_expires_at is None
        assert not record.cancel_requested and record.progress == 0
        assert at <= record.scheduled_for <= store.now()
    assert store.cancelling() == []
    merged = jobkit.Registry().include(jobs).include(spin_jobs)
    spinner.started.clear()
    spinner.saw_cancel.clear()
    with Background(store, merged):
        for job_id in (failed, cancelled):
            assert jobkit.wait(store, job_id, timeout=TIMEOUT).value == (10 if job_id == failed else 20)
        assert spinner.started.wait(TIMEOUT), "the retried job that had been cancelled while running did not run"
        assert not spinner.saw_cancel.is_set()
        jobkit.cancel(store, stopped)
        assert jobkit.wait(store, stopped, timeout=TIMEOUT).status is CANCELLED
    assert [get(store, j).attempt_count for j in (failed, cancelled, stopped)] == [1, 1, 1]


def test_retry_ignores_pending_running_completed_and_unknown_jobs(store: Store, clock: FakeClock) -> None:
    failed = finished(store, FAILED, T0 - timedelta(hours=1))
    completed = finished(store, COMPLETED, T0 - timedelta(hours=1))
    pending = unfinished(store, PENDING, T0)
    running = unfinished(store, RUNNING, T0)
    untouched = [completed, pending, running]
    before = [get(store, j) for j in untouched]
    clock.advance(5)
    sent = jobkit.retry(store, [pending, "no-such-job", failed, running, completed, failed], clock=clock)
    assert sent == [failed]
    assert [get(store, j) for j in untouched] == before
    assert get(store, failed).scheduled_for == clock.now == get(store, failed).updated_at
    assert jobkit.retry(store, [failed], clock=clock) == [], "a job already sent back is pending now"
    assert jobkit.retry(store, [], clock=clock) == []


def test_retry_keeps_the_order_given_and_each_id_once(store: Store) -> None:
    a = finished(store, FAILED, T0)
    b = finished(store, CANCELLED, T0)
    assert jobkit.retry(store, [b, a, b, a]) == [b, a]
