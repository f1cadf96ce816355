"""A handler's result, error, progress message or log line that UTF-8 cannot hold, in real worker processes.

Before, writing such an outcome raised UnicodeEncodeError: the worker died, the job was
given back with its attempt refunded, and it ran forever. Now the job ends once
(completed, its result decoding back to the same text, or failed with a readable error),
and the worker goes on.
"""

from __future__ import annotations

import json

import pytest

from jobkit.model import JobStatus
from tests.chaos import hostile_jobs
from tests.chaos.harness import Harness, stop_all

COMPLETED, FAILED = JobStatus.COMPLETED, JobStatus.FAILED


@pytest.mark.parametrize("processes", [[], ["--processes", "2"]], ids=["one-process", "two-processes"])
def test_an_outcome_holding_a_lone_surrogate_ends_its_job_once_and_the_worker_goes_on(
    h: Harness, processes: list[str]
) -> None:
    returning = hostile_jobs.returns_name.later_many(list(range(4)), h.store)
    raising = hostile_jobs.raises_name.later_many(list(range(4)), h.store)
    plain = hostile_jobs.plain.later_many(list(range(4)), h.store)
    worker = h.worker("--jobs", hostile_jobs.__name__, "--poll-interval", "0.05", *processes, jobs=False)

    everything = [*returning, *raising, *plain]
    h.wait(lambda: all(r.status.finished for r in h.records().values()), 30, "every job to end")
    assert worker.alive(), worker.tail()
    records = h.records()
    for job_id in returning:
        job = records[job_id]
        assert (job.status, job.attempt_count) == (COMPLETED, 1), job
        assert job.result is not None and json.loads(job.result) == hostile_jobs.NAME
    for job_id in raising:
        job = records[job_id]
        assert (job.status, job.attempt_count) == (FAILED, 1), job
        assert job.error == "FileNotFoundError: [Errno 2] No such file or directory: 'caf\\udce9.txt'"
        assert job.traceback is not None and "caf\\udce9.txt" in job.traceback
        assert job.progress_message in (None, "opening caf\\udce9.txt")  # progress is throttled: maybe unwritten
    assert all(records[j].status is COMPLETED for j in plain)
    assert len(everything) == len(records)

    stop_all([worker])
    log = worker.stderr()
    assert "Traceback" not in log and "UnicodeEncodeError" not in log, worker.tail(40)
    assert log.count("found caf\\udce9.txt") == 4, "each handler's log line made it out, escaped"
    assert worker.workers_started() <= (2 if processes else 1), "no worker process died and was restarted"
