"""Jobs as values: records, outcomes of one attempt, and the transitions stores apply.

Everything here is pure: no clock, no store, no I/O.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, Literal, TypeVar

import attrs

from jobkit.errors import JobFailed, ValidationError

if sys.version_info >= (3, 14):  # pragma: no cover - depends on the interpreter
    from uuid import uuid7
else:
    from uuid_utils import uuid7

T = TypeVar("T")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The system clock, timezone-aware in UTC: the default :data:`Clock`."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A UUIDv7 string: unique, and sorting by creation time."""
    return str(uuid7())


def _utc(value: datetime | None) -> datetime | None:
    """An aware time in UTC, so that times compare by instant even within one zone.

    (Python compares two times of the same zone by their wall clocks, ignoring ``fold``:
    01:30 before and after a fall-back change would be equal.) Naive times pass through,
    for the stores to refuse with a clear error.
    """
    if value is None or value.tzinfo is None or value.tzinfo is timezone.utc:
        return value
    return value.astimezone(timezone.utc)


def _utc_required(value: datetime) -> datetime:
    # _utc's body again rather than a call to it: three of these run for every record.
    if value is None or value.tzinfo is None or value.tzinfo is timezone.utc:
        return value
    return value.astimezone(timezone.utc)


def _ids(ids: Iterable[str]) -> tuple[str, ...]:
    return ids if type(ids) is tuple else tuple(ids)


def require_aware(*times: datetime | None) -> None:
    """Refuse naive times with a ValueError, as every store does before it writes anything.

    A naive time cannot be compared with the stored ones, which are instants.
    """
    for value in times:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: jobkit needs timezone-aware times")


