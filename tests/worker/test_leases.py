"""Leases under a worker: heartbeats keep them, a lost one drops its outcome, a stall retakes a job.

Multi-process scenarios (signals, kill -9, several workers on one file) live in tests/chaos/.
Nothing here sleeps to wait: handlers and tests meet on Events, and conditions are polled
with a deadline.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import jobkit
from jobkit.model import JobRecord, JobStatus, utc_now
from jobkit.store import Store
from jobkit.worker import Report, Resolver
from tests.support import (
    COMPLETED,
    RUNNING,
    TIMEOUT,
    Background,
    FakeClock,
    poll,
    record,
    status_is,
    wait_until,
)


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

    # The worker's loop stalled past its own lock, and another worker reset the job (a
    # worker never reaps a job it holds itself); this one, going on, claims it again: attempt 2.
    assert store.reset_expired(now=clock.advance(30)).retried == [job_id]
    worker._round(None)
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
