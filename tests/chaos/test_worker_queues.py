"""Worker processes and queues: ``--queues emails=2,default=4`` limits each queue's running jobs, a worker
serves only the queues it names, and a queue paused by the admin command is skipped until resumed.

Real processes on a real SQLite file (the chaos harness); the side-effect log says which
job ran when. Nothing sleeps to wait: conditions are polled with a deadline.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobkit.model import JobStatus
from tests.chaos import chaos_jobs
from tests.chaos.chaos_jobs import Nap
from tests.chaos.harness import ROOT, Harness

pytestmark = pytest.mark.slow


def most_at_once(h: Harness, ids: set[str]) -> int:
    """The most jobs of *ids* that were running at one moment, from the order of their start and end traces."""
    running = most = 0
    for trace in h.traces():
        if trace.job_id in ids and trace.event in ("start", "end"):
            running += 1 if trace.event == "start" else -1
            most = max(most, running)
    return most


def admin(h: Harness, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "jobkit", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_queue_runs_at_most_its_number_of_jobs_at_once(h: Harness) -> None:
    emails = set(chaos_jobs.nap.later_many([Nap([0.15])] * 10, h.store, queue="emails"))
    others = set(chaos_jobs.nap.later_many([Nap([0.15])] * 12, h.store))
    run = h.run(str(h.db), "--jobs", chaos_jobs.__name__, "--queues", "emails=2,default=4", "--burst", timeout=90)
    assert run.returncode == 0, run.stderr
    assert h.all_done(emails | others)
    assert 1 <= most_at_once(h, emails) <= 2
    assert 1 <= most_at_once(h, others) <= 4
    assert most_at_once(h, emails | others) <= 6, "the concurrency is the sum of the numbers"


def test_a_worker_serves_only_the_queues_it_names(h: Harness) -> None:
    mine = chaos_jobs.nap.later_many([Nap([0])] * 3, h.store, queue="reports")
    theirs = chaos_jobs.nap.later_many([Nap([0])] * 3, h.store)
    run = h.run(str(h.db), "--jobs", chaos_jobs.__name__, "--queues", "reports", "--burst", timeout=60)
    assert run.returncode == 0, run.stderr
    assert h.all_done(mine)
    assert h.all_done(theirs, JobStatus.PENDING), "another queue's jobs are left to its workers"


def test_a_queue_paused_from_the_command_line_is_skipped_by_a_running_worker_until_resumed(h: Harness) -> None:
    worker = h.worker("--concurrency", "2")
    assert "queue emails paused" in admin(h, "queues", str(h.db), "pause", "emails")
    held = chaos_jobs.nap.later(Nap([0]), h.store, queue="emails", priority=5)  # first in the claim order
    after = chaos_jobs.nap.later(Nap([0]), h.store)
    h.wait(lambda: h.all_done([after]), 30, "the default queue's job to run")
    assert not h.started(held), "a paused queue's job ran"
    assert "emails" in admin(h, "queues", str(h.db)) and "paused" in admin(h, "queues", str(h.db))
    assert "queue emails resumed (1 pending)" in admin(h, "queues", str(h.db), "resume", "emails")
    h.wait(lambda: h.all_done([held]), 30, "the resumed queue's job to run")
    assert worker.alive(), worker.tail()
