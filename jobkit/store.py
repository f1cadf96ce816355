"""The one port between jobkit and a database: the :class:`Store` protocol.

Stores speak in domain verbs, never SQL. Their verbs never read a clock and never mint
ids: callers pass ``now``, ids and fencing tokens, so that two stores given the same
calls give the same answers (the Hypothesis agreement test holds them to it). The time
callers pass comes from :meth:`Store.now`, the one clock a store's users share
(:func:`clock_of` is that rule), unless they inject a clock of their own.

Every write for a running attempt is fenced by its token (the ``worker_id`` written by
the claim): a write whose token no longer holds the job changes nothing and reports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, runtime_checkable

from jobkit.errors import StoreError
from jobkit.model import (
    Attempt,
    Backlog,
    Clock,
    JobRecord,
    JobStatus,
    Lease,
    LeaseMark,
    QueueInfo,
    ResetReport,
    Schedule,
    Summary,
    Transition,
    utc_now,
)

Cursor = tuple[datetime, str]
"""Where a page ended: the ``(created_at, id)`` of its last job for :meth:`Store.list_jobs`, the
``(completed_at, id)`` for :meth:`Store.finished`."""


class Waker(Protocol):
    """Sleeps until a store may have changed: a commit by any process, or a ring from this one.

    Each store brings its own (inotify on the WAL for SQLite, a condition for
    MemoryStore); the worker, :func:`jobkit.wait` and ``watch`` sleep on it. One thread
    waits on a waker; any thread (or a signal handler) may ring it. A wake-up is a
    hint: callers look at what they wait for again, and a spurious True is allowed.
    """

    def ring(self) -> None:
        """Wake the waiting thread now (any thread, or a signal handler)."""

    def wait(self, timeout: float, *, commits: bool = True) -> bool:
        """Sleep up to *timeout* seconds; True when rung or, with *commits*, when anyone committed.

        A commit counts when it became visible since this waker's previous wait returned
        (or since the waker was made). False when the time ran out with neither.
        """

    def close(self) -> None:
        """Release what the waker holds (file descriptors, watches)."""


@runtime_checkable
class Store(Protocol):
    """Durable (or not) home of the jobs table."""

    shared: bool
    """Whether other processes can see these jobs (a worker elsewhere may run them)."""

    def now(self) -> datetime:
        """The time this store's rules follow, timezone-aware in UTC.

        The host's clock for MemoryStore and SqliteStore (everyone using them shares this
        host), the database server's for PostgresStore, so hosts whose clocks disagree
        still agree on when a job is due and when a lease ends. Callers that act on a
        store take their ``now`` from here unless given a clock (:func:`clock_of`).
        """

    def add(self, jobs: Sequence[JobRecord]) -> list[str]:
        """Insert *jobs* in one transaction, all or none; return the id each job is known by, in order.

        A pending job whose unique key a pending or running job of its name holds (one
        already stored, or one before it in *jobs*) is not written: its id is that job's.
        Two processes adding the same key at once leave one job
        (:func:`jobkit.lifecycle.deduplicated` is the rule).
        """

    def get(self, job_id: str) -> JobRecord | None:
        """The job with *job_id*, or None."""

    def claim(
        self,
        *,
        limit: int,
        now: datetime,
        token: str,
        lock_until: datetime,
        names: Collection[str] | None = None,
        queues: Mapping[str, int] | None = None,
    ) -> list[JobRecord]:
        """Take up to *limit* due pending jobs, highest priority then earliest first.

        Each becomes running, held by *token* until *lock_until*, with one more attempt
        counted. Returns them in claim order. *names* restricts the job names claimed;
        *queues* the queues, mapping each to the most jobs taken from it. No job of a
        paused queue is taken. Which jobs: :func:`jobkit.lifecycle.claimable`.
        """

    def claim_job(self, job_id: str, *, now: datetime, token: str, lock_until: datetime) -> JobRecord | None:
        """Claim one given pending job, due or not; None when it is not pending."""

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        """Extend the locks still held; map each held job id to whether cancellation was asked."""

    def progress(self, lease: Lease, percent: int, message: str | None, *, now: datetime) -> bool:
        """Record progress of a held job; False when the lease was lost."""

    def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        """Apply outcomes in one transaction; each False means that lease was lost."""

    def finish_and_claim(
        self,
        transitions: Sequence[Transition],
        *,
        limit: int,
        now: datetime,
        token: str,
        lock_until: datetime,
        names: Collection[str] | None = None,
        queues: Mapping[str, int] | None = None,
    ) -> tuple[list[bool], list[JobRecord]]:
        """Hand in outcomes and take new work in one transaction: ``finish`` then ``claim``."""

    def release(self, leases: Sequence[Lease], *, now: datetime) -> list[bool]:
        """Give held jobs back to pending without spending their attempt."""

    def reset_expired(self, *, now: datetime) -> ResetReport:
        """Send running jobs whose lock expired by *now* back to pending, or fail them when spent.

        This trusts *now* against each holder's clock, so it is for a one-pass ``tick``,
        which cannot watch leases over time; a worker uses :meth:`reset_unrenewed`.
        """

    def leases(self) -> list[LeaseMark]:
        """Every running job's lease as it stands, by job id: what a reaper watches."""

    def reset_unrenewed(self, marks: Sequence[LeaseMark], *, now: datetime) -> ResetReport:
        """Reset (as :meth:`reset_expired` does) each job still held exactly as its mark saw it.

        A job renewed since (a new expiry), claimed again (a new token) or no longer
        running is left alone: the caller saw its lease go unrenewed, and only that
        decides; *now* is only the time written.
        """

    # -- operating ----------------------------------------------------------------
    def cancel(self, job_id: str, *, now: datetime) -> JobRecord | None:
        """Cancel a job: a pending one ends ``cancelled``; a running one is asked to stop.

        A finished job is left as it is. Returns the record after, or None for an unknown id.
        """

    def cancelling(self) -> list[str]:
        """Ids of running jobs whose cancellation was asked for."""

    def retry(self, job_ids: Sequence[str], *, now: datetime) -> list[str]:
        """Send failed or cancelled jobs back to pending with fresh attempts; return those sent."""

    def purge(self, *, statuses: Collection[JobStatus], before: datetime, limit: int) -> int:
        """Delete up to *limit* finished jobs of *statuses* completed before *before*; return how many."""

    def delete(self, job_ids: Sequence[str]) -> list[str]:
        """Delete the finished jobs among *job_ids*, with their attempt history, in one transaction.

        Pending and running jobs and unknown ids are left alone. What goes with each job is
        what :meth:`purge` deletes with it (its attempts, and the ``job_deps`` rows that name
        it: a job gone counts as done for a retry of a job that ran after it). Returns the
        ids deleted, each once, in the order given; anything but a sequence of str is
        refused with a ValidationError naming ``job_ids``.
        """

    def summary(self, *, since: datetime) -> Summary:
        """Counts (overall and by job name), the oldest pending job, running jobs, failures since *since*."""

    def backlog(self, *, now: datetime) -> Backlog:
        """Pending jobs split at *now*: how many are due and how many are scheduled later, and the first of each.

        Due means a claim at *now* may take it (``scheduled_for`` at or before *now*).
        """

    # -- recurring jobs (the cron_jobs table) --------------------------------------
    def put_schedule(self, schedule: Schedule) -> Schedule:
        """Create the schedule called ``schedule.name``, or update it in place.

        An update keeps the stored ``id``, ``created_at``, ``last_run_at`` and
        ``last_job_id``, and the stored ``next_run_at`` too while the schedule is enabled
        before and after with the same ``cron_expression`` and ``timezone`` (a worker may
        have fired it since the caller read it: writing the old time back would fire that
        time again); everything else comes from *schedule*. Returns what is stored.
        """

    def get_schedule(self, name: str) -> Schedule | None:
        """The schedule called *name*, or None."""

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""

    def remove_schedule(self, name: str) -> bool:
        """Delete the schedule called *name*; False when there was none."""

    def due_schedules(self, now: datetime) -> list[Schedule]:
        """Enabled schedules whose ``next_run_at`` is at or before *now*, earliest first."""

    def fire_schedule(
        self, name: str, *, expected: datetime, fire_time: datetime, next_run_at: datetime, job: JobRecord
    ) -> bool:
        """Enqueue *job* for one fire of *name* and move it on, in one transaction.

        A compare-and-set: nothing happens (False) unless the schedule is enabled and its
        ``next_run_at`` is still *expected*, so any number of workers firing the same
        schedule at the same instant enqueue one job.
        """

    def holders(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """For each ``(job_name, unique_key)`` of *keys* that a pending or running job holds, that job's id."""

    def attempts(self, job_id: str) -> list[Attempt]:
        """Every attempt of the job the store knows, oldest first (:func:`jobkit.lifecycle.timeline`); [] if unknown.

        An attempt that ends leaves an entry (all but a completion, which the record tells),
        the newest :data:`~jobkit.model.ATTEMPTS_KEPT` kept; a purge deletes them with the job.
        """

    def queues(self) -> list[QueueInfo]:
        """Every queue that holds jobs or was ever paused or resumed, by name, with its jobs by status."""

    def pause(self, queue: str, paused: bool, *, now: datetime) -> None:
        """Pause (or resume) *queue*, which need not have jobs yet: claims skip a paused queue's jobs."""

    def counts(self) -> dict[JobStatus, int]:
        """How many jobs are in each status (every status present, zero included)."""

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        correlation_id: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        after: Cursor | None = None,
        text: str | None = None,
        created_from: datetime | None = None,
        created_until: datetime | None = None,
    ) -> list[JobRecord]:
        """Up to *limit* jobs matching every given filter, newest first (``created_at``, then ``id``).

        *after* continues a listing: only jobs that sort after that cursor (the
        ``(created_at, id)`` of the previous page's last job) are returned. *text* keeps
        jobs whose params (their JSON text) or error contain it, ASCII letters matched
        in either case; *created_from* and *created_until* keep jobs created at or after
        the one and before the other. An empty *text*, or a cursor or time that is not a
        timezone-aware datetime, is refused with a ValidationError naming it
        (:mod:`jobkit.stores.filters` holds the rules).
        """

    def cursor_after(self, count: int, *, after: Cursor | None = None) -> Cursor | None:
        """The ``(created_at, id)`` of the *count*-th job after *after* in :meth:`list_jobs` order, every job counted.

        None when fewer jobs follow. Read through the creation index only. A reader that
        must pass over no more than about *count* jobs for a page (a text search, which
        reads each one) bounds its listing by it: ``created_from`` the cursor's time
        covers those jobs (and any created in the same microsecond), ``created_until``
        that time goes on past them. A *count* that is not an int of at least 1, or a bad
        cursor, is refused with a ValidationError naming it.
        """

    def finished(self, *, after: Cursor | None, until: datetime, limit: int) -> list[JobRecord]:
        """Up to *limit* finished jobs (completed, failed, cancelled) that ended before *until*, in the order they did.

        Ordered by ``(completed_at, id)``; *after* (a ``(completed_at, id)`` pair, that of
        the previous page's last job) keeps only the jobs that sort after it, so that a
        reader pages on through jobs as they finish. Read through an index, never the
        whole table. A cursor or *until* that is not a timezone-aware datetime, or a
        *limit* that is not an int of at least 0, is refused with a ValidationError naming it.
        """

    def next_due(self, names: Collection[str] | None = None, queues: Collection[str] | None = None) -> datetime | None:
        """The earliest scheduled time among pending jobs a claim could take (of *names*, in *queues*).

        Jobs of paused queues do not count; None when no such job is pending.
        """

    def waker(self) -> Waker:
        """A new :class:`Waker` for this store; the caller closes it."""

    def health(self) -> tuple[bool, str]:
        """Whether the store can be used, and a line saying why or why not."""

    def close(self) -> None:
        """Release connections; the store is not used again."""

    def __enter__(self) -> Store: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@runtime_checkable
