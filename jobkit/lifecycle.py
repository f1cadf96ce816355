"""THE rules of a job's life: each is a function from a record (and a request) to a record.

    pending -> running -> completed
                   |-> pending again (retry at T; snoozed, or given back, without spending the attempt)
                   `-> failed (attempts used up, not retryable, or its worker lost when spent)
    pending -> cancelled;  running -> cancelled (asked to stop)

While pending or running, a job with a unique key holds it: no other job of its name is
made with that key (:func:`key_of`). Every attempt that ends leaves an entry in the job's
history (:func:`logged`), but a completion, which the record itself tells (:func:`timeline`).

Every store is held to these by the stores-agree machines (tests/stores/), with this
module as the reference: MemoryStore is built on it, SqliteStore keeps its own SQL for
speed and must give the same records, and the runners report what they did with
:func:`apply`. Pure: times come in as arguments; nothing here reads a clock or a store.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

import attrs

from jobkit.model import (
    ATTEMPTS_KEPT,
    CANCELLED,
    CANCELLED_WHILE_LOST,
    LIVE,
    Attempt,
    AttemptOutcome,
    Cancel,
    Complete,
    Fail,
    JobRecord,
    JobStatus,
    Lease,
    LeaseMark,
    Postpone,
    QueueInfo,
    Retry,
    Transition,
    parent_ended,
    worker_lost,
)

PENDING, RUNNING, COMPLETED = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
"""The statuses a job can be retried by hand from."""
Expiry = Literal["retried", "failed", "cancelled"]
"""What :func:`expire` did to a job whose lock ran out."""


# -- questions ------------------------------------------------------------------------
def claim_order(job: JobRecord) -> tuple[int, datetime, str]:
    """The queue's order: highest priority first, then earliest scheduled, then oldest id."""
    return (-job.priority, job.scheduled_for, job.id)


def is_ready(job: JobRecord) -> bool:
    """Whether *job* is pending and waits for no job it runs after: a claim may take it once due."""
    return job.status is PENDING and job.waiting_for == 0


def is_due(job: JobRecord, now: datetime) -> bool:
    """Whether a claim at *now* may take *job*."""
    return is_ready(job) and job.scheduled_for <= now


def claimable(
    jobs: Iterable[JobRecord],
    *,
    now: datetime,
    limit: int,
    names: Collection[str] | None = None,
    queues: Mapping[str, int] | None = None,
    paused: Collection[str] = (),
) -> list[JobRecord]:
    """What one claim at *now* takes, in claim order: due jobs whose queue is not *paused*.

    Only jobs of *names* when given; only of *queues* when given, and at most the number
    it maps each to; at most *limit* in all. Taking each queue's first jobs up to its
    number and then the first *limit* of those is the same choice, which is how the SQL
    stores make it from an index per queue.
    """
    if limit <= 0:
        return []
    due = sorted((job for job in jobs if is_due(job, now) and _served(job, names, queues, paused)), key=claim_order)
    taken: list[JobRecord] = []
    per_queue: collections.Counter[str] = collections.Counter()
    for job in due:
        if queues is not None and per_queue[job.queue] >= queues[job.queue]:
            continue
        per_queue[job.queue] += 1
        taken.append(job)
        if len(taken) == limit:
            break
    return taken


def next_due(
    jobs: Iterable[JobRecord],
    *,
    names: Collection[str] | None = None,
    queues: Collection[str] | None = None,
    paused: Collection[str] = (),
) -> datetime | None:
    """When the first pending job a claim of *names* and *queues* could take comes due; None for none.

    A paused queue's jobs are due for no one.
    """
    return min(
        (job.scheduled_for for job in jobs if is_ready(job) and _served(job, names, queues, paused)),
        default=None,
    )


