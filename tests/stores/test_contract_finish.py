"""The Store contract: finish and finish_and_claim, fenced by the token.

Every test here runs on MemoryStore and on SqliteStore (the ``store`` fixture).
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from jobkit.model import (
    Cancel,
    Complete,
    Fail,
    JobRecord,
    JobStatus,
    ResetReport,
    Retry,
    Transition,
)
from jobkit.store import Store
from tests.stores.contract import NAIVE, US, at, claim_one, lease, snapshot
from tests.support import T0, make_job


# -- finish ---------------------------------------------------------------------------
@pytest.fixture
def running(store: Store) -> JobRecord:
    """A job on its second attempt, held by token 'tok', after progress and an earlier error."""
    store.add([make_job("a", attempt_count=1, error="first attempt failed", traceback="tb-1", correlation_id="c")])
    job = claim_one(store, "a", now=at(1), token="tok")
    assert store.progress(lease(job), 60, "most of it", now=at(2))
    held = store.get("a")
    assert held is not None
    return held


def test_finish_complete(store: Store, running: JobRecord) -> None:
    assert store.finish([Complete("a", "tok", '{"path": "x.png"}', at=at(5))]) == [True]
    assert store.get("a") == attrs.evolve(
        running,
        status=JobStatus.COMPLETED,
        result='{"path": "x.png"}',
        progress=100,
        error=None,
        traceback=None,
        worker_expires_at=None,
        completed_at=at(5),
        updated_at=at(5),
    )


def test_finish_retry_puts_the_job_back_for_later(store: Store, running: JobRecord) -> None:
    assert store.finish([Retry("a", "tok", "boom", "tb-2", at=at(5), run_at=at(65))]) == [True]
    retried = attrs.evolve(
        running,
        status=JobStatus.PENDING,
        error="boom",
        traceback="tb-2",
        scheduled_for=at(65),
        worker_id=None,
        worker_started_at=None,
        worker_expires_at=None,
        updated_at=at(5),
    )
    assert store.get("a") == retried
    assert store.next_due() == at(65)
    assert store.claim(limit=1, now=at(65) - US, token="t2", lock_until=at(100)) == []
    [again] = store.claim(limit=1, now=at(65), token="t2", lock_until=at(100))
    assert again.attempt_count == 3


def test_finish_fail(store: Store, running: JobRecord) -> None:
    assert store.finish([Fail("a", "tok", "no more", None, at=at(5))]) == [True]
    assert store.get("a") == attrs.evolve(
        running,
        status=JobStatus.FAILED,
        error="no more",
        traceback=None,
        worker_expires_at=None,
        completed_at=at(5),
        updated_at=at(5),
    )


def test_finish_cancel(store: Store, running: JobRecord) -> None:
    assert store.finish([Cancel("a", "tok", "cancelled by the user", at=at(5))]) == [True]
    assert store.get("a") == attrs.evolve(
        running,
        status=JobStatus.CANCELLED,
        error="cancelled by the user",
        worker_expires_at=None,
        completed_at=at(5),
        updated_at=at(5),
    )


STALE = [
    pytest.param(Complete("a", "stale", "1", at=at(5)), id="complete"),
    pytest.param(Retry("a", "stale", "e", None, at=at(5), run_at=at(6)), id="retry"),
    pytest.param(Fail("a", "stale", "e", None, at=at(5)), id="fail"),
    pytest.param(Cancel("a", "stale", "r", at=at(5)), id="cancel"),
]


@pytest.mark.parametrize("transition", STALE)
def test_finish_with_a_stale_token_changes_nothing(store: Store, running: JobRecord, transition: Transition) -> None:
    assert store.finish([transition]) == [False]
    assert store.get("a") == running


@pytest.mark.parametrize("transition", STALE)
def test_finish_after_the_lock_was_taken_over_changes_nothing(store: Store, transition: Transition) -> None:
    store.add([make_job("a")])
    claim_one(store, "a", now=T0, token="stale")
    assert store.reset_expired(now=at(30)) == ResetReport(retried=["a"])
    newer = claim_one(store, "a", now=at(31), token="newer")
    assert store.finish([transition]) == [False]
    assert store.get("a") == newer


def test_finish_of_a_job_not_running_is_false(store: Store) -> None:
    store.add([make_job("a")])
    assert store.finish([Complete("a", "any", "1", at=at(1)), Fail("ghost", "any", "e", None, at=at(1))]) == [
        False,
        False,
    ]
    assert snapshot(store) == [make_job("a")]


def test_finish_twice_applies_once(store: Store, running: JobRecord) -> None:
    assert store.finish([Complete("a", "tok", "1", at=at(5))]) == [True]
    completed = store.get("a")
    assert store.finish([Fail("a", "tok", "late", None, at=at(6))]) == [False]
    assert store.get("a") == completed


def test_finish_many_reports_each(store: Store) -> None:
    store.add([make_job("a"), make_job("b"), make_job("c")])
    claim_one(store, "a", token="ta")
    claim_one(store, "b", token="tb")
    claim_one(store, "c", token="tc")
    results = store.finish(
        [
            Complete("a", "ta", "1", at=at(1)),
            Complete("b", "wrong", "1", at=at(1)),
            Retry("c", "tc", "e", None, at=at(1), run_at=at(2)),
        ]
    )
    assert results == [True, False, True]
    assert [store.get(i).status for i in "abc"] == [JobStatus.COMPLETED, JobStatus.RUNNING, JobStatus.PENDING]  # type: ignore[union-attr]


def test_finish_of_nothing_is_an_empty_list(store: Store) -> None:
    assert store.finish([]) == []


# -- finish_and_claim -----------------------------------------------------------------
def test_finish_and_claim_hands_in_then_takes_new_work(store: Store, running: JobRecord) -> None:
    store.add([make_job("b", priority=1), make_job("c", scheduled_for=at(100))])
    applied, claimed = store.finish_and_claim(
        [Complete("a", "tok", "1", at=at(5)), Complete("b", "tok", "1", at=at(5))],
        limit=5,
        now=at(5),
        token="next",
        lock_until=at(35),
    )
    assert applied == [True, False]
    assert store.get("a").status is JobStatus.COMPLETED  # type: ignore[union-attr]
    assert claimed == [
        attrs.evolve(
            make_job("b", priority=1),
            status=JobStatus.RUNNING,
            worker_id="next",
            worker_started_at=at(5),
            worker_expires_at=at(35),
            attempt_count=1,
            updated_at=at(5),
        )
    ]
    assert store.get("b") == claimed[0]
    assert store.get("c") == make_job("c", scheduled_for=at(100))


def test_finish_and_claim_can_take_back_a_job_it_retries_at_once(store: Store, running: JobRecord) -> None:
    applied, claimed = store.finish_and_claim(
        [Retry("a", "tok", "boom", None, at=at(5), run_at=at(5))], limit=1, now=at(5), token="t2", lock_until=at(35)
    )
    assert applied == [True]
    assert [(j.id, j.worker_id, j.attempt_count, j.error) for j in claimed] == [("a", "t2", 3, "boom")]


def test_finish_and_claim_with_nothing_to_hand_in_is_a_claim(store: Store) -> None:
    store.add([make_job("a"), make_job("b", job_name="x:other")])
    applied, claimed = store.finish_and_claim([], limit=5, now=T0, token="t", lock_until=at(30), names=["x:other"])
    assert applied == []
    assert [j.id for j in claimed] == ["b"]


@pytest.mark.parametrize("limit", [0, -1])
def test_finish_and_claim_with_no_room_only_hands_in(store: Store, running: JobRecord, limit: int) -> None:
    store.add([make_job("b")])
    applied, claimed = store.finish_and_claim(
        [Fail("a", "tok", "e", None, at=at(5))], limit=limit, now=at(5), token="t", lock_until=at(35)
    )
    assert (applied, claimed) == ([True], [])
    assert store.get("b") == make_job("b")


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"now": NAIVE}, id="naive now"),
        pytest.param({"lock_until": NAIVE}, id="naive lock_until"),
        pytest.param({"names": "shop.tasks:resize"}, id="names as a str"),
    ],
)
def test_finish_and_claim_refused_changes_nothing(store: Store, running: JobRecord, options: dict[str, Any]) -> None:
    store.add([make_job("b")])
    before = snapshot(store)
    arguments: dict[str, Any] = {"limit": 5, "now": at(5), "token": "t", "lock_until": at(35), **options}
    with pytest.raises((ValueError, TypeError)):
        store.finish_and_claim([Complete("a", "tok", "1", at=at(5))], **arguments)
    assert snapshot(store) == before
