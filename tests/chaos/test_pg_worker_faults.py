"""Real worker processes on PostgreSQL: killed connections, a restart, SIGKILL, a skewed clock, transactions.

Each test has a schema of its own in the run's throwaway database (or, for a restart, a
private cluster); every process is started by the harness and ended by its id. The
side-effect log (tests/chaos/chaos_jobs.py) says what ran, where and how often.
"""

from __future__ import annotations

import glob
import signal
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from jobkit.model import JobStatus
from tests.chaos import chaos_jobs
from tests.chaos.chaos_jobs import Nap
from tests.chaos.harness import JOBS_MODULE, Harness, Proc, result
from tests.pg import Cluster, drop_store, schema_store

pytestmark = pytest.mark.slow


class PgHarness(Harness):
    """The chaos harness on a PostgresStore: workers take its URL and schema."""

    def __init__(self, folder: Path, dsn: str) -> None:
        super().__init__(folder)
        self.store.close()
        self.dsn = dsn
        self.pg = schema_store(dsn)
        self.store = self.pg

    def worker(self, *options: str, jobs: bool = True, name: str = "worker", env: dict[str, str] | None = None) -> Proc:
        argv = [sys.executable, "-m", "jobkit.worker", self.dsn, "--schema", self.pg.schema, "--jobs", JOBS_MODULE]
        if env:
            saved, self.env = self.env, {**self.env, **env}
            try:
                return self.spawn([*argv, *options], name)
            finally:
                self.env = saved
        return self.spawn([*argv, *options], name)

    def backends(self) -> list[int]:
        """The server processes of every session on the database but the harness's own admin one."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return [int(row[0]) for row in rows]

    def terminate_all(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()"""
            ).fetchone()
        assert row is not None
        return int(row[0])

    def counts(self) -> dict[JobStatus, int]:
        """Job counts, read on a fresh connection (the store's pool may hold one just killed)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(f'SELECT status, count(*) FROM "{self.pg.schema}".jobs GROUP BY status').fetchall()
        found = dict.fromkeys(JobStatus, 0)
        found.update({JobStatus(status): n for status, n in rows})
        return found

    def close(self) -> None:
        for proc in self.procs:
            proc.kill_tree()
        drop_store(self.pg)


@pytest.fixture
def pgh(tmp_path: Path, pg_dsn: str) -> Iterator[PgHarness]:
    harness = PgHarness(tmp_path, pg_dsn)
    try:
        yield harness
    finally:
        harness.close()


def ran_to_the_end(h: Harness) -> dict[str, int]:
    ends: dict[str, int] = {}
    for t in h.traces():
        if t.event == "end":
            ends[t.job_id] = ends.get(t.job_id, 0) + 1
    return ends


def test_a_worker_rides_out_its_connections_being_killed_and_loses_nothing(pgh: PgHarness) -> None:
    ids = chaos_jobs.nap.later_many([Nap([0.005])] * 400, pgh.store)
    worker = pgh.worker("--concurrency", "4", "--lock-timeout", "3")
    for kills in (40, 140, 260):
        pgh.wait(lambda k=kills: pgh.counts()[JobStatus.COMPLETED] >= k, 60, f"{kills} jobs completed")  # type: ignore[misc]
        assert pgh.terminate_all() >= 1
    pgh.wait(lambda: pgh.counts()[JobStatus.COMPLETED] == len(ids), 90, "every job completed after the kills")
    assert worker.alive(), worker.tail()
    ends = ran_to_the_end(pgh)
    assert set(ends) == set(ids), "a job completed without running to its end"
    # A claim whose answer was lost with its connection runs again once its lease goes
    # unrenewed: at least once, never lost; most jobs ran exactly once.
    assert sum(ends.values()) - len(ids) <= 3 * 4 * 2, ends
    # About one line when each incident starts (the loop's, and the lease keeper's when a
    # heartbeat or progress write met it too) and one when it is over; none a connection.
    # A job says more only when its claim's answer was lost with the connection and it ran
    # again; an outcome whose COMMIT's answer was lost is not reported dropped.
    warned = [line for line in worker.stderr().splitlines() if " WARNING " in line or " ERROR " in line]
    by_job = [line for line in warned if " WARNING job " in line or " ERROR job " in line]
    incidents = [line for line in warned if line not in by_job]
    assert 1 <= len(incidents) <= 3 * 4, "expected a line or two per incident\n" + "\n".join(warned)
    assert all("back to pending" in line for line in by_job), "\n".join(by_job)
    assert len(by_job) <= 3 * 4 * 2, "\n".join(by_job)
    assert "Traceback" not in worker.stderr()


def test_a_worker_rides_out_statement_timeouts_while_its_table_is_locked_and_loses_nothing(pgh: PgHarness) -> None:
    ids = chaos_jobs.nap.later_many([Nap([0.005])] * 300, pgh.store)
    # The worker's sessions cancel any statement after 250 ms (a setting users give in the URL); while
    # another session holds the jobs table, every claim, outcome and heartbeat of the worker hits it.
    timeout = "options=-c%20statement_timeout%3D250"
    url = f"{pgh.dsn}{'&' if '?' in pgh.dsn else '?'}{timeout}"
    argv = [sys.executable, "-m", "jobkit.worker", url, "--schema", pgh.pg.schema, "--jobs", JOBS_MODULE]
    worker = pgh.spawn([*argv, "--concurrency", "4", "--lock-timeout", "3"], "worker")
    pgh.wait(lambda: pgh.counts()[JobStatus.COMPLETED] >= 50, 60, "50 jobs completed")
    with psycopg.connect(pgh.dsn) as holder:
        holder.execute(f'LOCK TABLE "{pgh.pg.schema}".jobs IN ACCESS EXCLUSIVE MODE')
        # Held until the worker's loop (not only its lease keeper) has met the timeout and said so.
        pgh.wait(lambda: "failed: " in worker.stderr(), 60, "the worker's loop meeting the statement timeout")
        assert "statement timeout" in worker.stderr(), worker.tail(40)
        holder.rollback()  # the table is free again
    pgh.wait(lambda: pgh.counts()[JobStatus.COMPLETED] == len(ids), 90, "every job completed after the lock")
    assert worker.alive(), worker.tail()
    assert set(ran_to_the_end(pgh)) == set(ids), "a job completed without running to its end"
    assert "Traceback" not in worker.stderr()
    warned = [line for line in worker.stderr().splitlines() if " WARNING " in line or " ERROR " in line]
    assert 1 <= len(warned) <= 4, "a line as the trouble starts and one when it is over\n" + "\n".join(warned)
    assert any("takes writes again" in line for line in warned), worker.tail(40)


def test_a_worker_rides_out_a_server_restart(tmp_path: Path, throwaway_cluster: Cluster) -> None:
    h = PgHarness(tmp_path, throwaway_cluster.dsn)
    try:
        ids = chaos_jobs.nap.later_many([Nap([0.005])] * 300, h.store)
        worker = h.worker("--concurrency", "4", "--lock-timeout", "3")
        h.wait(lambda: h.counts()[JobStatus.COMPLETED] >= 60, 60, "60 jobs completed")
        throwaway_cluster.restart("immediate")  # a crash: what was committed survives, nothing else
        h.wait(lambda: h.counts()[JobStatus.COMPLETED] == len(ids), 120, "every job completed after the restart")
        assert worker.alive(), worker.tail()
        assert set(ran_to_the_end(h)) == set(ids)
        assert "Traceback" not in worker.stderr()
        back = [line for line in worker.stderr().splitlines() if "again" in line or "back" in line]
        assert back, "the worker never said the trouble was over\n" + worker.tail(40)
    finally:
        h.close()


def test_a_killed_worker_s_job_is_run_by_another_and_the_stale_one_writes_nothing(pgh: PgHarness) -> None:
    job_id = chaos_jobs.nap.later(Nap([30, 0.05]), pgh.store)
    first = pgh.worker("--lock-timeout", "2", name="first")
    pgh.wait(lambda: pgh.started(job_id), 30, "the first worker to start the job")
    second = pgh.worker("--lock-timeout", "2", name="second")
    first.kill_tree()
    pgh.wait(lambda: pgh.counts()[JobStatus.COMPLETED] == 1, 60, "the second worker to complete the job")
    record = pgh.store.get(job_id)
    assert record is not None and record.attempt_count == 2
    assert {t.pid for t in pgh.started(job_id)} == {first.pid, second.pid}


def test_a_job_enqueued_in_a_transaction_exists_and_runs_only_after_the_commit(pgh: PgHarness) -> None:
    worker = pgh.worker("--concurrency", "2")
    with psycopg.connect(pgh.dsn) as conn:
        kept = chaos_jobs.nap.later(Nap([0.01]), pgh.store, connection=conn)
        rolled = None
        marker = chaos_jobs.nap.later(Nap([0.01]), pgh.store)  # committed at once
        pgh.wait(lambda: pgh.store.get(marker) is not None and ran_to_the_end(pgh).get(marker), 30, "the marker")
        assert pgh.store.get(kept) is None, "seen before the commit"
        assert not pgh.started(kept), "run before the commit"
        conn.commit()
        pgh.wait(lambda: ran_to_the_end(pgh).get(kept), 30, "the committed job to run")
        with conn.transaction():
            rolled = chaos_jobs.nap.later(Nap([0.01]), pgh.store, connection=conn)
            raise psycopg.Rollback()  # psycopg's way to roll the block back and go on
    second = chaos_jobs.nap.later(Nap([0.01]), pgh.store)
    pgh.wait(lambda: ran_to_the_end(pgh).get(second), 30, "a later job to run")
    assert rolled is not None and pgh.store.get(rolled) is None and not pgh.started(rolled)
    assert worker.alive()


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")) + sorted(
        glob.glob("/usr/lib/faketime/libfaketime.so.1")
    )
    if not found:
        pytest.fail("libfaketime is not installed (apt-get install faketime; .ci/run installs it)")
    return found[0]


@pytest.mark.parametrize("skew", ["+10m", "-10m"])
def test_a_worker_whose_clock_is_minutes_wrong_runs_delayed_jobs_on_time_and_steals_nothing(
    pgh: PgHarness, skew: str
) -> None:
    skewed = {"LD_PRELOAD": libfaketime(), "FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    holder = chaos_jobs.nap.later(Nap([6]), pgh.store)
    honest = pgh.worker("--lock-timeout", "2", "--concurrency", "1", name="honest")
    pgh.wait(lambda: pgh.started(holder), 30, "the honest worker to start the long job")
    # Jobs of no length for the skewed worker: under libfaketime a sleeping handler's
    # clock_nanosleep fails (EINVAL), which is libfaketime's trouble, not the worker's.
    delayed = chaos_jobs.nap.later(Nap([0]), pgh.store, delay=timedelta(seconds=3))
    wrong = pgh.worker("--lock-timeout", "2", name="skewed", env=skewed)
    marker = chaos_jobs.nap.later(Nap([0]), pgh.store)
    pgh.wait(lambda: ran_to_the_end(pgh).get(marker), 30, "the skewed worker to run a due job")
    [mark] = [t for t in pgh.traces() if t.job_id == marker and t.event == "start"]
    assert mark.pid == wrong.pid
    shift = mark.at - pgh.store.now().timestamp()
    assert abs(shift) > 500, f"the skewed worker's clock is off by {shift:.0f}s only: faketime did not take"
    before = pgh.store.get(delayed)
    assert before is not None and pgh.store.now() < before.scheduled_for
    assert not pgh.started(delayed), "the delayed job ran early"
    pgh.wait(lambda: ran_to_the_end(pgh).get(delayed), 30, "the delayed job to run when due")
    pgh.wait(lambda: ran_to_the_end(pgh).get(holder), 30, "the long job to end")
    assert {t.pid for t in pgh.started(holder)} == {honest.pid}, "the skewed worker took a live worker's job"
    for proc in (honest, wrong):
        proc.signal(signal.SIGTERM)
        assert proc.wait_exit(30) == 0, proc.tail()


def test_sigterm_gives_a_running_job_back_without_spending_its_attempt(pgh: PgHarness) -> None:
    job_id = chaos_jobs.nap.later(Nap([30, 0.01]), pgh.store)
    worker = pgh.worker("--grace", "0.5", name="stopped")
    pgh.wait(lambda: pgh.started(job_id), 30, "the worker to start the job")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.tail()
    record = pgh.store.get(job_id)
    assert record is not None and record.status is JobStatus.PENDING and record.attempt_count == 0
    following = pgh.worker(name="next")
    pgh.wait(lambda: pgh.started(job_id, following.pid), 30, "another worker to start it")
    assert [t.attempt for t in pgh.started(job_id)] == [1, 1], "the give-back spent an attempt"


def test_a_worker_frozen_past_its_lock_loses_the_job_and_its_late_outcome_is_not_written(pgh: PgHarness) -> None:
    job_id = chaos_jobs.nap.later(Nap([1.5, 0.01]), pgh.store)
    frozen = pgh.worker("--lock-timeout", "1", name="frozen")
    pgh.wait(lambda: pgh.started(job_id), 30, "the first worker to start the job")
    frozen.signal(signal.SIGSTOP)
    try:
        other = pgh.worker("--lock-timeout", "1", name="other")
        pgh.wait(lambda: pgh.started(job_id, other.pid), 30, "the other worker to take the job over")
        pgh.wait(lambda: pgh.counts()[JobStatus.COMPLETED] == 1, 30, "the other worker to complete it")
    finally:
        frozen.signal(signal.SIGCONT)
    pgh.wait(lambda: len([t for t in pgh.traces() if t.event == "end"]) == 2, 30, "the frozen one to finish too")
    record = pgh.store.get(job_id)
    assert record is not None and result(record)["pid"] == other.pid, "the stale worker's outcome was written"
    assert frozen.alive(), frozen.tail()


PRODUCE = """
import sys, jobkit
from tests.chaos.chaos_jobs import Nap, nap
dsn, schema, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with jobkit.PostgresStore(dsn, schema=schema, create=False) as store:
    for i in range(count):
        ids = [nap.later(Nap([0]), store)] if i % 2 else nap.later_many([Nap([0])] * 3, store)
        print("\\n".join(ids), flush=True)
"""


def test_several_enqueuing_processes_and_two_workers_run_every_job(pgh: PgHarness) -> None:
    producers = [pgh.python(PRODUCE, pgh.dsn, pgh.pg.schema, "60", name=f"producer-{i}") for i in range(3)]
    workers = [pgh.worker("--concurrency", "3", name=f"worker-{i}") for i in range(2)]
    for producer in producers:
        assert producer.wait_exit(60) == 0, producer.tail()
    ids = {line for producer in producers for line in producer.stdout().split()}
    assert len(ids) == 3 * 120
    pgh.wait(lambda: pgh.counts()[JobStatus.COMPLETED] == len(ids), 90, "every enqueued job completed")
    assert set(ran_to_the_end(pgh)) == ids
    assert all(worker.alive() for worker in workers)
