"""A full disk, for real: a small tmpfs holds the database, and a filler file takes the rest of it.

``later()`` then raises :class:`jobkit.StoreFullError` and writes nothing; a worker
process meets the full disk, stays up, backs off, logs one line for the outage (and one
when it ends), and finishes every accepted job once space is freed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import jobkit
from jobkit.model import JobStatus
from tests.chaos import hostile_jobs
from tests.chaos.harness import Harness, stop_all

OUTAGE = "keeping what is not written and trying again"
RECOVERED = "the store takes writes again"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, mounted for this test alone."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode}); needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the disk-full tests")
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, *, leave: int = 0) -> Path:
    """Write a file until the disk is full, then free *leave* bytes; it is the space the test frees later."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def integrity(db: Path) -> str:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchall()[0][0])
    finally:
        conn.close()


def test_later_on_a_full_disk_raises_store_full_error_and_writes_nothing(small_disk: Path) -> None:
    db = small_disk / "jobs.sqlite"
    with jobkit.SqliteStore(db) as store:
        kept = hostile_jobs.plain.later(1, store)
        filler = fill(small_disk)
        with pytest.raises(jobkit.StoreFullError, match="the disk is full") as refused:
            hostile_jobs.plain.later_many(list(range(5000)), store)
        assert isinstance(refused.value, jobkit.StoreError) and refused.value.path == str(db)
        with pytest.raises(jobkit.StoreFullError):
            hostile_jobs.big.later(3, store, correlation_id="y" * 900_000)
        assert sum(store.counts().values()) == 1 and store.get(kept) is not None
        filler.unlink()
        assert len(hostile_jobs.plain.later_many(list(range(5000)), store)) == 5000
    assert integrity(db) == "ok"


def test_a_worker_rides_out_a_full_disk_and_finishes_every_accepted_job(small_disk: Path, tmp_path: Path) -> None:
    h = Harness(tmp_path)  # the processes' logs stay on a disk with room; the database moves to the small one
    h.store.close()
    h.db = small_disk / "jobs.sqlite"
    h.store = jobkit.SqliteStore(h.db)
    try:
        accepted = hostile_jobs.big.later_many(list(range(24)), h.store)  # 24 x 64 KiB of results to write
        filler = fill(small_disk)
        worker = h.worker(
            "--jobs", hostile_jobs.__name__, "--lock-timeout", "300", "--poll-interval", "0.05", "-v", jobs=False
        )
        h.wait(lambda: worker.stderr().count("failed again") >= 3, 30, "the worker to meet the full disk and retry")
        assert worker.alive(), worker.tail()
        log = worker.stderr()
        assert log.count(OUTAGE) == 1 and "the disk is full" in log, worker.tail(40)
        assert "Traceback" not in log, worker.tail(40)

        filler.unlink()
        h.wait(lambda: h.all_done(accepted), 60, "every accepted job to complete once space is back")
        records = h.records()
        assert [records[j].status for j in accepted] == [JobStatus.COMPLETED] * len(accepted)
        assert all(records[j].result is not None for j in accepted)
        stop_all([worker])
        log = worker.stderr()
        assert log.count(OUTAGE) == 1 and log.count(RECOVERED) == 1, worker.tail(40)
        assert "Traceback" not in log
    finally:
        h.close()
    assert integrity(small_disk / "jobs.sqlite") == "ok"


def test_a_one_pass_worker_on_a_full_disk_gives_up_after_its_grace_and_exits_1(
    small_disk: Path, tmp_path: Path
) -> None:
    """`--once` is run by cron: it must end, not wait for space for good; what it ran runs again later."""
    h = Harness(tmp_path)
    h.store.close()
    h.db = small_disk / "jobs.sqlite"
    h.store = jobkit.SqliteStore(h.db)
    try:
        accepted = hostile_jobs.big.later_many(list(range(4)), h.store)  # results of 64 KiB each to write
        filler = fill(small_disk, leave=128 * 1024)  # room to claim them, none for their results
        run = h.run(str(h.db), "--jobs", hostile_jobs.__name__, "--once", "--grace", "1", timeout=60)
        assert run.returncode == 1, run.stderr
        assert "giving up on" in run.stderr and "outcomes not written" in run.stdout, run.stderr
        assert "Traceback" not in run.stderr
        filler.unlink()
        records = h.records()
        statuses = [records[j].status for j in accepted]
        # Nothing lost: what could not be written is still running (its lock lapses) or pending; an
        # outcome that fitted before the disk filled up may have been written.
        assert set(statuses) <= {JobStatus.RUNNING, JobStatus.PENDING, JobStatus.COMPLETED}, statuses
        assert JobStatus.COMPLETED not in statuses or statuses.count(JobStatus.COMPLETED) < len(statuses)
    finally:
        h.close()
    assert integrity(small_disk / "jobs.sqlite") == "ok"
