"""Job specs and the registry that names them. Pure: nothing here runs a job."""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

import attrs

from jobkit import codec, cron, run, stages
from jobkit.backoff import Backoff
from jobkit.codec import DEFAULT_MAX_PAYLOAD_BYTES
from jobkit.errors import DuplicateJobError, JobNotFound, ScheduleError, ValidationError
from jobkit.events import EventKind, Hooks, Listener
from jobkit.model import DEFAULT_QUEUE, JobRecord, JobResult, check_queue, utc_now
from jobkit.stages import validate
from jobkit.threads import in_thread

if TYPE_CHECKING:
    from jobkit.context import Context
    from jobkit.store import Store

P = TypeVar("P")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")
A = ParamSpec("A")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    # A float or bool here would slip through SQLite's INTEGER column and the retry test.
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be an int of at least 1, got {value!r}")


def _optional_positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (_is_number(value) and 0 < value < math.inf):
        raise ValueError(f"{attribute.name} must be positive seconds, got {value!r}")


def _backoff(_: object, attribute: attrs.Attribute[Any], value: Backoff) -> None:
    if not callable(value) and not (_is_number(value) and 0 <= value < math.inf):
        raise ValueError(
            f"{attribute.name} must be seconds (0 or more) or a callable attempt -> seconds, got {value!r}"
        )


