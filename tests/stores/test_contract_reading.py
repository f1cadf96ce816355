"""The Store contract, the read side: counts, listings, next_due, cursor paging.

Every test here runs on MemoryStore and on SqliteStore (the ``store`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from jobkit.model import (
    JobRecord,
    JobStatus,
)
from jobkit.store import Store
from tests.stores.contract import NAIVE, US, at, claim_one
from tests.support import T0, make_job


# -- reading --------------------------------------------------------------------------
def test_counts_has_every_status(store: Store) -> None:
    assert store.counts() == dict.fromkeys(JobStatus, 0)
    store.add(
        [
            make_job("p1"),
            make_job("p2"),
            make_job("r"),
            make_job("c", status=JobStatus.COMPLETED, completed_at=T0),
            make_job("x", status=JobStatus.CANCELLED, completed_at=T0),
        ]
    )
    claim_one(store, "r")
    assert store.counts() == {
        JobStatus.PENDING: 2,
        JobStatus.RUNNING: 1,
        JobStatus.COMPLETED: 1,
        JobStatus.FAILED: 0,
        JobStatus.CANCELLED: 1,
    }


def test_list_jobs_is_newest_first(store: Store) -> None:
    store.add(
        [
            make_job("m", created_at=at(2)),
            make_job("z", created_at=at(1)),
            make_job("a", created_at=at(3)),
            make_job("b", created_at=at(2)),
            make_job("y", created_at=at(2) + US),
        ]
    )
    assert [j.id for j in store.list_jobs()] == ["a", "y", "m", "b", "z"]
    assert [j.id for j in store.list_jobs(limit=2)] == ["a", "y"]
    assert store.list_jobs(limit=0) == []


def test_list_jobs_filters(store: Store) -> None:
    store.add(
        [
            make_job("1", job_name="x:a", correlation_id="o-1", created_at=at(1)),
            make_job("2", job_name="x:b", correlation_id="o-1", created_at=at(2)),
            make_job("3", job_name="x:a", correlation_id="o-2", created_at=at(3)),
            make_job("4", job_name="x:a", created_at=at(4)),
        ]
    )
    claim_one(store, "3")

    def ids(**filters: Any) -> list[str]:
        return [j.id for j in store.list_jobs(**filters)]

    assert ids() == ["4", "3", "2", "1"]
    assert ids(status=JobStatus.PENDING) == ["4", "2", "1"]
    assert ids(status=JobStatus.RUNNING) == ["3"]
    assert ids(status=JobStatus.FAILED) == []
    assert ids(name="x:a") == ["4", "3", "1"]
    assert ids(correlation_id="o-1") == ["2", "1"]
    assert ids(name="x:a", correlation_id="o-1") == ["1"]
    assert ids(name="x:a", status=JobStatus.PENDING, correlation_id="o-2") == []
    assert ids(name="x:nothing") == []


def test_list_jobs_returns_100_by_default(store: Store) -> None:
    store.add([make_job(f"job-{i:03d}", created_at=at(i)) for i in range(101)])
    listed = store.list_jobs()
    assert len(listed) == 100
    assert listed[0].id == "job-100"
    assert listed[-1].id == "job-001"


def test_next_due_is_the_earliest_pending_schedule(store: Store) -> None:
    assert store.next_due() is None
    store.add(
        [
            make_job("soon", scheduled_for=at(5)),
            make_job("later", scheduled_for=at(50)),
            make_job("running", scheduled_for=at(-10)),
            make_job("done", status=JobStatus.COMPLETED, scheduled_for=at(-20), completed_at=T0),
        ]
    )
    claim_one(store, "running")
    assert store.next_due() == at(5)
    claim_one(store, "soon")
    assert store.next_due() == at(50)
    claim_one(store, "later")
    assert store.next_due() is None


# -- paging ---------------------------------------------------------------------------
def page_through(store: Store, limit: int, **filters: Any) -> list[list[str]]:
    """Every page of a listing, as lists of ids, each page starting after the last job of the one before."""
    pages: list[list[str]] = []
    after = None
    for _ in range(100):
        page = store.list_jobs(limit=limit, after=after, **filters)
        if not page:
            return pages
        pages.append([job.id for job in page])
        after = (page[-1].created_at, page[-1].id)
    pytest.fail("the cursor did not move on")


def newest_first(jobs: list[JobRecord]) -> list[str]:
    return [job.id for job in sorted(jobs, key=lambda job: (job.created_at, job.id), reverse=True)]


def test_paging_yields_every_job_once_newest_first(store: Store) -> None:
    # Created out of id order, so that the order is created_at's and not the ids'.
    jobs = [make_job(f"job-{n:02d}", created_at=at((n * 7) % 25)) for n in range(25)]
    store.add(jobs)
    pages = page_through(store, 10)
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [job_id for page in pages for job_id in page] == newest_first(jobs)


@pytest.mark.parametrize(
    "filters",
    [
        {"name": "a:one"},
        {"status": JobStatus.CANCELLED},
        {"status": JobStatus.PENDING},
        {"correlation_id": "order-1"},
        {"name": "a:one", "status": JobStatus.PENDING},
        {"name": "b:two", "status": JobStatus.CANCELLED},
        {"name": "b:two", "correlation_id": "order-2"},
    ],
    ids=lambda filters: ",".join(f"{k}={getattr(v, 'value', v)}" for k, v in filters.items()),
)
def test_paging_keeps_to_the_filters(store: Store, filters: dict[str, Any]) -> None:
    jobs = [
        make_job(
            f"job-{n:02d}",
            job_name="a:one" if n % 2 else "b:two",
            correlation_id=f"order-{n % 3}",
            created_at=at(n // 2),  # two jobs at each time
        )
        for n in range(50)
    ]
    store.add(jobs)
    for job in jobs[::5]:
        store.cancel(job.id, now=at(100))
    listed = store.list_jobs(limit=10**6, **filters)
    assert 3 < len(listed) < 50  # the filter matters, and there is more than one page of 3
    wanted = {job.id for job in listed}
    expected = newest_first([job for job in jobs if job.id in wanted])
    for limit in (10, 3):
        pages = page_through(store, limit, **filters)
        assert all(len(page) == limit for page in pages[:-1])
        assert [job_id for page in pages for job_id in page] == expected


def test_paging_breaks_ties_of_created_at_by_id(store: Store) -> None:
    ids = [f"job-{n:02d}" for n in range(25)]
    store.add([make_job(job_id) for job_id in ids[::-1]])  # all created at T0
    pages = page_through(store, 10)
    assert [job_id for page in pages for job_id in page] == sorted(ids, reverse=True)
    assert [j.id for j in store.list_jobs(after=(T0, "job-12"))] == [f"job-{n:02d}" for n in range(11, -1, -1)]
    assert [j.id for j in store.list_jobs(after=(T0, "job-12x"))][:2] == ["job-12", "job-11"]
    assert len(store.list_jobs(after=(T0 + US, ""))) == 25  # any id at an earlier time
    assert store.list_jobs(after=(T0, "")) == []  # no id sorts before the empty one


def test_a_naive_cursor_is_refused(store: Store) -> None:
    store.add([make_job("a")])
    for status in (None, JobStatus.PENDING):
        with pytest.raises(ValueError, match="naive"):
            store.list_jobs(status=status, after=(NAIVE, "a"))
