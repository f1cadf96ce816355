"""One clock for every host: without an injected clock, jobkit follows the store's (``Store.now``), not this host's.

Each test uses a MemoryStore whose clock stands an hour (or more) away from this
host's, as a database server's may stand from a host whose clock is wrong, and checks
a decision that would come out otherwise by the host's clock.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

import jobkit
from jobkit import cron
from jobkit.admin.commands import cmd_status
from jobkit.model import new_id, utc_now
from jobkit.recurring import enable, schedule
from jobkit.worker import Report, tick
from tests import worker_jobs
from tests.support import COMPLETED, FAILED, PENDING, RUNNING, FakeClock, burst, finished, make_job, raw_job, record

HOUR = timedelta(hours=1)


class SkewedStore(jobkit.MemoryStore):
    """A MemoryStore whose clock is its own: it starts *offset* from this host's and moves only when told to."""

    def __init__(self, offset: timedelta) -> None:
        super().__init__()
        self.clock = FakeClock(utc_now() + offset)

    def now(self) -> datetime:
        return self.clock()


def test_a_delay_counts_from_the_stores_time() -> None:
    store = SkewedStore(HOUR)
    job_id = worker_jobs.add.later(worker_jobs.Pair(1), store, delay=60)
    job = record(store, job_id)
    assert job.created_at == store.now()
    assert job.scheduled_for == store.now() + timedelta(seconds=60)


def test_later_many_states_every_job_in_the_stores_time() -> None:
    store = SkewedStore(-HOUR)
    ids = worker_jobs.add.later_many([worker_jobs.Pair(1), worker_jobs.Pair(2)], store, delay=timedelta(minutes=5))
    assert {record(store, i).scheduled_for for i in ids} == {store.now() + timedelta(minutes=5)}


def test_a_tick_does_not_claim_a_job_due_by_this_hosts_clock_until_the_stores_says_it_is_due() -> None:
    store = SkewedStore(-HOUR)  # the database's clock an hour behind this host's
    job = raw_job(worker_jobs.add.name, '{"a": 2, "b": 3}', scheduled_for=utc_now() - timedelta(minutes=1))
    store.add([job])
    assert tick(store, worker_jobs.jobs).claimed == 0
    assert record(store, job.id).status is PENDING
    store.clock.advance(HOUR.total_seconds())  # now the store says it is due
    assert tick(store, worker_jobs.jobs) == Report(claimed=1, completed=1)
    done = record(store, job.id)
    assert done.status is COMPLETED and done.result == "5"
    assert done.worker_started_at == done.completed_at == store.now(), "the run is stated in the store's time"


def test_a_worker_runs_a_job_due_by_the_stores_clock_that_this_hosts_clock_says_is_not_due() -> None:
    store = SkewedStore(HOUR)
    job_id = worker_jobs.add.later(worker_jobs.Pair(4), store, delay=timedelta(minutes=30))
    assert record(store, job_id).scheduled_for > utc_now() + timedelta(minutes=80), "not due for this host"
    store.clock.advance(timedelta(minutes=31).total_seconds())
    report = burst(store, worker_jobs.jobs)
    assert (report.claimed, report.completed) == (1, 1)
    assert record(store, job_id).status is COMPLETED


def running(store: jobkit.MemoryStore, expires: datetime) -> str:
    """A job held elsewhere under a lease that ends at *expires*."""
    job = make_job(
        new_id(),
        job_name="elsewhere:job",
        status=RUNNING,
        attempt_count=1,
        max_attempts=1,
        worker_id="elsewhere:1",
        worker_started_at=expires - HOUR,
        worker_expires_at=expires,
    )
    store.add([job])
    return job.id


def test_a_tick_resets_expired_leases_by_the_stores_clock() -> None:
    store = SkewedStore(-HOUR)
    job_id = running(store, utc_now() - timedelta(minutes=1))  # run out by this host's clock only
    assert tick(store, worker_jobs.jobs).lost_failed == 0
    assert record(store, job_id).status is RUNNING, "a lease the store's clock says still holds was taken"
    store.clock.advance(HOUR.total_seconds())
    assert tick(store, worker_jobs.jobs).lost_failed == 1
    lost = record(store, job_id)
    assert lost.status is FAILED and lost.completed_at == store.now()


def test_cancel_retry_and_purge_follow_the_stores_clock() -> None:
    store = SkewedStore(10 * HOUR)
    pending = worker_jobs.add.later(worker_jobs.Pair(1), store)
    cancelled = jobkit.cancel(store, pending)
    assert cancelled.completed_at == store.now()
    store.clock.advance(60)
    assert jobkit.retry(store, [pending]) == [pending]
    assert record(store, pending).updated_at == store.now()
    old = finished(store, COMPLETED, utc_now() - HOUR)  # an hour old for this host, eleven for the store
    assert jobkit.purge(store, older_than=5 * HOUR) == 1
    assert store.get(old) is None


def test_schedules_are_timed_from_the_stores_clock() -> None:
    store = SkewedStore(HOUR)
    made = schedule(store, worker_jobs.add, "0 * * * *", {"a": 1}, name="hourly")
    assert made.next_run_at == cron.next_fire("0 * * * *", "UTC", store.now())
    assert made.created_at == store.now()
    jobkit.disable(store, "hourly")
    store.clock.advance(HOUR.total_seconds())
    assert enable(store, "hourly").next_run_at == cron.next_fire("0 * * * *", "UTC", store.now())


def test_an_injected_clock_still_wins_over_the_stores(clock: FakeClock) -> None:
    store = SkewedStore(HOUR)
    job_id = worker_jobs.add.later(worker_jobs.Pair(1), store)
    assert jobkit.cancel(store, job_id, clock=clock).completed_at == clock.now


def test_status_reads_the_store_at_the_stores_time(capsys: pytest.CaptureFixture[str]) -> None:
    store = SkewedStore(-3 * HOUR)
    assert cmd_status(store, argparse.Namespace(json=True), Console()) == 0
    assert json.loads(capsys.readouterr().out)["at"] == store.now().isoformat()


def test_memory_and_sqlite_stores_follow_this_hosts_clock(tmp_path: Path) -> None:
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as sqlite:
        for store in (jobkit.MemoryStore(), sqlite):
            now = store.now()
            assert now.utcoffset() == timedelta(0)
            assert abs(now - utc_now()) < timedelta(minutes=1)