def _served(
    job: JobRecord, names: Collection[str] | None, queues: Collection[str] | None, paused: Collection[str]
) -> bool:
    """Whether a claim limited to *names* and *queues* (None: any) may take *job* once due."""
    return (
        job.queue not in paused and (names is None or job.job_name in names) and (queues is None or job.queue in queues)
    )


def queues_of(jobs: Iterable[JobRecord], pauses: Mapping[str, bool]) -> list[QueueInfo]:
    """The queues as listed: each that holds a job or has a pause (*pauses*), by name, with its jobs by status."""
    counts = {name: dict.fromkeys(JobStatus, 0) for name in pauses}
    for job in jobs:
        counts.setdefault(job.queue, dict.fromkeys(JobStatus, 0))[job.status] += 1
    return [QueueInfo(name, pauses.get(name, False), counts[name]) for name in sorted(counts)]


def is_expired(job: JobRecord, now: datetime) -> bool:
    """Whether *job* is running on a lock that ran out at or before *now*.

    This trusts that *now* and the holder's clock agree: only a one-pass ``tick``, which
    cannot watch a lease over time, decides by it. A worker decides by marks (below).
    """
    return job.status is RUNNING and job.worker_expires_at is not None and job.worker_expires_at <= now


def ran_out(mark: LeaseMark, now: datetime) -> bool:
    """Whether *mark*'s stored lock ran out at or before *now*, as ``reset_expired`` judges it (trusting
    *now*, as :func:`is_expired` does): an expiry that cannot be read counts as run out, as SQLite's reset
    counts it, so that a row another tool wrote cannot hold its job for good."""
    return mark.expires_at is None or mark.expires_at <= now


def mark_of(job: JobRecord) -> LeaseMark | None:
    """The lease of a running *job* as a reaper reads it; None for a job not running."""
    if job.status is not RUNNING or job.worker_id is None:
        return None
    return LeaseMark(job.id, job.worker_id, job.worker_expires_at, job.updated_at)


def as_seen(job: JobRecord | None, mark: LeaseMark) -> bool:
    """Whether *job* is still held exactly as *mark* saw it: the same token, not renewed since."""
    return (
        job is not None
        and job.status is RUNNING
        and job.worker_id == mark.token
        and job.worker_expires_at == mark.expires_at
    )


def stated_length(mark: LeaseMark) -> timedelta:
    """How long the holder meant its lease to last: its expiry less its last write, both on its clock.

    Skew cancels out of the difference. Zero when either time is unreadable, or when a
    write by another clock (a cancel request) came after the renewal.
    """
    if mark.expires_at is None or mark.updated_at is None:
        return timedelta(0)
    return max(mark.expires_at - mark.updated_at, timedelta(0))


def holds(job: JobRecord | None, lease: Lease) -> bool:
    """Whether *lease* still holds *job*: every write for an attempt is fenced by this."""
    return job is not None and job.status is RUNNING and job.worker_id == lease.token


# -- the running attempt ----------------------------------------------------------------
def claim(job: JobRecord, *, token: str, now: datetime, lock_until: datetime) -> JobRecord:
    """A pending job taken by *token* until *lock_until*, with one more attempt counted."""
    return attrs.evolve(
        job,
        status=RUNNING,
        worker_id=token,
        worker_started_at=now,
        worker_expires_at=lock_until,
        attempt_count=job.attempt_count + 1,
        progress=0,
        progress_message=None,
        updated_at=now,
    )


def heartbeat(job: JobRecord, *, now: datetime, lock_until: datetime) -> JobRecord:
    """A held job's lock extended to *lock_until*."""
    return attrs.evolve(job, worker_expires_at=lock_until, updated_at=now)


def check_percent(percent: int) -> None:
    """Refuse a progress outside 0..100 (the table's CHECK), whoever holds the job."""
    if not 0 <= percent <= 100:
        raise ValueError(f"progress must be from 0 to 100, not {percent!r}")


