"""SqliteStore: the jobs table in a SQLite file, through APSW. The only place jobkit imports apsw.

How it stays safe (see RELIABILITY.md):

- WAL journal, ``synchronous=FULL`` by default: a job is on disk when ``add`` returns.
  ``durability="normal"`` trades the last commits before a power cut for speed.
- Every write is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock up front,
  so the busy timeout covers it (a deferred read-then-write could fail with BUSY).
  RETURNING rows are read before COMMIT.
- One connection per thread, none carried across ``fork()``.
- The file is checked, built and brought up to date by :mod:`.migrations` before use.
"""

from __future__ import annotations

import functools
import json
import os
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import apsw

from jobkit import lifecycle
from jobkit.errors import StoreError
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
    utc_now,
)
from jobkit.stores import filters
from jobkit.stores.grouped import GroupCommit
from jobkit.stores.refusals import chosen_queue_names
from jobkit.stores.sqlite import adding, deleting, listing, queries, reading, resets
from jobkit.stores.sqlite.busy import Patience
from jobkit.stores.sqlite.codec import record_of, row_of, schedule_of, schedule_row, ts
from jobkit.stores.sqlite.errors import store_error
from jobkit.stores.sqlite.migrations import check_file, create_file, migrate
from jobkit.stores.sqlite.queries import Step
from jobkit.stores.sqlite.schema import SCHEDULE_SELECT, SELECT
from jobkit.stores.sqlite.waker import SqliteWaker
from jobkit.stores.writes import given_back

if TYPE_CHECKING:  # only in annotations: no import of the port at run time
    from jobkit.store import Cursor

T = TypeVar("T")


Durability = Literal["full", "normal"]


