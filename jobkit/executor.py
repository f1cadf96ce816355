"""The stages of running a job, and the ways to run one from a caller's process.

    validate -> persist -> run -> record

Each stage is a plain function: ``validate`` turns params into a typed value and its
JSON; ``new_record`` builds the row that ``persist`` (a store's ``add``) writes; ``attempt``
runs the handler and turns whatever happens into an :data:`Outcome`; ``decide`` turns an
outcome into a :data:`Transition` for the store to apply. The clock, the store and the
randomness are passed in, so the stages are tested by calling them.

``run_now``, ``enqueue``, ``run_batch`` and ``execute`` compose the stages for callers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from jobkit import convert
from jobkit.backoff import delay as retry_delay
from jobkit.context import Context
from jobkit.errors import Cancelled, JobNotFound, JobStateError, StoreError, UnknownJobError, ValidationError
from jobkit.events import Event
from jobkit.model import (
    Cancel,
    Clock,
    Complete,
    Fail,
    Failed,
    JobRecord,
    JobResult,
    JobStatus,
    Lease,
    Outcome,
    Retry,
    Stopped,
    Succeeded,
    Transition,
    new_id,
    seconds,
    utc_now,
)
from jobkit.store import Store

if TYPE_CHECKING:
    from jobkit.spec import JobSpec

logger = logging.getLogger("jobkit")
T = TypeVar("T")

DEFAULT_LOCK_TIMEOUT = timedelta(seconds=300)
PROGRESS_INTERVAL = 0.2  # seconds between progress writes of one job
CANCEL_CHECK = 1.0  # seconds between looks for a cancellation of a job run by now()


# -- validate -----------------------------------------------------------------------
_PLAIN = frozenset({int, str, bool})  # an exact instance is its own plain data


def validate(spec: JobSpec[Any, Any], params: Any, *, what: str = "params") -> tuple[Any, str]:
    """Structure *params* into the spec's params type; return the typed value and its JSON."""
    if type(params) is spec.params_type and spec.params_type in _PLAIN:
        return params, convert.encode(params, what=what, limit=spec.max_payload_bytes)
    typed = convert.structure(params, spec.params_type, what=what)
    data = typed if spec.params_type is Any else convert.unstructure(typed, spec.params_type)
    return typed, convert.encode(data, what=what, limit=spec.max_payload_bytes)


def check_result(spec: JobSpec[Any, Any], value: Any) -> Outcome:
    """Turn a handler's return value into Succeeded, or Failed when it does not fit."""
    if type(value) is spec.result_type and value.__class__ in _PLAIN:  # an exact int, str or bool
        try:
            return Succeeded(value, convert.encode(value, what="result", limit=spec.max_payload_bytes))
        except ValidationError as exc:
            return Failed(f"ValidationError: {exc}", None)
    try:
        if spec.result_type is type(None):
            if value is not None:
                raise ValidationError(f"result is {value!r}, but the handler is declared to return None")
            return Succeeded(None, "null")
        data = value if spec.result_type is Any else convert.unstructure(value)
        typed = convert.structure(data, spec.result_type, what="result")
        if spec.result_type is not Any:
            data = convert.unstructure(typed, spec.result_type)
        return Succeeded(typed, convert.encode(data, what="result", limit=spec.max_payload_bytes))
    except ValidationError as exc:
        return Failed(f"ValidationError: {exc}", None)


# -- persist ------------------------------------------------------------------------
def new_record(
    spec: JobSpec[Any, Any],
    encoded: str,
    *,
    job_id: str,
    now: datetime,
    scheduled_for: datetime | None = None,
    correlation_id: str | None = None,
    max_attempts: int | None = None,
    priority: int = 0,
) -> JobRecord:
    """The pending row for one job."""
    return JobRecord(
        id=job_id,
        job_name=spec.name,
        params=encoded,
        status=JobStatus.PENDING,
        scheduled_for=scheduled_for or now,
        created_at=now,
        updated_at=now,
        max_attempts=max_attempts or spec.max_attempts,
        priority=priority,
        correlation_id=correlation_id,
    )


