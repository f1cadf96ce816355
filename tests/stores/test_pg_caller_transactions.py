"""``later(..., connection=conn)`` on PostgreSQL: jobs written in the caller's transaction, whatever it is.

The job exists, and wakes workers, at the caller's commit and not before; a rollback
leaves nothing. That holds for one job (one INSERT) and for a batch (COPY), in an
explicit transaction, in the implicit one psycopg opens when autocommit is off, and
through SQLAlchemy and Django, which hand over the psycopg connection under theirs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql
from psycopg.pq import TransactionStatus
from sqlalchemy.orm import Session

import jobkit
from jobkit.stores.postgres import queries as q

jobs = jobkit.Registry()


@jobs.job(name="caller.ship")
def ship(params: int, ctx: jobkit.Context) -> int:
    return params


SIZES = pytest.mark.parametrize("count", [1, q.COPY_FROM], ids=["insert", "copy"])


def add(count: int, store: jobkit.PostgresStore, conn: object) -> list[str]:
    if count == 1:
        return [ship.later(0, store, connection=conn)]
    return ship.later_many(list(range(count)), store, connection=conn)


def stored(store: jobkit.PostgresStore, ids: list[str]) -> int:
    """How many of *ids* the store's own connections see: the committed ones."""
    return sum(store.get(job_id) is not None for job_id in ids)


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """The caller's own connection, as an application opens it: autocommit off."""
    with psycopg.connect(pg_dsn) as made:
        yield made


@SIZES
def test_jobs_added_in_a_transaction_exist_at_its_commit_and_not_before(
    pg_schema_store: jobkit.PostgresStore, conn: psycopg.Connection[tuple[object, ...]], count: int
) -> None:
    with conn.transaction():
        ids = add(count, pg_schema_store, conn)
        assert stored(pg_schema_store, ids) == 0
    assert stored(pg_schema_store, ids) == count


@SIZES
def test_a_rolled_back_transaction_leaves_none_of_its_jobs(
    pg_schema_store: jobkit.PostgresStore, conn: psycopg.Connection[tuple[object, ...]], count: int
) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT 1")  # the caller's own work first
        ids = add(count, pg_schema_store, conn)
    assert stored(pg_schema_store, ids) == 0
    assert pg_schema_store.list_jobs() == []


@SIZES
def test_jobs_added_first_in_psycopg_s_implicit_transaction_live_and_die_with_it(
    pg_schema_store: jobkit.PostgresStore, conn: psycopg.Connection[tuple[object, ...]], count: int
) -> None:
    # Autocommit off and no transaction yet: the jobs' statements open the caller's transaction, and a
    # batch must not commit it on its own (psycopg's transaction() would, begun on an idle connection).
    ids = add(count, pg_schema_store, conn)
    assert conn.info.transaction_status == TransactionStatus.INTRANS
    assert stored(pg_schema_store, ids) == 0
    conn.rollback()
    assert stored(pg_schema_store, ids) == 0

    ids = add(count, pg_schema_store, conn)
    conn.commit()
    assert stored(pg_schema_store, ids) == count


@SIZES
def test_on_a_connection_in_autocommit_mode_the_jobs_exist_at_once(
    pg_schema_store: jobkit.PostgresStore, pg_dsn: str, count: int
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        ids = add(count, pg_schema_store, conn)
        assert conn.info.transaction_status == TransactionStatus.IDLE
    assert stored(pg_schema_store, ids) == count


@SIZES
def test_workers_are_woken_once_at_the_commit_and_not_before(
    pg_schema_store: jobkit.PostgresStore, conn: psycopg.Connection[tuple[object, ...]], pg_dsn: str, count: int
) -> None:
    heard: list[psycopg.Notify] = []
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listener.add_notify_handler(heard.append)
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(pg_schema_store.channel)))
        with conn.transaction():
            add(count, pg_schema_store, conn)
            listener.execute("SELECT 1")  # a notification already sent would be delivered by this round trip
            assert heard == [], "woken before the commit"
        deadline = time.monotonic() + 10
        while not heard and time.monotonic() < deadline:
            listener.execute("SELECT 1")
        listener.execute("SELECT 1")
    assert [n.channel for n in heard] == [pg_schema_store.channel], "one wake-up for the transaction"