def progress(job: JobRecord, percent: int, message: str | None, *, now: datetime) -> JobRecord:
    """A held job's progress, 0 to 100."""
    check_percent(percent)
    return attrs.evolve(job, progress=percent, progress_message=message, updated_at=now)


def apply(job: JobRecord, transition: Transition) -> JobRecord:
    """The record after one attempt's outcome; the caller has checked that the lease holds.

    A completed job keeps no error or traceback of an earlier attempt; a retried one is
    pending again at ``run_at``, no longer held, its attempt spent.
    """
    match transition:
        case Complete(result=result, at=at):
            return _ended(job, JobStatus.COMPLETED, None, at, result=result, progress=100, traceback=None)
        case Retry(error=error, traceback=tb, at=at, run_at=run_at):
            return _unheld(job, at, error=error, traceback=tb, scheduled_for=run_at)
        case Fail(error=error, traceback=tb, at=at):
            return _ended(job, JobStatus.FAILED, error, at, traceback=tb)
        case Cancel(reason=reason, at=at):
            return _ended(job, JobStatus.CANCELLED, reason, at)
        case Postpone(at=at, run_at=run_at):
            return _unheld(job, at, **_refunded(job), scheduled_for=run_at)
    raise TypeError(f"not a transition: {transition!r}")


def _refunded(job: JobRecord) -> dict[str, object]:
    """What giving an attempt back changes: the attempt is not counted, its progress is gone."""
    return {"attempt_count": job.attempt_count - 1, "progress": 0, "progress_message": None}


def pends_again(transition: Transition) -> bool:
    """Whether *transition* leaves its job pending (a retry or a snooze), so its queue has work."""
    return isinstance(transition, (Retry, Postpone))


def release(job: JobRecord, *, now: datetime) -> JobRecord:
    """A held job given back unfinished: pending again with its attempt refunded.

    A job whose cancellation was asked for is not given back: it ends cancelled.
    """
    if job.cancel_requested:
        return _ended(job, JobStatus.CANCELLED, CANCELLED, now)
    return _unheld(job, now, **_refunded(job))


def expire(job: JobRecord, *, now: datetime) -> tuple[JobRecord, Expiry]:
    """A running job whose worker is gone: what becomes of it, and which way.

    Gone means its lease went unrenewed while a reaper watched (a worker), or its lock
    ran out by the caller's clock (a one-pass ``tick``); *now* is only the time written.

    Back to pending at once while attempts are left; failed ("worker lost") when they
    are spent, so a job that kills its worker cannot loop forever; cancelled when its
    cancellation was asked for.
    """
    if job.cancel_requested:
        return _ended(job, JobStatus.CANCELLED, CANCELLED_WHILE_LOST, now, traceback=None), "cancelled"
    lost = worker_lost(job.attempt_count, job.max_attempts)
    if job.attempt_count >= job.max_attempts:
        return _ended(job, JobStatus.FAILED, lost, now, traceback=None), "failed"
    return _unheld(job, now, error=lost, traceback=None, scheduled_for=now), "retried"


# -- requests from outside --------------------------------------------------------------
def cancel(job: JobRecord, *, now: datetime) -> JobRecord:
    """A cancellation request: a pending job ends cancelled, a running one is asked to stop.

    A finished job, or a running one already asked, is returned as it is.
    """
    if job.status is PENDING:
        return _ended(job, JobStatus.CANCELLED, CANCELLED, now)
    if job.status is RUNNING and not job.cancel_requested:
        return attrs.evolve(job, cancel_requested=True, updated_at=now)
    return job


