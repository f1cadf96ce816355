"""The Store contract: every test here runs on MemoryStore and on SqliteStore (the ``store`` fixture)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apsw
import attrs
import pytest

import jobkit
from jobkit.errors import JobkitError, StoreError
from jobkit.model import (
    Cancel,
    Complete,
    Fail,
    JobRecord,
    JobStatus,
    Lease,
    ResetReport,
    Retry,
    Transition,
    worker_lost,
)
from jobkit.store import Store
from tests.conftest import T0, TIMEOUT

LOCK = timedelta(seconds=30)
NAIVE = datetime(2026, 1, 1, 0, 0, 5)  # no tzinfo: refused by every store
US = timedelta(microseconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_job(job_id: str, **fields: Any) -> JobRecord:
    """A pending job, due and created at T0, unless *fields* say otherwise."""
    values: dict[str, Any] = {
        "id": job_id,
        "job_name": "shop.tasks:resize",
        "params": '{"url": "a.png"}',
        "status": JobStatus.PENDING,
        "scheduled_for": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return JobRecord(**values)


def claim_one(store: Store, job_id: str, *, now: datetime = T0, token: str = "tok-1") -> JobRecord:
    claimed = store.claim_job(job_id, now=now, token=token, lock_until=now + LOCK)
    assert claimed is not None
    return claimed


def lease(job: JobRecord) -> Lease:
    assert job.worker_id is not None
    return Lease(job.id, job.worker_id)


def snapshot(store: Store) -> list[JobRecord]:
    return store.list_jobs(limit=10**6)


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
        progress_message="half\x00way 😀",
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


def test_add_many_in_one_call(store: Store) -> None:
    jobs = [make_job(f"job-{i}") for i in range(5)]
    store.add(jobs)
    assert [store.get(job.id) for job in jobs] == jobs
    assert store.counts()[JobStatus.PENDING] == 5


def test_add_nothing_changes_nothing(store: Store) -> None:
    store.add([])
    assert snapshot(store) == []


def test_add_with_a_taken_id_rolls_back_the_whole_batch(store: Store) -> None:
    first = make_job("a", params='{"first": true}')
    store.add([first])
    with pytest.raises(JobkitError):
        store.add([make_job("b"), make_job("c"), make_job("a", params='{"second": true}')])
    assert snapshot(store) == [first]


def test_add_with_an_id_twice_in_the_batch_adds_none(store: Store) -> None:
    with pytest.raises(JobkitError):
        store.add([make_job("x"), make_job("y"), make_job("x")])
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
def test_add_refuses_a_record_that_breaks_an_invariant(store: Store, fields: dict[str, Any]) -> None:
    with pytest.raises(JobkitError):
        store.add([make_job("good"), make_job("bad", **fields)])
    assert snapshot(store) == []


@pytest.mark.parametrize("field", ["scheduled_for", "created_at", "updated_at"])
def test_add_refuses_naive_times(store: Store, field: str) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.add([make_job("good"), make_job("bad", **{field: NAIVE})])
    assert snapshot(store) == []


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


# -- reset_expired --------------------------------------------------------------------
def test_reset_expired_sends_a_job_with_attempts_left_back_to_pending(store: Store) -> None:
    job = make_job("a", max_attempts=3, traceback="old")
    store.add([job])
    claim_one(store, "a", now=T0, token="lost")
    assert store.reset_expired(now=at(40)) == ResetReport(retried=["a"], failed=[])
    reset = store.get("a")
    assert reset == attrs.evolve(
        job,
        attempt_count=1,
        error="worker lost: the lock of attempt 1 of 3 expired",
        traceback=None,
        scheduled_for=at(40),
        updated_at=at(40),
    )
    assert reset.error == worker_lost(1, 3)


def test_reset_expired_fails_a_job_whose_attempts_are_used_up(store: Store) -> None:
    store.add([make_job("a", max_attempts=2, attempt_count=1)])
    held = claim_one(store, "a", now=T0, token="lost")
    assert store.reset_expired(now=at(30)) == ResetReport(retried=[], failed=["a"])
    assert store.get("a") == attrs.evolve(
        held,
        status=JobStatus.FAILED,
        error="worker lost: the lock of attempt 2 of 2 expired",
        traceback=None,
        worker_expires_at=None,
        completed_at=at(30),
        updated_at=at(30),
    )
    assert store.claim(limit=1, now=at(60), token="t", lock_until=at(90)) == []


def test_reset_expired_acts_exactly_at_the_expiry_time(store: Store) -> None:
    store.add([make_job("a")])
    held = claim_one(store, "a", now=T0, token="tok")
    assert held.worker_expires_at == at(30)
    assert store.reset_expired(now=at(30) - US) == ResetReport()
    assert store.get("a") == held
    assert store.reset_expired(now=at(30)) == ResetReport(retried=["a"])


def test_reset_expired_leaves_live_and_idle_jobs_alone(store: Store) -> None:
    store.add(
        [
            make_job("pending", scheduled_for=at(-100)),
            make_job("done", status=JobStatus.COMPLETED, completed_at=T0),
            make_job("live"),
            make_job("beating"),
        ]
    )
    claim_one(store, "live", now=at(50), token="t1")
    beating = claim_one(store, "beating", now=T0, token="t2")
    store.heartbeat([lease(beating)], now=at(20), lock_until=at(80))
    before = snapshot(store)
    assert store.reset_expired(now=at(79)) == ResetReport()
    assert snapshot(store) == before


def test_reset_expired_reports_ids_in_order(store: Store) -> None:
    store.add([make_job(i, max_attempts=1 if i in "bd" else 2) for i in "dcba"])
    for i in "dcba":
        claim_one(store, i, token=f"t{i}")
    assert store.reset_expired(now=at(31)) == ResetReport(retried=["a", "c"], failed=["b", "d"])
    assert store.counts()[JobStatus.PENDING] == 2
    assert store.counts()[JobStatus.FAILED] == 2


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda s: s.claim(limit=1, now=NAIVE, token="t2", lock_until=at(90)), id="claim now"),
        pytest.param(lambda s: s.claim(limit=1, now=at(60), token="t2", lock_until=NAIVE), id="claim lock_until"),
        pytest.param(lambda s: s.claim_job("p", now=NAIVE, token="t2", lock_until=at(90)), id="claim_job"),
        pytest.param(lambda s: s.heartbeat([Lease("r", "t")], now=NAIVE, lock_until=at(90)), id="heartbeat now"),
        pytest.param(lambda s: s.heartbeat([Lease("r", "t")], now=at(1), lock_until=NAIVE), id="heartbeat until"),
        pytest.param(lambda s: s.progress(Lease("r", "t"), 5, None, now=NAIVE), id="progress"),
        pytest.param(lambda s: s.finish([Complete("r", "t", "1", at=NAIVE)]), id="complete"),
        pytest.param(lambda s: s.finish([Retry("r", "t", "e", None, at=at(1), run_at=NAIVE)]), id="retry run_at"),
        pytest.param(lambda s: s.finish([Fail("r", "t", "e", None, at=NAIVE)]), id="fail"),
        pytest.param(lambda s: s.finish([Cancel("r", "t", "x", at=NAIVE)]), id="cancel"),
        pytest.param(lambda s: s.release([Lease("r", "t")], now=NAIVE), id="release"),
        pytest.param(lambda s: s.reset_expired(now=NAIVE), id="reset_expired"),
    ],
)
def test_writes_refuse_naive_times(store: Store, write: Any) -> None:
    store.add([make_job("p"), make_job("r")])
    claim_one(store, "r", token="t")
    before = snapshot(store)
    with pytest.raises(ValueError, match="naive"):
        write(store)
    assert snapshot(store) == before


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


# -- waking: the store's waker ----------------------------------------------------------
def test_a_waker_sleeps_through_reads_and_times_out(store: Store) -> None:
    store.add([make_job("a")])
    waker = store.waker()
    try:
        store.get("a")
        store.list_jobs()
        store.counts()
        store.claim(limit=1, now=at(-1), token="t", lock_until=at(30))  # nothing due: no write
        assert waker.wait(0.05) is False
    finally:
        waker.close()


def test_a_waker_wakes_when_another_thread_commits(store: Store) -> None:
    waker = store.waker()
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(store.add, [make_job("a")]).result()
        assert waker.wait(TIMEOUT) is True
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: store.claim(limit=1, now=T0, token="t", lock_until=at(30))).result()
        assert waker.wait(TIMEOUT) is True
        assert waker.wait(0.05) is False, "one commit woke it twice"
    finally:
        waker.close()


def test_a_waker_wakes_on_a_ring_and_ignores_commits_when_told(store: Store) -> None:
    waker = store.waker()
    try:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(store.add, [make_job("a")]).result()
        assert waker.wait(0.05, commits=False) is False
        waker.ring()
        assert waker.wait(TIMEOUT, commits=False) is True
    finally:
        waker.close()


# -- lifecycle ------------------------------------------------------------------------
def test_health_is_ok_with_a_message(store: Store) -> None:
    ok, message = store.health()
    assert ok is True
    assert message


def test_store_is_a_context_manager_returning_itself(store: Store) -> None:
    with store as entered:
        assert entered is store


def test_store_fits_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.shared is isinstance(store, jobkit.SqliteStore)


def test_threads_claim_each_job_exactly_once(store: Store) -> None:
    ids = [f"job-{i:03d}" for i in range(120)]
    store.add([make_job(i) for i in ids])
    workers = 4
    start = threading.Barrier(workers)

    def work(worker: int) -> list[str]:
        start.wait(timeout=10)
        mine: list[str] = []
        for round_ in range(len(ids)):
            token = f"w{worker}-{round_}"
            batch = store.claim(limit=3, now=T0, token=token, lock_until=at(30))
            if not batch:
                return mine
            assert store.finish([Complete(j.id, token, "null", at=at(1)) for j in batch]) == [True] * len(batch)
            mine.extend(j.id for j in batch)
        return mine

    with ThreadPoolExecutor(workers) as pool:
        claimed = [job_id for done in pool.map(work, range(workers)) for job_id in done]
    assert sorted(claimed) == ids
    assert store.counts()[JobStatus.COMPLETED] == len(ids)
    assert all(j.attempt_count == 1 for j in snapshot(store))


# -- SqliteStore only -----------------------------------------------------------------
@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite"


def test_sqlite_reads_times_back_as_aware_utc(db: Path) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=plus_two)
    job = make_job("a", scheduled_for=local, created_at=at(0.000001), updated_at=at(1), completed_at=None)
    with jobkit.SqliteStore(db) as store:
        store.add([job])
        claimed = claim_one(store, "a", now=at(2.5), token="t")
        store.finish([Complete("a", "t", "1", at=at(3.123456))])
        got = store.get("a")
    assert got is not None
    times = {
        name: getattr(got, name)
        for name in ("scheduled_for", "created_at", "updated_at", "worker_started_at", "completed_at")
    }
    for name, value in times.items():
        assert value.tzinfo is timezone.utc, name
    assert times == {
        "scheduled_for": datetime(2026, 3, 4, 3, 6, 7, 891011, tzinfo=timezone.utc),
        "created_at": at(0.000001),
        "updated_at": at(3.123456),
        "worker_started_at": claimed.worker_started_at,
        "completed_at": at(3.123456),
    }
    assert got.worker_started_at == at(2.5)


def test_sqlite_stores_times_as_utc_text_that_sorts(db: Path) -> None:
    with jobkit.SqliteStore(db) as store:
        store.add([make_job("a", scheduled_for=datetime(2026, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))])
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT scheduled_for, created_at FROM jobs").fetchall()
    finally:
        conn.close()
    assert rows == [("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:00.000000Z")]


def test_sqlite_reopened_file_holds_the_jobs(db: Path) -> None:
    with jobkit.SqliteStore(db) as store:
        store.add([make_job("a"), make_job("b")])
        held = claim_one(store, "b", token="tok")
    with jobkit.SqliteStore(db) as store:
        assert store.get("a") == make_job("a")
        assert store.get("b") == held
        assert store.finish([Complete("b", "tok", "1", at=at(1))]) == [True]
    with jobkit.SqliteStore(db) as store:
        assert store.counts()[JobStatus.COMPLETED] == 1


def test_sqlite_two_stores_on_one_file_see_each_other(db: Path) -> None:
    with jobkit.SqliteStore(db) as one, jobkit.SqliteStore(db) as two:
        one.add([make_job("a")])
        assert two.get("a") == make_job("a")
        claimed = two.claim(limit=5, now=T0, token="two", lock_until=at(30))
        assert [j.id for j in claimed] == ["a"]
        assert one.get("a") == claimed[0]
        assert one.claim(limit=5, now=T0, token="one", lock_until=at(30)) == []
        assert one.finish([Complete("a", "one", "1", at=at(1))]) == [False]
        assert one.finish([Complete("a", "two", "1", at=at(1))]) == [True]
        assert two.get("a").status is JobStatus.COMPLETED  # type: ignore[union-attr]


def test_sqlite_stores_in_threads_never_share_a_job(db: Path) -> None:
    ids = [f"job-{i:03d}" for i in range(90)]
    with jobkit.SqliteStore(db) as store:
        store.add([make_job(i) for i in ids])
    workers = 3
    start = threading.Barrier(workers)

    def work(worker: int) -> list[str]:
        mine: list[str] = []
        with jobkit.SqliteStore(db) as own:
            start.wait(timeout=10)
            while batch := own.claim(limit=2, now=T0, token=f"w{worker}-{len(mine)}", lock_until=at(30)):
                mine.extend(j.id for j in batch)
        return mine

    with ThreadPoolExecutor(workers) as pool:
        claimed = [job_id for done in pool.map(work, range(workers)) for job_id in done]
    assert sorted(claimed) == ids
    with jobkit.SqliteStore(db) as store:
        assert store.counts()[JobStatus.RUNNING] == len(ids)


def test_sqlite_waker_wakes_when_another_store_commits(db: Path) -> None:
    with jobkit.SqliteStore(db) as store, jobkit.SqliteStore(db) as other:
        waker = store.waker()
        try:
            other.add([make_job("a")])
            assert waker.wait(TIMEOUT) is True
        finally:
            waker.close()


def test_sqlite_closed_store_refuses_use_and_reports_unhealthy(db: Path) -> None:
    store = jobkit.SqliteStore(db)
    with store as entered:
        assert entered is store
        store.add([make_job("a")])
    with pytest.raises(StoreError, match="closed"):
        store.get("a")
    ok, message = store.health()
    assert ok is False
    assert "closed" in message


def test_the_two_readings_of_a_repeated_local_hour_are_kept_apart(store: Store) -> None:
    """01:30 happens twice in New York on 2026-11-01; `fold` tells which, an hour apart."""
    from zoneinfo import ZoneInfo

    first = datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    second = first.replace(fold=1)
    assert first == second  # equal as Python compares them, which a cache keyed on them would trust
    store.add([make_job("a", scheduled_for=first), make_job("b", scheduled_for=second)])
    a, b = store.get("a"), store.get("b")
    assert a is not None and b is not None
    assert b.scheduled_for - a.scheduled_for == timedelta(hours=1)


def test_open_store_takes_memory_a_str_path_or_a_pathlike(tmp_path: Path) -> None:
    assert isinstance(jobkit.open_store("memory:"), jobkit.MemoryStore)
    for target in (str(tmp_path / "a.sqlite"), tmp_path / "b.sqlite"):
        with jobkit.open_store(target) as opened:
            assert isinstance(opened, jobkit.SqliteStore)
            assert opened.path == str(target)
    given = jobkit.MemoryStore()
    assert jobkit.open_store(given) is given


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
