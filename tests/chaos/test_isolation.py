"""``--isolation process``: sync handlers in child processes, with real workers, signals and files.

A handler that holds the GIL cannot stall the worker's loop (its lease is kept, the job
runs once); a child that overruns its timeout is killed and the job fails as timed out;
a child that dies fails its attempt and the worker goes on with a new one; progress and
cancellation cross between the two.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

import jobkit
from jobkit.model import JobStatus
from tests.chaos import isolated_jobs
from tests.chaos.harness import Harness, Proc, process_state
from tests.chaos.isolated_jobs import Gate, Hold, overrun, quick, segfault, stall, until_cancelled, wait_for_gate

pytestmark = pytest.mark.slow

JOBS = ("--jobs", isolated_jobs.__name__)
FAST = ("--lock-timeout", "1", "--poll-interval", "0.1")
LOST = re.compile(r"worker was lost|lease lost|lease not renewed|lock expired", re.IGNORECASE)


def isolated_worker(h: Harness, *options: str, name: str = "worker") -> Proc:
    return h.worker(*JOBS, *FAST, "--isolation", "process", *options, jobs=False, name=name)


def child_of(h: Harness, job_id: str, worker: Proc) -> int:
    """The pid of the process that started *job_id*'s first attempt: a child of *worker*, not itself."""
    trace = h.wait(lambda: h.started(job_id), 20, f"job {job_id} to start")[0]
    assert trace.pid != worker.pid, "the handler ran in the worker's own process"
    return trace.pid


def gone(pid: int) -> bool:
    return process_state(pid) in ("", "Z")


def test_a_handler_holding_the_gil_keeps_its_lease_and_runs_once(h: Harness) -> None:
    # Three lock timeouts with the GIL held: in a thread, the worker's heartbeats would stop
    # and the watching worker would take the job and run it again.
    job_id = stall.later(Hold(3.0), h.store)
    holder = isolated_worker(h, "--concurrency", "1", name="holder")
    child_of(h, job_id, holder)
    watcher = isolated_worker(h, "--concurrency", "1", name="watcher")
    h.wait(lambda: h.records()[job_id].status is JobStatus.COMPLETED, 30, "the stalled job to complete")
    record = h.records()[job_id]
    assert record.attempt_count == 1, record
    assert len(h.started(job_id)) == 1, h.traces()
    for proc in (holder, watcher):
        assert not LOST.search(proc.stderr()), proc.tail(40)
    h.assert_clean()


def test_a_child_past_its_timeout_is_killed_and_the_job_fails_timed_out(h: Harness) -> None:
    job_id = overrun.later(Hold(60.0), h.store)  # timeout=1: never looks at ctx.cancelled
    worker = isolated_worker(h)
    pid = child_of(h, job_id, worker)
    h.wait(lambda: h.records()[job_id].status is JobStatus.FAILED, 15, "the overrunning job to fail")
    record = h.records()[job_id]
    assert record.error is not None and "timeout" in record.error, record
    assert gone(pid), f"the child {pid} of the timed-out job still runs"
    after = quick.later(1, h.store)  # and the worker goes on, in a new child
    h.wait(lambda: h.records()[after].status is JobStatus.COMPLETED, 20, "the next job to complete")
    assert worker.alive()
    h.assert_clean()


def test_a_killed_child_fails_its_attempt_and_a_new_child_runs_the_retry(h: Harness) -> None:
    gate = h.folder / "gate"  # never opened: attempt 1 waits until its process is killed
    job_id = wait_for_gate.later(Gate(str(gate)), h.store)
    worker = isolated_worker(h)
    pid = child_of(h, job_id, worker)
    h.wait(lambda: h.records()[job_id].progress == 40, 15, "progress from the child to reach the store")
    assert h.records()[job_id].progress_message == f"waiting in pid {pid}"
    os.kill(pid, signal.SIGKILL)
    h.wait(lambda: h.records()[job_id].status is JobStatus.COMPLETED, 20, "the retry to complete")
    record = h.records()[job_id]
    assert record.attempt_count == 2, record
    assert record.result is not None and int(record.result) != pid, "the retry ran in the killed child"
    h.wait(lambda: "killed by SIGKILL" in worker.stderr(), 5, "the attempt's error in the worker's log")
    assert worker.alive()
    h.assert_clean()


def test_a_segfault_in_a_handler_fails_the_attempt_not_the_worker(h: Harness) -> None:
    job_id = segfault.later(0, h.store)  # attempt 1 reads address 0; attempt 2 returns
    worker = isolated_worker(h)
    h.wait(lambda: h.records()[job_id].status is JobStatus.COMPLETED, 20, "the retry after the crash to complete")
    assert h.records()[job_id].attempt_count == 2
    assert "was killed by SIGSEGV" in worker.stderr(), worker.tail(40)
    assert worker.alive()
    h.assert_clean()


def test_cancelling_stops_a_cooperative_child_and_kills_a_stuck_one(h: Harness) -> None:
    polite = until_cancelled.later(0, h.store)
    stuck = stall.later(Hold(60.0), h.store)  # holds the GIL: cannot even look at ctx.cancelled
    worker = isolated_worker(h, "--concurrency", "2")
    polite_pid, stuck_pid = child_of(h, polite, worker), child_of(h, stuck, worker)
    for job_id in (polite, stuck):
        jobkit.cancel(h.store, job_id)
    h.wait(lambda: h.all_done([polite, stuck], JobStatus.CANCELLED), 20, "both jobs to end cancelled")
    assert gone(stuck_pid), "the stuck child was not killed"
    assert not gone(polite_pid), "the cooperative child was killed, not asked"
    after = quick.later(1, h.store)
    h.wait(lambda: h.records()[after].status is JobStatus.COMPLETED, 20, "the next job to complete")
    assert int(h.records()[after].result or 0) == polite_pid, "the cooperative child was not kept for the next job"
    h.assert_clean()