def retry_by_hand(job: JobRecord, *, now: datetime, key_held: bool = False, waiting_for: int = 0) -> JobRecord | None:
    """A failed or cancelled job sent back to pending with fresh attempts; None for any other.

    None too when its unique key is *key_held* by another job, pending or running: two
    live jobs never share a key, so that job does the work and this one stays as it is.
    It waits again for those of the jobs it runs after that have not completed
    (*waiting_for*, :func:`unfinished_parents`): retry them too.
    """
    if job.status not in RETRYABLE or key_held:
        return None
    return attrs.evolve(
        job,
        status=PENDING,
        attempt_count=0,
        result=None,
        progress=0,
        progress_message=None,
        error=None,
        traceback=None,
        worker_id=None,
        worker_started_at=None,
        worker_expires_at=None,
        completed_at=None,
        cancel_requested=False,
        scheduled_for=now,
        updated_at=now,
        waiting_for=waiting_for,
    )


# -- dependencies ---------------------------------------------------------------------------
def unfinished_parents(job: JobRecord, statuses: Mapping[str, JobStatus]) -> int:
    """How many of the jobs *job* runs after have not completed, by their *statuses* (a job gone counts as done)."""
    return sum(1 for parent in dict.fromkeys(job.depends_on) if statuses.get(parent, COMPLETED) is not COMPLETED)


def added_after(job: JobRecord, statuses: Mapping[str, JobStatus]) -> JobRecord:
    """*job* as added, given its parents' *statuses*: waiting for the unfinished ones, or cancelled at once
    (naming the first) when one of them has already failed or been cancelled."""
    if not job.depends_on or job.status is not PENDING:
        return job
    for parent in job.depends_on:
        if statuses[parent] in RETRYABLE:
            return _ended(job, JobStatus.CANCELLED, parent_ended(parent, statuses[parent]), job.updated_at)
    return attrs.evolve(job, waiting_for=unfinished_parents(job, statuses))


def after_parent_ended(child: JobRecord, parent: JobRecord) -> JobRecord:
    """A job waiting for *parent*, once it ended: one fewer to wait for when it completed; cancelled,
    naming it, when it failed or was cancelled (its own dependents follow, in turn). Any other job as it is."""
    if child.status is not PENDING or child.waiting_for == 0:
        return child
    if parent.status is COMPLETED:
        return attrs.evolve(child, waiting_for=child.waiting_for - 1)
    at = parent.completed_at or parent.updated_at
    return _ended(child, JobStatus.CANCELLED, parent_ended(parent.id, parent.status), at)


# -- unique keys ------------------------------------------------------------------------
Key = tuple[str, str]


def key_of(job: JobRecord) -> Key | None:
    """The key *job* holds while pending or running (its name and unique key); None for a job without one."""
    return None if job.unique_key is None else (job.job_name, job.unique_key)


def holds_key(job: JobRecord) -> bool:
    """Whether *job* holds its unique key now."""
    return job.unique_key is not None and job.status in LIVE


def deduplicated(jobs: Iterable[JobRecord], held: Mapping[Key, str]) -> tuple[list[JobRecord], list[str]]:
    """What an add of *jobs* writes, given the keys *held* (key: the id of the live job holding it).

    Returns the jobs to write, and for each of *jobs*, in order, the id it is held by: its
    own, or the holder's for one whose key is taken (by a job before it in *jobs* too).
    """
    taken = dict(held)
    written: list[JobRecord] = []
    ids: list[str] = []
    for job in jobs:
        key = key_of(job) if job.status in LIVE else None  # a finished record holds no key, nor is kept out by one
        holder = taken.get(key) if key is not None else None
        if holder is None:
            written.append(job)
            if key is not None and job.status in LIVE:
                taken[key] = job.id
        ids.append(holder or job.id)
    return written, ids


def added(
    jobs: Iterable[JobRecord], held: Mapping[Key, str], statuses: Mapping[str, JobStatus]
) -> tuple[list[JobRecord], list[str]]:
    """What an add of *jobs* writes, and the id each is known by: :func:`deduplicated` by the keys *held*, then
    each job written as its parents' *statuses* make it (:func:`added_after`).

    Deduplicated first: while a job holds the key, a call with it writes nothing, even one
    whose parent has already failed (and would have been added cancelled).
    """
    written, ids = deduplicated(jobs, held)
    return [added_after(job, statuses) for job in written], ids


