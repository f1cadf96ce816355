"""The Store contract: reset_expired, the reaping of expired locks.

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
    JobStatus,
    Lease,
    ResetReport,
    Retry,
    worker_lost,
)
from jobkit.store import Store
from tests.stores.contract import NAIVE, US, at, claim_one, lease, snapshot
from tests.support import T0, make_job


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
