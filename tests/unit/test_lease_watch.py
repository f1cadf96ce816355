"""How a worker decides another's lease is lost: jobkit.lease.LeaseWatch, renewal(), and the lifecycle's marks.

Pure: the watch is given the monotonic times it looks at; the keeper's heartbeat runs on
a MemoryStore with a clock that stands still.
"""

from __future__ import annotations

import types
from datetime import timedelta

import pytest

import jobkit
from jobkit import lease, lifecycle
from jobkit.lease import LeaseKeeper, LeaseWatch, renewal
from jobkit.model import JobStatus, LeaseMark
from tests.support import T0, FakeClock, make_job

LOCK = timedelta(seconds=30)
US = timedelta(microseconds=1)


def mark(job_id: str = "a", token: str = "t", expires: float | None = 30, written: float = 0) -> LeaseMark:
    expires_at = None if expires is None else T0 + timedelta(seconds=expires)
    return LeaseMark(job_id, token, expires_at, T0 + timedelta(seconds=written))


# -- the watch ---------------------------------------------------------------------------
def test_a_lease_is_due_only_once_seen_unchanged_for_the_lock_timeout() -> None:
    watch = LeaseWatch(LOCK)
    assert watch.look([mark()], 100.0) == [], "the first look never reaps: nothing was watched yet"
    assert watch.look([mark()], 129.9) == []
    assert watch.look([mark()], 130.0) == [mark()]


def test_a_renewal_or_a_new_claim_starts_the_watch_again() -> None:
    watch = LeaseWatch(LOCK)
    watch.look([mark(), mark("b")], 0.0)
    # "a" renewed (a new expiry, earlier even: its holder's clock stepped back); "b" claimed anew.
    assert watch.look([mark(expires=20, written=-10), mark("b", token="t2")], 29.0) == []
    assert watch.look([mark(expires=20, written=-10), mark("b", token="t2")], 58.9) == []
    assert watch.look([mark(expires=20, written=-10), mark("b", token="t2")], 59.0) == [
        mark(expires=20, written=-10),
        mark("b", token="t2"),
    ]


def test_the_holders_clock_plays_no_part_only_the_reapers_monotonic_time() -> None:
    # Expiries far in the past or the future (a skewed holder) are due after the same watch.
    for expires in (-86_400.0, 30.0, 86_400.0 * 365):
        watch = LeaseWatch(LOCK)
        seen = mark(expires=expires, written=expires - 30)
        watch.look([seen], 0.0)
        assert watch.look([seen], 29.0) == []
        assert watch.look([seen], 30.0) == [seen]


def test_a_lease_no_longer_running_is_forgotten() -> None:
    watch = LeaseWatch(LOCK)
    watch.look([mark()], 0.0)
    watch.look([], 10.0)  # finished, or reset by another reaper
    assert watch.look([mark()], 35.0) == [], "seen again: watched afresh"
    assert watch.look([mark()], 65.0) == [mark()]


def test_a_holder_that_wrote_a_longer_lease_is_given_its_length() -> None:
    watch = LeaseWatch(timedelta(seconds=1))
    long = mark(expires=600, written=0)  # a holder with a lock timeout of 10 minutes
    watch.look([long], 0.0)
    assert watch.look([long], 599.0) == []
    assert watch.look([long], 600.0) == [long]


@pytest.mark.parametrize(
    "seen",
    [mark(expires=None), mark(expires=30, written=45)],
    ids=["unreadable expiry", "written after its expiry (a cancel from a clock ahead)"],
)
def test_a_lease_of_unknown_length_is_given_the_reapers_lock_timeout(seen: LeaseMark) -> None:
    watch = LeaseWatch(LOCK)
    watch.look([seen], 0.0)
    assert watch.look([seen], 29.0) == []
    assert watch.look([seen], 30.0) == [seen]


# -- renewals always write a new expiry -------------------------------------------------------
def test_renewal_moves_past_every_expiry_held_lately() -> None:
    assert renewal(T0, [None, T0 - US], LOCK) == T0
    assert renewal(T0, [T0, T0 + US, None], LOCK) == T0 + 2 * US
    assert renewal(T0, [T0 - US, T0 + LOCK - US], LOCK) == T0 + LOCK, "a small step back keeps the lease"
    # A step back by more than the lock timeout: the lease is written in the new time.
    assert renewal(T0, [T0 + LOCK, T0 + 2 * LOCK], LOCK) == T0


def test_a_heartbeat_on_a_clock_that_stands_still_still_writes_a_new_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock = jobkit.MemoryStore(), FakeClock(T0)  # the clock never moves
    store.add([make_job("a")])
    (job,) = store.claim(limit=1, now=T0, token="t", lock_until=T0 + LOCK)
    monotonic = [0.0]
    monkeypatch.setattr(lease, "time", types.SimpleNamespace(monotonic=lambda: monotonic[0]))
    keeper = LeaseKeeper(store, lock=LOCK, clock=clock)
    keeper.hold(job)
    expiries = [job.worker_expires_at]
    for _ in range(3):
        monotonic[0] += keeper.beat_every
        keeper.beat()
        expiries.append(store.leases()[0].expires_at)
    assert len(set(expiries)) == 4, f"a renewal wrote an expiry already seen: {expiries}"


# -- the lifecycle's marks ------------------------------------------------------------------
def test_a_running_job_has_a_mark_and_no_other_does() -> None:
    running = lifecycle.claim(make_job("a"), token="t", now=T0, lock_until=T0 + LOCK)
    assert lifecycle.mark_of(running) == LeaseMark("a", "t", T0 + LOCK, T0)
    assert lifecycle.mark_of(make_job("p")) is None
    done = make_job("d", status=JobStatus.COMPLETED, completed_at=T0, worker_id="t")
    assert lifecycle.mark_of(done) is None


def test_as_seen_needs_the_same_token_and_expiry_and_a_running_job() -> None:
    running = lifecycle.claim(make_job("a"), token="t", now=T0, lock_until=T0 + LOCK)
    seen = lifecycle.mark_of(running)
    assert seen is not None
    assert lifecycle.as_seen(running, seen)
    assert lifecycle.as_seen(lifecycle.progress(running, 5, None, now=T0 + US), seen), "progress is no renewal"
    assert not lifecycle.as_seen(lifecycle.heartbeat(running, now=T0, lock_until=T0 + LOCK + US), seen)
    assert not lifecycle.as_seen(lifecycle.release(running, now=T0), seen)
    assert not lifecycle.as_seen(None, seen)


def test_the_stated_length_is_expiry_less_last_write_and_never_negative() -> None:
    assert lifecycle.stated_length(mark(expires=30, written=0)) == LOCK
    assert lifecycle.stated_length(mark(expires=30, written=31)) == timedelta(0)
    assert lifecycle.stated_length(mark(expires=None)) == timedelta(0)
