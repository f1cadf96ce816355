"""The Store contract, ``backlog``: pending jobs due now apart from those scheduled for later.

Every test here runs on MemoryStore and on SqliteStore (the ``store`` fixture).
"""

from __future__ import annotations

import pytest

from jobkit.model import Backlog, JobStatus
from jobkit.store import Store
from tests.stores.contract import NAIVE, US, at, claim_one
from tests.support import T0, make_job


def test_an_empty_queue_has_no_backlog(store: Store) -> None:
    assert store.backlog(now=T0) == Backlog(due=0, scheduled=0, oldest_due=None, next_scheduled=None)


def test_due_and_scheduled_jobs_are_counted_apart_with_the_first_of_each(store: Store) -> None:
    store.add(
        [
            make_job("due-long-ago", scheduled_for=at(-60), priority=-5),
            make_job("due-now", scheduled_for=T0),
            make_job("due-urgent", scheduled_for=at(-1), priority=9),
            make_job("soon", scheduled_for=T0 + US),
            make_job("in-an-hour", scheduled_for=at(3600)),
            make_job("running", scheduled_for=at(-120)),
            make_job("done", status=JobStatus.COMPLETED, scheduled_for=at(-300), completed_at=T0),
            make_job("held-back", status=JobStatus.CANCELLED, scheduled_for=at(30), completed_at=T0),
        ]
    )
    claim_one(store, "running")
    backlog = store.backlog(now=T0)
    assert (backlog.due, backlog.scheduled) == (3, 2), "due at or before now; running and finished jobs not counted"
    assert backlog.oldest_due == store.get("due-long-ago"), "the one due longest ago, whatever its priority"
    assert backlog.next_scheduled == store.get("soon")
    assert store.backlog(now=at(-61)) == Backlog(
        due=0, scheduled=5, oldest_due=None, next_scheduled=store.get("due-long-ago")
    )
    later = store.backlog(now=at(3600))
    assert (later.due, later.scheduled, later.next_scheduled) == (5, 0, None)


def test_ties_go_to_the_smallest_id(store: Store) -> None:
    store.add([make_job(job_id, scheduled_for=at(-5)) for job_id in ("b", "c", "a")])
    store.add([make_job(job_id, scheduled_for=at(5)) for job_id in ("z", "x", "y")])
    backlog = store.backlog(now=T0)
    assert backlog.oldest_due is not None and backlog.oldest_due.id == "a"
    assert backlog.next_scheduled is not None and backlog.next_scheduled.id == "x"


def test_a_naive_time_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone"):
        store.backlog(now=NAIVE)