class SqliteStore:
    """The jobs table in a SQLite file: durable, shared by any number of processes.

    *durability* ``"full"`` (default) survives power loss once a call returns;
    ``"normal"`` survives a crash of the process but may lose the last commits on power
    loss. *busy_timeout* (seconds) bounds how long a write waits for another writer
    before :class:`StoreError` is raised; nothing is lost when it is. *create* False
    refuses a path with no jobkit database. *upgrade* (default) gives a file made by an
    older jobkit this version's indexes and constraints as it is opened; the file stays
    usable by that older version.
    """

    shared = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "full",
        busy_timeout: float = 30.0,
        create: bool = True,
        upgrade: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise StoreError(
                f"SqliteStore needs a file path, not {self.path!r}; use MemoryStore() for jobs in memory",
                path=self.path,
            )
        if durability not in ("full", "normal"):
            raise ValueError(f"durability must be 'full' or 'normal', not {durability!r}")
        self.durability = durability
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[apsw.Connection] = []
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        # Concurrent add() calls share a commit; a lone one goes straight to its own transaction.
        self._adds = GroupCommit(self._add_together, functools.partial(adding.alone, run=self._run, write=self._write))
        if not os.path.exists(self.path):
            if not create:
                raise StoreError(f"{self.path}: no such database file", path=self.path)
            create_file(self.path)
        check_file(self.path, create=create)  # before SQLite opens it: opening recovers, which writes
        try:
            migrate(self._connection(), self.path, create=create, upgrade=upgrade, write=self._write)
        except BaseException:
            self.close()  # refused or failed: keep no connection (nor -wal/-shm files) on the file
            raise

    # -- connections --------------------------------------------------------------
    def _connection(self) -> apsw.Connection:
        if self._pid != os.getpid():
            # A forked child must not use its parent's connections; drop them unclosed.
            self._local = threading.local()
            self._connections = []
            self._pid = os.getpid()
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"{self.path}: the store is closed", path=self.path)
            try:
                # APSW's statement cache is a ring that evicts its oldest entry each time a statement
                # goes back, and each outcome of a round is one: at its default 100, a round of 100
                # outcomes pushed out the claim, BEGIN and COMMIT, prepared again every round (512 is
                # the most APSW keeps; a round holds at most concurrency + 200 outcomes).
                conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READWRITE, statementcachesize=512)
                conn.set_busy_handler(Patience(self.busy_timeout))
                # A plan that depends on a bound value (a claim's LIMIT :limit) would be
                # prepared again for every new binding: 40-60 us a claim, for the same plan.
                conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 1)
                conn.execute(f"PRAGMA synchronous = {self.durability.upper()}")
                # A job cancelled because a job it runs after failed cancels its own dependents
                # in turn: the trigger that does it fires from its own update.
                conn.execute("PRAGMA recursive_triggers = ON")
            except apsw.Error as exc:
                raise store_error(self.path, exc, writing=False) from exc
            self._local.conn = conn
            with self._guard:
                self._connections.append(conn)
        return conn

    def _write(self, work: Callable[[apsw.Connection], T], *, single: bool = False) -> T:
        """Run *work* in one BEGIN IMMEDIATE transaction, retrying while the file is busy.

        *single* marks work that is one write statement, which SQLite runs as a
        transaction of its own, taking the write lock when it starts.
        """
        conn = self._connection()
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                if single:
                    return work(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    if not conn.get_autocommit():
                        conn.execute("ROLLBACK")
                    raise
            except apsw.BusyError as exc:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"{self.path}: the database stayed locked by another writer for over "
                        f"{self.busy_timeout:g}s; nothing was written",
                        path=self.path,
                    ) from exc
                time.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 0.1)
            except apsw.Error as exc:  # a full disk, an I/O error, a refused row: see .errors
                raise store_error(self.path, exc, writing=True) from exc

    def _run(self, steps: Sequence[Step], *, single: bool = False) -> list[Any]:
        """Run *steps* in one write transaction; what each gave: its raw rows, or a count.

        Between BEGIN IMMEDIATE and COMMIT nothing runs but the statements: a handler
        that holds the GIL (a long regex, a C call) stalls every Python thread of the
        process, and a thread stalled inside a transaction keeps the one write lock from
        every writer on the machine. So callers encode rows before and decode after,
        and each step is one call into SQLite. *single*: see :meth:`_write`.
        """

        def statements(conn: apsw.Connection) -> list[Any]:
            results: list[Any] = []
            for sql, bindings, how in steps:
                if how == "count":
                    conn.execute(sql, bindings)
                    results.append(conn.changes())
                elif how == "many":
                    results.append(list(conn.executemany(sql, bindings)))
                else:
                    results.append(list(conn.execute(sql, bindings)))
            return results

        return self._write(statements, single=single)

    def _read(self, sql: str, bindings: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        try:
            return list(self._connection().execute(sql, bindings))
        except apsw.BusyError as exc:  # rare in WAL (recovery, a checkpoint's reset)
            raise StoreError(f"{self.path}: the database stayed busy for a read: {exc}", path=self.path) from exc
        except apsw.Error as exc:
            raise store_error(self.path, exc, writing=False) from exc

    # -- jobs ---------------------------------------------------------------------
    def add(self, jobs: Sequence[JobRecord]) -> list[str]:
        return self._adds(jobs) if jobs else []

    def _add_together(self, calls: Sequence[Sequence[JobRecord]]) -> list[adding.Outcome]:
        return adding.together(self.path, calls, self._run, self._write)

    def get(self, job_id: str) -> JobRecord | None:
        """The job, or None; :class:`UnreadableRow` (a StoreError) naming what another tool wrote in its row."""
        rows = self._read(f"SELECT {SELECT} FROM jobs WHERE id = ?", (job_id,))
        return record_of(rows[0]) if rows else None

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
        step = reading.claim_step(self._read, limit, now, token, lock_until, names=names, queues=queues)
        if step is None:
            return []
        return reading.claimed(self.path, self._run([step])[0], token, now, self._run)

    def claim_job(self, job_id: str, *, now: datetime, token: str, lock_until: datetime) -> JobRecord | None:
        bindings = {"id": job_id, "token": token, "now": ts(now), "until": ts(lock_until)}
        (rows,) = self._run([(queries.CLAIM_ONE, bindings, "rows")])
        return next(iter(reading.claimed(self.path, rows, token, now, self._run, alone=True)), None)

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        until, at = ts(lock_until), ts(now)
        if not leases:
            return {}
        bindings = [(until, at, lease.job_id, lease.token) for lease in leases]
        (rows,) = self._run([(queries.HEARTBEAT, bindings, "many")])
        return {job_id: bool(cancel) for job_id, cancel in rows}

    def progress(self, lease: Lease, percent: int, message: str | None, *, now: datetime) -> bool:
        lifecycle.check_percent(percent)
        bindings = (percent, message, ts(now), lease.job_id, lease.token)
        (changed,) = self._run([(queries.PROGRESS, bindings, "count")], single=True)
        return bool(changed > 0)

    def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        if not transitions:
            return []
        plan = queries.write_plan(queries.writes_of(transitions))  # bad input is refused before the write lock
        return queries.applied(plan, self._run([step for step, _ in plan]))

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
        if not transitions:
            return [], self.claim(limit=limit, now=now, token=token, lock_until=lock_until, names=names, queues=queues)
        plan = queries.write_plan(queries.writes_of(transitions))  # bad input is refused before the write lock
        retried = [t.job_id for t in transitions if lifecycle.pends_again(t)]
        claim = reading.claim_step(
            self._read, limit, now, token, lock_until, names=names, queues=queues, retried=retried
        )
        steps = [step for step, _ in plan] + ([claim] if claim is not None else [])
        results = self._run(steps)
        rows = results.pop() if claim is not None else []
        return queries.applied(plan, results), reading.claimed(self.path, rows, token, now, self._run)

    def release(self, leases: Sequence[Lease], *, now: datetime) -> list[bool]:
        at = ts(now)
        if not leases:
            return []
        # A job asked to cancel is not given back: it ends cancelled (the two never both match).
        logs = [(job_id, (at, job_id, token)) for job_id, token in dict.fromkeys((x.job_id, x.token) for x in leases)]
        *_, given, cancelled = self._run(
            [
                *queries.log_steps(logs, queries.LOG_RELEASED),
                (queries.RELEASE, [(at, lease.job_id, lease.token) for lease in leases], "many"),
                (queries.RELEASE_CANCELLED, [(at, at, lease.job_id, lease.token) for lease in leases], "many"),
            ]
        )
        done = {(job_id, token) for job_id, token in given} | {(job_id, token) for job_id, token in cancelled}
        return given_back(leases, done)

    def reset_expired(self, *, now: datetime) -> ResetReport:
        at = ts(now)
        # A read first, outside the transaction: most rounds find nothing and need no write
        # lock; the rest are decided here, and each write is fenced by what was read.
        found = [(i, a, m, c, (i, at, a, c)) for i, a, m, c in sorted(self._read(resets.EXPIRED, (at,)))]
        return self._reset(*resets.resets(found, at, resets.EXPIRED_RESETS))

    def leases(self) -> list[LeaseMark]:
        return [mark for mark, _ in resets.lease_marks(self._read(resets.LEASES))]

    def reset_unrenewed(self, marks: Sequence[LeaseMark], *, now: datetime) -> ResetReport:
        at = ts(now)
        resets.check_marks(marks)  # naive times are refused before anything is read or written
        found = resets.unrenewed(self._read(resets.LEASES), marks) if marks else []
        return self._reset(*resets.resets(found, at, resets.UNRENEWED_RESETS))

    def _reset(self, steps: Sequence[Step], chosen: Mapping[str, list[str]]) -> ResetReport:
        """Run the fenced resets *steps*; of the ids *chosen* for each kind, those they reset."""
        done = {row[0] for rows in self._run(steps) for row in rows} if steps else set()
        return ResetReport(**{kind: [i for i in ids if i in done] for kind, ids in chosen.items()})

    # -- operating ----------------------------------------------------------------
    def cancel(self, job_id: str, *, now: datetime) -> JobRecord | None:
        _, rows = self._run(
            [
                (queries.CANCEL_JOB, {"id": job_id, "now": ts(now)}, "count"),
                (f"SELECT {SELECT} FROM jobs WHERE id = ?", (job_id,), "rows"),
            ]
        )
        return record_of(rows[0]) if rows else None

    def cancelling(self) -> list[str]:
        sql = """SELECT id FROM jobs INDEXED BY jobs_status_expires_idx
                 WHERE status = 'running' AND cancel_requested = 1 ORDER BY id"""
        return [row[0] for row in self._read(sql)]

    def retry(self, job_ids: Sequence[str], *, now: datetime) -> list[str]:
        at = ts(now)
        unique = list(dict.fromkeys(job_ids))
        if not unique:
            return []

        (rows,) = self._run([(queries.RETRY_JOB, [(at, at, job_id) for job_id in unique], "many")])
        sent = {row[0] for row in rows}
        return [job_id for job_id in unique if job_id in sent]

    def purge(self, *, statuses: Collection[JobStatus], before: datetime, limit: int) -> int:
        return len(deleting.purge(self._run, statuses, before, limit))

    def delete(self, job_ids: Sequence[str]) -> list[str]:
        return deleting.delete(self._run, job_ids)

    def summary(self, *, since: datetime) -> Summary:
        return reading.summary(self.path, self._read, since=since)

    def backlog(self, *, now: datetime) -> Backlog:
        return reading.backlog(self.path, self._read, now=now)

    # -- recurring jobs -----------------------------------------------------------
    def put_schedule(self, schedule: Schedule) -> Schedule:
        row = schedule_row(schedule)
        (rows,) = self._run([(queries.PUT_SCHEDULE, row, "rows")])
        return schedule_of(rows[0])

    def get_schedule(self, name: str) -> Schedule | None:
        rows = self._read(f"SELECT {SCHEDULE_SELECT} FROM cron_jobs WHERE name = ?", (name,))
        return schedule_of(rows[0]) if rows else None

    def list_schedules(self) -> list[Schedule]:
        rows = self._read(f"SELECT {SCHEDULE_SELECT} FROM cron_jobs ORDER BY name")
        return reading.schedules(self.path, rows, "left out of the list")

    def remove_schedule(self, name: str) -> bool:
        (removed,) = self._run([("DELETE FROM cron_jobs WHERE name = ?", (name,), "count")], single=True)
        return bool(removed > 0)

    def due_schedules(self, now: datetime) -> list[Schedule]:
        sql = f"""SELECT {SCHEDULE_SELECT} FROM cron_jobs WHERE enabled = 1 AND next_run_at <= ?
                  ORDER BY next_run_at, name"""
        return reading.schedules(self.path, self._read(sql, (ts(now),)), "not fired")

    def fire_schedule(
        self, name: str, *, expected: datetime, fire_time: datetime, next_run_at: datetime, job: JobRecord
    ) -> bool:
        values = (ts(next_run_at), ts(fire_time), job.id, ts(job.created_at), name, ts(expected))
        row = (*row_of(job), name, job.id)
        fired, _ = self._run([(queries.FIRE, values, "count"), (queries.INSERT_FIRED, row, "count")])
        return bool(fired > 0)

    # -- reading ------------------------------------------------------------------
    def counts(self) -> dict[JobStatus, int]:
        return reading.counts(self._read)

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
        return reading.page(self.path, self._read, functools.partial(listing.listing, chosen), limit, after)

    def cursor_after(self, count: int, *, after: Cursor | None = None) -> Cursor | None:
        return listing.read_cursor(self._read(*listing.cursor_after(filters.check_cursor_after(count, after), after)))

    def finished(self, *, after: Cursor | None, until: datetime, limit: int) -> list[JobRecord]:
        filters.check_finished(after, until, limit)
        page = functools.partial(listing.finished, until)
        return reading.page(self.path, self._read, page, limit, after, cursor_of=listing.raw_finished_cursor)

    def next_due(self, names: Collection[str] | None = None, queues: Collection[str] | None = None) -> datetime | None:
        count, bindings = queries.queue_bindings(names)
        among = chosen_queue_names(queues)
        if among is not None:
            bindings["among"] = json.dumps(among)
        sql = queries.queue_sql(queries.NEXT_DUE, count, None if among is None else "queue")
        return reading.earliest(self._read, sql, bindings)

    # -- queues -------------------------------------------------------------------
    def queues(self) -> list[QueueInfo]:
        return QueueInfo.of(self._read(queries.QUEUES))

    def pause(self, queue: str, paused: bool, *, now: datetime) -> None:
        self._run([(queries.PAUSE, (check_queue(queue), int(bool(paused)), ts(now)), "count")], single=True)

    def holders(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        rows = self._read(queries.HOLDERS, (json.dumps([list(key) for key in keys]),)) if keys else []
        return {(name, key): job_id for name, key, job_id in rows}

    def attempts(self, job_id: str) -> list[Attempt]:
        return reading.attempts(self._connection(), self.path, job_id)

    def waker(self) -> SqliteWaker:
        return SqliteWaker(self._connection, f"{self.path}-wal")

    def now(self) -> datetime:
        """This host's clock: everyone using a SQLite file shares this host."""
        return utc_now()

    # -- lifecycle ----------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        try:
            conn = self._connection()
            mode = conn.execute("PRAGMA journal_mode").fetchall()[0][0]
            (pending,) = conn.execute(f"SELECT count(*) FROM {queries.PENDING}").fetchall()[0]
        except (apsw.Error, StoreError) as exc:
            return False, f"{self.path}: {exc}"
        return True, f"{self.path}: SQLite {apsw.sqlite_lib_version()}, {mode} journal, {pending} pending"

    def close(self) -> None:
        """Close every connection this store opened (in this process)."""
        with self._guard:
            self._closed = True
            connections, self._connections = self._connections, []
        if self._pid == os.getpid():
            for conn in connections:
                conn.close()
        self._local = threading.local()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r}, durability={self.durability!r})"
