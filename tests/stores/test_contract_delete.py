"""The Store contract: ``delete``, finished jobs by id, with their attempt history and the dependencies naming them.

Every test here runs on MemoryStore, SqliteStore and PostgresStore (the ``store`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from jobkit.errors import ValidationError
from jobkit.model import Complete, Fail, JobStatus, Retry
from jobkit.store import Store
from tests.stores.contract import at, claim_one, lease, snapshot
from tests.support import T0, make_job

COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


@pytest.fixture
def some(store: Store) -> None:
    """One job in each status."""
    store.add(
        [
            make_job("pending"),
            make_job("running"),
            make_job("completed", status=COMPLETED, completed_at=T0, result="1"),
            make_job("failed", status=FAILED, completed_at=T0, error="boom"),
            make_job("cancelled", status=CANCELLED, completed_at=T0, error="cancelled"),
        ]
    )
    claim_one(store, "running")


def left(store: Store) -> list[str]:
    return sorted(job.id for job in snapshot(store))


def test_delete_deletes_the_finished_jobs_given_and_nothing_else(store: Store, some: None) -> None:
    running = store.get("running")
    given = ["failed", "pending", "unknown", "completed", "running", "failed"]
    assert store.delete(given) == ["failed", "completed"]  # each once, in the order given
    assert left(store) == ["cancelled", "pending", "running"]
    assert store.get("running") == running
    assert store.delete(["completed", "cancelled"]) == ["cancelled"]
    assert store.delete([]) == []
    assert store.delete(("pending", "running")) == []
    assert left(store) == ["pending", "running"]


def test_delete_takes_the_attempt_history_with_the_job(store: Store) -> None:
    store.add([make_job("a", max_attempts=2)])
    job = claim_one(store, "a", now=at(1), token="t1")
    store.finish([Retry("a", lease(job).token, "first", None, at=at(2), run_at=at(2))])
    job = claim_one(store, "a", now=at(3), token="t2")
    store.finish([Fail("a", lease(job).token, "second", None, at=at(4))])
    assert [attempt.outcome for attempt in store.attempts("a")] == ["retried", "failed"]
    assert store.delete(["a"]) == ["a"]
    assert store.attempts("a") == []
    store.add([make_job("a", created_at=at(5), scheduled_for=at(5), updated_at=at(5))])  # its id is free again
    job = claim_one(store, "a", now=at(6), token="t3")
    store.finish([Fail("a", lease(job).token, "third", None, at=at(7))])
    assert [(attempt.number, attempt.error) for attempt in store.attempts("a")] == [(1, "third")]


def test_a_job_deleted_counts_as_done_for_those_that_ran_after_it(store: Store) -> None:
    """A child retried waits for no deleted parent; a new job given that parent's id is not its parent."""
    store.add([make_job("p"), make_job("q")])
    store.add([make_job("child", depends_on=("p", "q"))])
    held = claim_one(store, "p", token="tp")
    store.finish([Complete("p", lease(held).token, "1", at=at(1))])
    held = claim_one(store, "q", token="tq")
    store.finish([Fail("q", lease(held).token, "boom", None, at=at(2))])
    child = store.get("child")
    assert child is not None and child.status is CANCELLED

    assert store.delete(["p"]) == ["p"]
    store.add([make_job("p", created_at=at(3), scheduled_for=at(3), updated_at=at(3))])  # another job, p's id
    assert store.retry(["child"], now=at(4)) == ["child"]
    child = store.get("child")
    assert child is not None and (child.status, child.waiting_for) == (JobStatus.PENDING, 1)  # for q alone

    held = claim_one(store, "p", now=at(5), token="tp2")
    store.finish([Fail("p", lease(held).token, "not the parent", None, at=at(6))])
    child = store.get("child")
    assert child is not None and (child.status, child.waiting_for) == (JobStatus.PENDING, 1)

    assert store.retry(["q"], now=at(7)) == ["q"]
    held = claim_one(store, "q", now=at(8), token="tq2")
    store.finish([Complete("q", lease(held).token, "2", at=at(9))])
    child = store.get("child")
    assert child is not None and (child.status, child.waiting_for) == (JobStatus.PENDING, 0)
    assert [job.id for job in store.claim(limit=5, now=at(10), token="t", lock_until=at(40))] == ["child"]


def test_deleting_a_child_leaves_its_parent_to_end_as_it_will(store: Store) -> None:
    store.add([make_job("p")])
    store.add([make_job("child", depends_on=("p",))])
    store.cancel("child", now=at(1))
    assert store.delete(["child"]) == ["child"]
    held = claim_one(store, "p", now=at(2), token="tp")
    assert store.finish([Fail("p", lease(held).token, "boom", None, at=at(3))]) == [True]
    assert left(store) == ["p"]


@pytest.mark.parametrize("given", ["completed", b"completed", None, 7, {"completed"}, ["completed", 7], [None]])
def test_anything_but_a_sequence_of_ids_is_refused_naming_job_ids(store: Store, some: None, given: Any) -> None:
    before = snapshot(store)
    with pytest.raises(ValidationError, match=r"^job_ids\b") as refused:
        store.delete(given)
    assert refused.value.value == given
    assert snapshot(store) == before
