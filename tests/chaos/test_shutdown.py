"""SIGTERM and SIGINT: finish what runs within the grace period, give back the rest, exit 0."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timezone

import pytest

from jobkit.model import JobStatus
from tests.chaos.chaos_jobs import Nap, nap
from tests.chaos.harness import Harness, children_of, result, stop_all

pytestmark = pytest.mark.slow


def test_sigterm_lets_running_jobs_finish_and_claims_nothing_more(h: Harness) -> None:
    ids = nap.later_many([Nap([1.0])] * 5, h.store)
    worker = h.worker("--concurrency", "2", "--grace", "10")
    h.wait(lambda: len([t for t in h.traces() if t.event == "start"]) == 2, 10, "two jobs to start")
    worker.signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert worker.wait_exit(10) == 0, worker.tail()
    assert time.monotonic() - signalled < 5, "the worker waited out its grace period instead of the jobs"

    ran = {t.job_id for t in h.traces() if t.event == "start"}
    assert len(ran) == 2, "a job started after SIGTERM"
    assert {t.job_id for t in h.traces() if t.event == "end"} == ran
    records = h.records()
    for job_id in ids:
        record = records[job_id]
        if job_id in ran:
            assert (record.status, record.attempt_count) == (JobStatus.COMPLETED, 1)
        else:
            assert (record.status, record.attempt_count, record.worker_id) == (JobStatus.PENDING, 0, None)
    h.assert_clean()


def test_sigterm_gives_back_a_job_that_outlasts_a_tiny_grace(h: Harness) -> None:
    job = nap.later(Nap([30.0]), h.store)
    worker = h.worker("--concurrency", "1", "--grace", "0.2", name="first")
    h.wait(lambda: h.started(job), 10, "the long job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(5) == 0, worker.tail()
    assert "gave back 1" in worker.stderr()

    record = h.records()[job]
    assert (record.status, record.attempt_count, record.worker_id) == (JobStatus.PENDING, 0, None)
    assert record.scheduled_for <= datetime.now(timezone.utc), "the job given back is not due at once"
    assert [t.event for t in h.traces()] == ["start"]
    # Given back, not merely marked: the next worker starts it at once, as its first attempt again.
    successor = h.worker("--concurrency", "1", name="successor")
    runs = h.wait(lambda: h.started(job, successor.pid), 10, "another worker to start the job given back")
    assert runs[0].attempt == 1
    h.assert_clean()


def test_a_second_sigterm_exits_at_once_and_the_job_returns_after_its_lock_expires(h: Harness) -> None:
    job = nap.later(Nap([30.0, 0.2]), h.store)  # 30 s on the first attempt, 0.2 s on the next
    first = h.worker("--concurrency", "1", "--lock-timeout", "1", "--grace", "30", name="first")
    h.wait(lambda: h.started(job), 10, "the job to start")
    first.signal(signal.SIGTERM)
    # Two signals delivered before Python runs its handler count as one: wait for the first to land.
    h.wait(lambda: "stopping" in first.stderr(), 5, "the worker to take the first SIGTERM")
    first.signal(signal.SIGTERM)
    signalled = time.monotonic()
    code = first.wait_exit(5)
    assert code != 0, "the worker exited as if it had shut down cleanly"
    assert time.monotonic() - signalled < 2, "the second SIGTERM did not end the worker at once"

    held = h.records()[job]
    assert (held.status, held.attempt_count) == (JobStatus.RUNNING, 1), "exiting at once gives nothing back"
    assert held.worker_expires_at is not None
    second = h.worker("--concurrency", "1", "--lock-timeout", "1", "--poll-interval", "0.1", name="second")
    h.wait(lambda: h.records()[job].status is JobStatus.COMPLETED, 10, "the job to come back and complete")
    assert result(h.records()[job]) == {"pid": second.pid, "attempt": 2}
    (retaken,) = h.started(job, second.pid)
    assert retaken.at >= held.worker_expires_at.timestamp(), "the job was taken again before its lock expired"
    stop_all([second])
    h.assert_clean([second])


def test_ctrl_c_on_a_supervisor_lets_its_children_finish_their_jobs(h: Harness) -> None:
    ids = nap.later_many([Nap([1.5])] * 2, h.store)
    supervisor = h.worker("--processes", "2", "--concurrency", "1", "--grace", "20", name="supervisor")

    def both_at_work() -> set[int]:
        children = children_of(supervisor.pid)
        return children if len(children) == 2 and children <= {t.pid for t in h.traces()} else set()

    children = h.wait(both_at_work, 15, "both children to start a job")
    # Ctrl-C in a terminal sends SIGINT to every process of the foreground group. The
    # supervisor leads that group here; its children run in sessions of their own, so they
    # hear it once, from the supervisor, and finish their jobs instead of exiting at once.
    assert all(os.getpgid(child) != os.getpgid(supervisor.pid) for child in children)
    os.killpg(os.getpgid(supervisor.pid), signal.SIGINT)
    assert supervisor.wait_exit(20) == 0, supervisor.tail()
    assert h.all_done(ids), f"jobs abandoned by Ctrl-C: {h.describe()}"
