"""Each subcommand end to end: `python -m jobkit SUBCOMMAND DB ...` in a subprocess on a real SQLite file.

Each runs for people (tables) and for scripts (--json, parsed back and checked against
the store). Nothing here sleeps: the queue is made through the library before the command runs.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import jobkit
from jobkit.admin import main
from jobkit.admin.commands import SHOWN
from jobkit.model import JobRecord, utc_now
from jobkit.present import attempt_json, job_json
from tests import admin_jobs
from tests.admin.support import (
    ADD,
    CANCELLED,
    COMPLETED,
    EXPLODE,
    FAILED,
    PENDING,
    REFUSE,
    RUNNING,
    ok,
    ok_json,
    refused,
    snapshot,
    store_of,
    when,
)
from tests.admin_jobs import Queue


# -- status ---------------------------------------------------------------------------
def test_status_shows_counts_oldest_pending_running_progress_and_recent_failures(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    out = ok("status", db)
    assert "Jobs" in out and "all jobs" in out
    assert ADD in out and EXPLODE in out
    assert "due now: 1 job; the oldest has waited " in out and "scheduled for later: none" in out
    assert "Leases (1 holder)" in out
    assert "failed in the last hour: 1" in out
    assert "Running (1)" in out and q.running in out
    assert "40%" in out and "halfway" in out and "1/4" in out


def test_status_json_agrees_with_the_store(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    data = ok_json("status", db)
    with store_of(db) as store:
        assert data["counts"] == {status.value: n for status, n in store.counts().items()}
        pending = store.get(q.pending)
        assert pending is not None
        assert when(data["oldest_pending"]) == pending.created_at
    assert data["counts"] == {"pending": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 1}
    assert data["by_name"][ADD] == {"pending": 1, "running": 1, "completed": 1, "failed": 0, "cancelled": 1}
    assert data["by_name"][EXPLODE]["failed"] == 1
    assert data["oldest_pending_age"] >= 0
    assert [job["id"] for job in data["running"]] == [q.running]
    assert data["running"][0]["progress"] == 40
    assert data["running"][0]["progress_message"] == "halfway"
    assert data["running"][0]["params"] == {"a": 5, "b": 0}
    assert data["failed_last_hour"] == 1
    assert when(data["at"]) <= utc_now()


def test_status_of_an_empty_database(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite"
    jobkit.SqliteStore(db).close()
    assert "no jobs running" in ok("status", db)
    data = ok_json("status", db)
    assert data["oldest_pending"] is None and data["running"] == [] and data["by_name"] == {}


# -- list -----------------------------------------------------------------------------
def test_list_shows_jobs_newest_first(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    out = ok("list", db)
    positions = [out.index(job_id) for job_id in q.ids()]
    assert positions == sorted(positions, reverse=True), "newest first"
    assert "exploded on 7" in out
    assert "40% halfway" in out


def test_list_json_is_the_stores_records(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    rows = ok_json("list", db)
    assert [row["id"] for row in rows] == list(reversed(q.ids()))
    with store_of(db) as store:
        for row in rows:
            record = store.get(row["id"])
            assert record is not None
            assert row == job_json(record)
            assert row["status"] == record.status.value
            assert when(row["created_at"]) == record.created_at
            assert row["params"] == json.loads(record.params)
    completed = next(row for row in rows if row["id"] == q.completed)
    assert completed["result"] == 3 and completed["status"] == "completed"
    failed = next(row for row in rows if row["id"] == q.failed)
    assert failed["error"] == "RuntimeError: exploded on 7" and "Traceback" in failed["traceback"]


def test_list_filters(queue: tuple[Path, Queue]) -> None:
    db, q = queue

    def ids(*args: str) -> list[str]:
        return [row["id"] for row in ok_json("list", db, *args)]

    assert ids("--status", "failed") == [q.failed]
    assert ids("--status", "RUNNING") == [q.running]
    assert ids("--name", EXPLODE) == [q.failed]
    assert ids("--name", ADD, "--status", "pending") == [q.pending]
    assert ids("--correlation-id", "order-7") == [q.pending]
    assert ids("--limit", "2") == [q.running, q.cancelled]
    assert ids("--name", "nobody:nothing") == []
    assert "no jobs match" in ok("list", db, "--name", "nobody:nothing")
    assert "the 2 newest shown" in ok("list", db, "--limit", "2")


# -- show -----------------------------------------------------------------------------
def test_show_prints_every_field_the_params_the_error_and_the_traceback(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    out = ok("show", db, q.failed)
    with store_of(db) as store:
        record = store.get(q.failed)
    assert record is not None
    for field in job_json(record):
        assert field in out, field
    assert q.failed in out and EXPLODE in out
    assert '{\n  "a": 7,\n  "b": 0\n}' in out, "params pretty-printed"
    assert "RuntimeError: exploded on 7" in out
    assert "Traceback (most recent call last)" in out
    assert 'raise RuntimeError(f"exploded on {params.a}")' in out, "traceback lines kept whole"


def test_show_json_is_the_whole_record(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    with store_of(db) as store:
        for job_id in q.ids():
            data = ok_json("show", db, job_id)
            record = store.get(job_id)
            assert record is not None
            attempts = data.pop("attempts")
            assert data == job_json(record)
            assert attempts == [attempt_json(a) for a in store.attempts(job_id)]
    completed = ok_json("show", db, q.completed)
    assert [a["outcome"] for a in completed["attempts"]] == ["completed"]
    assert completed["result"] == 3
    assert completed["params"] == {"a": 1, "b": 2}
    assert when(completed["completed_at"]) >= when(completed["created_at"])
    assert ok_json("show", db, q.running)["worker_expires_at"] is not None


# -- retry ----------------------------------------------------------------------------
def test_retry_by_id_sends_failed_and_cancelled_jobs_back_with_fresh_attempts(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    out = ok("retry", db, q.failed)
    assert "sent back to pending" in out and q.failed in out
    assert ok_json("retry", db, q.cancelled) == {"retried": [q.cancelled]}
    with store_of(db) as store:
        for job_id in (q.failed, q.cancelled):
            record = store.get(job_id)
            assert record is not None
            assert record.status is PENDING and record.attempt_count == 0
            assert record.error is None and record.traceback is None


def test_retry_failed_by_name(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    with store_of(db) as store:
        refusals = [admin_jobs.refuse.now({"a": n}, store=store).job_id for n in range(3)]
    data = ok_json("retry", db, "--failed", "--name", REFUSE)
    assert sorted(data["retried"]) == sorted(refusals)
    with store_of(db) as store:
        assert [job.id for job in store.list_jobs(status=FAILED)] == [q.failed]  # another name: left alone
    assert ok_json("retry", db, "--failed") == {"retried": [q.failed]}
    assert ok_json("retry", db, "--failed") == {"retried": []}
    assert "no failed jobs to retry" in ok("retry", db, "--failed")
    with store_of(db) as store:
        assert store.counts()[FAILED] == 0
        assert store.counts()[PENDING] == 1 + 3 + 1


def test_retry_failed_for_people_lists_what_it_sent(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    with store_of(db) as store:
        for n in range(SHOWN + 1):
            admin_jobs.refuse.now({"a": n}, store=store)
    out = ok("retry", db, "--failed")
    assert f"sent back to pending with fresh attempts: {SHOWN + 2} jobs" in out
    assert "and 2 more" in out
    assert out.count(REFUSE) + out.count(EXPLODE) == SHOWN


def test_retry_failed_pages_through_the_failed_jobs(
    queue: tuple[Path, Queue], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, q = queue
    with store_of(db) as store:
        refusals = [admin_jobs.refuse.now({"a": n}, store=store).job_id for n in range(5)]
    asked: list[int] = []
    real = jobkit.SqliteStore.list_jobs

    def list_jobs(self: jobkit.SqliteStore, **filters: Any) -> list[JobRecord]:
        asked.append(filters["limit"])
        return real(self, **filters)

    monkeypatch.setattr("jobkit.admin.commands.PAGE", 2)
    monkeypatch.setattr(jobkit.SqliteStore, "list_jobs", list_jobs)
    assert main(["retry", str(db), "--failed", "--json"]) == 0
    sent = json.loads(capsys.readouterr().out)["retried"]
    assert sent == [*reversed(refusals), q.failed], "every failed job once, newest first"
    assert asked == [2] * 4, "a page at a time: 2 + 2 + 2 of 6 failed jobs, then an empty page"


def test_retry_refuses_jobs_that_are_not_failed_or_cancelled_and_retries_none(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    before = snapshot(db)
    error = refused(1, "retry", db, q.failed, q.completed, q.running)
    assert q.completed in error and "completed" in error and q.running in error
    assert "only failed or cancelled" in error
    assert snapshot(db) == before


# -- cancel ---------------------------------------------------------------------------
def test_cancel_ends_a_pending_job_and_asks_a_running_one_to_stop(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    data = ok_json("cancel", db, q.pending, q.running, q.cancelled)
    assert data == {"cancelled": [q.pending, q.cancelled], "stopping": [q.running]}
    with store_of(db) as store:
        pending, running = store.get(q.pending), store.get(q.running)
        assert pending is not None and pending.status is CANCELLED
        assert running is not None and running.status is RUNNING and running.cancel_requested


def test_cancel_for_people(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    out = ok("cancel", db, q.pending, q.running)
    assert f"{q.pending} cancelled" in out
    assert f"{q.running} running: asked to stop" in out


def test_cancel_refuses_finished_jobs_and_cancels_none(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    before = snapshot(db)
    error = refused(1, "cancel", db, q.pending, q.completed)
    assert q.completed in error and "nothing to cancel" in error
    assert snapshot(db) == before


# -- purge ----------------------------------------------------------------------------
def test_purge_deletes_finished_jobs_older_than_the_duration_of_the_given_statuses(
    queue: tuple[Path, Queue],
) -> None:
    db, q = queue
    long_ago = utc_now() - timedelta(days=3)
    with store_of(db) as store:
        old = {s: admin_jobs.finished_long_ago(store, s, long_ago) for s in (COMPLETED, FAILED, CANCELLED)}
    out = ok("purge", db, "--status", "completed", "--older-than", "2d")
    assert "deleted 1 job (completed)" in out
    data = ok_json("purge", db, "--status", "failed,cancelled", "--status", "failed", "--older-than", "1d")
    assert data["deleted"] == 2 and data["statuses"] == ["failed", "cancelled"]
    assert when(data["before"]) < utc_now() - timedelta(days=1) + timedelta(minutes=1)
    with store_of(db) as store:
        assert all(store.get(job_id) is None for job_id in old.values())
        assert all(store.get(job_id) is not None for job_id in q.ids()), "recent jobs stay"
    # Everything finished is older than 0s; pending and running jobs are never touched.
    assert ok_json("purge", db, "--status", "completed,failed,cancelled", "--older-than", "0s")["deleted"] == 3
    with store_of(db) as store:
        assert [job.id for job in store.list_jobs()] == [q.running, q.pending]


# -- schedules ------------------------------------------------------------------------
def test_schedules_list_disable_enable(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    out = ok("schedules", db)
    assert "five-minutes" in out and "*/5 * * * *" in out and ADD in out and "yes" in out
    (entry,) = ok_json("schedules", db)
    assert entry["name"] == "five-minutes" and entry["enabled"] is True and entry["params"] == {"a": 1, "b": 0}
    # A fire time of */5 (not "after now": the fixture may have run just before a five-minute mark).
    next_run = when(entry["next_run_at"])
    assert entry["job_name"] == ADD and next_run.minute % 5 == 0 and next_run.second == 0
    assert ok_json("schedules", db, "list") == [entry]

    assert ok_json("schedules", db, "disable", "five-minutes")["enabled"] is False
    with store_of(db) as store:
        (stored,) = jobkit.schedules(store)
        assert not stored.enabled and stored.next_run_at is None
    assert "five-minutes: enabled, next run" in ok("schedules", db, "enable", "five-minutes")
    with store_of(db) as store:
        (stored,) = jobkit.schedules(store)
        assert stored.enabled and stored.next_run_at is not None
    assert "five-minutes: disabled" in ok("schedules", db, "disable", "five-minutes")


def test_schedules_of_an_empty_database(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite"
    jobkit.SqliteStore(db).close()
    assert "no schedules" in ok("schedules", db)
    assert ok_json("schedules", db) == []


def test_schedules_refuses_an_unknown_name(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    before = snapshot(db)
    assert "no schedule named 'nightly'" in refused(1, "schedules", db, "enable", "nightly")
    assert "needs the NAME" in refused(2, "schedules", db, "disable")
    assert "unexpected 'five-minutes'" in refused(2, "schedules", db, "list", "five-minutes")
    assert "invalid choice" in refused(2, "schedules", db, "five-minutes")
    assert snapshot(db) == before


# -- watch ----------------------------------------------------------------------------
def test_watch_draws_the_given_number_of_frames_with_a_progress_bar(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    out = ok("watch", db, "--iterations", "3", "--interval", "0")
    assert out.count("jobkit watch") == 3
    assert out.count(q.running) == 3
    assert out.count("40%") == 3 and "━" in out
    once = ok("watch", db, "--once")
    assert once.count("jobkit watch") == 1 and "every 1s, Ctrl-C stops" in once


def test_watch_json_prints_one_status_per_line_per_frame(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    lines = ok("watch", db, "--iterations", "2", "--interval", "0", "--json").splitlines()
    assert len(lines) == 2
    frames = [json.loads(line) for line in lines]
    assert all(frame["running"][0]["id"] == q.running for frame in frames)
    assert all(frame["counts"]["failed"] == 1 for frame in frames)
    assert len(ok("watch", db, "--once", "--json").splitlines()) == 1


def test_watch_in_a_terminal_redraws_in_place(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, markup=False, emoji=False, highlight=False)
    assert main(["watch", str(db), "--iterations", "3", "--interval", "0"], console=console) == 0
    drawn = screen.getvalue()
    assert q.running in drawn and "40%" in drawn
    assert "\x1b[" in drawn, "cursor control: frames are drawn over each other"


def test_watch_ends_quietly_on_ctrl_c(
    queue: tuple[Path, Queue], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, q = queue

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("jobkit.admin.commands.time.sleep", interrupted)
    assert main(["watch", str(db)]) == 0  # no --iterations: runs until Ctrl-C
    out, err = capsys.readouterr()
    assert out.count("jobkit watch") == 1 and q.running in out and err == ""
