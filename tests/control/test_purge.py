"""jobkit.purge and parse_duration: deleting finished jobs by age, in batches.

Every test that takes ``store`` runs on MemoryStore and on SqliteStore. Workers run in
threads (``run_worker`` with a stop Event). Nothing sleeps to wait for something: handlers
and tests meet on Events, stores run on a FakeClock where time matters, and conditions are
polled with a deadline. Real processes are in tests/chaos/test_control_processes.py.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

import jobkit
from jobkit.control import PURGE_BATCH, parse_duration
from jobkit.errors import ValidationError
from jobkit.model import JobStatus
from jobkit.store import Store
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    T0,
    Background,
    FakeClock,
    Load,
    PurgeSpy,
    finished,
    unfinished,
)
from tests.support import record as get


@pytest.fixture
def aged(store: Store) -> dict[str, str]:
    """Jobs of every status at several ages before T0; the keys say which."""
    hour = timedelta(hours=1)
    return {
        "completed 3h": finished(store, COMPLETED, T0 - 3 * hour),
        "completed 2h": finished(store, COMPLETED, T0 - 2 * hour),
        "completed 1h exactly": finished(store, COMPLETED, T0 - hour),
        "completed 10m": finished(store, COMPLETED, T0 - hour / 6),
        "failed 3h": finished(store, FAILED, T0 - 3 * hour),
        "failed 10m": finished(store, FAILED, T0 - hour / 6),
        "cancelled 3h": finished(store, CANCELLED, T0 - 3 * hour),
        "pending 1y": unfinished(store, PENDING, T0 - 365 * 24 * hour),
        "running 1y": unfinished(store, RUNNING, T0 - 365 * 24 * hour),
    }


def left(store: Store, aged: dict[str, str]) -> list[str]:
    return [key for key, job_id in aged.items() if store.get(job_id) is not None]


def test_purge_deletes_finished_jobs_older_than_the_cutoff_and_nothing_else(
    store: Store, clock: FakeClock, aged: dict[str, str]
) -> None:
    assert jobkit.purge(store, older_than=timedelta(hours=1), clock=clock) == 4
    assert left(store, aged) == ["completed 1h exactly", "completed 10m", "failed 10m", "pending 1y", "running 1y"]
    assert jobkit.purge(store, older_than=timedelta(hours=1), clock=clock) == 0
    assert jobkit.purge(store, older_than=timedelta(0), clock=clock) == 3
    assert left(store, aged) == ["pending 1y", "running 1y"]
    assert [get(store, aged[k]).status for k in ("pending 1y", "running 1y")] == [PENDING, RUNNING]


@pytest.mark.parametrize(
    ("statuses", "gone"),
    [
        (["failed"], ["failed 3h"]),
        ([COMPLETED], ["completed 3h", "completed 2h"]),
        (("cancelled", FAILED), ["failed 3h", "cancelled 3h"]),
        ([], []),
    ],
)
def test_purge_deletes_only_the_statuses_given(
    store: Store, clock: FakeClock, aged: dict[str, str], statuses: list[Any], gone: list[str]
) -> None:
    assert jobkit.purge(store, older_than=timedelta(hours=1), statuses=statuses, clock=clock) == len(gone)
    assert [key for key in aged if key not in left(store, aged)] == gone


def test_purge_works_in_batches_until_nothing_is_left(store: Store, clock: FakeClock) -> None:
    old = [finished(store, COMPLETED, T0 - timedelta(days=2, seconds=n)) for n in range(7)]
    recent = finished(store, COMPLETED, T0)
    spy = PurgeSpy(store)
    assert jobkit.purge(spy, older_than=timedelta(days=1), clock=clock, batch=3) == 7  # type: ignore[arg-type]
    assert spy.calls == [(3, 3), (3, 3), (3, 1)]
    assert all(store.get(j) is None for j in old) and store.get(recent) is not None

    for n in range(6):
        finished(store, FAILED, T0 - timedelta(days=3, seconds=n))
    spy.calls.clear()
    assert jobkit.purge(spy, older_than=timedelta(days=1), clock=clock, batch=3) == 6  # type: ignore[arg-type]
    assert spy.calls == [(3, 3), (3, 3), (3, 0)]
    spy.calls.clear()
    assert jobkit.purge(spy, older_than=timedelta(days=1), clock=clock) == 0  # type: ignore[arg-type]
    assert spy.calls == [(PURGE_BATCH, 0)]


def test_purge_deletes_the_oldest_first_within_a_batch(store: Store, clock: FakeClock) -> None:
    ages = [5, 1, 4, 2, 3]
    ids = {age: finished(store, COMPLETED, T0 - timedelta(days=age)) for age in ages}
    assert store.purge(statuses=[COMPLETED], before=T0, limit=2) == 2
    assert sorted(age for age, job_id in ids.items() if store.get(job_id) is not None) == [1, 2, 3]


@pytest.mark.parametrize(
    "statuses", [["pending"], [RUNNING], ["completed", "running"], ["done"], [COMPLETED, "finished"]]
)
def test_purge_refuses_unfinished_and_unknown_statuses(
    store: Store, clock: FakeClock, aged: dict[str, str], statuses: list[Any]
) -> None:
    with pytest.raises(ValidationError) as caught:
        jobkit.purge(store, older_than=timedelta(0), statuses=statuses, clock=clock)
    assert isinstance(caught.value, ValueError)
    assert left(store, aged) == list(aged), "a refused purge deleted something"


@pytest.mark.parametrize(
    "options",
    [
        {"older_than": timedelta(seconds=-1)},
        {"older_than": -timedelta(days=7)},
        {"older_than": timedelta(0), "batch": 0},
        {"older_than": timedelta(0), "batch": -5},
    ],
)
def test_purge_refuses_negative_durations_and_empty_batches(
    store: Store, clock: FakeClock, aged: dict[str, str], options: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        jobkit.purge(store, clock=clock, **options)
    assert left(store, aged) == list(aged)


def test_purge_with_a_cutoff_before_the_year_one_deletes_nothing(
    store: Store, clock: FakeClock, aged: dict[str, str]
) -> None:
    assert jobkit.purge(store, older_than=timedelta(days=999_999_999), clock=clock) == 0
    assert jobkit.purge(store, older_than=parse_duration("99999999d"), clock=clock) == 0
    assert left(store, aged) == list(aged)


def test_store_purge_never_deletes_unfinished_jobs_even_when_asked(store: Store, aged: dict[str, str]) -> None:
    assert store.purge(statuses=list(JobStatus), before=T0 + timedelta(days=999), limit=100) == 7
    assert left(store, aged) == ["pending 1y", "running 1y"]
    assert store.purge(statuses=[PENDING, RUNNING], before=T0 + timedelta(days=999), limit=100) == 0
    assert store.purge(statuses=[COMPLETED], before=T0, limit=0) == 0


def test_purge_under_load_leaves_unfinished_jobs_alone(store: Store) -> None:
    """Jobs are enqueued and worked while purge deletes every finished job it can: each job still runs once."""
    load = Load(store)
    purged = 0
    with Background(store, load.jobs, concurrency=4), Background(store, load.jobs, concurrency=2):
        load.start()
        deadline = time.monotonic() + 30
        while not load.finished():
            assert time.monotonic() < deadline, f"{len(load.completed)} of {load.total} completed after 30s"
            deleted = jobkit.purge(store, older_than=timedelta(0), batch=7)
            purged += deleted
            if deleted:
                load.first_deletion.set()
    load.check(purged)
    assert jobkit.purge(store, older_than=timedelta(0)) + purged == load.total
    assert store.counts() == dict.fromkeys(JobStatus, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("45", timedelta(seconds=45)),
        ("1.5h", timedelta(minutes=90)),
        (" 7D ", timedelta(days=7)),
        ("0s", timedelta(0)),
        ("0", timedelta(0)),
        ("0.25s", timedelta(milliseconds=250)),
    ],
)
def test_parse_duration_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "s", "abc", "-5m", "-1", "5y", "1h30m", "30min", "inf", "nan", "infd", "1e20d", "1e300"]
)
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValidationError, match="bad duration") as caught:
        parse_duration(text)
    assert caught.value.value == text


# -- purge_jobs: finished jobs by id ---------------------------------------------------
def test_purge_jobs_deletes_the_finished_jobs_given_and_skips_the_rest(store: Store, aged: dict[str, str]) -> None:
    given = [aged["failed 10m"], aged["pending 1y"], "no-such-job", aged["completed 3h"], aged["failed 10m"]]
    assert jobkit.purge_jobs(store, given) == [aged["failed 10m"], aged["completed 3h"]]
    assert [key for key in aged if key not in left(store, aged)] == ["completed 3h", "failed 10m"]
    assert jobkit.purge_jobs(store, []) == []


def test_purge_jobs_all_or_nothing_refuses_unknown_ids_naming_each_and_deletes_nothing(
    store: Store, aged: dict[str, str]
) -> None:
    with pytest.raises(jobkit.JobNotFound) as caught:
        jobkit.purge_jobs(store, [aged["completed 3h"], "gone-1", aged["running 1y"], "gone-2"], all_or_nothing=True)
    assert caught.value.job_ids == ["gone-1", "gone-2"]
    assert left(store, aged) == list(aged)


def test_purge_jobs_all_or_nothing_refuses_unfinished_jobs_naming_each_and_deletes_nothing(
    store: Store, aged: dict[str, str]
) -> None:
    given = [aged["completed 3h"], aged["pending 1y"], aged["running 1y"]]
    with pytest.raises(jobkit.JobStateError, match="only finished jobs can be deleted") as caught:
        jobkit.purge_jobs(store, given, all_or_nothing=True)
    assert caught.value.jobs == {aged["pending 1y"]: "pending", aged["running 1y"]: "running"}
    assert left(store, aged) == list(aged)


def test_purge_jobs_all_or_nothing_deletes_them_all_with_their_history(store: Store, aged: dict[str, str]) -> None:
    given = [aged["cancelled 3h"], aged["failed 3h"], aged["cancelled 3h"]]
    assert jobkit.purge_jobs(store, given, all_or_nothing=True) == [aged["cancelled 3h"], aged["failed 3h"]]
    assert "cancelled 3h" not in left(store, aged) and "failed 3h" not in left(store, aged)
    assert store.attempts(aged["failed 3h"]) == []


@pytest.mark.parametrize("all_or_nothing", [False, True])
def test_purge_jobs_refuses_a_bare_id_and_deletes_nothing(
    store: Store, aged: dict[str, str], all_or_nothing: bool
) -> None:
    with pytest.raises(ValidationError, match=r"^job_ids"):
        jobkit.purge_jobs(store, aged["completed 3h"], all_or_nothing=all_or_nothing)
    assert left(store, aged) == list(aged)


def test_purge_jobs_is_exported() -> None:
    from jobkit import control

    assert jobkit.purge_jobs is control.purge_jobs and "purge_jobs" in jobkit.__all__
