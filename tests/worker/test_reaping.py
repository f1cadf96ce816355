"""A worker reaps a lease only when it saw it go unrenewed: never its own, never by its clock alone.

In one process: Worker objects driven round by round with a fake wall clock, and a
worker in a thread watching a lease no one renews. The multi-process versions (a clock
stepped under a running worker, a skewed second worker, SIGKILL) are in tests/chaos/test_clock.py.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import jobkit
from jobkit.model import utc_now
from jobkit.options import WorkerOptions
from jobkit.store import Store
from jobkit.worker import Resolver, Worker
from tests.support import COMPLETED, RUNNING, TIMEOUT, Background, FakeClock, record, status_is, wait_until


def test_a_worker_whose_clock_steps_far_ahead_never_reaps_the_job_it_holds(store: Store, clock: FakeClock) -> None:
    registry = jobkit.Registry()
    started, gate = threading.Event(), threading.Event()

    @registry.job(name="t:gated")
    def gated(n: int, ctx: jobkit.Context) -> int:
        started.set()
        assert gate.wait(TIMEOUT)
        return ctx.attempt

    job_id = gated.later(1, store)
    clock.now = record(store, job_id).scheduled_for
    worker = Worker(store, Resolver(registry, import_on_demand=False), WorkerOptions(lock_timeout=10), clock=clock)
    try:
        worker._round(None)
        assert started.wait(TIMEOUT)
        clock.advance(3600)  # the wall clock steps an hour ahead: the stored expiry looks long gone
        for _ in range(3):
            worker._reap(force=True)
        job = record(store, job_id)
        assert (job.status, job.attempt_count) == (RUNNING, 1), "the worker reaped the job it holds"
        assert worker.report.reset == 0
        gate.set()
        wait_until(lambda: bool(worker._done), "the outcome to come back")
        worker._round(0)
        assert record(store, job_id).result == "1"
    finally:
        gate.set()
        worker._close()


def test_a_lease_no_one_renews_is_reaped_though_its_stored_expiry_is_years_away(store: Store) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:echo")
    def echo(n: int, ctx: jobkit.Context) -> int:
        return ctx.attempt

    job_id = echo.later(1, store)
    ahead = utc_now() + timedelta(days=3650)
    # A holder whose clock ran ten years ahead claimed it for a second, then died: only watching can tell.
    assert store.claim_job(job_id, now=ahead, token="dead", lock_until=ahead + timedelta(seconds=1))
    with Background(store, registry, lock_timeout=0.3, reap_every=0.05) as bg:
        wait_until(status_is(store, job_id, COMPLETED), "the unrenewed lease to be reaped and the job run")
        report = bg.stop()
    assert record(store, job_id).result == "2"
    assert report.reset == 1


def test_tick_trusts_the_stored_expiry_having_watched_nothing(store: Store) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:echo")
    def echo(n: int, ctx: jobkit.Context) -> int:
        return ctx.attempt

    job_id = echo.later(1, store)
    now = utc_now()
    assert store.claim_job(job_id, now=now, token="dead", lock_until=now + timedelta(seconds=30))
    assert jobkit.tick(store, registry, now=now + timedelta(seconds=29)).reset == 0
    assert jobkit.tick(store, registry, now=now + timedelta(seconds=30)).reset == 1
    assert record(store, job_id).result == "2"
