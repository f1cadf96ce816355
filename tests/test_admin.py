"""The admin command end to end: `python -m jobkit SUBCOMMAND DB ...` in a subprocess on a real SQLite file.

Each subcommand runs for people (tables) and for scripts (--json, parsed back and checked
against the store); bad input gives one line on stderr, a non-zero exit code, and changes
nothing. Nothing here sleeps: the queue is made through the library before the command runs.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest
from rich.console import Console

import jobkit
from jobkit.admin import SHOWN, first_line, format_age, format_relative, job_json, main, parse_finished, summary_json
from jobkit.model import JobStatus, utc_now
from tests import admin_jobs
from tests.admin_jobs import Queue

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60  # seconds any one command may take
SUBCOMMANDS = ("status", "list", "show", "retry", "cancel", "purge", "schedules", "watch")
ADD, EXPLODE, REFUSE = admin_jobs.add.name, admin_jobs.explode.name, admin_jobs.refuse.name
PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


# -- helpers --------------------------------------------------------------------------
def jobkit_cmd(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m jobkit ARGS` as a user would, in a plain 80-column non-terminal."""
    skip = {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    env = {key: value for key, value in os.environ.items() if key not in skip}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "jobkit", *map(str, args)],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def ok(*args: str | Path) -> str:
    done = jobkit_cmd(*args)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert done.stderr == ""
    return done.stdout


def ok_json(*args: str | Path) -> Any:
    return json.loads(ok(*args, "--json"))


def refused(code: int, *args: str | Path, cwd: Path | None = None) -> str:
    """Run a command that must fail: exit *code*, one line on stderr, no traceback, nothing on stdout."""
    done = jobkit_cmd(*args, cwd=cwd)
    assert done.returncode == code, f"{args} exited {done.returncode}, not {code}:\n{done.stdout}\n{done.stderr}"
    assert done.stderr.startswith("jobkit: error: "), done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    return done.stderr


def snapshot(db: Path) -> list[dict[str, Any]]:
    """Every job and schedule, as data: to show that a refused command changed nothing."""
    with jobkit.SqliteStore(db, create=False) as store:
        jobs = [job_json(job) for job in store.list_jobs(limit=10_000)]
        return jobs + [schedule_state(entry) for entry in jobkit.schedules(store)]


def schedule_state(entry: jobkit.Schedule) -> dict[str, Any]:
    return {"schedule": entry.name, "enabled": entry.enabled, "next_run_at": entry.next_run_at}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def queue(tmp_path: Path) -> tuple[Path, Queue]:
    """A database holding one job in every status and one schedule."""
    db = tmp_path / "jobs.sqlite"
    with jobkit.SqliteStore(db) as store:
        return db, admin_jobs.populate(store)


def store_of(db: Path) -> jobkit.SqliteStore:
    return jobkit.SqliteStore(db, create=False)


# -- status ---------------------------------------------------------------------------
def test_status_shows_counts_oldest_pending_running_progress_and_recent_failures(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    out = ok("status", db)
    assert "Jobs" in out and "all jobs" in out
    assert ADD in out and EXPLODE in out
    assert "oldest pending: " in out and " ago)" in out
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
            assert data == job_json(record)
    completed = ok_json("show", db, q.completed)
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
    assert entry["job_name"] == ADD and when(entry["next_run_at"]) > utc_now()
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


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [["status"], ["list"], ["show", "x"], ["cancel", "x"], ["purge", "--status", "failed", "--older-than", "1d"]],
)
def test_a_missing_database_is_refused_and_not_created(tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "nothing.sqlite"
    error = refused(2, args[0], db, *args[1:], cwd=tmp_path)
    assert f"{db}: no such database file" in error
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    refused(2, "status", tmp_path / "no" / "such" / "jobs.sqlite")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"just some notes\n", b""])
def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path, content: bytes) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    for args in (["status"], ["retry", "--failed"], ["purge", "--status", "failed", "--older-than", "0s"]):
        error = refused(2, args[0], notes, *args[1:])
        assert str(notes) in error and "left untouched" in error
    assert notes.read_bytes() == content
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE jobs (id TEXT); INSERT INTO jobs VALUES ('mine')")
    conn.close()
    content = db.read_bytes()
    assert "did not create" in refused(2, "list", db)
    assert "did not create" in refused(2, "cancel", db, "mine")
    assert db.read_bytes() == content


def test_unknown_ids_are_refused_and_nothing_changes(queue: tuple[Path, Queue]) -> None:
    db, q = queue
    before = snapshot(db)
    assert "no job with id 'nope'" in refused(1, "show", db, "nope")
    assert "no job with id 'nope'" in refused(1, "cancel", db, q.pending, "nope")
    assert "no jobs with ids 'nope', 'nada'" in refused(1, "retry", db, q.failed, "nope", "nada")
    assert snapshot(db) == before


def test_bad_durations_and_statuses_are_refused_and_nothing_changes(queue: tuple[Path, Queue]) -> None:
    db, _ = queue
    before = snapshot(db)
    error = refused(2, "purge", db, "--status", "completed", "--older-than", "soon")
    assert "purge: argument --older-than: bad duration 'soon'" in error
    assert "bad status 'done'" in refused(2, "purge", db, "--status", "done", "--older-than", "1d")
    assert "cannot purge pending jobs" in refused(2, "purge", db, "--status", "completed,pending", "--older-than", "1d")
    assert "bad status 'done'" in refused(2, "list", db, "--status", "done")
    assert snapshot(db) == before


