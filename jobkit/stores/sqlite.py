"""SqliteStore: the jobs table in a SQLite file, through APSW. The only module that imports apsw.

How it stays safe (see RELIABILITY.md):

- WAL journal, ``synchronous=FULL`` by default: a job is on disk when ``add`` returns.
  ``durability="normal"`` trades the last commits before a power cut for speed.
- Every write is one ``BEGIN IMMEDIATE`` transaction: it takes the write lock up front,
  so the busy timeout covers it (a deferred read-then-write could fail with BUSY).
  RETURNING rows are read before COMMIT.
- One connection per thread, none carried across ``fork()``.
- The file is marked with ``application_id`` and ``user_version``; a foreign file, an
  empty one or one from a newer jobkit is refused before anything is written to it.
  A new file is built aside and linked into place, so no process ever sees it half made.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import apsw

from jobkit.errors import JobkitError, NotAJobkitDatabase, SchemaTooNew, StoreError
from jobkit.model import (
    CANCELLED,
    CANCELLED_WHILE_LOST,
    FINISHED,
    Cancel,
    Complete,
    Fail,
    JobRecord,
    JobStatus,
    Lease,
    ResetReport,
    Retry,
    Schedule,
    Summary,
    Transition,
    worker_lost,
)

T = TypeVar("T")
logger = logging.getLogger("jobkit")

APPLICATION_ID = 0x4A4F424B  # "JOBK"
SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"

JOBS_TABLE = """
CREATE TABLE jobs (
    id                TEXT PRIMARY KEY NOT NULL,
    job_name          TEXT NOT NULL CHECK (length(job_name) > 0),
    params            TEXT NOT NULL,
    result            TEXT,
    status            TEXT NOT NULL DEFAULT 'pending' CHECK (status = 'pending' OR status = 'running'
                      OR status = 'completed' OR status = 'failed' OR status = 'cancelled'),
    progress          INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    progress_message  TEXT,
    error             TEXT,
    traceback         TEXT,
    worker_id         TEXT,
    worker_started_at TEXT,
    worker_expires_at TEXT,
    attempt_count     INTEGER NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
    max_attempts      INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    priority          INTEGER NOT NULL DEFAULT 0,
    scheduled_for     TEXT NOT NULL,
    correlation_id    TEXT,
    cancel_requested  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested = 0 OR cancel_requested = 1),
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    completed_at      TEXT,
    CHECK (status <> 'running' OR (worker_id IS NOT NULL AND worker_expires_at IS NOT NULL)),
    CHECK ((completed_at IS NOT NULL) = (status = 'completed' OR status = 'failed' OR status = 'cancelled'))
) WITHOUT ROWID;
"""
JOBS_INDEXES = """
CREATE INDEX jobs_status_scheduled_idx ON jobs (priority DESC, scheduled_for, id) WHERE status = 'pending';
CREATE INDEX jobs_status_expires_idx ON jobs (worker_expires_at) WHERE status = 'running';
CREATE INDEX jobs_name_idx ON jobs (job_name) WHERE completed_at IS NOT NULL;
CREATE INDEX jobs_correlation_idx ON jobs (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX jobs_finished_idx ON jobs (status, completed_at) WHERE completed_at IS NOT NULL;
"""
CRON_TABLE = """
CREATE TABLE cron_jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
    job_name        TEXT NOT NULL,
    cron_expression TEXT NOT NULL,
    params          TEXT NOT NULL,
    timezone        TEXT NOT NULL DEFAULT 'UTC',
    enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    last_run_at     TEXT,
    next_run_at     TEXT,
    last_job_id     TEXT,
    declared        INTEGER NOT NULL DEFAULT 0 CHECK (declared IN (0, 1)),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX cron_jobs_next_run_idx ON cron_jobs (enabled, next_run_at);
CREATE INDEX cron_jobs_name_idx ON cron_jobs (name);
"""
SCHEMA = f"""
-- jobkit schema, version {SCHEMA_VERSION}. Timestamps are UTC text, ISO 8601 with microseconds and
-- a trailing Z ('2026-11-29T23:11:19.123456Z'): they sort as they compare.
-- The jobs table is clustered on its UUIDv7 id (WITHOUT ROWID: new ids append). The
-- queue index holds pending jobs only, the lock index running ones, the finished and
-- name indexes the rest: an enqueue writes two b-trees, and a claim or a completion
-- moves a job between small indexes. CHECKs spell their lists out with OR: an IN list
-- in a CHECK builds a lookup table for every row written.
{JOBS_TABLE}{JOBS_INDEXES}{CRON_TABLE}"""


COLUMNS = (
    "id",
    "job_name",
    "params",
    "status",
    "scheduled_for",
    "created_at",
    "updated_at",
    "max_attempts",
    "attempt_count",
    "priority",
    "correlation_id",
    "result",
    "progress",
    "progress_message",
    "error",
    "traceback",
    "worker_id",
    "worker_started_at",
    "worker_expires_at",
    "completed_at",
    "cancel_requested",
)
SELECT = ", ".join(COLUMNS)


# Files made before these definitions hold the jobs table with IN lists in its CHECKs
# and a name index over every job. Both layouts are schema version 1: every jobkit
# version reads and writes either, so bringing a file up to date locks nobody out.
_TABLE_SQL = JOBS_TABLE.strip().rstrip(";")  # as sqlite_schema keeps it
_NAME_INDEX_SQL = next(line for line in JOBS_INDEXES.splitlines() if " jobs_name_idx " in line).rstrip(";")
_FIRST_CLAUSES = (  # (today's clause, the first jobkit's), to rebuild the first text byte for byte
    (
        "DEFAULT 'pending' CHECK (status = 'pending' OR status = 'running'\n"
        "                      OR status = 'completed' OR status = 'failed' OR status = 'cancelled'),",
        "DEFAULT 'pending'\n"
        "                      CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),",
    ),
    ("CHECK (cancel_requested = 0 OR cancel_requested = 1)", "CHECK (cancel_requested IN (0, 1))"),
    (
        "(status = 'completed' OR status = 'failed' OR status = 'cancelled'))",
        "(status IN ('completed', 'failed', 'cancelled')))",
    ),
)
_FIRST_TABLE_SQL = functools.reduce(lambda text, clause: text.replace(*clause), _FIRST_CLAUSES, _TABLE_SQL)


def _layout_changes(conn: apsw.Connection) -> tuple[bool, bool]:
    """What :func:`_upgrade_layout` would do to this file: (rewrite the CHECKs, rebuild the name index).

    The CHECKs are rewritten only in a table whose text is exactly the first jobkit's,
    and not where SQLite runs defensive (it refuses writable_schema there).
    """
    found = dict(conn.execute("SELECT name, sql FROM sqlite_schema WHERE name IN ('jobs', 'jobs_name_idx')"))
    defensive = bool(conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, -1))
    return found.get("jobs") == _FIRST_TABLE_SQL and not defensive, found.get("jobs_name_idx") != _NAME_INDEX_SQL


def _upgrade_layout(conn: apsw.Connection) -> bool:
    """Give a file made by an older jobkit this version's CHECKs and name index; False if nothing to do.

    The CHECKs are rewritten in sqlite_schema, as SQLite documents for changing a
    table's constraints without copying it (lang_altertable.html, "other kinds of table
    schema changes"): the old and new ones accept exactly the same rows. Views, triggers
    and indexes of the user's own on the table are left as they are.
    """
    rewrite, rebuild = _layout_changes(conn)  # again, under the write lock: another process may have done it
    if rewrite:  # first: it is quick, and if it fails, no index was built for nothing
        cookie = int(conn.execute("PRAGMA schema_version").fetchall()[0][0])  # type: ignore[arg-type]
        conn.execute("PRAGMA writable_schema = ON")
        try:
            conn.execute("UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = 'jobs'", (_TABLE_SQL,))
            conn.execute(f"PRAGMA schema_version = {cookie + 1}")  # other connections re-read it
        finally:
            conn.execute("PRAGMA writable_schema = OFF")
    if rebuild:
        conn.execute("DROP INDEX IF EXISTS jobs_name_idx")
        conn.execute(_NAME_INDEX_SQL)
    return rewrite or rebuild


def ts(value: datetime) -> str:
    """The stored form of a time: UTC, ISO 8601, microseconds, trailing Z."""
    if value.tzinfo is timezone.utc:  # as records hold them
        return _utc_text(value)
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: jobkit needs timezone-aware times")
    # Converted before the cache: two local times that differ only in `fold` (the
    # repeated hour of a DST change) compare and hash equal, but are an hour apart.
    return _utc_text(value.astimezone(timezone.utc))


@functools.lru_cache(maxsize=256)  # a batch shares its times: format each once
def _utc_text(value: datetime) -> str:
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@functools.lru_cache(maxsize=1024)  # a claim reads many rows enqueued together
def dt(value: str) -> datetime:
    """Read a stored time back as an aware UTC datetime."""
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)


_STATUS = {status.value: status for status in JobStatus}  # faster than JobStatus(text); holds the enum too


def _record(row: Sequence[Any]) -> JobRecord:
    (
        id_,
        job_name,
        params,
        status,
        scheduled_for,
        created_at,
        updated_at,
        max_attempts,
        attempt_count,
        priority,
        correlation_id,
        result,
        progress,
        progress_message,
        error,
        traceback,
        worker_id,
        worker_started_at,
        worker_expires_at,
        completed_at,
        cancel_requested,
    ) = row
    return JobRecord(
        id=id_,
        job_name=job_name,
        params=params,
        status=_STATUS.get(status) or JobStatus(status),
        scheduled_for=dt(scheduled_for),
        created_at=dt(created_at),
        updated_at=dt(updated_at),
        max_attempts=max_attempts,
        attempt_count=attempt_count,
        priority=priority,
        correlation_id=correlation_id,
        result=result,
        progress=progress,
        progress_message=progress_message,
        error=error,
        traceback=traceback,
        worker_id=worker_id,
        worker_started_at=dt(worker_started_at) if worker_started_at else None,
        worker_expires_at=dt(worker_expires_at) if worker_expires_at else None,
        completed_at=dt(completed_at) if completed_at else None,
        cancel_requested=bool(cancel_requested),
    )


def _row(job: JobRecord) -> tuple[Any, ...]:
    return (
        job.id,
        job.job_name,
        job.params,
        job.status.value,
        ts(job.scheduled_for),
        ts(job.created_at),
        ts(job.updated_at),
        job.max_attempts,
        job.attempt_count,
        job.priority,
        job.correlation_id,
        job.result,
        job.progress,
        job.progress_message,
        job.error,
        job.traceback,
        job.worker_id,
        ts(job.worker_started_at) if job.worker_started_at else None,
        ts(job.worker_expires_at) if job.worker_expires_at else None,
        ts(job.completed_at) if job.completed_at else None,
        int(job.cancel_requested),
    )


SCHEDULE_COLUMNS = (
    "id",
    "name",
    "job_name",
    "cron_expression",
    "params",
    "timezone",
    "enabled",
    "next_run_at",
    "created_at",
    "updated_at",
    "last_run_at",
    "last_job_id",
    "declared",
)
SCHEDULE_SELECT = ", ".join(SCHEDULE_COLUMNS)


def _schedule(row: Sequence[Any]) -> Schedule:
    (
        id_,
        name,
        job_name,
        expression,
        params,
        tz,
        enabled,
        next_run_at,
        created,
        updated,
        last_run,
        last_job,
        declared,
    ) = row
    return Schedule(
        id=id_,
        name=name,
        job_name=job_name,
        cron_expression=expression,
        params=params,
        timezone=tz,
        enabled=bool(enabled),
        next_run_at=dt(next_run_at) if next_run_at else None,
        created_at=dt(created),
        updated_at=dt(updated),
        last_run_at=dt(last_run) if last_run else None,
        last_job_id=last_job,
        declared=bool(declared),
    )


_PUT_SCHEDULE = f"""
INSERT INTO cron_jobs ({SCHEDULE_SELECT}) VALUES ({", ".join("?" * len(SCHEDULE_COLUMNS))})
ON CONFLICT (name) DO UPDATE SET job_name = excluded.job_name, cron_expression = excluded.cron_expression,
    params = excluded.params, timezone = excluded.timezone, enabled = excluded.enabled,
    next_run_at = CASE WHEN cron_jobs.enabled = 1 AND excluded.enabled = 1 AND cron_jobs.next_run_at IS NOT NULL
        AND cron_jobs.cron_expression = excluded.cron_expression AND cron_jobs.timezone = excluded.timezone
        THEN cron_jobs.next_run_at ELSE excluded.next_run_at END,
    updated_at = excluded.updated_at, declared = excluded.declared
RETURNING {SCHEDULE_SELECT}
"""
_FIRE = """UPDATE cron_jobs SET next_run_at = ?, last_run_at = ?, last_job_id = ?, updated_at = ?
    WHERE name = ? AND enabled = 1 AND next_run_at = ?"""

_INSERT = f"INSERT INTO jobs ({SELECT}) VALUES ({', '.join('?' * len(COLUMNS))})"

_CLAIM = f"""
UPDATE jobs SET status = 'running', worker_id = :token, worker_started_at = :now,
    worker_expires_at = :until, attempt_count = attempt_count + 1,
    progress = 0, progress_message = NULL, updated_at = :now
WHERE id IN (
    SELECT id FROM jobs INDEXED BY jobs_status_scheduled_idx
    WHERE status = 'pending' AND scheduled_for <= :now {{names}}
    ORDER BY priority DESC, scheduled_for, id
    LIMIT :limit)
RETURNING {SELECT}
"""

# Queue reads name the pending index: with a job-name filter the planner would rather use
# the name index, and scan every job of that name ever run.
_PENDING = "jobs INDEXED BY jobs_status_scheduled_idx WHERE status = 'pending'"
_BY_STATUS = (
    (_PENDING, {JobStatus.PENDING}),
    ("jobs INDEXED BY jobs_status_expires_idx WHERE status = 'running'", {JobStatus.RUNNING}),
    ("jobs WHERE completed_at IS NOT NULL", FINISHED),
)
_DUE = f"SELECT 1 FROM {_PENDING} AND scheduled_for <= :now {{names}} LIMIT 1"
_NEXT_DUE = f"SELECT min(scheduled_for) FROM {_PENDING} {{names}}"


BOUND_NAMES = 100  # up to this many job names are bound one by one; more go as one JSON array


@functools.lru_cache(maxsize=64)
def _queue_sql(template: str, count: int | None) -> str:
    """*template* for any job (*count* None) or for one of *count* names bound as :n0, :n1, ...

    A list of bound values, unlike a JSON array unpacked by json_each, is matched by the
    planner once per statement rather than once per row it looks at. Past BOUND_NAMES
    (and SQLite's limit on bound values) the names go as one array, :names.
    """
    if count is None:
        return template.format(names="")
    if count > BOUND_NAMES:
        return template.format(names="AND job_name IN (SELECT value FROM json_each(:names))")
    return template.format(names=f"AND job_name IN ({', '.join(f':n{i}' for i in range(count))})")


def _queue_bindings(names: Collection[str] | None, **bindings: Any) -> tuple[int | None, dict[str, Any]]:
    """The name count for :func:`_queue_sql`, and *bindings* with the names added."""
    if names is None:
        return None, bindings
    if isinstance(names, str):
        raise TypeError(f"names must be a collection of job names, not the str {names!r}")
    chosen = sorted(set(names))
    if len(chosen) > BOUND_NAMES:
        bindings["names"] = json.dumps(chosen)
    else:
        bindings.update((f"n{i}", name) for i, name in enumerate(chosen))
    return len(chosen), bindings


_CLAIM_ONE = f"""
UPDATE jobs SET status = 'running', worker_id = :token, worker_started_at = :now,
    worker_expires_at = :until, attempt_count = attempt_count + 1,
    progress = 0, progress_message = NULL, updated_at = :now
WHERE id = :id AND status = 'pending'
RETURNING {SELECT}
"""

_HELD = "id = ? AND status = 'running' AND worker_id = ?"

_COMPLETE = f"""UPDATE jobs SET status = 'completed', result = ?, progress = 100, error = NULL,
    traceback = NULL, worker_expires_at = NULL, completed_at = ?, updated_at = ? WHERE {_HELD} RETURNING id"""
_RETRY = f"""UPDATE jobs SET status = 'pending', error = ?, traceback = ?, scheduled_for = ?,
    worker_id = NULL, worker_started_at = NULL, worker_expires_at = NULL, updated_at = ? WHERE {_HELD} RETURNING id"""
_FAIL = f"""UPDATE jobs SET status = 'failed', error = ?, traceback = ?, worker_expires_at = NULL,
    completed_at = ?, updated_at = ? WHERE {_HELD} RETURNING id"""
_CANCEL = f"""UPDATE jobs SET status = 'cancelled', error = ?, worker_expires_at = NULL,
    completed_at = ?, updated_at = ? WHERE {_HELD} RETURNING id"""
_RELEASE = f"""UPDATE jobs SET status = 'pending', attempt_count = attempt_count - 1, worker_id = NULL,
    worker_started_at = NULL, worker_expires_at = NULL, progress = 0, progress_message = NULL,
    updated_at = ? WHERE {_HELD} AND cancel_requested = 0"""
_RELEASE_CANCELLED = f"""UPDATE jobs SET status = 'cancelled', error = '{CANCELLED}', worker_expires_at = NULL,
    completed_at = ?, updated_at = ? WHERE {_HELD} AND cancel_requested = 1"""
_CANCEL_JOB = f"""UPDATE jobs SET
    status = CASE status WHEN 'pending' THEN 'cancelled' ELSE status END,
    error = CASE status WHEN 'pending' THEN '{CANCELLED}' ELSE error END,
    completed_at = CASE status WHEN 'pending' THEN :now ELSE completed_at END,
    cancel_requested = CASE status WHEN 'running' THEN 1 ELSE cancel_requested END,
    updated_at = :now
WHERE id = :id AND (status = 'pending' OR (status = 'running' AND cancel_requested = 0))"""
_RETRY_JOB = """UPDATE jobs SET status = 'pending', attempt_count = 0, result = NULL, progress = 0,
    progress_message = NULL, error = NULL, traceback = NULL, worker_id = NULL, worker_started_at = NULL,
    worker_expires_at = NULL, completed_at = NULL, cancel_requested = 0, scheduled_for = ?, updated_at = ?
WHERE id = ? AND status IN ('failed', 'cancelled') RETURNING id"""
_PURGE = """DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs INDEXED BY jobs_finished_idx
    WHERE completed_at IS NOT NULL AND status IN (SELECT value FROM json_each(?)) AND completed_at < ?
    ORDER BY completed_at, id LIMIT ?)"""
_HEARTBEAT = f"UPDATE jobs SET worker_expires_at = ?, updated_at = ? WHERE {_HELD} RETURNING id, cancel_requested"
_PROGRESS = f"UPDATE jobs SET progress = ?, progress_message = ?, updated_at = ? WHERE {_HELD}"
_EXPIRED = """SELECT id, attempt_count, max_attempts, cancel_requested FROM jobs INDEXED BY jobs_status_expires_idx
    WHERE status = 'running' AND worker_expires_at <= ?"""


def _transition_sql(t: Transition) -> tuple[str, tuple[Any, ...]]:
    match t:
        case Complete(job_id=job_id, token=token, result=result, at=at):
            return _COMPLETE, (result, ts(at), ts(at), job_id, token)
        case Retry(job_id=job_id, token=token, error=error, traceback=tb, at=at, run_at=run_at):
            return _RETRY, (error, tb, ts(run_at), ts(at), job_id, token)
        case Fail(job_id=job_id, token=token, error=error, traceback=tb, at=at):
            return _FAIL, (error, tb, ts(at), ts(at), job_id, token)
        case Cancel(job_id=job_id, token=token, reason=reason, at=at):
            return _CANCEL, (reason, ts(at), ts(at), job_id, token)
    raise TypeError(f"not a transition: {t!r}")  # pragma: no cover


def _writes(transitions: Sequence[Transition]) -> list[tuple[str, str, tuple[Any, ...]]]:
    """Each transition as (job id, statement, values); TypeError for anything else."""
    writes = []
    for t in transitions:
        sql, values = _transition_sql(t)  # first: it names what is not a transition
        writes.append((t.job_id, sql, values))
    return writes


def _apply(conn: apsw.Connection, writes: Sequence[tuple[str, str, tuple[Any, ...]]]) -> list[bool]:
    """Apply *writes* (from :func:`_writes`) in order; each True when its token still held the job.

    A run of writes of one kind on distinct jobs is one executemany (one prepared
    statement, one call into SQLite); a run that names a job twice goes one by one, so
    that the outcome is exactly that of applying them in order.
    """
    applied: list[bool] = []
    start = 0
    while start < len(writes):
        sql = writes[start][1]
        end = start + 1
        while end < len(writes) and writes[end][1] is sql:
            end += 1
        run = writes[start:end]
        ids = [job_id for job_id, _, _ in run]
        if len(set(ids)) == len(ids):
            done = {row[0] for row in conn.executemany(sql, [values for _, _, values in run])}
            applied.extend(job_id in done for job_id in ids)
        else:
            applied.extend(bool(list(conn.execute(sql, values))) for _, sql, values in run)
        start = end
    return applied


def _claimed(rows: list[Any]) -> list[JobRecord]:
    """The records a claim returned, in queue order (RETURNING promises no order)."""
    records = [_record(row) for row in rows]
    records.sort(key=lambda j: (-j.priority, j.scheduled_for, j.id))
    return records


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
            _create(self.path)
        _check_file(self.path)
        try:
            self._migrate(self._connection(), create=create, upgrade=upgrade)
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

    def _migrate(self, conn: apsw.Connection, *, create: bool, upgrade: bool) -> None:
        version = _version(conn, self.path)
        if version == 0 and not create:
            raise NotAJobkitDatabase(
                f"{self.path}: an empty SQLite database without jobkit's tables; left untouched "
                "(open it with create=True, e.g. by enqueuing a job, to make it a jobkit database)",
                path=self.path,
            )
        if version == SCHEMA_VERSION:
            if upgrade and any(_layout_changes(conn)):
                try:
                    if self._write(_upgrade_layout):
                        logger.info("%s: indexes and constraints brought up to date", self.path)
                except (apsw.Error, StoreError) as exc:  # e.g. a defensive build refusing writable_schema
                    logger.warning("%s: left with its older indexes and constraints (%s)", self.path, exc)
            return

        def build(conn: apsw.Connection) -> None:
            if _version(conn, self.path) == 0:  # re-read under the write lock: another process may have won
                conn.execute(SCHEMA)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        if conn.execute("PRAGMA journal_mode").fetchall()[0][0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        self._write(build)

    # -- jobs ---------------------------------------------------------------------
    def add(self, jobs: Sequence[JobRecord]) -> None:
        rows = [_row(job) for job in jobs]

        def insert(conn: apsw.Connection) -> None:
            try:
                conn.executemany(_INSERT, rows)
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
        return _record(rows[0]) if rows else None

    def claim(
        self,
        *,
        limit: int,
        now: datetime,
        token: str,
        lock_until: datetime,
        names: Collection[str] | None = None,
    ) -> list[JobRecord]:
        count, probe = _queue_bindings(names, now=ts(now))
        if limit <= 0 or count == 0:
            return []
        # A read first: an idle worker's claim must not take the write lock for nothing.
        if not self._read(_queue_sql(_DUE, count), probe):
            return []
        bindings = {**probe, "token": token, "until": ts(lock_until), "limit": limit}
        sql = _queue_sql(_CLAIM, count)
        return _claimed(self._write(lambda conn: list(conn.execute(sql, bindings))))

    def claim_job(self, job_id: str, *, now: datetime, token: str, lock_until: datetime) -> JobRecord | None:
        bindings = {"id": job_id, "token": token, "now": ts(now), "until": ts(lock_until)}
        rows = self._write(lambda conn: list(conn.execute(_CLAIM_ONE, bindings)))
        return _record(rows[0]) if rows else None

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        until, at = ts(lock_until), ts(now)
        if not leases:
            return {}

        def beat(conn: apsw.Connection) -> dict[str, bool]:
            held: dict[str, bool] = {}
            for lease in leases:
                for job_id, cancel in conn.execute(_HEARTBEAT, (until, at, lease.job_id, lease.token)):
                    held[job_id] = bool(cancel)
            return held

        return self._write(beat)

    def progress(self, lease: Lease, percent: int, message: str | None, *, now: datetime) -> bool:
        if not 0 <= percent <= 100:
            raise ValueError(f"progress must be from 0 to 100, not {percent!r}")
        at = ts(now)

        def write(conn: apsw.Connection) -> bool:
            conn.execute(_PROGRESS, (percent, message, at, lease.job_id, lease.token))
            return conn.changes() > 0

        return self._write(write)

    def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        if not transitions:
            return []
        writes = _writes(transitions)  # bad input is refused before the write lock is taken
        return self._write(lambda conn: _apply(conn, writes))

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
        count, bindings = _queue_bindings(names, now=ts(now), token=token, until=ts(lock_until), limit=limit)
        writes = _writes(transitions)  # bad input is refused before the write lock is taken
        take = limit > 0 and count != 0
        sql = _queue_sql(_CLAIM, count)

        def swap(conn: apsw.Connection) -> tuple[list[bool], list[Any]]:
            applied = _apply(conn, writes)
            return applied, list(conn.execute(sql, bindings)) if take else []

        applied, rows = self._write(swap)
        return applied, _claimed(rows)

    def release(self, leases: Sequence[Lease], *, now: datetime) -> list[bool]:
        at = ts(now)
        if not leases:
            return []

        def give_back(conn: apsw.Connection) -> list[bool]:
            released = []
            for lease in leases:
                conn.execute(_RELEASE, (at, lease.job_id, lease.token))
                done = conn.changes() > 0
                if not done:  # a job asked to cancel is not given back: it ends cancelled
                    conn.execute(_RELEASE_CANCELLED, (at, at, lease.job_id, lease.token))
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
            for job_id, attempts, max_attempts, cancelling in sorted(conn.execute(_EXPIRED, (at,))):
                error = worker_lost(attempts, max_attempts)
                if cancelling:
                    conn.execute(
                        """UPDATE jobs SET status = 'cancelled', error = ?, traceback = NULL,
                           worker_expires_at = NULL, completed_at = ?, updated_at = ? WHERE id = ?""",
                        (CANCELLED_WHILE_LOST, at, at, job_id),
                    )
                    report.cancelled.append(job_id)
                elif attempts >= max_attempts:
                    conn.execute(
                        """UPDATE jobs SET status = 'failed', error = ?, traceback = NULL,
                           worker_expires_at = NULL, completed_at = ?, updated_at = ? WHERE id = ?""",
                        (error, at, at, job_id),
                    )
                    report.failed.append(job_id)
                else:
                    conn.execute(
                        """UPDATE jobs SET status = 'pending', error = ?, traceback = NULL, scheduled_for = ?,
                           worker_id = NULL, worker_started_at = NULL, worker_expires_at = NULL,
                           updated_at = ? WHERE id = ?""",
                        (error, at, at, job_id),
                    )
                    report.retried.append(job_id)
            return report

        return self._write(reset)

    # -- operating ----------------------------------------------------------------
    def cancel(self, job_id: str, *, now: datetime) -> JobRecord | None:
        at = ts(now)

        def cancel(conn: apsw.Connection) -> list[Any]:
            conn.execute(_CANCEL_JOB, {"id": job_id, "now": at})
            return list(conn.execute(f"SELECT {SELECT} FROM jobs WHERE id = ?", (job_id,)))

        rows = self._write(cancel)
        return _record(rows[0]) if rows else None

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
            sent = {row[0] for row in conn.executemany(_RETRY_JOB, [(at, at, job_id) for job_id in unique])}
            return [job_id for job_id in unique if job_id in sent]

        return self._write(retry)

    def purge(self, *, statuses: Collection[JobStatus], before: datetime, limit: int) -> int:
        chosen = json.dumps(sorted(JobStatus(s).value for s in statuses if JobStatus(s).finished))
        cutoff = ts(before)
        if limit <= 0 or chosen == "[]":
            return 0

        def purge(conn: apsw.Connection) -> int:
            conn.execute(_PURGE, (chosen, cutoff, limit))
            return int(conn.changes())

        return self._write(purge)

    def summary(self, *, since: datetime) -> Summary:
        by_name: dict[str, dict[JobStatus, int]] = {}
        for name, status, n in self._read("SELECT job_name, status, count(*) FROM jobs GROUP BY job_name, status"):
            by_name.setdefault(name, dict.fromkeys(JobStatus, 0))[JobStatus(status)] = n
        oldest = self._read(f"SELECT min(scheduled_for) FROM {_PENDING}")[0][0]
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
            running=[_record(row) for row in running],
            failed_since=failed,
        )

    # -- recurring jobs -----------------------------------------------------------
    def put_schedule(self, schedule: Schedule) -> Schedule:
        row = (
            schedule.id,
            schedule.name,
            schedule.job_name,
            schedule.cron_expression,
            schedule.params,
            schedule.timezone,
            int(schedule.enabled),
            ts(schedule.next_run_at) if schedule.next_run_at else None,
            ts(schedule.created_at),
            ts(schedule.updated_at),
            ts(schedule.last_run_at) if schedule.last_run_at else None,
            schedule.last_job_id,
            int(schedule.declared),
        )
        rows = self._write(lambda conn: list(conn.execute(_PUT_SCHEDULE, row)))
        return _schedule(rows[0])

    def get_schedule(self, name: str) -> Schedule | None:
        rows = self._read(f"SELECT {SCHEDULE_SELECT} FROM cron_jobs WHERE name = ?", (name,))
        return _schedule(rows[0]) if rows else None

    def list_schedules(self) -> list[Schedule]:
        return [_schedule(row) for row in self._read(f"SELECT {SCHEDULE_SELECT} FROM cron_jobs ORDER BY name")]

    def remove_schedule(self, name: str) -> bool:
        def remove(conn: apsw.Connection) -> bool:
            conn.execute("DELETE FROM cron_jobs WHERE name = ?", (name,))
            return conn.changes() > 0

        return self._write(remove)

    def due_schedules(self, now: datetime) -> list[Schedule]:
        sql = f"""SELECT {SCHEDULE_SELECT} FROM cron_jobs WHERE enabled = 1 AND next_run_at <= ?
                  ORDER BY next_run_at, name"""
        return [_schedule(row) for row in self._read(sql, (ts(now),))]

    def fire_schedule(
        self, name: str, *, expected: datetime, fire_time: datetime, next_run_at: datetime, job: JobRecord
    ) -> bool:
        values = (ts(next_run_at), ts(fire_time), job.id, ts(job.created_at), name, ts(expected))
        row = _row(job)

        def fire(conn: apsw.Connection) -> bool:
            conn.execute(_FIRE, values)
            if conn.changes() == 0:
                return False
            conn.execute(_INSERT, row)
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
    ) -> list[JobRecord]:
        where = []
        bindings: dict[str, Any] = {"limit": max(limit, 0)}
        if status is not None:
            chosen = _STATUS.get(status)
            if chosen is None:  # a status no job can have
                return []
            # Written into the SQL (from the allow-list above), not bound: the planner
            # picks a partial index by the status it sees in the text (QPSG hides bound values).
            where.append(f"status = '{chosen.value}'")
            if chosen.finished:  # always so for these (a CHECK), and it lets the finished index serve
                where.append("completed_at IS NOT NULL")
        for column, value in (("job_name", name), ("correlation_id", correlation_id)):
            if value is not None:
                where.append(f"{column} = :{column}")
                bindings[column] = value
        if name is None:
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            sql = f"SELECT {SELECT} FROM jobs {clause} ORDER BY created_at DESC, id DESC LIMIT :limit"
        else:
            # The name index holds finished jobs only; pending and running ones of that
            # name are found through the (small) indexes of their own status.
            filters = " AND ".join(where)
            parts = [
                f"SELECT {SELECT} FROM {source} AND {filters}"
                for source, statuses in _BY_STATUS
                if status is None or status in statuses
            ]
            sql = f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY created_at DESC, id DESC LIMIT :limit"
        return [_record(row) for row in self._read(sql, bindings)]

    def next_due(self, names: Collection[str] | None = None) -> datetime | None:
        count, bindings = _queue_bindings(names)
        rows = self._read(_queue_sql(_NEXT_DUE, count), bindings)
        return dt(rows[0][0]) if rows and rows[0][0] else None

    def data_version(self) -> int:
        # The pragma, not Connection.data_version(): only the pragma sees other connections' commits.
        return int(self._connection().execute("PRAGMA data_version").fetchall()[0][0])  # type: ignore[arg-type]

    def change_file(self) -> str | None:
        """The WAL: every commit writes to it, so watching it shows commits by any process."""
        return f"{self.path}-wal"

    # -- lifecycle ----------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        try:
            conn = self._connection()
            mode = conn.execute("PRAGMA journal_mode").fetchall()[0][0]
            (pending,) = conn.execute(f"SELECT count(*) FROM {_PENDING}").fetchall()[0]
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


def _version(conn: apsw.Connection, path: str) -> int:
    """The schema version of a jobkit file, 0 for a blank SQLite file; refuse anything else."""
    try:
        app_id = int(conn.execute("PRAGMA application_id").fetchall()[0][0])  # type: ignore[arg-type]
        version = int(conn.execute("PRAGMA user_version").fetchall()[0][0])  # type: ignore[arg-type]
        tables = int(conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0][0])  # type: ignore[arg-type]
    except apsw.NotADBError as exc:
        raise NotAJobkitDatabase(f"{path}: not a SQLite database; left untouched", path=path) from exc
    if app_id == 0 and version == 0 and tables == 0:
        return 0
    if app_id != APPLICATION_ID:
        raise NotAJobkitDatabase(
            f"{path}: a SQLite database that jobkit did not create (application_id {app_id}); left untouched",
            path=path,
        )
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path}: schema version {version} is newer than this jobkit understands ({SCHEMA_VERSION}); "
            "upgrade jobkit. The file was left untouched",
            path=path,
        )
    if version < 1:
        raise NotAJobkitDatabase(f"{path}: jobkit mark without a schema version; left untouched", path=path)
    return version


def _check_file(path: str) -> None:
    """Refuse, before SQLite touches it, a file that cannot be a jobkit database."""
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except IsADirectoryError as exc:
        raise NotAJobkitDatabase(f"{path}: is a directory, not a database file", path=path) from exc
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}", path=path) from exc
    if not header:
        raise NotAJobkitDatabase(
            f"{path}: the file is empty, not a jobkit database; left untouched "
            "(remove it, or give a path that does not exist yet to create one)",
            path=path,
        )
    if header != SQLITE_HEADER:
        raise NotAJobkitDatabase(f"{path}: not a SQLite database; left untouched", path=path)


def _create(path: str) -> None:
    """Build a new database beside *path* and link it into place, atomically."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise StoreError(f"{path}: the folder {folder} does not exist", path=path)
    aside = folder / f".{Path(path).name}.{os.getpid()}.{random.getrandbits(32):08x}.new"
    try:
        conn = apsw.Connection(str(aside))
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(SCHEMA)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection checkpoints and removes the WAL
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError:
            if not os.path.exists(path):  # a file system without hard links
                os.replace(aside, path)
    finally:
        for leftover in (aside, Path(f"{aside}-wal"), Path(f"{aside}-shm")):
            leftover.unlink(missing_ok=True)
