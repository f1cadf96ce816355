"""The worker prunes finished jobs on its own: keep_completed, keep_failed, their flags.

Every test that takes ``store`` runs on MemoryStore and on SqliteStore. Workers run in
threads; nothing sleeps to wait: handlers and tests meet on Events, and conditions are
polled with a deadline. Real processes are in tests/chaos/test_control_processes.py.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from jobkit.control import parse_duration
from jobkit.model import utc_now
from jobkit.options import WorkerOptions
from jobkit.store import Store
from jobkit.worker import cli as worker_cli
from jobkit.worker import retention, tick
from tests.support import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    T0,
    TIMEOUT,
    Background,
    FakeClock,
    Gate,
    Load,
    Pair,
    PurgeSpy,
    burst,
    finished,
    gated_jobs,
    unfinished,
    wait_until,
)
from tests.support import record as get


def test_the_workers_own_pruning_under_load_leaves_unfinished_jobs_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers that prune every few milliseconds (keep_completed=0) while they work and jobs arrive."""
    load = Load(store)
    options: dict[str, Any] = {
        "keep_completed": timedelta(0),
        "keep_failed": timedelta(0),
        "reap_every": 0.005,
        "prune_every": 0.005,
        "prune_batch": 7,
    }
    with (
        Background(store, load.jobs, concurrency=4, **options) as one,
        Background(store, load.jobs, concurrency=2, **options) as two,
    ):
        load.start()
        deadline = time.monotonic() + 30
        while not load.finished():
            assert time.monotonic() < deadline, f"{len(load.completed)} of {load.total} completed after 30s"
            if any(store.get(job_id) is None for job_id in list(load.completed)[:20]):
                load.first_deletion.set()
            time.sleep(0.002)  # a polling interval
        pruned = one.stop().purged + two.stop().purged
    load.check(pruned)
    assert pruned > 0


def test_the_worker_prunes_old_finished_jobs_as_it_starts(store: Store) -> None:
    clock = FakeClock(T0)
    gate = Gate()
    gate.open.set()
    jobs, gated_total = gated_jobs(gate)
    second = timedelta(seconds=1)
    old_completed = [finished(store, COMPLETED, T0 - second), finished(store, COMPLETED, T0 - 9 * second)]
    old_cancelled = finished(store, CANCELLED, T0 - second)
    old_failed = finished(store, FAILED, T0 - timedelta(days=365))
    pending = unfinished(store, PENDING, T0 - timedelta(days=365), name="t:elsewhere")
    running = unfinished(store, RUNNING, T0 - timedelta(days=365))
    fresh = gated_total.later(Pair(1), store, at=T0)

    report = burst(store, jobs, clock=clock, keep_completed=timedelta(0), keep_failed=None)
    assert report.purged == 3 and report.completed == 1
    assert all(store.get(j) is None for j in [*old_completed, old_cancelled])
    assert get(store, fresh).status is COMPLETED, "a job completed at the worker's now is not older than it"
    assert get(store, old_failed).status is FAILED, "keep_failed=None keeps failed jobs forever"
    assert get(store, pending).status is PENDING and get(store, running).status is RUNNING


def test_tick_far_ahead_prunes_by_the_default_retention(store: Store) -> None:
    jobs, _ = gated_jobs(Gate())
    now = utc_now()
    completed = finished(store, COMPLETED, now)
    cancelled = finished(store, CANCELLED, now)
    failed = finished(store, FAILED, now)
    running = unfinished(store, RUNNING, now)
    pending = unfinished(store, PENDING, now, name="t:elsewhere")
    assert tick(store, jobs, now=now + timedelta(days=6, hours=23)).purged == 0
    assert tick(store, jobs, now=now + timedelta(days=7, seconds=1)).purged == 2
    assert store.get(completed) is None and store.get(cancelled) is None
    assert get(store, failed).status is FAILED
    assert tick(store, jobs, now=now + timedelta(days=30, seconds=1)).purged == 1
    assert store.get(failed) is None
    # The lock of `running` outlives the tick, and `pending` belongs to another pool: both stay.
    assert get(store, running).status is RUNNING and get(store, pending).status is PENDING