class TransactionalStore(Protocol):
    """A store that can enqueue on a connection its caller opened (PostgresStore)."""

    def add_on(self, connection: object, jobs: Sequence[JobRecord]) -> list[str]:
        """Insert *jobs* with the caller's own open connection, inside the caller's transaction, as :meth:`Store.add`.

        They exist, and wake workers, only if and when the caller commits; a rollback
        leaves nothing.
        """


def clock_of(store: Store | None, clock: Clock | None) -> Clock:
    """The clock a caller acting on *store* follows: *clock* when given, else the store's.

    Without a store (a run nothing persists) it is this host's clock. The one home of
    that rule: every ``clock=None`` default above the port resolves here, so a job's
    delay, a lease and a schedule are all stated in the time the store's users share.
    """
    if clock is not None:
        return clock
    return store.now if store is not None else utc_now


SCHEMES = ("memory:", "a file path", "sqlite:///path", "postgresql://...")


def open_store(target: str | os.PathLike[str] | Store, **options: object) -> Store:
    """The store a TARGET names: the one way every command and the library open one.

    - ``"memory:"``: a new :class:`MemoryStore`
    - a filesystem path, or ``"sqlite:///abs/path"``: a :class:`SqliteStore`
      (*options* go to it: ``durability``, ``create``, ``upgrade``, ``busy_timeout``)
    - ``"postgresql://..."`` (or ``postgres://``): a :class:`PostgresStore` (*options*
      go to it: ``schema``, ``listen``, ``create``, ``upgrade``)
    - a store: returned as it is

    Anything else with a ``scheme://`` raises :class:`StoreError` naming the schemes known.
    """
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if not isinstance(target, str):
        return target
    if target == "memory:":
        if options:
            raise StoreError(f"memory: takes no options, not {sorted(options)}", path=target)
        from jobkit.stores.memory import MemoryStore

        return MemoryStore()
    scheme, sep, rest = target.partition("://")
    if sep and scheme.isidentifier():
        scheme = scheme.lower()
        if scheme == "sqlite":
            if not rest.startswith("/") or rest == "/":
                raise StoreError(f"{target}: a sqlite URL names an absolute path, as in sqlite:///var/jobs.sqlite")
            target = rest
        elif scheme in ("postgresql", "postgres"):
            return _postgres()(target, **options)
        else:
            raise StoreError(f"{target}: unknown store scheme {scheme!r}; jobkit opens {', '.join(SCHEMES)}")
    from jobkit.stores.sqlite import SqliteStore

    return SqliteStore(target, **options)  # type: ignore[arg-type]


def _postgres() -> Callable[..., Store]:
    """PostgresStore, imported on first use: psycopg is an optional extra."""
    try:
        from jobkit.stores.postgres import PostgresStore
    except ImportError as exc:
        raise StoreError(f'PostgreSQL stores need psycopg 3 ({exc}): pip install "jobkit-queue[postgres]"') from exc
    return PostgresStore
