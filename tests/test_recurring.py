"""Schedules on every store: create, change, list, switch, fire through tick, and sync from code.

Each test that takes ``store`` runs on MemoryStore and on SqliteStore. Time is a FakeClock
or the ``now`` given to tick; nothing sleeps. Multi-process firing lives in
tests/chaos/test_cron_processes.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

import jobkit
from jobkit import recurring
from jobkit.errors import JobkitError, PayloadTooLarge, ScheduleError, UnknownScheduleError, ValidationError
from jobkit.model import JobRecord, JobStatus, Schedule
from jobkit.spec import CronEntry
from jobkit.store import Store
from jobkit.worker import Report, run_worker, tick
from tests.conftest import T0, FakeClock

FIVE = "*/5 * * * *"
DAY = {"period": "day"}


@attrs.frozen
class Period:
    period: str


jobs = jobkit.Registry()


@jobs.job(max_attempts=2)
def report(params: Period, ctx: jobkit.Context) -> str:
    return params.period


others = jobkit.Registry()


@others.job()
def cleanup(params: int, ctx: jobkit.Context) -> int:
    return params


# -- helpers ----------------------------------------------------------------------------
def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def stamp(name: str, fire_time: datetime) -> str:
    return f"cron:{name}@{fire_time:%Y-%m-%dT%H:%M:%SZ}"


def all_jobs(store: Store) -> list[JobRecord]:
    return store.list_jobs(limit=1_000_000)


def stamps(store: Store) -> list[str]:
    """The correlation ids of every job, sorted: a fire time enqueued twice shows twice."""
    return sorted(job.correlation_id or "" for job in all_jobs(store))


def make(
    store: Store, clock: FakeClock, expression: str = FIVE, params: Any = DAY, *, name: str = "five", **options: Any
) -> Schedule:
    return jobkit.schedule(store, report, expression, params, name=name, clock=clock, **options)


def stored(store: Store, name: str) -> Schedule:
    found = store.get_schedule(name)
    assert found is not None, name
    return found


def app(*declared: tuple[str, str], job: jobkit.JobSpec[Any, Any] = report, params: Any = DAY) -> jobkit.Registry:
    """A registry with *job* and the schedules ``(expression, name)`` declared for it."""
    registry = jobkit.Registry()
    registry.register(job)
    for expression, name in declared:
        registry.cron(expression, job, params, name=name)
    return registry


def quiet_tick(store: Store, registry: jobkit.Registry | None, now: datetime) -> Report:
    """One tick at *now* that syncs and fires schedules but runs no job (so jobs stay pending)."""
    return tick(store, registry, now=now, limit=0)


class Proxy:
    """Passes everything to *store*, except what a test overrides: a second worker's view at the same instant."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def read_earlier(store: Store, now: datetime) -> Proxy:
    """A worker on *store* that read the due schedules at *now* before another worker fired them."""
    seen = store.due_schedules(now)
    late = Proxy(store)
    late.due_schedules = lambda now: seen
    return late


# -- schedule(): create, idempotent, update -----------------------------------------------
def test_schedule_creates_a_schedule(store: Store, clock: FakeClock) -> None:
    clock.advance(90)
    made = make(store, clock)
    assert made == Schedule(
        id=made.id,
        name="five",
        job_name=report.name,
        cron_expression=FIVE,
        params=made.params,
        timezone="UTC",
        enabled=True,
        next_run_at=minutes(5),
        created_at=minutes(1.5),
        updated_at=minutes(1.5),
        last_run_at=None,
        last_job_id=None,
        declared=False,
    )
    assert json.loads(made.params) == DAY
    assert store.get_schedule("five") == made
    assert jobkit.schedules(store) == store.list_schedules() == [made]


def test_schedules_are_listed_by_name(store: Store, clock: FakeClock) -> None:
    for name in ("b", "c", "a"):
        make(store, clock, name=name)
    assert [s.name for s in jobkit.schedules(store)] == ["a", "b", "c"]


def test_schedule_again_unchanged_writes_nothing_and_keeps_a_due_run(store: Store, clock: FakeClock) -> None:
    made = make(store, clock)
    clock.advance(5 * 3_600)  # overdue and not fired: a restart must not skip the run it owes
    assert make(store, clock) == made
    assert store.list_schedules() == [made]  # updated_at and next_run_at unchanged