# -- attempt history ------------------------------------------------------------------------
Ending = tuple[AttemptOutcome, str | None, str | None]
"""How an attempt ended, as its history entry says: the outcome, its error and traceback."""


def ending_of(transition: Transition) -> Ending | None:
    """The history entry's outcome for an attempt that ended by *transition*; None for a completion.

    A completion is not written to the history: the completed record tells it, and the
    hot path writes nothing more than the job.
    """
    match transition:
        case Complete():
            return None
        case Retry(error=error, traceback=tb, timed_out=timed_out):
            return ("timeout" if timed_out else "retried"), error, tb
        case Fail(error=error, traceback=tb, timed_out=timed_out):
            return ("timeout" if timed_out else "failed"), error, tb
        case Cancel(reason=reason):
            return "cancelled", reason, None
        case Postpone():
            return "snoozed", None, None
    raise TypeError(f"not a transition: {transition!r}")


def ended_by(timeline: Sequence[Attempt], transition: Transition) -> bool:
    """Whether a job's *timeline* (:func:`timeline`) shows the attempt *transition* ends already ended by it.

    A worker asks when a write of *transition* failed without saying whether it
    committed (the network lost the answer to a COMMIT that happened): the fenced write
    sent again finds the job no longer held, though the outcome is the store's. The
    token names the attempt; the reaper's "lost" or a give-back's entry never matches.
    """
    ending = ending_of(transition)
    outcome = "completed" if ending is None else ending[0]
    return any(a.worker_id == transition.token and a.outcome == outcome for a in timeline)


def released_ending(job: JobRecord) -> Ending:
    """A held job given back (:func:`release`): released, or cancelled when that was asked."""
    return ("cancelled", CANCELLED, None) if job.cancel_requested else ("released", None, None)


def expired_ending(after: JobRecord) -> Ending:
    """A running job whose worker was lost (:func:`expire`, *after* it): lost, with the error it got."""
    return "lost", after.error, None


def logged(history: Sequence[Attempt], job: JobRecord, ending: Ending, *, at: datetime) -> list[Attempt]:
    """*history* with the attempt of running *job* that ended at *at* as *ending* says; the newest ATTEMPTS_KEPT."""
    outcome, error, tb = ending
    entry = Attempt(_next_number(history), job.worker_id, job.worker_started_at, at, outcome, error, tb)
    return [*history, entry][-ATTEMPTS_KEPT:]


def timeline(job: JobRecord, history: Sequence[Attempt]) -> list[Attempt]:
    """Every attempt of *job* the store knows, oldest first: its *history*, then a completed or running attempt."""
    if job.status is JobStatus.COMPLETED or job.status is RUNNING:
        completed = job.status is JobStatus.COMPLETED
        last = Attempt(
            _next_number(history),
            job.worker_id,
            job.worker_started_at,
            job.completed_at if completed else None,
            "completed" if completed else "running",
        )
        return [*history, last]
    return list(history)


def _next_number(history: Sequence[Attempt]) -> int:
    return history[-1].number + 1 if history else 1


# -- shapes shared by the rules above ------------------------------------------------------
def _ended(job: JobRecord, status: JobStatus, error: str | None, at: datetime, **more: object) -> JobRecord:
    """*job* finished with *status* at *at*: no longer locked (it keeps who ran it)."""
    return attrs.evolve(
        job,
        status=status,
        error=error,
        worker_expires_at=None,
        completed_at=at,
        updated_at=at,
        **more,  # type: ignore[arg-type]
    )


def _unheld(job: JobRecord, at: datetime, **more: object) -> JobRecord:
    """*job* pending again and held by nobody."""
    return attrs.evolve(
        job,
        status=PENDING,
        worker_id=None,
        worker_started_at=None,
        worker_expires_at=None,
        updated_at=at,
        **more,  # type: ignore[arg-type]
    )