def test_the_worker_prunes_batch_after_batch_and_comes_back_soon_while_batches_stay_full(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "PRUNE_BATCHES", 2)
    clock = FakeClock(T0)
    jobs, _ = gated_jobs(Gate())
    old = [finished(store, COMPLETED, T0 - timedelta(days=8, seconds=n)) for n in range(12)]
    old += [finished(store, FAILED, T0 - timedelta(days=31, seconds=n)) for n in range(3)]
    kept = [finished(store, COMPLETED, T0 - timedelta(days=6)), finished(store, FAILED, T0 - timedelta(days=29))]
    spy = PurgeSpy(store)
    with Background(spy, jobs, clock=clock, prune_batch=5, reap_every=0.02):  # type: ignore[arg-type]
        wait_until(lambda: len(spy.calls) >= 5, "the worker to prune two rounds")
    # A round deletes batch after batch of a kind while they come back full, up to
    # PRUNE_BATCHES (completed and cancelled: 5, 5; failed: 3); still full, it comes back a
    # reaper's interval later (completed: 2; failed: 0), then not before the prune period.
    assert spy.calls == [(5, 5), (5, 5), (5, 3), (5, 2), (5, 0)]
    assert all(store.get(j) is None for j in old)
    assert all(store.get(j) is not None for j in kept)


def test_the_worker_does_not_prune_again_until_the_interval_passes_once_batches_run_short(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs, _ = gated_jobs(Gate())
    finished(store, COMPLETED, T0 - timedelta(days=8))
    spy = PurgeSpy(store)
    reaped = threading.Event()
    real_leases = store.leases  # read once a reap, to watch for leases not renewed
    rounds = [0]

    def counting_leases() -> Any:
        rounds[0] += 1
        if rounds[0] >= 10:
            reaped.set()
        return real_leases()

    spy.leases = counting_leases  # type: ignore[attr-defined]
    with Background(spy, jobs, clock=FakeClock(T0), reap_every=0.02):  # type: ignore[arg-type]
        assert reaped.wait(TIMEOUT), "the worker did not reap ten times"
    batch = WorkerOptions().prune_batch
    assert spy.calls == [(batch, 1), (batch, 0)]


def test_a_retention_longer_than_the_calendar_keeps_everything_and_the_worker_runs(store: Store) -> None:
    gate = Gate()
    gate.open.set()
    jobs, gated_total = gated_jobs(gate)
    old = finished(store, COMPLETED, T0 - timedelta(days=400))
    job_id = gated_total.later(Pair(1), store)
    report = burst(store, jobs, keep_completed=parse_duration("99999999d"), keep_failed=timedelta.max)
    assert report.completed == 1 and report.purged == 0
    assert get(store, job_id).status is COMPLETED and store.get(old) is not None


def test_run_worker_keeps_everything_with_none(store: Store) -> None:
    jobs, _ = gated_jobs(Gate())
    ids = [finished(store, status, T0 - timedelta(days=3650)) for status in (COMPLETED, FAILED, CANCELLED)]
    spy = PurgeSpy(store)
    assert burst(spy, jobs, keep_completed=None, keep_failed=None).purged == 0  # type: ignore[arg-type]
    assert spy.calls == []
    assert all(store.get(j) is not None for j in ids)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], (timedelta(days=7), timedelta(days=30))),
        (["--keep-completed", "12h", "--keep-failed", "2w"], (timedelta(hours=12), timedelta(weeks=2))),
        (["--keep-completed", "forever", "--keep-failed", " Forever "], (None, None)),
        (["--keep-completed", "0"], (timedelta(0), timedelta(days=30))),
    ],
)
def test_worker_command_retention_flags(flags: list[str], expected: tuple[timedelta | None, ...]) -> None:
    args = worker_cli._parser().parse_args(["jobs.sqlite", *flags])
    assert (args.keep_completed, args.keep_failed) == expected


@pytest.mark.parametrize("value", ["soon", "-1d", "1e20d", "never"])
def test_worker_command_refuses_a_bad_retention_in_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        worker_cli.main(["jobs.sqlite", f"--keep-failed={value}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--keep-failed" in err and "bad duration" in err and "Traceback" not in err
