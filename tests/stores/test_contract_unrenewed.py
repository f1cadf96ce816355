"""The Store contract: leases and reset_unrenewed, how a worker reaps (RELIABILITY.md item 14).

A reaper reads every lease (:meth:`Store.leases`), watches it on its own monotonic
clock, and resets the jobs whose lease it saw go unrenewed, fenced by what it saw: the
store compares marks with marks, never an expiry with anyone's clock. Every test runs on
MemoryStore and on SqliteStore (the ``store`` fixture).
"""

from __future__ import annotations

import attrs
import pytest

from jobkit.model import Complete, JobStatus, LeaseMark, ResetReport, worker_lost
from jobkit.store import Store
from tests.stores.contract import NAIVE, US, at, claim_one, lease, snapshot
from tests.support import T0, make_job


def test_leases_lists_every_running_job_by_id_as_its_holder_last_wrote_it(store: Store) -> None:
    store.add(
        [make_job(i) for i in ("c", "a", "b", "waiting")]
        + [make_job("done", status=JobStatus.COMPLETED, completed_at=T0)]
    )
    for i in ("c", "a", "b"):
        claim_one(store, i, token=f"t-{i}")
    store.heartbeat([lease(claim_one(store, "waiting", now=at(1), token="t-w"))], now=at(5), lock_until=at(65))
    assert store.leases() == [
        LeaseMark("a", "t-a", at(30), T0),
        LeaseMark("b", "t-b", at(30), T0),
        LeaseMark("c", "t-c", at(30), T0),
        LeaseMark("waiting", "t-w", at(65), at(5)),
    ]
    assert [m.job_id for m in store.leases()] == ["a", "b", "c", "waiting"]


def test_leases_of_an_idle_store_is_empty(store: Store) -> None:
    store.add([make_job("pending"), make_job("done", status=JobStatus.COMPLETED, completed_at=T0)])
    assert store.leases() == []


def test_reset_unrenewed_resets_a_job_still_as_seen_whatever_now_says(store: Store) -> None:
    job = make_job("a", max_attempts=3)
    store.add([job])
    claim_one(store, "a", token="gone")
    (mark,) = store.leases()
    # Long before the stored expiry (at 30): only what the reaper saw decides, not this time.
    assert store.reset_unrenewed([mark], now=at(2)) == ResetReport(retried=["a"])
    assert store.get("a") == attrs.evolve(
        job, attempt_count=1, error=worker_lost(1, 3), scheduled_for=at(2), updated_at=at(2)
    )
    assert store.leases() == []


def test_reset_unrenewed_fails_a_spent_job_and_cancels_one_asked_to_stop(store: Store) -> None:
    store.add([make_job("spent", max_attempts=1), make_job("asked", max_attempts=3), make_job("plain")])
    for i in ("spent", "asked", "plain"):
        claim_one(store, i, token=f"t-{i}")
    store.cancel("asked", now=at(1))
    marks = store.leases()
    assert store.reset_unrenewed(marks, now=at(9)) == ResetReport(
        retried=["plain"], failed=["spent"], cancelled=["asked"]
    )
    assert store.counts()[JobStatus.RUNNING] == 0


def test_reset_unrenewed_leaves_a_renewed_reclaimed_finished_or_unknown_job_alone(store: Store) -> None:
    store.add([make_job(i) for i in ("renewed", "reclaimed", "finished", "kept")])
    held = {i: claim_one(store, i, token=f"t-{i}") for i in ("renewed", "reclaimed", "finished", "kept")}
    marks = store.leases()
    store.heartbeat([lease(held["renewed"])], now=at(10), lock_until=at(40))
    store.reset_expired(now=at(30))  # (a tick elsewhere) every lock ran out; then claimed again
    for i in ("renewed", "reclaimed", "finished", "kept"):
        if i != "renewed":
            claim_one(store, i, now=at(31), token=f"t2-{i}")
    assert store.finish([Complete("finished", "t2-finished", "1", at=at(32))]) == [True]
    # Only "renewed" is still held by its first token; its mark is older than its renewal.
    before = snapshot(store)
    made_up = LeaseMark("nobody", "t-x", at(30), T0)
    assert store.reset_unrenewed([*marks, made_up], now=at(33)) == ResetReport()
    assert snapshot(store) == before


def test_reset_unrenewed_compares_the_expiry_exactly(store: Store) -> None:
    store.add([make_job("a")])
    claim_one(store, "a", token="t")
    (mark,) = store.leases()
    before = snapshot(store)
    for other in (attrs.evolve(mark, expires_at=at(30) + US), attrs.evolve(mark, expires_at=at(30) - US)):
        assert store.reset_unrenewed([other], now=at(60)) == ResetReport()
    assert attrs.evolve(mark, token="T") not in store.leases()
    assert store.reset_unrenewed([attrs.evolve(mark, token="T")], now=at(60)) == ResetReport()
    assert snapshot(store) == before
    # A mark that differs only in the holder's last write time still names the same lease.
    assert store.reset_unrenewed([attrs.evolve(mark, updated_at=at(7))], now=at(60)) == ResetReport(retried=["a"])


def test_reset_unrenewed_with_no_marks_does_nothing(store: Store) -> None:
    store.add([make_job("a")])
    claim_one(store, "a")
    before = snapshot(store)
    assert store.reset_unrenewed([], now=at(60)) == ResetReport()
    assert snapshot(store) == before


@pytest.mark.parametrize("field", ["now", "expires_at", "updated_at"])
def test_reset_unrenewed_refuses_naive_times_and_changes_nothing(store: Store, field: str) -> None:
    store.add([make_job("a")])
    claim_one(store, "a")
    (mark,) = store.leases()
    before = snapshot(store)
    now = NAIVE if field == "now" else at(60)
    if field != "now":
        mark = attrs.evolve(mark, **{field: NAIVE})
    with pytest.raises(ValueError, match="naive"):
        store.reset_unrenewed([mark], now=now)
    assert snapshot(store) == before
