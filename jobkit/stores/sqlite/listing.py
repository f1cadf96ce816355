"""The reads of pages of jobs: ``list_jobs`` newest first by ``(created_at, id)``, ``finished`` in the order
jobs ended, by ``(completed_at, id)``; each one SELECT, and the cursor a page ends at.

What is written into the text (a status, which index) comes from allow-lists, so that the
planner sees it (QPSG hides bound values); every value is bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobkit.model import FINISHED, JobStatus
from jobkit.stores.filters import Listing
from jobkit.stores.sqlite.codec import STATUS, dt, ts
from jobkit.stores.sqlite.queries import BY_STATUS
from jobkit.stores.sqlite.schema import COLUMNS, SELECT

RawCursor = tuple[Any, str]
"""Where a page of rows ended, as stored: the time it is ordered by and the ``id`` of its last row, read or not."""

_CREATED, _COMPLETED = COLUMNS.index("created_at"), COLUMNS.index("completed_at")


def raw_cursor(row: Sequence[Any]) -> RawCursor:
    """The ``(created_at, id)`` of a listing's row, as stored."""
    return row[_CREATED], row[0]


def raw_finished_cursor(row: Sequence[Any]) -> RawCursor:
    """The ``(completed_at, id)`` of a row of ``finished``, as stored."""
    return row[_COMPLETED], row[0]


def _bound(value: Any) -> Any:
    return ts(value) if isinstance(value, datetime) else value


_NEWEST = "created_at DESC, id DESC"
# A page of text matches: params or error, ASCII letters folded (SQLite's lower() folds only those).
TEXT = "(instr(lower(params), :text) > 0 OR instr(lower(error), :text) > 0)"


Cursor = tuple[datetime, str] | RawCursor


def listing(chosen: Listing, limit: int, after: Cursor | None) -> tuple[str, dict[str, Any]] | None:
    """The SELECT of one page of jobs, newest first, with its bindings; None when no job can match.

    *after* keeps the rows that sort after the cursor in that order: a row-value
    comparison, ``(created_at, id) < (:after_created, :after_id)``.
    """
    where = []
    bindings: dict[str, Any] = {"limit": max(limit, 0)}
    status = None
    if chosen.status is not None:
        status = STATUS.get(chosen.status)
        if status is None:  # a status no job can have
            return None
        # Written into the SQL (from the allow-list above), not bound: the planner
        # picks a partial index by the status it sees in the text (QPSG hides bound values).
        where.append(f"status = '{status.value}'")
        if status.finished:  # always so for these (a CHECK), and it lets the finished index serve
            where.append("completed_at IS NOT NULL")
        if status.finished and status is not JobStatus.COMPLETED:  # so too: jobs_unhappy_idx serves
            where.append("status <> 'completed'")
    for column, value in chosen.columns.items():  # columns from fixed keys, values bound
        if value is not None:
            where.append(f"{column} = :{column}")
            bindings[column] = value
    if chosen.text is not None:
        where.append(TEXT)
        bindings["text"] = chosen.text
    for bound, sign, time in (("from", ">=", chosen.created_from), ("until", "<", chosen.created_until)):
        if time is not None:
            where.append(f"created_at {sign} :created_{bound}")
            bindings[f"created_{bound}"] = ts(time)
    if after is not None:
        where.append("(created_at, id) < (:after_created, :after_id)")
        bindings["after_created"], bindings["after_id"] = _bound(after[0]), after[1]
    if chosen.name is None and status is not JobStatus.PENDING:
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {SELECT} FROM {_source(chosen, status)} {clause} ORDER BY {_NEWEST} LIMIT :limit", bindings
    # The name index holds finished jobs only; pending and running ones of that
    # name are found through the (small) indexes of their own status, as are pending
    # jobs of any name (two indexes: the ready ones, and those waiting for others).
    conditions = " AND ".join(where)
    parts = [
        f"SELECT {SELECT} FROM {source} AND {conditions}"
        for source, statuses in BY_STATUS
        if status is None or status in statuses
    ]
    return f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY {_NEWEST} LIMIT :limit", bindings


def _source(chosen: Listing, status: JobStatus | None) -> str:
    """Where a listing with no name filter reads, when the planner would choose worse.

    Completed jobs are most of the table: reading the creation index newest first and
    passing over the others fills a page at once, where the finished index would give
    every completed job to sort (a correlation id has an index of its own, and few jobs).
    Running jobs are few: their own index, rather than the creation index the planner
    would pick to spare itself a sort, and walk past every finished job.
    """
    if status is JobStatus.COMPLETED and chosen.correlation_id is None:
        return "jobs INDEXED BY jobs_created_idx"
    if status is JobStatus.RUNNING:
        return "jobs INDEXED BY jobs_status_expires_idx"
    return "jobs"


def cursor_after(count: int, after: Cursor | None) -> tuple[str, dict[str, Any]]:
    """The ``(created_at, id)`` *count* jobs on from *after*, newest first: an OFFSET along the creation index."""
    bindings: dict[str, Any] = {"skip": count - 1}
    clause = ""
    if after is not None:
        clause = "WHERE (created_at, id) < (:after_created, :after_id)"
        bindings["after_created"], bindings["after_id"] = _bound(after[0]), after[1]
    source = "jobs INDEXED BY jobs_created_idx"
    return f"SELECT created_at, id FROM {source} {clause} ORDER BY {_NEWEST} LIMIT 1 OFFSET :skip", bindings


def read_cursor(rows: Sequence[Sequence[Any]]) -> tuple[datetime, str] | None:
    """The cursor :func:`cursor_after` read; None too when its time is not one jobkit writes (no bound, then)."""
    try:
        return (dt(rows[0][0]), rows[0][1]) if rows else None
    except ValueError:
        return None


# Store.finished: no index of its own, so that a completion writes no more index entries than
# it did. The finished index is (status, completed_at) and, the table being WITHOUT ROWID, each
# entry ends with the id: for one status its entries are in (completed_at, id) order. So each
# status is one range of it, and the three ranges are merged (MERGE (UNION ALL)), each read
# only as far as the page needs.
_FINISHED_ARM = f"""SELECT {SELECT} FROM jobs INDEXED BY jobs_finished_idx
    WHERE status = '{{status}}' AND completed_at IS NOT NULL AND completed_at < :until {{after}}"""
_FINISHED_AFTER = "AND (completed_at, id) > (:after_at, :after_id)"  # a range of the index too


def finished(until: datetime, limit: int, after: Cursor | None) -> tuple[str, dict[str, Any]]:
    """The SELECT of one page of finished jobs, in the order they ended, with its bindings."""
    arms = " UNION ALL ".join(
        _FINISHED_ARM.format(status=status.value, after="" if after is None else _FINISHED_AFTER)
        for status in sorted(FINISHED)
    )
    bindings: dict[str, Any] = {"until": ts(until), "limit": max(limit, 0)}
    if after is not None:
        bindings["after_at"], bindings["after_id"] = _bound(after[0]), after[1]
    return f"{arms} ORDER BY completed_at, id LIMIT :limit", bindings
