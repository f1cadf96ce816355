"""The reference the stores-agree machines hold every store to: jobkit.lifecycle over a plain dict.

Nothing here but the lifecycle's rules and the queue's order: no locks, no checks of
bad input (a call that every store refuses is not applied here). Each verb returns the
answer a store must give, and changes the records as the store must.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from jobkit import lifecycle
from jobkit.model import (
    LIVE,
    Attempt,
    Backlog,
    JobRecord,
    JobStatus,
    Lease,
    LeaseMark,
    QueueInfo,
    ResetReport,
    Transition,
)


class Settling(dict[str, JobRecord]):
    """Jobs by id; a write that ends a job settles the jobs that run after it, and theirs in turn."""

    def __setitem__(self, job_id: str, job: JobRecord) -> None:
        old = self.get(job_id)
        super().__setitem__(job_id, job)
        if old is not None and old.status in LIVE and job.status.finished:
            for child in [j for j in self.values() if job_id in j.depends_on]:
                after = lifecycle.after_parent_ended(child, job)
                if after is not child:
                    self[child.id] = after


class Reference:
    """The jobs table as the lifecycle says it must be."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = Settling()
        self.paused: dict[str, bool] = {}  # every queue ever paused or resumed, and whether it is paused
        self.history: dict[str, list[Attempt]] = {}  # each job's ended attempts but a completion

    def _held_keys(self) -> dict[lifecycle.Key, str]:
        return {lifecycle.key_of(j): j.id for j in self.jobs.values() if lifecycle.holds_key(j)}  # type: ignore[misc]

    def _log(self, job: JobRecord, ending: lifecycle.Ending, at: datetime) -> None:
        self.history[job.id] = lifecycle.logged(self.history.get(job.id, []), job, ending, at=at)

    def holders(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        held = self._held_keys()
        return {key: held[key] for key in keys if key in held}

    def attempts(self, job_id: str) -> list[Attempt]:
        job = self.jobs.get(job_id)
        return [] if job is None else lifecycle.timeline(job, self.history.get(job_id, []))

    def _held(self, lease: Lease) -> JobRecord | None:
        job = self.jobs.get(lease.job_id)
        return job if lifecycle.holds(job, lease) else None

    def add(self, records: Sequence[JobRecord]) -> list[str]:
        statuses = {job.id: job.status for job in self.jobs.values()}
        written, ids = lifecycle.added(records, self._held_keys(), statuses)
        for job in written:
            self.jobs[job.id] = job
        return ids

    def _put(self, records: Sequence[JobRecord]) -> None:
        for job in records:
            self.jobs[job.id] = job

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
        paused = {name for name, is_paused in self.paused.items() if is_paused}
        due = lifecycle.claimable(self.jobs.values(), now=now, limit=limit, names=names, queues=queues, paused=paused)
        taken = [lifecycle.claim(j, token=token, now=now, lock_until=lock_until) for j in due]
        self._put(taken)
        return taken

    def pause(self, queue: str, paused: bool, *, now: datetime) -> None:
        self.paused[queue] = paused

    def queues(self) -> list[QueueInfo]:
        return lifecycle.queues_of(self.jobs.values(), self.paused)

    def next_due(self, names: Collection[str] | None = None, queues: Collection[str] | None = None) -> datetime | None:
        paused = {name for name, is_paused in self.paused.items() if is_paused}
        return lifecycle.next_due(self.jobs.values(), names=names, queues=queues, paused=paused)

    def claim_job(self, job_id: str, *, now: datetime, token: str, lock_until: datetime) -> JobRecord | None:
        job = self.jobs.get(job_id)
        if job is None or not lifecycle.is_ready(job):
            return None
        self.jobs[job_id] = taken = lifecycle.claim(job, token=token, now=now, lock_until=lock_until)
        return taken

    def heartbeat(self, leases: Sequence[Lease], *, now: datetime, lock_until: datetime) -> dict[str, bool]:
        answered: dict[str, bool] = {}
        for lease in leases:
            job = self._held(lease)
            if job is not None:
                self.jobs[job.id] = lifecycle.heartbeat(job, now=now, lock_until=lock_until)
                answered[job.id] = job.cancel_requested
        return answered

    def progress(self, lease: Lease, percent: int, message: str | None, *, now: datetime) -> bool:
        job = self._held(lease)
        if job is None:
            return False
        self.jobs[job.id] = lifecycle.progress(job, percent, message, now=now)
        return True

    def finish(self, transitions: Sequence[Transition]) -> list[bool]:
        applied = []
        for transition in transitions:
            job = self._held(Lease(transition.job_id, transition.token))
            if job is not None:
                ending = lifecycle.ending_of(transition)
                if ending is not None:
                    self._log(job, ending, transition.at)
                self.jobs[job.id] = lifecycle.apply(job, transition)
            applied.append(job is not None)
        return applied

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
        applied = self.finish(transitions)
        return applied, self.claim(limit=limit, now=now, token=token, lock_until=lock_until, names=names, queues=queues)

    def release(self, leases: Sequence[Lease], *, now: datetime) -> list[bool]:
        released = []
        for lease in leases:
            job = self._held(lease)
            if job is not None:
                self._log(job, lifecycle.released_ending(job), now)
                self.jobs[job.id] = lifecycle.release(job, now=now)
            released.append(job is not None)
        return released

    def reset_expired(self, *, now: datetime) -> ResetReport:
        report = ResetReport()
        for job in sorted((j for j in self.jobs.values() if lifecycle.is_expired(j, now)), key=lambda j: j.id):
            self._expire(job, now, report)
        return report

    def _expire(self, job: JobRecord, now: datetime, report: ResetReport) -> None:
        after, what = lifecycle.expire(job, now=now)
        self._log(job, lifecycle.expired_ending(after), now)
        self.jobs[job.id] = after
        getattr(report, what).append(job.id)

    def leases(self) -> list[LeaseMark]:
        marks = (lifecycle.mark_of(j) for j in self.jobs.values())
        return sorted((m for m in marks if m is not None), key=lambda m: m.job_id)

    def reset_unrenewed(self, marks: Sequence[LeaseMark], *, now: datetime) -> ResetReport:
        report = ResetReport()
        for mark in sorted(marks, key=lambda m: m.job_id):
            job = self.jobs.get(mark.job_id)
            if lifecycle.as_seen(job, mark):
                assert job is not None
                self._expire(job, now, report)
        return report

    def cancel(self, job_id: str, *, now: datetime) -> JobRecord | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        self.jobs[job_id] = after = lifecycle.cancel(job, now=now)
        return after

    def retry(self, job_ids: Sequence[str], *, now: datetime) -> list[str]:
        sent = []
        for job_id in dict.fromkeys(job_ids):
            job = self.jobs.get(job_id)
            key = lifecycle.key_of(job) if job is not None else None
            held = key is not None and self._held_keys().get(key, job_id) != job_id
            statuses = {j.id: j.status for j in self.jobs.values()}
            waiting = lifecycle.unfinished_parents(job, statuses) if job is not None else 0
            again = lifecycle.retry_by_hand(job, now=now, key_held=held, waiting_for=waiting) if job else None
            if again is not None:
                self.jobs[job_id] = again
                sent.append(job_id)
        return sent

    def purge(self, *, statuses: Collection[JobStatus], before: datetime, limit: int) -> int:
        doomed = sorted(
            (
                j
                for j in self.jobs.values()
                if j.status in statuses and j.completed_at is not None and j.completed_at < before
            ),
            key=lambda j: (j.completed_at, j.id),
        )[: max(limit, 0)]
        for job in doomed:
            del self.jobs[job.id]
            self.history.pop(job.id, None)
        return len(doomed)

    def backlog(self, *, now: datetime) -> Backlog:
        pending = sorted(
            (j for j in self.jobs.values() if lifecycle.is_ready(j)), key=lambda j: (j.scheduled_for, j.id)
        )
        due = [j for j in pending if lifecycle.is_due(j, now)]
        later = [j for j in pending if not lifecycle.is_due(j, now)]
        return Backlog(
            due=len(due), scheduled=len(later), oldest_due=next(iter(due), None), next_scheduled=next(iter(later), None)
        )

    def fire(self, job: JobRecord) -> None:
        """A schedule fired and enqueued *job*."""
        self.add([job])
