"""The Store contract: ``finished``, the finished jobs in the order they ended, paged by (completed_at, id).

Every test here runs on MemoryStore, SqliteStore and PostgresStore (the ``store`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from jobkit.errors import ValidationError
from jobkit.model import Complete, Fail, JobStatus
from jobkit.store import Store
from tests.stores.contract import NAIVE, US, at, claim_one, lease, snapshot
from tests.support import T0, make_job

COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


def ended(job_id: str, status: JobStatus, seconds: float, **fields: Any) -> Any:
    return make_job(job_id, status=status, completed_at=at(seconds), updated_at=at(seconds), **fields)


@pytest.fixture
def ends(store: Store) -> list[str]:
    """Finished jobs of every kind, ended out of id and creation order, ties at one time; and unfinished ones.

    Returns the finished ones' ids in the order they ended.
    """
    store.add(
        [
            ended("f-5", COMPLETED, 5, created_at=at(-10)),
            ended("f-1", FAILED, 1),
            ended("f-3c", CANCELLED, 3),
            ended("f-3a", COMPLETED, 3),
            ended("f-3b", FAILED, 3),
            ended("f-2", CANCELLED, 2 + 1e-6),
            ended("f-9", COMPLETED, 9),
            make_job("pending"),
            make_job("running"),
        ]
    )
    claim_one(store, "running")
    return ["f-1", "f-2", "f-3a", "f-3b", "f-3c", "f-5", "f-9"]


def ids(store: Store, **options: Any) -> list[str]:
    return [job.id for job in store.finished(**options)]


def test_finished_jobs_come_in_the_order_they_ended_ties_by_id(store: Store, ends: list[str]) -> None:
    assert ids(store, after=None, until=at(100), limit=100) == ends
    assert ids(store, after=None, until=at(100), limit=3) == ends[:3]
    assert ids(store, after=None, until=at(100), limit=0) == []
    assert all(job.status.finished for job in store.finished(after=None, until=at(100), limit=100))


def test_until_is_exclusive_and_after_strict(store: Store, ends: list[str]) -> None:
    assert ids(store, after=None, until=at(3), limit=100) == ["f-1", "f-2"]
    assert ids(store, after=None, until=at(3) + US, limit=100) == ["f-1", "f-2", "f-3a", "f-3b", "f-3c"]
    assert ids(store, after=(at(3), "f-3a"), until=at(100), limit=100) == ["f-3b", "f-3c", "f-5", "f-9"]
    assert ids(store, after=(at(3), "f-3"), until=at(100), limit=2) == ["f-3a", "f-3b"]
    assert ids(store, after=(at(3), ""), until=at(5), limit=100) == ["f-3a", "f-3b", "f-3c"]
    assert ids(store, after=(at(9), "f-9"), until=at(100), limit=100) == []
    assert ids(store, after=(at(9), "f-9"), until=at(1), limit=100) == []


def test_paging_through_finished_jobs_yields_each_once_in_order(store: Store, ends: list[str]) -> None:
    for limit in (1, 2, 3):
        seen: list[str] = []
        after = None
        for _ in range(20):
            page = store.finished(after=after, until=at(100), limit=limit)
            if not page:
                break
            seen += [job.id for job in page]
            last = page[-1]
            assert last.completed_at is not None
            after = (last.completed_at, last.id)
        assert seen == ends


def test_a_reader_paging_on_sees_jobs_as_they_finish(store: Store) -> None:
    store.add([make_job("a"), make_job("b"), make_job("c")])
    job = claim_one(store, "a", now=at(1))
    store.finish([Complete("a", lease(job).token, "1", at=at(2))])
    first = store.finished(after=None, until=at(3), limit=10)
    assert [j.id for j in first] == ["a"]
    cursor = (at(2), "a")
    for job_id, seconds in (("c", 4), ("b", 5)):
        held = claim_one(store, job_id, now=at(seconds - 1), token=f"tok-{job_id}")
        store.finish([Fail(job_id, lease(held).token, "boom", None, at=at(seconds))])
    assert ids(store, after=cursor, until=at(4), limit=10) == []  # c ended at 4: not before until
    assert ids(store, after=cursor, until=at(6), limit=10) == ["c", "b"]
    store.cancel("a", now=at(7))  # a finished job is left as it is
    assert ids(store, after=None, until=at(10), limit=10) == ["a", "c", "b"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"until": NAIVE}, "until"),
        ({"until": None}, "until"),
        ({"until": "2026-01-01"}, "until"),
        ({"after": (NAIVE, "a")}, "after"),
        ({"after": ("2026-01-01", "a")}, "after"),
        ({"after": (T0,)}, "after"),
        ({"limit": -1}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limit": 2.0}, "limit"),
        ({"limit": True}, "limit"),
    ],
    ids=repr,
)
def test_bad_arguments_are_refused_naming_them(
    store: Store, ends: list[str], options: dict[str, Any], named: str
) -> None:
    before = snapshot(store)
    with pytest.raises(ValidationError, match=rf"^{named}\b") as refused:
        store.finished(**{"after": None, "until": at(100), "limit": 10, **options})
    assert refused.value.value == next(iter(options.values()))
    assert snapshot(store) == before
