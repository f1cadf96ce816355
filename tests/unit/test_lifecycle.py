"""jobkit.lifecycle: the rules of a job's life, tested by calling them (pure: no store, no clock)."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jobkit import lifecycle
from jobkit.model import (
    CANCELLED,
    CANCELLED_WHILE_LOST,
    Cancel,
    Complete,
    Fail,
    JobRecord,
    JobStatus,
    Lease,
    Retry,
    worker_lost,
)
from jobkit.stores.refusals import INVARIANTS
from tests.support import T0

LOCK = timedelta(seconds=30)
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


def pending(**fields: object) -> JobRecord:
    values: dict[str, object] = {
        "id": "job-1",
        "job_name": "send",
        "params": "{}",
        "status": JobStatus.PENDING,
        "scheduled_for": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return JobRecord(**values)  # type: ignore[arg-type]


def running(token: str = "tok-1", now: datetime = T0, **fields: object) -> JobRecord:
    return lifecycle.claim(pending(**fields), token=token, now=now, lock_until=now + LOCK)


def broken(job: JobRecord) -> list[str]:
    return [rule for rule, holds in INVARIANTS if not holds(job)]


# -- questions --------------------------------------------------------------------------
def test_claim_order_is_priority_then_scheduled_then_id() -> None:
    later = T0 + timedelta(seconds=1)
    jobs = [
        pending(id="c", priority=0, scheduled_for=T0),
        pending(id="b", priority=0, scheduled_for=T0),
        pending(id="a", priority=0, scheduled_for=later),
        pending(id="z", priority=5, scheduled_for=later),
        pending(id="y", priority=-1, scheduled_for=T0),
    ]
    assert [j.id for j in sorted(jobs, key=lifecycle.claim_order)] == ["z", "b", "c", "a", "y"]


def test_is_due_at_the_exact_boundary() -> None:
    job = pending(scheduled_for=T0)
    assert lifecycle.is_due(job, T0)
    assert lifecycle.is_due(job, T0 + timedelta(microseconds=1))
    assert not lifecycle.is_due(job, T0 - timedelta(microseconds=1))
    assert not lifecycle.is_due(running(), T0 + timedelta(days=1)), "only a pending job is due"


def test_is_expired_at_the_exact_boundary() -> None:
    job = running(now=T0)
    assert job.worker_expires_at == T0 + LOCK
    assert lifecycle.is_expired(job, T0 + LOCK)
    assert lifecycle.is_expired(job, T0 + LOCK + timedelta(microseconds=1))
    assert not lifecycle.is_expired(job, T0 + LOCK - timedelta(microseconds=1))
    assert not lifecycle.is_expired(pending(), T0 + timedelta(days=1)), "only a running job expires"
    unlocked = attrs.evolve(job, worker_expires_at=None)
    assert not lifecycle.is_expired(unlocked, T0 + timedelta(days=1))


def test_holds() -> None:
    job = running(token="tok-1")
    assert lifecycle.holds(job, Lease(job.id, "tok-1"))
    assert not lifecycle.holds(job, Lease(job.id, "tok-2")), "a wrong token does not hold"
    done = lifecycle.apply(job, Complete(job.id, "tok-1", "null", at=T0))
    assert done.worker_id == "tok-1"
    assert not lifecycle.holds(done, Lease(job.id, "tok-1")), "a job that is not running is not held"
    assert not lifecycle.holds(None, Lease(job.id, "tok-1"))


def test_ended_by_matches_the_attempt_of_the_token_and_the_outcome_it_wrote() -> None:
    job = running(token="tok-1")
    done = lifecycle.apply(job, Complete(job.id, "tok-1", "null", at=T0))
    complete = Complete(job.id, "tok-1", "null", at=T0 + LOCK)  # sent again later: its time differs
    assert lifecycle.ended_by(lifecycle.timeline(done, []), complete)
    assert not lifecycle.ended_by(lifecycle.timeline(done, []), Complete(job.id, "tok-2", "null", at=T0))
    assert not lifecycle.ended_by(lifecycle.timeline(job, []), complete), "a running attempt has not ended"
    retry = Retry(job.id, "tok-1", "boom", None, at=T0, run_at=T0 + LOCK)
    history = lifecycle.logged([], job, lifecycle.ending_of(retry), at=T0)  # type: ignore[arg-type]
    again = lifecycle.apply(job, retry)
    assert lifecycle.ended_by(lifecycle.timeline(again, history), retry)
    assert not lifecycle.ended_by(lifecycle.timeline(again, history), Fail(job.id, "tok-1", "boom", None, at=T0))
    lost = lifecycle.logged([], job, lifecycle.expired_ending(job), at=T0)
    assert not lifecycle.ended_by(lost, retry), "the reaper's entry under the same token is not this write"


# -- the running attempt ------------------------------------------------------------------
def test_claim_counts_an_attempt_sets_the_lock_and_resets_progress() -> None:
    now = T0 + timedelta(minutes=1)
    job = pending(attempt_count=1, progress=40, progress_message="half way")
    taken = lifecycle.claim(job, token="tok-9", now=now, lock_until=now + LOCK)
    assert taken.status is JobStatus.RUNNING
    assert taken.attempt_count == 2
    assert (taken.worker_id, taken.worker_started_at, taken.worker_expires_at) == ("tok-9", now, now + LOCK)
    assert (taken.progress, taken.progress_message) == (0, None)
    assert taken.updated_at == now
    assert job.status is JobStatus.PENDING, "records are values: the input is unchanged"


def test_heartbeat_extends_the_lock() -> None:
    job = running()
    now = T0 + timedelta(seconds=10)
    beaten = lifecycle.heartbeat(job, now=now, lock_until=now + LOCK)
    assert beaten.worker_expires_at == now + LOCK
    assert beaten.updated_at == now
    assert attrs.evolve(beaten, worker_expires_at=job.worker_expires_at, updated_at=job.updated_at) == job


@pytest.mark.parametrize("percent", [0, 1, 50, 100])
def test_progress_from_0_to_100_is_accepted(percent: int) -> None:
    now = T0 + timedelta(seconds=3)
    job = lifecycle.progress(running(), percent, "working", now=now)
    assert (job.progress, job.progress_message, job.updated_at) == (percent, "working", now)


@pytest.mark.parametrize("percent", [-1, 101])
def test_progress_out_of_range_is_refused(percent: int) -> None:
    with pytest.raises(ValueError, match=str(percent)):
        lifecycle.progress(running(), percent, None, now=T0)


def test_apply_complete_clears_the_error_and_traceback_of_an_earlier_attempt() -> None:
    job = running(error="boom on attempt 1", traceback="Traceback ...", attempt_count=1)
    job = lifecycle.progress(job, 30, "a third", now=T0)
    at = T0 + timedelta(seconds=5)
    done = lifecycle.apply(job, Complete(job.id, "tok-1", '{"ok": true}', at=at))
    assert done.status is JobStatus.COMPLETED
    assert done.result == '{"ok": true}'
    assert (done.error, done.traceback) == (None, None)
    assert done.progress == 100
    assert (done.completed_at, done.updated_at) == (at, at)
    assert done.worker_expires_at is None, "a finished job is no longer locked"
    assert done.worker_id == "tok-1", "a finished job keeps who ran it"
    assert done.attempt_count == 2
    assert broken(done) == []


def test_apply_retry_is_pending_at_run_at_not_held_attempt_spent() -> None:
    job = running(attempt_count=1)
    at, run_at = T0 + timedelta(seconds=5), T0 + timedelta(minutes=2)
    again = lifecycle.apply(job, Retry(job.id, "tok-1", "boom", "Traceback ...", at=at, run_at=run_at))
    assert again.status is JobStatus.PENDING
    assert again.scheduled_for == run_at
    assert (again.error, again.traceback) == ("boom", "Traceback ...")
    assert (again.worker_id, again.worker_started_at, again.worker_expires_at) == (None, None, None)
    assert not lifecycle.holds(again, Lease(job.id, "tok-1"))
    assert again.attempt_count == 2, "a retried attempt stays spent"
    assert again.completed_at is None
    assert again.updated_at == at
    assert not lifecycle.is_due(again, run_at - timedelta(microseconds=1))
    assert lifecycle.is_due(again, run_at)


def test_apply_fail() -> None:
    job = running()
    at = T0 + timedelta(seconds=5)
    failed = lifecycle.apply(job, Fail(job.id, "tok-1", "ValueError: no", "Traceback ...", at=at))
    assert failed.status is JobStatus.FAILED
    assert (failed.error, failed.traceback) == ("ValueError: no", "Traceback ...")
    assert (failed.completed_at, failed.updated_at) == (at, at)
    assert failed.worker_expires_at is None
    assert failed.worker_id == "tok-1"
    assert failed.attempt_count == 1
    assert broken(failed) == []


def test_apply_cancel() -> None:
    job = running()
    at = T0 + timedelta(seconds=5)
    stopped = lifecycle.apply(job, Cancel(job.id, "tok-1", "stopped by user", at=at))
    assert stopped.status is JobStatus.CANCELLED
    assert stopped.error == "stopped by user"
    assert (stopped.completed_at, stopped.updated_at) == (at, at)
    assert stopped.worker_expires_at is None
    assert stopped.worker_id == "tok-1"
    assert broken(stopped) == []


def test_apply_refuses_what_is_not_a_transition() -> None:
    with pytest.raises(TypeError, match="not a transition"):
        lifecycle.apply(running(), "complete")  # type: ignore[arg-type]


def test_release_refunds_the_attempt_and_resets_progress() -> None:
    job = lifecycle.progress(running(attempt_count=1), 60, "most", now=T0)
    assert job.attempt_count == 2
    now = T0 + timedelta(seconds=7)
    back = lifecycle.release(job, now=now)
    assert back.status is JobStatus.PENDING
    assert back.attempt_count == 1, "a released attempt is refunded"
    assert (back.progress, back.progress_message) == (0, None)
    assert (back.worker_id, back.worker_started_at, back.worker_expires_at) == (None, None, None)
    assert back.completed_at is None
    assert back.updated_at == now
    assert back.scheduled_for == job.scheduled_for


def test_release_of_a_cancel_requested_job_ends_it_cancelled() -> None:
    job = lifecycle.cancel(running(), now=T0)
    assert job.cancel_requested
    now = T0 + timedelta(seconds=7)
    ended = lifecycle.release(job, now=now)
    assert ended.status is JobStatus.CANCELLED
    assert ended.error == CANCELLED
    assert ended.completed_at == now
    assert ended.worker_expires_at is None
    assert broken(ended) == []


def test_expire_retries_with_worker_lost_while_attempts_are_left() -> None:
    job = running(max_attempts=3)
    now = T0 + LOCK
    after, what = lifecycle.expire(job, now=now)
    assert what == "retried"
    assert after.status is JobStatus.PENDING
    assert after.error == worker_lost(1, 3)
    assert after.error.startswith("worker lost")
    assert after.traceback is None
    assert after.scheduled_for == now, "due again at once"
    assert after.attempt_count == 1, "the lost attempt stays spent"
    assert (after.worker_id, after.worker_expires_at) == (None, None)
    assert after.completed_at is None


def test_expire_fails_when_attempts_are_spent() -> None:
    job = running(max_attempts=2, attempt_count=1, traceback="Traceback of attempt 1")
    assert job.attempt_count == 2
    now = T0 + LOCK
    after, what = lifecycle.expire(job, now=now)
    assert what == "failed"
    assert after.status is JobStatus.FAILED
    assert after.error == worker_lost(2, 2)
    assert after.traceback is None
    assert after.completed_at == now
    assert after.worker_expires_at is None
    assert broken(after) == []


def test_expire_cancels_when_cancellation_was_asked() -> None:
    job = lifecycle.cancel(running(max_attempts=3), now=T0)
    now = T0 + LOCK
    after, what = lifecycle.expire(job, now=now)
    assert what == "cancelled"
    assert after.status is JobStatus.CANCELLED
    assert after.error == CANCELLED_WHILE_LOST
    assert after.completed_at == now
    assert broken(after) == []


# -- requests from outside ----------------------------------------------------------------
def test_cancel_a_pending_job_ends_it_cancelled() -> None:
    now = T0 + timedelta(seconds=1)
    after = lifecycle.cancel(pending(), now=now)
    assert after.status is JobStatus.CANCELLED
    assert after.error == CANCELLED
    assert (after.completed_at, after.updated_at) == (now, now)
    assert broken(after) == []


def test_cancel_a_running_job_asks_it_to_stop() -> None:
    job = running()
    now = T0 + timedelta(seconds=1)
    asked = lifecycle.cancel(job, now=now)
    assert asked.status is JobStatus.RUNNING
    assert asked.cancel_requested
    assert asked.updated_at == now
    assert asked.worker_id == job.worker_id
    assert lifecycle.cancel(asked, now=now + timedelta(seconds=1)) is asked, "asking twice changes nothing"


@pytest.mark.parametrize(
    "finish",
    [
        Complete("job-1", "tok-1", "null", at=T0),
        Fail("job-1", "tok-1", "boom", None, at=T0),
        Cancel("job-1", "tok-1", "stop", at=T0),
    ],
)
def test_cancel_a_finished_job_changes_nothing(finish: Complete | Fail | Cancel) -> None:
    done = lifecycle.apply(running(), finish)
    assert lifecycle.cancel(done, now=T0 + timedelta(seconds=1)) is done


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_retry_by_hand_sends_a_failed_or_cancelled_job_back_fresh(how: str) -> None:
    job = running(attempt_count=2, correlation_id="corr", priority=3)
    job = lifecycle.progress(job, 50, "half", now=T0)
    job = lifecycle.cancel(job, now=T0)
    if how == "failed":
        done = lifecycle.apply(job, Fail(job.id, "tok-1", "boom", "Traceback ...", at=T0))
    else:
        done = lifecycle.release(job, now=T0)
    assert done.status.value == how
    now = T0 + timedelta(hours=1)
    again = lifecycle.retry_by_hand(done, now=now)
    assert again is not None
    assert again.status is JobStatus.PENDING
    assert again.attempt_count == 0
    assert (again.result, again.error, again.traceback) == (None, None, None)
    assert (again.progress, again.progress_message) == (0, None)
    assert (again.worker_id, again.worker_started_at, again.worker_expires_at) == (None, None, None)
    assert again.completed_at is None
    assert not again.cancel_requested
    assert (again.scheduled_for, again.updated_at) == (now, now)
    assert (again.id, again.job_name, again.params, again.correlation_id, again.priority, again.max_attempts) == (
        done.id,
        done.job_name,
        done.params,
        done.correlation_id,
        done.priority,
        done.max_attempts,
    )
    assert lifecycle.is_due(again, now)
    assert broken(again) == []


def test_retry_by_hand_refuses_other_statuses() -> None:
    job = running()
    completed = lifecycle.apply(job, Complete(job.id, "tok-1", "null", at=T0))
    for other in (pending(), job, completed):
        assert lifecycle.retry_by_hand(other, now=T0) is None, other.status


# -- the invariants, for any sequence of steps -----------------------------------------------
def test_the_invariants_catch_a_broken_record() -> None:
    """The property below checks something: the invariants refuse records that break them."""
    job = running()
    assert broken(job) == []
    assert broken(attrs.evolve(job, worker_id=None)) == ["a running job has worker_id and worker_expires_at"]
    assert broken(attrs.evolve(job, completed_at=T0)) == ["completed_at is set exactly when the job is finished"]
    assert broken(attrs.evolve(job, attempt_count=-1)) == ["attempt_count >= 0"]


class Lifecycle(RuleBasedStateMachine):
    """One job driven by the rules as a store drives them: each rule only where the store would apply it."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.job = pending(max_attempts=2)
        self.tokens = 0
        self.seen: set[JobStatus] = {self.job.status}

    @property
    def lease(self) -> Lease:
        return Lease(self.job.id, self.job.worker_id or "")

    @property
    def held(self) -> bool:
        return lifecycle.holds(self.job, self.lease)

    def step(self, job: JobRecord) -> None:
        self.job = job
        self.seen.add(job.status)

    @rule(seconds=st.integers(0, 120))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @precondition(lambda self: lifecycle.is_due(self.job, self.now))
    @rule(lock=st.integers(1, 60))
    def claim(self, lock: int) -> None:
        self.tokens += 1
        before = self.job.attempt_count
        self.step(
            lifecycle.claim(
                self.job, token=f"tok-{self.tokens}", now=self.now, lock_until=self.now + timedelta(seconds=lock)
            )
        )
        assert self.job.attempt_count == before + 1

    @precondition(lambda self: self.held)
    @rule(lock=st.integers(1, 60))
    def heartbeat(self, lock: int) -> None:
        self.step(lifecycle.heartbeat(self.job, now=self.now, lock_until=self.now + timedelta(seconds=lock)))

    @precondition(lambda self: self.held)
    @rule(percent=st.integers(0, 100), message=st.none() | st.text(max_size=5))
    def progress(self, percent: int, message: str | None) -> None:
        self.step(lifecycle.progress(self.job, percent, message, now=self.now))

    @precondition(lambda self: self.held)
    @rule()
    def complete(self) -> None:
        self.step(lifecycle.apply(self.job, Complete(self.job.id, self.lease.token, "null", at=self.now)))

    @precondition(lambda self: self.held)
    @rule(delay=st.integers(0, 120), traceback=st.none() | st.just("Traceback ..."))
    def retry(self, delay: int, traceback: str | None) -> None:
        run_at = self.now + timedelta(seconds=delay)
        self.step(lifecycle.apply(self.job, Retry(self.job.id, self.lease.token, "boom", traceback, self.now, run_at)))

    @precondition(lambda self: self.held)
    @rule(traceback=st.none() | st.just("Traceback ..."))
    def fail(self, traceback: str | None) -> None:
        self.step(lifecycle.apply(self.job, Fail(self.job.id, self.lease.token, "boom", traceback, at=self.now)))

    @precondition(lambda self: self.held)
    @rule()
    def stop(self) -> None:
        self.step(lifecycle.apply(self.job, Cancel(self.job.id, self.lease.token, CANCELLED, at=self.now)))

    @precondition(lambda self: self.held)
    @rule()
    def release(self) -> None:
        self.step(lifecycle.release(self.job, now=self.now))

    @precondition(lambda self: lifecycle.is_expired(self.job, self.now))
    @rule()
    def expire(self) -> None:
        after, what = lifecycle.expire(self.job, now=self.now)
        assert what in ("retried", "failed", "cancelled")
        self.step(after)

    @rule()
    def cancel(self) -> None:
        self.step(lifecycle.cancel(self.job, now=self.now))

    @rule()
    def retry_by_hand(self) -> None:
        again = lifecycle.retry_by_hand(self.job, now=self.now)
        assert (again is None) == (self.job.status not in (JobStatus.FAILED, JobStatus.CANCELLED))
        if again is not None:
            self.step(again)

    @invariant()
    def constraints_hold(self) -> None:
        assert broken(self.job) == [], f"{self.job!r} breaks {broken(self.job)}"

    @invariant()
    def the_three_named_invariants(self) -> None:
        job = self.job
        assert job.attempt_count >= 0
        assert (job.completed_at is not None) == job.status.finished
        if job.status is JobStatus.RUNNING:
            assert job.worker_id is not None
            assert job.worker_expires_at is not None


Lifecycle.TestCase.settings = settings(deadline=None, max_examples=200, stateful_step_count=30)
TestLifecycleInvariants = Lifecycle.TestCase
