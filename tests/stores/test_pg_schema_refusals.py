"""PostgresStore's own rules: a schema that knows itself, a table built for HOT updates, one NOTIFY a transaction.

Each test works in schemas of its own in the run's throwaway database and drops them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

import jobkit
from jobkit.stores.postgres import schema as pg_schema
from tests.pg import drop_store, fresh_schema_name
from tests.support import T0, make_job

Conn = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def admin(pg_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def name(admin: Conn) -> Iterator[str]:
    chosen = fresh_schema_name()
    yield chosen
    admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(chosen)))


def catalogue(admin: Conn, schema: str) -> list[tuple[object, ...]]:
    """Every relation and column of *schema*, and the meta row: what a refusal must leave as it was."""
    rows = admin.execute(
        """SELECT c.relname, c.relkind, a.attname, a.atttypid::regtype::text FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
           WHERE n.nspname = %s ORDER BY 1, 3""",
        (schema,),
    ).fetchall()
    return list(rows)


def test_a_new_schema_is_made_with_its_version_recorded(pg_dsn: str, admin: Conn, name: str) -> None:
    with jobkit.PostgresStore(pg_dsn, schema=name) as store:
        store.add([make_job("a")])
    row = admin.execute(sql.SQL("SELECT made_by, version FROM {}.meta").format(sql.Identifier(name))).fetchone()
    assert row == ("jobkit", pg_schema.VERSION)


def test_two_schemas_in_one_database_hold_their_own_jobs(pg_dsn: str, name: str, admin: Conn) -> None:
    other = fresh_schema_name()
    try:
        with jobkit.PostgresStore(pg_dsn, schema=name) as one, jobkit.PostgresStore(pg_dsn, schema=other) as two:
            one.add([make_job("a")])
            assert two.get("a") is None and one.get("a") is not None
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other)))


def test_processes_opening_a_new_schema_together_build_it_once(pg_dsn: str, name: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_it() -> None:
        try:
            start.wait()
            jobkit.PostgresStore(pg_dsn, schema=name).close()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with jobkit.PostgresStore(pg_dsn, schema=name, create=False, upgrade=False) as store:
        assert store.counts()[jobkit.JobStatus.PENDING] == 0


def test_a_schema_from_a_newer_jobkit_is_refused_and_left_as_it_was(pg_dsn: str, admin: Conn, name: str) -> None:
    jobkit.PostgresStore(pg_dsn, schema=name).close()
    admin.execute(sql.SQL("UPDATE {}.meta SET version = version + 1").format(sql.Identifier(name)))
    before = catalogue(admin, name)
    with pytest.raises(jobkit.SchemaTooNew, match="newer than this jobkit"):
        jobkit.PostgresStore(pg_dsn, schema=name)
    assert catalogue(admin, name) == before


def test_a_schema_holding_tables_jobkit_did_not_make_is_refused_and_left_as_it_was(
    pg_dsn: str, admin: Conn, name: str
) -> None:
    admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    admin.execute(sql.SQL("CREATE TABLE {}.invoices (id int)").format(sql.Identifier(name)))
    before = catalogue(admin, name)
    with pytest.raises(jobkit.NotAJobkitDatabase, match="invoices"):
        jobkit.PostgresStore(pg_dsn, schema=name)
    assert catalogue(admin, name) == before


def test_create_false_refuses_a_missing_schema_and_makes_nothing(pg_dsn: str, admin: Conn, name: str) -> None:
    with pytest.raises(jobkit.StoreError, match="migrate"):
        jobkit.PostgresStore(pg_dsn, schema=name, create=False)
    assert admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone() is None


def test_an_older_schema_is_upgraded_on_open_or_refused_with_upgrade_false(
    pg_dsn: str, admin: Conn, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobkit.PostgresStore(pg_dsn, schema=name).close()
    step = pg_schema.Step(pg_schema.VERSION + 1, "a test's column", "ALTER TABLE {s}.jobs ADD COLUMN extra text;")
    monkeypatch.setattr(pg_schema, "STEPS", (*pg_schema.STEPS, step))
    monkeypatch.setattr(pg_schema, "VERSION", step.version)
    monkeypatch.setattr("jobkit.stores.postgres.migrations.VERSION", step.version)
    with pytest.raises(jobkit.StoreError, match="python -m jobkit migrate"):
        jobkit.PostgresStore(pg_dsn, schema=name, upgrade=False)
    jobkit.PostgresStore(pg_dsn, schema=name).close()
    version = admin.execute(sql.SQL("SELECT version FROM {}.meta").format(sql.Identifier(name))).fetchone()
    assert version == (step.version,)
    columns = {row[2] for row in catalogue(admin, name) if row[0] == "jobs"}
    assert "extra" in columns


def test_a_version_3_schema_gets_the_creation_index_with_every_job_kept(pg_dsn: str, admin: Conn, name: str) -> None:
    with jobkit.PostgresStore(pg_dsn, schema=name) as store:
        store.add([make_job(f"j{n}", created_at=T0 + timedelta(seconds=n)) for n in range(5)])
    schema = sql.Identifier(name)
    admin.execute(sql.SQL("DROP INDEX {}.jobs_created_idx").format(schema))  # what version 3 had
    admin.execute(sql.SQL("UPDATE {}.meta SET version = 3").format(schema))
    with pytest.raises(jobkit.StoreError, match="version 3, this jobkit needs 4; run python -m jobkit migrate"):
        jobkit.PostgresStore(pg_dsn, schema=name, upgrade=False)
    with jobkit.PostgresStore(pg_dsn, schema=name) as store:
        listed = store.list_jobs(created_from=T0 + timedelta(seconds=1), created_until=T0 + timedelta(seconds=4))
        assert [j.id for j in listed] == ["j3", "j2", "j1"]
    assert admin.execute(sql.SQL("SELECT version FROM {}.meta").format(schema)).fetchone() == (4,)
    index = admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s", (name, "jobs_created_idx")
    )
    assert index.fetchone() == (f"CREATE INDEX jobs_created_idx ON {name}.jobs USING btree (created_at, id)",)


# -- the table: built so that heartbeats and progress are HOT updates ---------------------
def test_no_index_holds_the_columns_heartbeats_and_progress_write(pg_schema_store: jobkit.PostgresStore) -> None:
    with psycopg.connect(pg_schema_store.dsn, autocommit=True) as conn:
        indexed = conn.execute(
            """SELECT DISTINCT a.attname FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey)
               WHERE n.nspname = %s AND t.relname = 'jobs'""",
            (pg_schema_store.schema,),
        ).fetchall()
        options = conn.execute(
            """SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s AND c.relname = 'jobs'""",
            (pg_schema_store.schema,),
        ).fetchone()
    written = {"worker_expires_at", "updated_at", "progress", "progress_message"}
    assert not written & {row[0] for row in indexed}
    assert options is not None
    assert {"fillfactor=70", "autovacuum_vacuum_scale_factor=0.02"} <= set(options[0])  # type: ignore[arg-type]


# -- waking ---------------------------------------------------------------------------------
def notifications(conn: Conn) -> int:
    conn.execute("SELECT 1")  # notifications arrive with a statement's answer
    return len(list(conn.notifies(timeout=0.2)))


def test_one_notify_per_enqueue_transaction_and_none_for_an_idle_claim(pg_schema_store: jobkit.PostgresStore) -> None:
    store = pg_schema_store
    with psycopg.connect(store.dsn, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(store.channel)))
        store.add([make_job(f"j{i}") for i in range(100)])
        assert notifications(listener) == 1
        store.add([make_job("one")])
        assert notifications(listener) == 1
        store.claim(limit=5, now=T0 - timedelta(days=1), token="t", lock_until=T0)  # nothing due yet: takes nothing
        assert notifications(listener) == 0
        assert len(store.claim(limit=5, now=T0, token="t", lock_until=T0 + timedelta(seconds=30))) == 5
        assert notifications(listener) == 1


def test_without_listen_a_waker_polls_and_opens_no_listening_session(pg_dsn: str, name: str) -> None:
    store = jobkit.PostgresStore(pg_dsn, schema=name, listen=False)
    try:
        waker = store.waker()
        try:
            assert waker.wait(5.0) is True  # a poll interval passed: look again
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                listening = conn.execute(
                    """SELECT count(*) FROM pg_stat_activity
                       WHERE datname = current_database() AND query ILIKE 'LISTEN%%'"""
                ).fetchone()
            assert listening == (0,)
        finally:
            waker.close()
    finally:
        drop_store(store)