def _check_enqueue_options(
    spec: JobSpec[Any, Any],
    store: Store,
    *,
    delay: Any,
    at: Any,
    max_attempts: Any,
    priority: Any,
    correlation_id: Any,
) -> None:
    if spec.name.startswith("__main__:") and store.shared:
        raise ValidationError(
            f"job {spec.name!r} is defined in a script run as __main__, which a worker process cannot "
            "import; define it in a module, or give it a name (jobs.job(name=...)) and start the "
            "worker with --jobs MODULE"
        )
    if delay is not None and at is not None:
        raise ValidationError("give delay or at, not both", value=(delay, at))
    if at is not None and (not isinstance(at, datetime) or at.tzinfo is None):
        raise ValidationError(f"at must be a timezone-aware datetime, not {at!r}", value=at)
    if delay is not None and not _is_delay(delay):
        raise ValidationError(f"delay must be seconds (>= 0) or a timedelta, not {delay!r}", value=delay)
    if max_attempts is not None and (type(max_attempts) is not int or max_attempts < 1):
        raise ValidationError(f"max_attempts must be an int of at least 1, not {max_attempts!r}", value=max_attempts)
    if type(priority) is not int:
        raise ValidationError(f"priority must be an int, not {priority!r}", value=priority)
    if correlation_id is not None and not isinstance(correlation_id, str):
        raise ValidationError(f"correlation_id must be a str, not {correlation_id!r}", value=correlation_id)


def _is_delay(delay: Any) -> bool:
    if isinstance(delay, bool) or not isinstance(delay, (int, float, timedelta)):
        return False
    if isinstance(delay, float) and not math.isfinite(delay):
        return False
    try:
        return timedelta(0) <= seconds(delay) <= MAX_ENQUEUE_DELAY
    except OverflowError:
        return False


MAX_ENQUEUE_DELAY = timedelta(days=366 * 100)


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
    clock: Clock = utc_now,
    indexed: bool | None = None,
) -> list[str]:
    """Validate every params, then add them all as pending jobs in one transaction."""
    _check_enqueue_options(
        spec, store, delay=delay, at=at, max_attempts=max_attempts, priority=priority, correlation_id=correlation_id
    )
    many = len(params_list) != 1 if indexed is None else indexed
    encoded = [validate(spec, p, what=f"params[{i}]" if many else "params")[1] for i, p in enumerate(params_list)]
    now = clock()
    when = at if at is not None else (now + seconds(delay) if delay is not None else now)
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
        )
        for text in encoded
    ]
    store.add(records)
    if spec.hooks:
        for record in records:
            spec.hooks.emit(Event("enqueued", record.id, record.job_name, now))
    return [r.id for r in records]


def stored_params(spec: JobSpec[Any, Any], job: JobRecord) -> Any:
    """The typed params of a stored job; ValidationError when they no longer decode."""
    data = convert.decode(job.params)
    if type(data) is spec.params_type and data.__class__ in _PLAIN:
        return data
    return convert.structure(data, spec.params_type, what="params")


def unreadable(exc: Exception) -> Failed:
    """The outcome of a job whose stored params cannot be read: failed, not worth retrying."""
    text = str(exc) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"
    return Failed(f"stored params no longer decode: {text}", retryable=False)


