"""store.summary: counts by status and name, the oldest pending job, running jobs, recent failures.

Every test that takes ``store`` runs on MemoryStore and on SqliteStore.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest

from jobkit.model import JobStatus, Lease, Summary
from jobkit.store import Store
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    T0,
    finished,
    unfinished,
)
from tests.support import record as get


def summary_scene(store: Store) -> dict[str, str]:
    hour = timedelta(hours=1)
    ids = {
        "alpha pending": unfinished(store, PENDING, T0 - 3 * hour, name="t:alpha"),
        "alpha pending later": unfinished(store, PENDING, T0 - hour, name="t:alpha", scheduled=T0 + hour),
        "alpha enqueued first, due later": unfinished(
            store, PENDING, T0 - 8 * hour, name="t:alpha", scheduled=T0 - 2 * hour
        ),
        "alpha completed": finished(store, COMPLETED, T0 - 2 * hour, name="t:alpha"),
        "alpha failed recently": finished(store, FAILED, T0 - hour / 2, name="t:alpha"),
        "alpha failed long ago": finished(store, FAILED, T0 - 2 * hour, name="t:alpha"),
        "beta pending oldest": unfinished(store, PENDING, T0 - 5 * hour, name="t:beta"),
        "beta failed at since": finished(store, FAILED, T0 - hour, name="t:beta"),
        "beta cancelled": finished(store, CANCELLED, T0 - hour / 4, name="t:beta"),
        "beta running": unfinished(store, PENDING, T0 - 4 * hour, name="t:beta"),
        "alpha running": unfinished(store, PENDING, T0 - 6 * hour, name="t:alpha"),
    }
    for key in ("beta running", "alpha running"):
        assert store.claim_job(ids[key], now=T0, token=key, lock_until=T0 + hour) is not None
    assert store.progress(Lease(ids["beta running"], "beta running"), 40, "halfway", now=T0)
    store.cancel(ids["alpha running"], now=T0)
    return ids


def test_summary_counts_names_oldest_pending_running_and_recent_failures(store: Store) -> None:
    ids = summary_scene(store)
    summary = store.summary(since=T0 - timedelta(hours=1))
    zero = dict.fromkeys(JobStatus, 0)
    assert summary.counts == {**zero, PENDING: 4, RUNNING: 2, COMPLETED: 1, FAILED: 3, CANCELLED: 1}
    assert summary.counts == store.counts()
    assert list(summary.by_name) == ["t:alpha", "t:beta"]
    assert summary.by_name["t:alpha"] == {**zero, PENDING: 3, RUNNING: 1, COMPLETED: 1, FAILED: 2}
    assert summary.by_name["t:beta"] == {**zero, PENDING: 1, RUNNING: 1, FAILED: 1, CANCELLED: 1}
    # The earliest time a pending job became due (how long the queue has kept someone waiting),
    # not when a delayed job was enqueued, and never a running job's.
    assert summary.oldest_pending == T0 - timedelta(hours=5)
    assert summary.running == sorted(
        [get(store, ids["beta running"]), get(store, ids["alpha running"])], key=lambda job: job.id
    )
    by_id = {job.id: job for job in summary.running}
    beta = by_id[ids["beta running"]]
    assert (beta.progress, beta.progress_message, beta.cancel_requested) == (40, "halfway", False)
    assert by_id[ids["alpha running"]].cancel_requested
    assert summary.failed_since == 2, "failures at or after `since` count; the one before does not"
    assert store.summary(since=T0).failed_since == 0
    assert store.summary(since=T0 - timedelta(days=1)).failed_since == 3


def test_summary_of_an_empty_store(store: Store) -> None:
    assert store.summary(since=T0) == Summary(
        counts=dict.fromkeys(JobStatus, 0), by_name={}, oldest_pending=None, running=[], failed_since=0
    )


def test_summary_refuses_a_naive_since(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.summary(since=datetime(2026, 1, 1))  # the naive time under test


def timestamps_are_utc(values: Sequence[datetime | None]) -> bool:
    return all(v is None or v.utcoffset() == timedelta(0) for v in values)


def test_summary_times_are_timezone_aware(store: Store) -> None:
    summary_scene(store)
    summary = store.summary(since=datetime(2025, 12, 31, 23, 0, tzinfo=timezone.utc))
    assert summary.oldest_pending is not None and timestamps_are_utc([summary.oldest_pending])
    assert all(timestamps_are_utc([j.worker_started_at, j.worker_expires_at]) for j in summary.running)
