"""The stages of one job, as plain functions: validate -> persist -> run -> record.

``validate`` turns params into a typed value and its JSON; ``new_record`` builds the row
that a store's ``add`` persists; ``attempt`` runs the handler and turns whatever happens
into an :data:`Outcome`; ``decide`` turns an outcome into a :data:`Transition` for the
store to apply; ``result_of`` and ``event_of`` say what happened to callers and
listeners. The clock, the store and the randomness are passed in, so the stages are
tested by calling them; :mod:`jobkit.run` composes them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from jobkit import codec
from jobkit.backoff import Backoff
from jobkit.backoff import delay as retry_delay
from jobkit.context import Context
from jobkit.errors import Cancelled, Snooze, ValidationError
from jobkit.events import Event
from jobkit.model import (
    Cancel,
    Complete,
    Fail,
    Failed,
    JobRecord,
    JobResult,
    JobStatus,
    Outcome,
    Postpone,
    Retry,
    Snoozed,
    Stopped,
    Succeeded,
    Transition,
    check_queue,
    check_unique_key,
    seconds,
)

run_logger = logging.getLogger("jobkit.run")  # the runner's: what a worker says of each job

if TYPE_CHECKING:
    from jobkit.spec import JobSpec
    from jobkit.store import Store

T = TypeVar("T")

# -- validate -----------------------------------------------------------------------
_PLAIN = frozenset({int, str, bool})  # an exact instance is its own plain data


def validate(spec: JobSpec[Any, Any], params: Any, *, what: str = "params") -> tuple[Any, str]:
    """Structure *params* into the spec's params type; return the typed value and its JSON."""
    if type(params) is spec.params_type and spec.params_type in _PLAIN:
        return params, codec.encode(params, what=what, limit=spec.max_payload_bytes)
    typed = codec.structure(params, spec.params_type, what=what)
    data = typed if spec.params_type is Any else codec.unstructure(typed, spec.params_type, what=what)
    return typed, codec.encode(data, what=what, limit=spec.max_payload_bytes)


def check_result(spec: JobSpec[Any, Any], value: Any) -> Outcome:
    """Turn a handler's return value into Succeeded, or Failed when it does not fit."""
    if type(value) is spec.result_type and value.__class__ in _PLAIN:  # an exact int, str or bool
        try:
            return Succeeded(value, _encode_result(spec, value))
        except ValidationError as exc:
            return Failed(f"ValidationError: {exc}", None)
    try:
        if spec.result_type is type(None):
            if value is not None:
                raise ValidationError(f"result is {value!r}, but the handler is declared to return None")
            return Succeeded(None, "null")
        data = value if spec.result_type is Any else codec.unstructure(value, what="result")
        typed = codec.structure(data, spec.result_type, what="result")
        if spec.result_type is not Any:
            data = codec.unstructure(typed, spec.result_type, what="result")
        return Succeeded(typed, _encode_result(spec, data))
    except ValidationError as exc:
        return Failed(f"ValidationError: {exc}", None)


def _encode_result(spec: JobSpec[Any, Any], data: Any) -> str:
    # A result is the handler's own: text UTF-8 cannot hold (a file name from os.fsdecode)
    # is kept as a JSON escape that decodes back to it, never refused as params are.
    return codec.encode(data, what="result", limit=spec.max_payload_bytes, surrogates="escape")


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
    queue: str | None = None,
    unique_key: str | None = None,
    depends_on: tuple[str, ...] = (),
) -> JobRecord:
    """The pending row for one job: in *queue*, else the spec's; holding *unique_key*, after *depends_on*."""
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
        queue=queue or spec.queue,
        unique_key=unique_key,
        depends_on=depends_on,
    )


