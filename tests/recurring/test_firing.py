"""Schedules fire through tick: one job per fire time, and the compare-and-set between workers.

Each test that takes ``store`` runs on MemoryStore and on SqliteStore. Time is a FakeClock
or the ``now`` given to tick; nothing sleeps. Multi-process firing lives in
tests/chaos/test_cron_processes.py.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

import attrs
import pytest

import jobkit
from jobkit import recurring
from jobkit.model import JobRecord, JobStatus, Schedule
from jobkit.store import Store
from jobkit.worker import tick
from tests.recurring.scene import (
    DAY,
    FIVE,
    Proxy,
    all_jobs,
    cleanup,
    jobs,
    make,
    minutes,
    others,
    quiet_tick,
    read_earlier,
    report,
    stamp,
    stamps,
    stored,
)
from tests.support import (
    FakeClock,
)


# -- firing through tick ---------------------------------------------------------------------
def test_tick_enqueues_exactly_one_job_per_fire_time(store: Store, clock: FakeClock) -> None:
    make(store, clock)  # at 00:00: the first fire time is 00:05
    enqueued = []
    for n in range(61):
        for _ in range(2):  # a second tick at the same instant finds nothing to do
            enqueued.append((n, quiet_tick(store, jobs, minutes(n)).cron_enqueued))
    assert [(n, e) for n, e in enqueued if e] == [(n, 1) for n in range(5, 61, 5)]
    assert sum(e for _, e in enqueued) == 12

    fire_times = [minutes(n) for n in range(5, 61, 5)]
    assert stamps(store) == [stamp("five", t) for t in fire_times]
    by_stamp = {job.correlation_id: job for job in all_jobs(store)}
    for fire_time in fire_times:
        job = by_stamp[stamp("five", fire_time)]
        assert (job.job_name, job.status, job.max_attempts) == (report.name, JobStatus.PENDING, 2)
        assert (job.scheduled_for, job.created_at) == (fire_time, fire_time)
        assert json.loads(job.params) == DAY
    after = stored(store, "five")
    assert (after.last_run_at, after.next_run_at) == (minutes(60), minutes(65))
    assert after.last_job_id == by_stamp[stamp("five", minutes(60))].id


def test_a_cron_job_runs_like_any_other(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    result = tick(store, jobs, now=minutes(5))
    assert (result.cron_enqueued, result.claimed, result.completed) == (1, 1, 1)
    [job] = all_jobs(store)
    assert (job.status, job.result, job.correlation_id) == (JobStatus.COMPLETED, '"day"', stamp("five", minutes(5)))


def test_after_hours_without_a_tick_one_run_for_the_latest_missed_time(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    assert quiet_tick(store, jobs, minutes(5)).cron_enqueued == 1
    assert quiet_tick(store, jobs, minutes(5 * 60 + 47)).cron_enqueued == 1  # 05:47: 68 fire times missed
    assert stored(store, "five").next_run_at == minutes(5 * 60 + 50)
    assert quiet_tick(store, jobs, minutes(5 * 60 + 48)).cron_enqueued == 0
    assert quiet_tick(store, jobs, minutes(5 * 60 + 50)).cron_enqueued == 1
    assert stamps(store) == [stamp("five", minutes(m)) for m in (5, 5 * 60 + 45, 5 * 60 + 50)]


def test_a_run_missed_before_a_fall_back_overlap_fires_once_not_on_every_tick(store: Store) -> None:
    """02:30 Berlin daily; due at 02:30 CEST, the ticks resume at 02:10 CET, when the wall clock reads 02:10 again."""
    clock = FakeClock(datetime(2026, 10, 24, 12, tzinfo=timezone.utc))
    make(store, clock, "30 2 * * *", name="nightly", timezone="Europe/Berlin")
    due = datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)
    assert stored(store, "nightly").next_run_at == due
    for minute in range(10, 40):  # 01:10 to 01:39 UTC, 02:10 to 02:39 CET
        quiet_tick(store, jobs, datetime(2026, 10, 25, 1, minute, tzinfo=timezone.utc))
    assert stamps(store) == [stamp("nightly", due)]
    assert stored(store, "nightly").next_run_at == datetime(2026, 10, 26, 1, 30, tzinfo=timezone.utc)


def test_the_correlation_id_names_the_fire_time_in_utc(store: Store, clock: FakeClock) -> None:
    make(store, clock, "0 9 * * *", name="tokyo", timezone="Asia/Tokyo")  # 09:00 JST = 00:00 UTC
    assert quiet_tick(store, jobs, minutes(24 * 60 + 3)).cron_enqueued == 1
    assert stamps(store) == ["cron:tokyo@2026-01-02T00:00:00Z"]


def test_several_due_schedules_fire_in_one_tick(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    make(store, clock, "@hourly", name="hourly")
    make(store, clock, "@daily", name="daily")
    assert quiet_tick(store, jobs, minutes(60)).cron_enqueued == 2
    assert stamps(store) == [stamp("five", minutes(60)), stamp("hourly", minutes(60))]


def test_tick_with_a_registry_fires_only_its_jobs(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    jobkit.schedule(store, cleanup, FIVE, 3, name="cleanup", clock=clock)
    assert quiet_tick(store, jobs, minutes(5)).cron_enqueued == 1
    assert quiet_tick(store, others, minutes(5)).cron_enqueued == 1
    assert quiet_tick(store, jobs, minutes(10)).cron_enqueued == 1
    assert quiet_tick(store, None, minutes(10)).cron_enqueued == 1  # without one: every job, imported on demand
    assert stamps(store) == sorted(
        [stamp(n, minutes(m)) for n in ("five", "cleanup") for m in (5, 10)],
    )


def test_a_stored_schedule_that_cannot_be_evaluated_does_not_stop_the_others(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A row from elsewhere (an older jobkit, a hand edit, a host without that timezone) is skipped and reported."""
    good = make(store, clock)
    store.put_schedule(attrs.evolve(good, id="bad-1", name="bad-expression", cron_expression="61 * * * *"))
    store.put_schedule(attrs.evolve(good, id="bad-2", name="bad-zone", timezone="Mars/Olympus"))
    with caplog.at_level(logging.ERROR, logger="jobkit"):
        assert quiet_tick(store, jobs, minutes(5)).cron_enqueued == 1
    assert stamps(store) == [stamp("five", minutes(5))]
    logged = caplog.text
    assert "bad-expression" in logged and "bad-zone" in logged


