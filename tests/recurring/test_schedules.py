"""Schedules on every store: create, change, list, unschedule, enable and disable.

Each test that takes ``store`` runs on MemoryStore and on SqliteStore. Time is a FakeClock
or the ``now`` given to tick; nothing sleeps. Multi-process firing lives in
tests/chaos/test_cron_processes.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs
import pytest

import jobkit
from jobkit.errors import JobkitError, PayloadTooLarge, ScheduleError, UnknownScheduleError, ValidationError
from jobkit.model import Schedule
from jobkit.store import Store
from tests.recurring.scene import (
    DAY,
    FIVE,
    all_jobs,
    cleanup,
    jobs,
    make,
    minutes,
    quiet_tick,
    report,
    stamp,
    stamps,
    stored,
)
from tests.support import (
    FakeClock,
)


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