# The rest of the usage errors run in this process (main() is what __main__ calls): same checks, faster.
def refused_here(capsys: pytest.CaptureFixture[str], code: int, *args: str | Path) -> str:
    assert main([str(arg) for arg in args]) == code
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("jobkit: error: ") and err.count("\n") == 1, (out, err)
    return err


def test_more_bad_values_are_one_line(queue: tuple[Path, Queue], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = queue
    before = snapshot(db)
    for duration in ("-1d", "7x", "", "inf", "nan"):
        error = refused_here(capsys, 2, "purge", db, "--status", "completed", f"--older-than={duration}")
        assert "bad duration" in error, error
    assert "required: --older-than" in refused_here(capsys, 2, "purge", db, "--status", "completed")
    assert "required: --status" in refused_here(capsys, 2, "purge", db, "--older-than", "1d")
    assert "at least 1" in refused_here(capsys, 2, "list", db, "--limit", "0")
    assert "at least 1" in refused_here(capsys, 2, "watch", db, "--iterations", "none")
    assert "seconds" in refused_here(capsys, 2, "watch", db, "--interval", "-1")
    assert "not allowed with" in refused_here(capsys, 2, "watch", db, "--once", "--iterations", "2")
    assert snapshot(db) == before


def test_usage_errors_are_one_line(queue: tuple[Path, Queue], capsys: pytest.CaptureFixture[str]) -> None:
    db, q = queue
    before = snapshot(db)
    assert "retry: give the ids" in refused_here(capsys, 2, "retry", db)
    assert "not both" in refused_here(capsys, 2, "retry", db, q.failed, "--failed")
    assert "--name goes with --failed" in refused_here(capsys, 2, "retry", db, q.failed, "--name", ADD)
    assert "invalid choice: 'frobnicate'" in refused_here(capsys, 2, "frobnicate", db)
    assert "required" in refused_here(capsys, 2)
    assert "required" in refused_here(capsys, 2, "cancel", db)
    assert "unrecognized arguments" in refused_here(capsys, 2, "status", db, "--colour")
    assert snapshot(db) == before


def test_usage_errors_are_found_before_the_database_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "nothing.sqlite"
    assert "retry: give the ids" in refused_here(capsys, 2, "retry", db)
    assert "bad duration" in refused_here(capsys, 2, "purge", db, "--status", "failed", "--older-than", "x")
    assert list(tmp_path.iterdir()) == []


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

    monkeypatch.setattr("jobkit.admin.time.sleep", interrupted)
    assert main(["watch", str(db)]) == 0  # no --iterations: runs until Ctrl-C
    out, err = capsys.readouterr()
    assert out.count("jobkit watch") == 1 and q.running in out and err == ""


def test_help_lists_every_subcommand() -> None:
    out = ok("--help")
    assert tuple(re.findall(r"^    (\w+)\b", out, re.MULTILINE)) == SUBCOMMANDS


def test_the_readme_shows_every_subcommand_with_an_example() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The admin command") :]
    section = section[: section.index("\n## ")]
    for name in SUBCOMMANDS:
        assert f"| `{name} DB" in section, f"{name} missing from the table"
        assert f"$ python -m jobkit {name} jobs.sqlite" in section, f"{name} has no example"


def test_the_admin_command_does_not_import_the_worker() -> None:
    code = "import sys, jobkit.admin, jobkit.__main__; assert 'jobkit.worker' not in sys.modules, 'imported'"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr


# -- the pure helpers -----------------------------------------------------------------
def test_format_age() -> None:
    assert format_age(timedelta(seconds=-5)) == "0s"
    assert format_age(timedelta(seconds=45.9)) == "45s"
    assert format_age(timedelta(minutes=3, seconds=12)) == "3m 12s"
    assert format_age(timedelta(hours=2, minutes=5, seconds=9)) == "2h 5m"
    assert format_age(timedelta(days=3, hours=4, minutes=1)) == "3d 4h"
    now = utc_now()
    assert format_relative(now - timedelta(seconds=3), now) == "3s ago"
    assert format_relative(now + timedelta(minutes=5), now) == "in 5m 0s"


def test_first_line() -> None:
    assert first_line(None) == ""
    assert first_line("  boom\nmore") == "boom"
    assert first_line("x" * 100, 10) == "x" * 9 + "…"


def test_parse_finished() -> None:
    assert parse_finished("completed,Failed") == [COMPLETED, FAILED]
    with pytest.raises(ValueError, match="cannot purge running"):
        parse_finished("running")


def test_summary_json_of_an_empty_queue() -> None:
    now = utc_now()
    with jobkit.MemoryStore() as store:
        data = summary_json(store.summary(since=now), now)
    assert data["counts"] == dict.fromkeys(("pending", "running", "completed", "failed", "cancelled"), 0)
    assert data["oldest_pending_age"] is None and data["failed_last_hour"] == 0