def check_enqueue_options(
    spec: JobSpec[Any, Any],
    store: Store,
    *,
    delay: Any,
    at: Any,
    max_attempts: Any,
    priority: Any,
    correlation_id: Any,
    queue: Any = None,
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
    if at is not None:
        _check_storable_time(at)
    if max_attempts is not None and (type(max_attempts) is not int or max_attempts < 1):
        raise ValidationError(f"max_attempts must be an int of at least 1, not {max_attempts!r}", value=max_attempts)
    if max_attempts is not None and max_attempts > INT64_MAX:
        raise ValidationError(
            f"max_attempts must be at most {INT64_MAX} (2**63-1), not {max_attempts}", value=max_attempts
        )
    if type(priority) is not int:
        raise ValidationError(f"priority must be an int, not {priority!r}", value=priority)
    if not INT64_MIN <= priority <= INT64_MAX:
        raise ValidationError(
            f"priority must be from {INT64_MIN} to {INT64_MAX} (a signed 64-bit int), not {priority}", value=priority
        )
    if correlation_id is not None:
        if not isinstance(correlation_id, str):
            raise ValidationError(f"correlation_id must be a str, not {correlation_id!r}", value=correlation_id)
        codec.check_text(correlation_id, what="correlation_id")
    if queue is not None:
        check_queue(queue)


def dependencies_of(after: Any) -> tuple[str, ...]:
    """The ids a job runs after (``later(..., after=[...])``), once each, in order; a ValidationError naming after."""
    if after is None:
        return ()
    if isinstance(after, (str, bytes)) or not isinstance(after, Sequence):
        raise ValidationError(f"after must be a list of job ids, not {after!r}", value=after)
    for job_id in after:
        if not isinstance(job_id, str) or not job_id:
            raise ValidationError(f"after must hold job ids (non-empty str), not {job_id!r}", value=after)
    return tuple(dict.fromkeys(after))


def unique_keys_of(given: Sequence[str | None] | None, count: int, many: bool) -> list[str | None]:
    """One unique key a params (None: none), checked; a ValidationError naming what is wrong, before any write."""
    if given is None:
        return [None] * count
    what = "unique_keys" if many else "unique_key"
    if isinstance(given, (str, bytes)) or len(given) != count:
        raise ValidationError(f"{what} must hold one key (or None) for each of the {count} params, not {given!r}")
    for i, key in enumerate(given):
        try:
            check_unique_key(key)
        except ValidationError as exc:
            raise ValidationError(f"{what}[{i}]: {exc}" if many else str(exc), value=key) from None
    return list(given)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what a database integer column holds


def _check_storable_time(at: datetime) -> None:
    """Refuse an aware time that has no UTC form (near year 1 or 9999, east or west of UTC)."""
    try:
        at.astimezone(timezone.utc)
    except (OverflowError, ValueError) as exc:
        raise ValidationError(
            f"at={at!r} is outside the years 1 to 9999 once converted to UTC; choose a nearer time", value=at
        ) from exc


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


def stored_params(spec: JobSpec[Any, Any], job: JobRecord) -> Any:
    """The typed params of a stored job; ValidationError when they no longer decode."""
    data = codec.decode(job.params)
    if type(data) is spec.params_type and data.__class__ in _PLAIN:
        return data
    return codec.structure(data, spec.params_type, what="params")


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
    return Failed(f"TimeoutError: the job ran past its timeout of {spec.timeout:g}s", timed_out=True)


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
    if isinstance(exc, _timeouts()) and ctx.timed_out:
        return timed_out(spec), None
    if isinstance(exc, Snooze):
        return Snoozed(exc.delay), None
    if isinstance(exc, Exception):
        return failure(exc), None
    return failure(exc), exc


def _timeouts() -> tuple[type[BaseException], ...]:
    """What a timeout raises: TimeoutError, and on 3.10 asyncio's own, once asyncio is in use (imported)."""
    loaded = sys.modules.get("asyncio")
    return (TimeoutError,) if loaded is None else (TimeoutError, loaded.TimeoutError)


async def _bounded(spec: JobSpec[Any, Any], coro: Coroutine[Any, Any, T]) -> T:
    """Await *coro* within the spec's timeout, in the calling task.

    On 3.10 ``wait_for`` runs the coroutine in a task of its own, where a SystemExit or
    KeyboardInterrupt would escape into the event loop; it is carried out and re-raised.
    """
    import asyncio  # here: a worker of sync jobs never imports it (issue 15: start-up)

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
    import asyncio

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
    backoff: Backoff | None = None,
) -> Transition:
    """What becomes of *job* after one attempt; *jitter* in [0, 1) spreads retry times.

    A retry waits by *backoff*, or by the spec's ``retry_backoff`` when it is None; a
    job with no spec here is retried only when a *backoff* is given.
    """
    token = job.worker_id or ""
    if backoff is None and spec is not None:
        backoff = spec.retry_backoff
    match outcome:
        case Succeeded(encoded=encoded):
            return Complete(job.id, token, encoded, at=now)
        case Stopped(reason=reason):
            return Cancel(job.id, token, reason, at=now)
        case Snoozed(delay=delay):
            return Postpone(job.id, token, at=now, run_at=now + delay)
        case Failed(error=error, traceback=tb, retryable=True, timed_out=late) if (
            retry and backoff is not None and job.attempt_count < job.max_attempts
        ):
            run_at = now + retry_delay(backoff, job.attempt_count, jitter)
            return Retry(job.id, token, error, tb, at=now, run_at=run_at, timed_out=late)
        case Failed(error=error, traceback=tb, timed_out=late):
            return Fail(job.id, token, error, tb, at=now, timed_out=late)
    raise TypeError(f"not an outcome: {outcome!r}")  # pragma: no cover