class JobStatus(str, enum.Enum):
    """Where a job is in its life: pending -> running -> completed | failed | cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

DEFAULT_QUEUE = "default"
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
"""What a queue may be called: letters, digits and ``_ . : -``, up to 64, so that
``--queues emails=2,default`` and a URL carry it as it is."""


def check_queue(name: object, *, what: str = "queue") -> str:
    """*name* if it can name a queue; a ValidationError naming *what* otherwise."""
    if not isinstance(name, str) or QUEUE_NAME.fullmatch(name) is None:
        raise ValidationError(
            f"{what} must be a queue name (1 to 64 letters, digits or _ . : -, starting with a letter or digit), "
            f"not {name!r}",
            value=name,
        )
    return name


@attrs.frozen
class JobRecord:
    """One row of the jobs table.

    ``params`` and ``result`` are the stored JSON text: ``spec.result_of(record)`` gives
    the typed result (:func:`json.loads` the data). ``worker_id`` is the fencing token
    of the current attempt: fresh for every claim, and required by every write for that
    attempt. ``depends_on`` are the jobs it runs after (``later(..., after=...)``) and
    ``waiting_for`` how many of them have not completed yet: a pending job waiting for
    any is not claimed.
    """

    id: str
    job_name: str
    params: str
    status: JobStatus
    scheduled_for: datetime = attrs.field(converter=_utc_required)
    created_at: datetime = attrs.field(converter=_utc_required)
    updated_at: datetime = attrs.field(converter=_utc_required)
    max_attempts: int = 3
    attempt_count: int = 0
    priority: int = 0
    correlation_id: str | None = None
    result: str | None = None
    progress: int = 0
    progress_message: str | None = None
    error: str | None = None
    traceback: str | None = None
    worker_id: str | None = None
    worker_started_at: datetime | None = attrs.field(default=None, converter=_utc)
    worker_expires_at: datetime | None = attrs.field(default=None, converter=_utc)
    completed_at: datetime | None = attrs.field(default=None, converter=_utc)
    cancel_requested: bool = False
    queue: str = DEFAULT_QUEUE
    unique_key: str | None = None
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    waiting_for: int = 0


LIVE = frozenset({JobStatus.PENDING, JobStatus.RUNNING})
"""The statuses in which a job holds its unique key: no other job of its name may be made with it."""
UNIQUE_KEY_LENGTH = 200


def check_unique_key(key: object) -> str | None:
    """*key* if it can be a unique key (None, or 1 to 200 characters); a ValidationError naming unique_key otherwise."""
    if key is None or (isinstance(key, str) and 0 < len(key) <= UNIQUE_KEY_LENGTH):
        return key
    raise ValidationError(
        f"unique_key must be a string of 1 to {UNIQUE_KEY_LENGTH} characters (or None), not {key!r}", value=key
    )


@attrs.frozen
class QueueInfo:
    """A queue as :func:`jobkit.queues` shows it: paused or not, and its jobs by status.

    A queue is listed while it holds jobs (of any status), and once paused or resumed, for good.
    """

    name: str
    paused: bool
    counts: dict[JobStatus, int]

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]]) -> list[QueueInfo]:
        """The queues from a store's read: ``(name, paused, status, count)`` rows in name order, a queue
        without jobs as one row whose status is None."""
        found: dict[str, QueueInfo] = {}
        for name, paused, status, n in rows:
            info = found.setdefault(name, cls(name, bool(paused), dict.fromkeys(JobStatus, 0)))
            if status is not None:
                info.counts[JobStatus(status)] = n
        return list(found.values())


@attrs.frozen
class Schedule:
    """One row of the cron_jobs table: a recurring job.

    ``name`` is the schedule's key. ``params`` is JSON text. ``declared`` marks a schedule
    that comes from code (``Registry.cron``) and is kept in step with it by workers.
    """

    id: str
    name: str
    job_name: str
    cron_expression: str
    params: str
    timezone: str
    enabled: bool
    next_run_at: datetime | None = attrs.field(converter=_utc)
    created_at: datetime = attrs.field(converter=_utc_required)
    updated_at: datetime = attrs.field(converter=_utc_required)
    last_run_at: datetime | None = attrs.field(default=None, converter=_utc)
    last_job_id: str | None = None
    declared: bool = False


@attrs.frozen
class Succeeded:
    """The handler returned a value that fits its result type; ``encoded`` is its JSON."""

    value: Any
    encoded: str


@attrs.frozen
class Failed:
    """The attempt failed. ``retryable=False`` ends the job at once (bad params, unknown name)."""

    error: str
    traceback: str | None = None
    retryable: bool = True
    timed_out: bool = False


@attrs.frozen
class Snoozed:
    """The handler asked to run again after *delay* (:class:`jobkit.Snooze`), spending no attempt."""

    delay: timedelta


@attrs.frozen
class Stopped:
    """The handler stopped on a cancellation request."""

    reason: str = "cancelled"


Outcome = Succeeded | Failed | Snoozed | Stopped


@attrs.frozen
class Complete:
    job_id: str
    token: str
    result: str
    at: datetime


@attrs.frozen
class Retry:
    job_id: str
    token: str
    error: str
    traceback: str | None
    at: datetime
    run_at: datetime
    timed_out: bool = False


@attrs.frozen
class Fail:
    job_id: str
    token: str
    error: str
    traceback: str | None
    at: datetime
    timed_out: bool = False


@attrs.frozen
class Postpone:
    """A snoozed attempt: pending again at ``run_at``, the attempt refunded."""

    job_id: str
    token: str
    at: datetime
    run_at: datetime


@attrs.frozen
class Cancel:
    job_id: str
    token: str
    reason: str
    at: datetime


Transition = Complete | Retry | Fail | Cancel | Postpone
"""What becomes of a running job after one attempt; applied by a store, fenced by ``token``."""


AttemptOutcome = Literal[
    "completed", "failed", "retried", "snoozed", "lost", "released", "cancelled", "timeout", "running"
]
ATTEMPTS_KEPT = 100
"""How many ended attempts a job's history keeps: the newest; numbers keep counting past it."""


@attrs.frozen
class Attempt:
    """One attempt at a job, as :func:`jobkit.attempts` lists it, oldest first.

    ``number`` counts every claim of the job (1 for the first), snoozed and released
    ones included, and keeps counting when the oldest are dropped (past
    :data:`ATTEMPTS_KEPT`). The attempt under way, if any, comes last as ``"running"``
    with no ``ended_at``.
    """

    number: int
    worker_id: str | None
    started_at: datetime | None = attrs.field(converter=_utc)
    ended_at: datetime | None = attrs.field(converter=_utc)
    outcome: AttemptOutcome
    error: str | None = None
    traceback: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class Lease:
    """A held claim: the job and the token that proves it."""

    job_id: str
    token: str