# -- run ----------------------------------------------------------------------------
def failure(exc: BaseException) -> Failed:
    """A failed outcome carrying the exception's text and traceback."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Failed(text, "".join(traceback.format_exception(exc)))


def timed_out(spec: JobSpec[Any, Any]) -> Failed:
    return Failed(f"TimeoutError: the job ran past its timeout of {spec.timeout:g}s")


def attempt(spec: JobSpec[Any, Any], typed: Any, ctx: Context) -> tuple[Outcome, BaseException | None]:
    """Run the handler once in this thread (a coroutine on its own loop); never raises.

    Returns the outcome, and a BaseException (KeyboardInterrupt, SystemExit) that the
    caller must re-raise once the outcome is recorded.
    """
    try:
        value = run_coroutine(lambda: _bounded(spec, spec.fn(typed, ctx))) if spec.is_async else spec.fn(typed, ctx)
    except BaseException as exc:  # every way out becomes an outcome
        return outcome_of_exception(spec, ctx, exc)
    return outcome_of_value(spec, ctx, value), None


async def attempt_async(spec: JobSpec[Any, Any], typed: Any, ctx: Context) -> tuple[Outcome, BaseException | None]:
    """Like :func:`attempt`, awaiting an ``async def`` handler on the running loop."""
    try:
        value = await _bounded(spec, spec.fn(typed, ctx))
    except GeneratorExit:
        raise  # the coroutine is being closed, not failing
    except BaseException as exc:  # every way out becomes an outcome
        return outcome_of_exception(spec, ctx, exc)
    return outcome_of_value(spec, ctx, value), None


def outcome_of_value(spec: JobSpec[Any, Any], ctx: Context, value: Any) -> Outcome:
    """The outcome of a handler that returned *value*."""
    return timed_out(spec) if ctx.timed_out else check_result(spec, value)


def outcome_of_exception(
    spec: JobSpec[Any, Any], ctx: Context, exc: BaseException
) -> tuple[Outcome, BaseException | None]:
    """The outcome of a handler that raised; a BaseException is handed back to re-raise."""
    if isinstance(exc, Cancelled):
        return (timed_out(spec) if ctx.timed_out else Stopped(str(exc) or "cancelled")), None
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and ctx.timed_out:
        return timed_out(spec), None
    if isinstance(exc, Exception):
        return failure(exc), None
    return failure(exc), exc


async def _bounded(spec: JobSpec[Any, Any], coro: Coroutine[Any, Any, T]) -> T:
    """Await *coro* within the spec's timeout, in the calling task.

    On 3.10 ``wait_for`` runs the coroutine in a task of its own, where a SystemExit or
    KeyboardInterrupt would escape into the event loop; it is carried out and re-raised.
    """
    if spec.timeout is None:
        return await coro
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(spec.timeout):
            return await coro
    value, fatal = await asyncio.wait_for(_carry(coro), spec.timeout)  # pragma: no cover - 3.10
    if fatal is not None:  # pragma: no cover - 3.10
        raise fatal
    return value  # type: ignore[return-value]  # pragma: no cover - 3.10


async def _carry(coro: Coroutine[Any, Any, T]) -> tuple[T | None, BaseException | None]:
    try:
        return await coro, None
    except (KeyboardInterrupt, SystemExit) as exc:
        return None, exc


def run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end from sync code, even where a loop already runs (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jobkit-async") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


# -- record -------------------------------------------------------------------------
def decide(
    spec: JobSpec[Any, Any] | None,
    job: JobRecord,
    outcome: Outcome,
    now: datetime,
    *,
    jitter: float = 0.5,
    retry: bool = True,
) -> Transition:
    """What becomes of *job* after one attempt; *jitter* in [0, 1) spreads retry times."""
    token = job.worker_id or ""
    match outcome:
        case Succeeded(encoded=encoded):
            return Complete(job.id, token, encoded, at=now)
        case Stopped(reason=reason):
            return Cancel(job.id, token, reason, at=now)
        case Failed(error=error, traceback=tb, retryable=True) if (
            retry and spec is not None and job.attempt_count < job.max_attempts
        ):
            run_at = now + retry_delay(spec.retry_backoff, job.attempt_count, jitter)
            return Retry(job.id, token, error, tb, at=now, run_at=run_at)
        case Failed(error=error, traceback=tb):
            return Fail(job.id, token, error, tb, at=now)
    raise TypeError(f"not an outcome: {outcome!r}")  # pragma: no cover


def result_of(
    spec: JobSpec[Any, Any] | None,
    job: JobRecord,
    *,
    value: Any = None,
    duration: float | None = None,
) -> JobResult[Any]:
    """The caller's view of a job record; the value is decoded from the record when not given."""
    ok = job.status is JobStatus.COMPLETED
    if ok and value is None and job.result is not None:
        data = convert.decode(job.result)
        value = convert.structure(data, spec.result_type, what="result") if spec is not None else data
    if duration is None and job.completed_at and job.worker_started_at:
        duration = (job.completed_at - job.worker_started_at).total_seconds()
    return JobResult(
        ok=ok,
        value=value if ok else None,
        error=None if ok else job.error,
        job_id=job.id,
        status=job.status,
        attempt_count=job.attempt_count,
        duration=duration,
        created_at=job.created_at,
        started_at=job.worker_started_at,
        completed_at=job.completed_at,
        traceback=job.traceback,
    )


def event_of(job: JobRecord, transition: Transition, duration: float | None) -> Event:
    """The event that tells listeners what *transition* did to *job*."""
    match transition:
        case Complete(at=at):
            return Event("completed", job.id, job.job_name, at, job.attempt_count, duration=duration)
        case Retry(error=error, at=at, run_at=run_at):
            return Event("retried", job.id, job.job_name, at, job.attempt_count, error, duration, run_at)
        case Fail(error=error, at=at):
            return Event("failed", job.id, job.job_name, at, job.attempt_count, error, duration)
        case Cancel(reason=reason, at=at):
            return Event("cancelled", job.id, job.job_name, at, job.attempt_count, reason, duration)
    raise TypeError(f"not a transition: {transition!r}")  # pragma: no cover