def storable(outcome: Outcome) -> Outcome:
    """*outcome* with its error text, traceback and reason made storable (:func:`codec.storable_text`).

    The one place where the text of an outcome is made fit for every store: an
    exception whose message holds a file name from ``os.fsdecode`` must fail its job
    with a readable error, not break the write of its outcome.
    """
    match outcome:
        case Failed(error=error, traceback=tb):
            clean_tb = codec.storable_text(tb) if tb is not None else None
            if codec.storable_text(error) is not error or clean_tb is not tb:
                return attrs.evolve(outcome, error=codec.storable_text(error), traceback=clean_tb)
        case Stopped(reason=reason) if codec.storable_text(reason) is not reason:
            return attrs.evolve(outcome, reason=codec.storable_text(reason))
    return outcome


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
        data = codec.decode(job.result)
        value = codec.structure(data, spec.result_type, what="result") if spec is not None else data
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


def log_outcome(job: JobRecord, took: float | None, transition: Transition) -> None:
    """The worker's line for what became of *job*'s attempt (logger ``jobkit.run``)."""
    match transition:
        case Complete():
            if run_logger.isEnabledFor(logging.INFO):
                run_logger.info("job %s %s: completed in %.3fs", job.id, job.job_name, took or 0.0)
        case Retry(error=error, run_at=run_at):
            run_logger.warning(
                "job %s %s: attempt %d failed: %s; retry at %s",
                job.id,
                job.job_name,
                job.attempt_count,
                error,
                run_at.isoformat(timespec="seconds"),
            )
        case Fail(error=error):
            run_logger.error("job %s %s: failed after %d attempts: %s", job.id, job.job_name, job.attempt_count, error)
        case Cancel(reason=reason):
            run_logger.info("job %s %s: cancelled (%s)", job.id, job.job_name, reason)
        case Postpone(run_at=run_at):
            run_logger.info("job %s %s: snoozed until %s", job.id, job.job_name, run_at.isoformat(timespec="seconds"))


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
        case Postpone(at=at, run_at=run_at):
            return Event("snoozed", job.id, job.job_name, at, job.attempt_count, None, duration, run_at)
    raise TypeError(f"not a transition: {transition!r}")  # pragma: no cover
