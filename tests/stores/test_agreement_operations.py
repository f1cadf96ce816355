"""Every store follows the lifecycle on the operating verbs: cancel, cancelling, retry, purge, summary, backlog.

A second Hypothesis state machine (the first, in test_agreement.py, covers every write of
the job lifecycle and the schedules) drives both stores through random sequences of
add, claim, heartbeat, finish, release and reset_expired mixed with the operating verbs,
on a clock that moves in microseconds, and compares the answers of every call and every
job after every step.

Its settings profile: "operations-ci" when the CI environment variable is set (100
examples of up to 30 steps, the same ones every run), "operations-dev" otherwise (as many,
freshly random); JOBKIT_OPERATIONS_PROFILE picks one by name, e.g. "operations-thorough".
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any, TypeVar

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule, run_state_machine_as_test

from jobkit.model import Cancel, Complete, Fail, JobRecord, JobStatus, Lease, Retry, Transition
from tests.stores.agreement import SideBySide

T = TypeVar("T")

# Own profile names (see test_agreement.py): "operations-ci" builds on Hypothesis' built-in "ci".
settings.register_profile("operations-ci", settings.get_profile("ci"), max_examples=100, stateful_step_count=30)
settings.register_profile("operations-dev", settings.get_profile("default"), max_examples=100, stateful_step_count=30)
settings.register_profile(
    "operations-thorough", settings.get_profile("default"), max_examples=1_000, stateful_step_count=60
)
PROFILE = os.environ.get("JOBKIT_OPERATIONS_PROFILE") or ("operations-ci" if os.environ.get("CI") else "operations-dev")

IDS = tuple(f"job-{n:02d}" for n in range(10))
UNKNOWN = "job-unknown"
NAMES = ("app:resize", "app:email")
KINDS = ("complete", "retry", "fail", "cancel")
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
SECOND = 1_000_000  # microseconds

micros = st.integers(min_value=0, max_value=120 * SECOND)
# Clock steps: mostly within a lock's life, sometimes past every lock.
steps = st.one_of(st.integers(min_value=0, max_value=5 * SECOND), micros)
lock_micros = st.integers(min_value=1, max_value=60 * SECOND)
# Purge and summary cut-offs: around now, some exactly on it, some in the future.
around = st.one_of(st.just(0), st.integers(min_value=-200 * SECOND, max_value=30 * SECOND))
limits = st.sampled_from((1, 2, 3, 5, 1, 2, -1, 0))
texts = st.none() | st.sampled_from(("boom", "ü", ""))
any_ids = st.sampled_from((*IDS, UNKNOWN))

new_jobs = st.fixed_dictionaries(
    {
        "id": st.sampled_from(IDS),
        "job_name": st.sampled_from(NAMES),
        # Mostly pending; some already finished, so that purge and retry find work from the start.
        "status": st.sampled_from((JobStatus.PENDING,) * 4 + FINISHED),
        # Mostly due at once, so that claims find work; some a little ahead.
        "delay": st.one_of(
            st.just(0), st.integers(min_value=-5 * SECOND, max_value=0), st.integers(min_value=0, max_value=30 * SECOND)
        ),
        "age": st.integers(min_value=0, max_value=200 * SECOND),
        "priority": st.integers(min_value=-1, max_value=1),
        "max_attempts": st.integers(min_value=1, max_value=3),
        "attempt_count": st.integers(min_value=0, max_value=2),
        # A pending job asked to cancel comes only from another writer: rare, but both stores must agree on it.
        "cancel_requested": st.sampled_from((False, False, False, True)),
    }
)


class OperationsAgree(SideBySide):
    """Every operating verb gives the same answer on every store, and leaves the same jobs behind."""

    folder_prefix = "jobkit-operations-"

    # -- helpers --------------------------------------------------------------------
    def jobs(self, status: JobStatus | None = None) -> list[JobRecord]:
        return self.memory.list_jobs(status=status, limit=10**6)

    def held(self) -> list[Lease]:
        return [Lease(j.id, j.worker_id) for j in self.jobs(JobStatus.RUNNING) if j.worker_id is not None]

    def leases_to_use(self) -> st.SearchStrategy[Lease]:
        """Mostly a lease still held; else one from any claim so far (often stale), or a made-up one."""
        choices: list[st.SearchStrategy[Lease]] = [st.builds(Lease, any_ids, st.just("tok-made-up"))]
        if self.leases:
            choices.insert(0, st.sampled_from(self.leases))
        if held := self.held():
            choices[:0] = [st.sampled_from(held)] * 4
        return st.one_of(choices)

    def ids_among(self, wanted: list[str]) -> st.SearchStrategy[str]:
        """Mostly one of *wanted* (when there are any), else any id, known or not."""
        return st.one_of(st.sampled_from(wanted), st.sampled_from(wanted), any_ids) if wanted else any_ids

    def retryable(self) -> list[str]:
        return [j.id for j in self.jobs() if j.status in (JobStatus.FAILED, JobStatus.CANCELLED)]

    def make_job(self, fields: dict[str, Any]) -> JobRecord:
        created = self.now - timedelta(microseconds=fields["age"])
        status = fields["status"]
        ended = status in FINISHED
        return JobRecord(
            id=fields["id"],
            job_name=fields["job_name"],
            params="{}",
            status=status,
            scheduled_for=self.now + timedelta(microseconds=fields["delay"]),
            created_at=created,
            updated_at=created,
            max_attempts=fields["max_attempts"],
            attempt_count=fields["attempt_count"],
            priority=fields["priority"],
            cancel_requested=fields["cancel_requested"],
            result="1" if status is JobStatus.COMPLETED else None,
            error="boom" if status in (JobStatus.FAILED, JobStatus.CANCELLED) else None,
            completed_at=created if ended else None,
        )

    # -- the lifecycle --------------------------------------------------------------
    @initialize(
        jobs=st.lists(new_jobs, min_size=3, max_size=8, unique_by=lambda f: f["id"]),
        claimed=st.integers(min_value=0, max_value=3),
        lock=lock_micros,
    )
    def start_with(self, jobs: list[dict[str, Any]], claimed: int, lock: int) -> None:
        """Some jobs, a few of them already running: most verbs have something to act on from the first step."""
        self.add(jobs)
        self.claim(claimed, lock)

    @rule(jobs=st.lists(new_jobs, max_size=3))
    def add(self, jobs: list[dict[str, Any]]) -> None:
        records = [self.make_job(fields) for fields in jobs]
        self.both(lambda s: s.add(records), lambda r: r.add(records))

    @rule(limit=limits, lock=lock_micros)
    def claim(self, limit: int, lock: int) -> None:
        self.tokens += 1
        token, until = f"tok-{self.tokens}", self.now + timedelta(microseconds=lock)
        claimed = self.both(
            lambda s: s.claim(limit=limit, now=self.now, token=token, lock_until=until),
            lambda r: r.claim(limit=limit, now=self.now, token=token, lock_until=until),
        )
        for job in claimed or []:
            self.leases.append(Lease(job.id, token))
        event("claim", len(claimed or []))

    @rule(data=st.data(), lock=lock_micros)
    def heartbeat(self, data: st.DataObject, lock: int) -> None:
        leases = data.draw(st.lists(self.leases_to_use(), min_size=1, max_size=3), label="leases")
        until = self.now + timedelta(microseconds=lock)
        beaten = self.both(
            lambda s: dict(s.heartbeat(leases, now=self.now, lock_until=until)),
            lambda r: r.heartbeat(leases, now=self.now, lock_until=until),
        )
        event("heartbeat", "reports a cancel request" if any((beaten or {}).values()) else "no cancel request")

    def transition(self, lease: Lease, kind: str, text: str | None, delay: int) -> Transition:
        match kind:
            case "complete":
                return Complete(lease.job_id, lease.token, "2", at=self.now)
            case "retry":
                run_at = self.now + timedelta(microseconds=delay)
                return Retry(lease.job_id, lease.token, text or "boom", text, at=self.now, run_at=run_at)
            case "fail":
                return Fail(lease.job_id, lease.token, text or "boom", text, at=self.now)
        return Cancel(lease.job_id, lease.token, text or "cancelled", at=self.now)

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        """Outcomes for leases: mostly held, some stale or made up."""
        outcomes = st.tuples(self.leases_to_use(), st.sampled_from(KINDS), texts, micros)
        drawn = data.draw(st.lists(outcomes, min_size=1, max_size=3), label="outcomes")
        transitions = [self.transition(*args) for args in drawn]
        applied = self.both(lambda s: s.finish(transitions), lambda r: r.finish(transitions))
        for transition, done in zip(transitions, applied or [], strict=True):
            event("finish", f"{type(transition).__name__} {'applied' if done else 'lease lost'}")

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        leases = data.draw(st.lists(self.leases_to_use(), min_size=1, max_size=3), label="leases")
        asked = {j.id for j in self.jobs(JobStatus.RUNNING) if j.cancel_requested}
        released = self.both(lambda s: s.release(leases, now=self.now), lambda r: r.release(leases, now=self.now))
        for lease, done in zip(leases, released or [], strict=True):
            event("release", "ended cancelled" if done and lease.job_id in asked else f"released {done}")

    @rule()
    def reset_expired(self) -> None:
        report = self.both(lambda s: s.reset_expired(now=self.now), lambda r: r.reset_expired(now=self.now))
        assert report is not None
        event("reset_expired", f"cancelled {len(report.cancelled)}, retried {len(report.retried)}")

    # -- the operating verbs --------------------------------------------------------
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """Cancel a job: mostly a running one (the case a worker must notice), else any."""
        running = [j.id for j in self.jobs(JobStatus.RUNNING)]
        job_id = data.draw(self.ids_among(running), label="job id")
        before = self.memory.get(job_id)
        after = self.both(lambda s: s.cancel(job_id, now=self.now), lambda r: r.cancel(job_id, now=self.now))
        if before is None:
            assert after is None
        elif before.status is JobStatus.PENDING:
            assert after is not None and after.status is JobStatus.CANCELLED and after.completed_at == self.now
        elif before.status is JobStatus.RUNNING:
            assert after is not None and after.status is JobStatus.RUNNING and after.cancel_requested
            assert after.updated_at == (before.updated_at if before.cancel_requested else self.now)
        else:
            assert after == before, "cancelling a finished job changed it"
        event("cancel", before.status.value if before is not None else "unknown")

    @rule()
    def cancelling(self) -> None:
        asked = self.both(lambda s: s.cancelling())
        assert asked == sorted(j.id for j in self.jobs(JobStatus.RUNNING) if j.cancel_requested)
        event("cancelling", len(asked or []))

    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """Retry some jobs: mostly failed or cancelled ones, among others and unknown ids."""
        retryable = self.retryable()
        job_ids = data.draw(st.lists(self.ids_among(retryable), max_size=4), label="job ids")
        sent = self.both(lambda s: s.retry(job_ids, now=self.now), lambda r: r.retry(job_ids, now=self.now))
        assert sent == [j for j in dict.fromkeys(job_ids) if j in retryable]
        for job_id in sent or []:
            job = self.memory.get(job_id)
            assert job is not None and job.status is JobStatus.PENDING and job.attempt_count == 0
        event("retry", len(sent or []))

    @rule(data=st.data(), statuses=st.sets(st.sampled_from(JobStatus)), limit=limits)
    def purge(self, data: st.DataObject, statuses: set[JobStatus], limit: int) -> None:
        """Purge before a time around now, or on (or a microsecond after) a job's completed_at."""
        ended = sorted({j.completed_at for j in self.jobs() if j.completed_at is not None})
        times = [around.map(lambda micros: self.now + timedelta(microseconds=micros))]
        if ended:
            times.append(st.sampled_from(ended).map(lambda t: t + timedelta(microseconds=1)))
            times.append(st.sampled_from(ended))
        cutoff = data.draw(st.one_of(times), label="before")
        unfinished = {j.id for j in self.jobs() if not j.status.finished}
        deleted = self.both(
            lambda s: s.purge(statuses=statuses, before=cutoff, limit=limit),
            lambda r: r.purge(statuses=statuses, before=cutoff, limit=limit),
        )
        assert unfinished <= {j.id for j in self.jobs()}, "purge deleted an unfinished job"
        assert deleted is not None and 0 <= deleted <= max(limit, 0)
        event("purge", deleted)

    @rule(since=around)
    def summary(self, since: int) -> None:
        answer = self.both(lambda s: s.summary(since=self.now + timedelta(microseconds=since)))
        assert answer is not None
        assert answer.counts == self.memory.counts()
        assert answer.running == sorted(self.jobs(JobStatus.RUNNING), key=lambda j: j.id)

    @rule(at=around)
    def backlog(self, at: int) -> None:
        moment = self.now + timedelta(microseconds=at)
        answer = self.both(lambda s: s.backlog(now=moment), lambda r: r.backlog(now=moment))
        assert answer is not None and answer.due + answer.scheduled == self.memory.counts()[JobStatus.PENDING]
        event("backlog due", answer.due)

    # -- the clock ------------------------------------------------------------------
    @rule(step=steps)
    def advance(self, step: int) -> None:
        self.now += timedelta(microseconds=step)

    def lock_ends(self) -> list[datetime]:
        return sorted(
            j.worker_expires_at
            for j in self.jobs(JobStatus.RUNNING)
            if j.worker_expires_at is not None and j.worker_expires_at > self.now
        )

    @precondition(lambda self: self.lock_ends())
    @rule(data=st.data(), early=st.sampled_from((0, 1)))
    def reap_at_a_lock_end(self, data: st.DataObject, early: int) -> None:
        """Reset expired locks exactly at (or a microsecond before) a lock's end."""
        self.now = data.draw(st.sampled_from(self.lock_ends()), label="lock end") - timedelta(microseconds=early)
        self.reset_expired()

    # -- after every step -------------------------------------------------------------
    @invariant()
    def jobs_follow_the_lifecycle(self) -> None:
        self.follows_the_lifecycle()

    @invariant()
    def same_jobs(self) -> None:
        memory = self.memory
        for other in self.stores[1:]:
            assert memory.list_jobs(limit=10**6) == other.list_jobs(limit=10**6)
            assert [memory.get(i) for i in IDS] == [other.get(i) for i in IDS]
            assert memory.counts() == other.counts()
            assert memory.cancelling() == other.cancelling()
            assert memory.summary(since=self.now) == other.summary(since=self.now)


SETTINGS = settings(settings.get_profile(PROFILE), deadline=None)
TestOperationsAgree = OperationsAgree.TestCase
TestOperationsAgree.settings = SETTINGS


def test_operations_agree_with_postgres(pg_dsn: str) -> None:
    """The same machine with a PostgresStore (a fresh schema of the run's database) beside the other two."""
    run_state_machine_as_test(lambda: OperationsAgree(pg_dsn), settings=SETTINGS)