def applied(job: JobRecord, transition: Transition) -> JobRecord:
    """The record as the store holds it after *transition* (for results without a re-read)."""
    match transition:
        case Complete(result=result, at=at):
            return attrs.evolve(job, status=JobStatus.COMPLETED, result=result, progress=100, completed_at=at)
        case Fail(error=error, traceback=tb, at=at):
            return attrs.evolve(job, status=JobStatus.FAILED, error=error, traceback=tb, completed_at=at)
        case Cancel(reason=reason, at=at):
            return attrs.evolve(job, status=JobStatus.CANCELLED, error=reason, completed_at=at)
        case Retry(error=error, traceback=tb, run_at=run_at):
            return attrs.evolve(job, status=JobStatus.PENDING, error=error, traceback=tb, scheduled_for=run_at)
    raise TypeError(f"not a transition: {transition!r}")  # pragma: no cover


# -- composed: the ways a caller runs jobs -------------------------------------------
class _Lease:
    """Keeps one job's lock alive and its progress written while a caller runs it."""

    def __init__(self, store: Store, job: JobRecord, lock: timedelta, clock: Clock) -> None:
        self.store, self.lease, self.lock, self.clock = store, Lease(job.id, job.worker_id or ""), lock, clock
        self.cancel = threading.Event()
        self.cancel_requested = False
        self._stop = threading.Event()
        self._last = 0.0
        self._pending: tuple[int, str | None] | None = None
        self._guard = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name=f"jobkit-lease-{job.id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._flush(force=True)

    def _beat(self) -> None:
        beat_every = self.lock.total_seconds() / 3
        next_beat = time.monotonic() + beat_every
        next_look = time.monotonic() + CANCEL_CHECK
        while not self._stop.wait(min(PROGRESS_INTERVAL, beat_every)):
            try:
                self._flush()
                if time.monotonic() >= next_look:  # cancellation asked from elsewhere
                    next_look = time.monotonic() + CANCEL_CHECK
                    job = self.store.get(self.lease.job_id)
                    if job is not None and job.cancel_requested:
                        self.cancel_requested = True
                        self.cancel.set()
                if time.monotonic() >= next_beat:
                    now = self.clock()
                    held = self.store.heartbeat([self.lease], now=now, lock_until=now + self.lock)
                    next_beat = time.monotonic() + beat_every
                    if held.get(self.lease.job_id):
                        self.cancel_requested = True
                        self.cancel.set()
            except StoreError as exc:  # a busy database postpones a beat; it must not end them
                logger.warning("job %s: heartbeat postponed: %s", self.lease.job_id, exc)

    def _flush(self, force: bool = False) -> None:
        with self._guard:
            if self._pending is None or (not force and time.monotonic() - self._last < PROGRESS_INTERVAL):
                return
            (percent, message), self._pending = self._pending, None
            self._last = time.monotonic()
        self.store.progress(self.lease, percent, message, now=self.clock())

    def progress(self, percent: int, message: str | None) -> None:
        with self._guard:
            self._pending = (percent, message)
        if percent >= 100:
            self._flush(force=True)
        else:
            self._flush()


def run_claimed(
    spec: JobSpec[Any, Any],
    job: JobRecord,
    typed: Any,
    store: Store,
    *,
    retry: bool,
    clock: Clock = utc_now,
    lock: timedelta = DEFAULT_LOCK_TIMEOUT,
) -> JobResult[Any]:
    """Run a job this caller holds, keep its lease alive, record the outcome, return the result."""
    with _Lease(store, job, lock, clock) as lease:
        ctx = Context(
            job_id=job.id,
            job_name=job.job_name,
            attempt=job.attempt_count,
            store=store,
            sink=lease.progress,
            cancel=lease.cancel,
            timeout=spec.timeout,
            clock=clock,
        )
        if spec.hooks:
            spec.hooks.emit(Event("started", job.id, job.job_name, clock(), job.attempt_count))
        started = time.perf_counter()
        outcome, fatal = attempt(spec, typed, ctx)
        duration = time.perf_counter() - started
    if lease.cancel_requested:  # asked to stop: the job ends cancelled, whatever the handler did
        outcome = Stopped()
    transition = decide(spec, job, outcome, clock(), jitter=random.random(), retry=retry)
    recorded = _finish(store, transition)
    if fatal is not None:
        raise fatal
    if not recorded:
        logger.warning("job %s: lease lost before its outcome was recorded; outcome dropped", job.id)
        if spec.hooks:
            spec.hooks.emit(Event("lease_lost", job.id, job.job_name, clock(), job.attempt_count))
        current = store.get(job.id)  # tell the caller what the store holds, not what was dropped
        if current is None:
            raise JobNotFound(job.id)
        return result_of(spec, current)
    if spec.hooks:
        spec.hooks.emit(event_of(job, transition, duration))
    value = outcome.value if isinstance(outcome, Succeeded) else None
    return result_of(spec, applied(job, transition), value=value, duration=duration)


