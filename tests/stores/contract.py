"""What the Store contract tests share: times after T0, a claim, a lease, every record."""

from __future__ import annotations

from datetime import datetime, timedelta

from jobkit.model import (
    JobRecord,
    Lease,
)
from jobkit.store import Store
from tests.support import T0

LOCK = timedelta(seconds=30)
NAIVE = datetime(2026, 1, 1, 0, 0, 5)  # no tzinfo: refused by every store
US = timedelta(microseconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def claim_one(store: Store, job_id: str, *, now: datetime = T0, token: str = "tok-1") -> JobRecord:
    claimed = store.claim_job(job_id, now=now, token=token, lock_until=now + LOCK)
    assert claimed is not None
    return claimed


def lease(job: JobRecord) -> Lease:
    assert job.worker_id is not None
    return Lease(job.id, job.worker_id)


def snapshot(store: Store) -> list[JobRecord]:
    return store.list_jobs(limit=10**6)
