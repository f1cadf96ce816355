"""``python -m jobkit.worker`` as a user meets it: bad rows, one pass, bad files."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from jobkit.model import JobStatus
from tests.chaos.chaos_jobs import Nap, nap
from tests.chaos.harness import JOBS_MODULE, Harness, run_worker_command

pytestmark = pytest.mark.slow


def test_unknown_names_wait_and_corrupt_params_fail_alone_while_the_rest_complete(h: Harness) -> None:
    good = nap.later_many([Nap([0.01])] * 5, h.store)
    vanished, no_module, broken_json, wrong_shape = nap.later_many([Nap([0.01])] * 4, h.store)
    conn = apsw.Connection(str(h.db))
    conn.set_busy_timeout(5_000)
    conn.execute("BEGIN IMMEDIATE")
    for column, value, job_id in (
        ("job_name", f"{JOBS_MODULE}:vanished", vanished),
        ("job_name", "no_such_module_for_jobkit:job", no_module),
        ("params", '{"seconds": [0.01', broken_json),
        ("params", '{"seconds": "soon"}', wrong_shape),
    ):
        conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))
    conn.execute("COMMIT")
    conn.close()

    run = h.run(str(h.db), "--burst")  # no --jobs: names are imported on demand
    assert run.returncode == 0, run.stderr

    records = h.records()
    assert all(records[i].status is JobStatus.COMPLETED for i in good), h.describe()
    # A name this worker cannot resolve may be one another worker knows: it is retried
    # later (an attempt spent, as a raising handler's), not failed on its first try.
    # Params that do not decode are the job's own fault: it fails at once.
    for job_id, words, status in (
        (vanished, [f"{JOBS_MODULE}:vanished"], JobStatus.PENDING),
        (no_module, ["no_such_module_for_jobkit"], JobStatus.PENDING),
        (broken_json, ["JSON"], JobStatus.FAILED),
        (wrong_shape, ["seconds"], JobStatus.FAILED),
    ):
        record = records[job_id]
        assert (record.status, record.attempt_count) == (status, 1), record
        assert all(word in (record.error or "") for word in words), f"unclear error for {job_id}: {record.error}"
        assert job_id in run.stderr, f"the worker's log does not mention the failed job {job_id}"
    assert {t.job_id for t in h.traces()} == set(good), "a bad row reached a handler"
    assert "Traceback" not in run.stderr


def test_once_resets_expired_locks_runs_what_is_due_and_prints_one_summary_line(h: Harness) -> None:
    due = nap.later_many([Nap([0.05])] * 2, h.store)
    abandoned = nap.later(Nap([0.05]), h.store)
    later = nap.later(Nap([0.05]), h.store, delay=3600)
    conn = apsw.Connection(str(h.db))
    conn.set_busy_timeout(5_000)
    # As a worker that died holding it leaves a job: running, its lock expired long ago.
    conn.execute(
        """UPDATE jobs SET status = 'running', worker_id = 'gone:1', attempt_count = 1,
           worker_started_at = created_at, worker_expires_at = created_at WHERE id = ?""",
        (abandoned,),
    )
    conn.close()
    run = h.run(str(h.db), "--jobs", JOBS_MODULE, "--once", "--concurrency", "5")
    assert run.returncode == 0, run.stderr
    summary = run.stdout.strip().splitlines()
    assert len(summary) == 1, run.stdout
    assert "3 claimed, 3 completed" in summary[0] and "1 expired locks reset" in summary[0], summary
    records = h.records()
    assert all(records[i].status is JobStatus.COMPLETED for i in [*due, abandoned])
    assert records[abandoned].attempt_count == 2
    assert (records[later].status, records[later].attempt_count) == (JobStatus.PENDING, 0)


def test_once_claims_at_most_concurrency_jobs(h: Harness) -> None:
    ids = nap.later_many([Nap([0.05])] * 7, h.store)
    for passes in (1, 2):
        run = h.run(str(h.db), "--jobs", JOBS_MODULE, "--once", "--concurrency", "3")
        assert run.returncode == 0, run.stderr
        assert "3 claimed, 3 completed" in run.stdout, run.stdout
        records = h.records()
        done = [i for i in ids if records[i].status is JobStatus.COMPLETED]
        assert len(done) == 3 * passes
        untouched = [records[i] for i in ids if i not in done]
        assert all((r.status, r.attempt_count) == (JobStatus.PENDING, 0) for r in untouched)
        assert len(h.traces()) == 2 * 3 * passes  # a start and an end for each job run


def test_params_that_no_longer_decode_fail_with_an_error_that_says_so(h: Harness) -> None:
    job = nap.later(Nap([0.01]), h.store)
    conn = apsw.Connection(str(h.db))
    conn.set_busy_timeout(5_000)
    conn.execute("UPDATE jobs SET params = '{\"seconds\": [0.01' WHERE id = ?", (job,))
    conn.close()
    run = h.run(str(h.db), "--jobs", JOBS_MODULE, "--burst")
    assert run.returncode == 0, run.stderr
    record = h.records()[job]
    assert record.status is JobStatus.FAILED
    assert "params" in (record.error or ""), record.error


def _text(path: Path) -> None:
    path.write_text("name,price\nwidget,3\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _other_sqlite(path: Path) -> None:
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5)")
    conn.close()


@pytest.mark.parametrize("make", [None, _text, _empty, _other_sqlite], ids=["missing", "text", "empty", "other-sqlite"])
def test_a_file_that_is_not_a_jobkit_database_is_one_line_and_exit_2(tmp_path: Path, make: object) -> None:
    path = tmp_path / "jobs.sqlite"
    if callable(make):
        make(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    run = run_worker_command([str(path)])
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert str(path) in lines[0] and "Traceback" not in run.stderr
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before, "the worker created or changed a file"