# -- the compare-and-set ----------------------------------------------------------------------
def test_a_worker_that_read_the_same_due_schedule_enqueues_nothing(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    now = minutes(5)
    late = read_earlier(store, now)
    assert len(recurring.fire_due(store, now)) == 1
    assert recurring.fire_due(late, now) == []  # type: ignore[arg-type]
    assert stamps(store) == [stamp("five", now)]


def test_fire_schedule_refuses_a_stale_expected_next_run_at(store: Store, clock: FakeClock) -> None:
    made = make(store, clock)
    now = minutes(5)

    def job() -> JobRecord:
        return recurring.cron_job(made, report, now, now)

    assert made.next_run_at is not None
    fire = {"fire_time": now, "next_run_at": minutes(10)}
    assert store.fire_schedule("five", expected=minutes(4), job=job(), **fire) is False
    assert store.fire_schedule("ghost", expected=minutes(5), job=job(), **fire) is False
    assert store.fire_schedule("five", expected=made.next_run_at, job=job(), **fire) is True
    assert store.fire_schedule("five", expected=made.next_run_at, job=job(), **fire) is False
    assert len(all_jobs(store)) == 1
    jobkit.disable(store, "five", clock=clock)
    assert store.fire_schedule("five", expected=minutes(10), job=job(), **fire) is False
    assert len(all_jobs(store)) == 1


def test_two_store_objects_on_one_file_fire_a_due_schedule_once(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(path) as first, jobkit.SqliteStore(path) as second:
        make(first, clock)
        now = minutes(5)
        late = read_earlier(second, now)
        assert [s.name for s in late.due_schedules(now)] == ["five"]
        assert len(recurring.fire_due(first, now)) == 1
        assert recurring.fire_due(late, now) == []  # type: ignore[arg-type]
        assert stamps(first) == stamps(second) == [stamp("five", now)]


def test_store_objects_in_threads_firing_at_the_same_instants_enqueue_one_job_each_time(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "jobs.sqlite"
    stores = [jobkit.SqliteStore(path) for _ in range(4)]
    try:
        make(stores[0], clock)
        instants = [minutes(n) for n in range(31)]
        barrier = threading.Barrier(len(stores), timeout=30)
        fired: list[list[str]] = [[] for _ in stores]
        errors: list[BaseException] = []

        def fire(index: int) -> None:
            try:
                for now in instants:
                    barrier.wait()  # all four at the same instant, every step
                    fired[index] += recurring.fire_due(stores[index], now)
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=fire, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert sum(len(ids) for ids in fired) == 6
        assert stamps(stores[0]) == [stamp("five", minutes(n)) for n in range(5, 31, 5)]
    finally:
        for made in stores:
            made.close()


def test_a_schedule_update_racing_a_fire_does_not_rewind_next_run_at(store: Store, clock: FakeClock) -> None:
    """schedule() reads the row, another worker fires it, then schedule() writes: the fire must stand."""
    make(store, clock)
    clock.now = minutes(5)
    racing = Proxy(store)

    def read_then_fire(name: str) -> Schedule | None:
        found = store.get_schedule(name)
        assert len(recurring.fire_due(store, clock.now)) == 1  # the other worker, between our read and write
        return found

    racing.get_schedule = read_then_fire
    jobkit.schedule(racing, report, FIVE, {"period": "week"}, name="five", clock=clock)  # type: ignore[arg-type]
    assert stored(store, "five").next_run_at == minutes(10)
    assert quiet_tick(store, jobs, minutes(6)).cron_enqueued == 0
    assert stamps(store) == [stamp("five", minutes(5))]
