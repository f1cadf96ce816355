"""An idle worker: wakes within milliseconds of an enqueue, costs no CPU, and --burst ends."""

from __future__ import annotations

import time

import apsw
import pytest

from tests.chaos.chaos_jobs import Nap, nap
from tests.chaos.harness import Harness, cpu_seconds

pytestmark = pytest.mark.slow

OTHER_POOL = "billing.tasks:charge"  # a job that another pool of workers serves


def hand_to_other_pool(h: Harness, job_id: str) -> None:
    conn = apsw.Connection(str(h.db))
    conn.set_busy_timeout(5_000)
    conn.execute("UPDATE jobs SET job_name = ? WHERE id = ?", (OTHER_POOL, job_id))
    conn.close()


def test_an_idle_worker_starts_a_new_job_within_a_fraction_of_a_second(h: Harness) -> None:
    # The poll interval is long, so only the wake-up on another process's commit can be this quick.
    warmup = nap.later(Nap([0.2]), h.store)
    worker = h.worker("--concurrency", "1", "--poll-interval", "30")
    h.wait(lambda: h.all_done([warmup]), 10, "the first job to complete")
    for _ in range(2):  # each enqueued while the worker sits idle after the previous job
        latency = enqueue_and_time_start(h)
        assert latency < 0.5, f"an idle worker took {latency:.3f}s to start a new job"
    assert worker.alive()


def enqueue_and_time_start(h: Harness) -> float:
    """Enqueue a short job, wait for it to complete; return the seconds from enqueue to start."""
    enqueued = time.time()
    job = nap.later(Nap([0.01]), h.store)
    (start,) = h.wait(lambda: h.started(job), 0.5, "an idle worker to start a job enqueued just now")
    h.wait(lambda: h.all_done([job]), 5, "the job to complete")
    return start.at - enqueued


def test_burst_with_jobs_ends_when_only_another_pools_jobs_are_due(h: Harness) -> None:
    ours = nap.later(Nap([0.01]), h.store)
    theirs = nap.later(Nap([0.01]), h.store)
    hand_to_other_pool(h, theirs)
    burst = h.worker("--burst", name="burst")
    h.wait(lambda: h.all_done([ours]), 10, "our job to complete")
    assert burst.wait_exit(3) == 0, "--burst kept running with nothing of its own to do"
    assert h.records()[theirs].attempt_count == 0


def test_a_worker_with_jobs_sleeps_while_only_another_pools_jobs_are_due(h: Harness) -> None:
    theirs = nap.later(Nap([0.01]), h.store)
    hand_to_other_pool(h, theirs)
    worker = h.worker("--poll-interval", "1")
    h.wait(lambda: "started" in worker.stderr(), 10, "the worker to start")
    before, began = cpu_seconds(worker.pid), time.monotonic()
    time.sleep(1.0)  # a window to measure CPU use over, not a wait for a condition
    used = (cpu_seconds(worker.pid) - before) / (time.monotonic() - began)
    assert used < 0.1, f"an idle worker used {used:.0%} of a CPU"
    assert h.records()[theirs].attempt_count == 0
