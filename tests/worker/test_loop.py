"""run_worker in this process: in a thread, burst, progress, priorities, the entry points.

Multi-process scenarios (signals, kill -9, several workers on one file) live in tests/chaos/.
Nothing here sleeps to wait: handlers and tests meet on Events, and conditions are polled
with a deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection
from datetime import datetime
from typing import Any

import pytest

import jobkit
from jobkit.errors import StoreError
from jobkit.store import Store
from jobkit.worker import Report, run_worker, tick, tick_handler
from tests import worker_jobs
from tests.support import (
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    TIMEOUT,
    Background,
    burst,
    record,
    status_is,
    wait_until,
)


# -- run_worker in a thread, as a notebook runs it -------------------------------------
def test_a_worker_in_a_thread_picks_up_jobs_enqueued_while_it_runs(store: Store) -> None:
    with Background(store, worker_jobs.jobs) as bg:
        first = worker_jobs.add.later({"a": 1, "b": 1}, store)
        wait_until(status_is(store, first, COMPLETED), "the first job")
        later = [worker_jobs.add.later({"a": n, "b": 10}, store) for n in range(5)]
        for job_id in later:
            wait_until(status_is(store, job_id, COMPLETED), f"job {job_id}")
        assert bg.thread.is_alive()
        report = bg.stop()
    assert [record(store, job_id).result for job_id in [first, *later]] == ["2", "10", "11", "12", "13", "14"]
    assert report == Report(claimed=6, completed=6)
    assert all(record(store, job_id).attempt_count == 1 for job_id in later)


def test_an_idle_worker_stops_soon_after_its_event_is_set(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    idle = threading.Event()
    next_due = store.next_due

    def noting_idle(names: Collection[str] | None = None, queues: Collection[str] | None = None) -> datetime | None:
        due = next_due(names, queues)
        idle.set()  # an idle worker asks when the next job is due, then waits
        return due

    monkeypatch.setattr(store, "next_due", noting_idle)
    with Background(store, worker_jobs.jobs, poll_interval=2.0) as bg:
        assert idle.wait(TIMEOUT)
        bg.stop_event.set()
        assert bg.returned(0.5) == Report()


def test_a_store_that_is_not_healthy_stops_the_worker_at_start() -> None:
    class Broken(jobkit.MemoryStore):
        def health(self) -> tuple[bool, str]:
            return False, "disk on fire"

    with pytest.raises(StoreError, match="disk on fire"):
        run_worker(Broken(), worker_jobs.jobs, burst=True)


@pytest.mark.parametrize(
    "options",
    [{"concurrency": 0}, {"lock_timeout": 0}, {"poll_interval": 0}, {"grace": -1}],
    ids=["concurrency", "lock_timeout", "poll_interval", "grace"],
)
def test_run_worker_refuses_nonsense_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options)).split("_")[0]):
        run_worker(jobkit.MemoryStore(), worker_jobs.jobs, burst=True, **options)


# -- burst -------------------------------------------------------------------------------
def test_burst_returns_when_nothing_is_due_and_counts_what_it_did(store: Store) -> None:
    registry = jobkit.Registry()

    @registry.job(name="t:flaky", max_attempts=2, retry_backoff=0)
    def flaky(params: int, ctx: jobkit.Context) -> int:
        raise ValueError(f"no good: {params}")

    registry.register(worker_jobs.add)
    done = worker_jobs.add.later_many([{"a": n} for n in range(3)], store)
    failing = flaky.later(1, store)
    not_yet = worker_jobs.add.later({"a": 9}, store, delay=3600)

    report = burst(store, registry)

    assert report == Report(claimed=5, completed=3, retried=1, failed=1)
    assert [record(store, job_id).status for job_id in done] == [COMPLETED] * 3
    assert (record(store, failing).status, record(store, failing).attempt_count) == (FAILED, 2)
    assert (record(store, not_yet).status, record(store, not_yet).attempt_count) == (PENDING, 0)


def test_burst_on_an_empty_store_returns_an_empty_report(store: Store) -> None:
    assert burst(store, worker_jobs.jobs) == Report()
    assert burst(store) == Report()


# -- progress ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_progress_is_visible_in_the_store_while_the_job_runs(store: Store, kind: str) -> None:
    registry = jobkit.Registry()
    gate = threading.Event()

    def body(ctx: jobkit.Context) -> None:
        ctx.progress(40, "halfway there")

    if kind == "sync":

        @registry.job(name="t:reports")
        def reports(params: int, ctx: jobkit.Context) -> int:
            body(ctx)
            assert gate.wait(TIMEOUT)
            return params

    else:

        @registry.job(name="t:reports")
        async def reports(params: int, ctx: jobkit.Context) -> int:
            body(ctx)
            assert await asyncio.get_running_loop().run_in_executor(None, gate.wait, TIMEOUT)
            return params

    job_id = registry.get("t:reports").later(8, store)  # type: ignore[union-attr]
    with Background(store, registry) as bg:
        wait_until(lambda: record(store, job_id).progress == 40, "the progress write")
        job = record(store, job_id)
        assert (job.status, job.progress_message) == (RUNNING, "halfway there")
        gate.set()
        wait_until(status_is(store, job_id, COMPLETED), "the job to complete")
        assert bg.stop() == Report(claimed=1, completed=1)
    assert record(store, job_id).progress == 100


# -- priorities -----------------------------------------------------------------------------------
def test_higher_priority_jobs_run_first(store: Store) -> None:
    registry = jobkit.Registry()
    ran: list[str] = []

    @registry.job(name="t:ordered")
    def ordered(params: str, ctx: jobkit.Context) -> None:
        ran.append(params)

    for label, priority in [("p0", 0), ("p5-first", 5), ("p-1", -1), ("p10", 10), ("p5-second", 5), ("p0-b", 0)]:
        ordered.later(label, store, priority=priority)
    assert burst(store, registry, concurrency=1) == Report(claimed=6, completed=6)
    assert ran == ["p10", "p5-first", "p5-second", "p0", "p0-b", "p-1"]


def test_the_library_form_is_reachable_from_the_package() -> None:
    assert (jobkit.run_worker, jobkit.tick, jobkit.tick_handler) == (run_worker, tick, tick_handler)
    assert {"run_worker", "tick", "tick_handler"} <= set(jobkit.__all__)
