"""Wall clocks that step or disagree: a lease is lost only when its holder stops renewing it.

Each worker here is a real process (:mod:`tests.chaos.shifted`) whose wall clock is the
machine's plus an offset the test writes to a file: a step is a new offset while the
worker runs, a skew an offset from the start. The machine's clock is never touched.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from jobkit.model import JobStatus, utc_now
from tests.chaos.chaos_jobs import Nap, nap
from tests.chaos.harness import Harness, Proc, result, stop_all

pytestmark = pytest.mark.slow

LOCK = 2.0  # seconds; a heartbeat every 0.67 s, a look for lost leases every 0.05 s
HOUR = 3600.0
TEN_MINUTES = 600.0


def shifted(h: Harness, name: str, seconds: float) -> tuple[Proc, Path]:
    """A worker process whose clock runs *seconds* ahead of the machine's; the file that holds the offset."""
    offset = h.folder / f"{name}.offset"
    offset.write_text(str(seconds))
    argv = [sys.executable, "-m", "tests.chaos.shifted", str(h.db), str(offset), str(LOCK)]
    proc = h.spawn(argv, name)
    h.wait(proc.workers_started, 15, f"{name} to start")
    return proc, offset


def runs_of(h: Harness, job_id: str) -> list[tuple[int, int]]:
    return [(t.pid, t.attempt) for t in h.started(job_id)]


def test_a_worker_whose_clock_steps_forward_past_its_lock_keeps_running_its_job_once(h: Harness) -> None:
    worker, offset = shifted(h, "stepping", 0)
    job = nap.later(Nap([6.0]), h.store)
    h.wait(lambda: h.started(job), 10, "the job to start")
    for step in (HOUR, 2 * HOUR, 3 * HOUR):  # each far past the lock timeout
        offset.write_text(str(step))
        # The worker has acted on the step once the lease it keeps is stated in the stepped time.
        h.wait(
            lambda step=step: (
                (h.records()[job].worker_expires_at or utc_now()).timestamp() > utc_now().timestamp() + step - 60
            ),
            10,
            f"the worker to renew its lease on a clock {step:g}s ahead",
        )
    h.wait(lambda: h.records()[job].status is JobStatus.COMPLETED, 15, "the job to complete")
    record = h.records()[job]
    assert record.attempt_count == 1, f"the step spent an attempt: {record}"
    assert runs_of(h, job) == [(worker.pid, 1)], "the job ran twice"
    assert result(record) == {"pid": worker.pid, "attempt": 1}
    assert "lease lost" not in worker.stderr() and "worker was lost" not in worker.stderr()
    stop_all([worker])
    h.assert_clean()


def test_a_worker_whose_clock_is_ten_minutes_ahead_leaves_a_live_workers_job_alone(h: Harness) -> None:
    honest, _ = shifted(h, "honest", 0)
    long = nap.later(Nap([8.0]), h.store)  # four lock timeouts of the honest worker's heartbeats
    h.wait(lambda: h.started(long), 10, "the honest worker to start the long job")
    ahead, _ = shifted(h, "ahead", TEN_MINUTES)
    short = nap.later(Nap([0.1]), h.store)  # the honest worker is busy: the skewed one takes this
    h.wait(lambda: h.records()[short].status is JobStatus.COMPLETED, 10, "the skewed worker to run a job")
    assert result(h.records()[short])["pid"] == ahead.pid
    h.wait(lambda: h.records()[long].status is JobStatus.COMPLETED, 20, "the long job to complete")
    record = h.records()[long]
    assert runs_of(h, long) == [(honest.pid, 1)], "the skewed worker took a live worker's job"
    assert record.attempt_count == 1 and result(record) == {"pid": honest.pid, "attempt": 1}
    stop_all([honest, ahead])
    h.assert_clean()


@pytest.mark.parametrize("skew", [-TEN_MINUTES, TEN_MINUTES], ids=["heir behind", "heir ahead"])
def test_a_killed_holder_is_reaped_in_bounded_time_whatever_the_reapers_clock_says(h: Harness, skew: float) -> None:
    doomed, _ = shifted(h, "doomed", 0)
    job = nap.later(Nap([60.0, 0.2]), h.store)  # a minute on the first attempt, 0.2 s on the next
    h.wait(lambda: h.started(job), 10, "the job to start")
    heir, _ = shifted(h, "heir", skew)
    doomed.signal(signal.SIGKILL)
    assert doomed.wait_exit(5) == -signal.SIGKILL
    # A lock timeout of watching, a reap and a 0.2 s run: well within 10 s, and far less than the skew.
    h.wait(lambda: h.records()[job].status is JobStatus.COMPLETED, 10, "the heir to reap the job and run it")
    record = h.records()[job]
    assert record.attempt_count == 2 and result(record) == {"pid": heir.pid, "attempt": 2}
    assert runs_of(h, job) == [(doomed.pid, 1), (heir.pid, 2)]
    stop_all([heir])
    h.assert_clean([heir])
