"""PostgresStore beside other sessions: an idle transaction's row locks do not stop claims; a held table lock times out.

Each test has a schema of its own in the run's throwaway database.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

import jobkit
from jobkit.stores.postgres import connection
from tests.pg import drop_store, schema_store
from tests.support import T0, make_job


def test_an_idle_transaction_holding_some_jobs_does_not_stop_claims_of_the_others(
    pg_schema_store: jobkit.PostgresStore,
) -> None:
    store = pg_schema_store
    store.add([make_job(f"j{i}") for i in range(6)])
    table = sql.SQL("{}.jobs").format(sql.Identifier(store.schema))
    with psycopg.connect(store.dsn) as other:  # BEGIN ... and then idle in transaction
        other.execute(sql.SQL("SELECT id FROM {} WHERE id IN ('j0', 'j1') FOR UPDATE").format(table))
        claimed = store.claim(limit=10, now=T0, token="t", lock_until=T0 + timedelta(seconds=30))
        assert sorted(job.id for job in claimed) == ["j2", "j3", "j4", "j5"]
    # Once it ends, the jobs it held are there to take.
    again = store.claim(limit=10, now=T0, token="u", lock_until=T0 + timedelta(seconds=30))
    assert sorted(job.id for job in again) == ["j0", "j1"]


def test_a_table_lock_held_elsewhere_makes_a_write_fail_in_time_and_change_nothing(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "LOCK_TIMEOUT", "200ms")
    store = schema_store(pg_dsn)
    try:
        store.add([make_job("a")])
        table = sql.SQL("{}.jobs").format(sql.Identifier(store.schema))
        with psycopg.connect(pg_dsn) as other:
            other.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
            with pytest.raises(jobkit.StoreError, match="lock was not granted"):
                store.add([make_job("b")])
        assert store.get("b") is None and store.get("a") is not None  # and it works again at once
        store.add([make_job("b")])
        assert store.get("b") is not None
    finally:
        drop_store(store)
