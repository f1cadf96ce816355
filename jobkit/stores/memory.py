"""MemoryStore: the jobs table as a dict, for tests and notebooks.

Every change it makes to a job is a rule of :mod:`jobkit.lifecycle`, so it behaves as
the lifecycle says (the stores-agree machines check it, as they check SqliteStore),
minus durability: records live as long as the object. Thread-safe; one lock guards
every operation, and a condition on that lock wakes its wakers on every write.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from types import TracebackType

import attrs

from jobkit import lifecycle
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
    require_aware,
    utc_now,
)
from jobkit.store import Cursor
from jobkit.stores import filters
from jobkit.stores.memory_table import MemoryWaker, Table
from jobkit.stores.refusals import (
    check_ids,
    check_parents,
    check_records,
    check_times,
    check_transition_times,
    chosen_ids,
    chosen_names,
    chosen_queue_names,
    chosen_queues,
)

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING


class MemoryStore:
    """The jobs table in a dict; same behaviour as SqliteStore, nothing on disk."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs = Table(threading.Condition(self._lock))
        self._schedules: dict[str, Schedule] = {}
        self._queues: dict[str, bool] = {}  # every queue ever paused or resumed, and whether it is paused
        self._history: dict[str, list[Attempt]] = {}  # each job's ended attempts but a completion

    def now(self) -> datetime:
        """This host's clock: a MemoryStore lives in one process, so everyone using it shares the host."""
        return utc_now()

    # -- jobs ---------------------------------------------------------------------
    def add(self, jobs: Sequence[JobRecord]) -> list[str]:
        check_times(jobs)
        with self._lock:  # refused in the order the SQL stores refuse: ids, parents, then each row
            check_ids(jobs, [job.id for job in jobs if job.id in self._jobs])
            statuses = self._parents(jobs)
            written, ids = lifecycle.added(jobs, self._jobs.held_keys, statuses)
            check_records(written)  # as the SQL stores' CHECKs do: a job whose key is held is not written
            for job in written:
                self._jobs[job.id] = job
                self._jobs.depend(job)
            return ids

    def _parents(self, jobs: Sequence[JobRecord]) -> dict[str, JobStatus]:
        """The statuses of the jobs *jobs* run after; a ValidationError naming one that does not exist."""
        parents = {parent for job in jobs for parent in job.depends_on}
        check_parents(parents, [p for p in parents if p in self._jobs])
        return {parent: self._jobs[parent].status for parent in parents}

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
        queues: Mapping[str, int] | None = None,
    ) -> list[JobRecord]:
        chosen = chosen_names(names)
        caps = chosen_queues(queues)
        require_aware(now, lock_until)
        with self._lock:
            taken = lifecycle.claimable(
                self._jobs.values(), now=now, limit=limit, names=chosen, queues=caps, paused=self._paused()
            )
            return [self._take(job, now=now, token=token, lock_until=lock_until) for job in taken]

    def claim_job(self, job_id: str, *, now: datetime, token: str, lock_until: datetime) -> JobRecord | None:
        require_aware(now, lock_until)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not lifecycle.is_ready(job):
                return None
            return self._take(job, now=now, token=token, lock_until=lock_until)

    def _take(self, job: JobRecord, *, now: datetime, token: str, lock_until: datetime) -> JobRecord:
        taken = lifecycle.claim(job, token=token, now=now, lock_until=lock_until)
        self._jobs[job.id] = taken
        return taken

    def _held(self, lease: Lease) -> JobRecord | None:
        job = self._jobs.get(lease.job_id)
        return job if lifecycle.holds(job, lease) else None

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> Mapping[str, bool]:
        require_aware(now, lock_until)
        with self._lock:
            held: dict[str, bool] = {}
            for lease in leases:
                job = self._held(lease)
                if job is not None:
                    self._jobs[job.id] = lifecycle.heartbeat(job, now=now, lock_until=lock_until)
                    held[job.id] = job.cancel_requested
            return held

    def progress(self, lease: Lease, percent: int, message: str | None, *, now: datetime) -> bool:
        lifecycle.check_percent(percent)  # refused even when the lease is lost, as SqliteStore does
        require_aware(now)
        with self._lock:
            job = self._held(lease)
            if job is None:
                return False
            self._jobs[job.id] = lifecycle.progress(job, percent, message, now=now)
            return True

    def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        check_transition_times(transitions)
        with self._lock:
            return [self._apply(transition) for transition in transitions]

    def _apply(self, transition: Transition) -> bool:
        job = self._held(Lease(transition.job_id, transition.token))
        if job is None:
            return False
        ending = lifecycle.ending_of(transition)
        if ending is not None:
            self._log(job, ending, transition.at)
        self._jobs[job.id] = lifecycle.apply(job, transition)
        return True

    def _log(self, job: JobRecord, ending: lifecycle.Ending, at: datetime) -> None:
        self._history[job.id] = lifecycle.logged(self._history.get(job.id, []), job, ending, at=at)

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
        # Refuse bad claim arguments before finishing anything: the pair is one transaction.
        chosen_names(names)
        chosen_queues(queues)
        require_aware(now, lock_until)
        with self._lock:
            applied = self.finish(transitions)
            claimed = self.claim(limit=limit, now=now, token=token, lock_until=lock_until, names=names, queues=queues)
            return applied, claimed

    def release(self, leases: Sequence[Lease], *, now: datetime) -> list[bool]:
        require_aware(now)
        with self._lock:
            released = []
            for lease in leases:
                job = self._held(lease)
                if job is not None:
                    self._log(job, lifecycle.released_ending(job), now)
                    self._jobs[job.id] = lifecycle.release(job, now=now)
                released.append(job is not None)
            return released

    def reset_expired(self, *, now: datetime) -> ResetReport:
        require_aware(now)
        with self._lock:
            report = ResetReport()
            expired = [job for job in self._jobs.values() if lifecycle.is_expired(job, now)]
            for job in sorted(expired, key=lambda j: j.id):
                self._expire(job, now, report)
            return report

    def _expire(self, job: JobRecord, now: datetime, report: ResetReport) -> None:
        after, what = lifecycle.expire(job, now=now)
        self._log(job, lifecycle.expired_ending(after), now)
        self._jobs[job.id] = after
        getattr(report, what).append(job.id)

    def leases(self) -> list[LeaseMark]:
        with self._lock:
            marks = (lifecycle.mark_of(job) for job in self._jobs.values())
            return sorted((m for m in marks if m is not None), key=lambda m: m.job_id)

    def reset_unrenewed(self, marks: Sequence[LeaseMark], *, now: datetime) -> ResetReport:
        require_aware(now, *(t for m in marks for t in (m.expires_at, m.updated_at)))
        with self._lock:
            report = ResetReport()
            for mark in sorted(marks, key=lambda m: m.job_id):
                job = self._jobs.get(mark.job_id)
                if job is not None and lifecycle.as_seen(job, mark):
                    self._expire(job, now, report)
            return report

    # -- operating ----------------------------------------------------------------
    def cancel(self, job_id: str, *, now: datetime) -> JobRecord | None:
        require_aware(now)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            after = lifecycle.cancel(job, now=now)
            if after is not job:
                self._jobs[job_id] = after
            return after

    def cancelling(self) -> list[str]:
        with self._lock:
            return sorted(j.id for j in self._jobs.values() if j.status is RUNNING and j.cancel_requested)

    def retry(self, job_ids: Sequence[str], *, now: datetime) -> list[str]:
        require_aware(now)
        with self._lock:
            sent = []
            for job_id in dict.fromkeys(job_ids):
                job = self._jobs.get(job_id)
                key = lifecycle.key_of(job) if job is not None else None
                held = key is not None and self._jobs.held_keys.get(key, job_id) != job_id
                statuses = {p: self._jobs[p].status for p in self._jobs.parents(job)} if job else {}
                waiting = lifecycle.unfinished_parents(job, statuses) if job is not None else 0
                again = lifecycle.retry_by_hand(job, now=now, key_held=held, waiting_for=waiting) if job else None
                if again is not None:
                    self._jobs[job_id] = again
                    sent.append(job_id)
            return sent

    def purge(self, *, statuses: Collection[JobStatus], before: datetime, limit: int) -> int:
        require_aware(before)
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
                self._drop(job.id)
            return len(doomed)

    def delete(self, job_ids: Sequence[str]) -> list[str]:
        chosen = chosen_ids(job_ids)
        with self._lock:
            doomed = [job_id for job_id in chosen if job_id in self._jobs and self._jobs[job_id].status.finished]
            for job_id in doomed:
                self._drop(job_id)
            return doomed

    def _drop(self, job_id: str) -> None:
        """Delete a job with its history; the table forgets who it ran after and who ran after it."""
        del self._jobs[job_id]
        self._history.pop(job_id, None)

    def summary(self, *, since: datetime) -> Summary:
        require_aware(since)
        with self._lock:
            jobs = list(self._jobs.values())
        by_name: dict[str, dict[JobStatus, int]] = {}
        for job in jobs:
            by_name.setdefault(job.job_name, dict.fromkeys(JobStatus, 0))[job.status] += 1
        pending = [j.scheduled_for for j in jobs if lifecycle.is_ready(j)]
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

    def backlog(self, *, now: datetime) -> Backlog:
        require_aware(now)
        with self._lock:
            pending = [j for j in self._jobs.values() if lifecycle.is_ready(j)]
        due = [j for j in pending if lifecycle.is_due(j, now)]
        later = [j for j in pending if not lifecycle.is_due(j, now)]
        first = operator.attrgetter("scheduled_for", "id")
        return Backlog(
            due=len(due),
            scheduled=len(later),
            oldest_due=min(due, key=first, default=None),
            next_scheduled=min(later, key=first, default=None),
        )

    # -- recurring jobs -----------------------------------------------------------
    def put_schedule(self, schedule: Schedule) -> Schedule:
        require_aware(schedule.next_run_at, schedule.created_at, schedule.updated_at, schedule.last_run_at)
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
            self._jobs.touch()
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
        require_aware(now)
        with self._lock:
            due = [
                s for s in self._schedules.values() if s.enabled and s.next_run_at is not None and s.next_run_at <= now
            ]
        return sorted(due, key=lambda s: (s.next_run_at, s.name))

    def fire_schedule(
        self, name: str, *, expected: datetime, fire_time: datetime, next_run_at: datetime, job: JobRecord
    ) -> bool:
        require_aware(expected, fire_time, next_run_at)
        with self._lock:
            current = self._schedules.get(name)
            if current is None or not current.enabled or current.next_run_at != expected:
                return False
            self.add([job])
            self._schedules[name] = attrs.evolve(
                current, next_run_at=next_run_at, last_run_at=fire_time, last_job_id=job.id, updated_at=job.created_at
            )
            return True

    # -- queues -------------------------------------------------------------------
    def _paused(self) -> set[str]:
        return {name for name, is_paused in self._queues.items() if is_paused}

    def queues(self) -> list[QueueInfo]:
        with self._lock:
            return lifecycle.queues_of(self._jobs.values(), self._queues)

    def pause(self, queue: str, paused: bool, *, now: datetime) -> None:
        check_queue(queue)
        require_aware(now)
        with self._lock:
            self._queues[queue] = bool(paused)
            self._jobs.touch()  # a resumed queue's jobs are claimable: wake the waiting

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
        with self._lock:
            found = [job for job in self._jobs.values() if chosen.keeps(job)]
        found.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return found[: max(limit, 0)]

    def cursor_after(self, count: int, *, after: Cursor | None = None) -> Cursor | None:
        filters.check_cursor_after(count, after)
        with self._lock:
            keys = sorted(((j.created_at, j.id) for j in self._jobs.values()), reverse=True)
        following = [key for key in keys if after is None or key < after]
        return following[count - 1] if len(following) >= count else None

    def finished(self, *, after: Cursor | None, until: datetime, limit: int) -> list[JobRecord]:
        filters.check_finished(after, until, limit)
        with self._lock:
            found = [job for job in self._jobs.values() if filters.finished_after(job, after, until)]
        found.sort(key=lambda j: (j.completed_at, j.id))
        return found[:limit]

    def next_due(self, names: Collection[str] | None = None, queues: Collection[str] | None = None) -> datetime | None:
        chosen, among = chosen_names(names), chosen_queue_names(queues)
        with self._lock:
            return lifecycle.next_due(self._jobs.values(), names=chosen, queues=among, paused=self._paused())

    def holders(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        with self._lock:
            return {key: self._jobs.held_keys[key] for key in keys if key in self._jobs.held_keys}

    def attempts(self, job_id: str) -> list[Attempt]:
        with self._lock:
            job = self._jobs.get(job_id)
            return [] if job is None else lifecycle.timeline(job, self._history.get(job_id, []))

    def waker(self) -> MemoryWaker:
        return MemoryWaker(self._jobs)

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
