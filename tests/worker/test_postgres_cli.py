"""`python -m jobkit.worker postgresql://...`: the worker command on a PostgreSQL schema, as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

import jobkit
from jobkit.model import JobStatus
from tests import worker_jobs
from tests.pg import fresh_schema_name
from tests.support import command

COMPLETED = JobStatus.COMPLETED


@pytest.fixture
def schema(pg_dsn: str) -> Iterator[str]:
    name = fresh_schema_name()
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def enqueue(dsn: str, schema: str, count: int) -> None:
    with jobkit.PostgresStore(dsn, schema=schema) as store:
        worker_jobs.add.later_many([{"a": n} for n in range(count)], store)


def completed(dsn: str, schema: str) -> int:
    with jobkit.PostgresStore(dsn, schema=schema, create=False) as store:
        return store.counts()[COMPLETED]


@pytest.mark.parametrize(
    "mode",
    [
        ["--burst"],
        ["--once", "--concurrency", "6"],
        ["--burst", "--processes", "2"],
        ["--burst", "--no-listen"],
        ["--burst", "--isolation", "process"],
    ],
    ids=["burst", "once", "processes", "no-listen", "isolation"],
)
def test_the_worker_runs_every_job_from_a_url(pg_dsn: str, schema: str, mode: list[str]) -> None:
    enqueue(pg_dsn, schema, 6)
    done = command("jobkit.worker", pg_dsn, "--schema", schema, "--jobs", "tests.worker_jobs", "--quiet", *mode)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert completed(pg_dsn, schema) == 6


def test_a_schema_without_tables_needs_create(pg_dsn: str, schema: str) -> None:
    done = command("jobkit.worker", pg_dsn, "--schema", schema, "--burst")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"no jobkit tables in schema '{schema}' (give --create" in done.stderr
    done = command("jobkit.worker", pg_dsn, "--schema", schema, "--burst", "--create", "--quiet")
    assert done.returncode == 0, done.stderr
    assert completed(pg_dsn, schema) == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["postgresql://postgres@127.0.0.1:1/x", "--burst"], "127.0.0.1:1/x: cannot connect"),
        (["postgresql://postgres@no-such-host.invalid/x", "--burst"], "no-such-host.invalid:5432/x: cannot connect"),
        (["postgresql://postgres@127.0.0.1:1/x", "--durability", "full"], "--durability is SQLite's"),
        (["jobs.sqlite", "--schema", "s"], "--schema is for PostgreSQL TARGETs"),
    ],
)
def test_refusals_are_one_line_and_exit_2(args: list[str], words: str) -> None:
    done = command("jobkit.worker", *args)
    assert done.returncode == 2
    assert done.stderr.startswith("jobkit.worker: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr
