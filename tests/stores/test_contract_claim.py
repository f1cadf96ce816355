"""The Store contract: claim and claim_job.

Every test here runs on MemoryStore and on SqliteStore (the ``store`` fixture).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from jobkit.model import (
    JobStatus,
)
from jobkit.store import Store
from tests.stores.contract import LOCK, US, at, snapshot
from tests.support import T0, make_job


# -- claim ----------------------------------------------------------------------------
def test_claim_takes_highest_priority_then_earliest_then_lowest_id(store: Store) -> None:
    store.add(
        [
            make_job("e", priority=-1, scheduled_for=at(-100)),
            make_job("b", priority=5, scheduled_for=at(2)),
            make_job("a", priority=0, scheduled_for=at(-50)),
            make_job("d", priority=5, scheduled_for=at(1)),
            make_job("c", priority=5, scheduled_for=at(1)),
        ]
    )
    now = at(10)
    first = store.claim(limit=2, now=now, token="t1", lock_until=now + LOCK)
    rest = store.claim(limit=10, now=now, token="t2", lock_until=now + LOCK)
    assert [j.id for j in first] == ["c", "d"]
    assert [j.id for j in rest] == ["b", "a", "e"]
    assert store.claim(limit=10, now=now, token="t3", lock_until=now + LOCK) == []


def test_claim_marks_the_job_running_under_the_token(store: Store) -> None:
    job = make_job(
        "a",
        attempt_count=1,
        progress=40,
        progress_message="was halfway",
        error="boom",
        correlation_id="order-7",
        priority=3,
        scheduled_for=at(-5),
        created_at=at(-9),
        updated_at=at(-5),
    )
    store.add([job])
    now = at(1.5)
    [claimed] = store.claim(limit=1, now=now, token="tok-9", lock_until=at(31.5))
    assert claimed == attrs.evolve(
        job,
        status=JobStatus.RUNNING,
        worker_id="tok-9",
        worker_started_at=now,
        worker_expires_at=at(31.5),
        attempt_count=2,
        progress=0,
        progress_message=None,
        updated_at=now,
    )
    assert store.get("a") == claimed


def test_claim_takes_a_job_due_exactly_now_but_not_one_due_later(store: Store) -> None:
    store.add([make_job("now", scheduled_for=at(5)), make_job("later", scheduled_for=at(5) + US)])
    claimed = store.claim(limit=10, now=at(5), token="t", lock_until=at(35))
    assert [j.id for j in claimed] == ["now"]
    assert store.get("later") == make_job("later", scheduled_for=at(5) + US)


def test_claim_takes_only_pending_jobs(store: Store) -> None:
    store.add(
        [
            make_job("running", status=JobStatus.RUNNING, worker_id="w", worker_expires_at=at(-1), attempt_count=1),
            make_job("completed", status=JobStatus.COMPLETED, completed_at=T0),
            make_job("failed", status=JobStatus.FAILED, completed_at=T0),
            make_job("cancelled", status=JobStatus.CANCELLED, completed_at=T0),
            make_job("pending"),
        ]
    )
    before = snapshot(store)
    claimed = store.claim(limit=10, now=at(1), token="t", lock_until=at(31))
    assert [j.id for j in claimed] == ["pending"]
    assert [j for j in snapshot(store) if j.id != "pending"] == [j for j in before if j.id != "pending"]


def test_claim_filters_by_name(store: Store) -> None:
    store.add([make_job("a", job_name="x:one"), make_job("b", job_name="x:two"), make_job("c", job_name="x:three")])
    claimed = store.claim(limit=10, now=T0, token="t", lock_until=at(30), names={"x:one", "x:three", "x:absent"})
    assert [j.id for j in claimed] == ["a", "c"]
    assert store.get("b") == make_job("b", job_name="x:two")


def test_claim_with_no_names_takes_nothing(store: Store) -> None:
    store.add([make_job("a")])
    assert store.claim(limit=10, now=T0, token="t", lock_until=at(30), names=[]) == []
    assert store.get("a") == make_job("a")


def test_a_worker_that_knows_no_names_has_nothing_due(store: Store) -> None:
    """A worker given a registry with no jobs (--jobs of an empty module) asks with no names."""
    store.add([make_job("a")])
    assert store.next_due([]) is None
    assert store.next_due(["x:absent"]) is None
    assert store.finish_and_claim([], limit=5, now=T0, token="t", lock_until=at(30), names=[]) == ([], [])


@pytest.mark.parametrize("limit", [0, -1])
def test_claim_with_no_room_takes_nothing(store: Store, limit: int) -> None:
    store.add([make_job("a")])
    assert store.claim(limit=limit, now=T0, token="t", lock_until=at(30)) == []
    assert store.get("a") == make_job("a")


def test_claim_on_an_empty_store_is_an_empty_list(store: Store) -> None:
    assert store.claim(limit=5, now=T0, token="t", lock_until=at(30)) == []


def test_claim_refuses_a_single_name_given_as_a_str(store: Store) -> None:
    store.add([make_job("a", job_name="x:one")])
    with pytest.raises(TypeError, match="collection of job names"):
        store.claim(limit=1, now=T0, token="t", lock_until=at(30), names="x:one")
    assert store.get("a") == make_job("a", job_name="x:one")


# -- claim_job ------------------------------------------------------------------------
def test_claim_job_takes_a_pending_job_even_before_it_is_due(store: Store) -> None:
    job = make_job("a", scheduled_for=at(3600))
    store.add([job])
    claimed = store.claim_job("a", now=T0, token="tok", lock_until=at(30))
    expected = attrs.evolve(
        job,
        status=JobStatus.RUNNING,
        worker_id="tok",
        worker_started_at=T0,
        worker_expires_at=at(30),
        attempt_count=1,
        updated_at=T0,
    )
    assert claimed == expected
    assert store.get("a") == expected


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"status": JobStatus.RUNNING, "worker_id": "other", "worker_expires_at": at(30)}, id="running"),
        pytest.param({"status": JobStatus.COMPLETED, "completed_at": T0}, id="completed"),
        pytest.param({"status": JobStatus.FAILED, "completed_at": T0}, id="failed"),
        pytest.param({"status": JobStatus.CANCELLED, "completed_at": T0}, id="cancelled"),
    ],
)
def test_claim_job_of_a_job_that_is_not_pending_is_none(store: Store, fields: dict[str, Any]) -> None:
    job = make_job("a", attempt_count=1, **fields)
    store.add([job])
    assert store.claim_job("a", now=at(60), token="tok", lock_until=at(90)) is None
    assert store.get("a") == job


def test_claim_job_of_an_unknown_job_is_none(store: Store) -> None:
    assert store.claim_job("ghost", now=T0, token="tok", lock_until=at(30)) is None
    assert snapshot(store) == []
