"""Many processes on one SQLite file: nothing is run twice, nothing fails for being busy."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest

from jobkit.model import JobStatus
from tests.chaos.chaos_jobs import Nap, nap
from tests.chaos.harness import Harness, result, stop_all

pytestmark = pytest.mark.slow

CI = bool(os.environ.get("CI"))

ENQUEUE = "import sys; from tests.chaos.chaos_jobs import enqueue_main; enqueue_main(sys.argv[1:])"

# Holds the write lock of the file given, then says when it took and let go of it (wall time).
HOLD_WRITE_LOCK = """
import sys, time, apsw
conn = apsw.Connection(sys.argv[1])
conn.set_busy_timeout(20_000)
conn.execute("BEGIN IMMEDIATE")
print("locked", time.time(), flush=True)
time.sleep(float(sys.argv[2]))  # the fault under test: a writer that keeps the lock this long
conn.execute("COMMIT")
print("released", time.time(), flush=True)
"""


def test_workers_and_enqueuers_on_one_file_run_each_job_exactly_once(h: Harness) -> None:
    per_enqueuer = 60 if CI else 150
    # A short poll interval: new work must reach the workers while the enqueuers still write.
    workers = [h.worker("--concurrency", "3", "--lock-timeout", "10", "--poll-interval", "0.05") for _ in range(3)]
    h.wait(lambda: all("started" in w.stderr() for w in workers), 20, "the workers to start")
    enqueuers = [h.python(ENQUEUE, str(h.db), str(per_enqueuer), "0.01", name="enqueuer") for _ in range(2)]
    for enqueuer in enqueuers:
        assert enqueuer.wait_exit(60) == 0, enqueuer.tail()
    ids = [line for enqueuer in enqueuers for line in enqueuer.stdout().split()]
    assert len(ids) == len(set(ids)) == 2 * per_enqueuer
    enqueued_by = max(float(e.stderr().split()[-1]) for e in enqueuers)

    h.wait(lambda: h.all_done(ids), 60, f"all {len(ids)} jobs completed")
    stop_all(workers)

    records = h.records()
    assert set(records) == set(ids), "the database holds exactly the jobs the enqueuers acknowledged"
    runs = defaultdict(list)
    for trace in h.traces():
        runs[trace.job_id].append(trace)
    for job_id in ids:
        record = records[job_id]
        events = [(t.event, t.pid, t.attempt) for t in runs[job_id]]
        assert record.status is JobStatus.COMPLETED
        assert record.attempt_count == 1, f"{job_id} was claimed {record.attempt_count} times: {events}"
        pid = result(record)["pid"]
        assert events == [("start", pid, 1), ("end", pid, 1)], f"{job_id} did not run exactly once: {events}"
    pids = {result(r)["pid"] for r in records.values()}
    assert len(pids) >= 2, f"only {pids} did any work: the test did not exercise concurrent workers"
    first_run = min(t.at for t in h.traces())
    assert first_run < enqueued_by, "no job ran while the enqueuers were writing: there was no contention"
    h.assert_clean()


def test_a_writer_holding_the_lock_for_seconds_only_delays_the_workers(h: Harness) -> None:
    ids = nap.later_many([Nap([0.15])] * 40, h.store)
    workers = [h.worker("--concurrency", "2", "--lock-timeout", "10") for _ in range(2)]
    h.wait(lambda: sum(r.status is JobStatus.COMPLETED for r in h.records().values()) >= 4, 20, "work under way")

    holder = h.python(HOLD_WRITE_LOCK, str(h.db), "3", name="lock-holder")
    h.wait(lambda: "locked" in holder.stdout(), 20, "the other process to take the write lock")
    assert holder.wait_exit(30) == 0, holder.tail()
    times = dict(line.split() for line in holder.stdout().splitlines())
    locked, released = float(times["locked"]), float(times["released"])
    assert released - locked >= 3
    finished_meanwhile = [t for t in h.traces() if t.event == "end" and locked < t.at < released]
    assert finished_meanwhile, "no handler finished while the lock was held: the lock missed the work"

    h.wait(lambda: h.all_done(ids), 30, "every job completed once the lock was released")
    assert all(w.alive() for w in workers), "a worker died while waiting for the lock"
    stop_all(workers)
    records = h.records()
    assert [r.attempt_count for r in records.values()] == [1] * len(ids), "a job was retried because of the lock"
    assert all(r.error is None for r in records.values())
    h.assert_clean()


# A worker in its own process whose store gives up on a busy file after 0.3 s: what the
# default 30 s busy timeout does when another writer keeps the lock longer than that.
IMPATIENT_WORKER = """
import logging, sys
import jobkit
from jobkit.worker import run_worker
from tests.chaos.chaos_jobs import jobs
logging.basicConfig(level=logging.INFO)
with jobkit.SqliteStore(sys.argv[1], busy_timeout=0.3) as store:
    print(run_worker(store, jobs, concurrency=2, lock_timeout=3, poll_interval=0.1), file=sys.stderr)
"""


def test_a_lock_held_past_the_busy_timeout_does_not_stop_the_worker(h: Harness) -> None:
    ids = nap.later_many([Nap([0.5])] * 6, h.store)
    worker = h.python(IMPATIENT_WORKER, str(h.db), name="impatient-worker")
    h.wait(lambda: any(t.event == "start" for t in h.traces()), 10, "work under way")
    holder = h.python(HOLD_WRITE_LOCK, str(h.db), "1.5", name="lock-holder")
    assert holder.wait_exit(30) == 0, holder.tail()
    h.wait(lambda: h.all_done(ids) or not worker.alive(), 20, "every job completed, or the worker gone")
    assert worker.alive(), f"the worker stopped because the file was busy\n{worker.tail(30)}"
    assert h.all_done(ids)
    log = worker.stderr()
    assert "Traceback" not in log, worker.tail(40)
    locked = [line for line in log.splitlines() if "stayed locked" in line]
    assert locked, "the lock was never in the way: the test shows nothing"
    # Each line says the write is kept and tried again (a postponed step, or the loop's outage line).
    assert all("postponed" in line or "trying again" in line for line in locked), "\n".join(locked)
