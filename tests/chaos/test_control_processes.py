"""Wait, cancel and purge across processes: a real worker process, and another process waiting, cancelling or purging.

Workers are ``python -m jobkit.worker DB --jobs tests.chaos.control_jobs`` (or chaos_jobs),
started from the checkout root; the other side is the test process or a ``python -c``
child. Nothing sleeps to wait: conditions are polled with a deadline (the harness).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

import jobkit
from jobkit.model import CANCELLED_WHILE_LOST, JobRecord, JobStatus, new_id, utc_now
from tests import support
from tests.chaos import control_jobs
from tests.chaos.control_jobs import Gated, Spin, gated_sum, spin
from tests.chaos.harness import Harness, Proc, stop_all

pytestmark = pytest.mark.slow

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED

CANCEL = """
import sys, time
import jobkit
with jobkit.SqliteStore(sys.argv[1], create=False) as store:
    record = jobkit.cancel(store, sys.argv[2])
print(record.status.value, record.cancel_requested, time.time(), flush=True)
"""

WAIT = """
import json, sys, time
import jobkit
from tests.chaos.control_jobs import gated_sum
with jobkit.SqliteStore(sys.argv[1], create=False) as store:
    print("waiting", flush=True)
    try:
        value = gated_sum.wait(sys.argv[2], store, timeout=float(sys.argv[3]))
        print(json.dumps({"value": repr(value), "at": time.time()}), flush=True)
    except jobkit.JobFailed as exc:
        result = exc.result
        print(json.dumps({"status": result.status.value, "error": result.error, "at": time.time()}), flush=True)
    except TimeoutError as exc:
        print(json.dumps({"timeout": str(exc)}), flush=True)
"""

# Purge every finished job, in small batches, until the stop file appears; the first time it
# deletes something it makes the marker file. Prints how many it deleted in all.
PURGE_LOOP = """
import os, sys, time
from datetime import timedelta
import jobkit
database, stop, marker = sys.argv[1:4]
total = 0
with jobkit.SqliteStore(database, create=False) as store:
    while not os.path.exists(stop):
        deleted = jobkit.purge(store, older_than=timedelta(0), batch=5)
        total += deleted
        if deleted and not os.path.exists(marker):
            open(marker, "w").close()
        time.sleep(0.002)  # the pace of an admin's loop, not a wait for a condition
print(total, flush=True)
"""

# Enqueue nap jobs one by one, printing each id; the second half only once the marker file
# exists (purge has deleted some of the first half), so enqueuing, working and purging overlap.
ENQUEUE_IN_HALVES = """
import os, sys, time
import jobkit
from tests.chaos.chaos_jobs import Nap, nap
database, count, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with jobkit.SqliteStore(database, create=False) as store:
    for n in range(count):
        if n == count // 2:
            deadline = time.monotonic() + 30
            while not os.path.exists(marker):
                if time.monotonic() > deadline:
                    sys.exit("purge deleted nothing of the first half within 30s")
                time.sleep(0.005)  # polling for the marker file
        print(nap.later(Nap([0.01]), store), flush=True)
