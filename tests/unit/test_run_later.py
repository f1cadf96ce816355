"""spec.later and later_many: enqueue, validate, write nothing on refusal; __main__ jobs."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import jobkit
from jobkit import run
from jobkit.store import Store
from tests.support import (
    PENDING,
    T0,
    FakeClock,
)
from tests.unit.run_jobs import Resize, _count, _is_uuid7, double, resize


# -- later -------------------------------------------------------------------------------
def test_later_writes_one_pending_job(store: Store) -> None:
    job_id = resize.later(Resize("a.png", 3), store)
    assert _is_uuid7(job_id)
    record = store.get(job_id)
    assert record is not None
    assert record.status is PENDING
    assert record.job_name == resize.name
    assert json.loads(record.params) == {"url": "a.png", "width": 3}
    assert record.scheduled_for == record.created_at
    assert (record.max_attempts, record.priority, record.correlation_id, record.attempt_count) == (5, 0, None, 0)
    assert record.worker_id is None
    assert record.created_at.tzinfo is not None


def test_later_options_are_stored(store: Store) -> None:
    job_id = resize.later({"url": "a"}, store, delay=30, correlation_id="order-7", max_attempts=7, priority=4)
    record = store.get(job_id)
    assert record is not None
    assert record.scheduled_for - record.created_at == timedelta(seconds=30)
    assert (record.correlation_id, record.max_attempts, record.priority) == ("order-7", 7, 4)
    assert [r.id for r in store.list_jobs(correlation_id="order-7")] == [job_id]


def test_later_times_come_from_the_clock(store: Store, clock: FakeClock) -> None:
    (soon,) = run.enqueue(double, [1], store, delay=timedelta(minutes=2), clock=clock)
    (now,) = run.enqueue(double, [1], store, delay=0, clock=clock)
    record, immediate = store.get(soon), store.get(now)
    assert record is not None
    assert immediate is not None
    assert (record.created_at, record.scheduled_for) == (T0, T0 + timedelta(minutes=2))
    assert immediate.scheduled_for == T0


def test_later_at_a_given_time_in_any_timezone(store: Store) -> None:
    at = datetime(2030, 5, 17, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-5)))
    record = store.get(double.later(1, store, at=at, priority=-3))
    assert record is not None
    assert record.scheduled_for == at
    assert record.scheduled_for.utcoffset() is not None
    assert record.priority == -3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": -1}, "delay must be seconds (>= 0) or a timedelta, not -1"),
        ({"delay": timedelta(seconds=-1)}, "delay must be seconds (>= 0) or a timedelta, not "),
        ({"delay": "30"}, "delay must be seconds (>= 0) or a timedelta, not '30'"),
        ({"delay": True}, "delay must be seconds (>= 0) or a timedelta, not True"),
        ({"at": datetime(2030, 1, 1)}, "at must be a timezone-aware datetime, not datetime.datetime(2030, 1, 1, 0, 0)"),
        ({"at": "2030-01-01T00:00:00Z"}, "at must be a timezone-aware datetime, not '2030-01-01T00:00:00Z'"),
        ({"at": T0, "delay": 5}, "give delay or at, not both"),
        ({"correlation_id": 7}, "correlation_id must be a str, not 7"),
        ({"max_attempts": 0}, "max_attempts must be an int of at least 1, not 0"),
        ({"max_attempts": 2.5}, "max_attempts must be an int of at least 1, not 2.5"),
        ({"max_attempts": True}, "max_attempts must be an int of at least 1, not True"),
        ({"priority": "high"}, "priority must be an int, not 'high'"),
        ({"priority": 1.0}, "priority must be an int, not 1.0"),
        ({"priority": None}, "priority must be an int, not None"),
    ],
)
def test_later_refuses_invalid_options_and_writes_nothing(store: Store, options: Any, message: str) -> None:
    with pytest.raises(jobkit.ValidationError) as caught:
        double.later(1, store, **options)
    assert str(caught.value).startswith(message)
    with pytest.raises(jobkit.ValidationError):
        double.later_many([1, 2], store, **options)
    assert _count(store) == 0


@pytest.mark.parametrize("delay", [math.nan, math.inf, 1e12])
def test_later_refuses_a_delay_that_is_not_a_finite_time(store: Store, delay: float) -> None:
    with pytest.raises(jobkit.ValidationError, match="delay must be"):
        double.later(1, store, delay=delay)
    assert _count(store) == 0


# -- later_many --------------------------------------------------------------------------
def test_later_many_enqueues_all_in_order(store: Store) -> None:
    ids = double.later_many([1, 2, 3], store, delay=5, correlation_id="batch-1", max_attempts=2, priority=1)
    assert len(ids) == len(set(ids)) == 3
    assert ids == sorted(ids)  # UUIDv7: sorted by creation
    records = [store.get(i) for i in ids]
    assert [json.loads(r.params) for r in records if r] == [1, 2, 3]
    for record in records:
        assert record is not None
        assert (record.status, record.correlation_id, record.max_attempts, record.priority) == (
            PENDING,
            "batch-1",
            2,
            1,
        )
        assert record.scheduled_for - record.created_at == timedelta(seconds=5)


def test_later_many_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(jobkit.ValidationError) as caught:
        resize.later_many([{"url": "a"}, Resize("b"), {"url": "c", "width": "wide"}, {"url": "d"}], store)
    assert str(caught.value) == "invalid params[2]: invalid value for type, expected int @ params[2].width"
    assert _count(store) == 0


def test_later_many_of_nothing_writes_nothing(store: Store) -> None:
    assert double.later_many([], store) == []
    assert _count(store) == 0


def test_later_many_of_one_still_names_the_index(store: Store) -> None:
    with pytest.raises(jobkit.ValidationError, match=r"@ params\[0\]"):
        double.later_many(["x"], store)


# -- __main__ jobs -------------------------------------------------------------------------
def _main_spec() -> jobkit.JobSpec[Any, Any]:
    def script_job(params: int, ctx: jobkit.Context) -> int:
        return params

    script_job.__module__ = "__main__"
    script_job.__qualname__ = "script_job"
    return jobkit.Registry().job()(script_job)


def test_main_job_is_refused_for_a_shared_store(tmp_path: Any) -> None:
    spec = _main_spec()
    assert spec.name == "__main__:script_job"
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as store:
        for enqueue in (lambda: spec.later(1, store), lambda: spec.later_many([1, 2], store)):
            with pytest.raises(jobkit.JobkitError) as caught:
                enqueue()
            assert str(caught.value) == (
                "job '__main__:script_job' is defined in a script run as __main__, which a worker process cannot "
                "import; define it in a module, or give it a name (jobs.job(name=...)) and start the worker with "
                "--jobs MODULE"
            )
        assert _count(store) == 0
        assert spec.now(5, store=store).unwrap() == 5  # running it here needs no import


def test_main_job_is_accepted_by_memory_store() -> None:
    spec = _main_spec()
    store = jobkit.MemoryStore()
    record = store.get(spec.later(1, store))
    assert record is not None
    assert record.job_name == "__main__:script_job"


def test_named_main_job_is_accepted_by_a_shared_store(tmp_path: Any) -> None:
    def script_job(params: int, ctx: jobkit.Context) -> int:
        return params

    script_job.__module__ = "__main__"
    spec = jobkit.Registry().job(name="scripts.nightly")(script_job)
    with jobkit.SqliteStore(tmp_path / "jobs.sqlite") as store:
        assert store.get(spec.later(1, store)) is not None
