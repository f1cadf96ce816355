"""jobkit.lease: the LeaseKeeper on a real MemoryStore, with a fake clock and a driven ``time.monotonic``.

The keeper paces itself by ``time.monotonic``; the tests replace the ``time`` that
jobkit.lease sees with one whose ``monotonic`` moves only when told to (the clock is
injected, nothing sleeps). Only the :meth:`LeaseKeeper.kept` test runs on real time,
and it waits by polling a condition with a deadline.
"""

from __future__ import annotations

import logging
import threading
import types
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pytest

import jobkit
from jobkit import lease
from jobkit.errors import StoreError
from jobkit.lease import BEAT_RETRY, CANCEL_LOOK, PROGRESS_INTERVAL, Held, LeaseKeeper
from jobkit.model import JobRecord, JobStatus, Lease
from tests.support import FakeClock, make_job, record, wait_until

LOCK = timedelta(seconds=30)
BEAT = LOCK.total_seconds() / 3


class Monotonic:
    """A ``time.monotonic`` that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def mono(monkeypatch: pytest.MonkeyPatch) -> Monotonic:
    """Drive jobkit.lease's ``time.monotonic`` (only that module's view of ``time``, not the process's)."""
    fake = Monotonic()
    monkeypatch.setattr(lease, "time", types.SimpleNamespace(monotonic=fake))
    return fake


@pytest.fixture
def store() -> jobkit.MemoryStore:
    return jobkit.MemoryStore()


def claimed(store: jobkit.MemoryStore, clock: FakeClock, job_id: str = "job-1", token: str = "tok-1") -> JobRecord:
    """A job added and claimed by *token*: the held record a keeper is given."""
    if store.get(job_id) is None:
        store.add([make_job(job_id)])
    [job] = store.claim(limit=1, now=clock(), token=token, lock_until=clock() + LOCK)
    assert job.id == job_id
    return job


def taken_over(store: jobkit.MemoryStore, clock: FakeClock, job_id: str = "job-1", token: str = "tok-2") -> JobRecord:
    """Another token takes the job: its lock runs out, it is reset to pending, and claimed again."""
    clock.advance(LOCK.total_seconds())
    assert store.reset_expired(now=clock()).retried == [job_id]
    return claimed(store, clock, job_id, token)


