"""Rows to values and back: times as UTC text with a trailing Z, statuses as their names.

Tuples follow :data:`~jobkit.stores.sqlite.schema.COLUMNS` and
:data:`~jobkit.stores.sqlite.schema.SCHEDULE_COLUMNS`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from jobkit.model import JobRecord, JobStatus, Schedule


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


STATUS = {status.value: status for status in JobStatus}  # faster than JobStatus(text); holds the enum too


def record_of(row: Sequence[Any]) -> JobRecord:
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
        status=STATUS.get(status) or JobStatus(status),
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
    )


def schedule_of(row: Sequence[Any]) -> Schedule:
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
