"""PostgresStore: the jobs table in PostgreSQL, through psycopg 3. The only place jobkit imports psycopg.

How it stays safe and fast (see RELIABILITY.md and docs/ARCHITECTURE.md):

- A claim is one statement: ``FOR UPDATE SKIP LOCKED`` picks due jobs no other session
  holds, so workers on any number of hosts never take the same job and never wait for
  each other. Outcomes are fenced by the claim's token, as on SQLite.
- A worker hands in its outcomes and takes new work in one round trip: the statements
  of one transaction sent together in a pipeline.
- Every transaction that makes work due or ends a job sends one NOTIFY, so waiting
  workers and ``wait()`` wake at once; a waker without LISTEN polls.
- Times follow the database's clock (:meth:`PostgresStore.now`), so that hosts whose
  clocks disagree agree on when a job is due and when a lease ends.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from jobkit import lifecycle
from jobkit.errors import JobkitError, UnknownDependency, ValidationError
from jobkit.model import (
    Attempt,
    Backlog,
    JobRecord,
    JobStatus,
    Lease,
    LeaseMark,
    QueueInfo,
    ResetReport,
    Schedule,
    Summary,
    Transition,
    check_queue,
    require_aware,
)
from jobkit.stores import filters
from jobkit.stores.grouped import GroupCommit
from jobkit.stores.postgres import adding, listing
from jobkit.stores.postgres import queries as q
from jobkit.stores.postgres.connection import DatabaseClock, Server, copy_rows
from jobkit.stores.postgres.errors import store_error
from jobkit.stores.postgres.migrations import migrate
from jobkit.stores.postgres.waker import PostgresWaker
from jobkit.stores.refusals import (
    check_times,
    check_transition_times,
    chosen_ids,
    chosen_names,
    chosen_queue_names,
    chosen_queues,
)
from jobkit.stores.writes import given_back

if TYPE_CHECKING:
    from jobkit.store import Cursor


class PostgresStore:
    """The jobs table in a PostgreSQL schema: shared by workers and producers on any number of hosts.

    *dsn* is a libpq URL or conninfo string. The tables live in *schema* (made when
    missing if *create*; upgraded from an older jobkit if *upgrade*). *listen* False is
    for poolers that cannot LISTEN (PgBouncer in transaction mode): wakers then poll
    and statements are not prepared. *pool_size* bounds the connections this store opens.
    """

    shared = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "jobkit",
        listen: bool = True,
        create: bool = True,
        upgrade: bool = True,
        pool_size: int = 4,
    ) -> None:
        if not schema or not isinstance(schema, str):
            raise ValueError(f"schema must be a schema name, not {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self.listen = listen
        self._db = Server(dsn, listen=listen, pool_size=pool_size)
        self.place = self._db.place
        self.channel = f"jobkit_{schema}"[:63]  # one LISTEN channel a schema (identifiers stop at 63 bytes)
        self._adds = GroupCommit(self._add_together, self._add_alone)  # concurrent add() calls share a commit
        with self._db.direct() as conn:  # an unreachable server gives its reason here, in one line
            self._db.quoted = sql.Identifier(schema).as_string(conn)
            try:
                migrate(conn, schema, self.place, create=create, upgrade=upgrade)
            except psycopg.Error as exc:
                raise store_error(self.place, exc) from exc
        self._db.open()
        self._clock = DatabaseClock(self._db.server_time)

    def now(self) -> datetime:
        """The database server's time: what leases, delays and schedules follow, whatever this host's clock says."""
        return self._clock()

    # -- jobs ---------------------------------------------------------------------
    def add(self, jobs: Sequence[JobRecord]) -> list[str]:
        check_times(jobs)
        return self._adds(jobs) if jobs else []

    def _add_together(self, calls: Sequence[Sequence[JobRecord]]) -> list[list[str] | Exception]:
        return adding.together(calls, self._add_alone, self._insert)

    def _add_alone(self, jobs: Sequence[JobRecord]) -> list[str]:
        try:
            if adding.checked(jobs):
                return self._db.transaction(lambda execute: adding.add_checked(execute, jobs, self.channel))
            self._insert(jobs)
        except UnknownDependency:
            raise
        except ValidationError as exc:  # a row the table refuses (a CHECK), as .errors maps it
            raise JobkitError(f"cannot add jobs: {exc}") from exc
        return [job.id for job in jobs]

    def _insert(self, jobs: Sequence[JobRecord]) -> None:
        """Insert jobs that hold no unique key and run after no job, with one NOTIFY, in one transaction."""
        if len(jobs) >= q.COPY_FROM:
            self._db.copy(q.COPY, map(q.row_of, jobs), (q.NOTIFY, (self.channel,)))
        else:
            self._db.write([q.insert(jobs, self.channel)])

    def add_on(self, connection: object, jobs: Sequence[JobRecord]) -> list[str]:
        """Insert *jobs* with the caller's psycopg connection, inside its transaction: they exist at its commit.

        The caller's connection is used as it is: it must reach the same database. The rows
        (and the one NOTIFY) go into whatever transaction it is in, the implicit one that
        psycopg opens with autocommit off included; in autocommit mode they commit at once.
        """
        if not isinstance(connection, psycopg.Connection):
            raise TypeError(f"connection must be a psycopg 3 Connection, not {type(connection).__name__}")
        check_times(jobs)
        if not jobs:
            return []

        def execute(text: str, params: Any) -> list[Any]:
            with connection.cursor() as cur:
                cur.execute(self._db.sql(text), params)
                return cur.fetchall() if cur.description is not None else []

        try:
            if adding.checked(jobs):
                return adding.add_checked(execute, jobs, self.channel)
            if len(jobs) >= q.COPY_FROM:
                copy_rows(connection, self._db.sql(q.COPY), map(q.row_of, jobs), (q.NOTIFY, (self.channel,)))
            else:
                execute(*q.insert(jobs, self.channel))
        except psycopg.Error as exc:
            raise store_error(self.place, exc) from exc
        return [job.id for job in jobs]

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._db.read(q.GET, (job_id,))
        return q.record_of(rows[0]) if rows else None

    def _claim_statement(
        self,
        *,
        limit: int,
        now: datetime,
        token: str,
        lock_until: datetime,
        names: Collection[str] | None,
        queues: Mapping[str, int] | None,
    ) -> tuple[str, dict[str, Any]] | None:
        """The claim for *names* and *queues* (each None for all); None when it would take nothing."""
        chosen, caps = chosen_names(names), chosen_queues(queues)
        if limit <= 0 or chosen == [] or caps == {}:
            return None
        require_aware(now, lock_until)
        params = {"now": now, "token": token, "until": lock_until, "limit": limit, "names": chosen}
        params["channel"] = self.channel
        if caps is not None:
            params["queues"], params["caps"] = list(caps), list(caps.values())
        return q.claim_sql(chosen, caps is not None), params

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
        statement = self._claim_statement(
            limit=limit, now=now, token=token, lock_until=lock_until, names=names, queues=queues
        )
        if statement is None:
            return []
        (rows,) = self._db.write([statement])
        return q.claimed(rows)

    def claim_job(self, job_id: str, *, now: datetime, token: str, lock_until: datetime) -> JobRecord | None:
        require_aware(now, lock_until)
        params = {"id": job_id, "token": token, "now": now, "until": lock_until, "channel": self.channel}
        (rows,) = self._db.write([(q.CLAIM_ONE, params)])
        return next(iter(q.claimed(rows)), None)

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        require_aware(now, lock_until)
        if not leases:
            return {}
        (rows,) = self._db.write([(q.HEARTBEAT, [lock_until, now, *_lease_arrays(leases)])])
        return {job_id: bool(cancel) for job_id, cancel in rows}

    def progress(self, lease: Lease, percent: int, message: str | None, *, now: datetime) -> bool:
        lifecycle.check_percent(percent)
        require_aware(now)
        (rows,) = self._db.write([(q.PROGRESS, (percent, message, now, lease.job_id, lease.token))])
        return bool(rows[0] > 0)

    def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        return self.finish_and_claim(transitions, limit=0, now=_EPOCH, token="", lock_until=_EPOCH)[0]

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
        plan = q.batches(transitions)  # bad input is refused before anything is sent
        check_transition_times(transitions)
        claim = self._claim_statement(
            limit=limit, now=now, token=token, lock_until=lock_until, names=names, queues=queues
        )
        statements: list[tuple[str, Any]] = [(text, params) for text, params, _ in plan]
        if plan:
            statements.append((q.NOTIFY, (self.channel,)))
        if claim is not None:
            statements.append(claim)
        if not statements:
            return [], []
        results = self._db.write(statements)
        claimed = q.claimed(results[-1]) if claim is not None else []
        return q.applied(plan, results[: len(plan)]), claimed

    def release(self, leases: Sequence[Lease], *, now: datetime) -> list[bool]:
        require_aware(now)
        if not leases:
            return []
        statement = (q.RELEASE, [now, *_lease_arrays(leases), now, now])
        (rows,) = self._db.write([statement, (q.NOTIFY, (self.channel,))])[:1]
        done = {(job_id, token) for job_id, token in rows}
        return given_back(leases, done)

    def reset_expired(self, *, now: datetime) -> ResetReport:
        require_aware(now)
        found = [q.record_of(row) for row in self._db.read(q.EXPIRED, (now,))]
        return self._reset(found, now)

    def leases(self) -> list[LeaseMark]:
        return [
            LeaseMark(job_id, token, expires, updated) for job_id, token, expires, updated in self._db.read(q.LEASES)
        ]

    def reset_unrenewed(self, marks: Sequence[LeaseMark], *, now: datetime) -> ResetReport:
        require_aware(now, *(t for m in marks for t in (m.expires_at, m.updated_at) if t is not None))
        if not marks:
            return ResetReport()
        by_id: dict[str, list[LeaseMark]] = {}
        for mark in marks:
            by_id.setdefault(mark.job_id, []).append(mark)
        rows = self._db.read(q.RUNNING_BY_ID, (sorted(by_id),))
        found = [job for job in map(q.record_of, rows) if any(lifecycle.as_seen(job, m) for m in by_id[job.id])]
        return self._reset(found, now)

    def _reset(self, found: Sequence[JobRecord], now: datetime) -> ResetReport:
        """Write what :func:`lifecycle.expire` makes of each job *found*, fenced by the lease as it was read."""
        if not found:
            return ResetReport()
        outcomes = [(job, *lifecycle.expire(job, now=now)) for job in found]
        pairs = [(job, after) for job, after, _ in outcomes]
        (rows,) = self._db.write([(q.RESET, q.reset_bindings(pairs)), (q.NOTIFY, (self.channel,))])[:1]
        done = {row[0] for row in rows}
        report = ResetReport()
        for job, _, kind in outcomes:
            if job.id in done:
                getattr(report, kind).append(job.id)
        return report

    # -- operating ----------------------------------------------------------------
    def cancel(self, job_id: str, *, now: datetime) -> JobRecord | None:
        require_aware(now)
        self._db.write([(q.CANCEL_JOB, {"id": job_id, "now": now}), (q.NOTIFY, (self.channel,))])
        return self.get(job_id)

    def cancelling(self) -> list[str]:
        return [row[0] for row in self._db.read(q.CANCELLING)]

    def retry(self, job_ids: Sequence[str], *, now: datetime) -> list[str]:
        require_aware(now)
        unique = list(dict.fromkeys(job_ids))
        if not unique:
            return []
        (rows,) = self._db.write([(q.RETRY_JOBS, {"ids": unique, "now": now}), (q.NOTIFY, (self.channel,))])[:1]
        sent = {row[0] for row in rows}
        return [job_id for job_id in unique if job_id in sent]

    def purge(self, *, statuses: Collection[JobStatus], before: datetime, limit: int) -> int:
        chosen = sorted(JobStatus(s).value for s in statuses if JobStatus(s).finished)
        require_aware(before)
        if limit <= 0 or not chosen:
            return 0
        (rows,) = self._db.write([(q.PURGE, (chosen, before, limit))])
        return int(rows[0])

    def delete(self, job_ids: Sequence[str]) -> list[str]:
        chosen = chosen_ids(job_ids)
        if not chosen:
            return []
        (rows,) = self._db.write([(q.DELETE, (chosen,))])
        deleted = {row[0] for row in rows}
        return [job_id for job_id in chosen if job_id in deleted]

    def summary(self, *, since: datetime) -> Summary:
        require_aware(since)
        by_name: dict[str, dict[JobStatus, int]] = {}
        for name, status, n in self._db.read(q.BY_NAME):
            by_name.setdefault(name, dict.fromkeys(JobStatus, 0))[JobStatus(status)] = n
        ((oldest,),) = self._db.read(q.OLDEST_PENDING)
        running = [q.record_of(row) for row in self._db.read(q.RUNNING_JOBS)]
        ((failed,),) = self._db.read(q.FAILED_SINCE, (since,))
        return Summary(
            counts=self.counts(),
            by_name=dict(sorted(by_name.items())),
            oldest_pending=oldest,
            running=running,
            failed_since=failed,
        )

    def backlog(self, *, now: datetime) -> Backlog:
        require_aware(now)
        (counts,), oldest, following = (
            self._db.read(text, {"now": now}) for text in (q.BACKLOG, q.OLDEST_DUE, q.NEXT_SCHEDULED)
        )
        return q.backlog(counts, [q.record_of(r) for r in oldest], [q.record_of(r) for r in following])

    # -- recurring jobs -----------------------------------------------------------
    def put_schedule(self, schedule: Schedule) -> Schedule:
        row = q.schedule_row(schedule)
        require_aware(*(t for t in row if isinstance(t, datetime)))
        (rows,) = self._db.write([(q.PUT_SCHEDULE, row)])
        return q.schedule_of(rows[0])

    def get_schedule(self, name: str) -> Schedule | None:
        rows = self._db.read(q.GET_SCHEDULE, (name,))
        return q.schedule_of(rows[0]) if rows else None

    def list_schedules(self) -> list[Schedule]:
        return [q.schedule_of(row) for row in self._db.read(q.LIST_SCHEDULES)]

    def remove_schedule(self, name: str) -> bool:
        (rows,) = self._db.write([(q.REMOVE_SCHEDULE, (name,))])
        return bool(rows[0] > 0)

    def due_schedules(self, now: datetime) -> list[Schedule]:
        require_aware(now)
        return [q.schedule_of(row) for row in self._db.read(q.DUE_SCHEDULES, (now,))]

    def fire_schedule(
        self, name: str, *, expected: datetime, fire_time: datetime, next_run_at: datetime, job: JobRecord
    ) -> bool:
        require_aware(expected, fire_time, next_run_at)
        values = (next_run_at, fire_time, job.id, job.created_at, name, expected, *q.row_of(job), self.channel)
        (rows,) = self._db.write([(q.FIRE, values)])
        return bool(rows)

    # -- reading ------------------------------------------------------------------
    def counts(self) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in self._db.read(q.COUNTS):
            counts[JobStatus(status)] = n
        return counts

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
        chosen = filters.listing(
            status=status,
            name=name,
            correlation_id=correlation_id,
            queue=queue,
            text=text,
            created_from=created_from,
            created_until=created_until,
            after=after,
        )
        if status is not None and not isinstance(status, JobStatus) and status not in q.STATUS:
            return []
        return [q.record_of(row) for row in self._db.read(*listing.listing(chosen, limit))]

    def cursor_after(self, count: int, *, after: Cursor | None = None) -> Cursor | None:
        rows = self._db.read(*listing.cursor_after(filters.check_cursor_after(count, after), after))
        return (rows[0][0], rows[0][1]) if rows else None

    def finished(self, *, after: Cursor | None, until: datetime, limit: int) -> list[JobRecord]:
        filters.check_finished(after, until, limit)
        if limit == 0:
            return []
        return [q.record_of(row) for row in self._db.read(*listing.finished(until, limit, after))]

    def next_due(self, names: Collection[str] | None = None, queues: Collection[str] | None = None) -> datetime | None:
        chosen, among = chosen_names(names), chosen_queue_names(queues)
        if chosen == [] or among == []:
            return None
        ((earliest,),) = self._db.read(q.next_due_sql(chosen, among), {"names": chosen, "among": among})
        return earliest  # type: ignore[no-any-return]

    # -- queues -------------------------------------------------------------------
    def queues(self) -> list[QueueInfo]:
        return QueueInfo.of(self._db.read(q.QUEUES))

    def pause(self, queue: str, paused: bool, *, now: datetime) -> None:
        require_aware(now)
        params = {"name": check_queue(queue), "paused": bool(paused), "now": now, "channel": self.channel}
        self._db.write([(q.PAUSE, params)])

    def holders(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        rows = self._db.read(q.HOLDERS, q.arrays(keys, 2)) if keys else []
        return {(name, key): job_id for name, key, job_id in rows}

    def attempts(self, job_id: str) -> list[Attempt]:
        rows = self._db.read(q.TIMELINE, (job_id,))
        if not rows:
            return []
        width = len(q.COLUMNS)
        history = [Attempt(*row[width:]) for row in rows if row[width] is not None]
        return lifecycle.timeline(q.record_of(rows[0][:width]), history)

    def waker(self) -> PostgresWaker:
        self._db.check_open()
        return PostgresWaker(self._db.connect if self.listen else None, self.channel, self.place)

    # -- lifecycle ----------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        try:
            ((version, pending),) = self._db.read(
                "SELECT current_setting('server_version'), count(*) FROM {s}.jobs WHERE status = 'pending'"
            )
        except JobkitError as exc:
            return False, str(exc)
        return True, f"{self.place}: PostgreSQL {version}, schema {self.schema}, {pending} pending"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.place!r}, schema={self.schema!r})"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # the times of a claim that takes nothing


def _lease_arrays(leases: Sequence[Lease]) -> list[list[str]]:
    return q.arrays(((lease.job_id, lease.token) for lease in leases), 2)