def test_a_connection_to_another_database_is_refused_with_a_store_error_and_writes_nothing(
    pg_schema_store: jobkit.PostgresStore, pg_admin_dsn: str
) -> None:
    with psycopg.connect(pg_admin_dsn) as elsewhere, pytest.raises(jobkit.StoreError, match=pg_schema_store.schema):
        ship.later(1, pg_schema_store, connection=elsewhere)
    assert pg_schema_store.list_jobs() == []


def test_a_connection_that_is_not_psycopg_s_is_refused_before_writing(pg_schema_store: jobkit.PostgresStore) -> None:
    with pytest.raises(TypeError, match="psycopg 3 Connection, not str"):
        ship.later(1, pg_schema_store, connection="postgresql://elsewhere")
    assert pg_schema_store.list_jobs() == []


# -- SQLAlchemy: the psycopg connection under a Session or a Core connection ---------------------------
@pytest.fixture
def engine(pg_dsn: str) -> Iterator[sa.Engine]:
    made = sa.create_engine(pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    yield made
    made.dispose()


@SIZES
def test_through_a_sqlalchemy_session_jobs_commit_and_roll_back_with_it(
    pg_schema_store: jobkit.PostgresStore, engine: sa.Engine, count: int
) -> None:
    with Session(engine) as session, session.begin():
        ids = add(count, pg_schema_store, session.connection().connection.driver_connection)
        assert stored(pg_schema_store, ids) == 0
    assert stored(pg_schema_store, ids) == count

    with Session(engine) as session:
        session.execute(sa.text("SELECT 1"))
        lost = add(count, pg_schema_store, session.connection().connection.driver_connection)
        session.rollback()
    assert stored(pg_schema_store, lost) == 0


@SIZES
def test_through_a_sqlalchemy_core_connection_jobs_roll_back_with_it(
    pg_schema_store: jobkit.PostgresStore, engine: sa.Engine, count: int
) -> None:
    with pytest.raises(RuntimeError, match="declined"), engine.begin() as connection:
        ids = add(count, pg_schema_store, connection.connection.driver_connection)
        raise RuntimeError("declined")
    assert stored(pg_schema_store, ids) == 0


# -- Django: django.db.connection.connection inside transaction.atomic() ------------------------------
DJANGO_SCRIPT = """
import sys

import django
from django.conf import settings
from django.db import connection, transaction
from psycopg.conninfo import conninfo_to_dict

import jobkit
from tests.stores.test_pg_caller_transactions import add

dsn, schema, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
parts = conninfo_to_dict(dsn)
database = {"ENGINE": "django.db.backends.postgresql", "NAME": parts["dbname"]}
database |= {key.upper(): parts[key] for key in ("user", "password", "host", "port") if key in parts}
settings.configure(DATABASES={"default": database})
django.setup()

with jobkit.PostgresStore(dsn, schema=schema) as store:
    with transaction.atomic():
        kept = add(count, store, connection.connection)
    try:
        with transaction.atomic():
            lost = add(count, store, connection.connection)
            raise RuntimeError("declined")
    except RuntimeError:
        pass
    print(" ".join(kept))
    print(" ".join(lost))
"""


@SIZES
def test_through_django_jobs_commit_and_roll_back_with_transaction_atomic(
    pg_schema_store: jobkit.PostgresStore, pg_dsn: str, count: int, tmp_path: Path
) -> None:
    script = tmp_path / "django_orders.py"
    script.write_text(DJANGO_SCRIPT)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(  # Django's settings are configured once a process: a process of its own
        [sys.executable, str(script), pg_dsn, pg_schema_store.schema, str(count)],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    kept, lost = (line.split() for line in done.stdout.splitlines())
    assert len(kept) == len(lost) == count
    assert stored(pg_schema_store, kept) == count
    assert stored(pg_schema_store, lost) == 0
