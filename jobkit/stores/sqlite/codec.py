"""Rows to values and back: times as UTC text with a trailing Z, statuses as their names.

Tuples follow :data:`~jobkit.stores.sqlite.schema.COLUMNS` and
:data:`~jobkit.stores.sqlite.schema.SCHEDULE_COLUMNS`.

A row is read back only if every value is as jobkit writes it: a row another tool wrote
in its own form (SQLite's ``datetime()`` text, a number for a time, text for a count)
raises :class:`UnreadableRow`, naming the column and the value, for that row alone
(RELIABILITY.md 10 and 13): callers decode row by row and decide what becomes of it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from jobkit.errors import StoreError
from jobkit.model import JobRecord, JobStatus, Schedule, require_aware
from jobkit.stores.sqlite.schema import COLUMNS, SCHEDULE_COLUMNS

# The one stored form of a time, as a shape: every digit a "d". Fixed width, so that
# stored times sort as text exactly as they compare as times, which the SQL relies on.
_SHAPE = "dddd-dd-ddTdd:dd:dd.ddddddZ"
TIME_GLOB = _SHAPE.replace("d", "[0-9]")
"""A GLOB pattern that a stored time matches and no other text does (for the SQL)."""
_TIME = re.compile(re.escape(_SHAPE).replace("d", "[0-9]") + r"\Z")
EXAMPLE = "2026-12-02T10:00:00.000000Z"


class UnreadableRow(StoreError, ValueError):
    """A row whose *column* holds *value*, which is not as jobkit writes it (a row another tool wrote)."""

    def __init__(self, row_id: object, column: str, value: object, expected: str, *, table: str = "jobs") -> None:
        shown = repr(value) if len(repr(value)) <= 80 else f"{repr(value)[:77]}..."
        what = "job" if table == "jobs" else "schedule"
        super().__init__(f"{what} {row_id}: {column} {shown} cannot be read: not {expected}")
        self.row_id, self.column, self.value = row_id, column, value


def ts(value: datetime) -> str:
    """The stored form of a time: UTC, ISO 8601, microseconds, trailing Z."""
    if value.tzinfo is timezone.utc:  # as records hold them
        return _utc_text(value)
    require_aware(value)
    # Converted before the cache: two local times that differ only in `fold` (the
    # repeated hour of a DST change) compare and hash equal, but are an hour apart.
    return _utc_text(value.astimezone(timezone.utc))


@functools.lru_cache(maxsize=256)  # a batch shares its times: format each once
def _utc_text(value: datetime) -> str:
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@functools.lru_cache(maxsize=1024)  # a claim reads many rows enqueued together
def dt(value: str) -> datetime:
    """Read a stored time back as an aware UTC datetime; ValueError for text in any other form."""
    if type(value) is not str or not _TIME.match(value):
        raise ValueError(f"{value!r} is not a time as jobkit stores it ({EXAMPLE})")
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)


STATUS = {status.value: status for status in JobStatus}  # faster than JobStatus(text); holds the enum too


def record_of(row: Sequence[Any]) -> JobRecord:
    """The record a jobs row holds; :class:`UnreadableRow` when a value is not as jobkit writes it."""
    try:
        return _record(row)
    except (ValueError, TypeError, KeyError):
        raise _unreadable(row, COLUMNS, _JOB_CHECKS, "jobs") from None


def records_of(rows: Sequence[Sequence[Any]]) -> tuple[list[JobRecord], list[UnreadableRow]]:
    """Each row decoded on its own: the records, and what made the other rows unreadable."""
    records: list[JobRecord] = []
    unreadable: list[UnreadableRow] = []
    for row in rows:
        try:
            records.append(record_of(row))
        except UnreadableRow as exc:
            unreadable.append(exc)
    return records, unreadable


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
        queue,
        unique_key,
        depends_on,
        waiting_for,
    ) = row
    if not (
        type(max_attempts) is int
        and type(attempt_count) is int
        and type(priority) is int
        and type(progress) is int
        and type(waiting_for) is int
    ):
        raise TypeError("a count that is not an integer")
    if type(params) is not str or type(job_name) is not str or type(queue) is not str:
        raise TypeError("params, job_name or queue that is not text")
    return JobRecord(  # positional, in COLUMNS order (a claim builds hundreds a second; keywords cost 20% more)
        id_,
        job_name,
        params,
        STATUS.get(status) or JobStatus(status),
        dt(scheduled_for),
        dt(created_at),
        dt(updated_at),
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
        dt(worker_started_at) if worker_started_at is not None else None,
        dt(worker_expires_at) if worker_expires_at is not None else None,
        dt(completed_at) if completed_at is not None else None,
        bool(cancel_requested),
        queue,
        unique_key,
        json.loads(depends_on) if depends_on is not None else (),
        waiting_for,
    )


def row_of(job: JobRecord) -> tuple[Any, ...]:
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
        job.queue,
        job.unique_key,
        json.dumps(job.depends_on) if job.depends_on else None,
        job.waiting_for,
    )


def schedule_of(row: Sequence[Any]) -> Schedule:
    """The schedule a cron_jobs row holds; :class:`UnreadableRow` when a value is not as jobkit writes it."""
    try:
        return _schedule(row)
    except (ValueError, TypeError):
        raise _unreadable(row, SCHEDULE_COLUMNS, _SCHEDULE_CHECKS, "cron_jobs") from None


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
        next_run_at=dt(next_run_at) if next_run_at is not None else None,
        created_at=dt(created),
        updated_at=dt(updated),
        last_run_at=dt(last_run) if last_run is not None else None,
        last_job_id=last_job,
        declared=bool(declared),
    )


def schedule_row(schedule: Schedule) -> tuple[Any, ...]:
    return (
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


# -- naming what cannot be read ---------------------------------------------------------
Check = tuple[Callable[[Any], bool], str]  # (is it readable, what it should have been)
_TEXT: Check = (lambda v: type(v) is str, "text")
_TEXT_OR_NULL: Check = (lambda v: v is None or type(v) is str, "text or NULL")
_INTEGER: Check = (lambda v: type(v) is int, "an integer")
_FLAG: Check = (lambda v: v in (0, 1), "0 or 1")


def _is_time(value: object) -> bool:
    try:
        dt(value)
    except ValueError:
        return False
    return True


_TIME_CHECK: Check = (_is_time, f"a time as jobkit stores it, UTC like {EXAMPLE!r}")
_TIME_OR_NULL: Check = (lambda v: v is None or _is_time(v), f"a time as jobkit stores it, UTC like {EXAMPLE!r}")
_JOB_CHECKS: dict[str, Check] = {
    "id": _TEXT,
    "job_name": _TEXT,
    "params": _TEXT,
    "status": (lambda v: v in STATUS, f"one of {', '.join(STATUS)}"),
    "scheduled_for": _TIME_CHECK,
    "created_at": _TIME_CHECK,
    "updated_at": _TIME_CHECK,
    "max_attempts": _INTEGER,
    "attempt_count": _INTEGER,
    "priority": _INTEGER,
    "progress": _INTEGER,
    "worker_started_at": _TIME_OR_NULL,
    "worker_expires_at": _TIME_OR_NULL,
    "completed_at": _TIME_OR_NULL,
    "cancel_requested": _FLAG,
    "queue": _TEXT,
    "waiting_for": _INTEGER,
}
_SCHEDULE_CHECKS: dict[str, Check] = {
    "id": _TEXT,
    "name": _TEXT,
    "job_name": _TEXT,
    "cron_expression": _TEXT,
    "params": _TEXT,
    "timezone": _TEXT,
    "enabled": _FLAG,
    "next_run_at": _TIME_OR_NULL,
    "created_at": _TIME_CHECK,
    "updated_at": _TIME_CHECK,
    "last_run_at": _TIME_OR_NULL,
    "declared": _FLAG,
}


def _unreadable(row: Sequence[Any], columns: Sequence[str], checks: dict[str, Check], table: str) -> UnreadableRow:
    """The error naming the first column of *row* whose value is not as jobkit writes it."""
    for column, value in zip(columns, row, strict=False):
        readable, expected = checks.get(column, _TEXT_OR_NULL)
        if not readable(value):
            return UnreadableRow(row[0], column, value, expected, table=table)
    return UnreadableRow(row[0], "?", tuple(row), "a row jobkit wrote", table=table)  # pragma: no cover