def test_schedule_again_after_it_fired_writes_nothing(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    quiet_tick(store, jobs, minutes(5))
    fired = stored(store, "five")
    assert fired.last_run_at == minutes(5)
    clock.now = minutes(6)
    assert make(store, clock) == fired
    assert stored(store, "five").updated_at == minutes(5)


def test_new_params_keep_next_run_at(store: Store, clock: FakeClock) -> None:
    made = make(store, clock)
    clock.now = minutes(7)  # the 00:05 run is due and not yet fired
    changed = make(store, clock, params={"period": "week"})
    assert (changed.id, changed.created_at, changed.updated_at) == (made.id, made.created_at, minutes(7))
    assert changed.next_run_at == minutes(5)
    assert json.loads(changed.params) == {"period": "week"}
    quiet_tick(store, jobs, minutes(7))
    [job] = all_jobs(store)
    assert (job.correlation_id, json.loads(job.params)) == (stamp("five", minutes(5)), {"period": "week"})


def test_another_job_keeps_next_run_at(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    clock.now = minutes(2)
    moved = jobkit.schedule(store, cleanup, FIVE, 7, name="five", clock=clock)
    assert (moved.job_name, moved.params, moved.next_run_at) == (cleanup.name, "7", minutes(5))


@pytest.mark.parametrize(
    ("expression", "tz", "expected"),
    [
        ("0 10 * * *", "UTC", minutes(10 * 60)),
        ("0 9 * * *", "Asia/Tokyo", minutes(24 * 60)),  # 09:00 JST is 00:00 UTC; 00:07 UTC is past it
        ("0 10 * * *", "Asia/Tokyo", minutes(60)),  # 10:00 JST
    ],
)
def test_new_expression_or_timezone_moves_next_run_at(
    store: Store, clock: FakeClock, expression: str, tz: str, expected: datetime
) -> None:
    made = make(store, clock, "0 9 * * *")
    assert made.next_run_at == minutes(9 * 60)
    clock.now = minutes(7)
    changed = make(store, clock, expression, timezone=tz)
    assert (changed.cron_expression, changed.timezone, changed.next_run_at) == (expression, tz, expected)
    assert (changed.id, changed.created_at, changed.updated_at) == (made.id, made.created_at, minutes(7))


BAD = [
    pytest.param({"params": {"period": 5}}, ValidationError, id="params of the wrong type"),
    pytest.param({"params": {"nope": 1}}, ValidationError, id="params missing a field"),
    pytest.param({"params": {"period": "x" * 1_100_000}}, PayloadTooLarge, id="params too large"),
    pytest.param({"expression": "61 * * * *"}, ScheduleError, id="invalid expression"),
    pytest.param({"expression": "* * * * * *"}, ScheduleError, id="six fields"),
    pytest.param({"expression": ""}, ScheduleError, id="empty expression"),
    pytest.param({"expression": "0 0 30 2 *"}, ScheduleError, id="never fires"),
    pytest.param({"timezone": "Mars/Olympus"}, ScheduleError, id="unknown timezone"),
]


@pytest.mark.parametrize(("bad", "error"), BAD)
def test_invalid_schedules_are_refused_and_nothing_is_written(
    store: Store, clock: FakeClock, bad: dict[str, Any], error: type[Exception]
) -> None:
    existing = make(store, clock)
    clock.advance(60)
    expression, params, tz = bad.get("expression", FIVE), bad.get("params", DAY), bad.get("timezone", "UTC")
    for name in ("five", "new"):  # neither an update nor a new schedule
        with pytest.raises(error):
            make(store, clock, expression, params, name=name, timezone=tz)
    assert store.list_schedules() == [existing]
    assert all_jobs(store) == []


@pytest.mark.parametrize("name", ["", "   ", None, 5])
def test_a_schedule_needs_a_name(store: Store, clock: FakeClock, name: Any) -> None:
    with pytest.raises(ScheduleError) as caught:
        make(store, clock, name=name)
    assert caught.value.value == name
    with pytest.raises(ScheduleError):
        jobkit.unschedule(store, name)
    assert store.list_schedules() == []


# -- unschedule, enable, disable ------------------------------------------------------------
def test_unschedule_deletes_the_schedule_but_not_its_jobs(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    make(store, clock, name="kept")
    quiet_tick(store, jobs, minutes(5))
    assert jobkit.unschedule(store, "five") is True
    assert store.get_schedule("five") is None
    assert [s.name for s in jobkit.schedules(store)] == ["kept"]
    assert jobkit.unschedule(store, "five") is False
    quiet_tick(store, jobs, minutes(10))
    assert stamps(store) == sorted([stamp("five", minutes(5)), stamp("kept", minutes(5)), stamp("kept", minutes(10))])


def test_disable_then_enable_resumes_at_the_next_fire_time_without_catching_up(store: Store, clock: FakeClock) -> None:
    made = make(store, clock)
    clock.now = minutes(2)
    off = jobkit.disable(store, "five", clock=clock)
    assert off == attrs.evolve(made, enabled=False, next_run_at=None, updated_at=minutes(2))
    assert stored(store, "five") == off
    clock.now = minutes(3)
    assert jobkit.disable(store, "five", clock=clock) == off  # already off: nothing written
    assert stored(store, "five").updated_at == minutes(2)

    for n in range(0, 3 * 60, 5):
        assert quiet_tick(store, jobs, minutes(n)).cron_enqueued == 0
    assert all_jobs(store) == []

    clock.now = minutes(3 * 60 + 2)  # 03:02: 36 fire times passed while it was off
    on = jobkit.enable(store, "five", clock=clock)
    assert (on.enabled, on.next_run_at, on.updated_at) == (True, minutes(185), clock.now)
    clock.advance(60)
    assert jobkit.enable(store, "five", clock=clock) == on  # already on: nothing written
    assert quiet_tick(store, jobs, minutes(184)).cron_enqueued == 0  # no catch-up
    assert quiet_tick(store, jobs, minutes(185)).cron_enqueued == 1
    assert stamps(store) == [stamp("five", minutes(185))]


def test_a_schedule_made_disabled_never_fires_until_enabled(store: Store, clock: FakeClock) -> None:
    made = make(store, clock, enabled=False)
    assert (made.enabled, made.next_run_at) == (False, None)
    for n in range(0, 120, 5):
        quiet_tick(store, jobs, minutes(n))
    assert all_jobs(store) == []
    clock.now = minutes(121)
    assert make(store, clock).next_run_at == minutes(125)  # made enabled: from now on, no catch-up


def test_a_disabled_schedule_made_again_disabled_stays_off(store: Store, clock: FakeClock) -> None:
    make(store, clock)
    clock.now = minutes(7)
    off = make(store, clock, params={"period": "week"}, enabled=False)
    assert (off.enabled, off.next_run_at, json.loads(off.params)) == (False, None, {"period": "week"})
    quiet_tick(store, jobs, minutes(30))
    assert all_jobs(store) == []


@pytest.mark.parametrize("switch", [jobkit.enable, jobkit.disable])
def test_switching_an_unknown_schedule_says_so(store: Store, clock: FakeClock, switch: Callable[..., Any]) -> None:
    with pytest.raises(UnknownScheduleError) as caught:
        switch(store, "ghost", clock=clock)
    assert isinstance(caught.value, LookupError) and isinstance(caught.value, JobkitError)
    assert caught.value.name == "ghost"
    assert "ghost" in str(caught.value)
    assert store.list_schedules() == []


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


# -- schedules declared in code ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "params", "options", "error"),
    [
        ("61 * * * *", DAY, {}, ScheduleError),
        ("0 0 30 2 *", DAY, {}, ScheduleError),
        ("* * * * * *", DAY, {}, ScheduleError),
        (FIVE, DAY, {"timezone": "Mars/Olympus"}, ScheduleError),
        (FIVE, DAY, {"name": ""}, ScheduleError),
        (FIVE, {"period": 5}, {}, ValidationError),
        (FIVE, "today", {}, ValidationError),
    ],
)
def test_registry_cron_checks_a_declaration_when_it_is_made(
    expression: str, params: Any, options: dict[str, Any], error: type[Exception]
) -> None:
    registry = jobkit.Registry()
    with pytest.raises(error) as caught:
        registry.cron(expression, report, params, **{"name": "nightly", **options})
    if error is ValidationError:
        assert "nightly" in str(caught.value), "the message names the schedule"
    assert registry.crons() == []


def test_registry_cron_refuses_a_second_schedule_with_the_same_name() -> None:
    registry = jobkit.Registry()
    entry = registry.cron(FIVE, report, DAY, name="nightly", timezone="Europe/Berlin")
    assert entry == CronEntry(name="nightly", spec=report, expression=FIVE, params=DAY, timezone="Europe/Berlin")
    assert report.name in registry
    with pytest.raises(ScheduleError, match="nightly"):
        registry.cron("@daily", report, DAY, name="nightly")
    registry.cron("@daily", report, DAY, name="another")
    assert [e.name for e in registry.crons()] == ["another", "nightly"]


def test_declared_schedules_are_written_at_tick_and_not_rewritten(store: Store) -> None:
    registry = app((FIVE, "five"), ("@hourly", "hourly"))
    quiet_tick(store, registry, minutes(1.5))
    five, hourly = store.list_schedules()
    assert [(s.name, s.declared, s.enabled, s.next_run_at) for s in (five, hourly)] == [
        ("five", True, True, minutes(5)),
        ("hourly", True, True, minutes(60)),
    ]
    assert five.created_at == five.updated_at == minutes(1.5)
    quiet_tick(store, registry, minutes(3))
    assert store.list_schedules() == [five, hourly]
    quiet_tick(store, registry, minutes(5))  # five fires
    fired = stored(store, "five")
    assert fired.updated_at == minutes(5)
    quiet_tick(store, registry, minutes(7))
    assert store.list_schedules() == [fired, hourly], "a sync after a fire rewrote the schedules"


def test_a_declaration_changed_in_code_is_updated_at_the_next_tick(store: Store) -> None:
    quiet_tick(store, app((FIVE, "report")), minutes(1))
    quiet_tick(store, app(("*/10 * * * *", "report")), minutes(6))
    changed = stored(store, "report")
    assert (changed.cron_expression, changed.next_run_at, changed.updated_at) == (
        "*/10 * * * *",
        minutes(10),
        minutes(6),
    )
    assert quiet_tick(store, app(("*/10 * * * *", "report")), minutes(10)).cron_enqueued == 1
    assert stamps(store) == [stamp("report", minutes(10))]


def test_a_declaration_removed_from_code_is_disabled_and_nothing_else(store: Store, clock: FakeClock) -> None:
    quiet_tick(store, app((FIVE, "five"), (FIVE, "gone")), minutes(0))
    quiet_tick(store, app((FIVE, "theirs"), job=cleanup, params=3), minutes(0))  # another pool's jobs
    make(store, clock, name="manual")  # made at run time, not declared

    now_declared = app((FIVE, "five"))
    quiet_tick(store, now_declared, minutes(1))
    state = {s.name: (s.declared, s.enabled, s.next_run_at) for s in store.list_schedules()}
    assert state == {
        "five": (True, True, minutes(5)),
        "gone": (False, False, None),
        "manual": (False, True, minutes(5)),
        "theirs": (True, True, minutes(5)),
    }
    for n in range(2, 11):
        quiet_tick(store, now_declared, minutes(n))
    assert stamps(store) == sorted(stamp(name, minutes(m)) for name in ("five", "manual") for m in (5, 10))

    # Declared again: enabled from now on, without catching up on the time it was gone.
    quiet_tick(store, app((FIVE, "five"), (FIVE, "gone")), minutes(12))
    assert (stored(store, "gone").enabled, stored(store, "gone").next_run_at) == (True, minutes(15))


def test_a_declared_schedule_disabled_by_hand_stays_disabled(store: Store, clock: FakeClock) -> None:
    registry = app((FIVE, "five"))
    quiet_tick(store, registry, minutes(0))
    clock.now = minutes(1)
    jobkit.disable(store, "five", clock=clock)
    for n in range(2, 12):
        quiet_tick(store, registry, minutes(n))
    assert (stored(store, "five").enabled, stored(store, "five").declared) == (False, True)
    assert stamps(store) == []
    clock.now = minutes(12)
    jobkit.enable(store, "five", clock=clock)
    assert quiet_tick(store, registry, minutes(15)).cron_enqueued == 1


def test_declared_schedules_are_written_when_a_worker_starts(store: Store) -> None:
    quiet_tick(store, app((FIVE, "five"), (FIVE, "gone")), minutes(0))
    report_ = run_worker(store, app((FIVE, "five"), ("@hourly", "hourly")), burst=True, clock=FakeClock(minutes(1)))
    assert report_.cron_enqueued == 0
    state = {s.name: (s.declared, s.enabled, s.next_run_at) for s in store.list_schedules()}
    assert state == {
        "five": (True, True, minutes(5)),
        "gone": (False, False, None),
        "hourly": (True, True, minutes(60)),
    }


def test_a_worker_fires_due_schedules_and_runs_their_jobs(store: Store) -> None:
    registry = app((FIVE, "five"))
    quiet_tick(store, registry, minutes(0))
    done = run_worker(store, registry, burst=True, clock=FakeClock(minutes(5)))
    assert (done.cron_enqueued, done.completed) == (1, 1)
    [job] = all_jobs(store)
    assert (job.correlation_id, job.status) == (stamp("five", minutes(5)), JobStatus.COMPLETED)