def _finish(store: Store, transition: Transition, tries: int = 3) -> bool:
    """Record an outcome; a database locked past its busy timeout is tried again, not a failure."""
    for attempt_ in range(tries):
        try:
            return store.finish([transition])[0]
        except StoreError as exc:
            if attempt_ == tries - 1:
                raise
            logger.warning("job %s: recording its outcome postponed: %s", transition.job_id, exc)
    raise AssertionError("unreachable")  # pragma: no cover


def run_now(
    spec: JobSpec[Any, Any],
    params: Any,
    store: Store | None,
    *,
    clock: Clock = utc_now,
    what: str = "params",
) -> JobResult[Any]:
    """Run once in this process: persisted as a running job when *store* is given."""
    typed, encoded = validate(spec, params, what=what)
    return _run_validated(spec, typed, encoded, store, clock=clock)


def _run_validated(
    spec: JobSpec[Any, Any], typed: Any, encoded: str, store: Store | None, *, clock: Clock
) -> JobResult[Any]:
    job_id = new_id()
    if store is None:
        # Not persisted: the same stages, over a record that lives only here.
        now = clock()
        job = attrs.evolve(
            new_record(spec, encoded, job_id=job_id, now=now),
            status=JobStatus.RUNNING,
            attempt_count=1,
            worker_started_at=now,
        )
        ctx = Context(job_id=job_id, job_name=spec.name, timeout=spec.timeout, clock=clock)
        began = time.perf_counter()
        outcome, fatal = attempt(spec, typed, ctx)
        duration = time.perf_counter() - began
        if fatal is not None:
            raise fatal
        transition = decide(spec, job, outcome, clock(), retry=False)
        value = outcome.value if isinstance(outcome, Succeeded) else None
        return result_of(spec, applied(job, transition), value=value, duration=duration)
    now = clock()
    lock = DEFAULT_LOCK_TIMEOUT
    job = new_record(spec, encoded, job_id=job_id, now=now)
    store.add([job])
    claimed = store.claim_job(job_id, now=now, token=new_id(), lock_until=now + lock)
    if claimed is None:  # pragma: no cover - a worker took it between add and claim
        raise JobStateError(f"job {job_id} was claimed by another worker before it could run", job_id=job_id)
    return run_claimed(spec, claimed, typed, store, retry=False, clock=clock, lock=lock)


def run_batch(
    spec: JobSpec[Any, Any],
    params_list: Sequence[Any],
    store: Store | None,
    *,
    concurrency: int = 5,
    stop_on_error: bool = False,
    clock: Clock = utc_now,
) -> list[JobResult[Any]]:
    """Run every params now, at most *concurrency* at a time; results in input order.

    All params are validated first: one invalid params raises before anything runs. With
    *stop_on_error*, nothing starts after the first failure, so fewer results may return.
    """
    if type(concurrency) is not int or concurrency < 1:
        raise ValidationError(f"concurrency must be an int of at least 1, not {concurrency!r}", value=concurrency)
    validated = [validate(spec, p, what=f"params[{i}]") for i, p in enumerate(params_list)]
    results: list[JobResult[Any] | None] = [None] * len(validated)
    failed = threading.Event()

    def run(index: int) -> None:
        if stop_on_error and failed.is_set():
            return
        typed, encoded = validated[index]
        result = _run_validated(spec, typed, encoded, store, clock=clock)
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
    clock: Clock = utc_now,
    lock: timedelta = DEFAULT_LOCK_TIMEOUT,
) -> JobResult[Any]:
    """Run one given queued job in this process, as a worker would, and record its outcome.

    Raises :class:`JobNotFound` for an unknown id, :class:`JobStateError` when the job is not pending, and
    :class:`UnknownJobError` when its name leads to no spec in *registry*; in both cases
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
    now = clock()
    claimed = store.claim_job(job_id, now=now, token=new_id(), lock_until=now + lock)
    if claimed is None:
        raise JobStateError(f"job {job_id} was claimed by someone else first", job_id=job_id)
    try:
        typed = stored_params(spec, claimed)
    except Exception as exc:
        transition = decide(spec, claimed, unreadable(exc), clock())
        store.finish([transition])
        return result_of(spec, applied(claimed, transition))
    return run_claimed(spec, claimed, typed, store, retry=True, clock=clock, lock=lock)
