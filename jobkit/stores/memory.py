"""MemoryStore: the jobs table as a dict, for tests and notebooks.

It behaves exactly like SqliteStore (the agreement test checks it), minus durability:
records live as long as the object. Thread-safe; one lock guards every operation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import attrs

from jobkit.errors import JobkitError
from jobkit.model import (
    CANCELLED,
    CANCELLED_WHILE_LOST,
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

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING

# The CHECK constraints of SqliteStore's jobs table, so that both stores refuse the same records.
INVARIANTS: tuple[tuple[str, Callable[[JobRecord], bool]], ...] = (
    ("length(job_name) > 0", lambda j: bool(j.job_name)),
    ("progress BETWEEN 0 AND 100", lambda j: 0 <= j.progress <= 100),
    ("attempt_count >= 0", lambda j: j.attempt_count >= 0),
    ("max_attempts >= 1", lambda j: j.max_attempts >= 1),
    (
        "a running job has worker_id and worker_expires_at",
        lambda j: j.status is not RUNNING or (j.worker_id is not None and j.worker_expires_at is not None),
    ),
    (
        "completed_at is set exactly when the job is finished",
        lambda j: (j.completed_at is not None) == j.status.finished,
    ),
)


def claim_order(record: JobRecord) -> tuple[int, datetime, str]:
    """Highest priority first, then earliest scheduled, then oldest id."""
    return (-record.priority, record.scheduled_for, record.id)


def aware(*times: datetime | None) -> None:
    """Refuse naive times, as SqliteStore does: they cannot be compared with stored ones."""
    for value in times:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: jobkit needs timezone-aware times")


def check(jobs: Sequence[JobRecord]) -> None:
    """Refuse records that SqliteStore would refuse, with the same error types and in the same order."""
    for job in jobs:
        aware(
            job.scheduled_for,
            job.created_at,
            job.updated_at,
            job.worker_started_at,
            job.worker_expires_at,
            job.completed_at,
        )
    for job in jobs:
        for rule, holds in INVARIANTS:
            if not holds(job):
                raise JobkitError(f"cannot add jobs: job {job.id!r} breaks the constraint {rule}")


def check_percent(percent: int) -> None:
    if not 0 <= percent <= 100:
        raise ValueError(f"progress must be from 0 to 100, not {percent!r}")


def check_names(names: Collection[str] | None) -> None:
    if isinstance(names, str):
        raise TypeError(f"names must be a collection of job names, not the str {names!r}")


def _ended(job: JobRecord, status: JobStatus, error: str | None, at: datetime, **more: Any) -> JobRecord:
    """*job* finished with *status* at *at*: no longer locked (it keeps who ran it)."""
    return attrs.evolve(job, status=status, error=error, worker_expires_at=None, completed_at=at, updated_at=at, **more)


class _Table(dict[str, JobRecord]):
    """The jobs by id, counting writes so pollers can see that something changed."""

    version = 0

    def __setitem__(self, job_id: str, job: JobRecord) -> None:
        super().__setitem__(job_id, job)
        self.version += 1


class MemoryStore:
    """The jobs table in a dict; same behaviour as SqliteStore, nothing on disk."""

    shared = False

    def __init__(self) -> None:
        self._jobs = _Table()
        self._schedules: dict[str, Schedule] = {}
        self._lock = threading.RLock()

    # -- jobs ---------------------------------------------------------------------
    def add(self, jobs: Sequence[JobRecord]) -> None:
        check(jobs)
        with self._lock:
            ids = [job.id for job in jobs]
            if len(set(ids)) != len(ids) or any(job_id in self._jobs for job_id in ids):
                raise JobkitError(f"a job id is already taken among {ids}")
            for job in jobs:
                self._jobs[job.id] = job

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def claim(
        self,
        *,
        limit: int,
        now: datetime,
        token: str,
        lock_until: datetime,
        names: Collection[str] | None = None,
    ) -> list[JobRecord]:
        check_names(names)
        aware(now, lock_until)
        if limit <= 0 or (names is not None and not names):
            return []
        with self._lock:
            due = [
                job
                for job in self._jobs.values()
                if job.status is PENDING and job.scheduled_for <= now and (names is None or job.job_name in names)
            ]
            due.sort(key=claim_order)
            return [self._take(job, now=now, token=token, lock_until=lock_until) for job in due[:limit]]

    def claim_job(self, job_id: str, *, now: datetime, token: str, lock_until: datetime) -> JobRecord | None:
        aware(now, lock_until)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status is not PENDING:
                return None
            return self._take(job, now=now, token=token, lock_until=lock_until)

    def _take(self, job: JobRecord, *, now: datetime, token: str, lock_until: datetime) -> JobRecord:
        taken = attrs.evolve(
            job,
            status=RUNNING,
            worker_id=token,
            worker_started_at=now,
            worker_expires_at=lock_until,
            attempt_count=job.attempt_count + 1,
            progress=0,
            progress_message=None,
            updated_at=now,
        )
        self._jobs[job.id] = taken
        return taken

    def _held(self, lease: Lease) -> JobRecord | None:
        job = self._jobs.get(lease.job_id)
        if job is None or job.status is not RUNNING or job.worker_id != lease.token:
            return None
        return job

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        aware(now, lock_until)
        with self._lock:
            held: dict[str, bool] = {}
            for lease in leases:
                job = self._held(lease)
                if job is not None:
                    self._jobs[job.id] = attrs.evolve(job, worker_expires_at=lock_until, updated_at=now)
                    held[job.id] = job.cancel_requested
            return held

    def progress(self, lease: Lease, percent: int, message: str | None, *, now: datetime) -> bool:
        check_percent(percent)
        aware(now)
        with self._lock:
            job = self._held(lease)
            if job is None:
                return False
            self._jobs[job.id] = attrs.evolve(job, progress=percent, progress_message=message, updated_at=now)
            return True

    def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        for transition in transitions:
            aware(transition.at, transition.run_at if isinstance(transition, Retry) else None)
        with self._lock:
            return [self._apply(transition) for transition in transitions]

    def _apply(self, transition: Transition) -> bool:
        job = self._held(Lease(transition.job_id, transition.token))
        if job is None:
            return False
        match transition:
            case Complete(result=result, at=at):
                done = _ended(job, JobStatus.COMPLETED, None, at, result=result, progress=100, traceback=None)
            case Retry(error=error, traceback=tb, at=at, run_at=run_at):
                done = attrs.evolve(
                    job,
                    status=PENDING,
                    error=error,
                    traceback=tb,
                    scheduled_for=run_at,
                    worker_id=None,
                    worker_started_at=None,
                    worker_expires_at=None,
                    updated_at=at,
                )
            case Fail(error=error, traceback=tb, at=at):
                done = _ended(job, JobStatus.FAILED, error, at, traceback=tb)
            case Cancel(reason=reason, at=at):
                done = _ended(job, JobStatus.CANCELLED, reason, at)
        self._jobs[job.id] = done
        return True

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
        # Refuse bad claim arguments before finishing anything: the pair is one transaction.
        check_names(names)
        aware(now, lock_until)
        with self._lock:
            applied = self.finish(transitions)
            return applied, self.claim(limit=limit, now=now, token=token, lock_until=lock_until, names=names)

    def release(self, leases: Sequence[Lease], *, now: datetime) -> list[bool]:
        aware(now)
        with self._lock:
            released = []
            for lease in leases:
                job = self._held(lease)
                if job is not None and job.cancel_requested:
                    self._jobs[job.id] = _ended(job, JobStatus.CANCELLED, CANCELLED, now)
                elif job is not None:
                    self._jobs[job.id] = attrs.evolve(
                        job,
                        status=PENDING,
                        attempt_count=job.attempt_count - 1,
                        worker_id=None,
                        worker_started_at=None,
                        worker_expires_at=None,
                        progress=0,
                        progress_message=None,
                        updated_at=now,
                    )
                released.append(job is not None)
            return released

    def reset_expired(self, *, now: datetime) -> ResetReport:
        aware(now)
        with self._lock:
            report = ResetReport()
            expired = [
                job
                for job in self._jobs.values()
                if job.status is RUNNING and job.worker_expires_at is not None and job.worker_expires_at <= now
            ]
            for job in sorted(expired, key=lambda j: j.id):
                if job.cancel_requested:
                    self._jobs[job.id] = _ended(job, JobStatus.CANCELLED, CANCELLED_WHILE_LOST, now, traceback=None)
                    report.cancelled.append(job.id)
                elif job.attempt_count >= job.max_attempts:
                    lost = worker_lost(job.attempt_count, job.max_attempts)
                    self._jobs[job.id] = _ended(job, JobStatus.FAILED, lost, now, traceback=None)
                    report.failed.append(job.id)
                else:
                    self._jobs[job.id] = attrs.evolve(
                        job,
                        status=PENDING,
                        error=worker_lost(job.attempt_count, job.max_attempts),
                        traceback=None,
                        scheduled_for=now,
                        worker_id=None,
                        worker_started_at=None,
                        worker_expires_at=None,
                        updated_at=now,
                    )
                    report.retried.append(job.id)
            return report

    # -- operating ----------------------------------------------------------------
    def cancel(self, job_id: str, *, now: datetime) -> JobRecord | None:
        aware(now)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status.finished:
                return job
            if job.status is PENDING:
                job = _ended(job, JobStatus.CANCELLED, CANCELLED, now)
            elif not job.cancel_requested:
                job = attrs.evolve(job, cancel_requested=True, updated_at=now)
            self._jobs[job_id] = job
            return job

    def cancelling(self) -> list[str]:
        with self._lock:
            return sorted(j.id for j in self._jobs.values() if j.status is RUNNING and j.cancel_requested)

    def retry(self, job_ids: Sequence[str], *, now: datetime) -> list[str]:
        aware(now)
        with self._lock:
            sent = []
            for job_id in dict.fromkeys(job_ids):
                job = self._jobs.get(job_id)
                if job is None or job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                    continue
                self._jobs[job_id] = attrs.evolve(
                    job,
                    status=PENDING,
                    attempt_count=0,
                    result=None,
                    progress=0,
                    progress_message=None,
                    error=None,
                    traceback=None,
                    worker_id=None,
                    worker_started_at=None,
                    worker_expires_at=None,
                    completed_at=None,
                    cancel_requested=False,
                    scheduled_for=now,
                    updated_at=now,
                )
                sent.append(job_id)
            return sent

    def purge(self, *, statuses: Collection[JobStatus], before: datetime, limit: int) -> int:
        aware(before)
        with self._lock:
            doomed = sorted(
                (
                    j
                    for j in self._jobs.values()
                    if j.status in statuses
                    and j.status.finished
                    and j.completed_at is not None
                    and j.completed_at < before
                ),
                key=lambda j: (j.completed_at, j.id),
            )[: max(limit, 0)]
            for job in doomed:
                del self._jobs[job.id]
            if doomed:
                self._jobs.version += 1
            return len(doomed)

    def summary(self, *, since: datetime) -> Summary:
        aware(since)
        with self._lock:
            jobs = list(self._jobs.values())
        by_name: dict[str, dict[JobStatus, int]] = {}
        for job in jobs:
            by_name.setdefault(job.job_name, dict.fromkeys(JobStatus, 0))[job.status] += 1
        pending = [j.scheduled_for for j in jobs if j.status is PENDING]
        return Summary(
            counts=self.counts(),
            by_name=dict(sorted(by_name.items())),
            oldest_pending=min(pending, default=None),
            running=sorted((j for j in jobs if j.status is RUNNING), key=lambda j: j.id),
            failed_since=sum(
                1
                for j in jobs
                if j.status is JobStatus.FAILED and j.completed_at is not None and j.completed_at >= since
            ),
        )

    # -- recurring jobs -----------------------------------------------------------
    def put_schedule(self, schedule: Schedule) -> Schedule:
        aware(schedule.next_run_at, schedule.created_at, schedule.updated_at, schedule.last_run_at)
        with self._lock:
            old = self._schedules.get(schedule.name)
            if old is not None:
                same_times = (old.cron_expression, old.timezone) == (schedule.cron_expression, schedule.timezone)
                keep_next = same_times and old.enabled and schedule.enabled and old.next_run_at is not None
                schedule = attrs.evolve(
                    schedule,
                    id=old.id,
                    created_at=old.created_at,
                    last_run_at=old.last_run_at,
                    last_job_id=old.last_job_id,
                    next_run_at=old.next_run_at if keep_next else schedule.next_run_at,
                )
            self._schedules[schedule.name] = schedule
            self._jobs.version += 1
            return schedule

    def get_schedule(self, name: str) -> Schedule | None:
        with self._lock:
            return self._schedules.get(name)

    def list_schedules(self) -> list[Schedule]:
        with self._lock:
            return [self._schedules[name] for name in sorted(self._schedules)]

    def remove_schedule(self, name: str) -> bool:
        with self._lock:
            return self._schedules.pop(name, None) is not None

    def due_schedules(self, now: datetime) -> list[Schedule]:
        aware(now)
        with self._lock:
            due = [
                s for s in self._schedules.values() if s.enabled and s.next_run_at is not None and s.next_run_at <= now
            ]
        return sorted(due, key=lambda s: (s.next_run_at, s.name))

    def fire_schedule(
        self, name: str, *, expected: datetime, fire_time: datetime, next_run_at: datetime, job: JobRecord
    ) -> bool:
        aware(expected, fire_time, next_run_at)
        with self._lock:
            current = self._schedules.get(name)
            if current is None or not current.enabled or current.next_run_at != expected:
                return False
            self.add([job])
            self._schedules[name] = attrs.evolve(
                current, next_run_at=next_run_at, last_run_at=fire_time, last_job_id=job.id, updated_at=job.created_at
            )
            return True

    # -- reading ------------------------------------------------------------------
    def counts(self) -> dict[JobStatus, int]:
        with self._lock:
            counts = dict.fromkeys(JobStatus, 0)
            for job in self._jobs.values():
                counts[job.status] += 1
            return counts

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        correlation_id: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        with self._lock:
            found = [
                job
                for job in self._jobs.values()
                if (status is None or job.status is status)
                and (name is None or job.job_name == name)
                and (correlation_id is None or job.correlation_id == correlation_id)
            ]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[: max(limit, 0)]

    def next_due(self, names: Collection[str] | None = None) -> datetime | None:
        with self._lock:
            return min(
                (
                    j.scheduled_for
                    for j in self._jobs.values()
                    if j.status is PENDING and (names is None or j.job_name in names)
                ),
                default=None,
            )

    def data_version(self) -> int:
        return self._jobs.version

    def change_file(self) -> str | None:
        return None

    # -- lifecycle ----------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        with self._lock:
            return True, f"memory store, {len(self._jobs)} jobs"

    def close(self) -> None:
        """Nothing to release; the jobs stay readable."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._jobs)} jobs)"
