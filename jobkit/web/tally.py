"""Jobs counted as they finish and as they are enqueued: the overview's charts and the totals of ``/metrics``.

The dashboard is not the worker, so it cannot count events as they happen; it reads what
the store says happened, in order, and never the same job twice. Finished jobs come
from :meth:`Store.finished`, paged on by ``(completed_at, id)``; new jobs from
:meth:`Store.list_jobs` over the window since the last look. Each look stops
:data:`SETTLE` short of the store's now, so that a job stamped a moment ago whose
transaction has not committed yet is still ahead of the cursor when it does.

The first look at finished jobs reaches back :data:`WINDOW` (the charts' span), a bounded
number of pages a look, so a dashboard started on a busy queue fills in the last hour
within a few looks; enqueued jobs count from the first look. Totals count from there, as a
Prometheus counter counts from its process's start.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from jobkit.control import pages
from jobkit.model import JobRecord, JobStatus
from jobkit.store import Cursor, Store

SETTLE = timedelta(seconds=2)  # how far behind the store's now each look stops
WINDOW = timedelta(hours=1)  # the charts' span, and how far the first look reaches back
STEP = timedelta(minutes=1)  # one bar of a chart
PAGE = 1000  # records read per query
PAGES_PER_LOOK = 50  # a look reads at most this many pages; the next look goes on from there
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Upper bounds (seconds) of the run-time histogram: from a no-op job to an hour-long one."""

Key = tuple[str, str]  # (job name, queue)


@attrs.define
class Histogram:
    """Run times of one job name's completed jobs: counts at or under each of :data:`BUCKETS`, their sum."""

    counts: list[int] = attrs.Factory(lambda: [0] * len(BUCKETS))
    total: int = 0
    seconds: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.seconds += seconds
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[index] += 1


@attrs.frozen
class Bar:
    """One step of a chart: when it starts, and how many jobs completed and failed in it."""

    at: datetime
    completed: int
    failed: int


class Tally:
    """Totals by (name, queue) of enqueued, completed, failed and cancelled jobs; run times; per-minute counts."""

    def __init__(self, settle: timedelta = SETTLE) -> None:
        self.settle = settle
        self._lock = threading.Lock()
        self.enqueued: dict[Key, int] = {}
        self.ended: dict[tuple[str, str, JobStatus], int] = {}
        self.run_times: dict[str, Histogram] = {}
        self._minutes: dict[datetime, list[int]] = {}  # minute -> [completed, failed]
        self._finished_after: Cursor | None = None
        self._created_from: datetime | None = None

    def look(self, store: Store, now: datetime) -> None:
        """Count what finished and what was enqueued by *now* (the store's clock) since the last look."""
        with self._lock:
            until = now - self.settle
            if self._created_from is None:  # enqueued jobs count from now: reading back an hour of
                # them would page through every job made in it (a million, on a busy queue)
                self._created_from = until
                self._finished_after = (until - WINDOW, "")
            for _ in range(PAGES_PER_LOOK):
                records = store.finished(after=self._finished_after, until=until, limit=PAGE)
                self._count_finished(records)
                if len(records) < PAGE:
                    break
            if until > self._created_from:
                self._count_created(store, self._created_from, until)
                self._created_from = until
            self._forget(until - WINDOW - STEP)

    def _count_finished(self, records: Sequence[JobRecord]) -> None:
        for job in records:
            assert job.completed_at is not None  # finished jobs have their end time
            self._finished_after = (job.completed_at, job.id)
            key = (job.job_name, job.queue, job.status)
            self.ended[key] = self.ended.get(key, 0) + 1
            if job.status is JobStatus.COMPLETED and job.worker_started_at is not None:
                seconds = max(0.0, (job.completed_at - job.worker_started_at).total_seconds())
                self.run_times.setdefault(job.job_name, Histogram()).observe(seconds)
            if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                minute = job.completed_at.replace(second=0, microsecond=0)
                counts = self._minutes.setdefault(minute, [0, 0])
                counts[job.status is JobStatus.FAILED] += 1

    def _count_created(self, store: Store, since: datetime, until: datetime) -> None:
        for page in pages(store, size=PAGE, created_from=since, created_until=until):
            for job in page:
                key = (job.job_name, job.queue)
                self.enqueued[key] = self.enqueued.get(key, 0) + 1

    def _forget(self, before: datetime) -> None:
        for minute in [m for m in self._minutes if m < before]:
            del self._minutes[minute]

    def bars(self, now: datetime) -> list[Bar]:
        """The last :data:`WINDOW`, a :class:`Bar` a minute, oldest first (empty minutes included)."""
        with self._lock:
            last = now.replace(second=0, microsecond=0)
            steps = int(WINDOW / STEP)
            minutes = [last - STEP * back for back in range(steps - 1, -1, -1)]
            return [Bar(m, *self._minutes.get(m, [0, 0])) for m in minutes]

    def totals(self) -> tuple[dict[Key, int], dict[tuple[str, str, JobStatus], int], dict[str, Histogram]]:
        """Copies of the enqueued and ended totals and the run-time histograms, for one scrape."""
        with self._lock:
            histograms = {name: attrs.evolve(h, counts=list(h.counts)) for name, h in self.run_times.items()}
            return dict(self.enqueued), dict(self.ended), histograms
