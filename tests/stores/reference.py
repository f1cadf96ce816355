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
    FINISHED,
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
    """Jobs by id; a write that ends a job settles the jobs that run after it, and theirs in turn.

    *edges* are who runs after whom, (parent, child), as written when the child was added:
    a job deleted takes its edges with it, so a new job given its id is no one's parent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.edges: set[tuple[str, str]] = set()

    def __setitem__(self, job_id: str, job: JobRecord) -> None:
        old = self.get(job_id)
        super().__setitem__(job_id, job)
        if old is not None and old.status in LIVE and job.status.finished:
            for child in [j for j in self.values() if (job_id, j.id) in self.edges]:
                after = lifecycle.after_parent_ended(child, job)
                if after is not child:
                    self[child.id] = after


def _ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


class Reference:
    """The jobs table as the lifecycle says it must be."""

    def __init__(self) -> None:
        self.jobs = Settling()
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
            self.jobs.edges |= {(parent, job.id) for parent in job.depends_on}
        return ids

    def _drop(self, job_id: str) -> None:
        """Delete a job, its history and who ran after whom through it."""
        del self.jobs[job_id]
        self.history.pop(job_id, None)
        self.jobs.edges = {edge for edge in self.jobs.edges if job_id not in edge}

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
            statuses = {p: self.jobs[p].status for p in job.depends_on if (p, job_id) in self.jobs.edges} if job else {}
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
            self._drop(job.id)
        return len(doomed)

    def delete(self, job_ids: Sequence[str]) -> list[str]:
        deleted = []
        for job_id in dict.fromkeys(job_ids):
            job = self.jobs.get(job_id)
            if job is not None and job.status in FINISHED:
                self._drop(job_id)
                deleted.append(job_id)
        return deleted

    # -- reading ------------------------------------------------------------------
    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        name: str | None = None,
        correlation_id: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        after: tuple[datetime, str] | None = None,
        text: str | None = None,
        created_from: datetime | None = None,
        created_until: datetime | None = None,
    ) -> list[JobRecord]:
        """Newest first; *text* in the params or the error, A-Z and a-z matching each other and nothing else."""

        def holds(found: str | None) -> bool:
            return text is not None and found is not None and _ascii_lower(text) in _ascii_lower(found)

        kept = [
            j
            for j in self.jobs.values()
            if (status is None or j.status == status)
            and (name is None or j.job_name == name)
            and (correlation_id is None or j.correlation_id == correlation_id)
            and (queue is None or j.queue == queue)
            and (after is None or (j.created_at, j.id) < after)
            and (text is None or holds(j.params) or holds(j.error))
            and (created_from is None or created_from <= j.created_at)
            and (created_until is None or j.created_at < created_until)
        ]
        return sorted(kept, key=lambda j: (j.created_at, j.id), reverse=True)[: max(limit, 0)]

    def finished(self, *, after: tuple[datetime, str] | None, until: datetime, limit: int) -> list[JobRecord]:
        ended = [
            j
            for j in self.jobs.values()
            if j.status in FINISHED
            and j.completed_at is not None
            and j.completed_at < until
            and (after is None or (j.completed_at, j.id) > after)
        ]
        return sorted(ended, key=lambda j: (j.completed_at, j.id))[:limit]

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
