"""The reads of pages of jobs a PostgresStore runs: ``list_jobs`` newest first by ``(created_at, id)``,
``finished`` in the order jobs ended, by ``(completed_at, id)``. Every value is bound.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobkit.model import FINISHED, JobStatus
from jobkit.stores.filters import Listing
from jobkit.stores.postgres.queries import SELECT

# A text filter: params or error hold the text given (folded already), ASCII letters folded.
# lower() under the "C" collation folds only A-Z, whatever the database's locale (which would
# fold Ü too, as no other store does); it is some 30 times quicker than a translate() doing so.
TEXT = """(strpos(lower(params COLLATE "C"), %(text)s) > 0 OR strpos(lower(error COLLATE "C"), %(text)s) > 0)"""


def listing(chosen: Listing, limit: int) -> tuple[str, dict[str, Any]]:
    """One page of jobs, newest first, from the filters of *chosen* (each bound)."""
    where = []
    bindings: dict[str, Any] = {"limit": max(limit, 0)}
    if chosen.status is not None:
        where.append("status = %(status)s")
        bindings["status"] = JobStatus(chosen.status).value
        if JobStatus(chosen.status).finished:
            where.append("completed_at IS NOT NULL")  # lets the finished index serve
    for column, value in chosen.columns.items():  # columns from fixed keys, values bound
        if value is not None:
            where.append(f"{column} = %({column})s")
            bindings[column] = value
    if chosen.text is not None:
        where.append(TEXT)
        bindings["text"] = chosen.text
    if chosen.created_from is not None:
        where.append("created_at >= %(created_from)s")
        bindings["created_from"] = chosen.created_from
    if chosen.created_until is not None:
        where.append("created_at < %(created_until)s")
        bindings["created_until"] = chosen.created_until
    if chosen.after is not None:
        where.append("(created_at, id) < (%(after_created)s, %(after_id)s)")
        bindings["after_created"], bindings["after_id"] = chosen.after
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {SELECT} FROM {{s}}.jobs {clause} ORDER BY created_at DESC, id DESC LIMIT %(limit)s", bindings


def cursor_after(count: int, after: tuple[datetime, str] | None) -> tuple[str, dict[str, Any]]:
    """The ``(created_at, id)`` *count* jobs on from *after*, newest first: an OFFSET along the creation index."""
    bindings: dict[str, Any] = {"skip": count - 1}
    clause = ""
    if after is not None:
        clause = "WHERE (created_at, id) < (%(after_created)s, %(after_id)s)"
        bindings["after_created"], bindings["after_id"] = after
    sql = f"SELECT created_at, id FROM {{s}}.jobs {clause} ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET %(skip)s"
    return sql, bindings


# Store.finished: no index of its own, so that a completion writes no more index entries than
# it did. Each status is one range of the finished index (status, completed_at), read in
# completed_at order (ties, rare at microseconds, sorted by id as they come), as far as the
# page needs; the three short lists are then merged.
_FINISHED_ARM = f"""(SELECT {SELECT} FROM {{s}}.jobs WHERE status = '{{status}}' AND completed_at IS NOT NULL
    AND completed_at < %(until)s {{after}} ORDER BY completed_at, id LIMIT %(limit)s)"""
_FINISHED_AFTER = "AND (completed_at, id) > (%(after_at)s, %(after_id)s)"  # the planner bounds the range by it


def finished(until: datetime, limit: int, after: tuple[datetime, str] | None) -> tuple[str, dict[str, Any]]:
    """One page of finished jobs, in the order they ended (completed_at, then id), with its bindings."""
    arms = " UNION ALL ".join(
        _FINISHED_ARM.replace("{status}", status.value).replace("{after}", "" if after is None else _FINISHED_AFTER)
        for status in sorted(FINISHED)
    )
    bindings: dict[str, Any] = {"until": until, "limit": limit}
    if after is not None:
        bindings["after_at"], bindings["after_id"] = after
    return f"SELECT * FROM ({arms}) AS f ORDER BY completed_at, id LIMIT %(limit)s", bindings
