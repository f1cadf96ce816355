"""Operating on jobs from any process: wait for a result, cancel, retry, purge old jobs or delete some by id."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from jobkit import lifecycle
from jobkit.errors import JobNotFound, JobStateError, ValidationError
from jobkit.model import FINISHED, Attempt, Clock, JobRecord, JobResult, JobStatus, QueueInfo, check_queue
from jobkit.options import BATCH
from jobkit.stages import result_of
from jobkit.store import Cursor, Store, clock_of
from jobkit.stores.refusals import chosen_ids

if TYPE_CHECKING:
    from jobkit.spec import JobSpec

PURGE_BATCH = BATCH
WAIT_SLICE = 0.25  # longest a wait_async thread runs before looking whether it is still wanted
R = TypeVar("R")


@overload
def wait(store: Store, job_id: str, timeout: float | None = None) -> JobResult[Any]: ...


@overload
def wait(store: Store, job_id: str, timeout: float | None = None, *, spec: JobSpec[Any, R]) -> JobResult[R]: ...


def wait(
    store: Store, job_id: str, timeout: float | None = None, *, spec: JobSpec[Any, Any] | None = None
) -> JobResult[Any]:
    """Block until the job finishes and return its result; reading it deletes nothing.

    The value is decoded with *spec*'s result type when given (plain JSON data without;
    ``spec.result_of(result)`` types it later, and ``spec.wait`` returns the value).
    Raises :class:`JobNotFound` for an unknown id and :class:`TimeoutError` when the job
    is not finished within *timeout* seconds. It sleeps on the store's waker between
    looks: a commit by any process on this machine wakes it (for SQLite, inotify on the
    WAL), so it returns within milliseconds of the job's end, and within 0.1 s when a
    slow fsync makes a commit show after its wake-up.
    """
    found = _watch(store, job_id, timeout, spec)
    if isinstance(found, JobRecord):
        raise TimeoutError(_still(found, timeout))
    return found


def _watch(
    store: Store, job_id: str, period: float | None, spec: JobSpec[Any, Any] | None
) -> JobResult[Any] | JobRecord:
    """Watch a job for up to *period* seconds (None: until it ends): its result, or its record if unfinished."""
    deadline = None if period is None else time.monotonic() + period
    waker = store.waker()  # before the first read: a commit after it wakes the first wait
    try:
        while True:
            job = _get(store, job_id)
            if job.status in FINISHED:
                return result_of(spec, job)
            remaining = 3600.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return job
            waker.wait(remaining)
    finally:
        waker.close()


def _still(job: JobRecord, timeout: float | None) -> str:
    return f"job {job.id} is still {job.status.value} after {timeout or 0:g}s"


@overload
async def wait_async(store: Store, job_id: str, timeout: float | None = None) -> JobResult[Any]: ...


@overload
async def wait_async(
    store: Store, job_id: str, timeout: float | None = None, *, spec: JobSpec[Any, R]
) -> JobResult[R]: ...


async def wait_async(
    store: Store, job_id: str, timeout: float | None = None, *, spec: JobSpec[Any, Any] | None = None
) -> JobResult[Any]:
    """:func:`wait` for asyncio code: waits in a thread, so the event loop keeps running.

    The thread watches in slices of at most a quarter second, so a cancelled wait (say,
    under ``asyncio.wait_for``) lets its thread go at once instead of holding one of the
    loop's executor threads, and ``asyncio.run``'s shutdown, until the job ends.
    """
    import asyncio  # imported by whoever awaits this already

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAIT_SLICE if deadline is None else max(0.0, min(WAIT_SLICE, deadline - time.monotonic()))
        found = await asyncio.to_thread(_watch, store, job_id, left, spec)
        if not isinstance(found, JobRecord):
            return found
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(_still(found, timeout))


def cancel(store: Store, job_id: str, *, clock: Clock | None = None) -> JobRecord:
    """Cancel a job and return its record.

    A pending job ends ``cancelled`` at once. A running one is asked to stop: its
    handler sees ``ctx.cancelled`` turn true within about a second, and the job ends
    ``cancelled`` when the handler returns or raises :class:`jobkit.Cancelled`. A
    finished job is left as it is. Raises :class:`JobNotFound` for an unknown id.
    """
    job = store.cancel(job_id, now=clock_of(store, clock)())
    if job is None:
        raise JobNotFound(job_id)
    return job


def cancel_many(
    store: Store, job_ids: Sequence[str], *, clock: Clock | None = None, all_or_nothing: bool = False
) -> list[JobRecord]:
    """:func:`cancel` each job (each id once, in order); return their records after.

    Every id is looked up before anything is changed: an unknown one raises
    :class:`JobNotFound` (naming every unknown id). With *all_or_nothing*, a completed
    or failed job among them raises :class:`JobStateError` naming each such job, and
    again nothing is cancelled; without it, finished jobs are left as they are. A job
    already cancelled is fine either way and comes back unchanged (its ``completed_at``
    is before *clock*'s time). A job that finishes between the check and its
    cancellation comes back finished.
    """
    records = _records(store, job_ids)
    if all_or_nothing:
        _refuse(
            [job for job in records if job.status in UNCANCELLABLE],
            "{} already; there is nothing to cancel (nothing was cancelled)",
        )
    now = clock_of(store, clock)()
    return [cancel(store, job.id, clock=lambda: now) for job in records]


def retry(
    store: Store, job_ids: Sequence[str], *, clock: Clock | None = None, all_or_nothing: bool = False
) -> list[str]:
    """Send failed or cancelled jobs back to pending with fresh attempts; return the ids sent.

    Without *all_or_nothing*, ids of jobs in other statuses, and unknown ids, are
    skipped: the ids returned (each once, in the order given) are those sent. With it,
    every id is looked up first: an unknown one raises :class:`JobNotFound`, a job that
    is not failed or cancelled :class:`JobStateError` (each naming every offending
    job), as does one whose unique key another pending or running job holds (or another
    job given holds too), and nothing is retried. A job whose status changes between
    that check and the retry (another process retried it) is then left out of the ids
    returned.
    """
    if all_or_nothing:
        records = _records(store, job_ids)
        _refuse(
            [job for job in records if job.status not in lifecycle.RETRYABLE],
            "{}; only failed or cancelled jobs can be retried (nothing was retried)",
        )
        _refuse(_keys_taken(store, records), "{}, but its unique key is held by another job (nothing was retried)")
        job_ids = [job.id for job in records]
    return store.retry(list(job_ids), now=clock_of(store, clock)())


UNCANCELLABLE = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


def _keys_taken(store: Store, records: Sequence[JobRecord]) -> list[JobRecord]:
    """Of *records* (to be retried together), those whose unique key a live job, or one before them, holds."""
    keys = {key for job in records if (key := lifecycle.key_of(job)) is not None}
    held = store.holders(keys)
    taken = []
    for job in records:
        key = lifecycle.key_of(job)
        if key is not None and held.setdefault(key, job.id) != job.id:
            taken.append(job)
    return taken


def _records(store: Store, job_ids: Sequence[str]) -> list[JobRecord]:
    """The records of *job_ids* (each once, in order); :class:`JobNotFound` names every unknown id."""
    found = {job_id: store.get(job_id) for job_id in dict.fromkeys(job_ids)}
    missing = [job_id for job_id, job in found.items() if job is None]
    if missing:
        raise JobNotFound(*missing)
    return [job for job in found.values() if job is not None]


def _refuse(refused: Sequence[JobRecord], message: str) -> None:
    """Raise :class:`JobStateError` for *refused* jobs, if any: *message* with ``{}`` for what they are."""
    if not refused:
        return
    if len(refused) == 1:
        are = f"job {refused[0].id} is {refused[0].status.value}"
    else:
        are = f"jobs {', '.join(f'{job.id} ({job.status.value})' for job in refused)} are"
    first = refused[0]
    raise JobStateError(
        message.format(are),
        job_id=first.id,
        status=first.status.value,
        jobs={job.id: job.status.value for job in refused},
    )


def purge(
    store: Store,
    *,
    older_than: timedelta,
    statuses: Collection[JobStatus | str] = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED),
    clock: Clock | None = None,
    batch: int = PURGE_BATCH,
) -> int:
    """Delete finished jobs of *statuses* that finished more than *older_than* ago; return how many.

    Works in batches of *batch* jobs, one short transaction each, so workers are never
    held up for long. Pending and running jobs are never touched.
    """
    chosen = _finished(statuses)
    if older_than < timedelta(0):
        raise ValidationError(f"older_than must not be negative, not {older_than}", value=older_than)
    if type(batch) is not int or batch < 1:
        raise ValidationError(f"batch must be an int of at least 1, not {batch!r}", value=batch)
    try:
        before = clock_of(store, clock)() - older_than
    except OverflowError:
        return 0  # a cutoff before the year 1: no job is that old
    total = 0
    while (deleted := store.purge(statuses=chosen, before=before, limit=batch)) > 0:
        total += deleted
        if deleted < batch:
            break
    return total


def purge_jobs(store: Store, job_ids: Sequence[str], *, all_or_nothing: bool = False) -> list[str]:
    """Delete finished jobs (completed, failed, cancelled) by id, with their attempt history; return the ids deleted.

    Without *all_or_nothing*, pending and running jobs and unknown ids are left alone: the
    ids returned (each once, in the order given) are those deleted. With it, every id is
    looked up first: an unknown one raises :class:`JobNotFound` (naming every unknown id),
    a job not finished :class:`JobStateError` (naming each), and nothing is deleted. A job
    retried between that check and the delete is left alone, and out of the ids returned.
    The delete itself is one transaction (:meth:`jobkit.store.Store.delete`).
    """
    if all_or_nothing:
        records = _records(store, chosen_ids(job_ids))  # a bare id is refused before any look-up, as the store would
        _refuse(
            [job for job in records if not job.status.finished],
            "{}; only finished jobs can be deleted (nothing was deleted)",
        )
        job_ids = [job.id for job in records]
    return store.delete(job_ids)


def pages(store: Store, *, size: int = BATCH, **filters: Any) -> Iterator[list[JobRecord]]:
    """Every job :meth:`Store.list_jobs` lists with *filters*, newest first, a page of at most *size* at a time.

    Each page is one short read; the next goes on from the last job's cursor, so jobs
    changed (or deleted) between pages are neither missed nor listed twice.
    """
    after: Cursor | None = None
    while True:
        page = store.list_jobs(**filters, limit=size, after=after)
        if page:
            yield page
        if len(page) < size:
            return
        after = (page[-1].created_at, page[-1].id)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# -- queues -----------------------------------------------------------------------
def pause(store: Store, queue: str, *, clock: Clock | None = None) -> None:
    """Stop every worker claiming *queue*'s jobs; its running jobs finish. A queue need not have jobs yet."""
    store.pause(check_queue(queue), True, now=clock_of(store, clock)())


def resume(store: Store, queue: str, *, clock: Clock | None = None) -> None:
    """Let workers claim *queue*'s jobs again (and wake them)."""
    store.pause(check_queue(queue), False, now=clock_of(store, clock)())


def queues(store: Store) -> list[QueueInfo]:
    """Every queue that holds jobs or was ever paused, by name: paused or not, and its jobs by status."""
    return store.queues()


def attempts(store: Store, job_id: str) -> list[Attempt]:
    """Every attempt of a job, oldest first: worker, times, outcome, error and traceback of each.

    The attempt under way, if any, comes last as ``"running"``. A job keeps its newest
    :data:`~jobkit.model.ATTEMPTS_KEPT` ended attempts; numbers keep counting past
    them. Raises :class:`JobNotFound` for an unknown id.
    """
    found = store.attempts(job_id)
    if not found and store.get(job_id) is None:
        raise JobNotFound(job_id)
    return found


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` (or plain seconds) as a timedelta."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit is not None else value
    try:
        amount = float(number)
    except ValueError:
        amount = float("nan")
    if not (amount >= 0 and amount != float("inf")):
        raise ValidationError(
            f"bad duration {text!r}: give a number and a unit, such as 90s, 30m, 12h, 7d or 2w", value=text
        )
    try:
        return timedelta(seconds=amount * (unit or 1))
    except OverflowError:
        raise ValidationError(f"bad duration {text!r}: too long", value=text) from None


def _finished(statuses: Collection[JobStatus | str]) -> set[JobStatus]:
    chosen = set()
    for status in statuses:
        try:
            value = JobStatus(status)
        except ValueError as exc:
            raise ValidationError(f"unknown status {status!r}", value=status) from exc
        if not value.finished:
            raise ValidationError(
                f"only finished jobs can be purged (completed, failed, cancelled), not {value.value}", value=status
            )
        chosen.add(value)
    return chosen


def _get(store: Store, job_id: str) -> JobRecord:
    job = store.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job