def _flag(name: str, value: object) -> None:
    if type(value) is not bool:
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _storable_name(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    # Every row of this job carries the name as it is, so one no store can hold is refused here.
    if isinstance(value, str):
        codec.check_text(value, what="job name")


@attrs.frozen
class JobSpec(Generic[P, R]):
    """A registered job: its handler, its types and its retry policy.

    Call :meth:`now`, :meth:`later`, :meth:`later_many` or :meth:`batch` to run it.
    """

    name: str = attrs.field(validator=_storable_name)
    fn: Callable[..., Any] = attrs.field(repr=False)
    params_type: Any
    result_type: Any
    max_attempts: int = attrs.field(default=3, validator=_positive)
    timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    retry_backoff: Backoff = attrs.field(default=2.0, validator=_backoff)
    max_payload_bytes: int = attrs.field(default=DEFAULT_MAX_PAYLOAD_BYTES, validator=_positive)
    queue: str = attrs.field(default=DEFAULT_QUEUE, validator=lambda _, a, v: check_queue(v, what=a.name))
    unique: bool = attrs.field(default=False, validator=lambda _, a, v: _flag(a.name, v))
    hooks: Hooks = attrs.field(factory=Hooks, eq=False, repr=False)
    is_async: bool = attrs.field(init=False)

    @is_async.default
    def _is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def now(self, params: P | Any, store: Store | None = None) -> JobResult[R]:
        """Run once in this process and return the result; persisted when *store* is given."""
        return run.run_now(self, params, store)

    def later(
        self,
        params: P | Any,
        store: Store,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        correlation_id: str | None = None,
        max_attempts: int | None = None,
        priority: int = 0,
        queue: str | None = None,
        unique_key: str | None = None,
        after: Sequence[str] | None = None,
        connection: object | None = None,
    ) -> str:
        """Enqueue for a worker; return the new job's id.

        *queue* overrides the spec's queue (``jobs.job(queue=...)``, "default" unless given).
        With *unique_key* (or for a ``jobs.job(unique=True)`` spec, the params' canonical
        JSON), while a job of this name holding that key is pending or running, nothing is
        written and that job's id is returned. With *after* (job ids), the job runs only
        once each of them has completed; when one fails or is cancelled, it is cancelled.
        *connection* is the caller's own open database connection (a psycopg 3 one, for
        a :class:`PostgresStore`): the job is added inside the caller's transaction and
        exists, and wakes workers, only if and when the caller commits; a rollback
        leaves nothing. The ``enqueued`` event is told at this call, not at the commit.
        A store that cannot do this raises TypeError before writing anything.
        """
        return run.enqueue(
            self,
            [params],
            store,
            delay=delay,
            at=at,
            correlation_id=correlation_id,
            max_attempts=max_attempts,
            priority=priority,
            queue=queue,
            unique_keys=None if unique_key is None else [unique_key],
            after=after,
            connection=connection,
        )[0]

    def later_many(
        self,
        params_list: Sequence[P | Any],
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
        connection: object | None = None,
    ) -> list[str]:
        """Enqueue many jobs in one transaction, all or nothing; return their ids in order.

        *unique_keys* holds one key (or None) for each params, each deduplicated as by
        :meth:`later`. With *connection*, that transaction is the caller's.
        """
        return run.enqueue(
            self,
            params_list,
            store,
            delay=delay,
            at=at,
            correlation_id=correlation_id,
            max_attempts=max_attempts,
            priority=priority,
            queue=queue,
            unique_keys=unique_keys,
            after=after,
            indexed=True,
            connection=connection,
        )

    # The async forms: see in_thread. now_async runs the handler in that thread too (an
    # async one on a loop of its own there, as now() does when called from a coroutine).
    # Not on the caller's loop: the sync runner's thread would then wait for the handler;
    # taken from the loop's default pool, as many calls as it has threads would leave the
    # handlers that need that pool (to_thread, getaddrinfo) waiting forever, and a fresh
    # thread per call would leave SqliteStore a connection per call (one a thread, to close()).
    later_async = in_thread(later)
    later_many_async = in_thread(later_many)
    now_async = in_thread(now)

    def batch(
        self,
        params_list: Sequence[P | Any],
        store: Store | None = None,
        *,
        concurrency: int = 5,
        stop_on_error: bool = False,
    ) -> list[JobResult[R]]:
        """Run many now, at most *concurrency* at a time; results in input order."""
        return run.run_batch(self, params_list, store, concurrency=concurrency, stop_on_error=stop_on_error)

    def wait(self, job_id: str, store: Store, timeout: float | None = None) -> R:
        """Wait for a job of this spec to finish and return its typed value (raises JobFailed)."""
        from jobkit.control import wait

        result: JobResult[R] = wait(store, job_id, timeout, spec=self)
        return result.unwrap()

    async def wait_async(self, job_id: str, store: Store, timeout: float | None = None) -> R:
        """:meth:`wait` for asyncio code."""
        from jobkit.control import wait_async

        result: JobResult[R] = await wait_async(store, job_id, timeout, spec=self)
        return result.unwrap()

    def result_of(self, job: JobResult[Any] | JobRecord | str, store: Store | None = None) -> JobResult[R]:
        """The result of a job of this spec, its value typed, from whatever you hold of it.

        *job* is a :class:`JobResult` (from ``now``, ``batch``, :func:`jobkit.execute` or
        :func:`jobkit.wait`, whose value is plain JSON data), a :class:`JobRecord` (whose
        ``result`` is JSON text), or a job id, read from *store*. It waits for nothing
        (:meth:`wait` does): an unfinished job gives ``ok=False`` and its status.
        Raises :class:`JobNotFound` for an unknown id, and :class:`ValidationError` for
        a record of another job or a result that does not fit this spec's result type.
        """
        if isinstance(job, str):
            if store is None:
                raise TypeError(f"result_of({job!r}) needs the store to read the job from: result_of(job_id, store)")
            record = store.get(job)
            if record is None:
                raise JobNotFound(job)
            job = record
        if isinstance(job, JobRecord):
            if job.job_name != self.name:
                raise ValidationError(
                    f"job {job.id} is a {job.job_name!r} job, not {self.name!r}: read it with its own spec",
                    value=job,
                )
            typed: JobResult[R] = stages.result_of(self, job)
            return typed
        if isinstance(job, JobResult):
            if not job.ok:
                return typing.cast("JobResult[R]", job)
            # Through plain data and back: the same whether the value came typed (now,
            # execute) or as decoded JSON (jobkit.wait without a spec).
            value = codec.structure(codec.unstructure(job.value), self.result_type, what="result")
            return attrs.evolve(job, value=value)
        raise TypeError(f"result_of takes a JobResult, a JobRecord or a job id, not {type(job).__name__}")

    def __call__(self, params: P, ctx: Context) -> Any:
        """Call the handler directly, as a plain function."""
        return self.fn(params, ctx)


class JobDecorator(Protocol):
    """What ``@jobs.job(...)`` returns: it makes a handler a :class:`JobSpec`.

    An ``async def`` handler's spec has the awaited type as its result type.
    """

    @overload
    def __call__(self, handler: Callable[[P, Context], Coroutine[Any, Any, R]], /) -> JobSpec[P, R]: ...

    @overload
    def __call__(self, handler: Callable[[P, Context], R], /) -> JobSpec[P, R]: ...


def same_place(first: Callable[..., Any], second: Callable[..., Any]) -> bool:
    """Whether two handlers are one definition run twice: the same module and qualname (lambdas never are)."""
    places = [(getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)) for fn in (first, second)]
    module, qualname = places[0]
    return (
        places[0] == places[1] and isinstance(module, str) and isinstance(qualname, str) and "<lambda>" not in qualname
    )