@attrs.frozen
class LeaseMark:
    """A running job's lease as a reaper read it: who holds it, and the expiry its holder last wrote.

    A renewal (a heartbeat) writes a new ``expires_at``; a new claim a new ``token``. A
    reaper compares marks read at different moments, never ``expires_at`` with its own
    clock: that is the evidence a stepped or skewed clock cannot forge.
    ``expires_at`` is None when the stored time cannot be read (a row another tool
    wrote); ``updated_at`` (the holder's time of its last write, None likewise) tells
    how long the lease it wrote was meant to last.
    """

    job_id: str
    token: str
    expires_at: datetime | None
    updated_at: datetime | None


@attrs.frozen
class ResetReport:
    """What :meth:`Store.reset_expired` did: ids sent back to pending, failed, or cancelled.

    A job whose cancellation was asked for ends cancelled instead of running again.
    """

    retried: list[str] = attrs.field(factory=list)
    failed: list[str] = attrs.field(factory=list)
    cancelled: list[str] = attrs.field(factory=list)


@attrs.frozen
class Summary:
    """What a queue is doing, for people: see ``python -m jobkit status``.

    ``oldest_pending`` is the earliest time a pending job became (or becomes) due: how
    long the queue has kept someone waiting, not when a delayed job was enqueued. A job
    waiting for the jobs it runs after is not counted: the queue is not keeping it.
    """

    counts: dict[JobStatus, int]
    by_name: dict[str, dict[JobStatus, int]]
    oldest_pending: datetime | None
    running: list[JobRecord]
    failed_since: int


@attrs.frozen
class Backlog:
    """Pending jobs split at one moment: those due (a claim may take them now) and those scheduled for later.

    Jobs waiting for the jobs they run after are in neither.

    ``oldest_due`` is the due job that has waited longest (the earliest ``scheduled_for``,
    then the smallest id); ``next_scheduled`` the job that comes due first, likewise.
    """

    due: int
    scheduled: int
    oldest_due: JobRecord | None
    next_scheduled: JobRecord | None

    @classmethod
    def of(cls, pending: int, due: int, oldest: Sequence[JobRecord], following: Sequence[JobRecord]) -> Backlog:
        """A store's backlog from what it read: *pending* and *due* counts, and the first job of each kind (or none)."""
        return cls(
            due=due,
            scheduled=pending - due,
            oldest_due=next(iter(oldest), None),
            next_scheduled=next(iter(following), None),
        )


@attrs.frozen
class JobResult(Generic[T]):
    """The outcome of a job as a caller sees it.

    ``value`` is the result when ``ok``; ``error`` the failure text otherwise.
    ``duration`` is the handler's run time in seconds. The value is typed when the result
    comes from a spec (``now``, ``batch``, ``execute``, ``wait(..., spec=)``) and plain
    JSON data from :func:`jobkit.wait` without one; ``spec.result_of(result)`` types any.
    """

    ok: bool
    value: T | None
    error: str | None
    job_id: str
    status: JobStatus
    attempt_count: int
    duration: float | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    traceback: str | None = attrs.field(default=None, repr=False)

    def unwrap(self) -> T:
        """Return the value, or raise :class:`JobFailed` carrying this result."""
        if not self.ok:
            raise JobFailed(self)
        return self.value  # type: ignore[return-value]


CANCELLED_WHILE_LOST = "cancelled (its worker was lost before it could stop)"


def parent_ended(parent_id: str, status: JobStatus) -> str:
    """The error of a job cancelled because a job it runs after ended *status* (failed or cancelled)."""
    return f"cancelled: job {parent_id}, which it runs after, ended {status.value}"


CANCELLED = "cancelled"


def worker_lost(attempt_count: int, max_attempts: int) -> str:
    """The error a job gets when its worker vanished (its lock expired)."""
    return f"worker lost: the lock of attempt {attempt_count} of {max_attempts} expired"


def seconds(value: float | timedelta) -> timedelta:
    """A duration given as seconds or as a timedelta."""
    return value if isinstance(value, timedelta) else timedelta(seconds=value)