# -- holding ------------------------------------------------------------------------------
def test_hold_and_forget(store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    job = claimed(store, clock)
    held = keeper.hold(job)
    assert held.lease == Lease(job.id, "tok-1")
    assert held.job is job
    assert keeper.held == {job.id: held}
    assert not held.lost
    assert not held.cancel.is_set()
    assert keeper.next_due() == 0.0, "the first look for cancellations is due at once"
    keeper.look_for_cancellations()
    assert keeper.next_due() == mono.now + min(CANCEL_LOOK, BEAT)
    keeper.forget(held)
    assert keeper.held == {}
    assert keeper.next_due() == float("inf")
    keeper.forget(held)  # forgetting twice is harmless
    assert keeper.held == {}


def test_a_newer_attempt_of_the_same_job_replaces_and_loses_the_older(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    older = keeper.hold(claimed(store, clock))
    newer = keeper.hold(taken_over(store, clock))
    assert keeper.held == {"job-1": newer}
    assert older.lost
    assert older.cancel.is_set()
    assert not newer.lost
    assert not newer.cancel.is_set()
    keeper.forget(older)
    assert keeper.held == {"job-1": newer}, "forgetting the older attempt keeps the newer"


# -- heartbeats -------------------------------------------------------------------------------
def test_beat_extends_the_lock_only_after_a_third_of_the_lock(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    assert keeper.beat_every == BEAT
    job = claimed(store, clock)
    keeper.hold(job)
    first_lock = record(store, job.id).worker_expires_at
    assert first_lock is not None
    assert first_lock == clock() + LOCK

    mono.advance(BEAT - 0.5)
    clock.advance(BEAT - 0.5)
    keeper.beat()
    assert record(store, job.id).worker_expires_at == first_lock, "no heartbeat before a third of the lock"

    mono.advance(0.5)
    clock.advance(0.5)
    keeper.beat()
    assert record(store, job.id).worker_expires_at == clock() + LOCK

    extended = record(store, job.id).worker_expires_at
    mono.advance(BEAT_RETRY)
    clock.advance(1.0)
    keeper.beat()
    assert record(store, job.id).worker_expires_at == extended, "the next heartbeat waits another third"

    mono.advance(BEAT)
    clock.advance(BEAT)
    keeper.beat()
    assert record(store, job.id).worker_expires_at == clock() + LOCK


def test_a_lease_taken_by_another_token_is_lost_on_the_next_beat(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    held = keeper.hold(claimed(store, clock))
    theirs = taken_over(store, clock)
    mono.advance(BEAT)
    keeper.beat()
    assert held.lost
    assert held.cancel.is_set()
    assert not held.cancel_requested
    assert record(store, "job-1") == theirs, "the lost lease wrote nothing over the new holder's record"


def test_a_heartbeat_that_answers_a_cancel_request_asks_the_handler_to_stop(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    held = keeper.hold(claimed(store, clock))
    asked = store.cancel("job-1", now=clock())
    assert asked is not None
    assert asked.cancel_requested
    mono.advance(BEAT)
    keeper.beat()
    assert held.cancel_requested
    assert held.cancel.is_set()
    assert not held.lost, "a cancel request is not a lost lease"
    assert record(store, "job-1").status is JobStatus.RUNNING


def test_ask_to_cancel(store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    held = keeper.hold(claimed(store, clock))
    keeper.ask_to_cancel(held)
    assert held.cancel_requested
    assert held.cancel.is_set()
    keeper.ask_to_cancel(held)
    assert held.cancel_requested


def test_look_for_cancellations_finds_jobs_cancelled_elsewhere_once_a_second(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    a = keeper.hold(claimed(store, clock, "job-a"))
    b = keeper.hold(claimed(store, clock, "job-b"))
    keeper.look_for_cancellations()  # the first look is at once, and finds nothing
    assert not a.cancel_requested
    assert not b.cancel_requested

    store.cancel("job-a", now=clock())
    mono.advance(CANCEL_LOOK / 2)
    keeper.look_for_cancellations()
    assert not a.cancel_requested, "no second look within a second"

    mono.advance(CANCEL_LOOK / 2)
    keeper.look_for_cancellations()
    assert a.cancel_requested
    assert a.cancel.is_set()
    assert not b.cancel_requested
    assert not b.cancel.is_set()


# -- the progress throttle ----------------------------------------------------------------------
def test_with_a_wake_report_wakes_only_when_the_interval_passed_and_write_progress_writes_what_is_due(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    wakes: list[None] = []
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock, wake=lambda: wakes.append(None))
    held = keeper.hold(claimed(store, clock))

    keeper.report(held, 10, "started")
    assert len(wakes) == 1, "nothing written yet: the first report wakes the driver"
    assert record(store, "job-1").progress == 0, "with a wake, report() itself writes nothing"
    keeper.write_progress()
    assert (record(store, "job-1").progress, record(store, "job-1").progress_message) == (10, "started")
    assert held.progress is None

    mono.advance(PROGRESS_INTERVAL / 2)
    keeper.report(held, 20, "more")
    assert len(wakes) == 1, "no wake within the interval"
    keeper.write_progress()
    assert record(store, "job-1").progress == 10, "progress within the interval is not due"
    assert held.progress == (20, "more")
    keeper.look_for_cancellations()
    assert keeper.next_due() == mono.now + PROGRESS_INTERVAL, "reported progress makes the keeper due soon"

    mono.advance(PROGRESS_INTERVAL)
    keeper.report(held, 30, "most")
    assert len(wakes) == 2
    keeper.write_progress()
    assert (record(store, "job-1").progress, record(store, "job-1").progress_message) == (30, "most")

    mono.advance(PROGRESS_INTERVAL / 2)
    keeper.report(held, 40, "nearly")
    assert len(wakes) == 2
    keeper.write_progress(force=True)
    assert (record(store, "job-1").progress, record(store, "job-1").progress_message) == (40, "nearly")
    assert held.progress is None
    keeper.write_progress(force=True)  # nothing reported: nothing written
    assert record(store, "job-1").progress == 40


def test_without_a_wake_report_writes_through_at_once(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    held = keeper.hold(claimed(store, clock))
    keeper.report(held, 25, "a quarter")
    assert (record(store, "job-1").progress, record(store, "job-1").progress_message) == (25, "a quarter")

    mono.advance(PROGRESS_INTERVAL / 2)
    keeper.report(held, 30, None)
    assert record(store, "job-1").progress == 25, "the throttle holds back a second write within the interval"

    mono.advance(PROGRESS_INTERVAL)
    keeper.report(held, 35, "on")
    assert (record(store, "job-1").progress, record(store, "job-1").progress_message) == (35, "on")


def test_write_progress_on_a_lost_lease_marks_it_lost(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock, wake=lambda: None)
    held = keeper.hold(claimed(store, clock))
    taken_over(store, clock)
    keeper.report(held, 50, "half")
    keeper.write_progress()
    assert held.lost
    assert held.cancel.is_set()
    assert record(store, "job-1").progress == 0, "the new holder's record is untouched"
    assert record(store, "job-1").worker_id == "tok-2"


# -- giving back ------------------------------------------------------------------------------
def test_release_gives_back_and_refunds_the_attempt(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    held = keeper.hold(claimed(store, clock))
    assert record(store, "job-1").attempt_count == 1
    assert keeper.release([held]) == 1
    job = record(store, "job-1")
    assert job.status is JobStatus.PENDING
    assert job.attempt_count == 0
    assert job.worker_id is None
    assert keeper.held == {}
    assert held.cancel.is_set(), "the handler is asked to stop"


def test_release_of_a_lost_lease_gives_back_nothing(
    store: jobkit.MemoryStore, clock: FakeClock, mono: Monotonic
) -> None:
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    older = keeper.hold(claimed(store, clock))
    theirs = taken_over(store, clock)
    keeper.lose(older)
    assert keeper.release([older]) == 0
    assert record(store, "job-1") == theirs
    assert keeper.release([]) == 0


# -- the drivers ------------------------------------------------------------------------------
def test_kept_heartbeats_from_its_own_thread_and_writes_the_last_progress_on_exit(
    store: jobkit.MemoryStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long throttle, so that only the write on exit can store the second report.
    monkeypatch.setattr(lease, "PROGRESS_INTERVAL", 60.0)

    def ticking() -> datetime:
        return clock.advance(0.001)  # a clock that moves on each read, so each heartbeat moves the lock

    lock = timedelta(seconds=0.3)
    keeper = LeaseKeeper(store, lock=lock, clock=ticking)
    store.add([make_job("job-1")])
    [job] = store.claim(limit=1, now=ticking(), token="tok-1", lock_until=clock() + lock)
    held = keeper.hold(job)
    first_lock = job.worker_expires_at
    assert first_lock is not None
    body_done = threading.Event()

    def lock_moved_twice() -> bool:
        expires = record(store, "job-1").worker_expires_at
        return expires is not None and expires >= first_lock + timedelta(seconds=0.002)

    with keeper.kept():
        assert any(t.name == "jobkit-lease" for t in threading.enumerate())
        wait_until(lock_moved_twice, "the keeper's thread to extend the lock twice")
        keeper.report(held, 50, "half")
        keeper.write_progress(force=True)
        keeper.report(held, 60, "last")
        assert record(store, "job-1").progress == 50, "the last report is held back by the throttle"
        body_done.set()
    assert body_done.is_set()
    assert (record(store, "job-1").progress, record(store, "job-1").progress_message) == (60, "last")
    assert not any(t.name == "jobkit-lease" for t in threading.enumerate()), "the keeper's thread has stopped"
    assert record(store, "job-1").status is JobStatus.RUNNING, "kept() does not finish the job"


class FlakyStore(jobkit.MemoryStore):
    """A MemoryStore whose heartbeat fails as a busy database would."""

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        raise StoreError("database is locked")


def test_tend_survives_a_store_error_in_one_step(
    clock: FakeClock, mono: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore()
    keeper = LeaseKeeper(flaky, lock=LOCK, clock=clock, wake=lambda: None)
    held: Held = keeper.hold(claimed(flaky, clock))
    keeper.look_for_cancellations()  # spend the first look, so that the next one is paced like the beat
    keeper.report(held, 70, "seventy")
    flaky.cancel("job-1", now=clock())
    mono.advance(max(BEAT, CANCEL_LOOK))

    with caplog.at_level(logging.WARNING, logger="jobkit.lease"):
        keeper.tend()

    assert record(flaky, "job-1").progress == 70, "the step before the failing one ran"
    assert held.cancel_requested, "the step after the failing one ran"
    assert not held.lost, "a failed heartbeat is not a lost lease"
    assert [r.getMessage() for r in caplog.records] == ["beat postponed: database is locked"]
    assert caplog.records[0].levelno == logging.WARNING


class OutOfServiceStore(jobkit.MemoryStore):
    """A MemoryStore whose heartbeats fail while ``down`` (a full disk), counting the tries."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.tries = 0

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        self.tries += 1
        if self.down:
            raise StoreError("the disk is full")
        return super().heartbeat(leases, now=now, lock_until=lock_until)


def test_a_failed_heartbeat_is_tried_again_soon_and_logged_once_an_incident(
    clock: FakeClock, mono: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    store = OutOfServiceStore()
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock, wake=lambda: None)
    keeper.hold(claimed(store, clock))
    mono.advance(BEAT)
    with caplog.at_level(logging.WARNING, logger="jobkit.lease"):
        for _ in range(4):  # a third of the lock would be too late for a second try
            keeper.tend()
            mono.advance(BEAT_RETRY)
        assert store.tries == 4
        store.down = False
        clock.advance(1)
        keeper.tend()
    assert record(store, "job-1").worker_expires_at == clock() + LOCK, "the lease was renewed once the store came back"
    assert [r.getMessage() for r in caplog.records] == ["beat postponed: the disk is full", "beat works again"]
    mono.advance(BEAT_RETRY)
    keeper.tend()
    assert store.tries == 5, "after a beat that worked, the next waits a third of the lock"


class BrokenStore(jobkit.MemoryStore):
    """A MemoryStore whose heartbeat fails as a row edited by hand into nonsense would."""

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        raise RuntimeError("bad row")


def test_tend_survives_any_error_in_one_step_and_logs_it(
    clock: FakeClock, mono: Monotonic, caplog: pytest.LogCaptureFixture
) -> None:
    broken = BrokenStore()
    keeper = LeaseKeeper(broken, lock=LOCK, clock=clock, wake=lambda: None)
    held: Held = keeper.hold(claimed(broken, clock))
    keeper.look_for_cancellations()
    broken.cancel("job-1", now=clock())
    mono.advance(max(BEAT, CANCEL_LOOK))

    with caplog.at_level(logging.ERROR, logger="jobkit.lease"):
        keeper.tend()  # must not raise: the worker's loop and the kept() thread both call it

    assert held.cancel_requested, "the step after the failing one ran"
    assert [r.getMessage() for r in caplog.records] == ["beat failed; trying again next time"]
