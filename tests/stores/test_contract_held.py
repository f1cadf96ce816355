"""The Store contract on a held job: heartbeat, progress, release.

Every test here runs on MemoryStore and on SqliteStore (the ``store`` fixture).
"""

from __future__ import annotations

import attrs
import pytest

from jobkit.model import (
    Complete,
    Lease,
)
from jobkit.store import Store
from tests.stores.contract import at, claim_one, lease
from tests.support import T0, make_job


# -- heartbeat ------------------------------------------------------------------------
def test_heartbeat_extends_held_locks_and_reports_cancel_requests(store: Store) -> None:
    store.add([make_job("a"), make_job("b", cancel_requested=True)])
    a, b = claim_one(store, "a", token="ta"), claim_one(store, "b", token="tb")
    held = store.heartbeat([lease(a), lease(b)], now=at(10), lock_until=at(40))
    assert held == {"a": False, "b": True}
    assert store.get("a") == attrs.evolve(a, worker_expires_at=at(40), updated_at=at(10))
    assert store.get("b") == attrs.evolve(b, worker_expires_at=at(40), updated_at=at(10))


def test_heartbeat_with_a_stale_token_changes_nothing(store: Store) -> None:
    store.add([make_job("a", max_attempts=3)])
    stale = claim_one(store, "a", token="old")
    store.reset_expired(now=at(30))
    fresh = claim_one(store, "a", now=at(31), token="new")
    held = store.heartbeat([lease(stale)], now=at(32), lock_until=at(1000))
    assert held == {}
    assert store.get("a") == fresh


def test_heartbeat_returns_only_the_held_ids(store: Store) -> None:
    store.add([make_job("a"), make_job("b"), make_job("c"), make_job("d")])
    a = claim_one(store, "a", token="ta")
    b = claim_one(store, "b", token="tb")
    done = claim_one(store, "d", token="td")
    store.finish([Complete("d", "td", "null", at=at(1))])
    finished = store.get("d")
    held = store.heartbeat(
        [lease(a), Lease("b", "wrong"), Lease("c", "tc"), Lease("ghost", "tg"), lease(done)],
        now=at(5),
        lock_until=at(35),
    )
    assert held == {"a": False}
    assert store.get("b") == b
    assert store.get("c") == make_job("c")
    assert store.get("d") == finished


def test_heartbeat_of_nothing_is_an_empty_mapping(store: Store) -> None:
    assert dict(store.heartbeat([], now=T0, lock_until=at(30))) == {}


# -- progress -------------------------------------------------------------------------
def test_progress_of_a_held_job_is_recorded(store: Store) -> None:
    store.add([make_job("a")])
    job = claim_one(store, "a")
    assert store.progress(lease(job), 55, "resizing", now=at(3)) is True
    assert store.get("a") == attrs.evolve(job, progress=55, progress_message="resizing", updated_at=at(3))
    assert store.progress(lease(job), 100, None, now=at(4)) is True
    assert store.get("a") == attrs.evolve(job, progress=100, progress_message=None, updated_at=at(4))


def test_progress_with_a_lost_lease_changes_nothing(store: Store) -> None:
    store.add([make_job("a"), make_job("b")])
    job = claim_one(store, "a", token="mine")
    assert store.progress(Lease("a", "not-mine"), 10, "x", now=at(1)) is False
    assert store.progress(Lease("b", "mine"), 10, "x", now=at(1)) is False
    assert store.progress(Lease("ghost", "mine"), 10, "x", now=at(1)) is False
    assert store.get("a") == job
    assert store.get("b") == make_job("b")
    store.finish([Complete("a", "mine", "1", at=at(2))])
    completed = store.get("a")
    assert store.progress(lease(job), 10, "late", now=at(3)) is False
    assert store.get("a") == completed


@pytest.mark.parametrize("percent", [-1, 101])
def test_progress_out_of_range_is_refused(store: Store, percent: int) -> None:
    store.add([make_job("a")])
    job = claim_one(store, "a")
    with pytest.raises(ValueError, match="0"):
        store.progress(lease(job), percent, None, now=at(1))
    assert store.get("a") == job


# -- release --------------------------------------------------------------------------
def test_release_gives_the_job_back_without_spending_an_attempt(store: Store) -> None:
    job = make_job("a", attempt_count=1, scheduled_for=at(-10), error="earlier")
    store.add([job])
    held = claim_one(store, "a", now=at(1), token="tok")
    store.progress(lease(held), 30, "a third", now=at(2))
    assert store.release([lease(held)], now=at(3)) == [True]
    assert store.get("a") == attrs.evolve(job, updated_at=at(3))
    [again] = store.claim(limit=1, now=at(3), token="t2", lock_until=at(33))
    assert again.attempt_count == 2


def test_release_with_a_lost_lease_changes_nothing(store: Store) -> None:
    store.add([make_job("a"), make_job("b")])
    a = claim_one(store, "a", token="ta")
    b = claim_one(store, "b", token="tb")
    store.finish([Complete("b", "tb", "1", at=at(1))])
    completed = store.get("b")
    assert store.release([Lease("a", "wrong"), lease(b), Lease("ghost", "ta"), lease(a)], now=at(2)) == [
        False,
        False,
        False,
        True,
    ]
    assert store.get("b") == completed
    assert store.get("a") == attrs.evolve(make_job("a"), updated_at=at(2))


def test_release_of_nothing_is_an_empty_list(store: Store) -> None:
    assert store.release([], now=T0) == []
