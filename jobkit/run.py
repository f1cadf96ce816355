"""THE runner of a claimed job, and the ways a caller's process enqueues and runs jobs.

Whoever claimed a job (the worker's loop, ``now()``, ``batch()``, ``execute()``,
``tick``) runs it through the same steps:

    prepare (find the spec, decode params, build the Context)
    -> begin (log, "started") -> attempt (the handler, in a thread or on a loop)
    -> conclude (the outcome, overridden by a cancellation, as a Transition)
    -> [the store applies it, fenced by the token] -> recorded (log, events, the new record)

The worker applies many transitions in one transaction; the single-job callers here
apply one. The lease is kept meanwhile by :class:`jobkit.lease.LeaseKeeper`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs

from jobkit import codec, lifecycle
from jobkit.backoff import Backoff
from jobkit.codec import storable_text
from jobkit.context import Context
from jobkit.errors import JobNotFound, JobStateError, StoreError, UnknownJobError, ValidationError
from jobkit.events import Event, EventKind
from jobkit.lease import Held, LeaseKeeper
from jobkit.model import (
    Clock,
    Complete,
    Failed,
    JobRecord,
    JobResult,
    JobStatus,
    Lease,
    Outcome,
    Snoozed,
    Stopped,
    Succeeded,
    Transition,
    new_id,
    seconds,
)
from jobkit.options import DEFAULT_LOCK_TIMEOUT, UNRESOLVED_BACKOFF
from jobkit.stages import (
    attempt,
    attempt_async,
    check_enqueue_options,
    decide,
    dependencies_of,
    event_of,
    log_outcome,
    new_record,
    result_of,
    storable,
    stored_params,
    unique_keys_of,
    unreadable,
    validate,
)
from jobkit.store import TransactionalStore, clock_of

if TYPE_CHECKING:
    from jobkit.spec import JobSpec
    from jobkit.store import Store

logger = logging.getLogger("jobkit.run")


# -- the steps of one claimed job ----------------------------------------------------------
def prepare(
    held: Held, find: Callable[[str], JobSpec[Any, Any]], keeper: LeaseKeeper | None, clock: Clock
) -> tuple[JobSpec[Any, Any], Any, Context] | Failed:
    """The spec, typed params and context for *held*, or the failure that ends it before it starts.

    One bad row harms only itself: a name that leads to no spec, or params that no
    longer decode (a RecursionError from deep JSON, too), fail this job alone. A name
    this process cannot resolve is a retryable failure (see :func:`conclude`).
    """
    try:
        spec = find(held.job.job_name)
    except UnknownJobError as exc:
        return Failed(f"UnknownJobError: {exc}")
    except Exception as exc:  # a finder's own fault still ends only this job
        return Failed(f"UnknownJobError: {held.job.job_name!r} could not be resolved: {type(exc).__name__}: {exc}")
    try:
        typed = stored_params(spec, held.job)
    except Exception as exc:
        return unreadable(exc)
    return spec, typed, context(held, spec, keeper, clock)


def context(held: Held, spec: JobSpec[Any, Any], keeper: LeaseKeeper | None, clock: Clock) -> Context:
    """The ``ctx`` a handler gets; without a *keeper* (a run not persisted) progress goes nowhere."""
    held.spec = spec
    job = held.job
    return Context(
        job_id=job.id,
        job_name=job.job_name,
        attempt=job.attempt_count,
        store=keeper.store if keeper is not None else None,
        sink=partial(keeper.report, held) if keeper is not None else None,
        cancel=held.cancel,
        timeout=spec.timeout,
        clock=clock,
        after=job.depends_on,
    )


def begin(held: Held, clock: Clock, *, heard: bool = True) -> None:
    """The handler is about to start: log it and tell the listeners (when *heard*)."""
    held.started = time.monotonic()
    job = held.job
    if logger.isEnabledFor(logging.DEBUG):  # spares a busy worker the arguments; its end is the INFO line
        logger.debug("job %s %s: started (attempt %d of %d)", job.id, job.job_name, job.attempt_count, job.max_attempts)
    if heard and held.spec is not None and held.spec.hooks:
        held.spec.hooks.emit(Event("started", job.id, job.job_name, clock(), job.attempt_count))


def attempt_held(held: Held, spec: JobSpec[Any, Any], typed: Any, ctx: Context) -> tuple[Outcome, BaseException | None]:
    """Run the handler in this thread; see :func:`jobkit.stages.attempt`."""
    outcome = attempt(spec, typed, ctx)
    held.took = time.monotonic() - (held.started or time.monotonic())
    return outcome


async def attempt_held_async(
    held: Held, spec: JobSpec[Any, Any], typed: Any, ctx: Context
) -> tuple[Outcome, BaseException | None]:
    """Await an ``async def`` handler on the running loop."""
    outcome = await attempt_async(spec, typed, ctx)
    held.took = time.monotonic() - (held.started or time.monotonic())
    return outcome


def conclude(
    held: Held,
    outcome: Outcome,
    now: datetime,
    *,
    jitter: float,
    retry: bool = True,
    unresolved_backoff: Backoff = UNRESOLVED_BACKOFF,
) -> Transition:
    """What the store is to do with *held* after its attempt.

    A job asked to stop ends cancelled, whatever its handler did. A job whose name led
    to no spec here is retried after *unresolved_backoff* (doubling) while it has
    attempts left: a worker started where the job's module does not import is more
    likely at fault than the job, so it must not end the job faster than a raising
    handler would, and another worker that knows the name may run it meanwhile.
    """
    if held.cancel_requested:
        outcome = Stopped()
    outcome = storable(outcome)  # every outcome of a claimed job passes here
    backoff = unresolved_backoff if held.spec is None else None
    return decide(held.spec, held.job, outcome, now, jitter=jitter, retry=retry, backoff=backoff)


def recorded(held: Held, transition: Transition, applied: bool, clock: Clock, *, heard: bool = True) -> bool:
    """Say what became of an attempt (logs, listeners); False when the lease was lost and it was dropped.

    The record the store now holds is ``lifecycle.apply(held.job, transition)``.
    """
    hooks = held.spec.hooks if heard and held.spec is not None else None
    job = held.job
    if not applied or held.lost:
        logger.warning("job %s: lease lost; this worker's outcome was dropped", job.id)
        if hooks:
            hooks.emit(Event("lease_lost", job.id, job.job_name, clock(), job.attempt_count))
        return False
    log_outcome(held.job, held.took, transition)
    if hooks:
        hooks.emit(event_of(job, transition, held.took))
    return True


def written_before(store: Store, held: Held, transition: Transition) -> bool:
    """Whether an earlier write of *transition* that failed committed all the same (:func:`lifecycle.ended_by`)."""
    try:
        return lifecycle.ended_by(store.attempts(held.job.id), transition)
    except Exception:  # cannot tell: it is reported dropped, as it would have been
        logger.debug("job %s: could not read whether its outcome was written", held.job.id, exc_info=True)
        return False


# -- one job, here and now ---------------------------------------------------------------------
_FROM_RECORD: Any = object()  # run_claimed's typed params: decode them from the record


def run_claimed(
    spec: JobSpec[Any, Any],
    job: JobRecord,
    store: Store,
    *,
    typed: Any = _FROM_RECORD,
    retry: bool,
    clock: Clock | None = None,
    lock: timedelta = DEFAULT_LOCK_TIMEOUT,
) -> JobResult[Any]:
    """Run a job this caller holds in this thread, keeping its lease; record and return the outcome.

    *typed* is the params when the caller has them; by default they are decoded from the
    record, and params that no longer decode fail the job. The clock is the store's
    unless *clock* is given.
    """
    clock = clock_of(store, clock)
    keeper = LeaseKeeper(store, lock=lock, clock=clock)
    held = keeper.hold(job)
    if typed is _FROM_RECORD:
        prepared = prepare(held, lambda _: spec, keeper, clock)
        if isinstance(prepared, Failed):
            return _record_one(held, prepared, None, store, clock, retry=retry)
        _, typed, ctx = prepared
    else:
        ctx = context(held, spec, keeper, clock)
    with keeper.kept():
        begin(held, clock)
        outcome, fatal = attempt_held(held, spec, typed, ctx)
    return _record_one(held, outcome, fatal, store, clock, retry=retry)


def _record_one(
    held: Held, outcome: Outcome, fatal: BaseException | None, store: Store, clock: Clock, *, retry: bool
) -> JobResult[Any]:
    transition = conclude(held, outcome, clock(), jitter=random.random(), retry=retry)
    transition, applied = _finish(store, held, transition, clock, retry=retry)
    kept = recorded(held, transition, applied, clock)
    if fatal is not None:
        raise fatal
    if not kept:  # tell the caller what the store holds, not what was dropped
        current = store.get(held.job.id)
        if current is None:
            raise JobNotFound(held.job.id)
        return result_of(held.spec, current)
    value = outcome.value if isinstance(outcome, Succeeded) and isinstance(transition, Complete) else None
    return result_of(held.spec, lifecycle.apply(held.job, transition), value=value, duration=held.took)


def _finish(
    store: Store, held: Held, transition: Transition, clock: Clock, *, retry: bool, tries: int = 3
) -> tuple[Transition, bool]:
    """Record an outcome; a database locked past its busy timeout is tried again, not a failure."""
    for number in range(tries):
        try:
            return finish_alone(store, held, transition, clock, retry=retry)
        except StoreError as exc:
            if number == tries - 1:
                raise
            logger.warning("job %s: recording its outcome postponed: %s", transition.job_id, exc)
    raise AssertionError("unreachable")  # pragma: no cover


def finish_alone(
    store: Store, held: Held, transition: Transition, clock: Clock, *, retry: bool = True
) -> tuple[Transition, bool]:
    """Write one job's outcome: what was written, and whether the token still held the job.

    An outcome the store cannot take (anything but a StoreError) fails the job instead,
    spending its attempt, with an error that says why (RELIABILITY.md 13): refunding it
    would run the job again and again. A StoreError (the database is in the way, not
    this outcome) is raised for the caller to try again later, as is whatever stops
    even that failure from being written.
    """
    try:
        return transition, store.finish([transition])[0]
    except StoreError:
        raise
    except Exception as exc:
        why = storable_text(f"{type(exc).__name__}: {exc}")
        logger.error("job %s: its outcome could not be written (%s); recorded as a failure", held.job.id, why)
        failed = Failed(f"the job's outcome could not be written: {why}")
        replacement = conclude(held, failed, clock(), jitter=random.random(), retry=retry)  # its rules, once
        return replacement, store.finish([replacement])[0]


def _run_unpersisted(spec: JobSpec[Any, Any], typed: Any, encoded: str, clock: Clock) -> JobResult[Any]:
    """The same steps over a record that lives only here: nothing stored, nothing heard."""
    now = clock()
    job = attrs.evolve(
        new_record(spec, encoded, job_id=new_id(), now=now),
        status=JobStatus.RUNNING,
        attempt_count=1,
        worker_started_at=now,
    )
    held = Held(job, Lease(job.id, ""))
    ctx = context(held, spec, None, clock)
    begin(held, clock, heard=False)
    outcome, fatal = attempt_held(held, spec, typed, ctx)
    if fatal is not None:
        raise fatal
    if isinstance(outcome, Snoozed):  # nothing would ever run it again
        outcome = Failed(f"Snooze: a job run without a store cannot be snoozed ({outcome.delay})", retryable=False)
    transition = conclude(held, outcome, clock(), jitter=0.0, retry=False)
    recorded(held, transition, True, clock, heard=False)
    value = outcome.value if isinstance(outcome, Succeeded) else None
    return result_of(spec, lifecycle.apply(job, transition), value=value, duration=held.took)


def run_now(
    spec: JobSpec[Any, Any], params: Any, store: Store | None, *, clock: Clock | None = None, what: str = "params"
) -> JobResult[Any]:
    """Run once in this process: persisted as a running job when *store* is given."""
    typed, encoded = validate(spec, params, what=what)
    return _run_validated(spec, typed, encoded, store, clock=clock_of(store, clock))


def _run_validated(
    spec: JobSpec[Any, Any], typed: Any, encoded: str, store: Store | None, *, clock: Clock
) -> JobResult[Any]:
    if store is None:
        return _run_unpersisted(spec, typed, encoded, clock)
    now = clock()
    lock = DEFAULT_LOCK_TIMEOUT
    job = new_record(spec, encoded, job_id=new_id(), now=now)
    store.add([job])
    claimed = store.claim_job(job.id, now=now, token=new_id(), lock_until=now + lock)
    if claimed is None:  # pragma: no cover - a worker took it between add and claim
        raise JobStateError(f"job {job.id} was claimed by another worker before it could run", job_id=job.id)
    return run_claimed(spec, claimed, store, typed=typed, retry=False, clock=clock, lock=lock)


def run_batch(
    spec: JobSpec[Any, Any],
    params_list: Sequence[Any],
    store: Store | None,
    *,
    concurrency: int = 5,
    stop_on_error: bool = False,
    clock: Clock | None = None,
) -> list[JobResult[Any]]:
    """Run every params now, at most *concurrency* at a time; results in input order.

    All params are validated first: one invalid params raises before anything runs. With
    *stop_on_error*, nothing starts after the first failure, so fewer results may return.
    """
    if type(concurrency) is not int or concurrency < 1:
        raise ValidationError(f"concurrency must be an int of at least 1, not {concurrency!r}", value=concurrency)
    validated = [validate(spec, p, what=f"params[{i}]") for i, p in enumerate(params_list)]
    chosen = clock_of(store, clock)
    results: list[JobResult[Any] | None] = [None] * len(validated)
    failed = threading.Event()

    def run(index: int) -> None:
        if stop_on_error and failed.is_set():
            return
        typed, encoded = validated[index]
        result = _run_validated(spec, typed, encoded, store, clock=chosen)
        results[index] = result
        if not result.ok:
            failed.set()

    with concurrent.futures.ThreadPoolExecutor(min(concurrency, max(len(validated), 1))) as pool:
        for future in [pool.submit(run, i) for i in range(len(validated))]:
            future.result()
    return [r for r in results if r is not None]


def execute(
    store: Store,
    registry: Any,
    job_id: str,
    *,
    clock: Clock | None = None,
    lock: timedelta = DEFAULT_LOCK_TIMEOUT,
) -> JobResult[Any]:
    """Run one given queued job in this process, as a worker would, and record its outcome.

    Raises :class:`JobNotFound` for an unknown id, :class:`JobStateError` when the job is not pending
    (or waits for jobs it runs after), and
    :class:`UnknownJobError` when its name leads to no spec in *registry*; in each case
    nothing changes.
    """
    job = store.get(job_id)
    if job is None:
        raise JobNotFound(job_id)
    spec = registry.get(job.job_name)
    if spec is None:
        raise UnknownJobError(job.job_name, "it is not in the registry given to execute()")
    if job.status is not JobStatus.PENDING:
        raise JobStateError(
            f"job {job_id} is {job.status.value}, not pending; only a pending job can be executed",
            job_id=job_id,
            status=job.status.value,
        )
    if job.waiting_for:
        raise JobStateError(
            f"job {job_id} waits for {job.waiting_for} of the jobs it runs after to complete; it cannot run yet",
            job_id=job_id,
            status=job.status.value,
        )
    clock = clock_of(store, clock)
    now = clock()
    claimed = store.claim_job(job_id, now=now, token=new_id(), lock_until=now + lock)
    if claimed is None:
        raise JobStateError(f"job {job_id} was claimed by someone else first", job_id=job_id)
    return run_claimed(spec, claimed, store, retry=True, clock=clock, lock=lock)


# -- enqueue -------------------------------------------------------------------------------------
def enqueue(
    spec: JobSpec[Any, Any],
    params_list: Sequence[Any],
    store: Store,
    *,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    correlation_id: str | None = None,
    max_attempts: int | None = None,
    priority: int = 0,
    queue: str | None = None,
    unique_keys: Sequence[str | None] | None = None,
    after: Sequence[str] | None = None,
    clock: Clock | None = None,
    indexed: bool | None = None,
    connection: object | None = None,
) -> list[str]:
    """Validate every params, then add them all as pending jobs in one transaction; return their ids.

    A delay counts from the store's time (:meth:`Store.now`) unless *clock* is given.
    With a *connection* (the caller's own, with a transaction open), the jobs are added
    inside that transaction (:meth:`TransactionalStore.add_on`): they exist only once
    the caller commits. The ``enqueued`` events are told at this call, not at the commit.
    *unique_keys* (one a params, None for none) or, for a unique spec, each params'
    canonical JSON keys each job: one whose key a pending or running job of its name
    holds is not made, and its id is that job's (told as ``deduplicated``). With *after*,
    each job runs only once every job named there has completed, and is cancelled when
    one of them fails or is cancelled.
    """
    if connection is not None and not isinstance(store, TransactionalStore):
        raise TypeError(
            f"{type(store).__name__} cannot enqueue on a caller's connection (connection=...): only "
            "PostgresStore enqueues inside the caller's transaction; drop connection= to add the jobs here"
        )
    check_enqueue_options(
        spec,
        store,
        delay=delay,
        at=at,
        max_attempts=max_attempts,
        priority=priority,
        correlation_id=correlation_id,
        queue=queue,
    )
    parents = dependencies_of(after)
    many = len(params_list) != 1 if indexed is None else indexed
    keys = unique_keys_of(unique_keys, len(params_list), many)
    encoded = [validate(spec, p, what=f"params[{i}]" if many else "params")[1] for i, p in enumerate(params_list)]
    if spec.unique:
        keys = [key if key is not None else codec.canonical_key(text) for key, text in zip(keys, encoded, strict=True)]
    now = clock_of(store, clock)()
    try:
        when = at if at is not None else (now + seconds(delay) if delay is not None else now)
    except OverflowError:
        raise ValidationError(
            f"delay={delay!r} from {now.isoformat()} reaches past the year 9999", value=delay
        ) from None
    records = [
        new_record(
            spec,
            text,
            job_id=new_id(),
            now=now,
            scheduled_for=when,
            correlation_id=correlation_id,
            max_attempts=max_attempts,
            priority=priority,
            queue=queue,
            unique_key=key,
            depends_on=parents,
        )
        for text, key in zip(encoded, keys, strict=True)
    ]
    if connection is None:
        ids = store.add(records)
    else:
        assert isinstance(store, TransactionalStore)  # refused above otherwise
        ids = store.add_on(connection, records)
    if spec.hooks:
        for record, job_id in zip(records, ids, strict=True):
            kind: EventKind = "enqueued" if job_id == record.id else "deduplicated"
            spec.hooks.emit(Event(kind, job_id, record.job_name, now))
    return ids
