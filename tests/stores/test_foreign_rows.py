"""Rows that other tools wrote: one bad row harms only itself, wherever it is read.

The rows are written with plain SQL (through apsw: two SQLite libraries in one process
would undo each other's locks) into a real jobkit file, as another program would:
times in SQLite's own ``datetime()`` form or garbage, text in a count. What each reader
does with one it cannot read:

- a claim fails it, spending the attempt it counted, with an error naming the column
  and the value; the rest of the batch runs;
- the reaper counts an unreadable lock expiry as run out;
- ``list_jobs``, ``finished`` and ``summary`` leave it out (a warning names it) and show the others;
  ``next_due`` passes over it; ``get`` raises a StoreError naming the column and value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest

import jobkit
from jobkit.model import Complete, JobStatus, new_id, utc_now
from tests.support import T0, command, make_job
from tests.worker_jobs import Pair, add

LOCK = timedelta(seconds=30)
SQLITE_FORM = "2000-01-01 00:00:00"  # what SQLite's datetime() writes: long due, but not jobkit's form


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.sqlite"
    jobkit.SqliteStore(path).close()
    return path


@pytest.fixture
def store(db: Path) -> Iterator[jobkit.SqliteStore]:
    with jobkit.SqliteStore(db) as opened:
        yield opened


def insert(db: Path, job_id: str, **columns: Any) -> str:
    """A pending job of `add`, written by plain SQL; *columns* override what a careful writer would put."""
    values: dict[str, Any] = {
        "id": job_id,
        "job_name": add.name,
        "params": '{"a": 1, "b": 2}',
        "status": "pending",
        "scheduled_for": "2000-01-01T00:00:00.000000Z",
        "created_at": "2000-01-01T00:00:00.000000Z",
        "updated_at": "2000-01-01T00:00:00.000000Z",
        **columns,
    }
    conn = apsw.Connection(str(db))
    conn.execute(
        f"INSERT INTO jobs ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})", list(values.values())
    )
    conn.close()
    return job_id


def raw(db: Path, job_id: str) -> dict[str, Any]:
    """The row as SQLite holds it, read with plain SQL."""
    conn = apsw.Connection(str(db))
    cursor = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
    row = cursor.fetchone()
    assert row is not None, job_id
    found = dict(zip((name for name, _ in cursor.get_description()), row, strict=True))
    conn.close()
    return found


def good_jobs(store: jobkit.SqliteStore, n: int) -> list[str]:
    return [add.later(Pair(a=i), store) for i in range(n)]


# -- in the library ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("column", "value"),
    [("scheduled_for", SQLITE_FORM), ("scheduled_for", ""), ("created_at", "yesterday"), ("priority", "high")],
)
def test_a_claim_fails_the_unreadable_row_alone_and_returns_the_others(
    db: Path, store: jobkit.SqliteStore, column: str, value: str
) -> None:
    good = good_jobs(store, 3)
    bad = insert(db, "bad-" + new_id(), **{column: value})
    now = utc_now()

    claimed = store.claim(limit=10, now=now, token="t1", lock_until=now + LOCK)

    assert sorted(job.id for job in claimed) == sorted(good)
    row = raw(db, bad)
    assert row["status"] == "failed"
    assert row["attempt_count"] == 1  # its attempt is spent: it cannot come back for ever
    assert column in row["error"] and repr(value) in row["error"]
    assert row["completed_at"] is not None and row["worker_expires_at"] is None
    assert store.claim(limit=10, now=now, token="t2", lock_until=now + LOCK) == []


def test_finish_and_claim_and_claim_job_fail_an_unreadable_row_alone(db: Path, store: jobkit.SqliteStore) -> None:
    good = good_jobs(store, 2)
    now = utc_now()
    (held,) = store.claim(limit=1, now=now, token="t1", lock_until=now + LOCK)
    bad = insert(db, "bad-batch", scheduled_for=SQLITE_FORM)
    done = Complete(held.id, "t1", "3", at=now)
    applied, claimed = store.finish_and_claim([done], limit=10, now=now, token="t2", lock_until=now + LOCK)
    assert applied == [True]
    assert [job.id for job in claimed] == [job_id for job_id in good if job_id != held.id]
    assert raw(db, bad)["status"] == "failed"

    alone = insert(db, "bad-alone", max_attempts="three")
    with pytest.raises(jobkit.StoreError, match="job bad-alone: max_attempts 'three' cannot be read"):
        store.claim_job(alone, now=now, token="t3", lock_until=now + LOCK)
    assert raw(db, alone)["status"] == "failed"


def test_the_reaper_counts_an_unreadable_lock_expiry_as_run_out(db: Path, store: jobkit.SqliteStore) -> None:
    running = {"status": "running", "worker_id": "gone", "attempt_count": 1, "worker_started_at": SQLITE_FORM}
    never = insert(db, "lock-never", worker_expires_at="never", **running)
    other = insert(db, "lock-sqlite-form", worker_expires_at="9999-01-01 00:00:00", **running)
    live = good_jobs(store, 1)[0]
    now = utc_now()
    store.claim(limit=1, now=now, token="alive", lock_until=now + LOCK)

    report = store.reset_expired(now=now)

    assert sorted(report.retried) == sorted([never, other])
    assert raw(db, never)["status"] == raw(db, other)["status"] == "pending"
    assert raw(db, live)["status"] == "running"  # a readable lock that has not run out is kept


def test_list_and_summary_show_the_others_and_name_the_row_they_leave_out(
    db: Path, store: jobkit.SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = good_jobs(store, 4)
    far = "2999-01-01T00:00:00.000000Z"
    insert(db, "bad-listed", created_at=SQLITE_FORM.replace("2000", "2999"), scheduled_for=far)  # listed first
    insert(db, "bad-oldest", scheduled_for="")  # the earliest pending, as text
    insert(db, "bad-running", status="running", worker_id="w", worker_expires_at="soon", scheduled_for="later")
    caplog.set_level(logging.WARNING, logger="jobkit")

    listed = store.list_jobs(limit=3)
    rest = store.list_jobs(limit=3, after=(listed[-1].created_at, listed[-1].id))
    assert [job.id for job in listed + rest] == sorted(good, reverse=True)  # newest first, pages full
    summary = store.summary(since=T0)

    assert summary.counts[JobStatus.PENDING] == 6 and summary.counts[JobStatus.RUNNING] == 1
    assert summary.running == []
    assert summary.oldest_pending == store.get(good[0]).scheduled_for  # type: ignore[union-attr]
    assert "job bad-listed: created_at '2999-01-01 00:00:00' cannot be read" in caplog.text
    assert "job bad-running: scheduled_for 'later' cannot be read" in caplog.text
    with pytest.raises(jobkit.StoreError, match="job bad-listed: created_at '2999-01-01 00:00:00' cannot be read"):
        store.get("bad-listed")


def test_finished_leaves_out_an_unreadable_row_and_fills_its_page_past_it(
    db: Path, store: jobkit.SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    ended = [f"2000-01-01T00:00:0{n}.000000Z" for n in range(6)]
    done = {"status": "completed", "result": "1", "progress": 100}
    for n in (0, 2, 3, 5):
        insert(db, f"good-{n}", completed_at=ended[n], **done)
    insert(db, "bad-1", completed_at=ended[1], priority="high", **done)  # between good-0 and good-2
    insert(db, "bad-4", completed_at=ended[4], created_at="yesterday", **done)
    caplog.set_level(logging.WARNING, logger="jobkit")
    until = T0.replace(year=2001)

    first = store.finished(after=None, until=until, limit=2)
    assert [job.id for job in first] == ["good-0", "good-2"]  # the page is full, bad-1 left out
    last = first[-1]
    assert last.completed_at is not None
    rest = store.finished(after=(last.completed_at, last.id), until=until, limit=10)
    assert [job.id for job in rest] == ["good-3", "good-5"]
    assert "job bad-1: priority 'high' cannot be read" in caplog.text
    assert "job bad-4: created_at 'yesterday' cannot be read" in caplog.text


def test_next_due_passes_over_a_time_it_cannot_read(db: Path, store: jobkit.SqliteStore) -> None:
    insert(db, "bad-first", scheduled_for="")  # sorts before every time
    store.add([make_job("later", scheduled_for=T0)])
    assert store.next_due() == T0
    assert store.next_due({"shop.tasks:resize"}) == T0


def test_a_schedule_that_cannot_be_read_keeps_no_other_from_firing_or_being_listed(
    db: Path, store: jobkit.SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    conn = apsw.Connection(str(db))
    for name, next_run in (("good", "2000-01-01T00:00:00.000000Z"), ("bad", SQLITE_FORM)):
        conn.execute(
            """INSERT INTO cron_jobs (id, name, job_name, cron_expression, params, next_run_at, created_at, updated_at)
               VALUES (?, ?, ?, '* * * * *', '{}', ?, datetime('now'), datetime('now'))""",
            (new_id(), name, add.name, next_run),
        )
    readable = "2000-01-01T00:00:00.000000Z"
    conn.execute("UPDATE cron_jobs SET created_at = ?, updated_at = ? WHERE name = 'good'", (readable, readable))
    conn.close()
    caplog.set_level(logging.WARNING, logger="jobkit")

    assert [entry.name for entry in store.due_schedules(utc_now())] == ["good"]
    assert [entry.name for entry in store.list_schedules()] == ["good"]
    assert f"schedule {raw_schedule_id(db, 'bad')}: next_run_at {SQLITE_FORM!r} cannot be read" in caplog.text


def raw_schedule_id(db: Path, name: str) -> str:
    conn = apsw.Connection(str(db))
    ((found,),) = conn.execute("SELECT id FROM cron_jobs WHERE name = ?", (name,)).fetchall()
    conn.close()
    return str(found)


# -- in a worker and the commands ------------------------------------------------------------
def test_a_worker_runs_the_good_jobs_and_fails_the_unreadable_one_and_the_commands_still_work(db: Path) -> None:
    with jobkit.SqliteStore(db) as store:
        good = good_jobs(store, 3)
    bad = insert(db, "bad-sqlite-form", scheduled_for=SQLITE_FORM)
    lost = insert(
        db,
        "lost-lock",
        status="running",
        worker_id="gone",
        attempt_count=1,
        worker_started_at="2000-01-01T00:00:00.000000Z",
        worker_expires_at="garbage",
    )
    insert(db, "never-due", scheduled_for="whenever")  # sorts after every time: never claimed

    done = command("jobkit.worker", db, "--once", "--concurrency", "10")

    assert done.returncode == 0, done
    assert "Traceback" not in done.stderr, done.stderr
    with jobkit.SqliteStore(db, create=False) as store:
        for job_id in [*good, lost]:
            record = store.get(job_id)
            assert record is not None and record.status is JobStatus.COMPLETED, record
    row = raw(db, bad)
    assert row["status"] == "failed" and row["attempt_count"] == 1
    assert f"scheduled_for {SQLITE_FORM!r} cannot be read" in row["error"]

    listed = command("jobkit", "list", db, "--json")
    assert listed.returncode == 0, listed
    assert "job never-due: scheduled_for 'whenever' cannot be read" in listed.stderr
    assert f"job bad-sqlite-form: scheduled_for {SQLITE_FORM!r}" in listed.stderr
    assert {job["id"] for job in json.loads(listed.stdout)} == {*good, lost}
    status = command("jobkit", "status", db)
    assert status.returncode == 0, status
    assert "Traceback" not in status.stderr, status.stderr
    shown = command("jobkit", "show", db, bad)
    assert shown.returncode == 1, shown
    assert shown.stderr.count("\n") == 1 and f"scheduled_for {SQLITE_FORM!r} cannot be read" in shown.stderr
