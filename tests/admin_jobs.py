"""Jobs for the admin tests (tests/admin/, tests/unit/), and a queue with one job in every status."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

import jobkit
from jobkit.model import JobRecord, JobStatus, Lease, new_id, utc_now
from jobkit.store import Store

jobs = jobkit.Registry()


@attrs.frozen
class Pair:
    a: int
    b: int = 0


@jobs.job(retry_backoff=0)
def add(params: Pair, ctx: jobkit.Context) -> int:
    return params.a + params.b


@jobs.job(max_attempts=1)
def explode(params: Pair, ctx: jobkit.Context) -> int:
    raise RuntimeError(f"exploded on {params.a}")


@jobs.job(max_attempts=1)
def refuse(params: Pair, ctx: jobkit.Context) -> int:
    raise ValueError(f"refused {params.a}")


@attrs.frozen
class Queue:
    """The ids of the jobs :func:`populate` made, oldest first."""

    completed: str
    failed: str
    pending: str
    cancelled: str
    running: str

    def ids(self) -> list[str]:
        return [self.completed, self.failed, self.pending, self.cancelled, self.running]


def populate(store: Store) -> Queue:
    """One job in each status (the running one at 40% "halfway", held for an hour), and one schedule."""
    completed = add.now(Pair(1, 2), store=store).job_id
    failed = explode.now(Pair(7), store=store).job_id
    pending = add.later(Pair(3), store, correlation_id="order-7")
    cancelled = jobkit.cancel(store, add.later(Pair(4), store)).id
    running = add.later(Pair(5), store, max_attempts=4)
    now, token = utc_now(), new_id()
    assert store.claim_job(running, now=now, token=token, lock_until=now + timedelta(hours=1)) is not None
    assert store.progress(Lease(running, token), 40, "halfway", now=now)
    jobkit.schedule(store, add, "*/5 * * * *", {"a": 1}, name="five-minutes")
    return Queue(completed=completed, failed=failed, pending=pending, cancelled=cancelled, running=running)


def finished_long_ago(store: Store, status: JobStatus, ended: datetime) -> str:
    """A finished job as any writer could store it, ended at *ended*: for purging by age."""
    job = JobRecord(
        id=new_id(),
        job_name=add.name,
        params='{"a": 9, "b": 0}',
        status=status,
        scheduled_for=ended,
        created_at=ended,
        updated_at=ended,
        attempt_count=1,
        result="9" if status is JobStatus.COMPLETED else None,
        error=None if status is JobStatus.COMPLETED else "long ago",
        completed_at=ended,
    )
    store.add([job])
    return job.id