def default_name(fn: Callable[..., Any]) -> str:
    """``"<module>:<qualname>"``, the name a worker can import the spec by."""
    return f"{fn.__module__}:{fn.__qualname__}"


def spec_from_function(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    max_attempts: int = 3,
    timeout: float | None = None,
    retry_backoff: Backoff = 2.0,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    hooks: Hooks | None = None,
    queue: str = DEFAULT_QUEUE,
    unique: bool = False,
) -> JobSpec[Any, Any]:
    """Build a spec, reading the params and result types from *fn*'s annotations."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise ValidationError(f"cannot read the type hints of {default_name(fn)}: {exc}", value=fn) from exc
    parameters = list(inspect.signature(fn).parameters.values())
    if len(parameters) != 2:
        raise ValidationError(
            f"job handler {default_name(fn)} must take exactly (params, ctx), not {len(parameters)} parameters",
            value=fn,
        )
    params_type = hints.get(parameters[0].name, Any)
    result_type = hints.get("return", Any)
    if result_type is type(None):
        result_type = type(None)
    return JobSpec(
        name=name or default_name(fn),
        fn=fn,
        params_type=params_type,
        result_type=result_type,
        max_attempts=max_attempts,
        timeout=timeout,
        retry_backoff=retry_backoff,
        max_payload_bytes=max_payload_bytes,
        hooks=hooks if hooks is not None else Hooks(),
        queue=queue,
        unique=unique,
    )


@attrs.frozen
class CronEntry:
    """A schedule declared in code: run ``spec`` with ``params`` on ``expression``."""

    name: str
    spec: JobSpec[Any, Any]
    expression: str
    params: Any
    timezone: str = "UTC"


class Registry:
    """The jobs one program knows, by name.

    ``@registry.job()`` turns a function into a :class:`JobSpec` and registers it.
    """

    def __init__(self, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        self._specs: dict[str, JobSpec[Any, Any]] = {}
        self._crons: dict[str, CronEntry] = {}
        self.hooks = Hooks()
        self.max_payload_bytes = max_payload_bytes

    @overload
    def job(self, handler: Callable[[P, Context], Coroutine[Any, Any, R]], /) -> JobSpec[P, R]: ...

    @overload
    def job(self, handler: Callable[[P, Context], R], /) -> JobSpec[P, R]: ...

    @overload
    def job(
        self,
        name: str | None = None,
        max_attempts: int = 3,
        timeout: float | None = None,
        retry_backoff: Backoff = 2.0,
        queue: str = DEFAULT_QUEUE,
        *,
        unique: bool = False,
    ) -> JobDecorator: ...

    def job(
        self,
        name: str | Callable[..., Any] | None = None,
        max_attempts: int = 3,
        timeout: float | None = None,
        retry_backoff: Backoff = 2.0,
        queue: str = DEFAULT_QUEUE,
        *,
        unique: bool = False,
    ) -> JobSpec[Any, Any] | JobDecorator:
        """Make a handler ``(params, ctx) -> result`` a registered job: ``@jobs.job`` or ``@jobs.job(...)``."""

        def decorate(handler: Callable[..., Any]) -> JobSpec[Any, Any]:
            spec = spec_from_function(
                handler,
                name=name if isinstance(name, str) else None,
                max_attempts=max_attempts,
                timeout=timeout,
                retry_backoff=retry_backoff,
                max_payload_bytes=self.max_payload_bytes,
                hooks=self.hooks,
                queue=queue,
                unique=unique,
            )
            self.register(spec)
            return spec

        if callable(name):  # ``@jobs.job`` without parentheses: the handler came in name's place
            return decorate(name)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"job(name=...) takes a str, not {type(name).__name__} {name!r}")
        return decorate

    def register(self, spec: JobSpec[Any, Any]) -> Registry:
        """Add *spec*; return the registry so calls chain.

        A spec whose handler comes from the same place (module and qualname) as the one
        registered under its name replaces it: that is the same job defined again, as
        when a notebook cell or ``importlib.reload`` runs the definition once more. A
        different handler under a taken name raises :class:`DuplicateJobError`.
        """
        held = self._specs.get(spec.name)
        if held is not None and held is not spec and not same_place(held.fn, spec.fn):
            raise DuplicateJobError(spec.name)
        self._specs[spec.name] = spec
        return self

    def on(self, *kinds: EventKind) -> Callable[[Listener], Listener]:
        """Decorate a function ``(event) -> None`` to hear events of this registry's jobs.

        Kinds: enqueued, deduplicated, started, completed, failed, retried, snoozed, cancelled, lease_lost
        (all of them when none is given). See :mod:`jobkit.events`.
        """

        def subscribe(listener: Listener) -> Listener:
            self.hooks.subscribe(listener, *kinds)
            return listener

        return subscribe

    def cron(
        self, expression: str, spec: JobSpec[Any, Any], params: Any, *, name: str, timezone: str = "UTC"
    ) -> CronEntry:
        """Declare that *spec* runs with *params* on the cron *expression*, as the schedule *name*.

        Workers started with this registry write its schedules to the store, and disable
        the ones that were declared before but are gone from the code. The expression,
        timezone and params are checked now. A taken *name* raises :class:`ScheduleError`,
        unless the job was defined again since (a notebook cell that defines the job and
        declares its schedule, run again): then this declaration replaces the old one.
        """
        if spec.name not in self._specs:
            self.register(spec)
        held = self._crons.get(name)
        # A new spec of the same job from the same place: its definition ran again (a
        # notebook cell), and this declaration with it. The same spec declared twice is
        # two declarations in one program, and one of them is a mistake.
        redefined = held is not None and held.spec is not spec and same_place(held.spec.fn, spec.fn)
        if held is not None and not (redefined and held.spec.name == spec.name):
            raise ScheduleError(f"a schedule named {name!r} is already declared in this registry", value=name)
        entry = check_entry(spec, expression, params, name=name, timezone=timezone)
        self._crons[name] = entry
        return entry

    def include(self, other: Registry) -> Registry:
        """Add every spec and declared schedule of *other*; return this registry."""
        for spec in other:
            self.register(spec)
        for entry in other.crons():
            if self._crons.get(entry.name, entry) != entry:
                raise ScheduleError(f"two registries declare a schedule named {entry.name!r}", value=entry.name)
            self._crons[entry.name] = entry
        return self

    def crons(self) -> list[CronEntry]:
        """The schedules declared with :meth:`cron`, by name."""
        return [self._crons[name] for name in sorted(self._crons)]

    def get(self, name: str) -> JobSpec[Any, Any] | None:
        """The spec called *name*, or None."""
        return self._specs.get(name)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[JobSpec[Any, Any]]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Registry({self.names()!r})"


def check_entry(spec: JobSpec[Any, Any], expression: str, params: Any, *, name: str, timezone: str) -> CronEntry:
    """Validate a declared schedule when it is declared, not when a worker first syncs it."""
    codec.check_text(cron.check_name(name), what="schedule name")
    cron.validate(expression, timezone, utc_now())
    try:
        validate(spec, params)
    except ValidationError as exc:
        raise ValidationError(f"schedule {name!r}: {exc}", errors=exc.errors, value=params) from exc
    return CronEntry(name=name, spec=spec, expression=expression, params=params, timezone=timezone)
