"""Retention comes round on a period that fits the keep durations: a short keep is honoured soon, not after prune_every.

Workers run in threads on an injected clock; nothing sleeps to wait: conditions are polled
with a deadline (tests/support.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobkit.options import WorkerOptions
from jobkit.store import Store
from tests.support import COMPLETED, FAILED, T0, Background, FakeClock, Gate, PurgeSpy, finished, gated_jobs, wait_until


def test_a_job_kept_briefly_is_deleted_soon_after_it_is_old_enough(store: Store) -> None:
    """keep_completed=2s: once the clock passes that, the next passes delete the job (prune_every is 600 s)."""
    clock = FakeClock(T0)
    jobs, _ = gated_jobs(Gate())
    job_id = finished(store, COMPLETED, T0)
    spy = PurgeSpy(store)
    keep = timedelta(seconds=2)
    with Background(spy, jobs, clock=clock, keep_completed=keep, keep_failed=None, reap_every=0.02):
        wait_until(lambda: spy.calls, "the worker's first retention pass")
        assert store.get(job_id) is not None, "a job that ended at the worker's now is not old enough yet"
        clock.advance(keep.total_seconds() + 1)
        wait_until(lambda: store.get(job_id) is None, "the job to be deleted once older than its keep")


@pytest.mark.parametrize(
    ("keeps", "period"),
    [
        ({}, 600.0),  # 7 and 30 days: prune_every is the sooner
        ({"keep_completed": timedelta(seconds=60)}, 6.0),
        ({"keep_completed": None, "keep_failed": timedelta(minutes=5)}, 30.0),
        ({"keep_completed": timedelta(hours=1), "keep_failed": timedelta(seconds=30)}, 3.0),
        ({"keep_completed": timedelta(0)}, 0.0),  # every reap
        ({"keep_completed": None, "keep_failed": None}, 600.0),
        ({"keep_completed": timedelta.max, "prune_every": 5.0}, 5.0),
    ],
)
def test_the_prune_period_is_prune_every_or_a_tenth_of_the_shortest_keep(
    keeps: dict[str, object], period: float
) -> None:
    assert WorkerOptions(**keeps).prune_period == pytest.approx(period)  # type: ignore[arg-type]


def test_a_failed_job_kept_briefly_is_deleted_too(store: Store) -> None:
    clock = FakeClock(T0)
    jobs, _ = gated_jobs(Gate())
    kept = finished(store, COMPLETED, T0 - timedelta(hours=1))  # kept for a day
    job_id = finished(store, FAILED, T0)
    spy = PurgeSpy(store)
    options = {"keep_completed": timedelta(days=1), "keep_failed": timedelta(seconds=3), "reap_every": 0.02}
    with Background(spy, jobs, clock=clock, **options):
        wait_until(lambda: spy.calls, "the worker's first retention pass")
        clock.advance(4)
        wait_until(lambda: store.get(job_id) is None, "the failed job to be deleted once older than its keep")
    assert store.get(kept) is not None
