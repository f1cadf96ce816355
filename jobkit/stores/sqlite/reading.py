"""Reading jobs rows one at a time, so that a row another tool wrote harms only itself.

RELIABILITY.md 10 and 13: a row whose values are not as jobkit writes them (SQLite's
``datetime()`` text for a time, garbage, text in a count) raises
:class:`~jobkit.stores.sqlite.codec.UnreadableRow` for itself alone. What each reader
does with it:

- a claim fails it at once, spending the attempt the claim counted, with an error that
  names the column and the value; the rest of the batch runs;
- a listing, the summary and the due schedules leave it out, logging a warning that names it, and a page
  is filled up past it so that paging stays whole;
- ``min(scheduled_for)`` passes over a time in another form;
- the reaper counts a lock expiry in another form as run out (in the SQL of
  :mod:`.queries`); ``get`` raises the error to its caller.

Also here: the reads a claim makes before the write lock (:func:`claim_step`), and the
summary, backlog and counts the status views read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import apsw

from jobkit import lifecycle
from jobkit.errors import StoreError
from jobkit.model import Attempt, Backlog, JobRecord, JobStatus, Schedule, Summary
from jobkit.stores.refusals import check_ids, check_parents, chosen_queues
from jobkit.stores.sqlite import queries
from jobkit.stores.sqlite.codec import UnreadableRow, dt, record_of, records_of, row_of, schedule_of, ts
from jobkit.stores.sqlite.errors import store_error
from jobkit.stores.sqlite.listing import RawCursor, raw_cursor
from jobkit.stores.sqlite.schema import SELECT
from jobkit.stores.writes import dependencies

if TYPE_CHECKING:  # only in annotations: no import of the port at run time
    from jobkit.store import Cursor

logger = logging.getLogger("jobkit")

Read = Callable[[str, Mapping[str, Any]], list[Any]]
Run = Callable[[Sequence[queries.Step]], list[Any]]


def readable(path: str, rows: Sequence[Any], consequence: str) -> list[JobRecord]:
    """The records of *rows*, each decoded alone; each one that cannot be read is logged with *consequence*."""
    records, unreadable = records_of(rows)
    for problem in unreadable:
        logger.warning("%s: %s; %s", path, problem, consequence)
    return records


def schedules(path: str, rows: Sequence[Any], consequence: str) -> list[Schedule]:
    """The schedules of cron_jobs *rows*, each decoded alone; each one that cannot be read is logged and left out."""
    found: list[Schedule] = []
    for row in rows:
        try:
            found.append(schedule_of(row))
        except UnreadableRow as problem:
            logger.warning("%s: %s; %s", path, problem, consequence)
    return found


def claimed(path: str, rows: list[Any], token: str, now: datetime, run: Run, *, alone: bool = False) -> list[JobRecord]:
    """The records a claim returned, in queue order; a row that cannot be read fails alone.

    Its attempt is spent (the claim counted it) and its error names the column and the
    value, so it neither runs nor comes back. Should that write fail, the row stays held
    until its lock runs out and the reaper has it. *alone* (a claim of one given job):
    raise its error once it is failed.
    """
    records, unreadable = queries.claimed(rows)
    if not unreadable:
        return records
    for problem in unreadable:
        logger.error("%s: %s; it failed without running", path, problem)
    at = ts(now)
    failures = [(f"{problem}; jobkit cannot run it", None, at, at, problem.row_id, token) for problem in unreadable]
    try:
        run([(queries.FAIL, failures, "many")])
    except StoreError as exc:
        logger.error("%s: could not mark them failed (%s); left for the reaper", path, exc)
    if alone:
        raise unreadable[0]
    return records


def earliest(read: Read, sql: str, bindings: Mapping[str, Any]) -> datetime | None:
    """The time a ``min(scheduled_for)`` query gives; past a time in another form, the earliest readable one."""
    (first,) = read(sql, bindings)[0]
    if first is None:
        return None
    try:
        return dt(first)
    except ValueError:
        (first,) = read(queries.readable_times(sql), bindings)[0]
        return dt(first) if first is not None else None


PageQuery = Callable[[int, "Cursor | RawCursor | None"], "tuple[str, dict[str, Any]] | None"]


def page(
    path: str,
    read: Read,
    query_of: PageQuery,
    limit: int,
    after: Cursor | None,
    *,
    cursor_of: Callable[[Sequence[Any]], RawCursor] = raw_cursor,
) -> list[JobRecord]:
    """Up to *limit* readable jobs from the query *query_of* builds (for a limit and a cursor), in its order.

    Rows that cannot be read are left out and the page filled up past them, so that a
    caller paging on with the last record's cursor misses nothing. *cursor_of* is where
    a row leaves the listing (the columns it is ordered by, as stored).
    """
    found: list[JobRecord] = []
    cursor: Cursor | RawCursor | None = after
    while True:
        want = limit - len(found)
        query = query_of(want, cursor)
        if query is None:
            return found
        rows = read(*query)
        records = readable(path, rows, "left out of the list")
        found += records
        if len(records) == len(rows) or len(rows) < want:
            return found
        cursor = cursor_of(rows[-1])


def counts(read: Read) -> dict[JobStatus, int]:
    """How many jobs are in each status: one query per partial index, each counting from its index alone."""
    found = dict.fromkeys(JobStatus, 0)
    (pending,) = read(f"SELECT (SELECT count(*) FROM {queries.PENDING}) + (SELECT count(*) FROM {queries.WAITING})", {})
    (running,) = read("SELECT count(*) FROM jobs INDEXED BY jobs_status_expires_idx WHERE status = 'running'", {})
    found[JobStatus.PENDING], found[JobStatus.RUNNING] = pending[0], running[0]
    for status, n in read("SELECT status, count(*) FROM jobs WHERE completed_at IS NOT NULL GROUP BY status", {}):
        found[JobStatus(status)] = n
    return found


def summary(path: str, read: Read, *, since: datetime) -> Summary:
    """The summary of the file at *path*, read through *read*; unreadable running rows are left out."""
    by_name: dict[str, dict[JobStatus, int]] = {}
    for name, status, n in read("SELECT job_name, status, count(*) FROM jobs GROUP BY job_name, status", {}):
        by_name.setdefault(name, dict.fromkeys(JobStatus, 0))[JobStatus(status)] = n
    return Summary(
        counts=counts(read),
        by_name=dict(sorted(by_name.items())),
        oldest_pending=earliest(read, queries.OLDEST_PENDING, {}),
        running=readable(path, read(queries.RUNNING_JOBS, {}), "left out of the running jobs"),
        failed_since=read(queries.FAILED_SINCE, (ts(since),))[0][0],  # type: ignore[arg-type]
    )


def backlog(path: str, read: Read, *, now: datetime) -> Backlog:
    """Pending jobs due at *now* and later, with the first of each (an unreadable row is not shown)."""
    (found,), oldest, following = (read(sql, {"now": ts(now)}) for sql in queries.BACKLOG_READS)
    shown = readable(path, oldest, "not shown as the oldest due"), readable(path, following, "not shown as next")
    return queries.backlog(found, *shown)


def claim_step(
    read: Read,
    limit: int,
    now: datetime,
    token: str,
    lock_until: datetime,
    *,
    names: Collection[str] | None,
    queues: Mapping[str, int] | None,
    retried: list[str] | None = None,
) -> queries.Step | None:
    """The claim for *names* and *queues*; None when it would take nothing.

    *retried*: after outcomes, the jobs they make pending again. The queues it takes from
    are read first, through *read*, before the write lock (queries.QUEUES_TO_CLAIM).
    """
    caps = chosen_queues(queues)
    count, probe = queries.queue_bindings(names, now=ts(now))
    if limit <= 0 or count == 0 or caps == {}:
        return None
    candidates = "given" if caps is not None else "pending" if retried is None else "retried"
    found = {"among": json.dumps(list(caps or ())), "retried": json.dumps(retried or [])}
    sql = queries.queues_to_claim_sql(candidates, retried is None, count)
    due = [row[0] for row in read(sql, {**probe, **found})]
    if not due:
        return None
    bindings = queries.claim_bindings(due, caps, limit, {**probe, "token": token, "until": ts(lock_until)})
    return queries.claim_sql(len(due), count), bindings, "rows"


def attempts(conn: apsw.Connection, path: str, job_id: str) -> list[Attempt]:
    """The timeline of a job: its history rows and its record, read in one snapshot; empty for an unknown id."""
    try:
        with conn:  # a transaction of reads: the history and the record as of one moment
            history = list(conn.execute(queries.ATTEMPTS, (job_id,)))
            rows = list(conn.execute(f"SELECT {SELECT} FROM jobs WHERE id = ?", (job_id,)))
    except apsw.Error as exc:
        raise store_error(path, exc, writing=False) from exc
    if not rows:
        return []
    recorded = [
        Attempt(number, worker, _time(started), dt(ended), outcome, error, tb)
        for number, worker, started, ended, outcome, error, tb in history
    ]
    return lifecycle.timeline(record_of(rows[0]), recorded)


def _time(value: str | None) -> datetime | None:
    return None if value is None else dt(value)


def adding(jobs: Sequence[JobRecord], keys: str | None, conn: apsw.Connection) -> list[str]:
    """In the add's transaction, for jobs with unique keys or jobs they run after: the add; the id of each.

    A taken id is refused first, then a job named in ``after`` that does not exist. Then
    :func:`lifecycle.added` decides, from who holds the keys and the parents' statuses
    read here under the write lock, what is written; no other writer can come between.
    """
    taken = [row[0] for row in conn.execute(queries.TAKEN, (json.dumps([job.id for job in jobs]),))]
    check_ids(jobs, taken)
    parents = sorted({parent for job in jobs for parent in job.depends_on})
    statuses = {job_id: JobStatus(status) for job_id, status in conn.execute(queries.PARENTS, (json.dumps(parents),))}
    check_parents(parents, statuses)
    holders = conn.execute(queries.HOLDERS, (keys,)) if keys is not None else ()
    written, ids = lifecycle.added(jobs, {(name, key): job_id for name, key, job_id in holders}, statuses)
    conn.executemany(queries.INSERT, [row_of(job) for job in written])
    conn.executemany(queries.DEPEND, dependencies(written, [job.id for job in written]))
    return ids
