"""The Store contract: add and get.

Every test here runs on MemoryStore and on SqliteStore (the ``store`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from jobkit.errors import JobkitError
from jobkit.model import (
    JobRecord,
    JobStatus,
)
from jobkit.store import Store
from tests.stores.contract import NAIVE, at, snapshot
from tests.support import T0, make_job


# -- add and get ----------------------------------------------------------------------
def test_get_unknown_is_none(store: Store) -> None:
    assert store.get("no-such-job") is None


def test_add_then_get_round_trips_every_field(store: Store) -> None:
    job = JobRecord(
        id="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        job_name="shop.tasks:resize",
        params='{"url": "ä.png", "width": 3}',
        status=JobStatus.RUNNING,
        scheduled_for=at(1.000001),
        created_at=at(0.5),
        updated_at=at(2.25),
        max_attempts=7,
        attempt_count=2,
        priority=-4,
        correlation_id="order-7",
        result=None,
        progress=42,
        progress_message="half way 😀",  # storable text: stages.storable escapes U+0000, which PostgreSQL cannot hold
        error="previous attempt: boom",
        traceback="Traceback (most recent call last): ...",
        worker_id="tok-abc",
        worker_started_at=at(2),
        worker_expires_at=at(32.999999),
        completed_at=None,
        cancel_requested=True,
    )
    done = make_job("done", status=JobStatus.COMPLETED, result='{"path": "x"}', progress=100, completed_at=at(9))
    store.add([job, done])
    assert store.get(job.id) == job
    assert store.get("done") == done


# A batch small and large: a store may write a large one another way (PostgreSQL copies it in).
SIZES = pytest.mark.parametrize("size", [5, 50])


@SIZES
def test_add_many_in_one_call(store: Store, size: int) -> None:
    jobs = [make_job(f"job-{i:02}", priority=i % 3, correlation_id=f"c{i}" if i % 2 else None) for i in range(size)]
    store.add(jobs)
    assert [store.get(job.id) for job in jobs] == jobs
    assert store.counts()[JobStatus.PENDING] == size


def test_add_nothing_changes_nothing(store: Store) -> None:
    store.add([])
    assert snapshot(store) == []


@SIZES
def test_add_with_a_taken_id_rolls_back_the_whole_batch(store: Store, size: int) -> None:
    first = make_job("a", params='{"first": true}')
    store.add([first])
    with pytest.raises(JobkitError):
        store.add([*(make_job(f"b{i}") for i in range(size - 1)), make_job("a", params='{"second": true}')])
    assert snapshot(store) == [first]


@SIZES
def test_add_with_an_id_twice_in_the_batch_adds_none(store: Store, size: int) -> None:
    with pytest.raises(JobkitError):
        store.add([*(make_job(f"x{i}") for i in range(size - 1)), make_job("x0")])
    assert snapshot(store) == []


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"job_name": ""}, id="empty name"),
        pytest.param({"progress": 101}, id="progress over 100"),
        pytest.param({"progress": -1}, id="negative progress"),
        pytest.param({"max_attempts": 0}, id="no attempts"),
        pytest.param({"attempt_count": -1}, id="negative attempt count"),
        pytest.param({"status": JobStatus.RUNNING}, id="running without a worker"),
        pytest.param({"status": JobStatus.COMPLETED}, id="finished without completed_at"),
        pytest.param({"completed_at": T0}, id="pending with completed_at"),
    ],
)
@SIZES
def test_add_refuses_a_record_that_breaks_an_invariant(store: Store, fields: dict[str, Any], size: int) -> None:
    with pytest.raises(JobkitError):
        store.add([*(make_job(f"good{i}") for i in range(size - 1)), make_job("bad", **fields)])
    assert snapshot(store) == []


@pytest.mark.parametrize("fields", [{"max_attempts": 0}, {"progress": 101}], ids=["no attempts", "progress over 100"])
def test_a_job_not_written_because_its_key_is_held_is_not_refused_for_its_row(
    store: Store, fields: dict[str, Any]
) -> None:
    """As the SQL stores' CHECKs: only rows written are judged, and a job whose unique key is held is not written."""
    store.add([make_job("holder", unique_key="k")])
    assert store.add([make_job("good"), make_job("dup", unique_key="k", **fields)]) == ["good", "holder"]
    assert sorted(job.id for job in snapshot(store)) == ["good", "holder"]
    with pytest.raises(JobkitError):
        store.add([make_job("other", unique_key="k2", **fields)])  # written, so refused


@pytest.mark.parametrize("field", ["scheduled_for", "created_at", "updated_at"])
def test_add_refuses_naive_times(store: Store, field: str) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.add([make_job("good"), make_job("bad", **{field: NAIVE})])
    assert snapshot(store) == []
