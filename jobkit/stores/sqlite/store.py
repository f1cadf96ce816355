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
from jobkit.errors import JobkitError, StoreError
from jobkit.model import (
    CANCELLED_WHILE_LOST,
    Backlog,
    JobRecord,
    JobStatus,
    Lease,
    ResetReport,
    Schedule,
    Summary,
    Transition,
    worker_lost,
)
from jobkit.stores.sqlite import queries
from jobkit.stores.sqlite.codec import dt, record_of, row_of, schedule_of, schedule_row, ts
from jobkit.stores.sqlite.migrations import check_file, create_file, migrate
from jobkit.stores.sqlite.schema import SCHEDULE_SELECT, SELECT
from jobkit.stores.sqlite.waker import SqliteWaker

if TYPE_CHECKING:  # only in annotations: no import of the port at run time
    from jobkit.store import Cursor

T = TypeVar("T")


class _Patience:
    """A busy handler: wait for another writer in short, jittered naps, up to a limit.

    SQLite's own busy timeout sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries, so two
    processes that take turns at the write lock (workers committing every millisecond)
    lose most of their time asleep. Short naps hand the lock over promptly.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.since = 0.0

    def __call__(self, tries: int) -> bool:
        now = time.monotonic()
        if tries == 0:
            self.since = now
        elif now - self.since >= self.limit:
            return False
        time.sleep(min(0.0001 * (tries + 1), 0.005) * (0.5 + random.random()))
        return True


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
            conn = apsw.Connection(self.path, flags=apsw.SQLITE_OPEN_READWRITE)
            conn.set_busy_handler(_Patience(self.busy_timeout))
            # A plan that depends on a bound value (a claim's LIMIT :limit) would be
            # prepared again for every new binding: 40-60 us a claim, for the same plan.
            conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 1)
            conn.execute(f"PRAGMA synchronous = {self.durability.upper()}")
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

    def _read(self, sql: str, bindings: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        try:
            return list(self._connection().execute(sql, bindings))
        except apsw.BusyError as exc:  # rare in WAL (recovery, a checkpoint's reset)
            raise StoreError(f"{self.path}: the database stayed busy for a read: {exc}", path=self.path) from exc

    # -- jobs ---------------------------------------------------------------------
    def add(self, jobs: Sequence[JobRecord]) -> None:
        rows = [row_of(job) for job in jobs]

        def insert(conn: apsw.Connection) -> None:
            try:
                conn.executemany(queries.INSERT, rows)
            except apsw.ConstraintError as exc:
                raise JobkitError(f"cannot add jobs: {exc}") from exc

        if len(rows) == 1:
            # One INSERT is a transaction of its own that takes the write lock as it starts,
            # as BEGIN IMMEDIATE would, and saves two round trips.
            self._write(insert, single=True)
        elif rows:
            self._write(insert)

    def get(self, job_id: str) -> JobRecord | None:
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
    ) -> list[JobRecord]:
        count, probe = queries.queue_bindings(names, now=ts(now))
        if limit <= 0 or count == 0:
            return []
        # A read first: an idle worker's claim must not take the write lock for nothing.
        if not self._read(queries.queue_sql(queries.DUE, count), probe):
            return []
        bindings = {**probe, "token": token, "until": ts(lock_until), "limit": limit}
        sql = queries.queue_sql(queries.CLAIM, count)
        return queries.claimed(self._write(lambda conn: list(conn.execute(sql, bindings))))

    def claim_job(self, job_id: str, *, now: datetime, token: str, lock_until: datetime) -> JobRecord | None:
        bindings = {"id": job_id, "token": token, "now": ts(now), "until": ts(lock_until)}
        rows = self._write(lambda conn: list(conn.execute(queries.CLAIM_ONE, bindings)))
        return record_of(rows[0]) if rows else None

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        until, at = ts(lock_until), ts(now)
        if not leases:
            return {}

        def beat(conn: apsw.Connection) -> dict[str, bool]:
            held: dict[str, bool] = {}
            for lease in leases:
                for job_id, cancel in conn.execute(queries.HEARTBEAT, (until, at, lease.job_id, lease.token)):
                    held[job_id] = bool(cancel)
            return held

        return self._write(beat)

    def progress(self, lease: Lease, percent: int, message: str | None, *, now: datetime) -> bool:
        lifecycle.check_percent(percent)
        at = ts(now)

        def write(conn: apsw.Connection) -> bool:
            conn.execute(queries.PROGRESS, (percent, message, at, lease.job_id, lease.token))
            return conn.changes() > 0

        return self._write(write)

    def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        if not transitions:
            return []
        writes = queries.writes_of(transitions)  # bad input is refused before the write lock is taken
        return self._write(lambda conn: queries.apply_writes(conn, writes))

    def finish_and_claim(
        self,
        transitions: Sequence[Transition],
        *,
        limit: int,
        now: datetime,
        token: str,
        lock_until: datetime,
        names: Collection[str] | None = None,
    ) -> tuple[list[bool], list[JobRecord]]:
        if not transitions:
            return [], self.claim(limit=limit, now=now, token=token, lock_until=lock_until, names=names)
        count, bindings = queries.queue_bindings(names, now=ts(now), token=token, until=ts(lock_until), limit=limit)
        writes = queries.writes_of(transitions)  # bad input is refused before the write lock is taken
        take = limit > 0 and count != 0
        sql = queries.queue_sql(queries.CLAIM, count)

        def swap(conn: apsw.Connection) -> tuple[list[bool], list[Any]]:
            applied = queries.apply_writes(conn, writes)
            return applied, list(conn.execute(sql, bindings)) if take else []

        applied, rows = self._write(swap)
        return applied, queries.claimed(rows)

    def release(self, leases: Sequence[Lease], *, now: datetime) -> list[bool]:
        at = ts(now)
        if not leases:
            return []

        def give_back(conn: apsw.Connection) -> list[bool]:
            released = []
            for lease in leases:
                conn.execute(queries.RELEASE, (at, lease.job_id, lease.token))
                done = conn.changes() > 0
                if not done:  # a job asked to cancel is not given back: it ends cancelled
                    conn.execute(queries.RELEASE_CANCELLED, (at, at, lease.job_id, lease.token))
                    done = conn.changes() > 0
                released.append(done)
            return released

        return self._write(give_back)

    def reset_expired(self, *, now: datetime) -> ResetReport:
        at = ts(now)
        # A cheap read first: most rounds find nothing and need no write lock.
        if not self._read("SELECT 1 FROM jobs WHERE status = 'running' AND worker_expires_at <= ? LIMIT 1", (at,)):
            return ResetReport()

        def reset(conn: apsw.Connection) -> ResetReport:
            report = ResetReport()
            for job_id, attempts, max_attempts, cancelling in sorted(conn.execute(queries.EXPIRED, (at,))):
                error = worker_lost(attempts, max_attempts)
                if cancelling:
                    conn.execute(queries.RESET_CANCELLED, (CANCELLED_WHILE_LOST, at, at, job_id))
                    report.cancelled.append(job_id)
                elif attempts >= max_attempts:
                    conn.execute(queries.RESET_FAILED, (error, at, at, job_id))
                    report.failed.append(job_id)
                else:
                    conn.execute(queries.RESET_PENDING, (error, at, at, job_id))
                    report.retried.append(job_id)
            return report

        return self._write(reset)

    # -- operating ----------------------------------------------------------------
    def cancel(self, job_id: str, *, now: datetime) -> JobRecord | None:
        at = ts(now)

        def cancel(conn: apsw.Connection) -> list[Any]:
            conn.execute(queries.CANCEL_JOB, {"id": job_id, "now": at})
            return list(conn.execute(f"SELECT {SELECT} FROM jobs WHERE id = ?", (job_id,)))

        rows = self._write(cancel)
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

        def retry(conn: apsw.Connection) -> list[str]:
            sent = {row[0] for row in conn.executemany(queries.RETRY_JOB, [(at, at, job_id) for job_id in unique])}
            return [job_id for job_id in unique if job_id in sent]

        return self._write(retry)

    def purge(self, *, statuses: Collection[JobStatus], before: datetime, limit: int) -> int:
        chosen = json.dumps(sorted(JobStatus(s).value for s in statuses if JobStatus(s).finished))
        cutoff = ts(before)
        if limit <= 0 or chosen == "[]":
            return 0

        def purge(conn: apsw.Connection) -> int:
            conn.execute(queries.PURGE, (chosen, cutoff, limit))
            return int(conn.changes())

        return self._write(purge)

    def summary(self, *, since: datetime) -> Summary:
        by_name: dict[str, dict[JobStatus, int]] = {}
        for name, status, n in self._read("SELECT job_name, status, count(*) FROM jobs GROUP BY job_name, status"):
            by_name.setdefault(name, dict.fromkeys(JobStatus, 0))[JobStatus(status)] = n
        oldest = self._read(f"SELECT min(scheduled_for) FROM {queries.PENDING}")[0][0]
        running = self._read(
            f"SELECT {SELECT} FROM jobs INDEXED BY jobs_status_expires_idx WHERE status = 'running' ORDER BY id"
        )
        failed = self._read(
            "SELECT count(*) FROM jobs WHERE status = 'failed' AND completed_at IS NOT NULL AND completed_at >= ?",
            (ts(since),),
        )[0][0]
        return Summary(
            counts=self.counts(),
            by_name=dict(sorted(by_name.items())),
            oldest_pending=dt(oldest) if oldest else None,
            running=[record_of(row) for row in running],
            failed_since=failed,
        )

    def backlog(self, *, now: datetime) -> Backlog:
        at = {"now": ts(now)}
        ((pending, due),) = self._read(queries.BACKLOG, at)
        oldest = self._read(queries.OLDEST_DUE, at)
        following = self._read(queries.NEXT_SCHEDULED, at)
        return Backlog(
            due=due,
            scheduled=pending - due,
            oldest_due=record_of(oldest[0]) if oldest else None,
            next_scheduled=record_of(following[0]) if following else None,
        )

    # -- recurring jobs -----------------------------------------------------------
    def put_schedule(self, schedule: Schedule) -> Schedule:
        row = schedule_row(schedule)
        rows = self._write(lambda conn: list(conn.execute(queries.PUT_SCHEDULE, row)))
        return schedule_of(rows[0])

    def get_schedule(self, name: str) -> Schedule | None:
        rows = self._read(f"SELECT {SCHEDULE_SELECT} FROM cron_jobs WHERE name = ?", (name,))
        return schedule_of(rows[0]) if rows else None

    def list_schedules(self) -> list[Schedule]:
        return [schedule_of(row) for row in self._read(f"SELECT {SCHEDULE_SELECT} FROM cron_jobs ORDER BY name")]

    def remove_schedule(self, name: str) -> bool:
        def remove(conn: apsw.Connection) -> bool:
            conn.execute("DELETE FROM cron_jobs WHERE name = ?", (name,))
            return conn.changes() > 0

        return self._write(remove)

    def due_schedules(self, now: datetime) -> list[Schedule]:
        sql = f"""SELECT {SCHEDULE_SELECT} FROM cron_jobs WHERE enabled = 1 AND next_run_at <= ?
                  ORDER BY next_run_at, name"""
        return [schedule_of(row) for row in self._read(sql, (ts(now),))]

    def fire_schedule(
        self, name: str, *, expected: datetime, fire_time: datetime, next_run_at: datetime, job: JobRecord
    ) -> bool:
        values = (ts(next_run_at), ts(fire_time), job.id, ts(job.created_at), name, ts(expected))
        row = row_of(job)

        def fire(conn: apsw.Connection) -> bool:
            conn.execute(queries.FIRE, values)
            if conn.changes() == 0:
                return False
            conn.execute(queries.INSERT, row)
            return True

        return self._write(fire)

    # -- reading ------------------------------------------------------------------
    def counts(self) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        # One query per partial index: each counts from its index alone, without the table.
        (pending,) = self._read(
            "SELECT count(*) FROM jobs INDEXED BY jobs_status_scheduled_idx WHERE status = 'pending'"
        )
        (running,) = self._read("SELECT count(*) FROM jobs INDEXED BY jobs_status_expires_idx WHERE status = 'running'")
        counts[JobStatus.PENDING], counts[JobStatus.RUNNING] = pending[0], running[0]
        finished = "SELECT status, count(*) FROM jobs WHERE completed_at IS NOT NULL GROUP BY status"
        for status, n in self._read(finished):
            counts[JobStatus(status)] = n
        return counts

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        correlation_id: str | None = None,
        limit: int = 100,
        after: Cursor | None = None,
    ) -> list[JobRecord]:
        query = queries.listing(status=status, name=name, correlation_id=correlation_id, limit=limit, after=after)
        if query is None:
            return []
        return [record_of(row) for row in self._read(*query)]

    def next_due(self, names: Collection[str] | None = None) -> datetime | None:
        count, bindings = queries.queue_bindings(names)
        rows = self._read(queries.queue_sql(queries.NEXT_DUE, count), bindings)
        return dt(rows[0][0]) if rows and rows[0][0] else None

    def waker(self) -> SqliteWaker:
        return SqliteWaker(self._connection, f"{self.path}-wal")

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
