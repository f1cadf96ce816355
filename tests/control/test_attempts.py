"""jobkit.attempts: every attempt of a job, oldest first, with its worker, times, outcome and error (every store).

Outcomes: completed, failed, retried, snoozed, lost, released, cancelled, timeout, and
"running" for the attempt under way. The newest ATTEMPTS_KEPT ended attempts are kept
and numbers keep counting; a purge deletes the history with its job. Most tests drive the
store's verbs (claim_job, finish, release, reset_expired) at times taken from the store's
clock, so that PostgreSQL's times are never mixed with this host's; the rest run a worker
in a thread, or a one-pass tick at a chosen ``now``. Nothing sleeps to wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

import jobkit
from jobkit.model import (
    ATTEMPTS_KEPT,
    CANCELLED_WHILE_LOST,
    Attempt,
    Cancel,
    Complete,
    Fail,
    Lease,
    Postpone,
    Retry,
    Transition,
    worker_lost,
)
from jobkit.store import Store
from jobkit.worker import Report, tick
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    TIMEOUT,
    Background,
    Gate,
    burst,
    make_job,
    poll,
    status_is,
    wait_until,
)
from tests.support import record as get

SECOND = timedelta(seconds=1)
LOCK = timedelta(seconds=30)

jobs = jobkit.Registry()


@jobs.job(name="attempts.once", max_attempts=1)
def once(params: int, ctx: jobkit.Context) -> int:
    return params


@jobs.job(name="attempts.thrice", max_attempts=3)
def thrice(params: int, ctx: jobkit.Context) -> int:
    return params


def outcomes(store: Store, job_id: str) -> list[tuple[int, str]]:
    return [(a.number, a.outcome) for a in jobkit.attempts(store, job_id)]


def claim(store: Store, job_id: str, token: str, now: datetime) -> None:
    assert store.claim_job(job_id, now=now, token=token, lock_until=now + LOCK) is not None, f"{job_id} not pending"


def attempt(store: Store, job_id: str, token: str, now: datetime, end: Callable[[datetime], Transition]) -> None:
    """Claim *job_id* with *token* at *now* and end that attempt one second on as *end* (given that time) says."""
    claim(store, job_id, token, now)
    assert store.finish([end(now + SECOND)]) == [True]


# -- which jobs have attempts --------------------------------------------------------------
def test_an_unknown_id_is_job_not_found_and_a_job_never_claimed_has_no_attempts(store: Store) -> None:
    with pytest.raises(jobkit.JobNotFound, match="no job with id 'no-such-job'") as missing:
        jobkit.attempts(store, "no-such-job")
    assert missing.value.job_id == "no-such-job"
    job_id = once.later(1, store)
    assert jobkit.attempts(store, job_id) == []
    jobkit.cancel(store, job_id)
    assert jobkit.attempts(store, job_id) == [], "cancelled while pending: it never ran"


# -- how an attempt ends -------------------------------------------------------------------
ENDINGS: dict[str, tuple[Callable[[str, str, datetime], Transition], str, str | None, str | None]] = {
    "completed": (lambda j, t, at: Complete(j, t, "1", at=at), "completed", None, None),
    "failed": (
        lambda j, t, at: Fail(j, t, "ValueError: no", "Traceback: no", at=at),
        "failed",
        "ValueError: no",
        "Traceback: no",
    ),
    "retried": (
        lambda j, t, at: Retry(j, t, "OSError: later", "Traceback: later", at=at, run_at=at),
        "retried",
        "OSError: later",
        "Traceback: later",
    ),
    "timed out, retried": (
        lambda j, t, at: Retry(j, t, "TimeoutError: late", None, at=at, run_at=at, timed_out=True),
        "timeout",
        "TimeoutError: late",
        None,
    ),
    "timed out, failed": (
        lambda j, t, at: Fail(j, t, "TimeoutError: late", None, at=at, timed_out=True),
        "timeout",
        "TimeoutError: late",
        None,
    ),
    "cancelled": (lambda j, t, at: Cancel(j, t, "stopping as asked", at=at), "cancelled", "stopping as asked", None),
    "snoozed": (lambda j, t, at: Postpone(j, t, at=at, run_at=at + timedelta(hours=1)), "snoozed", None, None),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_each_way_an_attempt_ends_is_its_outcome_with_its_worker_times_and_error(store: Store, ending: str) -> None:
    make, outcome, error, traceback = ENDINGS[ending]
    job_id = thrice.later(1, store)
    now = store.now()
    claim(store, job_id, "w:1", now)
    assert jobkit.attempts(store, job_id) == [Attempt(1, "w:1", now, None, "running")]
    assert store.finish([make(job_id, "w:1", now + SECOND)]) == [True]
    assert jobkit.attempts(store, job_id) == [Attempt(1, "w:1", now, now + SECOND, outcome, error, traceback)]  # type: ignore[arg-type]


def test_a_job_that_failed_twice_then_succeeded_shows_retried_retried_completed(store: Store) -> None:
    local = jobkit.Registry()
    calls: list[int] = []

    @local.job(name="attempts.flaky", max_attempts=3, retry_backoff=0)
    def flaky(params: int, ctx: jobkit.Context) -> int:
        calls.append(ctx.attempt)
        if len(calls) < 3:
            raise RuntimeError(f"try {len(calls)}")
        return params

    job_id = flaky.later(5, store)
    at = store.now()
    times = [at + n * SECOND for n in (1, 2, 3)]
    assert [tick(store, local, limit=1, now=t) for t in times] == [
        Report(claimed=1, retried=1),
        Report(claimed=1, retried=1),
        Report(claimed=1, completed=1),
    ]
    history = jobkit.attempts(store, job_id)
    assert [(a.number, a.outcome, a.started_at, a.ended_at, a.error) for a in history] == [
        (1, "retried", times[0], times[0], "RuntimeError: try 1"),
        (2, "retried", times[1], times[1], "RuntimeError: try 2"),
        (3, "completed", times[2], times[2], None),
    ]
    assert [a.traceback is not None and "RuntimeError: try" in a.traceback for a in history] == [True, True, False]
    tokens = [a.worker_id for a in history]
    assert None not in tokens and len(set(tokens)) == 3, "each claim has a token of its own"
    done = get(store, job_id)
    assert tokens[-1] == done.worker_id and history[-1].ended_at == done.completed_at
    assert done.attempt_count == 3 and done.error is None


def test_a_snooze_a_failure_and_a_completion_through_ticks(store: Store) -> None:
    local = jobkit.Registry()
    calls: list[int] = []

    @local.job(name="attempts.sleepy", max_attempts=2, retry_backoff=0)
    def sleepy(params: int, ctx: jobkit.Context) -> int:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise jobkit.Snooze(10)
        if len(calls) == 2:
            raise KeyError("gone")
        return params

    job_id = sleepy.later(1, store)
    now = store.now()
    for _ in range(3):
        tick(store, local, limit=1, now=now)
        now = get(store, job_id).scheduled_for
    assert outcomes(store, job_id) == [(1, "snoozed"), (2, "retried"), (3, "completed")]
    assert [a.error for a in jobkit.attempts(store, job_id)] == [None, "KeyError: 'gone'", None]
    assert calls == [1, 1, 2], "the snoozed attempt was given back: attempt numbers of the job are not ctx.attempt"


def test_the_attempt_under_way_comes_last_as_running(store: Store) -> None:
    gate = Gate()
    local = jobkit.Registry()

    @local.job(name="attempts.gated", max_attempts=2, retry_backoff=0)
    def gated(params: int, ctx: jobkit.Context) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first try")
        gate.enter()
        return params

    job_id = gated.later(3, store)
    with Background(store, local):
        assert gate.started.wait(TIMEOUT), "the second attempt never started"
        running = get(store, job_id)
        assert running.status is RUNNING
        first, current = jobkit.attempts(store, job_id)
        assert (first.number, first.outcome, first.error) == (1, "retried", "RuntimeError: first try")
        assert current == Attempt(2, running.worker_id, running.worker_started_at, None, "running")
        gate.open.set()
        wait_until(status_is(store, job_id, COMPLETED), "the job to complete")
    done = get(store, job_id)
    assert jobkit.attempts(store, job_id)[1:] == [
        Attempt(2, done.worker_id, done.worker_started_at, done.completed_at, "completed")
    ]


def test_a_handler_past_its_timeout_shows_timeout(store: Store) -> None:
    local = jobkit.Registry()

    @local.job(name="attempts.slow", max_attempts=2, retry_backoff=0, timeout=0.05)
    def slow(params: int, ctx: jobkit.Context) -> int:
        assert poll(lambda: ctx.cancelled), "the timeout never reached the handler"
        return params

    job_id = slow.later(1, store)
    assert burst(store, local) == Report(claimed=2, retried=1, failed=1)
    history = jobkit.attempts(store, job_id)
    assert [(a.number, a.outcome) for a in history] == [(1, "timeout"), (2, "timeout")]
    assert {a.error for a in history} == {"TimeoutError: the job ran past its timeout of 0.05s"}
    assert get(store, job_id).status is FAILED


# -- given back, and lost --------------------------------------------------------------------
def test_a_lease_given_back_shows_released_or_cancelled_when_that_was_asked(store: Store) -> None:
    given, asked = thrice.later_many([1, 2], store)
    now = store.now()
    claim(store, given, "w:given", now)
    claim(store, asked, "w:asked", now)
    store.cancel(asked, now=now + SECOND)
    at = now + 2 * SECOND
    assert store.release([Lease(given, "w:given"), Lease(asked, "w:asked")], now=at) == [True, True]
    assert jobkit.attempts(store, given) == [Attempt(1, "w:given", now, at, "released")]
    assert jobkit.attempts(store, asked) == [Attempt(1, "w:asked", now, at, "cancelled", "cancelled")]
    assert (get(store, given).status, get(store, given).attempt_count) == (PENDING, 0)
    assert get(store, asked).status is CANCELLED

    claim(store, given, "w:again", at)
    assert jobkit.attempts(store, given)[1] == Attempt(2, "w:again", at, None, "running")


def test_a_lease_named_twice_in_one_give_back_leaves_one_entry(store: Store) -> None:
    """release() gives a job back once however often its lease is named (True, then False): so is it logged once."""
    job_id = thrice.later(1, store)
    now = store.now()
    claim(store, job_id, "w", now)
    assert store.release([Lease(job_id, "w"), Lease(job_id, "w")], now=now + SECOND) == [True, False]
    assert jobkit.attempts(store, job_id) == [Attempt(1, "w", now, now + SECOND, "released")]


def test_a_worker_stopping_before_its_job_ends_gives_it_back_shown_as_released(store: Store) -> None:
    gate = Gate()
    local = jobkit.Registry()

    @local.job(name="attempts.stuck")
    def stuck(params: int, ctx: jobkit.Context) -> int:
        gate.enter()
        return params

    job_id = stuck.later(1, store)
    worker = Background(store, local, grace=0.0).__enter__()
    try:
        assert gate.started.wait(TIMEOUT), "the job never started"
        token = get(store, job_id).worker_id
        report = worker.stop()
    finally:
        gate.open.set()
    assert report.released == 1
    (released,) = jobkit.attempts(store, job_id)
    assert (released.number, released.outcome, released.worker_id, released.error) == (1, "released", token, None)
    assert released.ended_at is not None
    assert (get(store, job_id).status, get(store, job_id).attempt_count) == (PENDING, 0)
    assert burst(store, local).completed == 1
    assert outcomes(store, job_id) == [(1, "released"), (2, "completed")]


def test_a_lost_lease_reset_by_expiry_by_watch_or_by_a_tick_shows_lost(store: Store) -> None:
    by_expiry, by_watch, by_tick = thrice.later_many([1, 2, 3], store)
    now = store.now()
    lost = worker_lost(1, 3)

    claim(store, by_expiry, "w:expiry", now)
    assert store.reset_expired(now=now + LOCK + SECOND).retried == [by_expiry]
    assert jobkit.attempts(store, by_expiry) == [Attempt(1, "w:expiry", now, now + LOCK + SECOND, "lost", lost)]

    claim(store, by_watch, "w:watch", now)
    marks = [mark for mark in store.leases() if mark.job_id == by_watch]
    assert store.reset_unrenewed(marks, now=now + 2 * SECOND).retried == [by_watch]
    assert jobkit.attempts(store, by_watch) == [Attempt(1, "w:watch", now, now + 2 * SECOND, "lost", lost)]

    claim(store, by_tick, "w:tick", now)
    later = now + 2 * LOCK
    assert tick(store, jobs, now=later) == Report(reset=1, claimed=3, completed=3)
    assert jobkit.attempts(store, by_tick)[0] == Attempt(1, "w:tick", now, later, "lost", lost)
    assert [outcomes(store, job_id) for job_id in (by_expiry, by_watch, by_tick)] == [
        [(1, "lost"), (2, "completed")]
    ] * 3


def test_a_lost_lease_of_a_job_with_no_attempts_left_or_asked_to_cancel_shows_lost_with_its_error(
    store: Store,
) -> None:
    spent = once.later(1, store)
    asked = thrice.later(2, store)
    now = store.now()
    claim(store, spent, "w:spent", now)
    claim(store, asked, "w:asked", now)
    store.cancel(asked, now=now + SECOND)
    at = now + LOCK + SECOND
    reset = store.reset_expired(now=at)
    assert (reset.failed, reset.cancelled) == ([spent], [asked])
    assert jobkit.attempts(store, spent) == [Attempt(1, "w:spent", now, at, "lost", worker_lost(1, 1))]
    assert jobkit.attempts(store, asked) == [Attempt(1, "w:asked", now, at, "lost", CANCELLED_WHILE_LOST)]
    assert (get(store, spent).status, get(store, asked).status) == (FAILED, CANCELLED)


# -- how much is kept, and for how long ---------------------------------------------------------
def test_the_newest_100_ended_attempts_are_kept_and_numbers_keep_counting(store: Store) -> None:
    assert ATTEMPTS_KEPT == 100
    job_id = once.later(1, store)
    at = store.now()
    for n in range(150):
        now = at + n * SECOND
        claim(store, job_id, f"w:{n + 1}", now)
        assert store.finish([Postpone(job_id, f"w:{n + 1}", at=now, run_at=now)]) == [True]
    history = jobkit.attempts(store, job_id)
    assert [a.number for a in history] == list(range(51, 151))
    assert {a.outcome for a in history} == {"snoozed"}
    assert history[0] == Attempt(51, "w:51", at + 50 * SECOND, at + 50 * SECOND, "snoozed")
    assert get(store, job_id).attempt_count == 0, "every snooze was given back"

    last = at + 150 * SECOND
    claim(store, job_id, "w:151", last)
    under_way = jobkit.attempts(store, job_id)
    assert len(under_way) == 101 and under_way[-1] == Attempt(151, "w:151", last, None, "running")
    assert store.finish([Complete(job_id, "w:151", "1", at=last + SECOND)]) == [True]
    ended = jobkit.attempts(store, job_id)
    assert [a.number for a in ended] == list(range(51, 152))
    assert ended[-1] == Attempt(151, "w:151", last, last + SECOND, "completed")
    assert get(store, job_id).attempt_count == 1


def test_a_job_retried_by_hand_keeps_its_history_and_its_numbers_count_on(store: Store) -> None:
    job_id = once.later(1, store)
    now = store.now()
    attempt(store, job_id, "w:1", now, lambda at: Fail(job_id, "w:1", "ValueError: bad", None, at=at))
    assert jobkit.retry(store, [job_id], clock=lambda: now + 2 * SECOND) == [job_id]
    assert get(store, job_id).attempt_count == 0
    assert outcomes(store, job_id) == [(1, "failed")]
    attempt(store, job_id, "w:2", now + 3 * SECOND, lambda at: Complete(job_id, "w:2", "1", at=at))
    assert outcomes(store, job_id) == [(1, "failed"), (2, "completed")]


def test_purge_deletes_the_history_with_its_job_and_only_with_it(store: Store) -> None:
    failed, completed = thrice.later_many([1, 2], store)
    now = store.now()
    for job_id in (failed, completed):
        first, second = f"{job_id}:1", f"{job_id}:2"
        claim(store, job_id, first, now)
        assert store.finish([Retry(job_id, first, "E", None, at=now + SECOND, run_at=now + SECOND)]) == [True]
        claim(store, job_id, second, now + SECOND)
        at = now + 2 * SECOND
        last = Fail(job_id, second, "E", None, at=at) if job_id == failed else Complete(job_id, second, "1", at=at)
        assert store.finish([last]) == [True]
    assert outcomes(store, failed) == [(1, "retried"), (2, "failed")]
    assert outcomes(store, completed) == [(1, "retried"), (2, "completed")]

    cutoff = now + timedelta(hours=1)
    assert jobkit.purge(store, older_than=timedelta(0), statuses=[FAILED], clock=lambda: cutoff) == 1
    with pytest.raises(jobkit.JobNotFound):
        jobkit.attempts(store, failed)
    assert outcomes(store, completed) == [(1, "retried"), (2, "completed")], "another job's history is kept"
    # A job made again with the purged id starts with no history: none of the old one was left behind.
    store.add([make_job(failed, job_name=thrice.name, params="1")])
    assert jobkit.attempts(store, failed) == []

    assert jobkit.purge(store, older_than=timedelta(0), clock=lambda: cutoff) == 1
    store.add([make_job(completed, job_name=thrice.name, params="2")])
    assert jobkit.attempts(store, completed) == []


def test_a_worker_s_retention_deletes_the_history_with_the_job(store: Store) -> None:
    local = jobkit.Registry()
    done = threading.Event()

    @local.job(name="attempts.kept_briefly", max_attempts=2, retry_backoff=0)
    def kept_briefly(params: int, ctx: jobkit.Context) -> int:
        if ctx.attempt == 1:
            raise RuntimeError("first try")
        done.set()
        return params

    job_id = kept_briefly.later(1, store)
    with Background(store, local, keep_completed=timedelta(0), reap_every=0.02):
        assert done.wait(TIMEOUT), "the second attempt never ran"
        wait_until(lambda: store.get(job_id) is None, "the completed job to be purged")
    with pytest.raises(jobkit.JobNotFound):
        jobkit.attempts(store, job_id)
    store.add([make_job(job_id, job_name=kept_briefly.name, params="1")])
    assert jobkit.attempts(store, job_id) == []