"""


def control_worker(h: Harness, *options: str, name: str = "worker") -> Proc:
    """``python -m jobkit.worker DB --jobs tests.chaos.control_jobs OPTIONS``."""
    argv = [sys.executable, "-m", "jobkit.worker", str(h.db), "--jobs", control_jobs.__name__, *options]
    return h.spawn(argv, name)


def events(h: Harness, job_id: str) -> list[str]:
    return [t.event for t in h.traces() if t.job_id == job_id]


def record(h: Harness, job_id: str) -> JobRecord:
    return support.record(h.store, job_id)


# -- cancel -----------------------------------------------------------------------------
@pytest.mark.parametrize(("then", "canceller"), [("raise", "another process"), ("return", "the test process")])
def test_cancel_stops_a_job_running_in_a_worker_process(h: Harness, then: str, canceller: str) -> None:
    worker = control_worker(h, "--concurrency", "2", "--poll-interval", "0.1")
    job_id = spin.later(Spin(then), h.store)
    h.wait(lambda: h.started(job_id), 20, "the job to start in the worker")
    if canceller == "another process":
        other = h.python(CANCEL, str(h.db), job_id, name="canceller")
        assert other.wait_exit(20) == 0, other.tail()
        status, requested, at = other.stdout().split()
        assert (status, requested) == ("running", "True")
        asked_at = float(at)
    else:
        asked_at = time.time()
        asked = jobkit.cancel(h.store, job_id)
        assert asked.status is RUNNING and asked.cancel_requested
    h.wait(lambda: record(h, job_id).status is CANCELLED, 10, "the job to end cancelled")

    seen = [t for t in h.traces() if t.event == "cancel-seen" and t.job_id == job_id]
    assert len(seen) == 1 and seen[0].pid == worker.pid
    # Workers look once a second; the bound is loose for a loaded CI machine, and far
    # below the 300 s lock timeout that a heartbeat-only design would need.
    assert seen[0].at - asked_at < 10.0, f"the handler saw the cancellation {seen[0].at - asked_at:.2f}s later"
    ended = record(h, job_id)
    assert ended.attempt_count == 1 and ended.error == "cancelled" and ended.worker_expires_at is None
    assert events(h, job_id) == ["start", "cancel-seen"]

    gate = h.folder / "open"
    gate.touch()
    after = gated_sum.later(Gated(str(gate), 1, 2), h.store)
    assert jobkit.wait(h.store, after, timeout=20).ok, "the worker stopped working after a cancellation"
    stop_all([worker])
    assert events(h, job_id) == ["start", "cancel-seen"], "the cancelled job ran again"
    h.assert_clean()


def test_a_cancelled_job_whose_worker_was_killed_ends_cancelled_and_is_not_retried(h: Harness) -> None:
    doomed = control_worker(h, "--lock-timeout", "1.5", "--poll-interval", "0.1", name="doomed")
    job_id = spin.later(Spin("ignore"), h.store)  # a handler that never looks at ctx.cancelled
    h.wait(lambda: h.started(job_id), 20, "the job to start")
    jobkit.cancel(h.store, job_id)
    h.wait(lambda: "cancellation requested" in doomed.stderr(), 10, "the worker to pass the request on")
    doomed.signal(signal.SIGKILL)
    assert doomed.wait_exit(10) == -signal.SIGKILL
    assert record(h, job_id).status is RUNNING, "nothing but the lock says the job is gone"

    heir = control_worker(h, "--lock-timeout", "1.5", "--poll-interval", "0.1", name="heir")
    h.wait(lambda: record(h, job_id).status is CANCELLED, 15, "the lost job to end cancelled")
    ended = record(h, job_id)
    assert ended.error == CANCELLED_WHILE_LOST and ended.attempt_count == 1
    assert [(t.event, t.pid) for t in h.traces() if t.job_id == job_id] == [("start", doomed.pid)]
    gate = h.folder / "open"
    gate.touch()
    assert jobkit.wait(h.store, gated_sum.later(Gated(str(gate), 2), h.store), timeout=20).ok
    stop_all([heir])
    assert events(h, job_id) == ["start"], "the cancelled job was run again"
    h.assert_clean([heir])


# -- wait ---------------------------------------------------------------------------------
def test_another_process_blocks_in_wait_and_gets_the_result_when_the_worker_finishes(h: Harness) -> None:
    gate = h.folder / "gate"
    worker = control_worker(h, "--concurrency", "2", "--poll-interval", "0.1")
    good = gated_sum.later(Gated(str(gate), 40, 2), h.store)
    bad = gated_sum.later(Gated(str(gate), -1), h.store)
    h.wait(lambda: h.started(good) and h.started(bad), 20, "both jobs to start")
    waiters = {job_id: h.python(WAIT, str(h.db), job_id, "30", name="waiter") for job_id in (good, bad)}
    h.wait(lambda: all("waiting" in w.stdout() for w in waiters.values()), 20, "the waiters to start waiting")
    assert all(w.alive() for w in waiters.values()), "a waiter returned before the jobs could finish"
    assert [record(h, j).status for j in (good, bad)] == [RUNNING, RUNNING]

    gate.touch()
    for waiter in waiters.values():
        assert waiter.wait_exit(20) == 0, waiter.tail()
    answers = {job_id: json.loads(w.stdout().splitlines()[-1]) for job_id, w in waiters.items()}
    assert answers[good]["value"] == "Sum(total=42)"
    assert (answers[bad]["status"], answers[bad]["error"]) == ("failed", "ValueError: negative: -1")
    for job_id, answer in answers.items():
        ended = record(h, job_id).completed_at
        assert ended is not None
        late = answer["at"] - ended.timestamp()
        assert late < 1.0, f"the waiter returned {late:.2f}s after job {job_id} ended"
    stored = record(h, good).result
    assert stored is not None and json.loads(stored) == {"total": 42}, "waiting read the result and left it there"
    stop_all([worker])
    h.assert_clean()


def test_wait_in_another_process_times_out_and_changes_nothing(h: Harness) -> None:
    job_id = gated_sum.later(Gated(str(h.folder / "never"), 1), h.store)  # no worker runs it
    before = record(h, job_id)
    began = time.monotonic()
    waiter = h.python(WAIT, str(h.db), job_id, "0.5", name="waiter")
    assert waiter.wait_exit(20) == 0, waiter.tail()
    assert json.loads(waiter.stdout().splitlines()[-1]) == {"timeout": f"job {job_id} is still pending after 0.5s"}
    assert time.monotonic() - began >= 0.5
    assert record(h, job_id) == before


# -- purge --------------------------------------------------------------------------------
def test_purge_from_another_process_while_workers_run_leaves_unfinished_jobs_alone(h: Harness) -> None:
    count = 160
    stop, marker = h.folder / "stop-purging", h.folder / "purged-some"
    workers = [h.worker("--concurrency", "3", "--poll-interval", "0.05", "--lock-timeout", "10") for _ in range(2)]
    h.wait(lambda: all(w.workers_started() for w in workers), 20, "the workers to start")
    purger = h.python(PURGE_LOOP, str(h.db), str(stop), str(marker), name="purger")
    enqueuer = h.python(ENQUEUE_IN_HALVES, str(h.db), str(count), str(marker), name="enqueuer")
    assert enqueuer.wait_exit(60) == 0, enqueuer.tail()
    ids = enqueuer.stdout().split()
    assert len(ids) == len(set(ids)) == count

    def ended() -> bool:
        return Counter(t.job_id for t in h.traces() if t.event == "end").keys() >= set(ids)

    h.wait(ended, 60, f"all {count} jobs to run to their end")
    h.wait(lambda: not h.store.counts()[RUNNING], 20, "the last outcomes to be written")
    stop.touch()
    assert purger.wait_exit(20) == 0, purger.tail()
    purged = int(purger.stdout().split()[-1])
    stop_all(workers)

    runs = Counter((t.job_id, t.event) for t in h.traces())
    for job_id in ids:
        assert (runs[(job_id, "start")], runs[(job_id, "end")]) == (1, 1), f"{job_id} did not run exactly once"
    left = h.records()
    assert set(left) <= set(ids)
    assert all(r.status is COMPLETED for r in left.values()), "a job was left unfinished"
    assert purged + len(left) == count, "a job vanished without being purged after it finished"
    assert purged >= 1 and marker.exists()
    for worker in workers:
        assert "lease lost" not in worker.stderr(), f"purge took a running job away\n{worker.tail()}"
    h.assert_clean()


def stored_at(h: Harness, status: JobStatus, at: datetime, *, name: str = gated_sum.name) -> str:
    """A job as any writer could store it: finished at *at*, or pending since then."""
    ended = status.finished
    job = support.make_job(
        new_id(),
        job_name=name,
        params="{}",
        status=status,
        scheduled_for=at,
        created_at=at,
        updated_at=at,
        attempt_count=1 if ended else 0,
        error="long ago" if status in (FAILED, CANCELLED) else None,
        completed_at=at if ended else None,
    )
    h.store.add([job])
    return job.id


def test_a_worker_process_prunes_by_its_retention_flags(h: Harness) -> None:
    now = utc_now()
    old_completed = stored_at(h, COMPLETED, now - timedelta(days=2))
    old_cancelled = stored_at(h, CANCELLED, now - timedelta(days=2))
    old_failed = stored_at(h, FAILED, now - timedelta(days=40))
    recent_failed = stored_at(h, FAILED, now - timedelta(days=2))
    # Pending for a year, for another pool of workers: these claim only their --jobs.
    pending_long = stored_at(h, PENDING, now - timedelta(days=400), name="elsewhere:job")
    gate = h.folder / "open"
    gate.touch()

    keeper = control_worker(h, "--keep-completed", "forever", "--keep-failed", "forever", name="keeper")
    first = gated_sum.later(Gated(str(gate), 1), h.store)
    assert jobkit.wait(h.store, first, timeout=20).ok  # its first round, when a worker prunes, is behind it
    stop_all([keeper])
    assert all(h.store.get(j) is not None for j in (old_completed, old_cancelled, old_failed, recent_failed))

    pruner = control_worker(h, "--keep-completed", "1d", name="pruner")  # failed: the default 30 days
    h.wait(
        lambda: all(h.store.get(j) is None for j in (old_completed, old_cancelled, old_failed)),
        20,
        "the worker to prune what is past its retention",
    )
    stop_all([pruner])
    assert "3 old jobs purged" in pruner.stderr(), pruner.tail()
    assert record(h, recent_failed).status is FAILED
    assert record(h, first).status is COMPLETED and record(h, pending_long).status is PENDING
    h.assert_clean()


def test_the_worker_command_refuses_a_bad_retention_without_a_traceback(h: Harness) -> None:
    for value in ("soon", "1e20d", "-3d"):
        done = h.run(str(h.db), f"--keep-completed={value}", "--burst")
        assert done.returncode == 2, done.stderr
        assert "--keep-completed" in done.stderr and "bad duration" in done.stderr
        assert "Traceback" not in done.stderr, done.stderr


def test_a_retention_longer_than_the_calendar_is_kept_forever(h: Harness) -> None:
    done = h.run(str(h.db), "--keep-completed", "99999999d", "--burst", "--jobs", control_jobs.__name__)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
