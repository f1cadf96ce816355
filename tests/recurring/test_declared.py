"""Schedules declared in code (Registry.cron): written at tick or when a worker starts, kept in sync.

Each test that takes ``store`` runs on MemoryStore and on SqliteStore. Time is a FakeClock
or the ``now`` given to tick; nothing sleeps. Multi-process firing lives in
tests/chaos/test_cron_processes.py.
"""

from __future__ import annotations

from typing import Any

import pytest

import jobkit
from jobkit.errors import ScheduleError, ValidationError
from jobkit.model import JobStatus
from jobkit.spec import CronEntry
from jobkit.store import Store
from jobkit.worker import run_worker
from tests.recurring.scene import (
    DAY,
    FIVE,
    all_jobs,
    app,
    cleanup,
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
