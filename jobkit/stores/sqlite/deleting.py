"""Deleting finished jobs from a SQLite file, by age (``purge``) or by id (``delete``): one rule for what goes too.

A job is deleted with its attempt history and the ``job_deps`` rows that name it, as
parent or as child (PostgreSQL's foreign keys cascade the same way): a job that ran after
it counts it as done from then on, and a new job given its id inherits nothing. All in one
write transaction, the history and dependencies first.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from jobkit.model import JobStatus
from jobkit.stores.refusals import chosen_ids
from jobkit.stores.sqlite.codec import ts
from jobkit.stores.sqlite.reading import Run

# The finished jobs a purge deletes: of the statuses given (?1, a JSON array), completed before ?2, the oldest ?3.
PURGED = """SELECT id FROM jobs INDEXED BY jobs_finished_idx
    WHERE completed_at IS NOT NULL AND status IN (SELECT value FROM json_each(?1)) AND completed_at < ?2
    ORDER BY completed_at, id LIMIT ?3"""
# The finished jobs among the ids given (?1, a JSON array).
CHOSEN = "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?1)) AND completed_at IS NOT NULL"


def deletion(doomed: str) -> tuple[str, str, str]:
    """The statements deleting the jobs the SELECT *doomed* picks and what goes with them; the last gives their ids."""
    return (
        f"DELETE FROM attempts WHERE job_id IN ({doomed})",
        f"DELETE FROM job_deps WHERE parent_id IN ({doomed}) OR child_id IN ({doomed})",
        f"DELETE FROM jobs WHERE id IN ({doomed}) RETURNING id",
    )


PURGE, DELETE = deletion(PURGED), deletion(CHOSEN)


def _run(run: Run, statements: Sequence[str], bindings: Sequence[Any]) -> list[str]:
    """Run *statements* in one write transaction; the ids of the jobs deleted."""
    *_, rows = run([(sql, bindings, "count") for sql in statements[:-1]] + [(statements[-1], bindings, "rows")])
    return [row[0] for row in rows]


def purge(run: Run, statuses: Collection[JobStatus], before: datetime, limit: int) -> list[str]:
    """Delete up to *limit* finished jobs of *statuses* completed before *before*, the oldest first; their ids."""
    chosen = json.dumps(sorted(JobStatus(s).value for s in statuses if JobStatus(s).finished))
    cutoff = ts(before)
    if limit <= 0 or chosen == "[]":
        return []
    return _run(run, PURGE, (chosen, cutoff, limit))


def delete(run: Run, job_ids: Sequence[str]) -> list[str]:
    """Delete the finished jobs among *job_ids*; the ids deleted, each once, in the order given."""
    chosen = chosen_ids(job_ids)
    if not chosen:
        return []
    deleted = set(_run(run, DELETE, (json.dumps(chosen),)))
    return [job_id for job_id in chosen if job_id in deleted]
