"""`python -m jobkit SUBCOMMAND postgresql://...`: every admin subcommand on a PostgreSQL schema, and `migrate`.

Real processes on the session's throwaway database, each test in a schema of its own (``--schema``),
dropped after. An unreachable server, a schema without jobkit's tables, an older, newer or foreign one:
one line on stderr, exit 2, nothing changed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import jobkit
from jobkit.admin import main
from jobkit.admin.commands import shown_target
from jobkit.errors import StoreError
from jobkit.model import JobStatus
from jobkit.stores.postgres import migrations
from jobkit.stores.sqlite.schema import SCHEMA_VERSION as SQLITE_VERSION
from tests import admin_jobs
from tests.admin_jobs import Queue
from tests.pg import fresh_schema_name, with_dbname
from tests.support import command

PENDING, RUNNING = JobStatus.PENDING, JobStatus.RUNNING
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED


def jobkit_cmd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return command("jobkit", *args)


def ok(*args: str | Path) -> str:
    done = jobkit_cmd(*args)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert done.stderr == ""
    return done.stdout


def ok_json(*args: str | Path) -> Any:
    return json.loads(ok(*args, "--json"))


def refused(code: int, *args: str | Path) -> str:
    """A command that must fail: exit *code*, one line on stderr, no traceback, nothing on stdout."""
    done = jobkit_cmd(*args)
    assert done.returncode == code, f"{args} exited {done.returncode}, not {code}:\n{done.stdout}\n{done.stderr}"
    assert done.stderr.startswith("jobkit: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    return done.stderr


def tables(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)).fetchall()
    return [str(row[0]) for row in rows]


def schema_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


@pytest.fixture
def schema(pg_dsn: str) -> Iterator[str]:
    """A schema name no one uses yet, dropped after the test (whoever made it)."""
    name = fresh_schema_name()
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def queue(pg_dsn: str, schema: str) -> Queue:
    """*schema* holding one job in every status and one schedule."""
    with jobkit.PostgresStore(pg_dsn, schema=schema) as store:
        return admin_jobs.populate(store)


def in_schema(pg_dsn: str, schema: str) -> jobkit.PostgresStore:
    return jobkit.PostgresStore(pg_dsn, schema=schema, create=False, upgrade=False)


# -- every subcommand on a URL -------------------------------------------------------------
def test_status_list_and_show_read_the_schema(pg_dsn: str, schema: str, queue: Queue) -> None:
    status = ok_json("status", pg_dsn, "--schema", schema)
    assert status["counts"] == {"pending": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 1}
    assert [job["id"] for job in status["running"]] == [queue.running]
    assert "due now: 1 job" in ok("status", pg_dsn, "--schema", schema)
    assert [job["id"] for job in ok_json("list", pg_dsn, "--schema", schema, "--status", "failed")] == [queue.failed]
    shown = ok_json("show", pg_dsn, "--schema", schema, queue.pending)
    assert shown["id"] == queue.pending and shown["correlation_id"] == "order-7"
    assert queue.pending in ok("show", pg_dsn, "--schema", schema, queue.pending)


def test_cancel_retry_and_purge_change_the_schema(pg_dsn: str, schema: str, queue: Queue) -> None:
    assert ok_json("cancel", pg_dsn, "--schema", schema, queue.pending, queue.running) == {
        "cancelled": [queue.pending],
        "stopping": [queue.running],
    }
    assert ok_json("retry", pg_dsn, "--schema", schema, "--failed") == {"retried": [queue.failed]}
    purged = ok_json("purge", pg_dsn, "--schema", schema, "--status", "completed,cancelled", "--older-than", "0s")
    assert purged["deleted"] == 3  # the completed job, the one cancelled before and the one just cancelled
    with in_schema(pg_dsn, schema) as store:
        assert store.counts() == {PENDING: 1, RUNNING: 1, COMPLETED: 0, FAILED: 0, CANCELLED: 0}
        running = store.get(queue.running)
        assert running is not None and running.cancel_requested


def test_a_refused_command_changes_nothing_in_the_schema(pg_dsn: str, schema: str, queue: Queue) -> None:
    assert "completed" in refused(1, "cancel", pg_dsn, "--schema", schema, queue.pending, queue.completed)
    with in_schema(pg_dsn, schema) as store:
        pending = store.get(queue.pending)
        assert pending is not None and pending.status is PENDING


def test_schedules_are_listed_disabled_and_enabled(pg_dsn: str, schema: str, queue: Queue) -> None:
    assert [entry["name"] for entry in ok_json("schedules", pg_dsn, "--schema", schema)] == ["five-minutes"]
    assert ok_json("schedules", pg_dsn, "disable", "five-minutes", "--schema", schema)["enabled"] is False
    with in_schema(pg_dsn, schema) as store:
        assert [entry.enabled for entry in jobkit.schedules(store)] == [False]
    assert "enabled, next run" in ok("schedules", pg_dsn, "enable", "five-minutes", "--schema", schema)
    assert "no schedule named" in refused(1, "schedules", pg_dsn, "enable", "nope", "--schema", schema)


def test_watch_draws_frames_and_hides_the_password(pg_dsn: str, schema: str, queue: Queue) -> None:
    frames = ok("watch", pg_dsn, "--schema", schema, "--iterations", "2", "--interval", "0", "--json")
    assert [json.loads(line)["counts"]["pending"] for line in frames.splitlines()] == [1, 1]
    # Trust authentication never asks for the password, so the URL still connects.
    secret = pg_dsn.replace("postgres@", "postgres:hunter2@", 1)
    assert secret != pg_dsn
    drawn = ok("watch", secret, "--schema", schema, "--once")
    assert "hunter2" not in drawn and "postgres:***@" in drawn


def test_shown_target_hides_passwords_in_the_netloc_and_the_query() -> None:
    assert shown_target("postgresql://app:pw@db:5432/app?sslmode=require") == (
        "postgresql://app:***@db:5432/app?sslmode=require"
    )
    assert shown_target("postgresql://app@db/app?password=pw&x=1") == "postgresql://app@db/app?password=***&x=1"
    assert shown_target("jobs.sqlite") == "jobs.sqlite"


def test_the_schema_comes_from_jobkit_schema_when_no_flag_names_one(
    pg_dsn: str, schema: str, queue: Queue, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBKIT_SCHEMA", schema)
    assert main(["list", pg_dsn, "--status", "failed", "--json"]) == 0
    assert [job["id"] for job in json.loads(capsys.readouterr().out)] == [queue.failed]
    monkeypatch.setenv("JOBKIT_SCHEMA", "x" * 64)
    assert main(["status", pg_dsn]) == 2
    assert "$JOBKIT_SCHEMA: give a schema name of 1 to 63 bytes" in capsys.readouterr().err


def test_postgresql_options_are_refused_for_a_sqlite_target(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    jobkit.SqliteStore(db).close()
    assert "--schema is for PostgreSQL TARGETs" in refused(2, "status", db, "--schema", "jobkit")
    assert "--no-listen is for PostgreSQL TARGETs" in refused(2, "list", db, "--no-listen")
    assert "give a schema name" in refused(2, "status", "postgresql://postgres@127.0.0.1:1/x", "--schema", "")


def test_no_listen_polls_and_still_reads(pg_dsn: str, schema: str, queue: Queue) -> None:
    frames = ok("watch", pg_dsn, "--schema", schema, "--no-listen", "--iterations", "2", "--interval", "0")
    assert frames.count("jobkit watch") == 2


# -- a schema that does not open as it is --------------------------------------------------
def test_a_schema_without_jobkit_tables_is_refused_and_not_created(pg_dsn: str, schema: str) -> None:
    for args in (["status"], ["list"], ["retry", "--failed"], ["purge", "--status", "failed", "--older-than", "1d"]):
        error = refused(2, args[0], pg_dsn, "--schema", schema, *args[1:])
        assert f"no jobkit tables in schema '{schema}'" in error
        assert f"run python -m jobkit migrate TARGET --schema {schema} to create them" in error
    assert not schema_exists(pg_dsn, schema)


def test_an_older_schema_is_refused_and_migrate_upgrades_it(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    jobkit.PostgresStore(pg_dsn, schema=schema).close()
    monkeypatch.setattr(migrations, "VERSION", migrations.VERSION + 1)  # this jobkit, one version on
    assert main(["status", pg_dsn, "--schema", schema]) == 2
    _, err = capsys.readouterr()
    assert f"is at jobkit schema version {migrations.VERSION - 1}" in err
    assert err.endswith(f"; run python -m jobkit migrate TARGET --schema {schema} to upgrade it\n")
    assert main(["migrate", pg_dsn, "--schema", schema]) == 0
    assert capsys.readouterr().out == (
        f"schema {schema} at {where(pg_dsn)}: upgraded from version {migrations.VERSION - 1} to {migrations.VERSION}\n"
    )


def where(dsn: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return f"{info.get('host')}:{info.get('port') or 5432}/{info.get('dbname')}"


# -- migrate -------------------------------------------------------------------------------
def test_migrate_creates_the_schema_then_finds_it_done(pg_dsn: str, schema: str) -> None:
    assert ok("migrate", pg_dsn, "--schema", schema) == (
        f"schema {schema} at {where(pg_dsn)}: created at version {migrations.VERSION}\n"
    )
    assert set(tables(pg_dsn, schema)) == migrations.TABLES
    assert ok_json("migrate", pg_dsn, "--schema", schema) == {
        "target": f"schema {schema} at {where(pg_dsn)}",
        "found": migrations.VERSION,
        "version": migrations.VERSION,
        "did": "nothing",
    }
    assert ok("status", pg_dsn, "--schema", schema).startswith("Jobs")


def test_migrate_fills_an_empty_schema(pg_dsn: str, schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    assert ok("migrate", pg_dsn, "--schema", schema).endswith(f": created at version {migrations.VERSION}\n")
    assert set(tables(pg_dsn, schema)) == migrations.TABLES


def test_migrate_refuses_a_schema_holding_other_tables_and_leaves_it(pg_dsn: str, schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.notes (body text)").format(sql.Identifier(schema)))
    error = refused(2, "migrate", pg_dsn, "--schema", schema)
    assert f"schema '{schema}' holds tables jobkit did not make (notes)" in error
    assert tables(pg_dsn, schema) == ["notes"]


def test_migrate_refuses_a_schema_from_a_newer_jobkit(pg_dsn: str, schema: str) -> None:
    jobkit.PostgresStore(pg_dsn, schema=schema).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("UPDATE {}.meta SET version = 99").format(sql.Identifier(schema)))
    error = refused(2, "migrate", pg_dsn, "--schema", schema)
    assert "schema version 99, newer than this jobkit's" in error
    assert "newer than this jobkit's" in refused(2, "status", pg_dsn, "--schema", schema)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        (row,) = conn.execute(sql.SQL("SELECT version FROM {}.meta").format(sql.Identifier(schema))).fetchall()
    assert row == (99,)


def test_migrate_makes_and_knows_a_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    assert ok("migrate", db) == f"{db}: created at version {SQLITE_VERSION}\n"
    assert ok("migrate", f"sqlite://{db}") == f"{db}: already at version {SQLITE_VERSION}\n"
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"mine\n")
    assert "left untouched" in refused(2, "migrate", notes)
    assert notes.read_bytes() == b"mine\n"
    assert "holds no tables" in refused(2, "migrate", "memory:")


# -- a server that cannot be reached -------------------------------------------------------
def unreachable_targets(pg_dsn: str) -> list[tuple[str, str, str]]:
    """(URL, the place the line must name, the reason it must give): a closed port, no such host, no such database."""
    return [
        ("postgresql://postgres@127.0.0.1:1/x", "127.0.0.1:1/x", "Connection refused"),
        ("postgresql://postgres@no-such-host.invalid/x", "no-such-host.invalid:5432/x", "no-such-host.invalid"),
        (with_dbname(pg_dsn, "jobkit_no_such_db"), "/jobkit_no_such_db", 'database "jobkit_no_such_db" does not exist'),
    ]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["closed-port", "bad-host", "no-database"])
def test_an_unreachable_server_is_one_line_and_exit_2_from_every_command(pg_dsn: str, which: int) -> None:
    target, place, why = unreachable_targets(pg_dsn)[which]
    for args in (["status"], ["list"], ["show", "x"], ["watch", "--once"], ["migrate"]):
        error = refused(2, args[0], target, *args[1:])
        assert place in error and why in error and "cannot connect" in error, error


@pytest.mark.parametrize("which", [0, 1, 2], ids=["closed-port", "bad-host", "no-database"])
def test_the_library_raises_store_error_naming_the_server_and_the_reason(pg_dsn: str, which: int) -> None:
    target, place, why = unreachable_targets(pg_dsn)[which]
    with pytest.raises(StoreError) as raised:
        jobkit.PostgresStore(target)
    text = str(raised.value)
    assert place in text and why in text and "\n" not in text.strip()
    assert raised.value.path is not None and place in raised.value.path


def test_a_duration_on_postgresql_follows_the_database_clock(pg_dsn: str, schema: str) -> None:
    """purge --older-than counts back from the store's now (the server's), as every command does."""
    with jobkit.PostgresStore(pg_dsn, schema=schema) as store:
        ended = store.now() - timedelta(days=2)
        old = admin_jobs.finished_long_ago(store, COMPLETED, ended)
        recent = admin_jobs.finished_long_ago(store, COMPLETED, store.now())
    assert ok_json("purge", pg_dsn, "--schema", schema, "--status", "completed", "--older-than", "1d")["deleted"] == 1
    with in_schema(pg_dsn, schema) as store:
        assert store.get(old) is None and store.get(recent) is not None
